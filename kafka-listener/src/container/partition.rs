//! Partition workers: one async task per assigned partition, taking its records in order
//! straight from the partition's own librdkafka queue (see [`PartitionQueue`]).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::chunk::ChunkBuilder;
use super::ffi::PartitionQueue;
use super::offsets::{PartitionOffsets, UNSET};
use crate::config::AckMode;
use crate::error_handler::{panic_error, recover, Failure, RetryPolicy};
use crate::listener::{ConsumerRecord, Handler, HandlerFuture, ListenerContext};
use crate::BoxError;

/// Records of one partition taken from its queue at once, stamped with the partition's seek
/// epoch when taken: records fetched before a seek are stale after it and are dropped
/// unhandled.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) epoch: u64,
    /// The partition's full-seek generation when taken (for manual acknowledgements).
    pub(crate) generation: u64,
    /// Key, value and header bytes of the records (for the memory budget).
    pub(crate) bytes: usize,
    pub(crate) records: Vec<ConsumerRecord>,
}

/// Why a partition is paused; it is resumed when no reason is left.
pub(crate) mod pause {
    /// A `nack` delay is running.
    pub(crate) const NACK: u8 = 2;
    /// The container was paused by the application.
    pub(crate) const USER: u8 = 4;
}

/// Offsets handed to a manual-mode handler and not yet acknowledged.
#[derive(Debug)]
struct ManualTracker {
    pending: BTreeSet<i64>,
    /// Next offset after the highest dispatched.
    high: i64,
    warned: bool,
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
    epoch: Mutex<u64>,
    /// The epoch, readable without the lock (written under it): the worker's per-record check.
    epoch_now: AtomicU64,
    /// Bumped (under the epoch lock) only by a full seek, which forgets every position; a
    /// nack's rewind keeps the positions before it, so acknowledgements taken before a nack
    /// still count (see [`PartitionState::manual_ack`]).
    generation: AtomicU64,
    /// Where delivery must resume if a seek fails: the first record of this partition the
    /// worker has not finished (in progress, or dropped unhandled as stale). `UNSET` until the
    /// worker saw a record.
    resume_at: AtomicI64,
    manual: Mutex<ManualTracker>,
    nack: Mutex<Option<(u64, NackRequest)>>,
    /// A nack is recorded in `nack` (so the worker locks it only then).
    nacked: AtomicBool,
    /// The partition's own librdkafka queue, taken out (and destroyed) by the consumer thread
    /// on revoke and shutdown, always before the consumer. The lock also orders the worker's
    /// takes against seeks: a seek and its epoch bump happen under it, so every chunk carries
    /// the epoch of the position its records came from.
    pub(crate) queue: Mutex<Option<PartitionQueue>>,
    /// Wakes the worker: records arrived (librdkafka's callback), a seek was applied, or the
    /// partition stops.
    pub(crate) wake: Arc<Notify>,
    /// Records taken from the queue since assignment.
    taken: AtomicU64,
    /// Records taken by the worker and not yet finished or dropped.
    pub(crate) queued: AtomicUsize,
    /// Their key, value and header bytes.
    pub(crate) queued_bytes: AtomicUsize,
    /// Records finished (handled or recovered) since assignment.
    finished_count: AtomicU64,
    /// Pause reasons (see [`pause`]); consumer thread only.
    pub(crate) paused: AtomicU8,
    /// `manual_immediate`: acknowledgements become committable at once.
    immediate: AtomicBool,
    /// A handler asked to seek this partition and the consumer thread has not applied it yet:
    /// take no further record until it has (they would come from the old position).
    pub(crate) seek_pending: AtomicBool,
    /// Stop taking records: set on revoke and shutdown. The record in hand finishes.
    pub(crate) stop: CancellationToken,
    exited: Mutex<bool>,
    exited_cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    fn finish(&self, epoch: u64, offset: i64, ack_now: bool) {
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
    fn manual_dispatch(&self, offset: i64) {
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

    fn manual_is_pending(&self, offset: i64) -> bool {
        lock(&self.manual).pending.contains(&offset)
    }

    /// Logs the first record of this partition returned without acknowledgement; later ones
    /// stay quiet.
    fn warn_unacknowledged_once(&self, listener: &str, offset: i64) {
        let mut m = lock(&self.manual);
        if !m.warned {
            m.warned = true;
            tracing::warn!(listener, topic = %self.topic, partition = self.partition, offset,
                "handler returned without acknowledging its record (manual ack mode): commits of this partition stop below it until it is acknowledged; it is redelivered after a restart or rebalance. Logged once per partition.");
        }
    }

    /// Records a handler's nack. One from before a seek or rewind (a kept `Acknowledgment`)
    /// is ignored: it must not replace the nack of the record in hand.
    pub(crate) fn request_nack(&self, epoch: u64, offset: i64, delay: Duration) {
        let current = lock(&self.epoch);
        if *current != epoch {
            tracing::warn!(topic = %self.topic, partition = self.partition, offset,
                "nack of a record from before a seek or rewind ignored (call nack before the handler returns)");
            return;
        }
        *lock(&self.nack) = Some((epoch, NackRequest { offset, delay }));
        self.nacked.store(true, Ordering::Release);
    }

    /// The ack mode allows committing what finished, if no seek happened since `epoch` (a
    /// seek resets the positions; a stale "finished" must not be written back over them).
    fn ack_finished_at(&self, epoch: u64) {
        let current = lock(&self.epoch);
        if *current == epoch {
            self.offsets.ack_finished();
        }
    }

    /// Where delivery resumes if a seek fails, unless a seek happened since `epoch`.
    fn resume_from(&self, epoch: u64, offset: i64) {
        let current = lock(&self.epoch);
        if *current == epoch {
            self.resume_at.store(offset, Ordering::Release);
        }
    }

    fn take_nack(&self, epoch: u64) -> Option<NackRequest> {
        if !self.nacked.swap(false, Ordering::AcqRel) {
            return None;
        }
        lock(&self.nack)
            .take()
            .filter(|(e, _)| *e == epoch)
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

    fn mark_exited(&self) {
        let mut exited = lock(&self.exited);
        *exited = true;
        self.exited_cv.notify_all();
    }
}

/// Marks the worker exited even if it unwinds.
struct ExitGuard(Arc<PartitionState>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.mark_exited();
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
}

/// What a handler's `Acknowledgment` needs to reach its partition.
#[derive(Debug)]
pub(crate) struct PartitionLink {
    pub(crate) state: Arc<PartitionState>,
    pub(crate) manual: bool,
    /// The consumer thread that owns the partition, for seeks from handlers.
    pub(crate) requests: std::sync::mpsc::Sender<ConsumerRequest>,
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
    },
    /// Stop fetching every partition (the consumer keeps polling, so it stays in the group).
    Pause,
    /// Undo [`ConsumerRequest::Pause`].
    Resume,
    /// Fault injection for tests: the consumer thread panics on its next turn.
    InjectPanic,
}

pub(crate) struct Worker {
    pub(crate) state: Arc<PartitionState>,
    pub(crate) handler: Handler,
    pub(crate) cx: ListenerContext,
    pub(crate) retry: RetryPolicy,
    pub(crate) ack_mode: AckMode,
    pub(crate) counters: Arc<Counters>,
    pub(crate) requests: std::sync::mpsc::Sender<ConsumerRequest>,
    /// Most records per chunk (`kafka.consumer.max-poll-records`).
    pub(crate) max_records: usize,
    /// A chunk stops growing once it holds this many bytes (it always takes one record).
    pub(crate) max_bytes: usize,
}

enum Outcome {
    /// Handled successfully: the offset may move past it.
    Done,
    /// Given to the recoverer after errors or a decode failure: the offset may move past it.
    Recovered,
    /// Abandoned by a stop: not finished, must be redelivered.
    Stopped,
}

/// How a chunk ended.
enum ChunkEnd {
    /// Every record finished.
    Complete,
    /// A seek or nack made the rest stale; keep going with later chunks.
    Abandoned,
    /// Stop requested: the worker exits.
    Stopped,
}

/// What one look at the partition's queue gave.
enum Take {
    Chunk(Chunk),
    /// Nothing now (the queue is empty, or a seek holds it): wait for a wake-up.
    Nothing,
    /// The queue was released: the partition left this consumer.
    Gone,
}

/// Longest wait without a wake-up before the worker looks at its queue again. A safety net
/// only: librdkafka's callback and the consumer thread wake it whenever there is work.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// Records taken from librdkafka per call.
const TAKE_STEP: usize = 64;

impl Worker {
    fn manual(&self) -> bool {
        matches!(self.ack_mode, AckMode::Manual | AckMode::ManualImmediate)
    }

    pub(crate) async fn run(mut self) {
        let _exit = ExitGuard(Arc::clone(&self.state));
        self.state
            .immediate
            .store(self.ack_mode == AckMode::ManualImmediate, Ordering::Release);
        self.cx.partition = Some(Arc::new(PartitionLink {
            state: Arc::clone(&self.state),
            manual: self.manual(),
            requests: self.requests.clone(),
        }));
        let stop = self.state.stop.clone();
        let wake = Arc::clone(&self.state.wake);
        loop {
            if stop.is_cancelled() {
                break;
            }
            // While a nack or a handler's seek waits to be applied, what is in the queue
            // comes from the old position: leave it there (librdkafka drops it at the seek).
            let take = if self.state.seek_pending.load(Ordering::Acquire) {
                Take::Nothing
            } else {
                self.take()
            };
            let chunk = match take {
                Take::Gone => break,
                Take::Nothing => {
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => break,
                        () = wake.notified() => {}
                        () = tokio::time::sleep(IDLE_CHECK) => {}
                    }
                    continue;
                }
                Take::Chunk(chunk) => chunk,
            };
            let finished_before = self.state.finished_records();
            let end = if chunk.epoch != self.state.epoch() {
                // A seek came between the take and now: these records are from before it.
                ChunkEnd::Abandoned
            } else {
                match self.handler {
                    Handler::Record(f) => self.run_records(f, &chunk).await,
                    Handler::Batch(f) => self.run_batch(f, &chunk).await,
                }
            };
            self.release(&chunk);
            self.counters.finished.fetch_add(
                self.state.finished_records() - finished_before,
                Ordering::Relaxed,
            );
            if let ChunkEnd::Stopped = end {
                break; // the rest is redelivered to whoever owns the partition next
            }
            // End of a chunk: batch-like modes may now commit what finished.
            if !matches!(self.ack_mode, AckMode::Record | AckMode::ManualImmediate) {
                self.state.ack_finished_at(chunk.epoch);
            }
        }
    }

    /// Takes up to `max_records` records (or `max_bytes`) from the partition's queue without
    /// waiting, stamped with the epoch of the position they came from.
    fn take(&self) -> Take {
        let guard = match self.state.queue.try_lock() {
            Ok(guard) => guard,
            // The consumer thread is seeking: it wakes us when done.
            Err(std::sync::TryLockError::WouldBlock) => return Take::Nothing,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let Some(queue) = guard.as_ref() else {
            return Take::Gone;
        };
        let (epoch, generation) = self.state.epoch_and_generation();
        let mut builder = ChunkBuilder::new();
        let max = self.max_records.max(1);
        while builder.len() < max && builder.bytes() < self.max_bytes {
            let want = (max - builder.len()).min(TAKE_STEP);
            let n = queue.consume(want, |message| match message.error() {
                None => builder.push(message),
                Some(error) => tracing::warn!(listener = %self.cx.listener_id,
                    topic = %self.state.topic, partition = self.state.partition, ?error,
                    "fetch error from librdkafka"),
            });
            if n < want {
                break; // empty now
            }
        }
        drop(guard);
        let (len, bytes) = (builder.len(), builder.bytes());
        if len == 0 {
            return Take::Nothing;
        }
        let records = builder.build(&self.state.topic, self.state.partition);
        self.state.taken.fetch_add(len as u64, Ordering::AcqRel);
        self.state.queued.fetch_add(len, Ordering::AcqRel);
        self.state.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.counters
            .buffered_bytes
            .fetch_add(bytes, Ordering::AcqRel);
        Take::Chunk(Chunk {
            epoch,
            generation,
            bytes,
            records,
        })
    }

    /// A chunk is done with (finished or dropped): it no longer counts against the budgets.
    fn release(&self, chunk: &Chunk) {
        self.state
            .queued
            .fetch_sub(chunk.records.len(), Ordering::AcqRel);
        self.state
            .queued_bytes
            .fetch_sub(chunk.bytes, Ordering::AcqRel);
        self.counters
            .buffered_bytes
            .fetch_sub(chunk.bytes, Ordering::AcqRel);
    }

    /// After a record or batch finished: commit bookkeeping, or the nack it asked for.
    /// Returns false if a nack made the rest of the chunk stale. In batch-like modes the
    /// position is only noted in `done` (published once per chunk by the caller); `record`
    /// mode publishes every record.
    fn complete(
        &self,
        chunk: &Chunk,
        offsets: &[i64],
        outcome: &Outcome,
        done: &mut Option<i64>,
    ) -> bool {
        let Some(&last) = offsets.last() else {
            return true;
        };
        let epoch = chunk.epoch;
        if let Some(request) = self.state.take_nack(epoch) {
            // Nothing after the nacked record may be handled (or become committable) until
            // the consumer thread has rewound the partition: the worker takes nothing more
            // from its queue until then, and drops the rest of this chunk.
            self.state.seek_pending.store(true, Ordering::Release);
            // Everything before the nacked offset finished; it and the rest come again.
            if !self.manual() {
                let before = offsets
                    .iter()
                    .rev()
                    .find(|o| **o < request.offset)
                    .copied()
                    .or(done.filter(|o| *o < request.offset));
                if let Some(prev) = before {
                    self.state
                        .finish(epoch, prev, self.ack_mode == AckMode::Record);
                }
                *done = None;
            }
            let _ = self.requests.send(ConsumerRequest::Nack {
                state: Arc::clone(&self.state),
                request,
            });
            return false;
        }
        self.state
            .finished_count
            .fetch_add(offsets.len() as u64, Ordering::AcqRel);
        if self.manual() {
            let recovered = matches!(outcome, Outcome::Recovered);
            for &offset in offsets {
                if recovered {
                    self.state.manual_ack(chunk.generation, offset);
                } else if self.state.manual_is_pending(offset) {
                    self.state
                        .warn_unacknowledged_once(&self.cx.listener_id, offset);
                }
            }
            if self.ack_mode == AckMode::ManualImmediate {
                self.state.ack_finished_at(epoch);
            }
            self.state.resume_from(epoch, last + 1);
        } else if self.ack_mode == AckMode::Record {
            self.state.finish(epoch, last, true);
        } else {
            *done = Some(last);
        }
        true
    }

    async fn run_records(&self, f: crate::listener::RecordHandlerFn, chunk: &Chunk) -> ChunkEnd {
        let mut done = None;
        let end = self.each_record(f, chunk, &mut done).await;
        // What finished is published whichever way the chunk ended (a stale epoch makes it
        // a no-op).
        if let Some(last) = done {
            self.state.finish(chunk.epoch, last, false);
        }
        end
    }

    async fn each_record(
        &self,
        f: crate::listener::RecordHandlerFn,
        chunk: &Chunk,
        done: &mut Option<i64>,
    ) -> ChunkEnd {
        if let Some(first) = chunk.records.first() {
            self.state.resume_from(chunk.epoch, first.offset);
        }
        for record in &chunk.records {
            if self.state.stop.is_cancelled() {
                return ChunkEnd::Stopped;
            }
            if self.state.epoch() != chunk.epoch || self.state.seek_pending.load(Ordering::Acquire)
            {
                return ChunkEnd::Abandoned;
            }
            if self.manual() {
                self.state.manual_dispatch(record.offset);
            }
            let outcome = self
                .with_retries(record.offset, || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| f(record, &self.cx)))
                        .map_err(|p| Err(panic_error(p)))
                        .and_then(|r| r.map_err(Ok))
                })
                .await;
            if let Outcome::Stopped = outcome {
                return ChunkEnd::Stopped;
            }
            if !self.complete(chunk, &[record.offset], &outcome, done) {
                return ChunkEnd::Abandoned;
            }
        }
        ChunkEnd::Complete
    }

    async fn run_batch(&self, f: crate::listener::BatchHandlerFn, chunk: &Chunk) -> ChunkEnd {
        let records = &chunk.records;
        let Some(last) = records.last() else {
            return ChunkEnd::Complete;
        };
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        if let Some(first) = offsets.first() {
            self.state.resume_from(chunk.epoch, *first);
        }
        if self.manual() {
            for &o in &offsets {
                self.state.manual_dispatch(o);
            }
        }
        let mut first_call = true;
        let outcome = self
            .with_retries(last.offset, || {
                let invocation =
                    match std::panic::catch_unwind(AssertUnwindSafe(|| f(records, &self.cx))) {
                        Ok(invocation) => invocation,
                        Err(p) => return Err(Err(panic_error(p))),
                    };
                // An argument the application cannot provide now holds the whole batch back
                // (no record is the poison); it is retried like a single record's.
                if let Some(pos) = invocation
                    .rejected
                    .iter()
                    .position(|(_, e)| !e.is_record_fault())
                {
                    let mut rejected = invocation.rejected;
                    return Err(Ok(rejected.swap_remove(pos).1));
                }
                // Undecodable records go to the recoverer once, not on every retry.
                if std::mem::take(&mut first_call) {
                    for (index, error) in invocation.rejected {
                        if let Some(r) = records.get(index) {
                            self.counters.recovered.fetch_add(1, Ordering::Relaxed);
                            recover(
                                &self.cx.listener_id,
                                &r.topic,
                                r.partition,
                                r.offset,
                                &Failure::Decode(error),
                            );
                            if self.manual() {
                                self.state.manual_ack(chunk.generation, r.offset);
                            }
                        }
                    }
                }
                match invocation.future {
                    Some(fut) => Ok(fut),
                    None => Ok(Box::pin(async { Ok(()) }) as HandlerFuture),
                }
            })
            .await;
        let mut done = None;
        let end = match outcome {
            Outcome::Stopped => ChunkEnd::Stopped,
            outcome if self.complete(chunk, &offsets, &outcome, &mut done) => ChunkEnd::Complete,
            _ => ChunkEnd::Abandoned,
        };
        if let Some(last) = done {
            self.state.finish(chunk.epoch, last, false);
        }
        end
    }

    /// Runs `start` (extract + call) and awaits it, retrying failures per the policy.
    /// `start` returns `Err(Ok(e))` for a decode error (no retry) and `Err(Err(e))` for a
    /// failure to retry.
    async fn with_retries<F>(&self, offset: i64, mut start: F) -> Outcome
    where
        F: FnMut() -> Result<HandlerFuture, Result<crate::ExtractError, BoxError>>,
    {
        let attempts = self.retry.attempts.max(1);
        let mut attempt = 1;
        let mut waited = 0u32;
        loop {
            let result = match start() {
                Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(result) => result,
                    Err(p) => Err(panic_error(p)),
                },
                Err(Ok(unavailable)) if !unavailable.is_record_fault() => {
                    // Not the record's fault: never skip it. Wait and try again, or leave it
                    // unfinished (uncommitted) when the partition stops.
                    if waited.is_multiple_of(50) {
                        tracing::error!(
                            listener = %self.cx.listener_id,
                            topic = %self.state.topic,
                            partition = self.state.partition,
                            offset,
                            error = %unavailable,
                            "a handler argument is unavailable; the record is kept (not skipped) and retried until it is"
                        );
                    }
                    waited += 1;
                    tokio::select! {
                        biased;
                        () = self.state.stop.cancelled() => return Outcome::Stopped,
                        () = tokio::time::sleep(self.retry.backoff.max(Duration::from_millis(100))) => {}
                    }
                    continue;
                }
                Err(Ok(decode)) => {
                    self.counters.recovered.fetch_add(1, Ordering::Relaxed);
                    recover(
                        &self.cx.listener_id,
                        &self.state.topic,
                        self.state.partition,
                        offset,
                        &Failure::Decode(decode),
                    );
                    return Outcome::Recovered;
                }
                Err(Err(e)) => Err(e),
            };
            let error = match result {
                Ok(()) => return Outcome::Done,
                Err(error) => error,
            };
            if attempt >= attempts {
                self.counters.recovered.fetch_add(1, Ordering::Relaxed);
                recover(
                    &self.cx.listener_id,
                    &self.state.topic,
                    self.state.partition,
                    offset,
                    &Failure::Exhausted {
                        attempts,
                        last: error,
                    },
                );
                return Outcome::Recovered;
            }
            tracing::warn!(
                listener = %self.cx.listener_id,
                topic = %self.state.topic,
                partition = self.state.partition,
                offset,
                attempt,
                attempts,
                error = %error,
                "handler failed; retrying after {:?}",
                self.retry.backoff
            );
            attempt += 1;
            tokio::select! {
                biased;
                () = self.state.stop.cancelled() => return Outcome::Stopped,
                () = tokio::time::sleep(self.retry.backoff) => {}
            }
        }
    }
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
