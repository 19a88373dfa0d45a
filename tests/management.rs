//! The management endpoint: metrics checked against a known workload on the real broker
//! (committed lag equal to the unfinished records during a backlog, then 0; Spring's listener
//! timer and our counters), and health that tells the truth (readiness waits for the group,
//! stays up while a listener is paused or stopped on purpose, goes down while a circuit
//! breaker is open and from the start of shutdown). A consumer that dies is in
//! `management_death.rs` (the death is process-wide).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kafka_listener::{kafka_listener, BoxError, Key};
use kafka_listener_tests::*;

/// Holds every record until opened.
static GATE_OPEN: AtomicBool = AtomicBool::new(false);
static GATED_CALLS: AtomicU64 = AtomicU64::new(0);

#[kafka_listener(id = "gated", topics = "${mg.topic}", group_id = "${mg.group}")]
async fn gated(key: Key<String>) {
    let _ = key;
    while !GATE_OPEN.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    GATED_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Samples of `name` in the Prometheus text `body`, by their label text.
fn samples(body: &str, name: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, value) = r.split_once("} ")?;
                    (labels.to_owned(), value)
                }
                None => (String::new(), rest.strip_prefix(' ')?),
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// The sum of `name`'s samples whose labels contain every one of `having`.
fn sum_of(body: &str, name: &str, having: &[&str]) -> f64 {
    samples(body, name)
        .iter()
        .filter(|(labels, _)| having.iter().all(|h| labels.contains(h)))
        .map(|(_, v)| v)
        .sum()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || http_get(addr, &path))
        .await
        .expect("http task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_lag_counts_the_unfinished_records_of_a_backlog_then_falls_to_zero() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("mg"), unique("mg-g"));
    create_topic(&bs, &topic, 2).await;
    produce_seq(&bs, &topic, 0, 300).await;
    let app = start_listener(
        &bs,
        "gated",
        &[
            ("mg.topic", topic.as_str()),
            ("mg.group", group.as_str()),
            ("kafka.management.port", "0"),
            ("kafka.management.lag-interval", "300ms"),
        ],
    )
    .await;
    let addr = app.management_address().expect("the endpoint runs");
    let lag_label = format!("topic=\"{topic}\"");
    let group_label = format!("group=\"{group}\"");

    // Ready once the consumer is in its group; the backlog is all unfinished.
    let mut ready = (0, String::new());
    for _ in 0..300 {
        ready = get(addr, "/health/ready").await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready.0, 200, "readiness: {}", ready.1);
    assert!(ready.1.contains("\"gated\""), "{}", ready.1);
    let mut lag = -1.0;
    for _ in 0..200 {
        let (_, body) = get(addr, "/metrics").await;
        lag = sum_of(
            &body,
            "kafka_listener_committed_lag",
            &[&lag_label, &group_label, "listener=\"gated\""],
        );
        if samples(&body, "kafka_listener_committed_lag")
            .keys()
            .filter(|l| l.contains(&lag_label))
            .count()
            == 2
            && lag == 300.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        lag, 300.0,
        "lag during the backlog: every record unfinished"
    );

    GATE_OPEN.store(true, Ordering::Release);
    let mut body = String::new();
    for _ in 0..400 {
        body = get(addr, "/metrics").await.1;
        lag = sum_of(&body, "kafka_listener_committed_lag", &[&lag_label]);
        if lag == 0.0 && GATED_CALLS.load(Ordering::Relaxed) >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lag, 0.0, "lag once the backlog was handled and committed");
    let handled = sum_of(
        &body,
        "kafka_listener_records_handled_total",
        &["listener=\"gated\""],
    );
    assert_eq!(handled, 300.0, "{body}");
    let timer = sum_of(
        &body,
        "spring_kafka_listener_seconds_count",
        &["name=\"gated\"", "result=\"success\"", "exception=\"none\""],
    );
    assert_eq!(timer, 300.0, "Spring's listener timer counts every call");
    assert!(
        sum_of(
            &body,
            "kafka_listener_rebalances_total",
            &["kind=\"assigned\""]
        ) >= 1.0,
        "{body}"
    );
    assert_eq!(
        sum_of(
            &body,
            "kafka_listener_assigned_partitions",
            &["listener=\"gated\""]
        ),
        2.0
    );
    assert!(
        samples(&body, "kafka_listener_seconds_since_last_commit")
            .keys()
            .any(|l| l.contains(&lag_label)),
        "{body}"
    );

    // Paused on purpose: live and ready stay up, and the pause shows.
    let container = app.container("gated").expect("container").clone();
    container.pause();
    let mut paused = 0.0;
    for _ in 0..100 {
        body = get(addr, "/metrics").await.1;
        paused = sum_of(
            &body,
            "kafka_listener_paused_partitions",
            &["listener=\"gated\""],
        );
        if paused == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(paused, 2.0);
    assert_eq!(get(addr, "/health/live").await.0, 200);
    let (status, text) = get(addr, "/health/ready").await;
    assert_eq!(status, 200, "paused is not a failure: {text}");
    assert!(text.contains("paused"), "{text}");
    // Spring Boot Actuator's paths answer the same.
    assert_eq!(get(addr, "/actuator/health/readiness").await.0, 200);
    assert!(get(addr, "/actuator/prometheus")
        .await
        .1
        .contains("kafka_listener_committed_lag"));

    // Stopped on purpose: still ready.
    let report = container.stop_gracefully(Duration::from_secs(10)).await;
    assert_eq!(report.commit_failures, 0);
    let (status, text) = get(addr, "/health/ready").await;
    assert_eq!(status, 200, "stopped on purpose is not a failure: {text}");
    assert!(text.contains("stopped"), "{text}");

    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_committed_at_end(&bs, &group, &topic, 2).await;
}

/// The downstream `broken` depends on is down until this is cleared.
static DOWNSTREAM_DOWN: AtomicBool = AtomicBool::new(true);

#[kafka_listener(id = "broken", topics = "mg-broken", group_id = "mg-broken")]
async fn broken(key: Key<String>) -> Result<(), BoxError> {
    let _ = key;
    if DOWNSTREAM_DOWN.load(Ordering::Acquire) {
        return Err("downstream is down".into());
    }
    Ok(())
}

/// Readiness goes down while the circuit breaker is open, and comes back when it is reset;
/// the given-up records and the breaker show in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_circuit_breaker() {
    init_logging();
    let app = embedded_app("broken")
        .set("kafka.management.port", 0)
        .set("kafka.listener.retry.attempts", 1)
        .set("kafka.listener.circuit-breaker.consecutive", 2)
        .start()
        .await
        .expect("starts on the embedded cluster");
    let addr = app.management_address().expect("the endpoint runs");
    for i in 0..5 {
        app.producer()
            .send("mg-broken", &format!("k{i}"), b"x")
            .await
            .expect("send to the embedded cluster");
    }
    let container = app.container("broken").expect("container").clone();
    wait_until(Duration::from_secs(30), "the breaker trips", || {
        container.is_circuit_breaker_open()
    })
    .await;
    let (status, text) = get(addr, "/health/ready").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("circuit breaker open"), "{text}");
    assert_eq!(
        get(addr, "/health/live").await.0,
        200,
        "an open breaker is not a dead process"
    );
    let body = get(addr, "/metrics").await.1;
    assert_eq!(
        sum_of(
            &body,
            "kafka_listener_circuit_breaker_open",
            &["listener=\"broken\""]
        ),
        1.0
    );
    // Two in a row trip it; records of other partitions given up at the same moment may
    // slip in before it opened.
    assert!(
        sum_of(
            &body,
            "kafka_listener_records_given_up_total",
            &["listener=\"broken\"", "recoverer=\"log\""]
        ) >= 2.0,
        "{body}"
    );
    assert!(
        sum_of(
            &body,
            "spring_kafka_listener_seconds_count",
            &["name=\"broken\"", "result=\"failure\""]
        ) >= 2.0,
        "{body}"
    );
    // The downstream is back: reset, and the listener is ready again.
    DOWNSTREAM_DOWN.store(false, Ordering::Release);
    container.reset_circuit_breaker();
    let (status, text) = get(addr, "/health/ready").await;
    assert_eq!(status, 200, "{text}");
    wait_until(Duration::from_secs(30), "every record finished", || {
        container.finished() >= 5
    })
    .await;
    assert!(!container.is_circuit_breaker_open());
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
}

/// Without `kafka.management.port` nothing listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_is_off_unless_a_port_is_set() {
    init_logging();
    let app = embedded_app("broken")
        .set("kafka.listener.broken.auto-startup", false)
        .start()
        .await
        .expect("starts on the embedded cluster");
    assert!(app.management_address().is_none());
    app.shutdown().await;
}
