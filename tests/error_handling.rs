//! The error handler on the embedded cluster: a growing back-off, errors marked not retryable,
//! and the delivery attempt a handler sees.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_listener::{kafka_listener, BoxError, DeliveryAttempt, Key, NonRetryable};
use kafka_listener_tests::*;

/// Every call: key, delivery attempt, when.
static CALLS: Mutex<Vec<(String, u32, Instant)>> = Mutex::new(Vec::new());

fn calls_of(key: &str) -> Vec<(u32, Instant)> {
    CALLS
        .lock()
        .expect("calls")
        .iter()
        .filter(|(k, _, _)| k == key)
        .map(|(_, a, t)| (*a, *t))
        .collect()
}

/// `bad`: fails, marked not retryable. `flaky`: fails twice, then succeeds. `broken`: always
/// fails. `fine`: succeeds.
#[kafka_listener(
    id = "retrying",
    topics = "retrying",
    group_id = "retrying",
    ack_mode = "record"
)]
async fn retrying(key: Key<String>, attempt: DeliveryAttempt) -> Result<(), BoxError> {
    let key = key.0;
    CALLS
        .lock()
        .expect("calls")
        .push((key.clone(), attempt.0, Instant::now()));
    match key.as_str() {
        "bad" => Err(NonRetryable::new("amount is negative").into()),
        "flaky" if attempt.0 < 3 => Err("downstream timed out".into()),
        "broken" => Err("downstream is down".into()),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_more_each_time_skip_what_is_not_retryable_and_count_attempts() {
    init_logging();
    let app = embedded_app("retrying")
        .set("kafka.listener.retry.attempts", "5")
        .set("kafka.listener.retry.backoff.delay", "40ms")
        .set("kafka.listener.retry.backoff.multiplier", "3")
        .set("kafka.listener.retry.backoff.max-delay", "200ms")
        .start()
        .await
        .expect("starts on the embedded cluster");
    for key in ["bad", "flaky", "broken", "fine"] {
        app.producer()
            .send("retrying", key, b"x")
            .await
            .expect("send to the embedded cluster");
    }
    wait_until(Duration::from_secs(30), "the last record handled", || {
        !calls_of("fine").is_empty()
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.listeners.finished, 4);
    assert_eq!(
        report.listeners.recovered, 2,
        "bad and broken were given up"
    );

    let attempts = |key| calls_of(key).iter().map(|(a, _)| *a).collect::<Vec<_>>();
    assert_eq!(attempts("bad"), [1], "not retryable: one call");
    assert_eq!(attempts("flaky"), [1, 2, 3]);
    assert_eq!(attempts("broken"), [1, 2, 3, 4, 5]);
    assert_eq!(attempts("fine"), [1]);

    // 40 ms, then 120, then 200 (capped), 200: each pause at least that long.
    let times: Vec<Instant> = calls_of("broken").iter().map(|(_, t)| *t).collect();
    let pauses: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let at_least = [40u64, 120, 200, 200].map(Duration::from_millis);
    for (i, (pause, min)) in pauses.iter().zip(at_least).enumerate() {
        assert!(
            *pause >= min,
            "pause {} was {pause:?}, expected at least {min:?} ({pauses:?})",
            i + 1
        );
    }
    let counts: HashMap<u32, usize> =
        CALLS
            .lock()
            .expect("calls")
            .iter()
            .fold(HashMap::new(), |mut m, (_, a, _)| {
                *m.entry(*a).or_default() += 1;
                m
            });
    assert_eq!(
        counts.get(&1),
        Some(&4),
        "every record's first call says attempt 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiplier_below_one_is_refused_with_the_key_and_what_is_expected() {
    init_logging();
    let error = start_error(
        embedded_app("retrying").set("kafka.listener.retry.backoff.multiplier", "0.5"),
        "a multiplier of 0.5 must be refused",
    )
    .await;
    assert!(
        error.contains("kafka.listener.retry.backoff.multiplier") && error.contains("at least 1"),
        "{error}"
    );
}

static CLASSIFIED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Fails every call with the record's value as the error message.
#[kafka_listener(
    id = "classified",
    topics = "classified",
    group_id = "classified",
    ack_mode = "record"
)]
async fn classified(key: Key<String>, value: String) -> Result<(), BoxError> {
    CLASSIFIED.lock().expect("calls").push(key.0);
    Err(value.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_own_rule_makes_errors_not_retryable() {
    init_logging();
    let app = embedded_app("classified")
        .set("kafka.listener.retry.attempts", "3")
        .set("kafka.listener.retry.backoff.delay", "10ms")
        .not_retryable("classified", |e| e.to_string().starts_with("invalid"))
        .start()
        .await
        .expect("starts on the embedded cluster");
    for (key, error) in [
        ("a", "invalid amount"),
        ("b", "timeout"),
        ("c", "invalid id"),
    ] {
        app.producer()
            .send("classified", key, error)
            .await
            .expect("send to the embedded cluster");
    }
    let count = |k: &str| {
        CLASSIFIED
            .lock()
            .expect("calls")
            .iter()
            .filter(|c| *c == k)
            .count()
    };
    wait_until(Duration::from_secs(30), "every record given up", || {
        count("c") == 1 && count("b") == 3
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.listeners.recovered, 3);
    assert_eq!((count("a"), count("b"), count("c")), (1, 3, 1));
}

/// Calls, values handled, and whether the nack was made.
static NACKED: Mutex<(u32, Vec<u32>, bool)> = Mutex::new((0, Vec::new(), false));

/// The first call of at least 4 records nacks from its last and fails at index 1
/// (`BatchListenerFailed`); the others succeed. What each call handled is noted: the records before the failing index of the
/// first, all of the others'.
#[kafka_listener(id = "nacked", topics = "nacked", group_id = "nacked", batch)]
async fn nacked(values: Vec<String>, ack: kafka_listener::Acknowledgment) -> Result<(), BoxError> {
    let mut seen = NACKED.lock().expect("seen");
    seen.0 += 1;
    let values: Vec<u32> = values.iter().map(|v| v.parse().expect("number")).collect();
    if !seen.2 && values.len() >= 4 {
        seen.2 = true;
        ack.nack_from(values.len() - 1, Duration::from_millis(10));
        seen.1.extend(&values[..1]);
        return Err(kafka_listener::BatchListenerFailed::new(1, "second record failed").into());
    }
    seen.1.extend(values);
    Ok(())
}

/// A nack asked for further on than the record a batch failed at must not skip the records
/// between them (the review of the batch split found that it did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_beyond_the_failing_record_of_a_batch_skips_nothing() {
    init_logging();
    let app = embedded_app("nacked")
        .set("kafka.listener.retry.backoff.delay", "10ms")
        .set("kafka.listener.ack-mode", "batch")
        .set("kafka.listener.auto-startup", "false")
        .start()
        .await
        .expect("starts on the embedded cluster");
    // One key: one partition, in order; all produced before the listener starts, so the
    // first batch holds them all.
    let container = app.container("nacked").expect("container").clone();
    // Sent together, so they go in one produce batch (the mock cluster returns one batch
    // per fetch).
    let values: Vec<String> = (0..40u32).map(|i| i.to_string()).collect();
    let sends = values
        .iter()
        .map(|v| app.producer().send("nacked", "same", v));
    for sent in futures::future::join_all(sends).await {
        sent.expect("send to the embedded cluster");
    }
    container.start().expect("start");
    wait_until(Duration::from_secs(30), "every record handled", || {
        let seen = NACKED.lock().expect("seen");
        (0..40).all(|i| seen.1.contains(&i))
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    let seen = NACKED.lock().expect("seen");
    assert!(
        seen.2,
        "a batch of at least 4 records was nacked ({} calls)",
        seen.0
    );
}

static HEADER_SEEN: Mutex<Vec<Option<u32>>> = Mutex::new(Vec::new());

/// Notes the `kafka_deliveryAttempt` header; fails twice, then succeeds.
#[kafka_listener(
    id = "attempt_header",
    topics = "attempt_header",
    group_id = "attempt_header"
)]
async fn attempt_header(headers: kafka_listener::Headers) -> Result<(), BoxError> {
    let attempt = headers
        .last("kafka_deliveryAttempt")
        .flatten()
        .map(|v| u32::from_be_bytes(v.try_into().expect("4 bytes")));
    let mut seen = HEADER_SEEN.lock().expect("seen");
    seen.push(attempt);
    if seen.len() < 3 {
        return Err("not yet".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_attempt_header_is_added_when_asked() {
    init_logging();
    let app = embedded_app("attempt_header")
        .set("kafka.listener.retry.backoff.delay", "10ms")
        .set(
            "kafka.listener.attempt_header.delivery-attempt-header",
            "true",
        )
        .start()
        .await
        .expect("starts on the embedded cluster");
    app.producer()
        .send("attempt_header", "k", "v")
        .await
        .expect("send to the embedded cluster");
    wait_until(Duration::from_secs(30), "three calls", || {
        HEADER_SEEN.lock().expect("seen").len() == 3
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        *HEADER_SEEN.lock().expect("seen"),
        [Some(1), Some(2), Some(3)],
        "Spring's kafka_deliveryAttempt, a 4-byte integer per call"
    );
}

static ATTR_CALLS: Mutex<Vec<(u32, Instant)>> = Mutex::new(Vec::new());

/// Always fails; the blocking retries come from the attribute.
#[kafka_listener(
    id = "blocking_attr",
    topics = "blocking-attr",
    group_id = "blocking-attr",
    blocking_retry(attempts = 3, backoff = "60ms", multiplier = 2, max = "100ms")
)]
async fn blocking_attr(attempt: DeliveryAttempt) -> Result<(), BoxError> {
    ATTR_CALLS
        .lock()
        .expect("calls")
        .push((attempt.0, Instant::now()));
    Err("downstream is down".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_retry_in_the_attribute_sets_attempts_and_back_off() {
    init_logging();
    let app = embedded_app("blocking_attr")
        .start()
        .await
        .expect("starts on the embedded cluster");
    app.producer()
        .send("blocking-attr", "k", b"x")
        .await
        .expect("send to the embedded cluster");
    wait_until(Duration::from_secs(30), "the record given up", || {
        app.container("blocking_attr")
            .is_some_and(|c| c.finished() >= 1)
    })
    .await;
    let policy = app
        .container("blocking_attr")
        .expect("container")
        .properties()
        .retry;
    assert_eq!(
        (
            policy.attempts,
            policy.backoff,
            policy.multiplier,
            policy.max_backoff,
            policy.random
        ),
        (
            3,
            Duration::from_millis(60),
            2.0,
            Duration::from_millis(100),
            false
        ),
        "the attribute's policy"
    );
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.listeners.recovered, 1, "given up after its retries");
    let calls = ATTR_CALLS.lock().expect("calls").clone();
    let attempts: Vec<u32> = calls.iter().map(|c| c.0).collect();
    assert_eq!(
        attempts,
        [1, 2, 3],
        "three calls in all, not the default ten"
    );
    let (first, second) = (calls[1].1 - calls[0].1, calls[2].1 - calls[1].1);
    assert!(first >= Duration::from_millis(55), "first pause {first:?}");
    // 60 ms x 2 = 120 ms, capped at 100 ms.
    assert!(
        second >= Duration::from_millis(95) && second < Duration::from_secs(2),
        "second pause {second:?}"
    );
}
