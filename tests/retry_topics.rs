//! Non-blocking retries through retry topics, against the real broker: the delays between a
//! record's calls, Spring's attempt headers, the final dead letter, and the main topic not
//! held up meanwhile.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_listener::dead_letter::headers as dlt;
use kafka_listener::retry_topic::headers;
use kafka_listener::{kafka_listener, BoxError, ConsumerRecord};
use kafka_listener_tests::*;

/// Every call: key, topic, the attempts header (1 on the main topic), when.
type Call = (String, String, u32, Instant);
static CALLS: Mutex<Vec<Call>> = Mutex::new(Vec::new());

fn calls_of(key: &str) -> Vec<Call> {
    CALLS
        .lock()
        .expect("calls")
        .iter()
        .filter(|c| c.0 == key)
        .cloned()
        .collect()
}

/// `flaky-*` fails on its first two calls; `poison-*` always; anything else succeeds.
#[kafka_listener(id = "retried", topics = "${rt.topic}", group_id = "${rt.group}")]
async fn retried(record: ConsumerRecord) -> Result<(), BoxError> {
    flaky_or_poison(&CALLS, &record)
}

/// Notes the call in `log` (key, topic, Spring's attempts header: 1 on the main topic,
/// when); `poison-*` fails always, `flaky-*` on its first two calls.
fn flaky_or_poison(log: &Mutex<Vec<Call>>, record: &ConsumerRecord) -> Result<(), BoxError> {
    let key = String::from_utf8_lossy(record.key().unwrap_or_default()).into_owned();
    let attempt = record
        .headers()
        .last(headers::ATTEMPTS)
        .flatten()
        .map_or(1, |v| {
            u32::from_be_bytes(v.try_into().expect("4-byte attempts"))
        });
    let calls = {
        let mut all = log.lock().expect("calls");
        all.push((
            key.clone(),
            record.topic().to_owned(),
            attempt,
            Instant::now(),
        ));
        all.iter().filter(|c| c.0 == key).count()
    };
    if key.starts_with("poison") || (key.starts_with("flaky") && calls <= 2) {
        return Err(format!("{key} failed").into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_topics_delay_each_retry_without_holding_the_main_topic_up() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("rt"), unique("rt-g"));
    for t in [
        topic.clone(),
        format!("{topic}-retry-0"),
        format!("{topic}-retry-1"),
        format!("{topic}-dlt"),
    ] {
        create_topic(&bs, &t, 2).await;
    }
    produce_to(
        &bs,
        &topic,
        0,
        &[
            ("flaky-1".into(), b"f".to_vec()),
            ("poison-1".into(), b"p".to_vec()),
        ],
    )
    .await;
    let app = start_listener(
        &bs,
        "retried",
        &[
            ("rt.topic", topic.as_str()),
            ("rt.group", group.as_str()),
            ("kafka.listener.retry-topic.enabled", "true"),
            ("kafka.listener.retry-topic.attempts", "3"),
            ("kafka.listener.retry-topic.backoff.delay", "1s"),
            ("kafka.listener.retry-topic.backoff.multiplier", "2"),
        ],
    )
    .await;
    wait_until(Duration::from_secs(30), "both failed once", || {
        !calls_of("flaky-1").is_empty() && !calls_of("poison-1").is_empty()
    })
    .await;
    // Records behind the failed ones on the same partition are handled at once.
    let behind: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("fine-{i}"), b"x".to_vec()))
        .collect();
    produce_to(&bs, &topic, 0, &behind).await;
    let produced = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the records behind handled",
        || (0..10).all(|i| !calls_of(&format!("fine-{i}")).is_empty()),
    )
    .await;
    let behind_done = Instant::now();
    let letters = read_topic(&bs, &format!("{topic}-dlt"), 1, Duration::from_secs(60)).await;
    wait_until(
        Duration::from_secs(30),
        "flaky handled on its third call",
        || calls_of("flaky-1").len() == 3,
    )
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    for t in [
        topic.clone(),
        format!("{topic}-retry-0"),
        format!("{topic}-retry-1"),
    ] {
        assert_committed_at_end(&bs, &group, &t, 2).await;
    }

    for key in ["flaky-1", "poison-1"] {
        let calls = calls_of(key);
        assert_eq!(calls.len(), 3, "{key}: three calls in all");
        let topics: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(
            topics,
            [
                topic.clone(),
                format!("{topic}-retry-0"),
                format!("{topic}-retry-1")
            ],
            "{key}: the main topic, then each retry topic"
        );
        let attempts: Vec<u32> = calls.iter().map(|c| c.2).collect();
        assert_eq!(attempts, [1, 2, 3], "{key}: Spring's attempts header");
        let (first, second) = (calls[1].3 - calls[0].3, calls[2].3 - calls[1].3);
        // Due 1 s, then 2 s after the failure; a little less is the clock's and the pause's
        // granularity, more is the machine.
        assert!(
            first >= Duration::from_millis(950) && first < Duration::from_secs(6),
            "{key}: first retry after {first:?}, expected about 1 s"
        );
        assert!(
            second >= Duration::from_millis(1950) && second < Duration::from_secs(8),
            "{key}: second retry after {second:?}, expected about 2 s"
        );
    }
    assert!(
        behind_done - produced < Duration::from_secs(3),
        "the main topic was held up: {:?}",
        behind_done - produced
    );
    assert_eq!(letters.len(), 1, "one dead letter");
    let l = &letters[0];
    assert_eq!(l.key.as_deref(), Some(&b"poison-1"[..]));
    assert_eq!(
        l.header_str(dlt::ORIGINAL_TOPIC),
        Some(topic.as_str()),
        "the main topic"
    );
    assert_eq!(
        l.header(headers::ATTEMPTS)
            .map(|v| u32::from_be_bytes(v.try_into().expect("4 bytes"))),
        Some(4)
    );
    assert!(l.header(headers::ORIGINAL_TIMESTAMP).is_some());
    assert_eq!(
        read_topic(&bs, &format!("{topic}-dlt"), 2, Duration::from_secs(3))
            .await
            .len(),
        1,
        "flaky was never dead-lettered"
    );
}

static ATTR_CALLS: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

/// Always fails; retry topics set up by the attribute.
#[kafka_listener(
    id = "retried_attr",
    topics = "${rt2.topic}",
    group_id = "${rt2.group}",
    retry(attempts = 2, backoff = "300ms")
)]
async fn retried_attr(record: ConsumerRecord) -> Result<(), BoxError> {
    ATTR_CALLS
        .lock()
        .expect("calls")
        .push((record.topic().to_owned(), Instant::now()));
    Err("always fails".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_attribute_sets_up_retry_topics() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("rt-attr"), unique("rt-attr-g"));
    for t in [
        topic.clone(),
        format!("{topic}-retry-0"),
        format!("{topic}-dlt"),
    ] {
        create_topic(&bs, &t, 1).await;
    }
    produce_to(&bs, &topic, 0, &[("k".into(), b"v".to_vec())]).await;
    let app = start_listener(
        &bs,
        "retried_attr",
        &[("rt2.topic", topic.as_str()), ("rt2.group", group.as_str())],
    )
    .await;
    let letters = read_topic(&bs, &format!("{topic}-dlt"), 1, Duration::from_secs(60)).await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(letters.len(), 1);
    let calls = ATTR_CALLS.lock().expect("calls").clone();
    let topics: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        topics,
        [topic.clone(), format!("{topic}-retry-0")],
        "two calls in all"
    );
    assert!(calls[1].1 - calls[0].1 >= Duration::from_millis(280));
}

static SINGLE_CALLS: Mutex<Vec<Call>> = Mutex::new(Vec::new());

/// Spring's single fixed-delay retry topic: `poison-*` always fails, `flaky-*` on its first
/// two calls.
#[kafka_listener(
    id = "retried_single",
    topics = "${rt3.topic}",
    group_id = "${rt3.group}",
    retry(attempts = 4, backoff = "500ms", single_topic = true)
)]
async fn retried_single(record: ConsumerRecord) -> Result<(), BoxError> {
    flaky_or_poison(&SINGLE_CALLS, &record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_delay_with_single_topic_retries_through_one_retry_topic() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("rt-single"), unique("rt-single-g"));
    let retry = format!("{topic}-retry");
    for t in [topic.clone(), retry.clone(), format!("{topic}-dlt")] {
        create_topic(&bs, &t, 2).await;
    }
    produce_to(
        &bs,
        &topic,
        0,
        &[
            ("poison-s".into(), b"p".to_vec()),
            ("flaky-s".into(), b"f".to_vec()),
        ],
    )
    .await;
    let app = start_listener(
        &bs,
        "retried_single",
        &[("rt3.topic", topic.as_str()), ("rt3.group", group.as_str())],
    )
    .await;
    let letters = read_topic(&bs, &format!("{topic}-dlt"), 1, Duration::from_secs(60)).await;
    let calls_of = |key: &str| -> Vec<Call> {
        SINGLE_CALLS
            .lock()
            .expect("calls")
            .iter()
            .filter(|c| c.0 == key)
            .cloned()
            .collect()
    };
    wait_until(
        Duration::from_secs(30),
        "flaky handled on its third call",
        || calls_of("flaky-s").len() == 3,
    )
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_committed_at_end(&bs, &group, &topic, 2).await;
    assert_committed_at_end(&bs, &group, &retry, 2).await;

    let poison = calls_of("poison-s");
    let topics: Vec<&str> = poison.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        topics,
        [topic.as_str(), &retry, &retry, &retry],
        "the main topic, then the one retry topic for every retry"
    );
    let attempts: Vec<u32> = poison.iter().map(|c| c.2).collect();
    assert_eq!(attempts, [1, 2, 3, 4], "Spring's attempts header");
    for pair in poison.windows(2) {
        let gap = pair[1].3 - pair[0].3;
        assert!(
            gap >= Duration::from_millis(480) && gap < Duration::from_secs(6),
            "a retry after {gap:?}, expected about 500 ms"
        );
    }
    let flaky: Vec<(String, u32)> = calls_of("flaky-s")
        .into_iter()
        .map(|c| (c.1, c.2))
        .collect();
    assert_eq!(
        flaky,
        [(topic.clone(), 1), (retry.clone(), 2), (retry.clone(), 3)]
    );
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_eq!(letters[0].key.as_deref(), Some(&b"poison-s"[..]));
    assert_eq!(
        letters[0]
            .header(headers::ATTEMPTS)
            .map(|v| u32::from_be_bytes(v.try_into().expect("4 bytes"))),
        Some(5)
    );
    assert_eq!(
        read_topic(&bs, &format!("{topic}-dlt"), 2, Duration::from_secs(2))
            .await
            .len(),
        1,
        "flaky was never dead-lettered"
    );
}
