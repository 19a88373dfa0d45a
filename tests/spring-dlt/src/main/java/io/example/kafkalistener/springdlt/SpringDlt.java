package io.example.kafkalistener.springdlt;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Collectors;
import java.util.stream.StreamSupport;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.listener.DeadLetterPublishingRecoverer;
import org.springframework.kafka.listener.ListenerExecutionFailedException;
import org.springframework.kafka.mock.MockProducerFactory;
import org.springframework.kafka.support.KafkaHeaders;

/**
 * Proves that a dead letter kafka-listener published carries what Spring's own
 * {@link DeadLetterPublishingRecoverer} would have published for the same record.
 *
 * <p>It reads the one dead letter (ours) and, independently of its headers, the original record
 * at the partition and offset given on the command line; runs Spring's recoverer on that
 * original exactly as Spring's listener container would (the error wrapped in a
 * {@link ListenerExecutionFailedException} naming the group, the real consumer passed for the
 * partition check) with a {@link MockProducer} underneath, so Spring's record is captured, not
 * sent; then compares the two header by header. The {@code kafka_dlt-original-*} headers must
 * be equal byte for byte; the exception headers only need to be there and be UTF-8, since ours
 * name Rust errors.
 *
 * <p>Prints one line per check ({@code MATCH name <hex>} or {@code MISMATCH name spring=<hex>
 * ours=<hex>}) and {@code INFO} lines for differences that are by design; exits 0 only if every
 * check matched, 1 on a mismatch, 2 on bad arguments or records that could not be read.
 */
public final class SpringDlt {

    private static final Duration READ_TIMEOUT = Duration.ofSeconds(30);

    private static final String DLT_PREFIX = "kafka_dlt-";

    /** Headers whose bytes must equal Spring's. */
    private static final List<String> ORIGINAL_HEADERS = List.of(
            KafkaHeaders.DLT_ORIGINAL_TOPIC,
            KafkaHeaders.DLT_ORIGINAL_PARTITION,
            KafkaHeaders.DLT_ORIGINAL_OFFSET,
            KafkaHeaders.DLT_ORIGINAL_TIMESTAMP,
            KafkaHeaders.DLT_ORIGINAL_TIMESTAMP_TYPE,
            KafkaHeaders.DLT_ORIGINAL_CONSUMER_GROUP);

    /** Headers that must be present and UTF-8; their text differs by design. */
    private static final List<String> EXCEPTION_HEADERS = List.of(
            KafkaHeaders.DLT_EXCEPTION_FQCN,
            KafkaHeaders.DLT_EXCEPTION_CAUSE_FQCN,
            KafkaHeaders.DLT_EXCEPTION_MESSAGE,
            KafkaHeaders.DLT_EXCEPTION_STACKTRACE);

    private int mismatches;

    private SpringDlt() {
    }

    public static void main(String[] args) {
        // Before any logger exists: kafka-clients' INFO lines would drown the checks.
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        if (args.length != 6) {
            System.err.println("usage: java -jar spring-dlt.jar <bootstrap-servers> <topic> <partition> "
                    + "<offset> <dead-letter-topic> <consumer-group>");
            System.exit(2);
        }
        try {
            System.exit(new SpringDlt().run(args[0], args[1], Integer.parseInt(args[2]),
                    Long.parseLong(args[3]), args[4], args[5]));
        }
        catch (RuntimeException ex) {
            System.err.println("spring-dlt: " + ex);
            System.exit(2);
        }
    }

    private int run(String bootstrap, String topic, int partition, long offset, String dlt, String group) {
        try (KafkaConsumer<byte[], byte[]> consumer = reader(bootstrap)) {
            List<ConsumerRecord<byte[], byte[]>> letters = readAll(consumer, dlt);
            check("dead-letter-count", intBytes(1), intBytes(letters.size()));
            if (letters.isEmpty()) {
                System.err.println("spring-dlt: no dead letter in " + dlt + " within " + READ_TIMEOUT);
                return 2;
            }
            ConsumerRecord<byte[], byte[]> ours = letters.get(0);
            ConsumerRecord<byte[], byte[]> original = readAt(consumer, new TopicPartition(topic, partition), offset);
            consumer.unsubscribe();
            ProducerRecord<byte[], byte[]> spring = springDeadLetter(original, consumer, dlt, group);
            compare(original, spring, ours);
            info("spring-default-destination", springDefaultDestination(original, group) + " (ours: " + dlt + ")");
        }
        return this.mismatches == 0 ? 0 : 1;
    }

    private static KafkaConsumer<byte[], byte[]> reader(String bootstrap) {
        // No group: nothing is committed, and the original listener's group is left alone.
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        return new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    /** Every record of {@code topic} up to its end offsets (waiting for at least one). */
    private static List<ConsumerRecord<byte[], byte[]>> readAll(KafkaConsumer<byte[], byte[]> consumer,
            String topic) {

        List<TopicPartition> partitions = consumer.partitionsFor(topic, READ_TIMEOUT).stream()
                .map(p -> new TopicPartition(topic, p.partition()))
                .toList();
        consumer.assign(partitions);
        consumer.seekToBeginning(partitions);
        Map<TopicPartition, Long> end = consumer.endOffsets(partitions, READ_TIMEOUT);
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        long deadline = System.nanoTime() + READ_TIMEOUT.toNanos();
        while (System.nanoTime() < deadline) {
            consumer.poll(Duration.ofMillis(200)).forEach(out::add);
            boolean atEnd = partitions.stream().allMatch(tp -> consumer.position(tp) >= end.get(tp));
            if (!out.isEmpty() && atEnd) {
                break;
            }
        }
        return out;
    }

    /** The record at {@code offset} of {@code tp}, found by position alone. */
    private static ConsumerRecord<byte[], byte[]> readAt(KafkaConsumer<byte[], byte[]> consumer, TopicPartition tp,
            long offset) {

        consumer.assign(List.of(tp));
        consumer.seek(tp, offset);
        long deadline = System.nanoTime() + READ_TIMEOUT.toNanos();
        while (System.nanoTime() < deadline) {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                if (r.offset() == offset) {
                    return r;
                }
                throw new IllegalStateException("expected offset " + offset + " of " + tp + ", read " + r.offset());
            }
        }
        throw new IllegalStateException("no record at offset " + offset + " of " + tp + " within " + READ_TIMEOUT);
    }

    /**
     * What Spring's recoverer publishes for {@code original}, captured by a mock producer. The
     * destination is our dead-letter topic at the original's partition (Spring's default
     * resolver, with our topic name); the consumer lets Spring check that partition exists.
     */
    private static ProducerRecord<byte[], byte[]> springDeadLetter(ConsumerRecord<byte[], byte[]> original,
            KafkaConsumer<byte[], byte[]> consumer, String dlt, String group) {

        MockProducer<byte[], byte[]> producer = mockProducer();
        DeadLetterPublishingRecoverer recoverer = new DeadLetterPublishingRecoverer(template(producer),
                (record, ex) -> new TopicPartition(dlt, record.partition()));
        recoverer.accept(original, consumer, containerException(group));
        return onlyRecord(producer);
    }

    /** The topic Spring's default resolver picks, for information. */
    private static String springDefaultDestination(ConsumerRecord<byte[], byte[]> original, String group) {
        MockProducer<byte[], byte[]> producer = mockProducer();
        // No consumer: its partition check would ask the broker about (and maybe create) that topic.
        new DeadLetterPublishingRecoverer(template(producer)).accept(original, null, containerException(group));
        return onlyRecord(producer).topic();
    }

    /** The error as Spring's listener container hands it to the recoverer: naming the group. */
    private static ListenerExecutionFailedException containerException(String group) {
        return new ListenerExecutionFailedException("Listener failed", group,
                new IllegalStateException("downstream is down"));
    }

    private static MockProducer<byte[], byte[]> mockProducer() {
        return new MockProducer<>(true, null, new ByteArraySerializer(), new ByteArraySerializer());
    }

    private static KafkaTemplate<byte[], byte[]> template(MockProducer<byte[], byte[]> producer) {
        return new KafkaTemplate<>(new MockProducerFactory<>(() -> producer));
    }

    private static ProducerRecord<byte[], byte[]> onlyRecord(MockProducer<byte[], byte[]> producer) {
        List<ProducerRecord<byte[], byte[]>> sent = producer.history();
        if (sent.size() != 1) {
            throw new IllegalStateException("Spring's recoverer sent " + sent.size() + " records, expected 1");
        }
        return sent.get(0);
    }

    private void compare(ConsumerRecord<byte[], byte[]> original, ProducerRecord<byte[], byte[]> spring,
            ConsumerRecord<byte[], byte[]> ours) {

        for (String name : ORIGINAL_HEADERS) {
            check(name, last(spring.headers(), name), last(ours.headers(), name));
        }
        check("key", spring.key(), ours.key());
        check("value", spring.value(), ours.value());
        for (Header h : original.headers()) {
            if (!h.key().startsWith(DLT_PREFIX)) {
                check("header " + h.key(), last(spring.headers(), h.key()), last(ours.headers(), h.key()));
            }
        }
        check("original-header-order", utf8(names(spring.headers(), false)), utf8(names(ours.headers(), false)));
        check("destination-partition", spring.partition() == null ? null : intBytes(spring.partition()),
                intBytes(ours.partition()));
        // Spring leaves the timestamp to the producer (the time of the dead letter), so the
        // original's is not copied.
        byte[] copied = longBytes(original.timestamp());
        byte[] oursTimestamp = longBytes(ours.timestamp());
        if (spring.timestamp() == null && !Arrays.equals(copied, oursTimestamp)) {
            match("timestamp-not-copied");
        }
        else {
            mismatch("timestamp-not-copied",
                    spring.timestamp() == null ? null : longBytes(spring.timestamp()), oursTimestamp);
        }
        for (String name : EXCEPTION_HEADERS) {
            byte[] theirs = last(spring.headers(), name);
            byte[] mine = last(ours.headers(), name);
            if (theirs != null && mine != null && isUtf8(mine)) {
                match(name + " (present, UTF-8)");
            }
            else {
                mismatch(name + " (present, UTF-8)", theirs, mine);
            }
        }
        check("header-names", utf8(sortedNames(spring.headers())), utf8(sortedNames(ours.headers())));
        info("header-order", "spring=" + names(spring.headers(), true) + " ours=" + names(ours.headers(), true));
    }

    private void check(String name, byte[] spring, byte[] ours) {
        if (Arrays.equals(spring, ours)) {
            match(name + " " + hex(ours) + " (" + text(ours) + ")");
        }
        else {
            mismatch(name, spring, ours);
        }
    }

    private static void match(String name) {
        System.out.println("MATCH " + name);
    }

    private void mismatch(String name, byte[] spring, byte[] ours) {
        this.mismatches++;
        System.out.println("MISMATCH " + name + " spring=" + hex(spring) + " ours=" + hex(ours)
                + " (spring " + text(spring) + ", ours " + text(ours) + ")");
    }

    private static void info(String name, String what) {
        System.out.println("INFO " + name + " " + what);
    }

    private static byte[] last(Headers headers, String name) {
        Header h = headers.lastHeader(name);
        return h == null ? null : h.value();
    }

    /** Header names in order, all or only those not Spring's. */
    private static String names(Headers headers, boolean withDlt) {
        return StreamSupport.stream(headers.spliterator(), false)
                .map(Header::key)
                .filter(k -> withDlt || !k.startsWith(DLT_PREFIX))
                .collect(Collectors.joining(","));
    }

    /** Every header name, duplicates kept, in a fixed order. */
    private static String sortedNames(Headers headers) {
        return StreamSupport.stream(headers.spliterator(), false)
                .map(Header::key)
                .sorted()
                .collect(Collectors.joining(","));
    }

    private static byte[] intBytes(int v) {
        return ByteBuffer.allocate(Integer.BYTES).putInt(v).array();
    }

    private static byte[] longBytes(long v) {
        return ByteBuffer.allocate(Long.BYTES).putLong(v).array();
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static boolean isUtf8(byte[] bytes) {
        try {
            StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes));
            return true;
        }
        catch (CharacterCodingException ex) {
            return false;
        }
    }

    private static String hex(byte[] bytes) {
        return bytes == null ? "absent" : HexFormat.of().formatHex(bytes);
    }

    /** The bytes as text when they are printable UTF-8, for a readable mismatch line. */
    private static String text(byte[] bytes) {
        if (bytes == null) {
            return "absent";
        }
        if (!isUtf8(bytes)) {
            return "not UTF-8";
        }
        String s = new String(bytes, StandardCharsets.UTF_8);
        boolean printable = s.codePoints().allMatch(c -> c >= 0x20 || c == '\n' || c == '\t');
        return printable ? '"' + s + '"' : "binary";
    }
}
