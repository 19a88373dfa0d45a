//! Paths a review found where the delivery promise broke: a nack racing later records, a
//! failed seek, an argument that is unavailable at shutdown, explicit partitions with several
//! consumers, static membership with several consumers. Each test failed before its fix.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use kafka_listener::{
    kafka_listener, Acknowledgment, Application, Key, ListenerRegistry, ProducerRecord, RecordMeta,
    SeekTarget, Seeker,
};
use kafka_listener_tests::*;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// (topic, partition, offset, key) of every handler call, across tests (each has its own topics).
static CALLS: Mutex<Vec<(String, i32, i64, String)>> = Mutex::new(Vec::new());

fn note(meta: &RecordMeta, key: &str) {
    CALLS.lock().expect("calls lock").push((
        meta.topic.to_string(),
        meta.partition,
        meta.offset,
        key.to_owned(),
    ));
}

fn calls(topic: &str) -> Vec<(i32, i64, String)> {
    CALLS
        .lock()
        .expect("calls lock")
        .iter()
        .filter(|c| c.0 == topic)
        .map(|c| (c.1, c.2, c.3.clone()))
        .collect()
}

fn distinct_keys(topic: &str) -> usize {
    calls(topic)
        .into_iter()
        .map(|c| c.2)
        .collect::<HashSet<_>>()
        .len()
}

/// Topics whose one-off action (nack, seek) already happened.
static DONE_ONCE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn first_time(topic: &str) -> bool {
    let mut done = DONE_ONCE.lock().expect("once lock");
    if done.iter().any(|t| t == topic) {
        return false;
    }
    done.push(topic.to_owned());
    true
}

async fn start(
    bs: &str,
    id: &str,
    topic: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> Application {
    let mut vars = vec![("test.topic", topic), ("test.group", group)];
    vars.extend_from_slice(extra);
    start_listener(bs, id, &vars).await
}

// --- a nack stops its partition at once ---------------------------------------------------

const NACKED_AT: i64 = 1500;
const BACKLOG: usize = 6000;

#[kafka_listener(
    id = "nack_backlog",
    topics = "${test.topic}",
    group_id = "${test.group}"
)]
async fn nack_backlog(meta: RecordMeta, key: Key<String>, ack: Acknowledgment) {
    note(&meta, &key);
    if meta.offset == NACKED_AT && first_time(&meta.topic) {
        ack.nack(Duration::from_secs(3));
    }
}

async fn nack_under_a_backlog(bs: String, mode: &'static str) {
    let (topic, group) = (unique(&format!("nack-backlog-{mode}")), unique("g"));
    create_topic(&bs, &topic, 1).await;
    produce_seq(&bs, &topic, 0, BACKLOG).await;
    let app = start(
        &bs,
        "nack_backlog",
        &topic,
        &group,
        &[("kafka.listener.nack_backlog.ack-mode", mode)],
    )
    .await;
    wait_until(Duration::from_secs(60), "the nack", || {
        calls(&topic).iter().any(|c| c.1 == NACKED_AT)
    })
    .await;
    // During the delay nothing at or after the nacked offset may be committed: a crash now
    // would otherwise lose the nacked record and everything handled behind it. The commit is
    // sampled every 100 ms until the redelivery (3 s delay; 60 s deadline).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{mode}: the nacked record was never redelivered"
        );
        // Read the commit first: if the redelivery has not happened after the read, it had not
        // happened before it either.
        let committed = committed_offsets(&bs, &group, &topic, 1).await;
        let redelivered = calls(&topic).iter().filter(|c| c.1 == NACKED_AT).count() > 1;
        if redelivered {
            break;
        }
        let at = committed.get(&0).copied().unwrap_or(0);
        assert!(
            at <= NACKED_AT,
            "{mode}: committed {at} passed the nacked offset {NACKED_AT} before its redelivery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(Duration::from_secs(60), "every record", || {
        distinct_keys(&topic) == BACKLOG
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{mode}: {report}");

    let offsets: Vec<i64> = calls(&topic).iter().map(|c| c.1).collect();
    let nacked = offsets
        .iter()
        .position(|o| *o == NACKED_AT)
        .expect("nacked record handled");
    assert_eq!(
        offsets.get(nacked + 1),
        Some(&NACKED_AT),
        "{mode}: the next record handled after the nack is the nacked one again, not a later one"
    );
    let mut expected: Vec<i64> = (0..=NACKED_AT).collect();
    expected.extend(NACKED_AT..BACKLOG as i64);
    assert_eq!(
        offsets, expected,
        "{mode}: every record once, in order, the nacked one twice"
    );
    assert_committed_at_end(&bs, &group, &topic, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_under_a_backlog_holds_back_every_later_record_until_the_rewind() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let runs = ["batch", "record"].map(|m| tokio::spawn(nack_under_a_backlog(bs.clone(), m)));
    for run in runs {
        if let Err(e) = run.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

// --- a failed seek leaves no gap ------------------------------------------------------------

const SEEK_AT: i64 = 20;

#[kafka_listener(id = "failing_seek", topics = "seeks", group_id = "failing-seek")]
async fn failing_seek(meta: RecordMeta, key: Key<String>, seeker: Seeker) {
    note(&meta, &key);
    if meta.offset == SEEK_AT && first_time(&meta.topic) {
        // Resolving a relative seek reads the committed offset: the embedded cluster is set
        // to fail that request, so this seek cannot be applied.
        seeker.seek(SeekTarget::Relative(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_that_fails_redelivers_what_its_partition_dropped_while_it_was_pending() {
    init_logging();
    let app = Application::builder()
        .only(["failing_seek"])
        .env(vec![("KL_TEST".into(), "1".into())])
        .set("kafka.bootstrap-servers", "embedded")
        .start()
        .await
        .expect("embedded app starts");
    let producer = app.producer().clone();
    let send = |from: usize, to: usize| {
        let producer = producer.clone();
        async move {
            for i in from..to {
                let record = ProducerRecord::new("seeks", format!("{{\"seq\":{i}}}"))
                    .key(format!("k{i}"))
                    .partition(0);
                producer
                    .send_record(record)
                    .await
                    .expect("send to the embedded cluster");
            }
        }
    };
    send(0, 10).await;
    wait_until(Duration::from_secs(30), "the first records", || {
        distinct_keys("seeks") == 10
    })
    .await;
    app.embedded()
        .expect("embedded cluster")
        .inject_request_errors(
            RDKafkaApiKey::OffsetFetch,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
        )
        .expect("inject");
    send(10, 400).await;
    wait_until(
        Duration::from_secs(30),
        "every record after the failed seek",
        || distinct_keys("seeks") == 400,
    )
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    let first: Vec<i64> = {
        let mut seen = HashSet::new();
        calls("seeks")
            .into_iter()
            .filter(|c| seen.insert(c.1))
            .map(|c| c.1)
            .collect()
    };
    assert_eq!(
        first,
        (0..400).collect::<Vec<i64>>(),
        "first deliveries in order, none missing"
    );
}

// --- an unavailable argument is not a poison record ------------------------------------------

#[kafka_listener(
    id = "registry_user",
    topics = "${test.topic}",
    group_id = "${test.group}"
)]
async fn registry_user(meta: RecordMeta, key: Key<String>, registry: ListenerRegistry) {
    note(&meta, &key);
    assert!(!registry.ids().is_empty());
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_argument_during_shutdown_skips_and_commits_nothing_unhandled() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("registry-shutdown"), unique("g"));
    create_topic(&bs, &topic, 1).await;
    produce_seq(&bs, &topic, 0, 5000).await;
    let app = start(&bs, "registry_user", &topic, &group, &[]).await;
    wait_until(Duration::from_secs(60), "a backlog in progress", || {
        calls(&topic).len() >= 300
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.listeners.recovered, 0,
        "no record was skipped for an argument the application could not provide: {report}"
    );
    let handled: HashSet<i64> = calls(&topic).iter().map(|c| c.1).collect();
    let committed = committed_offsets(&bs, &group, &topic, 1).await;
    let at = committed.get(&0).copied().unwrap_or(0);
    let missing: Vec<i64> = (0..at).filter(|o| !handled.contains(o)).collect();
    assert!(
        missing.is_empty(),
        "committed {at}, but {} records below it were never handled (first {:?})",
        missing.len(),
        missing.first()
    );
}

// --- explicit partitions × concurrency --------------------------------------------------------

#[kafka_listener(
    id = "explicit_split",
    partitions = [
        "${test.topic}:0",
        "${test.topic}:1",
        "${test.topic}:2",
        "${test.topic}:3"
    ],
    group_id = "${test.group}"
)]
async fn explicit_split(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_partitions_are_split_among_the_consumers_from_kafka_listener_concurrency() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("explicit-split"), unique("g"));
    create_topic(&bs, &topic, 4).await;
    produce_seq(&bs, &topic, 0, 800).await;
    let app = start(
        &bs,
        "explicit_split",
        &topic,
        &group,
        &[("kafka.listener.concurrency", "3")],
    )
    .await;
    let container = app.container("explicit_split").expect("container");
    let mut assigned = container.assigned_partitions();
    assigned.sort();
    let expected: Vec<(String, i32)> = (0..4).map(|p| (topic.clone(), p)).collect();
    assert_eq!(
        assigned, expected,
        "each partition assigned once across the consumers"
    );
    wait_until(Duration::from_secs(60), "800 records", || {
        distinct_keys(&topic) == 800
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(calls(&topic).len(), 800, "each record handled once");
    assert_committed_at_end(&bs, &group, &topic, 4).await;
}

// --- static membership × concurrency ----------------------------------------------------------

#[kafka_listener(
    id = "static_members",
    topics = "${test.topic}",
    group_id = "${test.group}",
    concurrency = 2
)]
async fn static_members(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_membership_gives_each_consumer_of_a_listener_its_own_instance_id() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group, instance) = (unique("static"), unique("g"), unique("instance"));
    create_topic(&bs, &topic, 2).await;
    let app = start(
        &bs,
        "static_members",
        &topic,
        &group,
        &[(
            "kafka.consumer.properties.group.instance.id",
            instance.as_str(),
        )],
    )
    .await;
    let container = app.container("static_members").expect("container");
    // Fenced consumers (one instance id for both) never hold both partitions at once.
    wait_until(Duration::from_secs(60), "both partitions assigned", || {
        container.assigned_partitions().len() == 2
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while group_members(&bs, &group).await != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the group never had two stable members"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce_seq(&bs, &topic, 0, 200).await;
    wait_until(Duration::from_secs(60), "200 records", || {
        distinct_keys(&topic) == 200
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    let per_partition: HashMap<i32, usize> =
        calls(&topic).iter().fold(HashMap::new(), |mut m, c| {
            *m.entry(c.0).or_default() += 1;
            m
        });
    assert_eq!(per_partition.values().sum::<usize>(), 200, "each once");
    assert_committed_at_end(&bs, &group, &topic, 2).await;
}

// --- memory bounded in bytes -------------------------------------------------------------

#[kafka_listener(
    id = "big_records",
    topics = "${test.topic}",
    group_id = "${test.group}"
)]
async fn big_records(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_waiting_for_a_slow_handler_stay_within_the_byte_budget() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("big-records"), unique("g"));
    create_topic(&bs, &topic, 1).await;
    let value = vec![b'x'; 256 * 1024];
    let records: Vec<(String, Vec<u8>)> =
        (0..120).map(|i| (format!("k{i}"), value.clone())).collect();
    produce(&bs, &topic, &records).await;
    const BUDGET: usize = 4 << 20;
    let app = start(
        &bs,
        "big_records",
        &topic,
        &group,
        &[
            ("kafka.listener.max-buffered-bytes", "4MB"),
            ("kafka.consumer.max-poll-records", "4"),
        ],
    )
    .await;
    let container = app.container("big_records").expect("container").clone();
    // 30 MiB wait behind a handler that takes 10 ms per record: without a byte budget the
    // container would take all of it (2,000 records per partition before pausing).
    let mut peak = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while distinct_keys(&topic) < 120 {
        assert!(
            std::time::Instant::now() < deadline,
            "not every big record was handled within 120 s"
        );
        peak = peak.max(container.buffered_bytes());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert!(peak > 0, "the sampling saw records buffered");
    assert!(
        peak <= BUDGET,
        "{peak} bytes buffered, above the 4 MiB budget"
    );
    assert_eq!(calls(&topic).len(), 120, "each record once");
    assert_committed_at_end(&bs, &group, &topic, 1).await;
}

// --- admin properties are applied --------------------------------------------------------

#[kafka_listener(id = "admin_props", topics = "admin-props", group_id = "admin-props")]
async fn admin_props(meta: RecordMeta, key: Key<String>) {
    note(&meta, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_properties_reach_the_admin_client() {
    init_logging();
    // A property librdkafka does not know fails the start-up check's client only if the
    // admin properties are really applied (they were parsed and dropped before).
    let message = start_error(
        embedded_app("admin_props").set("kafka.admin.properties.no.such.admin.property", "1"),
        "an unknown admin property must fail start-up",
    )
    .await;
    assert!(
        message.contains("start-up check") && message.contains("no.such.admin.property"),
        "{message}"
    );
}
