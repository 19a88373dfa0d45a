//! The `orders` example as a user runs it: a separate process against the real broker,
//! stopped with SIGTERM. Needs the binary built (`scripts/test` builds it) and
//! `KAFKA_BOOTSTRAP_SERVERS`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_listener_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

const ORDERS: usize = 10_000;

fn orders_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ORDERS_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/orders");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p orders` first (scripts/test does)",
        bin.display()
    );
    bin
}

fn spawn_orders(bootstrap: &str, input: &str, output: &str, group: &str, extra: &[&str]) -> Child {
    let config =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/orders/application.properties");
    let mut cmd = Command::new(orders_bin());
    cmd.arg("--config")
        .arg(config)
        .args(["--set", &format!("kafka.listener.orders.group-id={group}")])
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("ORDERS_TOPIC", input)
        .env("ORDERS_ACCEPTED_TOPIC", output)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for e in extra {
        cmd.args(["--set", e]);
    }
    cmd.spawn().expect("spawn orders")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("orders did not exit within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `topic` from the beginning until `expected` distinct order ids were seen; returns how
/// often each id appeared.
fn read_accepted(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> HashMap<String, usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut ids: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + timeout;
    while ids.len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} order ids reached {topic} within {timeout:?}",
            ids.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("accepted is JSON");
            assert_eq!(v["status"], "accepted");
            let id = v["id"].as_str().expect("id is a string").to_owned();
            assert_eq!(m.key(), Some(id.as_bytes()), "keyed by the order id");
            *ids.entry(id).or_default() += 1;
        }
    }
    // Drain a little longer to catch duplicates that arrive after the last new id.
    let drain_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < drain_until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON");
            *ids.entry(v["id"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    ids
}

async fn accept_all_then_sigterm(ack_mode: Option<&str>) {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (input, output, group) = (
        unique("orders"),
        unique("orders.accepted"),
        unique("orders-g"),
    );
    create_topic(&bs, &input, 6).await;
    create_topic(&bs, &output, 6).await;
    let orders: Vec<(String, Vec<u8>)> = (0..ORDERS)
        .map(|i| {
            let id = format!("order-{i}");
            let body = serde_json::json!({ "id": id, "amount_cents": i as i64 * 100, "customer": format!("c{}", i % 97) });
            (id, body.to_string().into_bytes())
        })
        .collect();
    let t0 = Instant::now();
    produce(&bs, &input, &orders).await;
    eprintln!("produced {ORDERS} orders in {:?}", t0.elapsed());

    let set = ack_mode.map(|m| format!("kafka.listener.ack-mode={m}"));
    let extra: Vec<&str> = set.iter().map(String::as_str).collect();
    let mut child = spawn_orders(&bs, &input, &output, &group, &extra);
    let (bs2, out2) = (bs.clone(), output.clone());
    let ids = tokio::task::spawn_blocking(move || {
        read_accepted(&bs2, &out2, ORDERS, Duration::from_secs(180))
    })
    .await
    .expect("reader task");
    eprintln!("all {ORDERS} accepted after {:?}", t0.elapsed());
    assert_eq!(ids.len(), ORDERS, "every order id on the output topic");
    let dupes: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dupes.is_empty(),
        "no duplicates without a crash: {:?}",
        &dupes[..dupes.len().min(5)]
    );

    let started = Instant::now();
    sigterm(&child);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(35)))
            .await
            .expect("wait task");
    assert!(
        status.success(),
        "orders exited with {status} after SIGTERM"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "exit within the shutdown timeout"
    );

    let committed = committed_offsets(&bs, &group, &input, 6).await;
    let end = end_offsets(&bs, &input, 6).await;
    for p in 0..6 {
        assert_eq!(
            committed.get(&p).copied(),
            Some(end[&p]),
            "partition {p}: committed {committed:?} vs end {end:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_process_accepts_all_orders_and_commits_end_offsets_on_sigterm() {
    accept_all_then_sigterm(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_process_in_record_ack_mode_accepts_all_orders_and_commits_end_offsets_on_sigterm() {
    accept_all_then_sigterm(Some("record")).await;
}
