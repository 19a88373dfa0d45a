//! Rebalance callbacks and seeks: what an application can hook into when partitions move.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

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

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
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

/// Callbacks on partition movement, Spring's `ConsumerAwareRebalanceListener`.
///
/// They run on the consumer's own thread, inside the rebalance: keep them short (blocking
/// here delays the whole group's rebalance). Give one to a listener with
/// `#[kafka_listener(rebalance_listener = MY_STATIC, ...)]`, or in [`ContainerProperties`](super::ContainerProperties).
pub trait RebalanceListener: Send + Sync + 'static {
    /// Partitions were assigned; `seeker` may move their starting positions.
    fn on_partitions_assigned(&self, partitions: &[TopicPartition], seeker: &mut AssignmentSeeker) {
        let _ = (partitions, seeker);
    }

    /// Partitions are being revoked; their in-flight records are finishing, nothing committed yet.
    fn on_partitions_revoked_before_commit(&self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// Partitions were revoked, after what finished was committed.
    fn on_partitions_revoked_after_commit(&self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }

    /// Partitions were lost (the consumer was evicted): nothing was committed for them.
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
}

pub(crate) fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().to_owned(),
            partition: e.partition(),
        })
        .collect()
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
    requests: std::sync::mpsc::Sender<super::partition::ConsumerRequest>,
    state: std::sync::Arc<super::partition::PartitionState>,
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
        let (topic, partition) = (self.state.topic.to_string(), self.state.partition);
        self.seek_partition(&topic, partition, target);
    }

    /// Moves the position of another partition owned by the same consumer (ignored otherwise).
    pub fn seek_partition(&self, topic: &str, partition: i32, target: SeekTarget) {
        let _ = self.requests.send(super::partition::ConsumerRequest::Seek {
            topic: topic.to_owned(),
            partition,
            target,
        });
    }
}

impl crate::listener::FromRecord for Seeker {
    fn from_record(
        _: &crate::ConsumerRecord,
        cx: &crate::ListenerContext,
    ) -> Result<Self, crate::ExtractError> {
        cx.partition
            .as_ref()
            .map(|link| Seeker {
                requests: link.requests.clone(),
                state: std::sync::Arc::clone(&link.state),
            })
            .ok_or(crate::ExtractError::Unavailable(
                "a Seeker is only available inside a running listener container",
            ))
    }
}
