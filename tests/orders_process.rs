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

/// A running `orders` process; killed if the test panics before stopping it, so a failed test
/// never leaves a service behind (or a pipe held open under `cargo test | tee`).
struct Service(Child);

impl std::ops::Deref for Service {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Service {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_orders(
    bootstrap: &str,
    input: &str,
    output: &str,
    group: &str,
    extra: &[&str],
) -> Service {
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
    // The service's output goes to a file, never to the test's own stdout.
    let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-logs");
    let _ = std::fs::create_dir_all(&logs);
    let log = std::fs::File::create(logs.join(format!("{group}-{}.log", unique("p"))))
        .expect("service log file");
    cmd.stdout(log.try_clone().expect("log handle")).stderr(log);
    for e in extra {
        cmd.args(["--set", e]);
    }
    Service(cmd.spawn().expect("spawn orders"))
}

fn sigterm(child: &Service) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Service, timeout: Duration) -> std::process::ExitStatus {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_process_in_every_other_ack_mode_accepts_all_orders_and_commits_end_offsets_on_sigterm(
) {
    let only = std::env::var("ORDERS_ACK_MODES").unwrap_or_default();
    for mode in ["time", "count", "count_time", "manual", "manual_immediate"] {
        if !only.is_empty() && !only.split(',').any(|m| m == mode) {
            continue;
        }
        accept_all_then_sigterm(Some(mode)).await;
    }
}

/// Issue acceptance: three `orders` processes started and stopped one by one (SIGTERM) while
/// 30,000 orders flow; every id is accepted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_orders_processes_started_and_stopped_one_by_one_accept_every_order_once() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (input, output, group) = (
        unique("orders3"),
        unique("orders3.accepted"),
        unique("orders3-g"),
    );
    create_topic(&bs, &input, 6).await;
    create_topic(&bs, &output, 6).await;
    const TOTAL: usize = 30_000;
    const STEP: usize = 1_000;
    // The independent producer: 1,000 orders every 100 ms while the processes come and go.
    let producer = {
        let (bs, input) = (bs.clone(), input.clone());
        tokio::spawn(async move {
            for start in (0..TOTAL).step_by(STEP) {
                let orders: Vec<(String, Vec<u8>)> = (start..start + STEP)
                    .map(|i| {
                        let id = format!("o-{i}");
                        let body =
                            serde_json::json!({ "id": id, "amount_cents": 100, "customer": "c" });
                        (id, body.to_string().into_bytes())
                    })
                    .collect();
                produce(&bs, &input, &orders).await;
                // Pacing the load generator, not synchronising the test.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let reader = {
        let (bs, output) = (bs.clone(), output.clone());
        tokio::task::spawn_blocking(move || {
            read_accepted(&bs, &output, TOTAL, Duration::from_secs(300))
        })
    };
    let stop = |mut child: Service| async move {
        sigterm(&child);
        let status =
            tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(35)))
                .await
                .expect("wait task");
        assert!(status.success(), "orders exited with {status}");
    };
    let watch_group = |n: usize| {
        let (bs, group) = (bs.clone(), group.clone());
        async move {
            // A process counts as started once the group has `n` members with partitions.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let members = group_members(&bs, &group).await;
                if members >= n {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "group never reached {n} members (has {members})"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let p1 = spawn_orders(&bs, &input, &output, &group, &[]);
    watch_group(1).await;
    let p2 = spawn_orders(&bs, &input, &output, &group, &[]);
    watch_group(2).await;
    let p3 = spawn_orders(&bs, &input, &output, &group, &[]);
    watch_group(3).await;
    stop(p1).await;
    stop(p2).await;
    producer.await.expect("producer");
    let ids = reader.await.expect("reader");
    stop(p3).await;
    assert_eq!(ids.len(), TOTAL, "every order id on the output topic");
    let dupes: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dupes.is_empty(),
        "no id twice after graceful joins and leaves: {} duplicated, e.g. {:?}",
        dupes.len(),
        &dupes[..dupes.len().min(5)]
    );
}

/// Every input record of `topic`: order id → (partition, offset).
fn read_positions(bootstrap: &str, topic: &str, expected: usize) -> HashMap<String, (i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("positions"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut positions = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while positions.len() < expected {
        assert!(
            Instant::now() < deadline,
            "read only {} of {expected} input records",
            positions.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            positions.insert(key, (m.partition(), m.offset()));
        }
    }
    positions
}

/// Crash (SIGKILL) in every ack mode: nothing is lost, and what is delivered twice is only what
/// the table in the crate docs allows: records at or after the group's committed offset at the
/// moment of the crash. Everything below it was committed and is never repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_every_ack_mode_redelivers_only_from_the_committed_offset_and_loses_nothing()
{
    init_logging();
    let Some(bs) = real_broker() else { return };
    const N: usize = 4_000;
    for mode in [
        "batch",
        "record",
        "time",
        "count",
        "count_time",
        "manual",
        "manual_immediate",
    ] {
        let (input, output, group) = (unique("crash"), unique("crash.accepted"), unique("crash-g"));
        create_topic(&bs, &input, 3).await;
        create_topic(&bs, &output, 3).await;
        let orders: Vec<(String, Vec<u8>)> = (0..N)
            .map(|i| {
                let id = format!("c-{i}");
                let body = serde_json::json!({ "id": id, "amount_cents": 1, "customer": "c" });
                (id, body.to_string().into_bytes())
            })
            .collect();
        produce(&bs, &input, &orders).await;
        let set = [
            format!("kafka.listener.ack-mode={mode}"),
            "kafka.listener.ack-count=200".to_owned(),
            "kafka.listener.ack-time=1s".to_owned(),
        ];
        let extra: Vec<&str> = set.iter().map(String::as_str).collect();
        let mut first = spawn_orders(&bs, &input, &output, &group, &extra);
        // Crash once a good part is done, while records are in flight.
        let (bs2, out2) = (bs.clone(), output.clone());
        tokio::task::spawn_blocking(move || {
            read_accepted(&bs2, &out2, N / 3, Duration::from_secs(120))
        })
        .await
        .expect("reader");
        first.kill().expect("SIGKILL");
        let _ = first.wait();
        let committed = committed_offsets(&bs, &group, &input, 3).await;

        let mut second = spawn_orders(&bs, &input, &output, &group, &extra);
        let (bs2, out2) = (bs.clone(), output.clone());
        let accepted = tokio::task::spawn_blocking(move || {
            read_accepted(&bs2, &out2, N, Duration::from_secs(180))
        })
        .await
        .expect("reader");
        sigterm(&second);
        let status =
            tokio::task::spawn_blocking(move || wait_exit(&mut second, Duration::from_secs(35)))
                .await
                .expect("wait");
        assert!(status.success(), "{mode}: exit {status}");

        assert_eq!(
            accepted.len(),
            N,
            "{mode}: every order accepted after the crash"
        );
        let (bs2, in2) = (bs.clone(), input.clone());
        let positions = tokio::task::spawn_blocking(move || read_positions(&bs2, &in2, N))
            .await
            .expect("positions");
        let mut repeated_below_commit = Vec::new();
        let mut repeated = 0;
        for (id, count) in &accepted {
            if *count > 1 {
                repeated += 1;
                let (p, o) = positions[id];
                if o < committed.get(&p).copied().unwrap_or(0) {
                    repeated_below_commit.push((id.clone(), p, o));
                }
            }
        }
        assert!(
            repeated_below_commit.is_empty(),
            "{mode}: records below the committed offset {committed:?} were delivered twice: {:?}",
            &repeated_below_commit[..repeated_below_commit.len().min(5)]
        );
        eprintln!("{mode}: committed at crash {committed:?}; {repeated} orders accepted twice, all at or after the committed offset");
    }
}

/// The Go client (franz-go) that writes what Java clients cannot: `tests/foreign-producer`,
/// built by `scripts/test` into `target/foreign-producer` (`FOREIGN_PRODUCER` overrides).
fn foreign_producer_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FOREIGN_PRODUCER") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("foreign-producer");
    assert!(
        bin.exists(),
        "{} not found: run `go build -o target/foreign-producer ./tests/foreign-producer` (scripts/test does)",
        bin.display()
    );
    bin
}

/// Records a non-Java client can write — header names that are not UTF-8, empty names, null
/// values, 2,000 headers on one record, batches in all five codecs — between normal orders:
/// the service handles every one of them and keeps going, and SIGTERM exits 0 with committed
/// = end. Before header names were read as bytes, the first such record panicked every
/// consumer thread and nothing after it was handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_process_handles_records_from_a_go_client_with_odd_headers_and_every_codec() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (input, output, group) = (
        unique("orders"),
        unique("orders.accepted"),
        unique("orders-g"),
    );
    create_topic(&bs, &input, 3).await;
    create_topic(&bs, &output, 3).await;
    let normal = |from: usize, n: usize| -> Vec<(String, Vec<u8>)> {
        (from..from + n)
            .map(|i| {
                let id = format!("order-{i}");
                let body = serde_json::json!({ "id": id, "amount_cents": 1, "customer": "c" });
                (id, body.to_string().into_bytes())
            })
            .collect()
    };
    const FOREIGN: usize = 500;
    produce(&bs, &input, &normal(0, 300)).await;
    let out = Command::new(foreign_producer_bin())
        .args([bs.as_str(), input.as_str(), "0", &FOREIGN.to_string()])
        .output()
        .expect("run foreign-producer");
    assert!(
        out.status.success(),
        "foreign-producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        assert!(said.contains(&format!("{codec}: 100 records")), "{said}");
    }
    produce(&bs, &input, &normal(300, 300)).await;
    let expected = 600 + FOREIGN;

    let mut child = spawn_orders(&bs, &input, &output, &group, &[]);
    let (bs2, out2) = (bs.clone(), output.clone());
    let ids = tokio::task::spawn_blocking(move || {
        read_accepted(&bs2, &out2, expected, Duration::from_secs(120))
    })
    .await
    .expect("reader task");
    assert_eq!(
        ids.len(),
        expected,
        "every order, normal and foreign, accepted"
    );
    assert!(ids.contains_key("foreign-0") && ids.contains_key("order-599"));

    sigterm(&child);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(35)))
            .await
            .expect("wait task");
    assert!(
        status.success(),
        "orders exited with {status} after SIGTERM"
    );
    assert_committed_at_end(&bs, &group, &input, 3).await;
}

/// The acceptance, as a new user would check it: 10,000 orders from a Go client
/// (franz-go), about 1% malformed JSON and 1% with a negative amount. Every valid id reaches
/// the accepted topic through `send_to`; every invalid record reaches `<topic>.DLT` with the
/// original topic, partition and offset and an exception message in Spring's headers; after
/// SIGTERM the committed offsets equal the end offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_orders_from_a_go_client_go_to_the_dead_letter_topic_and_valid_ones_are_forwarded()
{
    use kafka_listener::dead_letter::headers;
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (input, output, group) = (
        unique("orders"),
        unique("orders.accepted"),
        unique("orders-g"),
    );
    let dlt = format!("{input}.DLT");
    create_topic(&bs, &input, 3).await;
    create_topic(&bs, &output, 3).await;
    create_topic(&bs, &dlt, 3).await;
    let out = Command::new(foreign_producer_bin())
        .args([
            bs.as_str(),
            input.as_str(),
            "0",
            &ORDERS.to_string(),
            "mixed",
        ])
        .output()
        .expect("run foreign-producer");
    assert!(
        out.status.success(),
        "foreign-producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let invalid = |i: usize| i % 100 == 37 || i % 100 == 71;
    let valid: usize = (0..ORDERS).filter(|i| !invalid(*i)).count();
    let bad: usize = ORDERS - valid;

    let mut child = spawn_orders(&bs, &input, &output, &group, &[]);
    let (bs2, out2) = (bs.clone(), output.clone());
    let ids = tokio::task::spawn_blocking(move || {
        read_accepted(&bs2, &out2, valid, Duration::from_secs(240))
    })
    .await
    .expect("reader task");
    let letters = read_topic(&bs, &dlt, bad, Duration::from_secs(120)).await;
    sigterm(&child);
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(35)))
            .await
            .expect("wait task");
    assert!(
        status.success(),
        "orders exited with {status} after SIGTERM"
    );
    assert_committed_at_end(&bs, &group, &input, 3).await;

    for i in (0..ORDERS).filter(|i| !invalid(*i)) {
        assert_eq!(
            ids.get(&format!("foreign-{i}")),
            Some(&1),
            "foreign-{i} accepted once"
        );
    }
    assert_eq!(ids.len(), valid, "nothing else accepted");
    assert_eq!(letters.len(), bad, "one dead letter per invalid order");
    let end = end_offsets(&bs, &input, 3).await;
    let mut seen = std::collections::HashSet::new();
    for l in &letters {
        let key = String::from_utf8(l.key.clone().expect("key")).expect("utf-8 key");
        let i: usize = key.trim_start_matches("foreign-").parse().expect("id");
        assert!(invalid(i), "{key} is valid but was dead-lettered");
        assert!(seen.insert(i), "{key} dead-lettered twice");
        assert_eq!(l.header_str(headers::ORIGINAL_TOPIC), Some(input.as_str()));
        let (partition, offset) = l
            .original_position()
            .expect("4-byte partition and 8-byte offset headers");
        assert_eq!(partition, l.partition, "same partition as the original");
        assert!(
            (0..end[&partition]).contains(&offset),
            "{key}: offset {offset}"
        );
        let message = l.header_str(headers::EXCEPTION_MESSAGE).expect("message");
        let kind = l.header_str(headers::EXCEPTION_FQCN).expect("fqcn");
        if i % 100 == 71 {
            assert_eq!(kind, "kafka_listener::NonRetryable", "{key}");
            assert!(
                message.contains("amount_cents is negative (-5)"),
                "{key}: {message}"
            );
        } else {
            assert_eq!(kind, "kafka_listener::DecodeError", "{key}");
            assert!(!message.is_empty());
        }
    }
}
