//! Seeks: the application's (run-time and on assignment) and the rewinds of nacks and failed
//! seeks, applied on the consumer thread under the partition's queue lock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::{ConsumerCore, CoreContext};
use super::rebalance::TopicPartition;
use super::state::{pause, PartitionLink, PartitionState};

/// Where to move a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeekTarget {
    /// The oldest record still in the log.
    Beginning,
    /// After the newest record: only new records.
    End,
    /// This offset.
    Offset(i64),
    /// The first record with a timestamp at or after this one (milliseconds since the epoch);
    /// the end if there is none.
    Timestamp(i64),
    /// Relative to the committed offset (or to the beginning if nothing is committed):
    /// `Relative(-10)` re-reads the last ten committed records.
    Relative(i64),
}

impl SeekTarget {
    /// The first record at or after `time`.
    pub fn at(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        SeekTarget::Timestamp(millis)
    }
}

/// Collects seeks requested while partitions are being assigned; the container applies them
/// as the assignment's starting offsets (librdkafka rejects a seek right after assignment).
#[derive(Debug, Default)]
pub struct AssignmentSeeker {
    pub(crate) seeks: Vec<(TopicPartition, SeekTarget)>,
}

impl AssignmentSeeker {
    /// Starts `partition` of `topic` at `target` instead of the committed offset.
    pub fn seek(&mut self, topic: &str, partition: i32, target: SeekTarget) {
        self.seeks
            .retain(|(tp, _)| !(tp.topic == topic && tp.partition == partition));
        self.seeks.push((
            TopicPartition {
                topic: topic.to_owned(),
                partition,
            },
            target,
        ));
    }

    /// Starts every newly assigned partition at `target`.
    pub fn seek_all(&mut self, partitions: &[TopicPartition], target: SeekTarget) {
        for tp in partitions {
            self.seek(&tp.topic, tp.partition, target);
        }
    }
}

/// Resolves a seek target to a librdkafka offset. Blocking (timestamp and committed lookups):
/// consumer thread only.
pub(crate) fn resolve<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    target: SeekTarget,
) -> Result<Offset, rdkafka::error::KafkaError> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    Ok(match target {
        SeekTarget::Beginning => Offset::Beginning,
        SeekTarget::End => Offset::End,
        SeekTarget::Offset(o) => Offset::Offset(o),
        SeekTarget::Timestamp(ts) => {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, Offset::Offset(ts))?;
            let found = consumer.offsets_for_times(tpl, TIMEOUT)?;
            found
                .find_partition(topic, partition)
                .map(|e| match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::End,
                })
                .unwrap_or(Offset::End)
        }
        SeekTarget::Relative(delta) => {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
            let base = committed
                .find_partition(topic, partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            Offset::Offset((base + delta).max(0))
        }
    })
}

/// Seeks partitions at run time from a handler (Spring's `ConsumerSeekCallback`): take it as
/// an argument, `seeker: Seeker`.
///
/// The consumer thread applies the seek on its next turn (within ~100 ms). Records of that
/// partition fetched before the seek and not yet handled are dropped unhandled (they are
/// fetched again if the new position covers them), and its offset tracking starts over at the
/// new position: a seek backwards makes the next commit go backwards too, on purpose.
#[derive(Clone)]
pub struct Seeker {
    requests: std::sync::mpsc::Sender<super::state::ConsumerRequest>,
    state: std::sync::Arc<super::state::PartitionState>,
    /// With key lanes, the offset of the record it was given with (see
    /// `ConsumerRequest::Seek::from`).
    offset: Option<i64>,
}

impl std::fmt::Debug for Seeker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seeker")
            .field("topic", &self.state.topic)
            .field("partition", &self.state.partition)
            .finish()
    }
}

impl Seeker {
    /// Moves the position of the partition this record came from. No further record of the
    /// partition is handled until the seek is applied; the next one comes from the new position.
    pub fn seek(&self, target: SeekTarget) {
        self.state
            .seek_pending
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = self.requests.send(super::state::ConsumerRequest::Seek {
            topic: self.state.topic.to_string(),
            partition: self.state.partition,
            target,
            from: self.offset,
        });
    }

    /// Moves the position of another partition owned by the same consumer (ignored otherwise).
    pub fn seek_partition(&self, topic: &str, partition: i32, target: SeekTarget) {
        if partition == self.state.partition && *self.state.topic == *topic {
            return self.seek(target);
        }
        let _ = self.requests.send(super::state::ConsumerRequest::Seek {
            topic: topic.to_owned(),
            partition,
            target,
            from: None,
        });
    }
}

impl crate::listener::FromRecord for Seeker {
    fn from_record(
        record: &crate::ConsumerRecord,
        cx: &crate::ListenerContext,
    ) -> Result<Self, crate::ExtractError> {
        PartitionLink::of(cx)
            .map(|link| Seeker {
                requests: link.requests.clone(),
                state: std::sync::Arc::clone(&link.state),
                offset: link.keyed.then_some(record.offset),
            })
            .ok_or(crate::ExtractError::Unavailable(
                "a Seeker is only available inside a running listener container",
            ))
    }
}

/// A rewind the consumer thread owes a partition: a nack's, or the fallback of a seek that
/// could not be applied. Until it is applied the partition stays paused and its worker takes
/// nothing (`seek_pending`), so no record from `offset` on is handled or committed.
pub(super) struct Rewind {
    pub(super) state: Arc<PartitionState>,
    pub(super) offset: i64,
    /// How long the partition stays paused after the rewind (a nack's delay).
    pub(super) delay: Duration,
    pub(super) why: &'static str,
    pub(super) failures: u32,
    pub(super) next_try: Instant,
}

impl Rewind {
    /// Pauses the partition and seeks it back to `offset`. Returns whether this rewind is
    /// done (applied, or moot because the partition was revoked: its next owner starts from
    /// the committed offset, which never passes `offset`). On failure it is retried, with a
    /// back-off, until it succeeds or the partition goes.
    pub(super) fn apply(
        &mut self,
        consumer: &BaseConsumer<CoreContext>,
        core: &ConsumerCore,
        nacked: &mut Vec<(Arc<PartitionState>, Instant)>,
    ) -> bool {
        let state = &self.state;
        let still_ours = core.assigned().iter().any(|a| Arc::ptr_eq(&a.state, state));
        if !still_ours {
            return true;
        }
        if state.paused.fetch_or(pause::NACK, Ordering::AcqRel) & pause::NACK == 0 {
            let mut tpl = TopicPartitionList::new();
            let _ = tpl.add_partition(&state.topic, state.partition);
            if let Err(e) = consumer.pause(&tpl) {
                tracing::warn!(consumer = %core.name, error = %e, "pausing a partition to rewind it failed");
            }
        }
        match seek_locked(
            consumer,
            state,
            Offset::Offset(self.offset),
            Some(self.offset),
            false,
        ) {
            Ok(()) => {
                tracing::info!(consumer = %core.name, topic = %state.topic, partition = state.partition,
                    offset = self.offset, delay = ?self.delay, "{}: partition rewound and paused", self.why);
                nacked.retain(|(s, _)| !Arc::ptr_eq(s, state));
                nacked.push((Arc::clone(state), Instant::now() + self.delay));
                true
            }
            Err(e) => {
                self.failures += 1;
                let backoff = Duration::from_millis(500)
                    .saturating_mul(1 << self.failures.min(6))
                    .min(Duration::from_secs(30));
                self.next_try = Instant::now() + backoff;
                tracing::error!(consumer = %core.name, topic = %state.topic, partition = state.partition,
                    offset = self.offset, error = %e, failures = self.failures,
                    "{}: rewinding the partition failed; it stays paused, nothing from this offset on is handled or committed, retrying in {backoff:?}", self.why);
                false
            }
        }
    }
}

/// Seeks a partition while holding its queue, so its worker takes nothing in between: every
/// chunk it takes carries the epoch of the position its records came from (librdkafka drops
/// records fetched before the seek). On success the partition's trackers start over
/// ([`PartitionState::seeked`]), a pending seek is cleared and the worker woken.
pub(super) fn seek_locked<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    state: &PartitionState,
    offset: Offset,
    rewind_to: Option<i64>,
    full: bool,
) -> KafkaResult<()> {
    let queue = state.queue.lock().unwrap_or_else(|p| p.into_inner());
    consumer.seek(
        &state.topic,
        state.partition,
        offset,
        Duration::from_secs(10),
    )?;
    state.seeked(rewind_to, full);
    // Delivery now resumes at the seek's offset: until the worker finishes a record there, a
    // later seek from a handler (of a record taken before this one landed) must not go past
    // it, nor may a failing seek leave a gap above it (the fault test found a second
    // handler seek skipping records a first, lowered one had rewound to).
    if let Offset::Offset(o) = offset {
        state
            .resume_at
            .store(o, std::sync::atomic::Ordering::Release);
    }
    state.seek_pending.store(false, Ordering::Release);
    drop(queue);
    state.wake.notify_one();
    Ok(())
}

/// Retries the rewinds that failed before and are due.
pub(super) fn retry_rewinds(
    consumer: &BaseConsumer<CoreContext>,
    core: &ConsumerCore,
    rewinds: &mut Vec<Rewind>,
    nacked: &mut Vec<(Arc<PartitionState>, Instant)>,
) {
    let now = Instant::now();
    rewinds.retain_mut(|r| r.next_try > now || !r.apply(consumer, core, nacked));
}

pub(super) fn resume_nacked(
    consumer: &BaseConsumer<CoreContext>,
    name: &str,
    nacked: &mut Vec<(Arc<PartitionState>, Instant)>,
) {
    let now = Instant::now();
    let mut tpl = TopicPartitionList::new();
    nacked.retain(|(state, at)| {
        if *at > now {
            return true;
        }
        if state.paused.fetch_and(!pause::NACK, Ordering::AcqRel) & pause::NACK != 0 {
            let _ = tpl.add_partition(&state.topic, state.partition);
        }
        false
    });
    if tpl.count() > 0 {
        if let Err(e) = consumer.resume(&tpl) {
            tracing::warn!(consumer = %name, error = %e, "resuming after a nack delay failed");
        }
    }
}
