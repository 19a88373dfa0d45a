//! `Acknowledgment`: manual commits and negative acknowledgements.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::state::{PartitionLink, PartitionState};
use crate::listener::{ConsumerRecord, FromBatch, FromRecord, ListenerContext};
use crate::ExtractError;

/// Lets a handler commit its record (or batch) itself, or ask for redelivery.
///
/// Take it as an argument: `ack: Acknowledgment` in a record listener, once (not in a `Vec`) in a
/// batch listener. With `ack_mode = "manual"` the acknowledged records are committed at the end
/// of the poll cycle's batch; with `"manual_immediate"` on the consumer's next turn (within
/// 100 ms). In the other ack modes the container commits on its own schedule and
/// `acknowledge` has no effect, but `nack` still works.
///
/// - Acknowledging twice is harmless.
/// - A record that is never acknowledged in a manual mode is never committed: commits stop
///   below it (the container logs this once per partition), and it is redelivered after a
///   restart or rebalance. Acknowledging later, from another task, is fine.
/// - Commits never run ahead of an unacknowledged record, whatever order acknowledgements
///   arrive in.
#[derive(Clone)]
pub struct Acknowledgment {
    inner: Option<Arc<AckInner>>,
}

struct AckInner {
    state: Arc<PartitionState>,
    /// Seek epoch at delivery: a nack from before a later seek or nack is stale.
    epoch: u64,
    /// Full-seek generation at delivery: an acknowledgement stays valid across a nack's
    /// rewind, not across a seek.
    generation: u64,
    manual: bool,
    /// Offsets covered, in order (one for a record listener).
    offsets: Vec<i64>,
    /// How many of `offsets` (a prefix) are acknowledged.
    acked: AtomicUsize,
    /// Index of the first record a nack asked to redeliver (`usize::MAX`: none). Records from
    /// there on are redelivered, so acknowledging them through this handle means nothing.
    nacked_from: AtomicUsize,
}

impl std::fmt::Debug for Acknowledgment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(i) => f
                .debug_struct("Acknowledgment")
                .field("topic", &i.state.topic)
                .field("partition", &i.state.partition)
                .field("offsets", &i.offsets)
                .field("acked", &i.acked.load(Ordering::Relaxed))
                .finish(),
            None => f.write_str("Acknowledgment(detached)"),
        }
    }
}

impl Acknowledgment {
    fn new(cx: &ListenerContext, offsets: Vec<i64>) -> Self {
        let inner = PartitionLink::of(cx).map(|link| {
            let (epoch, generation) = link.state.epoch_and_generation();
            Arc::new(AckInner {
                state: Arc::clone(&link.state),
                epoch,
                generation,
                manual: link.manual,
                offsets,
                acked: AtomicUsize::new(0),
                nacked_from: AtomicUsize::new(usize::MAX),
            })
        });
        Acknowledgment { inner }
    }

    /// Acknowledges the record, or every record of the batch.
    pub fn acknowledge(&self) {
        if let Some(i) = &self.inner {
            self.acknowledge_up_to(i.offsets.len().saturating_sub(1));
        }
    }

    /// Batch listeners: acknowledges the records at `0..=index` of the batch (indexes into the
    /// handler's vectors). Out-of-range indexes acknowledge the whole batch.
    pub fn acknowledge_up_to(&self, index: usize) {
        let Some(i) = &self.inner else { return };
        if i.offsets.is_empty() {
            return;
        }
        let upto = index
            .saturating_add(1)
            .min(i.offsets.len())
            .min(i.nacked_from.load(Ordering::Acquire));
        let before = i.acked.fetch_max(upto, Ordering::AcqRel);
        if i.manual && upto > before {
            for offset in &i.offsets[before..upto] {
                i.state.manual_ack(i.generation, *offset);
            }
        }
    }

    /// Redelivers the record (record listener) or the batch from its first unacknowledged record,
    /// and every later record of this partition, after `delay`. Only this partition waits;
    /// the others keep flowing.
    pub fn nack(&self, delay: Duration) {
        if let Some(i) = &self.inner {
            let first_unacked = i.acked.load(Ordering::Acquire);
            self.nack_from(first_unacked, delay);
        }
    }

    /// Batch listeners: acknowledges the records before `index` and redelivers the batch from
    /// `index` on after `delay` (Spring's `nack(index, sleep)`).
    pub fn nack_from(&self, index: usize, delay: Duration) {
        let Some(i) = &self.inner else { return };
        let Some(offset) = i.offsets.get(index) else {
            return;
        };
        if index > 0 {
            self.acknowledge_up_to(index - 1);
        }
        i.nacked_from.fetch_min(index, Ordering::AcqRel);
        i.state.request_nack(i.epoch, *offset, delay);
    }
}

impl FromRecord for Acknowledgment {
    fn from_record(record: &ConsumerRecord, cx: &ListenerContext) -> Result<Self, ExtractError> {
        Ok(Acknowledgment::new(cx, vec![record.offset]))
    }
}

impl FromBatch for Acknowledgment {
    fn from_batch(records: &[ConsumerRecord], accepted: &[usize], cx: &ListenerContext) -> Self {
        let offsets = accepted
            .iter()
            .filter_map(|i| records.get(*i).map(|r| r.offset))
            .collect();
        Acknowledgment::new(cx, offsets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(offsets: Vec<i64>) -> Acknowledgment {
        let state = Arc::new(PartitionState::new(Arc::from("t"), 0));
        Acknowledgment {
            inner: Some(Arc::new(AckInner {
                epoch: state.epoch(),
                generation: 0,
                state,
                manual: false,
                offsets,
                acked: AtomicUsize::new(0),
                nacked_from: AtomicUsize::new(usize::MAX),
            })),
        }
    }

    #[test]
    fn acknowledging_after_a_nack_does_not_cover_the_redelivered_records() {
        let a = ack(vec![10, 11, 12, 13, 14]);
        a.nack_from(2, Duration::ZERO);
        a.acknowledge();
        let acked = a.inner.as_ref().map(|i| i.acked.load(Ordering::Acquire));
        assert_eq!(acked, Some(2), "only the records before the nacked one");
    }

    #[test]
    fn acknowledge_up_to_usize_max_acknowledges_the_whole_batch_without_overflow() {
        let a = ack(vec![10, 11, 12]);
        a.acknowledge_up_to(usize::MAX);
        let acked = a.inner.as_ref().map(|i| i.acked.load(Ordering::Acquire));
        assert_eq!(acked, Some(3));
    }
}
