//! Every ack mode, manual acknowledgement, nack and slow handlers, against the real broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_listener::{
    kafka_listener, Acknowledgment, Application, Key, RebalanceListener, RecordMeta, TopicPartition,
};
use kafka_listener_tests::*;

/// (topic, partition, offset, key, when) of every handler call, across tests (each test has
/// its own topics).
type Call = (String, i32, i64, String, Instant);

static CALLS: Mutex<Vec<Call>> = Mutex::new(Vec::new());

fn note(meta: &RecordMeta, key: &str) {
    CALLS.lock().expect("calls lock").push((
        meta.topic.to_string(),
        meta.partition,
        meta.offset,
        key.to_owned(),
        Instant::now(),
    ));
}

fn calls(topic: &str) -> Vec<(i32, i64, String, Instant)> {
    CALLS
        .lock()
        .expect("calls lock")
        .iter()
        .filter(|c| c.0 == topic)
        .map(|c| (c.1, c.2, c.3.clone(), c.4))
        .collect()
}

fn distinct_keys(topic: &str) -> usize {
    calls(topic)
        .into_iter()
        .map(|c| c.2)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

async fn start(
    bs: &str,
    id: &str,
    topic: &str,
    group: &str,
    extra: &[(String, String)],
) -> Application {
    let mut vars = vec![("test.topic", topic), ("test.group", group)];
    vars.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    start_listener(bs, id, &vars).await
}

#[kafka_listener(id = "any_mode", topics = "${test.topic}", group_id = "${test.group}")]
async fn any_mode(meta: RecordMeta, key: Key<String>, ack: Acknowledgment) {
    note(&meta, &key);
    ack.acknowledge();
}

async fn mode_commits_everything_after_graceful_shutdown(bs: String, mode: &'static str) {
    let (topic, group) = (unique(&format!("mode-{mode}")), unique("g"));
    create_topic(&bs, &topic, 3).await;
    produce_seq(&bs, &topic, 0, 600).await;
    let extra = vec![
        (
            "kafka.listener.any_mode.ack-mode".to_owned(),
            mode.to_owned(),
        ),
        ("kafka.listener.ack-count".to_owned(), "50".to_owned()),
        ("kafka.listener.ack-time".to_owned(), "200ms".to_owned()),
    ];
    let app = start(&bs, "any_mode", &topic, &group, &extra).await;
    wait_until(
        Duration::from_secs(60),
        &format!("{mode}: 600 records"),
        || distinct_keys(&topic) == 600,
    )
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{mode}: {report}");
    assert_eq!(calls(&topic).len(), 600, "{mode}: each record handled once");
    assert_committed_at_end(&bs, &group, &topic, 3).await;

    // A restart redelivers nothing.
    produce_seq(&bs, &topic, 600, 30).await;
    let app = start(&bs, "any_mode", &topic, &group, &extra).await;
    wait_until(
        Duration::from_secs(60),
        &format!("{mode}: 630 records"),
        || distinct_keys(&topic) == 630,
    )
    .await;
    assert!(app.shutdown().await.is_clean());
    assert_eq!(
        calls(&topic).len(),
        630,
        "{mode}: a graceful restart redelivers nothing"
    );
    assert_committed_at_end(&bs, &group, &topic, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ack_mode_commits_everything_finished_and_a_restart_redelivers_nothing() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let modes = [
        "record",
        "batch",
        "time",
        "count",
        "count_time",
        "manual",
        "manual_immediate",
    ];
    let runs = modes.map(|m| {
        tokio::spawn(mode_commits_everything_after_graceful_shutdown(
            bs.clone(),
            m,
        ))
    });
    for (mode, run) in modes.iter().zip(runs) {
        if let Err(e) = run.await {
            panic!("ack mode {mode}: {e}");
        }
    }
}

static SKIP_ONCE: AtomicBool = AtomicBool::new(true);

#[kafka_listener(
    id = "manual_skip",
    topics = "${test.topic}",
    group_id = "${test.group}",
    ack_mode = "manual"
)]
async fn manual_skip(meta: RecordMeta, key: Key<String>, ack: Acknowledgment) {
    note(&meta, &key);
    if key.as_str() == "k5" && SKIP_ONCE.load(Ordering::SeqCst) {
        return; // not acknowledged
    }
    ack.acknowledge();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_mode_never_commits_past_an_unacknowledged_record_and_redelivers_it() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("manual-skip"), unique("g"));
    create_topic(&bs, &topic, 1).await;
    produce_seq(&bs, &topic, 0, 10).await;
    let app = start(&bs, "manual_skip", &topic, &group, &[]).await;
    wait_until(Duration::from_secs(60), "10 records", || {
        distinct_keys(&topic) == 10
    })
    .await;
    assert!(app.shutdown().await.is_clean());
    let committed = committed_offsets(&bs, &group, &topic, 1).await;
    assert_eq!(
        committed.get(&0).copied(),
        Some(5),
        "commit stops below the unacknowledged k5"
    );

    SKIP_ONCE.store(false, Ordering::SeqCst);
    let app = start(&bs, "manual_skip", &topic, &group, &[]).await;
    wait_until(Duration::from_secs(60), "k5..k9 again", || {
        calls(&topic).len() == 15
    })
    .await;
    assert!(app.shutdown().await.is_clean());
    let second: Vec<String> = calls(&topic)[10..].iter().map(|c| c.2.clone()).collect();
    assert_eq!(
        second,
        ["k5", "k6", "k7", "k8", "k9"],
        "redelivered from the unacknowledged record on"
    );
    assert_committed_at_end(&bs, &group, &topic, 1).await;
}

static NACKED: AtomicBool = AtomicBool::new(false);

#[kafka_listener(
    id = "nacker",
    topics = "${test.topic}",
    group_id = "${test.group}",
    ack_mode = "manual_immediate"
)]
async fn nacker(meta: RecordMeta, key: Key<String>, ack: Acknowledgment) {
    note(&meta, &key);
    if key.as_str() == "nack-me" && !NACKED.swap(true, Ordering::SeqCst) {
        ack.nack(Duration::from_secs(3));
        return;
    }
    if meta.partition == 1 {
        // Partition 1 trickles, so it is visibly flowing while partition 0 waits.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ack.acknowledge();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_redelivers_after_the_delay_and_pauses_only_its_partition() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("nack"), unique("g"));
    create_topic(&bs, &topic, 2).await;
    let p0: Vec<(String, Vec<u8>)> = ["a0", "a1", "nack-me", "a3", "a4"]
        .iter()
        .map(|k| (k.to_string(), b"{}".to_vec()))
        .collect();
    let p1: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("b{i}"), b"{}".to_vec()))
        .collect();
    produce_to(&bs, &topic, 0, &p0).await;
    produce_to(&bs, &topic, 1, &p1).await;
    let app = start(&bs, "nacker", &topic, &group, &[]).await;
    wait_until(Duration::from_secs(60), "all 105 records", || {
        distinct_keys(&topic) == 105
    })
    .await;
    assert!(app.shutdown().await.is_clean());

    let all = calls(&topic);
    let p0_keys: Vec<&str> = all
        .iter()
        .filter(|c| c.0 == 0)
        .map(|c| c.2.as_str())
        .collect();
    assert_eq!(
        p0_keys,
        ["a0", "a1", "nack-me", "nack-me", "a3", "a4"],
        "partition 0 in order, the nacked record twice"
    );
    let first = all
        .iter()
        .find(|c| c.2 == "nack-me")
        .map(|c| c.3)
        .expect("nacked");
    let again = all
        .iter()
        .rev()
        .find(|c| c.2 == "nack-me")
        .map(|c| c.3)
        .expect("redelivered");
    assert!(
        again - first >= Duration::from_millis(2900),
        "redelivered after the delay, not {:?}",
        again - first
    );
    let p1_during = all
        .iter()
        .filter(|c| c.0 == 1 && c.3 > first && c.3 < again)
        .count();
    assert!(
        p1_during >= 10,
        "partition 1 kept flowing during partition 0's nack delay ({p1_during} records)"
    );
    assert_eq!(
        all.iter().filter(|c| c.0 == 1).count(),
        100,
        "partition 1: each record once"
    );
    assert_committed_at_end(&bs, &group, &topic, 2).await;
}

/// Counts every partition movement the slow listener's consumer sees.
struct CountMoves;
static SLOW_MOVES: AtomicUsize = AtomicUsize::new(0);
impl RebalanceListener for CountMoves {
    fn on_partitions_revoked_before_commit(&self, partitions: &[TopicPartition]) {
        SLOW_MOVES.fetch_add(partitions.len(), Ordering::SeqCst);
    }
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        SLOW_MOVES.fetch_add(partitions.len(), Ordering::SeqCst);
    }
}
static COUNT_MOVES: CountMoves = CountMoves;

#[kafka_listener(
    id = "slowpoke",
    topics = "${test.topic}",
    group_id = "${test.group}",
    ack_mode = "record",
    rebalance_listener = COUNT_MOVES
)]
async fn slowpoke(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
    if key.as_str() == "k3" {
        // Twice max.poll.interval.ms: the consumer must not be evicted for it.
        tokio::time::sleep(Duration::from_secs(14)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_slower_than_max_poll_interval_keeps_its_consumer_and_causes_no_duplicates() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("slow-poll"), unique("g"));
    create_topic(&bs, &topic, 2).await;
    produce_seq(&bs, &topic, 0, 40).await;
    let extra = vec![
        (
            "kafka.consumer.properties.max.poll.interval.ms".to_owned(),
            "7000".to_owned(),
        ),
        (
            "kafka.consumer.properties.session.timeout.ms".to_owned(),
            "6000".to_owned(),
        ),
    ];
    let started = Instant::now();
    let app = start(&bs, "slowpoke", &topic, &group, &extra).await;
    wait_until(Duration::from_secs(60), "40 records", || {
        distinct_keys(&topic) == 40
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(14),
        "the slow handler really outlasted max.poll.interval.ms twice"
    );
    assert_eq!(
        SLOW_MOVES.load(Ordering::SeqCst),
        0,
        "no partition was revoked or lost while the handler ran past max.poll.interval.ms"
    );
    assert!(app.shutdown().await.is_clean());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in calls(&topic) {
        *seen.entry(c.2).or_default() += 1;
    }
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "no duplicates: {dupes:?}");
    assert_committed_at_end(&bs, &group, &topic, 2).await;
}
