//! Shared helpers for the integration tests: broker address, topics, producing, reading
//! committed and end offsets, and waiting for conditions with a deadline.

#![allow(missing_docs, unreachable_pub)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// The real broker, from `KAFKA_BOOTSTRAP_SERVERS`. `None` means the real-broker tests are
/// skipped, unless `KAFKA_REQUIRE_BROKER=1`, which turns a missing broker into a failure
/// (CI and `scripts/test` set it, so a green run always means the tests really ran).
pub fn real_broker() -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(s) if !s.trim().is_empty() => Some(s),
        _ => {
            assert!(
                std::env::var("KAFKA_REQUIRE_BROKER").as_deref() != Ok("1"),
                "KAFKA_REQUIRE_BROKER=1 but KAFKA_BOOTSTRAP_SERVERS is not set"
            );
            eprintln!("KAFKA_BOOTSTRAP_SERVERS not set: real-broker test skipped");
            None
        }
    }
}

/// Installs a test log subscriber once (RUST_LOG controls it; default warnings only).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a topic and waits until its metadata shows every partition.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("metadata client");
        wait_blocking(Duration::from_secs(30), "topic metadata", || {
            consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics()
                        .first()
                        .map(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
                })
                .unwrap_or(false)
        });
    })
    .await
    .expect("metadata wait");
}

/// Produces `(key, value)` pairs to `topic` and waits for every delivery (acks=all).
pub async fn produce(bootstrap: &str, topic: &str, records: &[(String, Vec<u8>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    // Enqueue everything first (send_result does not wait), then await the deliveries.
    let mut deliveries = Vec::with_capacity(records.len());
    for (k, v) in records {
        let mut record = FutureRecord::to(topic)
            .key(k.as_bytes())
            .payload(v.as_slice());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err((e, back)) => {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "enqueueing to {topic}: {e}"
                    );
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("delivering record {i} to {topic}: {e}"),
            Err(_) => panic!("delivery of record {i} to {topic} was cancelled"),
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Produces `(key, value)` pairs to one partition of `topic`, in order.
pub async fn produce_to(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    records: &[(String, Vec<u8>)],
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (i, (k, v)) in records.iter().enumerate() {
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(k.as_bytes())
                    .payload(v.as_slice()),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("delivering record {i} to {topic}-{partition}: {e}"));
    }
}

/// Produces `n` JSON records `{"seq": i}` keyed `k{i}`; returns the keys.
pub async fn produce_seq(bootstrap: &str, topic: &str, from: usize, n: usize) -> Vec<String> {
    let records: Vec<(String, Vec<u8>)> = (from..from + n)
        .map(|i| (format!("k{i}"), format!("{{\"seq\":{i}}}").into_bytes()))
        .collect();
    produce(bootstrap, topic, &records).await;
    records.into_iter().map(|(k, _)| k).collect()
}

/// Committed offset per partition of `group` on `topic` (missing partitions have none).
pub async fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> HashMap<i32, i64> {
    try_committed_offsets(bootstrap, group, topic, partitions)
        .await
        .unwrap_or_else(|e| panic!("committed offsets: {e}"))
}

/// Like [`committed_offsets`], with the lookup's error instead of a panic.
pub async fn try_committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<HashMap<i32, i64>, rdkafka::error::KafkaError> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    })
    .await
    .expect("committed offsets task")
}

/// High watermark (end offset) per partition.
pub async fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("watermark client");
        (0..partitions)
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                (p, high)
            })
            .collect()
    })
    .await
    .expect("watermarks task")
}

/// Members of a consumer group (0 if it does not exist or is empty).
pub async fn group_members(bootstrap: &str, group: &str) -> usize {
    let (bootstrap, group) = (bootstrap.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("group client");
        consumer
            .fetch_group_list(Some(&group), Duration::from_secs(10))
            .ok()
            .and_then(|list| {
                list.groups()
                    .iter()
                    .find(|g| g.name() == group && g.state() == "Stable")
                    .map(|g| g.members().len())
            })
            .unwrap_or(0)
    })
    .await
    .expect("group list task")
}

/// Starts only listener `id` against `bootstrap` with `vars` set (as `--set` would), fast
/// retries (10 ms back-off) and nothing from the process environment.
pub async fn start_listener(
    bootstrap: &str,
    id: &str,
    vars: &[(&str, &str)],
) -> kafka_listener::Application {
    let mut builder = kafka_listener::Application::builder()
        .only([id])
        .env(vec![("KL_TEST".into(), "1".into())])
        .set("kafka.bootstrap-servers", bootstrap)
        .set("kafka.listener.retry.backoff.delay", "10ms");
    for (k, v) in vars {
        builder = builder.set(k, v);
    }
    builder
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting {id}: {e}"))
}

/// Listener `id` alone on the embedded cluster, with nothing from the process environment.
pub fn embedded_app(id: &str) -> kafka_listener::ApplicationBuilder {
    kafka_listener::Application::builder()
        .only([id])
        .env(Vec::new())
        .set("kafka.bootstrap-servers", "embedded")
}

/// Starts `builder`, which must fail (`what` says why it should); returns the error's text.
pub async fn start_error(builder: kafka_listener::ApplicationBuilder, what: &str) -> String {
    builder.start().await.expect_err(what).to_string()
}

/// Asserts that `group` has committed every partition of `topic` up to its end offset.
pub async fn assert_committed_at_end(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    let committed = committed_offsets(bootstrap, group, topic, partitions).await;
    let end = end_offsets(bootstrap, topic, partitions).await;
    for p in 0..partitions {
        assert_eq!(
            committed.get(&p).copied().unwrap_or(0),
            end[&p],
            "{topic} partition {p}: committed offset should equal the end offset (committed {committed:?}, end {end:?})"
        );
    }
}

/// Waits (async) until `cond` holds, polling every 20 ms; panics with `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn wait_blocking(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `orders` example binary (`ORDERS_BIN`, or `target/debug/orders`); `scripts/test` builds it.
pub fn orders_bin() -> PathBuf {
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

/// A record read back from a topic, headers included.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl ReadRecord {
    /// The last header called `name`, if present with a value.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The last header called `name`, as UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The original partition and offset a dead letter or retry copy names (Spring's
    /// `kafka_dlt-original-partition` and `-offset`); `None` if either is missing or of the
    /// wrong width.
    pub fn original_position(&self) -> Option<(i32, i64)> {
        use kafka_listener::dead_letter::headers;
        position_from(
            self.header(headers::ORIGINAL_PARTITION)?,
            self.header(headers::ORIGINAL_OFFSET)?,
        )
    }
}

/// A partition and offset as Spring encodes them in dead-letter headers: 4- and 8-byte
/// big-endian integers.
pub fn position_from(partition: &[u8], offset: &[u8]) -> Option<(i32, i64)> {
    Some((
        i32::from_be_bytes(partition.try_into().ok()?),
        i64::from_be_bytes(offset.try_into().ok()?),
    ))
}

/// Every record of `topic` from the beginning (no group), reading until `n` records arrived or
/// `timeout` passed; returns what was read (possibly fewer, or more if more are there).
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<ReadRecord> {
    use rdkafka::message::{Headers as _, Message as _};
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "kl-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p as i32, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(ReadRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
        out
    })
    .await
    .expect("reader task")
}

/// A plain HTTP/1.1 GET of `path` on `addr` (blocking): the status code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("read the response to {path}: {e}"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
}

/// The body of a chunked HTTP response.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
