//! Testing your own listeners on the embedded cluster (librdkafka's mock cluster, in
//! process): start the listeners you name, produce to them, and await what should follow:
//! records handled, offsets committed, dead letters published.
//!
//! ```no_run
//! use std::time::Duration;
//! use kafka_listener::testing::TestApp;
//!
//! # async fn demo() -> kafka_listener::Result<()> {
//! // #[kafka_listener(id = "on_order", topics = "orders", dead_letter)] somewhere in the crate.
//! let app = TestApp::builder(["on_order"])
//!     .set("kafka.listener.retry.attempts", 1)
//!     .start()
//!     .await?;
//! app.send("orders", "o-1", br#"{"id":"o-1","amount_cents":-5}"#).await?;
//! let letters = app.records("orders.DLT", 1, Duration::from_secs(30)).await?;
//! assert_eq!(letters[0].key(), Some(&b"o-1"[..]));
//! app.await_committed("on_order", Duration::from_secs(30)).await?;
//! app.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The embedded cluster is a test double: it keeps everything in memory and its group
//! coordinator waits about 3 s before the first join. It proves what your handlers do, not
//! the delivery guarantees (those are this crate's tests, against a real broker).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::{
    Application, ApplicationBuilder, ConsumerRecord, Error, ListenerContainer, ProducerTemplate,
    Result, SendResult, ShutdownReport,
};

/// Starts chosen listeners on a fresh embedded cluster.
#[derive(Debug)]
pub struct TestAppBuilder {
    builder: ApplicationBuilder,
}

impl TestAppBuilder {
    /// One configuration key (as `--set` would), on top of the defaults: no properties file,
    /// no environment, the embedded cluster.
    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.builder = self.builder.set(key, value);
        self
    }

    /// Starts the listeners and waits until each running one is in its group (or has its
    /// partitions), so records sent next are handled.
    pub async fn start(self) -> Result<TestApp> {
        let app = self.builder.start().await?;
        let test = TestApp { app };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !test
            .containers()
            .iter()
            .filter(|c| c.is_running())
            .all(ListenerContainer::has_joined)
        {
            if Instant::now() >= deadline {
                return Err(Error::Listener {
                    id: "testing".into(),
                    message: "the listeners did not join their groups within 30 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(test)
    }
}

/// Listeners running on an embedded cluster, with the means to drive and observe them.
#[derive(Debug)]
pub struct TestApp {
    app: Application,
}

impl TestApp {
    /// The listeners (registered ids) to start; configure with [`TestAppBuilder::set`].
    pub fn builder<I, S>(listeners: I) -> TestAppBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TestAppBuilder {
            builder: Application::builder()
                .only(listeners)
                .env(vec![("KAFKA_LISTENER_TESTING".into(), "1".into())])
                .set("kafka.bootstrap-servers", "embedded")
                .set("kafka.admin.auto-create", true)
                // A failing handler in a test should not wait seconds between attempts.
                .set("kafka.listener.retry.backoff.delay", "10ms"),
        }
    }

    /// The running application (its containers, registry, producer).
    pub fn application(&self) -> &Application {
        &self.app
    }

    /// The application's producer.
    pub fn producer(&self) -> &ProducerTemplate {
        self.app.producer()
    }

    /// Sends `value` with `key` to `topic`, once the cluster acknowledged it.
    pub async fn send(&self, topic: &str, key: &str, value: &[u8]) -> Result<SendResult> {
        self.app.producer().send(topic, key, value).await
    }

    /// Sends `value` as JSON.
    pub async fn send_json<T: serde::Serialize>(
        &self,
        topic: &str,
        key: &str,
        value: &T,
    ) -> Result<SendResult> {
        self.app.producer().send_json(topic, key, value).await
    }

    fn containers(&self) -> Vec<ListenerContainer> {
        self.app
            .registry()
            .ids()
            .iter()
            .filter_map(|id| self.app.registry().container(id))
            .collect()
    }

    fn container(&self, listener: &str) -> Result<ListenerContainer> {
        self.app
            .registry()
            .container(listener)
            .ok_or_else(|| Error::Listener {
                id: listener.into(),
                message: "not a listener of this test application".into(),
            })
    }

    /// Waits until `listener` finished (handled, or gave up to its recoverer) at least `n`
    /// records since it started.
    pub async fn await_finished(&self, listener: &str, n: u64, timeout: Duration) -> Result<()> {
        let container = self.container(listener)?;
        let deadline = Instant::now() + timeout;
        while container.finished() < n {
            if Instant::now() >= deadline {
                return Err(Error::Listener {
                    id: listener.into(),
                    message: format!(
                        "finished {} records within {timeout:?}, not {n}",
                        container.finished()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits until `listener`'s group has committed every partition of its topics up to the
    /// end: everything sent so far was finished and committed.
    pub async fn await_committed(&self, listener: &str, timeout: Duration) -> Result<()> {
        let container = self.container(listener)?;
        let props = container.properties();
        // Named topics, explicit partitions' topics, and what a pattern matched.
        let mut topics = props.topics.clone();
        for t in props
            .partitions
            .iter()
            .map(|tp| tp.topic.clone())
            .chain(container.assigned_partitions().into_iter().map(|(t, _)| t))
        {
            if !topics.contains(&t) {
                topics.push(t);
            }
        }
        let group = props.group_id.clone();
        let bootstrap = self.app.bootstrap_servers().to_owned();
        let id = listener.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = client(&bootstrap)
                .set("group.id", &group)
                .create()
                .map_err(|e| Error::kafka("a test consumer", e))?;
            let deadline = Instant::now() + timeout;
            loop {
                let mut behind = Vec::new();
                for topic in &topics {
                    for (partition, end) in ends(&consumer, topic)? {
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(topic, partition);
                        let committed = consumer
                            .committed_offsets(tpl, Duration::from_secs(5))
                            .ok()
                            .and_then(|l| l.elements().first().map(|e| e.offset()));
                        let at = match committed {
                            Some(Offset::Offset(o)) => o,
                            _ => 0,
                        };
                        if at < end {
                            behind.push(format!("{topic}-{partition}: {at} of {end}"));
                        }
                    }
                }
                if behind.is_empty() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(Error::Listener {
                        id,
                        message: format!(
                            "not committed to the end within {timeout:?}: {}",
                            behind.join(", ")
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .map_err(|e| Error::Panicked {
            what: "await_committed".into(),
            message: e.to_string(),
        })?
    }

    /// Reads `topic` from the beginning until `n` records arrived (its dead letters, say, or
    /// what a listener forwarded); an error saying how many came if fewer did within
    /// `timeout`.
    pub async fn records(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumerRecord>> {
        let bootstrap = self.app.bootstrap_servers().to_owned();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = client(&bootstrap)
                .set("group.id", "kafka-listener-testing-reader")
                .set("enable.auto.commit", "false")
                .create()
                .map_err(|e| Error::kafka("a test consumer", e))?;
            let deadline = Instant::now() + timeout;
            let mut assigned = false;
            let mut out = Vec::new();
            while out.len() < n && Instant::now() < deadline {
                if !assigned {
                    let partitions = ends(&consumer, &topic)?;
                    if partitions.is_empty() {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let mut tpl = TopicPartitionList::new();
                    for (p, _) in partitions {
                        let _ = tpl.add_partition_offset(&topic, p, Offset::Beginning);
                    }
                    consumer
                        .assign(&tpl)
                        .map_err(|e| Error::kafka("assigning a test consumer", e))?;
                    assigned = true;
                }
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let mut r = ConsumerRecord::new(m.topic(), m.partition(), m.offset());
                    if let Some(k) = m.key() {
                        r = r.with_key(k.to_vec());
                    }
                    if let Some(v) = m.payload() {
                        r = r.with_value(v.to_vec());
                    }
                    if let Some(ts) = m.timestamp().to_millis() {
                        r = r.with_timestamp(ts);
                    }
                    if let Some(headers) = rdkafka::message::Message::headers(&m) {
                        use rdkafka::message::Headers as _;
                        for h in headers.iter() {
                            r = r.with_raw_header(h.key.as_bytes(), h.value.map(<[u8]>::to_vec));
                        }
                    }
                    out.push(r);
                }
            }
            if out.len() < n {
                return Err(Error::Listener {
                    id: "testing".into(),
                    message: format!("{} of {n} records on {topic} within {timeout:?}", out.len()),
                });
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::Panicked {
            what: "records".into(),
            message: e.to_string(),
        })?
    }

    /// Shuts the listeners down gracefully, then the cluster.
    pub async fn shutdown(self) -> ShutdownReport {
        self.app.shutdown().await
    }
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Each partition of `topic` and its end offset (empty while the topic does not exist).
fn ends(consumer: &BaseConsumer, topic: &str) -> Result<HashMap<i32, i64>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(|e| Error::kafka("reading a test topic's metadata", e))?;
    let mut out = HashMap::new();
    for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
        for p in t.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .map_err(|e| Error::kafka("reading a test topic's end offsets", e))?;
            out.insert(p.id(), high);
        }
    }
    Ok(out)
}
