//! The listener container: consumers, poll loops, dispatch, offset tracking, commits and the
//! rebalance protocol for one listener.
//!
//! ```text
//! ListenerContainer ─┬─ consumer thread 1: polls the consumer's main queue (rebalances, errors),
//!                    │    runs the rebalance protocol, seeks, nacks, pauses and commits
//!                    │    └─ per assigned partition: its own librdkafka queue (split before the
//!                    │       assignment) ── partition worker (tokio task): drains the queue in
//!                    │       chunks, runs the handler inline, publishes finished offsets
//!                    └─ consumer thread N ...
//! ```
//!
//! Records never pass through the consumer thread: a partition's worker takes them from its own
//! queue (`ffi::PartitionQueue`, `rd_kafka_consume_batch_queue`), so the only cross-thread
//! traffic per chunk is one atomic store of the finished offset and a wake-up of the consumer
//! thread when a commit is due. The consumer thread commits what workers finished on the ack
//! mode's schedule, asynchronously and at most one commit in flight, and synchronously on
//! revoke and shutdown.

mod ack;
mod breaker;
mod chunk;
mod commit;
mod consumer;
mod ffi;
mod keyed;
mod offsets;
mod poll;
mod rebalance;
mod seek;
mod shutdown;
mod state;
pub(crate) mod supervision;
mod worker;

pub use ack::Acknowledgment;
pub use rebalance::{RebalanceListener, TopicPartition};
pub use seek::{AssignmentSeeker, SeekTarget, Seeker};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::config::AckMode;
use crate::error_handler::Recoverer;
use crate::error_handler::RetryPolicy;
use crate::listener::{Handler, ListenerContext};
use crate::{Error, Result};
pub use breaker::CircuitBreakerPolicy;
use consumer::{ConsumerCore, ConsumerReport, CoreContext};
use state::{ConsumerRequest, Counters};

/// Everything a container needs to run one listener, resolved from the listener declaration
/// and the configuration.
#[derive(Clone)]
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
    /// Records of one partition handled at once, at most one per key, each key's in offset
    /// order (record listeners; 1: one record at a time). See the `keyed` module docs.
    pub concurrency_per_partition: u32,
    /// When offsets are committed.
    pub ack_mode: AckMode,
    /// Records finished between commits in `count` and `count_time` modes.
    pub ack_count: u64,
    /// Time between commits in `time` and `count_time` modes.
    pub ack_time: Duration,
    /// Most records a partition worker takes from its queue at once
    /// (`kafka.consumer.max-poll-records`): the size of a batch listener's batch.
    pub max_poll_records: usize,
    /// Memory budget of fetched, unfinished records per assigned partition
    /// (`kafka.listener.max-buffered-bytes`): librdkafka prefetches up to an eighth of it into
    /// the partition's own queue and the worker holds a chunk of at most an eighth. Nothing is
    /// paused for back-pressure: librdkafka stops fetching a partition whose queue is full.
    pub max_buffered_bytes: usize,
    /// Longest wait for records in one poll (`kafka.listener.poll-timeout`).
    pub poll_timeout: Duration,
    /// Budget for finishing in-flight work at shutdown.
    pub shutdown_timeout: Duration,
    /// Budget for in-flight handlers of revoked partitions.
    pub revoke_timeout: Duration,
    /// Retries before the recoverer.
    pub retry: RetryPolicy,
    /// What is done with a record the retries gave up on (default:
    /// [`LogRecoverer`](crate::LogRecoverer)).
    pub recoverer: Option<Arc<dyn Recoverer>>,
    /// Errors for which this returns true skip the retries, like errors marked
    /// [`NonRetryable`](crate::NonRetryable).
    pub not_retryable: Option<Arc<crate::error_handler::RetryableClassifier>>,
    /// The container consumes retry topics (`Some`: their longest delay): a record whose
    /// `retry_topic-backoff-timestamp` is still ahead holds its partition (paused,
    /// uncommitted) until then, but never longer than this delay and a second (a due time
    /// further ahead, from a skewed clock or a foreign producer, is logged and cut short).
    pub retry_topic_max_delay: Option<Duration>,
    /// Record listeners see the delivery attempt as a `kafka_deliveryAttempt` header.
    pub delivery_attempt_header: bool,
    /// Stops the listener when too many records are given up (default: none).
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// librdkafka properties for the consumers (bootstrap servers and passthrough). The
    /// container adds `group.id`, `client.id` and the settings its delivery guarantee needs.
    pub client_config: Vec<(String, String)>,
    /// Prefix of each consumer's `client.id` (suffix `-0`, `-1`, ...).
    pub client_id_prefix: String,
    /// Subscribe to every topic matching this regular expression instead of `topics`
    /// (librdkafka syntax; topics created later are picked up at the next metadata refresh,
    /// `topic.metadata.refresh.interval.ms`).
    pub topic_pattern: Option<String>,
    /// Assign these partitions directly instead of subscribing: no group rebalancing, commits
    /// still follow the ack mode (under `group_id`).
    pub partitions: Vec<PartitionAssignment>,
    /// Rebalance callbacks.
    pub rebalance_listener: Option<Arc<dyn RebalanceListener>>,
}

impl std::fmt::Debug for ContainerProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerProperties")
            .field("listener_id", &self.listener_id)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("concurrency", &self.concurrency)
            .field("concurrency_per_partition", &self.concurrency_per_partition)
            .field("ack_mode", &self.ack_mode)
            .field("rebalance_listener", &self.rebalance_listener.is_some())
            .finish_non_exhaustive()
    }
}

impl ContainerProperties {
    /// Properties with defaults for everything but what identifies the listener.
    pub fn new(listener_id: &str, topics: Vec<String>, bootstrap_servers: &str) -> Self {
        ContainerProperties {
            listener_id: listener_id.to_owned(),
            topics,
            group_id: listener_id.to_owned(),
            concurrency: 1,
            concurrency_per_partition: 1,
            ack_mode: AckMode::Batch,
            ack_count: 1,
            ack_time: Duration::from_secs(5),
            max_poll_records: 500,
            max_buffered_bytes: 64 << 20,
            poll_timeout: Duration::from_millis(100),
            shutdown_timeout: Duration::from_secs(30),
            revoke_timeout: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            recoverer: None,
            not_retryable: None,
            retry_topic_max_delay: None,
            delivery_attempt_header: false,
            circuit_breaker: None,
            client_config: vec![("bootstrap.servers".to_owned(), bootstrap_servers.to_owned())],
            client_id_prefix: listener_id.to_owned(),
            rebalance_listener: None,
            topic_pattern: None,
            partitions: Vec::new(),
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
        // Refused at configuration time if set to anything else: our commits carry the
        // offsets of finished records only.
        config.set("enable.auto.commit", "false");
        // Static membership: every consumer of the listener needs its own instance id, or
        // they fence each other. Like the client id, consumer n gets `-n` appended.
        if self.concurrency > 1 {
            if let Some(id) = self.get("group.instance.id") {
                config.set("group.instance.id", format!("{id}-{index}"));
            }
        }
        // Each partition has a queue of its own (see `ffi::PartitionQueue`), and librdkafka's
        // prefetch limits then apply per partition. The byte limit is what bounds memory: an
        // eighth of the byte budget (librdkafka's own default, 64 MiB, would apply to every
        // partition). The record limit stays at librdkafka's default (100,000) on purpose: a
        // partition is fetched again only once its queue is below it, and a limit near one
        // fetch's worth of records (a few thousand small records per 1 MiB
        // `max.partition.fetch.bytes`) leaves the worker waiting a round trip per fetch: with
        // 10 x max-poll-records (5,000) the no-op benchmark ran at 0.65M records/s, with
        // 100,000 at 1.85M (bench-listener, 1M x 100 B, 6 partitions, three runs each).
        if self.get("queued.max.messages.kbytes").is_none() {
            let kbytes = (self.max_buffered_bytes / 8 / 1024).clamp(1024, 2_097_151);
            config.set("queued.max.messages.kbytes", kbytes.to_string());
        }
        // At low and moderate rates librdkafka's defaults (a fetch returns as soon as one byte
        // is there) make its broker thread send a fetch per record or two: at 5,000 records/s
        // it spent 2.6-2.8 CPU-s per 10 s, mostly in system calls and context switches, and the
        // latency grew with the backlog it caused on a 2-core machine. Letting the broker
        // gather 4 KiB, for at most 10 ms, cut that to 0.6-1.1 CPU-s and the median latency
        // from ~28 ms to 2-6 ms (BENCHMARKS.md). An idle consumer then fetches every 10 ms
        // instead of every 500 ms; `kafka.consumer.fetch-max-wait` / `fetch-min-size` undo it.
        if self.get("fetch.min.bytes").is_none() {
            config.set("fetch.min.bytes", "4096");
        }
        if self.get("fetch.wait.max.ms").is_none() {
            config.set("fetch.wait.max.ms", "10");
        }
        // librdkafka idles a partition for fetch.queue.backoff.ms (default 1s) once its
        // prefetch queue is full; a consumer slightly slower than the fetcher then stalls.
        if self.get("fetch.queue.backoff.ms").is_none() {
            config.set("fetch.queue.backoff.ms", "10");
        }
        config
    }
}

/// One explicitly assigned partition and where to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAssignment {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Where to start; `None`: the committed offset (or `auto-offset-reset`).
    pub initial: Option<SeekTarget>,
}

impl std::str::FromStr for PartitionAssignment {
    type Err = String;

    /// `topic:partition` or `topic:partition@start`, where start is an offset, `earliest`,
    /// `latest`, or `-N` (N before the committed offset).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let expected = || {
            format!("{s:?}: expected topic:partition or topic:partition@offset (offset: a number, earliest, latest, or -N relative to the committed offset)")
        };
        let (topic, rest) = s.trim().rsplit_once(':').ok_or_else(expected)?;
        let (partition, start) = match rest.split_once('@') {
            Some((p, o)) => (p, Some(o.trim())),
            None => (rest, None),
        };
        let partition: i32 = partition.trim().parse().map_err(|_| expected())?;
        let initial = match start {
            None => None,
            Some("earliest") => Some(SeekTarget::Beginning),
            Some("latest") => Some(SeekTarget::End),
            Some(o) if o.starts_with('-') => {
                Some(SeekTarget::Relative(o.parse().map_err(|_| expected())?))
            }
            Some(o) => Some(SeekTarget::Offset(o.parse().map_err(|_| expected())?)),
        };
        if topic.trim().is_empty() || partition < 0 {
            return Err(expected());
        }
        Ok(PartitionAssignment {
            topic: topic.trim().to_owned(),
            partition,
            initial,
        })
    }
}

/// What a consumer thread tells [`ListenerContainer::wait`], in this order.
enum ConsumerEvent {
    /// The final commit was made (or the thread died before it).
    Committed(ConsumerReport),
    /// The thread died while closing, after `Committed`.
    DiedClosing,
    /// The consumer closed (or the thread ended without closing it).
    Closed,
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
    /// Consumers that did not get to their final commit before the deadline (what they
    /// finished may not be committed).
    pub consumers_not_closed: usize,
    /// Consumers that made their final commit but had not left the group by the deadline.
    /// Harmless for what was consumed; they go on closing in the background.
    pub consumers_still_closing: usize,
    /// Consumer threads that died (a panic) instead of shutting down.
    pub consumers_died: usize,
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
        self.consumers_still_closing += other.consumers_still_closing;
        self.consumers_died += other.consumers_died;
    }
}

struct Running {
    cores: Vec<Arc<ConsumerCore>>,
    stop: Arc<AtomicBool>,
    deadline: Arc<Mutex<Option<Instant>>>,
    reports: std_mpsc::Receiver<ConsumerEvent>,
    consumers: u32,
}

struct Inner {
    props: Arc<ContainerProperties>,
    handler: Handler,
    cx: ListenerContext,
    counters: Arc<Counters>,
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    running: Mutex<Option<Running>>,
    paused: AtomicBool,
}

/// Runs one listener: `concurrency` consumers in its group, each on its own thread, with a
/// worker task per assigned partition.
///
/// Cheap to clone: clones are handles to the same container, so the application can keep one
/// to [`pause`](Self::pause), [`resume`](Self::resume), [`stop`](Self::stop_gracefully) and
/// [`start`](Self::start) it at run time (Spring's `MessageListenerContainer` lifecycle).
#[derive(Clone)]
pub struct ListenerContainer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ListenerContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerContainer")
            .field("listener_id", &self.inner.props.listener_id)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ListenerContainer {
    /// A container for `handler` with `props`; `cx` is what extractors may draw on.
    pub fn new(props: ContainerProperties, handler: Handler, cx: ListenerContext) -> Self {
        let breaker = props.circuit_breaker.map(breaker::CircuitBreaker::new);
        let meters = crate::telemetry::ListenerMeters::new(&props.listener_id);
        ListenerContainer {
            inner: Arc::new(Inner {
                props: Arc::new(props),
                handler,
                cx,
                counters: Arc::new(Counters {
                    breaker,
                    meters,
                    ..Counters::default()
                }),
                runtime: Mutex::new(None),
                running: Mutex::new(None),
                paused: AtomicBool::new(false),
            }),
        }
    }

    /// The listener id.
    pub fn listener_id(&self) -> &str {
        &self.inner.props.listener_id
    }

    /// The properties this container runs with.
    pub fn properties(&self) -> &ContainerProperties {
        &self.inner.props
    }

    /// Records finished so far (handled or recovered), over every start.
    pub fn finished(&self) -> u64 {
        self.inner.counters.finished.load(Ordering::Relaxed)
    }

    /// The partitions its consumers own now, sorted (Spring's `getAssignedPartitions`).
    pub fn assigned_partitions(&self) -> Vec<(String, i32)> {
        let mut all: Vec<(String, i32)> = lock(&self.inner.running)
            .iter()
            .flat_map(|r| r.cores.iter().flat_map(|c| c.assignment()))
            .collect();
        all.sort();
        all
    }

    /// How many of its partitions are paused now: by [`pause`](Self::pause), a nack's delay,
    /// or a retry copy not due yet.
    pub fn paused_partitions(&self) -> usize {
        let paused = self.is_paused();
        lock(&self.inner.running)
            .iter()
            .flat_map(|r| r.cores.iter())
            .map(|c| c.paused_count(paused))
            .sum()
    }

    /// Its partitions now, sorted: topic, partition, committed lag (from the last statistics
    /// tick, when the management endpoint is on), paused.
    pub(crate) fn partition_status(&self) -> Vec<(String, i32, Option<i64>, bool)> {
        let paused = self.is_paused();
        let mut all: Vec<_> = lock(&self.inner.running)
            .iter()
            .flat_map(|r| r.cores.iter().flat_map(|c| c.partition_status(paused)))
            .collect();
        all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        all
    }

    /// The last failures of its records (newest first), for the status page.
    pub(crate) fn recent_events(&self) -> Vec<crate::telemetry::RecentEvent> {
        self.inner.counters.recent.list()
    }

    /// Whether every one of its consumers is in its group (each ran an assignment callback
    /// since the last start, empty assignments included), or was given its partitions
    /// directly. `false` while it is not running.
    pub fn has_joined(&self) -> bool {
        lock(&self.inner.running)
            .as_ref()
            .is_some_and(|r| !r.cores.is_empty() && r.cores.iter().all(|c| c.has_joined()))
    }

    /// The per-listener gauges of the metrics (read when they are rendered).
    pub(crate) fn refresh_gauges(&self) {
        crate::telemetry::listener_gauges(
            self.listener_id(),
            self.is_running(),
            self.assigned_partitions().len(),
            self.paused_partitions(),
            self.is_circuit_breaker_open(),
            self.circuit_breaker_trips(),
        );
    }

    /// Whether the container has been started and not stopped.
    pub fn is_running(&self) -> bool {
        lock(&self.inner.running).is_some()
    }

    /// Whether [`pause`](Self::pause) is in effect.
    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::Acquire)
    }

    fn send_to_consumers(&self, make: impl Fn() -> ConsumerRequest) {
        if let Some(running) = lock(&self.inner.running).as_ref() {
            for core in &running.cores {
                let _ = core.requests_tx.send(make());
            }
        }
    }

    /// Stops handing records to the handler; in-flight records finish and are committed as
    /// usual. librdkafka keeps what it prefetched (up to its per-partition limits) and then
    /// stops fetching; nothing is dropped or fetched again. The consumers keep polling, so they
    /// stay in the group and keep their partitions. Takes effect within one poll turn
    /// (~100 ms); a restart of the container keeps it paused.
    pub fn pause(&self) {
        self.inner.paused.store(true, Ordering::Release);
        self.send_to_consumers(|| ConsumerRequest::Pause);
    }

    /// Whether the listener's circuit breaker is open: too many records were given up, and
    /// the listener takes no more records until it is reset (or `reset-after` passes).
    pub fn is_circuit_breaker_open(&self) -> bool {
        self.inner
            .counters
            .breaker
            .as_ref()
            .is_some_and(|b| b.is_open())
    }

    /// Times the circuit breaker tripped since the container was created.
    pub fn circuit_breaker_trips(&self) -> u64 {
        self.inner
            .counters
            .breaker
            .as_ref()
            .map_or(0, |b| b.trips())
    }

    /// Closes the circuit breaker: the listener takes records again, and a record held
    /// before its recoverer goes on to it.
    pub fn reset_circuit_breaker(&self) {
        if let Some(b) = &self.inner.counters.breaker {
            b.reset("reset by command");
        }
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::Release);
        self.send_to_consumers(|| ConsumerRequest::Resume);
    }

    /// Bytes of records fetched and not yet finished or dropped, over the container's
    /// partitions (what `kafka.listener.max-buffered-bytes` bounds). For tests and, later,
    /// metrics; librdkafka's own prefetch is not included.
    #[doc(hidden)]
    pub fn buffered_bytes(&self) -> usize {
        self.inner
            .counters
            .buffered_bytes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Fault injection, for tests of supervision: the first consumer thread of the container
    /// panics on its next turn, as a bug would make it. Not part of the supported API.
    #[doc(hidden)]
    pub fn inject_consumer_panic(&self) {
        if let Some(running) = lock(&self.inner.running).as_ref() {
            if let Some(core) = running.cores.first() {
                let _ = core.requests_tx.send(ConsumerRequest::InjectPanic);
            }
        }
    }

    /// Moves a partition's position, on whichever consumer owns it (see [`Seeker`]).
    pub fn seek(&self, topic: &str, partition: i32, target: SeekTarget) {
        self.send_to_consumers(|| ConsumerRequest::Seek {
            topic: topic.to_owned(),
            partition,
            target,
            from: None,
        });
    }

    /// Starts the consumers. Handlers run on `runtime` (remembered for later restarts).
    /// Fails if a consumer cannot be created (for example a bad librdkafka property) or cannot
    /// subscribe. Starting a running container does nothing.
    pub fn start_on(&self, runtime: &tokio::runtime::Handle) -> Result<()> {
        *lock(&self.inner.runtime) = Some(runtime.clone());
        self.start()
    }

    /// Starts the consumers again after a stop, on the runtime given to
    /// [`start_on`](Self::start_on) (or the current one).
    pub fn start(&self) -> Result<()> {
        let mut running = lock(&self.inner.running);
        if running.is_some() {
            return Ok(());
        }
        let runtime = match lock(&self.inner.runtime).clone() {
            Some(rt) => rt,
            None => tokio::runtime::Handle::try_current().map_err(|_| Error::Listener {
                id: self.inner.props.listener_id.clone(),
                message: "start() needs a tokio runtime: call it from one or use start_on()".into(),
            })?,
        };
        let props = &self.inner.props;
        if props.concurrency_per_partition > 1 && self.inner.handler.is_batch() {
            return Err(Error::Listener {
                id: props.listener_id.clone(),
                message: format!(
                    "concurrency_per_partition = {}: a batch listener gets a partition's records in one call; key lanes apply to record listeners",
                    props.concurrency_per_partition
                ),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Arc::new(Mutex::new(None));
        let (report_tx, reports) = std_mpsc::channel();
        let mut concurrency = props.concurrency.max(1);
        // Explicit partitions are split among the consumers; more consumers than partitions
        // would sit idle, so there are at most as many consumers as partitions.
        if !props.partitions.is_empty() && concurrency as usize > props.partitions.len() {
            tracing::warn!(listener = %props.listener_id, concurrency, partitions = props.partitions.len(),
                "concurrency is above the number of explicit partitions: starting one consumer per partition");
            concurrency = props.partitions.len() as u32;
        }
        let mut cores = Vec::with_capacity(concurrency as usize);
        let mut started = Vec::with_capacity(concurrency as usize);
        for index in 0..concurrency {
            let name = format!("{}-{index}", props.listener_id);
            let core = Arc::new(ConsumerCore::new(
                name.clone(),
                Arc::clone(props),
                self.inner.handler,
                self.inner.cx.clone(),
                Arc::clone(&self.inner.counters),
                runtime.clone(),
            ));
            if self.is_paused() {
                let _ = core.requests_tx.send(ConsumerRequest::Pause);
            }
            let consumer: BaseConsumer<CoreContext> = props
                .consumer_config(index)
                .create_with_context(CoreContext(Arc::clone(&core)))
                .map_err(|source| Error::ClientCreation {
                    client: format!("consumer {name}"),
                    origin: None,
                    source,
                })?;
            let consumer = shutdown::OwnedConsumer::new(consumer);
            consumer::attach(
                &consumer,
                &core,
                props,
                index as usize,
                concurrency as usize,
            )
            .map_err(|e| Error::kafka(format!("subscribing {name}"), e))?;
            cores.push(core);
            started.push((name, consumer));
        }
        for (name, consumer) in started {
            let (stop, deadline, report_tx) =
                (Arc::clone(&stop), Arc::clone(&deadline), report_tx.clone());
            let stop_on_error = Arc::clone(&stop);
            let thread_name = name.clone();
            std::thread::Builder::new()
                .name(format!("kl-{name}"))
                .spawn(move || {
                    let reported = AtomicBool::new(false);
                    let run = std::panic::AssertUnwindSafe(|| {
                        let (report, consumer) = poll::poll_loop(consumer, &stop, &deadline);
                        let _ = report_tx.send(ConsumerEvent::Committed(report));
                        reported.store(true, Ordering::Relaxed);
                        // Closing: the final revoke and leaving the group.
                        drop(consumer);
                    });
                    if let Err(payload) = std::panic::catch_unwind(run) {
                        let cause = supervision::panic_message(&*payload);
                        supervision::report_death(&thread_name, "consumer thread", &cause);
                        let _ = report_tx.send(if reported.load(Ordering::Relaxed) {
                            ConsumerEvent::DiedClosing
                        } else {
                            ConsumerEvent::Committed(ConsumerReport::died())
                        });
                    }
                    let _ = report_tx.send(ConsumerEvent::Closed);
                })
                .map_err(|source| {
                    // The threads already running have no `Running` entry to stop them by.
                    stop_on_error.store(true, Ordering::Release);
                    Error::Io {
                        operation: format!("spawning the consumer thread for {name}"),
                        source,
                    }
                })?;
        }
        tracing::info!(listener = %props.listener_id, group = %props.group_id,
            topics = ?props.topics, pattern = ?props.topic_pattern, partitions = props.partitions.len(),
            concurrency, ack_mode = %props.ack_mode, "listener started");
        *running = Some(Running {
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
        if let Some(running) = lock(&self.inner.running).as_ref() {
            *lock(&running.deadline) = Some(deadline);
            running.stop.store(true, Ordering::Release);
        }
    }

    /// Blocks until every consumer finished its shutdown (or `deadline` plus a grace period
    /// for closing passed). Call after [`stop`](Self::stop); blocking, so not on an async worker.
    pub fn wait(&self, deadline: Instant) -> ContainerReport {
        let mut report = ContainerReport::default();
        let Some(running) = lock(&self.inner.running).take() else {
            return report;
        };
        // Each consumer reports its final commit, then closes (leaves the group). Both get
        // a little beyond the deadline; a consumer that committed but is still closing then
        // is left to finish on its own thread: nothing it holds is at stake any more.
        let close_deadline = deadline + Duration::from_secs(5);
        let consumers = running.consumers as usize;
        let (mut committed, mut closed) = (0, 0);
        while closed < consumers {
            let left = close_deadline.saturating_duration_since(Instant::now());
            match running.reports.recv_timeout(left) {
                Ok(ConsumerEvent::Committed(r)) => {
                    committed += 1;
                    report.committed_partitions += r.committed_partitions;
                    report.redeliverable += r.redeliverable;
                    report.commit_failures += r.commit_failures;
                    report.handlers_cut_off += r.handlers_cut_off;
                    report.consumers_died += r.died;
                }
                Ok(ConsumerEvent::DiedClosing) => report.consumers_died += 1,
                Ok(ConsumerEvent::Closed) => closed += 1,
                Err(_) => break,
            }
        }
        report.consumers_not_closed = consumers - committed;
        report.consumers_still_closing = committed.saturating_sub(closed);
        if report.consumers_still_closing > 0 {
            tracing::warn!(listener = %self.inner.props.listener_id, consumers = report.consumers_still_closing,
                "consumers committed but had not left the group by the deadline; they go on closing in the background (the group notices at the latest after session.timeout.ms)");
        }
        report.finished = self.inner.counters.finished.load(Ordering::Relaxed);
        report.recovered = self.inner.counters.recovered.load(Ordering::Relaxed);
        report
    }

    /// Graceful stop of this container alone ([`stop`](Self::stop), then [`wait`](Self::wait)
    /// without blocking the async runtime): in-flight records finish within `timeout` and are
    /// committed, the consumers leave the group. [`start`](Self::start) brings it back.
    pub async fn stop_gracefully(&self, timeout: Duration) -> ContainerReport {
        let deadline = Instant::now() + timeout;
        self.stop(deadline);
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.wait(deadline))
            .await
            .unwrap_or_default()
    }
}
