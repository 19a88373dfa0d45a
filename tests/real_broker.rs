//! Delivery guarantees against a real Apache Kafka broker (`KAFKA_BOOTSTRAP_SERVERS`).
//!
//! `scripts/test` starts the broker (`scripts/kafka-broker start`) and sets the variable; without
//! it these tests are skipped, unless `KAFKA_REQUIRE_BROKER=1` (CI) makes that a failure.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kafka_listener::{kafka_listener, Application, BoxError, Json, Key, RecordMeta};
use kafka_listener_tests::*;

type Seen = Mutex<Vec<(i32, i64, String)>>;

fn record(seen: &Seen, meta: &RecordMeta, key: &str) {
    seen.lock()
        .expect("seen lock")
        .push((meta.partition, meta.offset, key.to_owned()));
}

fn keys(seen: &Seen) -> Vec<String> {
    seen.lock()
        .expect("seen lock")
        .iter()
        .map(|(_, _, k)| k.clone())
        .collect()
}

fn distinct(seen: &Seen) -> usize {
    keys(seen).into_iter().collect::<HashSet<_>>().len()
}

/// Starts only listener `id`, consuming `topic` in `group`.
async fn start(
    bootstrap: &str,
    id: &str,
    topic: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> Application {
    let mut vars = vec![
        ("test.topic", topic),
        ("test.group", group),
        ("kafka.listener.shutdown-timeout", "20s"),
    ];
    vars.extend_from_slice(extra);
    start_listener(bootstrap, id, &vars).await
}

fn assert_offsets_increase_per_partition(seen: &Seen) {
    let mut last: HashMap<i32, i64> = HashMap::new();
    for (p, o, _) in seen.lock().expect("seen lock").iter() {
        if let Some(prev) = last.insert(*p, *o) {
            assert!(*o > prev, "partition {p}: offset {o} handled after {prev}");
        }
    }
}

static BATCH_SEEN: Seen = Mutex::new(Vec::new());

#[kafka_listener(
    id = "happy_batch",
    topics = "${test.topic}",
    group_id = "${test.group}",
    concurrency = 2
)]
async fn happy_batch(meta: RecordMeta, key: Key<String>) {
    record(&BATCH_SEEN, &meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_handles_every_record_and_shutdown_commits_end_offsets() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("happy-batch"), unique("g"));
    create_topic(&bs, &topic, 6).await;
    let produced = produce_seq(&bs, &topic, 0, 3000).await;
    let app = start(&bs, "happy_batch", &topic, &group, &[]).await;
    wait_until(Duration::from_secs(60), "3000 distinct records", || {
        distinct(&BATCH_SEEN) == 3000
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "unclean shutdown: {report}");
    assert_eq!(
        keys(&BATCH_SEEN).len(),
        produced.len(),
        "no record handled twice"
    );
    assert_offsets_increase_per_partition(&BATCH_SEEN);
    assert_committed_at_end(&bs, &group, &topic, 6).await;
}

static RECORD_SEEN: Seen = Mutex::new(Vec::new());

#[kafka_listener(
    id = "happy_record",
    topics = "${test.topic}",
    group_id = "${test.group}",
    ack_mode = "record"
)]
async fn happy_record(meta: RecordMeta, key: Key<String>) {
    record(&RECORD_SEEN, &meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_mode_handles_every_record_in_partition_order_and_commits_end_offsets() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("happy-record"), unique("g"));
    create_topic(&bs, &topic, 6).await;
    produce_seq(&bs, &topic, 0, 2000).await;
    let app = start(
        &bs,
        "happy_record",
        &topic,
        &group,
        &[("kafka.listener.happy_record.concurrency", "3")],
    )
    .await;
    wait_until(Duration::from_secs(60), "2000 distinct records", || {
        distinct(&RECORD_SEEN) == 2000
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "unclean shutdown: {report}");
    assert_eq!(keys(&RECORD_SEEN).len(), 2000, "no record handled twice");
    assert_offsets_increase_per_partition(&RECORD_SEEN);
    assert_committed_at_end(&bs, &group, &topic, 6).await;
}

static RESUME_SEEN: Seen = Mutex::new(Vec::new());

#[kafka_listener(id = "resume", topics = "${test.topic}", group_id = "${test.group}")]
async fn resume(meta: RecordMeta, key: Key<String>) {
    record(&RESUME_SEEN, &meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_committed_offsets_with_nothing_lost_or_repeated() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("resume"), unique("g"));
    create_topic(&bs, &topic, 3).await;
    produce_seq(&bs, &topic, 0, 600).await;
    let app = start(&bs, "resume", &topic, &group, &[]).await;
    wait_until(Duration::from_secs(60), "first 600 records", || {
        distinct(&RESUME_SEEN) == 600
    })
    .await;
    assert!(app.shutdown().await.is_clean());

    produce_seq(&bs, &topic, 600, 400).await;
    let app = start(&bs, "resume", &topic, &group, &[]).await;
    wait_until(Duration::from_secs(60), "all 1000 records", || {
        distinct(&RESUME_SEEN) == 1000
    })
    .await;
    assert!(app.shutdown().await.is_clean());
    let all = keys(&RESUME_SEEN);
    assert_eq!(
        all.len(),
        1000,
        "a graceful restart must not redeliver anything"
    );
    assert_committed_at_end(&bs, &group, &topic, 3).await;
}

static FLAKY_SEEN: Seen = Mutex::new(Vec::new());
static POISON_ATTEMPTS: AtomicU32 = AtomicU32::new(0);
static PANIC_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[kafka_listener(
    id = "flaky",
    topics = "${test.topic}",
    group_id = "${test.group}",
    ack_mode = "record"
)]
async fn flaky(meta: RecordMeta, key: Key<String>) -> Result<(), BoxError> {
    match key.as_str() {
        "poison" => {
            POISON_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
            Err("downstream refused the poison record".into())
        }
        "panic" => {
            PANIC_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
            panic!("handler bug on purpose");
        }
        _ => {
            record(&FLAKY_SEEN, &meta, &key);
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_or_panicking_handler_is_retried_then_skipped_and_committed_past() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("flaky"), unique("g"));
    create_topic(&bs, &topic, 1).await;
    let mut records: Vec<(String, Vec<u8>)> =
        (0..20).map(|i| (format!("k{i}"), b"{}".to_vec())).collect();
    records.insert(5, ("poison".into(), b"{}".to_vec()));
    records.insert(12, ("panic".into(), b"{}".to_vec()));
    produce(&bs, &topic, &records).await;
    let app = start(
        &bs,
        "flaky",
        &topic,
        &group,
        &[("kafka.listener.retry.attempts", "3")],
    )
    .await;
    wait_until(Duration::from_secs(60), "the 20 good records", || {
        distinct(&FLAKY_SEEN) == 20
    })
    .await;
    let report = app.shutdown().await;
    assert_eq!(
        POISON_ATTEMPTS.load(Ordering::SeqCst),
        3,
        "poison record attempted 3 times"
    );
    assert_eq!(
        PANIC_ATTEMPTS.load(Ordering::SeqCst),
        3,
        "panicking record attempted 3 times"
    );
    assert_eq!(
        report.listeners.recovered, 2,
        "both bad records skipped by the recoverer: {report}"
    );
    // Records after the bad ones were handled in order, and the offset moved past the bad ones.
    assert_eq!(keys(&FLAKY_SEEN)[5], "k5");
    assert_committed_at_end(&bs, &group, &topic, 1).await;
}

static DECODE_SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static DECODE_CALLS: AtomicU32 = AtomicU32::new(0);

#[derive(serde::Deserialize)]
struct Seq {
    seq: u64,
}

#[kafka_listener(id = "decode", topics = "${test.topic}", group_id = "${test.group}")]
async fn decode(value: Json<Seq>) {
    DECODE_CALLS.fetch_add(1, Ordering::SeqCst);
    DECODE_SEEN.lock().expect("lock").push(value.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_record_goes_to_the_error_path_without_retries_and_does_not_stall() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("decode"), unique("g"));
    create_topic(&bs, &topic, 1).await;
    let records = vec![
        ("a".to_owned(), br#"{"seq":1}"#.to_vec()),
        ("b".to_owned(), b"\xff\xfe not json".to_vec()),
        ("c".to_owned(), br#"{"other":true}"#.to_vec()),
        ("d".to_owned(), br#"{"seq":4}"#.to_vec()),
    ];
    produce(&bs, &topic, &records).await;
    let app = start(&bs, "decode", &topic, &group, &[]).await;
    wait_until(Duration::from_secs(60), "both good records", || {
        DECODE_SEEN.lock().map(|v| v.len() == 2).unwrap_or(false)
    })
    .await;
    let report = app.shutdown().await;
    assert_eq!(*DECODE_SEEN.lock().expect("lock"), vec![1, 4]);
    assert_eq!(
        DECODE_CALLS.load(Ordering::SeqCst),
        2,
        "the handler never sees undecodable records"
    );
    assert_eq!(report.listeners.recovered, 2, "{report}");
    assert_committed_at_end(&bs, &group, &topic, 1).await;
}

static SLOW_SEEN: Seen = Mutex::new(Vec::new());
static SLOW_BLOCKS: AtomicBool = AtomicBool::new(true);
static SLOW_STARTED: AtomicBool = AtomicBool::new(false);

#[kafka_listener(
    id = "slow",
    topics = "${test.topic}",
    group_id = "${test.group}",
    ack_mode = "record"
)]
async fn slow(meta: RecordMeta, key: Key<String>) {
    if key.as_str() == "slow" && SLOW_BLOCKS.load(Ordering::SeqCst) {
        SLOW_STARTED.store(true, Ordering::SeqCst);
        // Far beyond the shutdown timeout: this handler is what the deadline cuts off.
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    record(&SLOW_SEEN, &meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_running_at_shutdown_timeout_stays_uncommitted_and_is_redelivered() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("slow"), unique("g"));
    create_topic(&bs, &topic, 1).await;
    let mut records: Vec<(String, Vec<u8>)> =
        (0..10).map(|i| (format!("k{i}"), b"{}".to_vec())).collect();
    records.insert(5, ("slow".into(), b"{}".to_vec()));
    produce(&bs, &topic, &records).await;
    let app = start(
        &bs,
        "slow",
        &topic,
        &group,
        &[("kafka.listener.shutdown-timeout", "1s")],
    )
    .await;
    wait_until(Duration::from_secs(60), "the slow handler to start", || {
        SLOW_STARTED.load(Ordering::SeqCst)
    })
    .await;
    let report = app.shutdown().await;
    assert_eq!(report.listeners.handlers_cut_off, 1, "{report}");
    assert!(
        report.elapsed < Duration::from_secs(10),
        "shutdown took {:?}",
        report.elapsed
    );
    let committed = committed_offsets(&bs, &group, &topic, 1).await;
    assert_eq!(
        committed.get(&0).copied(),
        Some(5),
        "committed up to, not including, the cut-off record"
    );

    SLOW_BLOCKS.store(false, Ordering::SeqCst);
    let app = start(&bs, "slow", &topic, &group, &[]).await;
    wait_until(
        Duration::from_secs(60),
        "the cut-off record to be redelivered",
        || keys(&SLOW_SEEN).iter().any(|k| k == "slow"),
    )
    .await;
    wait_until(Duration::from_secs(60), "all 11 records", || {
        distinct(&SLOW_SEEN) == 11
    })
    .await;
    assert!(app.shutdown().await.is_clean());
    assert_eq!(
        keys(&SLOW_SEEN).len(),
        11,
        "only the cut-off record is delivered twice, and it never finished the first time"
    );
    assert_committed_at_end(&bs, &group, &topic, 1).await;
}

static SPLIT_SEEN: Seen = Mutex::new(Vec::new());

#[kafka_listener(
    id = "split",
    topics = "${test.topic}",
    group_id = "${test.group}",
    ack_mode = "record"
)]
async fn split(meta: RecordMeta, key: Key<String>) {
    record(&SPLIT_SEEN, &meta, &key);
    // A little work per record so the rebalance happens while records are in flight.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_partitions_and_a_rebalance_loses_nothing() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("split"), unique("g"));
    create_topic(&bs, &topic, 6).await;
    produce_seq(&bs, &topic, 0, 1500).await;
    let a = start(&bs, "split", &topic, &group, &[]).await;
    let owned = |app: &Application| {
        app.container("split")
            .map(|c| c.assigned_partitions().len())
            .unwrap_or(0)
    };
    wait_until(
        Duration::from_secs(60),
        "consumer A to own all 6 partitions",
        || owned(&a) == 6,
    )
    .await;
    let b = start(&bs, "split", &topic, &group, &[]).await;
    wait_until(
        Duration::from_secs(60),
        "A and B to split the partitions",
        || owned(&a) > 0 && owned(&b) > 0 && owned(&a) + owned(&b) == 6,
    )
    .await;
    let (a_before, b_before) = (a.finished(), b.finished());
    produce_seq(&bs, &topic, 1500, 1500).await;
    wait_until(Duration::from_secs(60), "3000 records", || {
        distinct(&SPLIT_SEEN) == 3000
    })
    .await;
    assert!(
        a.finished() > a_before && b.finished() > b_before,
        "both consumers handled records"
    );
    // B leaves gracefully while records flow; A takes its partitions back.
    let produce_more = produce_seq(&bs, &topic, 3000, 1000);
    let (report_b, _) = tokio::join!(b.shutdown(), produce_more);
    assert!(report_b.is_clean(), "{report_b}");
    wait_until(
        Duration::from_secs(60),
        "A to own all 6 partitions again",
        || owned(&a) == 6,
    )
    .await;
    wait_until(Duration::from_secs(90), "all 4000 records", || {
        distinct(&SPLIT_SEEN) == 4000
    })
    .await;
    let report_a = a.shutdown().await;
    assert!(report_a.is_clean(), "{report_a}");
    let all = keys(&SPLIT_SEEN);
    let dupes = all.len() - distinct(&SPLIT_SEEN);
    assert_eq!(
        dupes, 0,
        "graceful joins and leaves must not duplicate records"
    );
    assert_committed_at_end(&bs, &group, &topic, 6).await;
}
