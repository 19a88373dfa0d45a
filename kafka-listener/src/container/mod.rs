//! The listener container: consumers, poll loops, dispatch, offset tracking, commits and the
//! rebalance protocol for one listener.
//!
//! ```text
//! ListenerContainer ── consumer thread 1 ── partition worker (tokio task) per assigned partition
//!                   └─ consumer thread N         │
//!                                                └─ offset tracker ── commits (consumer thread)
//! ```

mod ack;
mod consumer;
mod offsets;
mod partition;

pub use ack::Acknowledgment;
pub(crate) use partition::PartitionLink;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::AckMode;
use crate::error_handler::RetryPolicy;
use crate::listener::{Handler, ListenerContext};
use crate::{Error, Result};
use consumer::{ConsumerCore, ConsumerReport, CoreContext};
use partition::Counters;

/// Everything a container needs to run one listener, resolved from the listener declaration
/// and the configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ContainerProperties {
    /// Listener id.
    pub listener_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Consumer group.
    pub group_id: String,
    /// Number of consumers (threads) in the group for this listener.
    pub concurrency: u32,
    /// When offsets are committed.
    pub ack_mode: AckMode,
    /// Records finished between commits in `count` and `count_time` modes.
    pub ack_count: u64,
    /// Time between commits in `time` and `count_time` modes.
    pub ack_time: Duration,
    /// Records taken per poll cycle (`kafka.consumer.max-poll-records`); also the per-partition
    /// queue size at which a partition is paused.
    pub max_poll_records: usize,
    /// Longest wait for records in one poll (`kafka.listener.poll-timeout`).
    pub poll_timeout: Duration,
    /// Budget for finishing in-flight work at shutdown.
    pub shutdown_timeout: Duration,
    /// Budget for in-flight handlers of revoked partitions.
    pub revoke_timeout: Duration,
    /// Retries before the recoverer.
    pub retry: RetryPolicy,
    /// librdkafka properties for the consumers (bootstrap servers and passthrough). The
    /// container adds `group.id`, `client.id` and the settings its delivery guarantee needs.
    pub client_config: Vec<(String, String)>,
    /// Prefix of each consumer's `client.id` (suffix `-0`, `-1`, ...).
    pub client_id_prefix: String,
}

impl ContainerProperties {
    /// Properties with defaults for everything but what identifies the listener.
    pub fn new(listener_id: &str, topics: Vec<String>, bootstrap_servers: &str) -> Self {
        ContainerProperties {
            listener_id: listener_id.to_owned(),
            topics,
            group_id: listener_id.to_owned(),
            concurrency: 1,
            ack_mode: AckMode::Batch,
            ack_count: 1,
            ack_time: Duration::from_secs(5),
            max_poll_records: 500,
            poll_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            revoke_timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            client_config: vec![("bootstrap.servers".to_owned(), bootstrap_servers.to_owned())],
            client_id_prefix: listener_id.to_owned(),
        }
    }

    /// Sets one librdkafka consumer property (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.client_config.retain(|(k, _)| k != key);
        self.client_config.push((key.to_owned(), value.to_owned()));
        self
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.client_config
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The librdkafka configuration of consumer number `index`.
    fn consumer_config(&self, index: u32) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.client_config {
            config.set(k, v);
        }
        config
            .set("group.id", &self.group_id)
            .set("client.id", format!("{}-{index}", self.client_id_prefix))
            // We store nothing implicitly: commits carry explicit offsets of finished records.
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        if self.get("enable.auto.commit") != Some("true") {
            config.set("enable.auto.commit", "false");
        }
        // librdkafka idles a partition for fetch.queue.backoff.ms (default 1s) once its
        // prefetch queue is full; a consumer slightly slower than the fetcher then stalls.
        if self.get("fetch.queue.backoff.ms").is_none() {
            config.set("fetch.queue.backoff.ms", "10");
        }
        config
    }
}

/// How a container's shutdown went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerReport {
    /// Records handled to completion (including those skipped by the recoverer).
    pub finished: u64,
    /// Records given to the recoverer.
    pub recovered: u64,
    /// Partitions that handled records and whose committed offset covers everything finished.
    pub committed_partitions: usize,
    /// Records taken from Kafka but not finished: they will be delivered again.
    pub redeliverable: u64,
    /// Partitions whose final commit failed.
    pub commit_failures: usize,
    /// Partitions whose handler was still running at the deadline.
    pub handlers_cut_off: usize,
    /// Consumers that did not close before the deadline.
    pub consumers_not_closed: usize,
}

impl ContainerReport {
    /// Adds another report's figures to this one.
    pub fn merge(&mut self, other: &ContainerReport) {
        self.finished += other.finished;
        self.recovered += other.recovered;
        self.committed_partitions += other.committed_partitions;
        self.redeliverable += other.redeliverable;
        self.commit_failures += other.commit_failures;
        self.handlers_cut_off += other.handlers_cut_off;
        self.consumers_not_closed += other.consumers_not_closed;
    }
}

struct Running {
    cores: Vec<Arc<ConsumerCore>>,
    stop: Arc<AtomicBool>,
    deadline: Arc<Mutex<Option<Instant>>>,
    reports: std_mpsc::Receiver<ConsumerReport>,
    consumers: u32,
}

/// Runs one listener: `concurrency` consumers in its group, each on its own thread, with a
/// worker task per assigned partition.
pub struct ListenerContainer {
    props: Arc<ContainerProperties>,
    handler: Handler,
    cx: ListenerContext,
    counters: Arc<Counters>,
    running: Option<Running>,
}

impl std::fmt::Debug for ListenerContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerContainer")
            .field("listener_id", &self.props.listener_id)
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

impl ListenerContainer {
    /// A container for `handler` with `props`; `cx` is what extractors may draw on.
    pub fn new(props: ContainerProperties, handler: Handler, cx: ListenerContext) -> Self {
        ListenerContainer {
            props: Arc::new(props),
            handler,
            cx,
            counters: Arc::new(Counters::default()),
            running: None,
        }
    }

    /// The listener id.
    pub fn listener_id(&self) -> &str {
        &self.props.listener_id
    }

    /// The properties this container runs with.
    pub fn properties(&self) -> &ContainerProperties {
        &self.props
    }

    /// Records finished so far (handled or recovered).
    pub fn finished(&self) -> u64 {
        self.counters.finished.load(Ordering::Relaxed)
    }

    /// The partitions its consumers own now, sorted (Spring's `getAssignedPartitions`).
    pub fn assigned_partitions(&self) -> Vec<(String, i32)> {
        let mut all: Vec<(String, i32)> = self
            .running
            .iter()
            .flat_map(|r| r.cores.iter().flat_map(|c| c.assignment()))
            .collect();
        all.sort();
        all
    }

    /// Whether the container has been started and not stopped.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts the consumers. Handlers run on `runtime`. Fails if a consumer cannot be created
    /// (for example a bad librdkafka property) or cannot subscribe.
    pub fn start(&mut self, runtime: &tokio::runtime::Handle) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Arc::new(Mutex::new(None));
        let (report_tx, reports) = std_mpsc::channel();
        let concurrency = self.props.concurrency.max(1);
        let mut cores = Vec::with_capacity(concurrency as usize);
        for index in 0..concurrency {
            let name = format!("{}-{index}", self.props.listener_id);
            let core = Arc::new(ConsumerCore::new(
                name.clone(),
                Arc::clone(&self.props),
                self.handler,
                self.cx.clone(),
                Arc::clone(&self.counters),
                runtime.clone(),
            ));
            cores.push(Arc::clone(&core));
            let consumer: BaseConsumer<CoreContext> = self
                .props
                .consumer_config(index)
                .create_with_context(CoreContext(core))
                .map_err(|source| Error::ClientCreation {
                    client: format!("consumer {name}"),
                    origin: None,
                    source,
                })?;
            let topics: Vec<&str> = self.props.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|e| Error::kafka(format!("subscribing {name} to {topics:?}"), e))?;
            let (stop, deadline, report_tx) =
                (Arc::clone(&stop), Arc::clone(&deadline), report_tx.clone());
            std::thread::Builder::new()
                .name(format!("kl-{name}"))
                .spawn(move || {
                    let report = consumer::poll_loop(consumer, &stop, &deadline);
                    let _ = report_tx.send(report);
                })
                .map_err(|source| Error::Io {
                    operation: format!("spawning the consumer thread for {name}"),
                    source,
                })?;
        }
        tracing::info!(listener = %self.props.listener_id, group = %self.props.group_id,
            topics = ?self.props.topics, concurrency, ack_mode = ?self.props.ack_mode, "listener started");
        self.running = Some(Running {
            cores,
            stop,
            deadline,
            reports,
            consumers: concurrency,
        });
        Ok(())
    }

    /// Asks the consumers to stop fetching and finish in-flight work by `deadline`. Returns at
    /// once; [`wait`](Self::wait) collects the outcome.
    pub fn stop(&self, deadline: Instant) {
        if let Some(running) = &self.running {
            *running.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
            running.stop.store(true, Ordering::Release);
        }
    }

    /// Blocks until every consumer finished its shutdown (or `deadline` plus a grace period
    /// for closing passed). Call after [`stop`](Self::stop); blocking, so not on an async worker.
    pub fn wait(&mut self, deadline: Instant) -> ContainerReport {
        let mut report = ContainerReport::default();
        let Some(running) = self.running.take() else {
            return report;
        };
        // Closing (leave group) comes after the commit; give it a little beyond the deadline.
        let close_deadline = deadline + Duration::from_secs(5);
        for _ in 0..running.consumers {
            let left = close_deadline.saturating_duration_since(Instant::now());
            match running.reports.recv_timeout(left) {
                Ok(r) => {
                    report.committed_partitions += r.committed_partitions;
                    report.redeliverable += r.redeliverable;
                    report.commit_failures += r.commit_failures;
                    report.handlers_cut_off += r.handlers_cut_off;
                }
                Err(_) => report.consumers_not_closed += 1,
            }
        }
        report.finished = self.counters.finished.load(Ordering::Relaxed);
        report.recovered = self.counters.recovered.load(Ordering::Relaxed);
        report
    }

    /// [`stop`](Self::stop) then [`wait`](Self::wait), without blocking the async runtime.
    pub async fn shutdown(mut self, timeout: Duration) -> ContainerReport {
        let deadline = Instant::now() + timeout;
        self.stop(deadline);
        tokio::task::spawn_blocking(move || self.wait(deadline))
            .await
            .unwrap_or_default()
    }
}
