//! A partition's state, shared by its worker and the consumer thread: offsets, the seek
//! epoch and nack words, manual acknowledgements, and the partition's queue.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ffi::PartitionQueue;
use super::offsets::{PartitionOffsets, UNSET};
use crate::listener::ListenerContext;

/// Why a partition is paused; it is resumed when no reason is left.
pub(crate) mod pause {
    /// A `nack` delay is running.
    pub(crate) const NACK: u8 = 2;
    /// The container was paused by the application.
    pub(crate) const USER: u8 = 4;
}

/// Offsets handed to a manual-mode handler and not yet acknowledged.
#[derive(Debug)]
pub(super) struct ManualTracker {
    pub(super) pending: BTreeSet<i64>,
    /// Next offset after the highest dispatched.
    pub(super) high: i64,
    pub(super) warned: bool,
}

impl ManualTracker {
    /// The offset a commit may carry: the first unacknowledged one, or past everything.
    fn position(&self) -> Option<i64> {
        match self.pending.first() {
            Some(first) => Some(*first),
            None => (self.high != UNSET).then_some(self.high),
        }
    }
}

/// A request from a handler to redeliver from `offset` after `delay`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NackRequest {
    pub(crate) offset: i64,
    pub(crate) delay: Duration,
}

/// What the consumer thread and a partition worker share.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offsets: PartitionOffsets,
    /// Seek epoch; the lock also orders completions against seeks (a completion of a record
    /// from before a seek must not land in the tracker after the seek reset it).
    pub(super) epoch: Mutex<u64>,
    /// The epoch, readable without the lock (written under it): the worker's per-record check.
    pub(super) epoch_now: AtomicU64,
    /// Bumped (under the epoch lock) only by a full seek, which forgets every position; a
    /// nack's rewind keeps the positions before it, so acknowledgements taken before a nack
    /// still count (see [`PartitionState::manual_ack`]).
    pub(super) generation: AtomicU64,
    /// Where delivery must resume if a seek fails: the first record of this partition the
    /// worker has not finished (in progress, or dropped unhandled as stale). `UNSET` until the
    /// worker saw a record.
    pub(super) resume_at: AtomicI64,
    pub(super) manual: Mutex<ManualTracker>,
    pub(super) nack: Mutex<Option<(u64, NackRequest)>>,
    /// A nack is recorded in `nack` (so the worker locks it only then).
    pub(super) nacked: AtomicBool,
    /// The partition's own librdkafka queue, taken out (and destroyed) by the consumer thread
    /// on revoke and shutdown, always before the consumer. The lock also orders the worker's
    /// takes against seeks: a seek and its epoch bump happen under it, so every chunk carries
    /// the epoch of the position its records came from.
    pub(crate) queue: Mutex<Option<PartitionQueue>>,
    /// The queue was released: the partition is no longer this consumer's.
    pub(crate) released: AtomicBool,
    /// Wakes the worker: records arrived (librdkafka's callback), a seek was applied, or the
    /// partition stops.
    pub(crate) wake: Arc<Notify>,
    /// Records taken from the queue since assignment.
    pub(super) taken: AtomicU64,
    /// Records taken by the worker and not yet finished or dropped.
    pub(crate) queued: AtomicUsize,
    /// Their key, value and header bytes.
    pub(crate) queued_bytes: AtomicUsize,
    /// Records finished (handled or recovered) since assignment.
    pub(super) finished_count: AtomicU64,
    /// Pause reasons (see [`pause`]); consumer thread only.
    pub(crate) paused: AtomicU8,
    /// `manual_immediate`: acknowledgements become committable at once.
    pub(super) immediate: AtomicBool,
    /// A handler asked to seek this partition and the consumer thread has not applied it yet:
    /// take no further record until it has (they would come from the old position).
    pub(crate) seek_pending: AtomicBool,
    /// Stop taking records: set on revoke and shutdown. The record in hand finishes.
    pub(crate) stop: CancellationToken,
    pub(super) exited: Mutex<bool>,
    pub(super) exited_cv: Condvar,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data, consistent at every await-free step: a panic elsewhere cannot corrupt it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PartitionState {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Self {
        PartitionState {
            topic,
            partition,
            offsets: PartitionOffsets::new(),
            epoch: Mutex::new(0),
            epoch_now: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            resume_at: AtomicI64::new(UNSET),
            manual: Mutex::new(ManualTracker {
                pending: BTreeSet::new(),
                high: UNSET,
                warned: false,
            }),
            nack: Mutex::new(None),
            nacked: AtomicBool::new(false),
            queue: Mutex::new(None),
            released: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            taken: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            finished_count: AtomicU64::new(0),
            paused: AtomicU8::new(0),
            immediate: AtomicBool::new(false),
            seek_pending: AtomicBool::new(false),
            stop: CancellationToken::new(),
            exited: Mutex::new(false),
            exited_cv: Condvar::new(),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch_now.load(Ordering::Acquire)
    }

    /// Records taken from the partition's queue since assignment.
    pub(crate) fn taken_records(&self) -> u64 {
        self.taken.load(Ordering::Acquire)
    }

    /// Destroys the partition's queue (consumer thread, before the consumer goes). The worker
    /// finds it gone and exits.
    pub(crate) fn release_queue(&self) {
        let queue = lock(&self.queue).take();
        drop(queue);
        self.released.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// The seek epoch and the full-seek generation, read together.
    pub(crate) fn epoch_and_generation(&self) -> (u64, u64) {
        let epoch = lock(&self.epoch);
        (*epoch, self.generation.load(Ordering::Acquire))
    }

    /// Where delivery must resume if a pending seek cannot be applied (`None`: the worker
    /// has not seen a record, so nothing was dropped).
    pub(crate) fn resume_at(&self) -> Option<i64> {
        let at = self.resume_at.load(Ordering::Acquire);
        (at != UNSET).then_some(at)
    }

    /// A seek to `offset` was applied: later dispatches carry a new epoch, and the trackers
    /// start over from `offset` (`full`: also forget committed/finished positions, for a seek
    /// that may go backwards; a nack only rewinds what was never finished).
    pub(crate) fn seeked(&self, offset: Option<i64>, full: bool) {
        let mut epoch = lock(&self.epoch);
        *epoch += 1;
        self.epoch_now.store(*epoch, Ordering::Release);
        if full {
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.offsets.reset();
        }
        self.resume_at.store(UNSET, Ordering::Release);
        let mut manual = lock(&self.manual);
        match offset {
            Some(o) if !full => {
                manual.pending.retain(|p| *p < o);
                if manual.high > o {
                    manual.high = o;
                }
            }
            _ => {
                manual.pending.clear();
                manual.high = UNSET;
            }
        }
    }

    /// A record of `epoch` finished (non-manual modes), with every record before it the
    /// worker took; delivery resumes after it if a pending seek fails.
    pub(super) fn finish(&self, epoch: u64, offset: i64, ack_now: bool) {
        let current = lock(&self.epoch);
        if *current == epoch {
            self.offsets.finish(offset);
            if ack_now {
                self.offsets.ack_finished();
            }
            self.resume_at.store(offset + 1, Ordering::Release);
        }
    }

    /// Manual modes: the record at `offset` is now the handler's to acknowledge.
    pub(super) fn manual_dispatch(&self, offset: i64) {
        let mut m = lock(&self.manual);
        m.pending.insert(offset);
        m.high = m.high.max(offset + 1);
    }

    /// Manual modes: `offset` was acknowledged (or recovered). `generation` is the one the
    /// record was delivered under: an acknowledgement from before a full seek is stale, one
    /// from before a nack's rewind is not (the records before the nacked one stay pending
    /// across the rewind, and acknowledging them later must still move the commit).
    pub(crate) fn manual_ack(&self, generation: u64, offset: i64) {
        let _current = lock(&self.epoch);
        if self.generation.load(Ordering::Acquire) != generation {
            return; // acknowledges a record from before a seek: stale
        }
        let mut m = lock(&self.manual);
        m.pending.remove(&offset);
        if let Some(position) = m.position() {
            self.offsets.finish(position - 1);
            if self.immediate.load(Ordering::Acquire) {
                self.offsets.ack_finished();
            }
        }
    }

    pub(super) fn manual_is_pending(&self, offset: i64) -> bool {
        lock(&self.manual).pending.contains(&offset)
    }

    /// Logs the first record of this partition returned without acknowledgement; later ones
    /// stay quiet.
    pub(super) fn warn_unacknowledged_once(&self, listener: &str, offset: i64) {
        let mut m = lock(&self.manual);
        if !m.warned {
            m.warned = true;
            tracing::warn!(listener, topic = %self.topic, partition = self.partition, offset,
                "handler returned without acknowledging its record (manual ack mode): commits of this partition stop below it until it is acknowledged; it is redelivered after a restart or rebalance. Logged once per partition.");
        }
    }

    /// Records a handler's nack. One from before a seek or rewind (a kept `Acknowledgment`)
    /// is ignored: it must not replace the nack of the record in hand. Of two nacks not yet
    /// taken by the worker, the one with the lower offset is kept.
    pub(crate) fn request_nack(&self, epoch: u64, offset: i64, delay: Duration) {
        let current = lock(&self.epoch);
        if *current != epoch {
            tracing::warn!(topic = %self.topic, partition = self.partition, offset,
                "nack of a record from before a seek or rewind ignored (call nack before the handler returns)");
            return;
        }
        let mut nack = lock(&self.nack);
        // Two nacks before the worker saw either (records of several keys in flight): the
        // lower offset wins, so the rewind covers both.
        let keep = matches!(*nack, Some((e, ref r)) if e == epoch && r.offset <= offset);
        if !keep {
            *nack = Some((epoch, NackRequest { offset, delay }));
        }
        drop(nack);
        self.nacked.store(true, Ordering::Release);
    }

    /// The ack mode allows committing what finished, if no seek happened since `epoch` (a
    /// seek resets the positions; a stale "finished" must not be written back over them).
    pub(super) fn ack_finished_at(&self, epoch: u64) {
        let current = lock(&self.epoch);
        if *current == epoch {
            self.offsets.ack_finished();
        }
    }

    /// Where delivery resumes if a seek fails, unless a seek happened since `epoch`.
    pub(super) fn resume_from(&self, epoch: u64, offset: i64) {
        let current = lock(&self.epoch);
        if *current == epoch {
            self.resume_at.store(offset, Ordering::Release);
        }
    }

    /// The nack recorded for a record of `epoch`, if any. One whose position was since moved
    /// by a seek (the application's, applied while the handler still ran) is dropped: its
    /// rewind would undo that seek.
    pub(super) fn take_nack(&self, epoch: u64) -> Option<NackRequest> {
        if !self.nacked.swap(false, Ordering::AcqRel) {
            return None;
        }
        lock(&self.nack)
            .take()
            .filter(|(e, _)| *e == epoch && epoch == self.epoch())
            .map(|(_, r)| r)
    }

    /// Blocks the calling (consumer) thread until the worker exited or `deadline` passed.
    /// Returns whether it exited.
    pub(crate) fn wait_exited(&self, deadline: Instant) -> bool {
        let mut exited = lock(&self.exited);
        while !*exited {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            exited = match self.exited_cv.wait_timeout(exited, deadline - now) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    pub(crate) fn finished_records(&self) -> u64 {
        self.finished_count.load(Ordering::Acquire)
    }

    pub(super) fn mark_exited(&self) {
        let mut exited = lock(&self.exited);
        *exited = true;
        self.exited_cv.notify_all();
    }
}

/// Counters shared by every worker of a container, for the shutdown report and tests.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Records whose handling completed (handler Ok, or recovered after errors).
    pub(crate) finished: AtomicU64,
    /// Records given to the recoverer (skipped).
    pub(crate) recovered: AtomicU64,
    /// Bytes of records dispatched and not yet finished or dropped, over every partition of
    /// the container (the memory budget is per consumer, checked against this sum divided by
    /// the number of consumers).
    pub(crate) buffered_bytes: AtomicUsize,
    /// The listener's circuit breaker on given-up records, if configured.
    pub(crate) breaker: Option<super::breaker::CircuitBreaker>,
    /// Its metric handles.
    pub(crate) meters: crate::telemetry::ListenerMeters,
    /// The last failures, for the status page.
    pub(crate) recent: crate::telemetry::RecentEvents,
}

/// What a handler's `Acknowledgment` needs to reach its partition.
#[derive(Debug)]
pub(crate) struct PartitionLink {
    pub(crate) state: Arc<PartitionState>,
    pub(crate) manual: bool,
    /// Key lanes run the partition's records (`concurrency_per_partition` > 1).
    pub(crate) keyed: bool,
    /// The consumer thread that owns the partition, for seeks from handlers.
    pub(crate) requests: std::sync::mpsc::Sender<ConsumerRequest>,
}

impl PartitionLink {
    /// The link of the partition `cx` handles, if any (the listener module keeps it opaque).
    pub(crate) fn of(cx: &ListenerContext) -> Option<&PartitionLink> {
        cx.partition.as_deref()?.downcast_ref()
    }
}

/// Requests to a consumer thread, from its partition workers, handlers and the container.
#[derive(Debug)]
pub(crate) enum ConsumerRequest {
    /// Rewind the partition to `offset` and pause it for `delay`.
    Nack {
        state: Arc<PartitionState>,
        request: NackRequest,
    },
    /// Move a partition's position (ignored by consumers that do not own it).
    Seek {
        topic: String,
        partition: i32,
        target: super::SeekTarget,
        /// A seek of its own partition from a handler under key lanes: the offset of its
        /// record. Records before it that are not finished (waiting in other lanes) are not
        /// skipped: the seek goes no further than the first of them. `None` otherwise
        /// (without lanes every record before the handler's is finished).
        from: Option<i64>,
    },
    /// Stop fetching every partition (the consumer keeps polling, so it stays in the group).
    Pause,
    /// Undo [`ConsumerRequest::Pause`].
    Resume,
    /// Fault injection for tests: the consumer thread panics on its next turn.
    InjectPanic,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PartitionState {
        PartitionState::new(Arc::from("t"), 0)
    }

    #[test]
    fn manual_commit_stops_below_the_first_unacknowledged_record() {
        let s = state();
        for o in 10..15 {
            s.manual_dispatch(o);
        }
        s.manual_ack(0, 10);
        s.manual_ack(0, 12); // out of order: 11 still pending
        s.manual_ack(0, 13);
        assert_eq!(s.offsets.pending_finished(), Some(11));
        s.manual_ack(0, 11);
        assert_eq!(s.offsets.pending_finished(), Some(14));
        s.manual_ack(0, 14);
        s.manual_ack(0, 14); // twice is harmless
        assert_eq!(s.offsets.pending_finished(), Some(15));
    }

    #[test]
    fn completions_from_before_a_seek_are_ignored() {
        let s = state();
        s.finish(0, 41, true);
        assert_eq!(s.offsets.pending_ack(), Some(42));
        s.seeked(Some(5), true);
        s.finish(0, 99, true); // a handler from before the seek completes late
        assert_eq!(s.offsets.pending_ack(), None);
        s.finish(1, 5, true);
        assert_eq!(s.offsets.pending_ack(), Some(6));
    }

    #[test]
    fn an_acknowledgement_kept_across_a_nack_of_a_later_record_still_moves_the_commit() {
        let s = state();
        for o in 0..4 {
            s.manual_dispatch(o);
        }
        let (_, generation) = s.epoch_and_generation();
        s.manual_ack(generation, 0);
        // Record 1's Acknowledgment is kept for later; record 2 is nacked (rewind to 2).
        s.seeked(Some(2), false);
        s.manual_ack(generation, 1);
        assert_eq!(s.offsets.pending_finished(), Some(2));
        // A full seek makes older acknowledgements stale.
        s.manual_dispatch(2);
        s.seeked(Some(0), true);
        s.manual_ack(generation, 2);
        assert_eq!(s.offsets.pending_finished(), None);
    }

    #[test]
    fn a_seek_applied_after_a_nack_drops_the_nack() {
        let s = state();
        let epoch = s.epoch();
        s.request_nack(epoch, 5, Duration::ZERO);
        s.seeked(Some(100), true);
        assert!(
            s.take_nack(epoch).is_none(),
            "its rewind would undo the seek"
        );
    }

    #[test]
    fn a_nack_from_before_a_rewind_cannot_replace_the_current_one() {
        let s = state();
        s.seeked(Some(3), false); // epoch 1
        s.request_nack(1, 4, Duration::ZERO);
        s.request_nack(0, 2, Duration::ZERO); // a kept Acknowledgment from epoch 0
        assert_eq!(s.take_nack(1).map(|r| r.offset), Some(4));
    }

    #[test]
    fn nack_rewind_keeps_acknowledged_records_before_it() {
        let s = state();
        for o in 0..4 {
            s.manual_dispatch(o);
        }
        s.manual_ack(0, 0);
        s.manual_ack(0, 1);
        s.seeked(Some(2), false);
        assert_eq!(s.offsets.pending_finished(), Some(2));
        s.manual_dispatch(2);
        s.manual_ack(0, 2); // a nack keeps the generation
        assert_eq!(s.offsets.pending_finished(), Some(3));
    }
}
