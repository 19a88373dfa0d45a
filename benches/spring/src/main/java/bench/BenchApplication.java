package bench;

import java.nio.ByteBuffer;
import java.time.Instant;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.TopicPartition;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.context.event.EventListener;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.event.ConsumerStartingEvent;
import org.springframework.kafka.listener.ConsumerSeekAware;
import org.springframework.stereotype.Component;

/**
 * Contender (f) of the kafka-listener benchmarks: one {@code @KafkaListener} with Spring Boot's
 * and spring-kafka's defaults (BATCH ack mode, concurrency 1). It counts records; after
 * {@code bench.records} it prints one line {@code BENCH-RESULT {json}} (the same fields as the
 * Rust contenders) and exits through a graceful context close.
 *
 * <p>Properties: {@code bench.bootstrap}, {@code bench.topic}, {@code bench.group},
 * {@code bench.records}, and {@code bench.latency-warmup} (latency mode when 0 or more: the
 * payload's first 8 bytes are the send time in nanoseconds since the epoch).
 */
@SpringBootApplication
public class BenchApplication {

    static volatile ConfigurableApplicationContext context;

    public static void main(String[] args) {
        context = SpringApplication.run(BenchApplication.class, args);
    }

    static long nowNs() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }

    @Component
    static class BenchListener implements ConsumerSeekAware {
        private final long target;
        private final long warmup;
        private final long[] samples;
        private int sampleCount;
        private final AtomicLong count = new AtomicLong();
        private volatile long readyNs;
        private volatile long assignedNs;
        private volatile long firstNs;

        BenchListener(@Value("${bench.records}") long target,
                      @Value("${bench.latency-warmup}") long warmup) {
            this.target = target;
            this.warmup = warmup;
            this.samples = warmup >= 0 ? new long[(int) Math.max(0, target - warmup)] : null;
        }

        @EventListener
        public void starting(ConsumerStartingEvent event) {
            if (readyNs == 0) {
                readyNs = nowNs();
            }
        }

        @Override
        public void onPartitionsAssigned(Map<TopicPartition, Long> assignments,
                                         ConsumerSeekCallback callback) {
            if (!assignments.isEmpty() && assignedNs == 0) {
                assignedNs = nowNs();
                if (samples != null) {
                    System.out.println("BENCH-ASSIGNED " + assignedNs);
                }
            }
        }

        @KafkaListener(id = "bench", topics = "${bench.topic}", groupId = "${bench.group}")
        public void onRecord(ConsumerRecord<byte[], byte[]> record) {
            long n = count.incrementAndGet();
            if (samples != null && n - 1 >= warmup && record.value() != null
                    && record.value().length >= 8) {
                long sent = ByteBuffer.wrap(record.value()).getLong();
                long now = nowNs();
                if (sent > 0 && sent <= now && sampleCount < samples.length) {
                    samples[sampleCount++] = now - sent;
                }
            }
            if (n == 1) {
                firstNs = nowNs();
            }
            if (n == target) {
                long lastNs = nowNs();
                String json = "{\"ready_ns\":" + readyNs + ",\"assigned_ns\":" + assignedNs
                        + ",\"first_ns\":" + firstNs + ",\"last_ns\":" + lastNs
                        + ",\"records\":" + n + latencyJson() + "}";
                System.out.println("BENCH-RESULT " + json);
                // Close on another thread: the context waits for this listener thread to stop.
                new Thread(() -> System.exit(SpringApplication.exit(context)), "bench-exit").start();
            }
        }

        private String latencyJson() {
            if (samples == null || sampleCount == 0) {
                return "";
            }
            long[] s = Arrays.copyOf(samples, sampleCount);
            Arrays.sort(s);
            return ",\"latency\":{\"samples\":" + s.length + ",\"p50_us\":" + at(s, 0.50)
                    + ",\"p99_us\":" + at(s, 0.99) + ",\"max_us\":" + at(s, 1.0) + "}";
        }

        private static double at(long[] sorted, double q) {
            int i = (int) Math.round((sorted.length - 1) * q);
            return sorted[Math.min(i, sorted.length - 1)] / 1000.0;
        }
    }
}
