//! One consumer: a dedicated OS thread that owns the librdkafka consumer and every call on it
//! except taking records.
//!
//! Each assigned partition's records go to a queue of its own (split off the consumer queue
//! before the partition is assigned), which the partition's worker drains in chunks; librdkafka
//! stops fetching a partition whose queue is full, so there is no pausing for back-pressure.
//! The thread polls the consumer queue for rebalances and errors, applies seeks, nacks and
//! pauses, commits what the ack mode allows (at most one asynchronous commit in flight, so
//! commits coalesce), and runs the rebalance protocol inside librdkafka's callback. Handlers
//! never run here, so blocking in the rebalance callback (waiting for in-flight handlers) is
//! safe.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, TopicPartitionList};

use super::ffi::CommitQueue;
use super::seek::resolve;
use super::state::{ConsumerRequest, Counters, PartitionState};
use super::ContainerProperties;
use crate::listener::{Handler, ListenerContext};

/// A partition assigned to this consumer, seen from the consumer thread.
pub(super) struct Assigned {
    pub(super) state: Arc<PartitionState>,
}

/// The partitions of a commit in flight, each with its full-seek generation when sent.
pub(super) type InFlight = Vec<(Arc<PartitionState>, u64)>;

/// What the poll loop and the rebalance callback (same thread) share.
pub(crate) struct ConsumerCore {
    pub(crate) name: String,
    pub(super) props: Arc<ContainerProperties>,
    pub(super) handler: Handler,
    pub(super) cx: ListenerContext,
    pub(super) counters: Arc<Counters>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) assigned: Mutex<Vec<Assigned>>,
    /// Set once shutdown committed: the revoke that librdkafka runs while closing must not
    /// commit again (work cut off by the deadline may finish late and must stay uncommitted).
    pub(super) closed: AtomicBool,
    pub(crate) requests_tx: std::sync::mpsc::Sender<ConsumerRequest>,
    /// Paused by the application: newly assigned partitions start paused too.
    pub(super) user_paused: AtomicBool,
    pub(super) requests_rx: Mutex<Option<std::sync::mpsc::Receiver<ConsumerRequest>>>,
    /// Asynchronous commits go through it, one at a time (see [`CommitQueue`]). Installed by
    /// the poll loop and always dropped before the consumer.
    pub(super) commits: Mutex<Option<CommitQueue>>,
    /// The partitions (state and full-seek generation when sent) of the asynchronous commit
    /// whose outcome has not come back yet; `None` when none is in flight. An outcome applies
    /// only to the same state in the same generation (not to a re-assignment or after a seek).
    pub(super) in_flight: Mutex<Option<InFlight>>,
    /// When the asynchronous commit in flight was sent (for its latency).
    pub(super) commit_sent_at: Mutex<Option<std::time::Instant>>,
    /// The per-partition lag and timing gauges, refreshed by librdkafka's statistics.
    pub(super) gauges: crate::telemetry::PartitionGauges,
    /// It ran an assignment callback (an empty one counts: it is in its group).
    pub(super) joined: AtomicBool,
}

impl ConsumerCore {
    pub(crate) fn new(
        name: String,
        props: Arc<ContainerProperties>,
        handler: Handler,
        cx: ListenerContext,
        counters: Arc<Counters>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let (requests_tx, requests_rx) = std::sync::mpsc::channel();
        ConsumerCore {
            requests_tx,
            requests_rx: Mutex::new(Some(requests_rx)),
            user_paused: AtomicBool::new(false),
            name,
            props,
            handler,
            cx,
            counters,
            runtime,
            assigned: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            commits: Mutex::new(None),
            in_flight: Mutex::new(None),
            commit_sent_at: Mutex::new(None),
            gauges: crate::telemetry::PartitionGauges::default(),
            joined: AtomicBool::new(false),
        }
    }

    /// Whether a partition without a committed offset starts at its log start.
    fn starts_at_earliest(&self) -> bool {
        self.props
            .client_config
            .iter()
            .rev()
            .find(|(k, _)| k == "auto.offset.reset")
            .is_some_and(|(_, v)| v == "earliest" || v == "smallest" || v == "beginning")
    }

    /// Whether the consumer reads only committed transactional records (librdkafka's default,
    /// unlike Java's): its end of a partition is then the last stable offset.
    fn read_committed(&self) -> bool {
        self.props
            .client_config
            .iter()
            .rev()
            .find(|(k, _)| k == "isolation.level")
            .is_none_or(|(_, v)| v != "read_uncommitted")
    }

    /// Whether it is in its group (or was given its partitions).
    pub(crate) fn has_joined(&self) -> bool {
        self.joined.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How many of its partitions are paused (all of them while the application paused the
    /// container).
    pub(crate) fn paused_count(&self, container_paused: bool) -> usize {
        let assigned = self.assigned();
        if container_paused {
            return assigned.len();
        }
        assigned
            .iter()
            .filter(|a| a.state.paused.load(std::sync::atomic::Ordering::Acquire) != 0)
            .count()
    }

    /// Each partition it owns: topic, partition, committed lag (at the last statistics tick),
    /// paused.
    pub(crate) fn partition_status(
        &self,
        container_paused: bool,
    ) -> Vec<(String, i32, Option<i64>, bool)> {
        self.assigned()
            .iter()
            .map(|a| {
                let s = &a.state;
                (
                    s.topic.to_string(),
                    s.partition,
                    self.gauges.lag(&s.topic, s.partition),
                    container_paused || s.paused.load(std::sync::atomic::Ordering::Acquire) != 0,
                )
            })
            .collect()
    }

    /// The partitions this consumer owns now.
    pub(crate) fn assignment(&self) -> Vec<(String, i32)> {
        self.assigned()
            .iter()
            .map(|a| (a.state.topic.to_string(), a.state.partition))
            .collect()
    }

    pub(super) fn assigned(&self) -> MutexGuard<'_, Vec<Assigned>> {
        // Only this consumer's thread locks it; poisoning would mean a panic here, and the
        // state is still consistent (plain data), so carry on.
        self.assigned.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// librdkafka's view of our core: routes rebalance and commit callbacks and logs.
pub(crate) struct CoreContext(pub(crate) Arc<ConsumerCore>);

impl ClientContext for CoreContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::librdkafka_log::log_librdkafka(&self.0.name, level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(consumer = %self.0.name, error = %error, "librdkafka: {reason}");
    }

    /// librdkafka's statistics (only with `statistics.interval.ms`, which the management
    /// endpoint sets): the per-partition lag and timing gauges.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let core = &self.0;
        let read_committed = core.read_committed();
        let assigned: Vec<Arc<PartitionState>> = core
            .assigned()
            .iter()
            .map(|a| Arc::clone(&a.state))
            .collect();
        let samples: Vec<crate::telemetry::PartitionSample<'_>> = assigned
            .iter()
            .map(|state| {
                let p = statistics
                    .topics
                    .get(&*state.topic)
                    .and_then(|t| t.partitions.get(&state.partition));
                let end = p.map_or(-1, |p| {
                    if read_committed {
                        p.ls_offset
                    } else {
                        p.hi_offset
                    }
                });
                crate::telemetry::PartitionSample {
                    listener: &core.props.listener_id,
                    group: &core.props.group_id,
                    topic: &state.topic,
                    partition: state.partition,
                    end,
                    committed: p
                        .map_or(-1, |p| p.committed_offset)
                        .max(state.offsets.confirmed_offset()),
                    start: if core.starts_at_earliest() {
                        p.map_or(-1, |p| p.lo_offset)
                    } else {
                        -1
                    },
                    finished: state.offsets.finished_offset(),
                }
            })
            .collect();
        core.gauges.update(&samples, std::time::Instant::now());
    }
}

/// What a consumer thread reports when it ends.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ConsumerReport {
    pub(crate) committed_partitions: usize,
    pub(crate) redeliverable: u64,
    pub(crate) commit_failures: usize,
    pub(crate) handlers_cut_off: usize,
    /// 1 when the consumer thread died instead of shutting down.
    pub(crate) died: usize,
}

impl ConsumerReport {
    /// The report of a consumer thread that died: nothing it held was committed at the end.
    pub(crate) fn died() -> Self {
        ConsumerReport {
            died: 1,
            ..ConsumerReport::default()
        }
    }
}

/// Subscribes the consumer to its topics or pattern, or assigns its share of the explicit
/// partitions (starting them where asked; blocking when that needs a lookup). With explicit
/// partitions, consumer `index` of `consumers` takes every `consumers`-th partition from
/// `index` on, so each partition has exactly one consumer (as Spring splits them).
pub(crate) fn attach(
    consumer: &BaseConsumer<CoreContext>,
    core: &ConsumerCore,
    props: &ContainerProperties,
    index: usize,
    consumers: usize,
) -> KafkaResult<()> {
    if !props.partitions.is_empty() {
        let mut tpl = TopicPartitionList::new();
        let share = props
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| i % consumers.max(1) == index)
            .map(|(_, p)| p);
        for p in share {
            tpl.add_partition(&p.topic, p.partition);
            if let Some(target) = p.initial {
                let offset = resolve(consumer, &p.topic, p.partition, target)?;
                tpl.set_partition_offset(&p.topic, p.partition, offset)?;
            }
        }
        core.assign(consumer, &tpl);
        consumer.assign(&tpl)?;
        core.apply_user_pause(consumer, &tpl);
        return Ok(());
    }
    match &props.topic_pattern {
        // librdkafka treats a subscription starting with ^ as a regular expression.
        Some(pattern) if pattern.starts_with('^') => consumer.subscribe(&[pattern.as_str()]),
        Some(pattern) => consumer.subscribe(&[format!("^{pattern}").as_str()]),
        None => {
            let topics: Vec<&str> = props.topics.iter().map(String::as_str).collect();
            consumer.subscribe(&topics)
        }
    }
}
