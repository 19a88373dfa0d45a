//! Seeks, rebalance callbacks, topic patterns, explicit partitions, lifecycle, cooperative
//! rebalancing and rebalancing under load, against the real broker.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_listener::{
    kafka_listener, Application, AssignmentSeeker, Key, RebalanceListener, RecordMeta, SeekTarget,
    Seeker, TopicPartition,
};
use kafka_listener_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

type Call = (String, i32, i64, String);

static CALLS: Mutex<Vec<Call>> = Mutex::new(Vec::new());

fn note(meta: &RecordMeta, key: &str) {
    CALLS.lock().expect("calls lock").push((
        meta.topic.to_string(),
        meta.partition,
        meta.offset,
        key.to_owned(),
    ));
}

fn calls_where(pred: impl Fn(&Call) -> bool) -> Vec<Call> {
    CALLS
        .lock()
        .expect("calls lock")
        .iter()
        .filter(|c| pred(c))
        .cloned()
        .collect()
}

fn keys_of(topic_prefix: &str) -> Vec<String> {
    calls_where(|c| c.0.starts_with(topic_prefix))
        .into_iter()
        .map(|c| c.3)
        .collect()
}

fn distinct(topic_prefix: &str) -> usize {
    keys_of(topic_prefix)
        .into_iter()
        .collect::<HashSet<_>>()
        .len()
}

async fn start(bs: &str, id: &str, vars: &[(&str, &str)]) -> Application {
    start_listener(bs, id, vars).await
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- seek on assignment

/// Seeks every assigned partition to `SEEK_TO` (a timestamp) when it is not zero.
struct SeekToTimestamp;
static SEEK_TO: AtomicI64 = AtomicI64::new(0);

impl RebalanceListener for SeekToTimestamp {
    fn on_partitions_assigned(&self, partitions: &[TopicPartition], seeker: &mut AssignmentSeeker) {
        let ts = SEEK_TO.load(Ordering::SeqCst);
        if ts != 0 {
            seeker.seek_all(partitions, SeekTarget::Timestamp(ts));
        }
    }
}
static SEEK_TO_TIMESTAMP: SeekToTimestamp = SeekToTimestamp;

#[kafka_listener(id = "ts_seek", topics = "${test.topic}", group_id = "${test.group}", rebalance_listener = SEEK_TO_TIMESTAMP)]
async fn ts_seek(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_on_assignment_to_a_timestamp_rereads_exactly_the_newer_records() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("ts-seek"), unique("g"));
    create_topic(&bs, &topic, 2).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .create()
        .expect("producer");
    let (old, new) = (now_ms() - 120_000, now_ms() - 1_000);
    for i in 0..20 {
        let ts = if i < 10 { old } else { new };
        let key = format!("t{i}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload("{}")
                    .timestamp(ts),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
    let vars = [
        ("test.topic", topic.as_str()),
        ("test.group", group.as_str()),
    ];
    let app = start(&bs, "ts_seek", &vars).await;
    wait_until(Duration::from_secs(60), "all 20 records", || {
        distinct(&topic) == 20
    })
    .await;
    assert!(app.shutdown().await.is_clean());

    SEEK_TO.store(old + 60_000, Ordering::SeqCst);
    let app = start(&bs, "ts_seek", &vars).await;
    wait_until(
        Duration::from_secs(60),
        "the 10 newer records again",
        || keys_of(&topic).len() == 30,
    )
    .await;
    assert!(app.shutdown().await.is_clean());
    SEEK_TO.store(0, Ordering::SeqCst);
    let reread: HashSet<String> = keys_of(&topic)[20..].iter().cloned().collect();
    let expected: HashSet<String> = (10..20).map(|i| format!("t{i}")).collect();
    assert_eq!(
        reread, expected,
        "re-read exactly the records at or after the timestamp"
    );
}

// ---------------------------------------------------------------- runtime seek

static REWOUND: AtomicBool = AtomicBool::new(false);

#[kafka_listener(
    id = "rewinder",
    topics = "${test.topic}",
    group_id = "${test.group}",
    ack_mode = "record"
)]
async fn rewinder(meta: RecordMeta, key: Key<String>, seeker: Seeker) {
    note(&meta, &key);
    if key.as_str() == "k5" && !REWOUND.swap(true, Ordering::SeqCst) {
        seeker.seek(SeekTarget::Offset(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_from_a_handler_rereads_from_the_new_position_in_order() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("rewind"), unique("g"));
    create_topic(&bs, &topic, 1).await;
    produce_seq(&bs, &topic, 0, 10).await;
    let app = start(
        &bs,
        "rewinder",
        &[("test.topic", &topic), ("test.group", &group)],
    )
    .await;
    // 0..=5, then the seek (records fetched before it are dropped unhandled), then 2..=9.
    wait_until(
        Duration::from_secs(60),
        "the re-read from offset 2 to reach the end",
        || keys_of(&topic).len() == 14,
    )
    .await;
    assert!(app.shutdown().await.is_clean());
    let offsets: Vec<i64> = calls_where(|c| c.0 == topic).iter().map(|c| c.2).collect();
    let pos = offsets
        .iter()
        .position(|o| *o == 5)
        .expect("offset 5 handled");
    assert_eq!(&offsets[..=pos], &[0, 1, 2, 3, 4, 5]);
    let after: Vec<i64> = offsets[pos + 1..].to_vec();
    assert_eq!(
        after.first(),
        Some(&2),
        "re-read starts at the seek target: {offsets:?}"
    );
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "in order after the seek: {offsets:?}"
    );
    assert_eq!(after.last(), Some(&9));
}

// ---------------------------------------------------------------- topic pattern

#[kafka_listener(
    id = "patterned",
    topic_pattern = "${test.pattern}",
    group_id = "${test.group}"
)]
async fn patterned(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_subscription_picks_up_a_topic_created_after_start() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let prefix = unique("pat");
    let group = unique("g");
    let (first, second) = (format!("{prefix}.a"), format!("{prefix}.b"));
    create_topic(&bs, &first, 1).await;
    produce_seq(&bs, &first, 0, 5).await;
    let pattern = format!("^{}\\..*", prefix.replace('-', "\\-"));
    let app = start(
        &bs,
        "patterned",
        &[
            ("test.pattern", &pattern),
            ("test.group", &group),
            (
                "kafka.consumer.properties.topic.metadata.refresh.interval.ms",
                "1000",
            ),
        ],
    )
    .await;
    wait_until(Duration::from_secs(60), "the first topic's records", || {
        distinct(&first) == 5
    })
    .await;
    create_topic(&bs, &second, 1).await;
    produce_seq(&bs, &second, 100, 5).await;
    wait_until(Duration::from_secs(60), "the new topic's records", || {
        distinct(&second) == 5
    })
    .await;
    assert!(app.shutdown().await.is_clean());
}

// ---------------------------------------------------------------- explicit partitions

#[kafka_listener(id = "explicit", partitions = ["${test.topic}:0", "${test.topic}:2@earliest"], group_id = "${test.group}")]
async fn explicit(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_partitions_are_consumed_alone_and_committed_per_the_ack_mode() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("explicit"), unique("g"));
    create_topic(&bs, &topic, 3).await;
    for p in 0..3 {
        let records: Vec<(String, Vec<u8>)> = (0..5)
            .map(|i| (format!("p{p}-{i}"), b"{}".to_vec()))
            .collect();
        produce_to(&bs, &topic, p, &records).await;
    }
    let app = start(
        &bs,
        "explicit",
        &[("test.topic", &topic), ("test.group", &group)],
    )
    .await;
    wait_until(Duration::from_secs(60), "partitions 0 and 2", || {
        distinct(&topic) == 10
    })
    .await;
    assert_eq!(
        app.container("explicit").map(|c| c.assigned_partitions()),
        Some(vec![(topic.clone(), 0), (topic.clone(), 2)])
    );
    assert!(app.shutdown().await.is_clean());
    let partitions: HashSet<i32> = calls_where(|c| c.0 == topic).iter().map(|c| c.1).collect();
    assert_eq!(partitions, HashSet::from([0, 2]), "partition 1 is not ours");
    let committed = committed_offsets(&bs, &group, &topic, 3).await;
    assert_eq!(
        (committed.get(&0), committed.get(&1), committed.get(&2)),
        (Some(&5), None, Some(&5))
    );
}

// ---------------------------------------------------------------- lifecycle

#[kafka_listener(
    id = "lazy",
    topics = "${test.topic}",
    group_id = "${test.group}",
    auto_startup = false
)]
async fn lazy(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_start_stop_pause_and_resume_by_id() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("lazy"), unique("g"));
    create_topic(&bs, &topic, 2).await;
    produce_seq(&bs, &topic, 0, 10).await;
    let app = start(
        &bs,
        "lazy",
        &[("test.topic", &topic), ("test.group", &group)],
    )
    .await;
    let container = app.registry().container("lazy").expect("registered by id");
    assert!(!container.is_running(), "auto_startup = false: not started");

    container.start().expect("start by id");
    wait_until(Duration::from_secs(60), "first 10 records", || {
        distinct(&topic) == 10
    })
    .await;

    container.pause();
    wait_until(Duration::from_secs(30), "assignment while paused", || {
        container.assigned_partitions().len() == 2
    })
    .await;
    produce_seq(&bs, &topic, 10, 10).await;
    // Absence of consumption can only be observed over a window: 2 s is 20 poll turns.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(distinct(&topic), 10, "nothing consumed while paused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        container.assigned_partitions().len(),
        2,
        "a paused consumer stays in the group"
    );
    container.resume();
    wait_until(Duration::from_secs(60), "20 records after resume", || {
        distinct(&topic) == 20
    })
    .await;

    let report = container.stop_gracefully(Duration::from_secs(10)).await;
    assert_eq!(report.commit_failures, 0);
    assert!(!container.is_running());
    produce_seq(&bs, &topic, 20, 10).await;
    container.start().expect("restart by id");
    wait_until(Duration::from_secs(60), "30 records after restart", || {
        distinct(&topic) == 30
    })
    .await;
    assert!(app.shutdown().await.is_clean());
    assert_eq!(
        keys_of(&topic).len(),
        30,
        "stop and restart redelivered nothing"
    );
}

// ---------------------------------------------------------------- cooperative-sticky

static COOP_REVOKED: Mutex<Vec<TopicPartition>> = Mutex::new(Vec::new());
struct CountRevocations;
impl RebalanceListener for CountRevocations {
    fn on_partitions_revoked_after_commit(&self, partitions: &[TopicPartition]) {
        COOP_REVOKED
            .lock()
            .expect("lock")
            .extend_from_slice(partitions);
    }
}
static COUNT_REVOCATIONS: CountRevocations = CountRevocations;

#[kafka_listener(id = "coop", topics = "${test.topic}", group_id = "${test.group}", ack_mode = "record", rebalance_listener = COUNT_REVOCATIONS)]
async fn coop(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_the_partitions_that_change_owner() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("coop"), unique("g"));
    create_topic(&bs, &topic, 6).await;
    produce_seq(&bs, &topic, 0, 600).await;
    let vars = [
        ("test.topic", topic.as_str()),
        ("test.group", group.as_str()),
        (
            "kafka.consumer.properties.partition.assignment.strategy",
            "cooperative-sticky",
        ),
    ];
    let owned = |app: &Application| {
        app.container("coop")
            .map(|c| c.assigned_partitions())
            .unwrap_or_default()
    };
    let a = start(&bs, "coop", &vars).await;
    wait_until(Duration::from_secs(60), "A owns 6", || owned(&a).len() == 6).await;
    wait_until(Duration::from_secs(60), "600 records", || {
        distinct(&topic) == 600
    })
    .await;
    let b = start(&bs, "coop", &vars).await;
    wait_until(
        Duration::from_secs(60),
        "A and B share the partitions",
        || {
            let (x, y) = (owned(&a), owned(&b));
            !x.is_empty() && !y.is_empty() && x.len() + y.len() == 6
        },
    )
    .await;
    let moved: HashSet<(String, i32)> = owned(&b).into_iter().collect();
    let revoked: HashSet<(String, i32)> = COOP_REVOKED
        .lock()
        .expect("lock")
        .iter()
        .filter(|tp| tp.topic == topic)
        .map(|tp| (tp.topic.clone(), tp.partition))
        .collect();
    assert_eq!(
        revoked, moved,
        "A gave up exactly the partitions B took, and kept the rest uninterrupted"
    );
    produce_seq(&bs, &topic, 600, 600).await;
    wait_until(Duration::from_secs(60), "1200 records", || {
        distinct(&topic) == 1200
    })
    .await;
    let (ra, rb) = tokio::join!(a.shutdown(), b.shutdown());
    assert!(ra.is_clean() && rb.is_clean());
    assert_eq!(keys_of(&topic).len(), 1200, "no duplicates");
}

// ---------------------------------------------------------------- rebalance under load

#[kafka_listener(id = "churn", topics = "${test.topic}", group_id = "${test.group}")]
async fn churn(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_records_through_joins_and_leaves_lose_nothing_and_repeat_nothing() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("churn"), unique("g"));
    create_topic(&bs, &topic, 6).await;
    let vars = [
        ("test.topic", topic.as_str()),
        ("test.group", group.as_str()),
    ];
    let owned = |app: &Application| {
        app.container("churn")
            .map(|c| c.assigned_partitions().len())
            .unwrap_or(0)
    };
    let a = start(&bs, "churn", &vars).await;
    let b = start(&bs, "churn", &vars).await;
    wait_until(Duration::from_secs(60), "A and B split", || {
        owned(&a) + owned(&b) == 6 && owned(&a) > 0 && owned(&b) > 0
    })
    .await;

    // Produce in steps, with the membership changing in between.
    produce_seq(&bs, &topic, 0, 5_000).await;
    let c = start(&bs, "churn", &vars).await; // a third joins
    produce_seq(&bs, &topic, 5_000, 5_000).await;
    wait_until(Duration::from_secs(60), "C to take partitions", || {
        owned(&c) > 0
    })
    .await;
    let (report_a, _) = tokio::join!(a.shutdown(), produce_seq(&bs, &topic, 10_000, 5_000)); // one leaves
    assert!(report_a.is_clean(), "{report_a}");
    produce_seq(&bs, &topic, 15_000, 5_000).await;
    wait_until(Duration::from_secs(120), "20,000 records", || {
        distinct(&topic) == 20_000
    })
    .await;
    let (rb, rc) = tokio::join!(b.shutdown(), c.shutdown());
    assert!(rb.is_clean() && rc.is_clean());
    let mut counts: HashMap<String, usize> = HashMap::new();
    for k in keys_of(&topic) {
        *counts.entry(k).or_default() += 1;
    }
    let dupes = counts.values().filter(|n| **n > 1).count();
    assert_eq!(counts.len(), 20_000, "nothing lost");
    assert_eq!(dupes, 0, "graceful joins and leaves repeat nothing");
    let committed = committed_offsets(&bs, &group, &topic, 6).await;
    let end = end_offsets(&bs, &topic, 6).await;
    for p in 0..6 {
        assert_eq!(committed.get(&p).copied(), Some(end[&p]), "partition {p}");
    }
}

// ---------------------------------------------------------------- back-pressure across rebalances

#[kafka_listener(
    id = "backlogged",
    topics = "${test.topic}",
    group_id = "${test.group}"
)]
async fn backlogged(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
    // Much slower than fetching, so every partition's queue stays full and paused.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_paused_by_back_pressure_flow_again_after_a_rebalance() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("backlog"), unique("g"));
    create_topic(&bs, &topic, 6).await;
    produce_seq(&bs, &topic, 0, 1_200).await;
    // librdkafka keeps a partition's pause across revoke and re-assignment: a container that
    // forgot to lift its back-pressure pauses would never fetch these partitions again.
    let vars = [
        ("test.topic", topic.as_str()),
        ("test.group", group.as_str()),
        ("kafka.consumer.max-poll-records", "10"),
    ];
    let a = start(&bs, "backlogged", &vars).await;
    wait_until(
        Duration::from_secs(60),
        "A to be working through the backlog",
        || distinct(&topic) > 60,
    )
    .await;
    let b = start(&bs, "backlogged", &vars).await;
    wait_until(
        Duration::from_secs(90),
        "all 1,200 records after the rebalance",
        || distinct(&topic) == 1_200,
    )
    .await;
    let (ra, rb) = tokio::join!(a.shutdown(), b.shutdown());
    assert!(ra.is_clean() && rb.is_clean());
    assert_eq!(keys_of(&topic).len(), 1_200, "no duplicates");
}
