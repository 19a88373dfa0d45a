//! Our dead letters against Spring's own code: a record our listener gives up on is dead-lettered
//! by us on the real broker, then `tests/spring-dlt` (a Java program) runs Spring's
//! `DeadLetterPublishingRecoverer` on the same original record and compares, header by header,
//! what Spring would publish with what we published. The `kafka_dlt-original-*` headers must be
//! byte-for-byte Spring's; key, value, the original's headers and the destination partition too.
//! Two originals: a keyed CreateTime record with headers, and a keyless record of a
//! LogAppendTime topic (the broker's timestamp and the other timestamp type).
//!
//! The jar is built by `scripts/test` (`mvn -q -f tests/spring-dlt/pom.xml package`);
//! `SPRING_DLT_JAR` points elsewhere. Without it the test is skipped, unless
//! `KAFKA_REQUIRE_BROKER=1`, which makes a missing jar a failure.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kafka_listener::dead_letter::headers;
use kafka_listener::{kafka_listener, BoxError, Key, RecordMeta};
use kafka_listener_tests::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Attempts at the record that always fails.
static POISON_CALLS: AtomicUsize = AtomicUsize::new(0);
/// Records handled successfully.
static FINE_CALLS: AtomicUsize = AtomicUsize::new(0);

/// `poison` always fails (so it is dead-lettered); anything else succeeds.
#[kafka_listener(
    id = "spring_dlt",
    topics = "${spring-dlt.topic}",
    group_id = "${spring-dlt.group}"
)]
async fn spring_dlt(key: Key<String>) -> Result<(), BoxError> {
    if key.0 == "poison" {
        POISON_CALLS.fetch_add(1, Ordering::SeqCst);
        Err("downstream is down".into())
    } else {
        FINE_CALLS.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Attempts at the records of the LogAppendTime topic, which all fail.
static LOG_APPEND_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Always fails.
#[kafka_listener(
    id = "spring_dlt_log_append",
    topics = "${spring-dlt.topic}",
    group_id = "${spring-dlt.group}"
)]
async fn spring_dlt_log_append(meta: RecordMeta) -> Result<(), BoxError> {
    LOG_APPEND_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(format!("cannot handle offset {}", meta.offset).into())
}

/// The comparison jar, or `None` (test skipped) when it is not built and not required.
fn spring_dlt_jar() -> Option<PathBuf> {
    let jar = std::env::var("SPRING_DLT_JAR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spring-dlt/target/spring-dlt.jar"),
        PathBuf::from,
    );
    if jar.exists() {
        return Some(jar);
    }
    assert!(
        std::env::var("KAFKA_REQUIRE_BROKER").as_deref() != Ok("1"),
        "{} not found: build it with `mvn -q -f tests/spring-dlt/pom.xml package` (scripts/test does)",
        jar.display()
    );
    eprintln!(
        "{} not built: Spring comparison skipped (mvn -q -f tests/spring-dlt/pom.xml package)",
        jar.display()
    );
    None
}

/// Sends one record with a key, a value, a CreateTime timestamp and headers (text, binary and
/// without a value) to `partition`; returns its offset.
async fn send_poison(bs: &str, topic: &str, partition: i32) -> i64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .create()
        .expect("producer");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some("abc-123"),
        })
        .insert(Header {
            key: "bin",
            value: Some(&[0x00, 0xff, 0x7f, 0x80][..]),
        })
        .insert(Header {
            key: "no-value",
            value: None::<&[u8]>,
        });
    let delivery = producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key("poison")
                .payload(&b"{\"id\":7,\"amount_cents\":-5}"[..])
                .timestamp(1_700_000_000_123)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("sending the poison record to {topic}-{partition}: {e}"));
    assert_eq!(
        delivery.partition, partition,
        "delivered to the chosen partition"
    );
    delivery.offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_carries_the_original_headers_springs_recoverer_writes() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let Some(jar) = spring_dlt_jar() else { return };
    let (topic, group) = (unique("spring-dlt"), unique("spring-dlt-g"));
    let dlt = format!("{topic}.DLT");
    create_topic(&bs, &topic, 3).await;
    create_topic(&bs, &dlt, 3).await;
    // Two records before it, so the original offset is not 0; partition 1, so neither is the
    // partition.
    let fine: Vec<(String, Vec<u8>)> = (0..2)
        .map(|i| (format!("fine-{i}"), b"{}".to_vec()))
        .collect();
    produce_to(&bs, &topic, 1, &fine).await;
    let offset = send_poison(&bs, &topic, 1).await;

    let app = start_listener(
        &bs,
        "spring_dlt",
        &[
            ("spring-dlt.topic", topic.as_str()),
            ("spring-dlt.group", group.as_str()),
            ("kafka.listener.spring_dlt.retry.attempts", "2"),
            ("kafka.listener.spring_dlt.dead-letter.enabled", "true"),
        ],
    )
    .await;
    let letters = read_topic(&bs, &dlt, 1, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 1, "one dead letter in {dlt}: {letters:?}");
    wait_until(Duration::from_secs(30), "the fine records handled", || {
        FINE_CALLS.load(Ordering::SeqCst) == 2
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(POISON_CALLS.load(Ordering::SeqCst), 2, "two attempts");

    compare_with_spring(jar, &bs, &topic, 1, offset, &dlt, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_of_a_keyless_log_append_time_record_matches_springs() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let Some(jar) = spring_dlt_jar() else { return };
    let (topic, group) = (unique("spring-dlt-lat"), unique("spring-dlt-lat-g"));
    let dlt = format!("{topic}.DLT");
    create_log_append_time_topic(&bs, &topic).await;
    create_topic(&bs, &dlt, 2).await;
    let offset = send_keyless(&bs, &topic, 1).await;

    let app = start_listener(
        &bs,
        "spring_dlt_log_append",
        &[
            ("spring-dlt.topic", topic.as_str()),
            ("spring-dlt.group", group.as_str()),
            ("kafka.listener.spring_dlt_log_append.retry.attempts", "2"),
            (
                "kafka.listener.spring_dlt_log_append.dead-letter.enabled",
                "true",
            ),
        ],
    )
    .await;
    let letters = read_topic(&bs, &dlt, 1, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 1, "one dead letter in {dlt}: {letters:?}");
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(LOG_APPEND_CALLS.load(Ordering::SeqCst), 2, "two attempts");
    // The broker really stamped it: otherwise this test would repeat the one above.
    assert_eq!(
        letters[0].header_str(headers::ORIGINAL_TIMESTAMP_TYPE),
        Some("LogAppendTime"),
        "the topic's message.timestamp.type did not apply"
    );

    compare_with_spring(jar, &bs, &topic, 1, offset, &dlt, &group).await;
}

/// A two-partition topic whose records carry the broker's append time.
async fn create_log_append_time_topic(bs: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 2, TopicReplication::Fixed(1))
                .set("message.timestamp.type", "LogAppendTime")],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Sends one record without a key or headers (its producer timestamp is replaced by the
/// broker's) to `partition`; returns its offset.
async fn send_keyless(bs: &str, topic: &str, partition: i32) -> i64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .create()
        .expect("producer");
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&b"no key"[..])
                .timestamp(1_700_000_000_123),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("sending to {topic}-{partition}: {e}"));
    delivery.offset
}

/// Runs the Java comparison on the dead letter in `dlt` and the original at `partition` and
/// `offset` of `topic`; fails with its output unless every check matched.
async fn compare_with_spring(
    jar: PathBuf,
    bs: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    dlt: &str,
    group: &str,
) {
    let args = [
        bs.to_owned(),
        topic.to_owned(),
        partition.to_string(),
        offset.to_string(),
        dlt.to_owned(),
        group.to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .arg("-jar")
            .arg(&jar)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("running java -jar {}: {e}", jar.display()))
    })
    .await
    .expect("java task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "our dead letter differs from what Spring's DeadLetterPublishingRecoverer writes ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("MATCH kafka_dlt-original-offset") && !stdout.contains("MISMATCH"),
        "the comparison did not run every check:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}
