//! Dead letters and the circuit breaker, against the real broker: Spring's headers as Spring
//! encodes them, the offset moving past a record only after its dead letter was acknowledged,
//! a missing dead-letter topic holding the partition (and only it) until it exists, only the
//! failing partition waiting during a back-off, and the breaker stopping a listener that would
//! drain its topic into the dead-letter topic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_listener::dead_letter::headers;
use kafka_listener::{
    kafka_listener, Application, BatchListenerFailed, BoxError, DeadLetterPublisher,
    DeliveryAttempt, Key, NonRetryable, RecordMeta,
};
use kafka_listener_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Every call per topic: key, partition, attempt, when.
type Call = (String, i32, u32, Instant);
static CALLS: Mutex<Option<HashMap<String, Vec<Call>>>> = Mutex::new(None);

fn record_call(meta: &RecordMeta, key: &str, attempt: u32) {
    CALLS
        .lock()
        .expect("calls")
        .get_or_insert_with(HashMap::new)
        .entry(meta.topic.to_string())
        .or_default()
        .push((key.to_owned(), meta.partition, attempt, Instant::now()));
}

fn calls(topic: &str) -> Vec<Call> {
    CALLS
        .lock()
        .expect("calls")
        .as_ref()
        .and_then(|m| m.get(topic).cloned())
        .unwrap_or_default()
}

fn calls_of(topic: &str, key: &str) -> Vec<Call> {
    calls(topic).into_iter().filter(|c| c.0 == key).collect()
}

/// `poison*` always fails; `invalid*` fails, marked not retryable; `flaky` fails twice, then
/// succeeds; anything else succeeds.
#[kafka_listener(id = "dead_letters", topics = "${dl.topic}", group_id = "${dl.group}")]
async fn dead_letters(
    meta: RecordMeta,
    key: Key<String>,
    attempt: DeliveryAttempt,
) -> Result<(), BoxError> {
    let key = key.0;
    record_call(&meta, &key, attempt.0);
    if key.starts_with("poison") {
        Err("downstream is down".into())
    } else if key.starts_with("invalid") {
        Err(NonRetryable::new("amount_cents is negative").into())
    } else if key == "flaky" && attempt.0 < 3 {
        Err("downstream timed out".into())
    } else {
        Ok(())
    }
}

fn vars<'a>(
    topic: &'a str,
    group: &'a str,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("dl.topic", topic),
        ("dl.group", group),
        ("kafka.listener.ack-mode", "record"),
        ("kafka.listener.retry.attempts", "3"),
    ];
    v.extend_from_slice(more);
    v
}

async fn send_with_header(bs: &str, topic: &str, partition: i32, key: &str, value: &[u8]) -> i64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .create()
        .expect("producer");
    let delivery = producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value)
                .timestamp(1_700_000_000_123)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "trace",
                    value: Some("abc-123"),
                })),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("send: {e}"));
    delivery.offset
}

fn be_i64(v: Option<&[u8]>) -> i64 {
    i64::from_be_bytes(v.expect("header").try_into().expect("8 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_always_fails_becomes_one_dead_letter_with_springs_headers() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("dl-basic"), unique("dl-basic-g"));
    let (dlt, invalid) = (format!("{topic}.DLT"), format!("{topic}.invalid"));
    create_topic(&bs, &topic, 3).await;
    create_topic(&bs, &dlt, 3).await;
    create_topic(&bs, &invalid, 1).await;
    let poison_offset = send_with_header(&bs, &topic, 1, "poison", b"{\"id\":7}").await;
    send_with_header(&bs, &topic, 2, "invalid-1", b"{\"id\":8}").await;
    produce(
        &bs,
        &topic,
        &[
            ("flaky".into(), b"f".to_vec()),
            ("fine-1".into(), b"a".to_vec()),
            ("fine-2".into(), b"b".to_vec()),
        ],
    )
    .await;

    // The properties enable dead letters; the builder's recoverer replaces that publisher with
    // one that routes errors marked not retryable to `<topic>.invalid`.
    let mut builder = Application::builder()
        .only(["dead_letters"])
        .env(Vec::new())
        .set("kafka.bootstrap-servers", &bs)
        .set("kafka.listener.retry.backoff.delay", "10ms")
        .set("kafka.listener.dead-letter.enabled", "true")
        .recoverer("dead_letters", |producer, group| {
            DeadLetterPublisher::new(producer.clone(), group).route(|record, failure| {
                NonRetryable::is_in(failure.error()).then(|| format!("{}.invalid", record.topic()))
            })
        });
    for (k, v) in vars(&topic, &group, &[]) {
        builder = builder.set(k, v);
    }
    let app = builder.start().await.expect("start");
    let letters = read_topic(&bs, &dlt, 1, Duration::from_secs(60)).await;
    let invalids = read_topic(&bs, &invalid, 1, Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(30), "every record handled", || {
        calls_of(&topic, "fine-1").len() + calls_of(&topic, "fine-2").len() == 2
            && calls_of(&topic, "flaky").len() == 3
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_committed_at_end(&bs, &group, &topic, 3).await;

    assert_eq!(calls_of(&topic, "poison").len(), 3, "three attempts");
    assert_eq!(calls_of(&topic, "invalid-1").len(), 1, "not retryable");
    assert_eq!(calls_of(&topic, "flaky").len(), 3, "succeeded on the third");
    // Read again after the shutdown: exactly one dead letter each, none for `flaky`.
    let letters_after = read_topic(&bs, &dlt, 2, Duration::from_secs(3)).await;
    assert_eq!(letters_after.len(), 1, "one dead letter: {letters_after:?}");
    assert_eq!(
        invalids.len(),
        1,
        "the not-retryable record went to .invalid"
    );
    assert_eq!(
        invalids[0].header_str(headers::EXCEPTION_FQCN),
        Some("kafka_listener::NonRetryable")
    );

    let l = &letters[0];
    assert_eq!(l.partition, 1, "same partition as the original");
    assert_eq!(l.key.as_deref(), Some(&b"poison"[..]));
    assert_eq!(l.value.as_deref(), Some(&b"{\"id\":7}"[..]));
    assert_eq!(
        l.header_str("trace"),
        Some("abc-123"),
        "original headers kept"
    );
    assert_eq!(l.header_str(headers::ORIGINAL_TOPIC), Some(topic.as_str()));
    assert_eq!(l.original_position(), Some((1, poison_offset)));
    assert_eq!(
        be_i64(l.header(headers::ORIGINAL_TIMESTAMP)),
        1_700_000_000_123
    );
    assert_eq!(
        l.header_str(headers::ORIGINAL_TIMESTAMP_TYPE),
        Some("CreateTime")
    );
    assert_eq!(
        l.header_str(headers::ORIGINAL_CONSUMER_GROUP),
        Some(group.as_str())
    );
    assert_eq!(
        l.header_str(headers::EXCEPTION_FQCN),
        Some("kafka_listener::RetriesExhausted")
    );
    assert_eq!(l.header_str(headers::EXCEPTION_CAUSE_FQCN), Some("String"));
    assert_eq!(
        l.header_str(headers::EXCEPTION_MESSAGE),
        Some("downstream is down")
    );
    let trace = l.header_str(headers::EXCEPTION_STACKTRACE).expect("trace");
    assert!(
        trace.contains("failed after 3 attempt(s): downstream is down"),
        "{trace}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_topic_holds_only_its_partition_until_it_exists() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("dl-missing"), unique("dl-missing-g"));
    let dlt = format!("{topic}.dead");
    create_topic(&bs, &topic, 2).await;
    let mut held: Vec<(String, Vec<u8>)> = vec![("poison".into(), b"p".to_vec())];
    held.extend((0..5).map(|i| (format!("after-{i}"), b"x".to_vec())));
    produce_to(&bs, &topic, 0, &held).await;
    let others: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("other-{i}"), b"y".to_vec()))
        .collect();
    produce_to(&bs, &topic, 1, &others).await;
    let app = start_listener(
        &bs,
        "dead_letters",
        &vars(
            &topic,
            &group,
            &[
                ("kafka.listener.dead-letter.enabled", "true"),
                ("kafka.listener.dead-letter.topic", "{topic}.dead"),
            ],
        ),
    )
    .await;
    wait_until(Duration::from_secs(30), "partition 1 handled", || {
        calls(&topic).iter().filter(|c| c.1 == 1).count() == 5
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "the poison record given up",
        || calls_of(&topic, "poison").len() == 3,
    )
    .await;
    // The scenario: the dead-letter topic appears 10 s later. Meanwhile partition 0 waits.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let committed = committed_offsets(&bs, &group, &topic, 2).await;
    assert_eq!(
        committed.get(&0).copied().unwrap_or(0),
        0,
        "partition 0 must not move past the record whose dead letter is not published"
    );
    assert_eq!(committed.get(&1).copied(), Some(5), "partition 1 went on");
    assert!(
        calls(&topic).iter().all(|c| !c.0.starts_with("after-")),
        "nothing after the held record was handled"
    );
    create_topic(&bs, &dlt, 2).await;
    wait_until(Duration::from_secs(60), "partition 0 resumed", || {
        calls(&topic)
            .iter()
            .filter(|c| c.0.starts_with("after-"))
            .count()
            == 5
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_committed_at_end(&bs, &group, &topic, 2).await;
    let letters = read_topic(&bs, &dlt, 2, Duration::from_secs(5)).await;
    assert_eq!(letters.len(), 1, "exactly one dead letter: {letters:?}");
    assert_eq!(letters[0].key.as_deref(), Some(&b"poison"[..]));
    assert_eq!(
        calls_of(&topic, "poison").len(),
        3,
        "handled no more after giving up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_failing_partition_waits_during_a_back_off() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("dl-backoff"), unique("dl-backoff-g"));
    create_topic(&bs, &topic, 3).await;
    produce_to(&bs, &topic, 0, &[("flaky".into(), b"f".to_vec())]).await;
    for p in 1..3 {
        let records: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("p{p}-{i}"), b"x".to_vec()))
            .collect();
        produce_to(&bs, &topic, p, &records).await;
    }
    let app = start_listener(
        &bs,
        "dead_letters",
        &vars(
            &topic,
            &group,
            &[("kafka.listener.retry.backoff.delay", "5s")],
        ),
    )
    .await;
    wait_until(Duration::from_secs(60), "flaky handled three times", || {
        calls_of(&topic, "flaky").len() == 3
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_committed_at_end(&bs, &group, &topic, 3).await;
    let flaky = calls_of(&topic, "flaky");
    let (first, second) = (flaky[0].3, flaky[1].3);
    assert!(
        second - first >= Duration::from_secs(5),
        "the back-off is 5 s"
    );
    let others: Vec<Instant> = calls(&topic)
        .iter()
        .filter(|c| c.1 != 0)
        .map(|c| c.3)
        .collect();
    assert_eq!(others.len(), 40);
    assert!(
        others.iter().all(|t| *t < second),
        "every record of partitions 1 and 2 was handled while partition 0 backed off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_stops_the_listener_instead_of_draining_the_topic() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("dl-breaker"), unique("dl-breaker-g"));
    let dlt = format!("{topic}.DLT");
    create_topic(&bs, &topic, 1).await;
    create_topic(&bs, &dlt, 1).await;
    let mut records: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("poison-{i}"), b"p".to_vec()))
        .collect();
    records.extend((0..3).map(|i| (format!("fine-{i}"), b"x".to_vec())));
    produce_to(&bs, &topic, 0, &records).await;
    let app = start_listener(
        &bs,
        "dead_letters",
        &vars(
            &topic,
            &group,
            &[
                ("kafka.listener.retry.attempts", "1"),
                ("kafka.listener.dead-letter.enabled", "true"),
                ("kafka.listener.circuit-breaker.consecutive", "3"),
            ],
        ),
    )
    .await;
    let container = app.container("dead_letters").expect("container").clone();
    wait_until(Duration::from_secs(60), "the breaker trips", || {
        container.is_circuit_breaker_open()
    })
    .await;
    assert_eq!(container.circuit_breaker_trips(), 1);
    let letters = read_topic(&bs, &dlt, 3, Duration::from_secs(30)).await;
    assert_eq!(letters.len(), 3);
    // Open: the fourth poison record is held before its dead letter, nothing after it runs,
    // and the commit stays before it. (A property of a stretch of time: looked at for 2 s.)
    wait_until(Duration::from_secs(10), "the fourth record reached", || {
        !calls_of(&topic, "poison-3").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        read_topic(&bs, &dlt, 4, Duration::from_secs(2)).await.len(),
        3
    );
    assert!(calls(&topic).iter().all(|c| !c.0.starts_with("fine")));
    let committed = committed_offsets(&bs, &group, &topic, 1).await;
    assert_eq!(
        committed.get(&0).copied(),
        Some(3),
        "committed up to the held record"
    );

    container.reset_circuit_breaker();
    wait_until(Duration::from_secs(30), "the rest handled", || {
        calls(&topic)
            .iter()
            .filter(|c| c.0.starts_with("fine"))
            .count()
            == 3
    })
    .await;
    assert!(!container.is_circuit_breaker_open());
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_committed_at_end(&bs, &group, &topic, 1).await;
    assert_eq!(
        read_topic(&bs, &dlt, 5, Duration::from_secs(3)).await.len(),
        4
    );
}

/// Appearances of each key in the batch listener's calls, per topic.
static BATCH_SEEN: Mutex<Option<HashMap<String, HashMap<String, u32>>>> = Mutex::new(None);

fn batch_seen(topic: &str, key: &str) -> u32 {
    BATCH_SEEN
        .lock()
        .expect("seen")
        .as_ref()
        .and_then(|m| m.get(topic).and_then(|k| k.get(key).copied()))
        .unwrap_or(0)
}

/// Fails at the first `poison*` record of its batch, and at `flaky` the first time it sees it:
/// a `BatchListenerFailed` naming that record.
#[kafka_listener(
    id = "dl_batch",
    topics = "${dl.topic}",
    group_id = "${dl.group}",
    batch
)]
async fn dl_batch(keys: Vec<Key<String>>, metas: Vec<RecordMeta>) -> Result<(), BoxError> {
    let mut all = BATCH_SEEN.lock().expect("seen");
    let seen = all
        .get_or_insert_with(HashMap::new)
        .entry(metas[0].topic.to_string())
        .or_default();
    for (index, key) in keys.iter().enumerate() {
        let n = seen.entry(key.0.clone()).or_default();
        *n += 1;
        if key.0.starts_with("poison") || (key.0 == "flaky" && *n == 1) {
            return Err(BatchListenerFailed::new(index, format!("{} failed", key.0)).into());
        }
    }
    Ok(())
}

/// Spring's #4504 shape (two failing records in one batch: the second failure must not lose
/// the records between them) and #4371's (a healthy batch on another partition must not reset
/// the failing partition's count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_at_a_record_commits_what_came_before_and_counts_per_record() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("dl-batch"), unique("dl-batch-g"));
    let dlt = format!("{topic}.DLT");
    create_topic(&bs, &topic, 2).await;
    create_topic(&bs, &dlt, 2).await;
    let keys = ["ok-0", "ok-1", "flaky", "ok-3", "poison", "ok-5"];
    let failing: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|k| (k.to_string(), b"x".to_vec()))
        .collect();
    produce_to(&bs, &topic, 0, &failing).await;
    let healthy: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("p1-{i}"), b"y".to_vec()))
        .collect();
    produce_to(&bs, &topic, 1, &healthy[..20]).await;
    let app = start_listener(
        &bs,
        "dl_batch",
        &vars(
            &topic,
            &group,
            &[
                ("kafka.listener.ack-mode", "batch"),
                ("kafka.listener.retry.backoff.delay", "300ms"),
                ("kafka.listener.dead-letter.enabled", "true"),
            ],
        ),
    )
    .await;
    // Healthy batches on partition 1 while partition 0 retries.
    produce_to(&bs, &topic, 1, &healthy[20..]).await;
    let letters = read_topic(&bs, &dlt, 1, Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(30), "everything handled", || {
        batch_seen(&topic, "ok-5") > 0
            && (0..40).all(|i| batch_seen(&topic, &format!("p1-{i}")) > 0)
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_committed_at_end(&bs, &group, &topic, 2).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].key.as_deref(), Some(&b"poison"[..]));
    assert_eq!(
        read_topic(&bs, &dlt, 2, Duration::from_secs(3)).await.len(),
        1,
        "only the poison record is dead-lettered"
    );
    assert_eq!(
        batch_seen(&topic, "poison"),
        3,
        "three attempts, counted for the poison record alone"
    );
    assert_eq!(batch_seen(&topic, "flaky"), 2, "failed once, then handled");
    for k in ["ok-0", "ok-1"] {
        assert_eq!(
            batch_seen(&topic, k),
            1,
            "{k}: before the first failure, handled once"
        );
    }
    assert_eq!(
        batch_seen(&topic, "ok-3"),
        1,
        "ok-3, between the two failing records, handled once: neither lost nor repeated"
    );
    for i in 0..40 {
        assert_eq!(
            batch_seen(&topic, &format!("p1-{i}")),
            1,
            "partition 1 handled once each"
        );
    }
}
