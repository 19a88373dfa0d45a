//! Partition workers: one async task per assigned partition, taking its records in order
//! straight from the partition's own librdkafka queue (see [`PartitionQueue`]).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tracing::Instrument as _;

use super::chunk::ChunkBuilder;
use super::state::{pause, ConsumerRequest, Counters, PartitionLink, PartitionState};
use crate::config::AckMode;
use crate::error_handler::{
    panic_error, recoverer_pause, BatchListenerFailed, Failure, NonRetryable, Recoverer,
    RetryPolicy,
};
use crate::listener::{ConsumerRecord, FromRecord, Handler, HandlerFuture, ListenerContext};
use crate::BoxError;
use crate::{retry_topic, Acknowledgment};

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

/// Marks the worker exited even if it unwinds.
struct ExitGuard(Arc<PartitionState>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.mark_exited();
    }
}

pub(crate) struct Worker {
    pub(crate) state: Arc<PartitionState>,
    pub(crate) handler: Handler,
    pub(crate) cx: ListenerContext,
    pub(crate) retry: RetryPolicy,
    /// What happens to a record the retries gave up on.
    pub(crate) recoverer: Arc<dyn Recoverer>,
    /// The listener's rule for errors not worth retrying.
    pub(crate) not_retryable: Option<Arc<crate::error_handler::RetryableClassifier>>,
    /// A retry-topic container (its longest delay): records not due yet wait (see
    /// `retry_topic`).
    pub(crate) retry_topic_max_delay: Option<Duration>,
    /// Add the delivery attempt to the record as a `kafka_deliveryAttempt` header.
    pub(crate) delivery_attempt_header: bool,
    pub(crate) ack_mode: AckMode,
    pub(crate) counters: Arc<Counters>,
    pub(crate) requests: std::sync::mpsc::Sender<ConsumerRequest>,
    /// Most records per chunk (`kafka.consumer.max-poll-records`).
    pub(crate) max_records: usize,
    /// A chunk stops growing once it holds this many bytes (it always takes one record).
    pub(crate) max_bytes: usize,
    /// Records of the partition handled at once, one per key (`concurrency_per_partition`;
    /// 1: one at a time in offset order). Record listeners only.
    pub(crate) lanes: usize,
}

pub(super) enum Outcome {
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
pub(super) enum Take {
    Chunk(Chunk),
    /// Nothing now (the queue is empty, or a seek holds it): wait for a wake-up.
    Nothing,
    /// The queue was released: the partition left this consumer.
    Gone,
}

/// Longest wait without a wake-up before the worker looks at its queue again. A safety net
/// only: librdkafka's callback and the consumer thread wake it whenever there is work.
pub(super) const IDLE_CHECK: Duration = Duration::from_millis(500);

/// Spring's header for the delivery attempt (`KafkaHeaders.DELIVERY_ATTEMPT`).
const DELIVERY_ATTEMPT_HEADER: &str = "kafka_deliveryAttempt";

/// Records taken from librdkafka per call.
const TAKE_STEP: usize = 64;

impl Worker {
    /// Key lanes: a record listener with `concurrency_per_partition` above 1.
    fn keyed(&self) -> bool {
        self.lanes > 1 && !self.handler.is_batch()
    }

    pub(super) fn manual(&self) -> bool {
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
            keyed: self.keyed(),
            requests: self.requests.clone(),
        }));
        if let (Handler::Record(f), true) = (self.handler, self.keyed()) {
            return self.run_keyed(f, self.lanes).await;
        }
        let stop = self.state.stop.clone();
        let wake = Arc::clone(&self.state.wake);
        loop {
            if stop.is_cancelled() {
                break;
            }
            // While a nack or a handler's seek waits to be applied, what is in the queue
            // comes from the old position: leave it there (librdkafka drops it at the seek).
            let take = if self.state.seek_pending.load(Ordering::Acquire)
                || self.state.paused.load(Ordering::Acquire) & pause::USER != 0
                || self.breaker_open()
            {
                Take::Nothing
            } else {
                self.take(self.max_records)
            };
            let chunk = match take {
                Take::Gone => break,
                Take::Nothing => {
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => break,
                        () = wake.notified() => {}
                        () = self.breaker_closed() => {}
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
            self.release(chunk.records.len(), chunk.bytes);
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

    /// Takes up to `max` records (or `max_bytes`) from the partition's queue without
    /// waiting, stamped with the epoch of the position they came from.
    pub(super) fn take(&self, max: usize) -> Take {
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
        let max = max.max(1);
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

    /// Records taken are done with (finished or dropped): they no longer count against the
    /// budgets.
    pub(super) fn release(&self, records: usize, bytes: usize) {
        self.state.queued.fetch_sub(records, Ordering::AcqRel);
        self.state.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.counters
            .buffered_bytes
            .fetch_sub(bytes, Ordering::AcqRel);
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
        if let Some(mut request) = self.state.take_nack(epoch) {
            // Never rewind past what this call finishes: after `offsets` nothing is finished
            // yet (a batch that failed at a record finishes only the records before it, and a
            // nack asked for further on must not skip the ones between).
            request.offset = request.offset.min(last + 1);
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
            let outcome = self.handle_record(f, record).await;
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
        if records.is_empty() {
            return ChunkEnd::Complete;
        }
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        self.state.resume_from(chunk.epoch, offsets[0]);
        if self.manual() {
            for &o in &offsets {
                self.state.manual_dispatch(o);
            }
        }
        // A batch error naming its failing record (`BatchListenerFailed`, automatic modes):
        // the records before it finish, and the calls go on from it.
        let split = !self.manual();
        let mut given_up = vec![false; records.len()];
        let mut done = None;
        let mut from = 0;
        // The record a batch error named last, and the calls that failed on it.
        let mut failing: Option<(usize, u32)> = None;
        let end = loop {
            let part = &records[from..];
            let first_attempt = failing.map_or(1, |(_, n)| n + 1);
            let span = tracing::debug_span!(
                target: "kafka_listener::record",
                "batch",
                listener = %self.cx.listener_id,
                topic = %self.state.topic,
                partition = self.state.partition,
                first_offset = part.first().map(|r| r.offset),
                last_offset = part.last().map(|r| r.offset),
            );
            let (result, undecodable) = self
                .call_batch(f, part, first_attempt, split)
                .instrument(span)
                .await;
            if let Ok(Outcome::Stopped) = result {
                break ChunkEnd::Stopped;
            }
            let accepted: Vec<usize> = (0..part.len())
                .filter(|i| !undecodable.iter().any(|(r, _)| r == i))
                .collect();
            // Undecodable records go to the recoverer once, whatever the call did.
            let mut stopped = false;
            for (index, error) in undecodable {
                let at = from + index;
                if std::mem::replace(&mut given_up[at], true) {
                    continue;
                }
                let failure = Failure::Decode(error);
                if let Outcome::Stopped = self.give_up(&records[at], &failure).await {
                    stopped = true;
                    break;
                }
                if self.manual() {
                    self.state.manual_ack(chunk.generation, records[at].offset);
                }
            }
            if stopped {
                break ChunkEnd::Stopped;
            }
            let named = match &result {
                Err(Failure::Exhausted { last, .. }) if split => {
                    BatchListenerFailed::index_in(&**last).and_then(|i| accepted.get(i).copied())
                }
                _ => None,
            };
            match (result, named) {
                (Ok(_), _) => {
                    self.counters
                        .meters
                        .handled
                        .increment(accepted.len() as u64);
                    if let Some(b) = &self.counters.breaker {
                        b.on_done(accepted.len() as u64);
                    }
                    if !self.complete(chunk, &offsets[from..], &Outcome::Done, &mut done) {
                        break ChunkEnd::Abandoned;
                    }
                    break ChunkEnd::Complete;
                }
                (Err(Failure::Exhausted { last, .. }), Some(index)) => {
                    let at = from + index;
                    // The records before the named one are handled.
                    if at > from
                        && !self.complete(chunk, &offsets[from..at], &Outcome::Done, &mut done)
                    {
                        break ChunkEnd::Abandoned;
                    }
                    let calls = match failing {
                        Some((p, n)) if p == at => n + 1,
                        _ => 1,
                    };
                    let not_retryable = self.is_not_retryable(&*last);
                    if calls >= self.retry.attempts.max(1) || not_retryable {
                        let failure = if not_retryable {
                            Failure::NotRetryable {
                                attempt: calls,
                                error: last,
                            }
                        } else {
                            Failure::Exhausted {
                                attempts: calls,
                                last,
                            }
                        };
                        given_up[at] = true;
                        let outcome = self.give_up(&records[at], &failure).await;
                        if let Outcome::Stopped = outcome {
                            break ChunkEnd::Stopped;
                        }
                        if !self.complete(chunk, &offsets[at..=at], &outcome, &mut done) {
                            break ChunkEnd::Abandoned;
                        }
                        failing = None;
                        from = at + 1;
                        if from == records.len() {
                            break ChunkEnd::Complete;
                        }
                    } else {
                        let pause = self.retry.pause(calls, random_unit(offsets[at], calls));
                        tracing::warn!(
                            listener = %self.cx.listener_id,
                            topic = %self.state.topic,
                            partition = self.state.partition,
                            offset = offsets[at],
                            attempt = calls,
                            error = %last,
                            "batch failed at this record; the records before it are done, the batch goes on from it after {pause:?}",
                        );
                        tokio::select! {
                            biased;
                            () = self.state.stop.cancelled() => break ChunkEnd::Stopped,
                            () = tokio::time::sleep(pause) => {}
                        }
                        failing = Some((at, calls));
                        from = at;
                    }
                }
                (Err(failure), _) => {
                    // The batch as a whole was given up: each of its records is.
                    let mut outcome = Outcome::Recovered;
                    for (r, g) in records[from..].iter().zip(&mut given_up[from..]) {
                        if std::mem::replace(g, true) {
                            continue;
                        }
                        if let Outcome::Stopped = self.give_up(r, &failure).await {
                            outcome = Outcome::Stopped;
                            break;
                        }
                    }
                    if let Outcome::Stopped = outcome {
                        break ChunkEnd::Stopped;
                    }
                    if !self.complete(chunk, &offsets[from..], &outcome, &mut done) {
                        break ChunkEnd::Abandoned;
                    }
                    break ChunkEnd::Complete;
                }
            }
        };
        if let Some(last) = done {
            self.state.finish(chunk.epoch, last, false);
        }
        end
    }

    /// Calls the batch handler on `part`, retrying per the policy (the first call counts as
    /// attempt `first_attempt`). With `split`, an error naming its failing record
    /// ([`BatchListenerFailed`]) ends the calls at once. Also returns the records of `part`
    /// that could not be decoded (indexes into `part`).
    async fn call_batch(
        &self,
        f: crate::listener::BatchHandlerFn,
        part: &[ConsumerRecord],
        first_attempt: u32,
        split: bool,
    ) -> (Result<Outcome, Failure>, Vec<(usize, crate::ExtractError)>) {
        let last = part.last().map_or(0, |r| r.offset);
        let mut first_call = true;
        let mut undecodable = Vec::new();
        let result = self
            .with_retries_from(last, first_attempt, split, |cx| {
                let invocation = match std::panic::catch_unwind(AssertUnwindSafe(|| f(part, cx))) {
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
                if std::mem::take(&mut first_call) {
                    undecodable = invocation.rejected;
                }
                match invocation.future {
                    Some(fut) => Ok(fut),
                    None => Ok(Box::pin(async { Ok(()) }) as HandlerFuture),
                }
            })
            .await;
        (result, undecodable)
    }

    /// Marked [`NonRetryable`], or so by the listener's own rule.
    fn is_not_retryable(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        NonRetryable::is_in(error) || self.not_retryable.as_ref().is_some_and(|p| p(error))
    }

    /// Whether the listener's circuit breaker is open (no new records are taken).
    pub(super) fn breaker_open(&self) -> bool {
        self.counters.breaker.as_ref().is_some_and(|b| b.is_open())
    }

    /// Resolves when an open circuit breaker closes (never, without one).
    pub(super) async fn breaker_closed(&self) {
        match &self.counters.breaker {
            Some(b) if b.is_open() => b.closed().await,
            _ => std::future::pending().await,
        }
    }

    /// Handles one record: extract, call, retry, and give it up to the recoverer if need be.
    pub(super) async fn handle_record(
        &self,
        f: crate::listener::RecordHandlerFn,
        record: &ConsumerRecord,
    ) -> Outcome {
        if let Some(longest) = self.retry_topic_max_delay {
            if let Some(mut wait) = retry_topic::not_due_for(record, retry_topic::now_ms()) {
                let cap = longest + Duration::from_secs(1);
                if wait > cap {
                    tracing::warn!(listener = %self.cx.listener_id, topic = %self.state.topic,
                        partition = self.state.partition, offset = record.offset, ?wait,
                        "retry copy due further ahead than the longest retry delay (a skewed clock, or a copy from elsewhere?): waiting {cap:?} only");
                    wait = cap;
                }
                // Not due: the partition rewinds to this record and waits, paused (a nack),
                // so no task sleeps holding records and the consumer keeps polling.
                if let Ok(ack) = <Acknowledgment as FromRecord>::from_record(record, &self.cx) {
                    ack.nack(wait);
                }
                return Outcome::Done;
            }
        }
        let header = self.delivery_attempt_header;
        // The record's span: its fields in every event the handler logs. Debug level, so it
        // costs a check per record unless `kafka_listener::record=debug` is on.
        let span = tracing::debug_span!(
            target: "kafka_listener::record",
            "record",
            listener = %self.cx.listener_id,
            topic = %self.state.topic,
            partition = self.state.partition,
            offset = record.offset,
            key = record.key().map(|k| tracing::field::display(String::from_utf8_lossy(k))),
        );
        #[cfg(feature = "opentelemetry")]
        crate::otel::set_parent(&span, record);
        let result = self
            .with_retries(record.offset, |cx| {
                // Spring's `kafka_deliveryAttempt`, on a copy (the extractors borrow the
                // record only while they extract).
                let with_attempt;
                let record = if header {
                    let mut copy = record.clone();
                    copy.headers.push(
                        DELIVERY_ATTEMPT_HEADER.as_bytes(),
                        Some(bytes::Bytes::copy_from_slice(&cx.attempt.to_be_bytes())),
                    );
                    with_attempt = copy;
                    &with_attempt
                } else {
                    record
                };
                std::panic::catch_unwind(AssertUnwindSafe(|| f(record, cx)))
                    .map_err(|p| Err(panic_error(p)))
                    .and_then(|r| r.map_err(Ok))
            })
            .instrument(span)
            .await;
        match result {
            Ok(outcome) => {
                if let Outcome::Done = outcome {
                    self.counters.meters.handled.increment(1);
                    if let Some(b) = &self.counters.breaker {
                        b.on_done(1);
                    }
                }
                outcome
            }
            Err(failure) => self.give_up(record, &failure).await,
        }
    }

    /// Hands `record` to the recoverer. Returns once the recoverer succeeded (the offset may
    /// move past the record), calling it again after a back-off for as long as it fails; or
    /// when the partition stops meanwhile (the record stays unfinished, to be redelivered).
    /// A recoverer already running is awaited through a stop: its dead letter may be on its
    /// way.
    pub(super) async fn give_up(&self, record: &ConsumerRecord, failure: &Failure) -> Outcome {
        let mut failures = 0u32;
        if let Some(b) = &self.counters.breaker {
            // An open breaker holds the record before its recoverer (uncommitted).
            while b.is_open() {
                tokio::select! {
                    biased;
                    () = self.state.stop.cancelled() => return Outcome::Stopped,
                    () = b.closed() => {}
                }
            }
        }
        loop {
            let result = match std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.recoverer.recover(record, failure)
            })) {
                Ok(fut) => AssertUnwindSafe(fut)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|p| Err(panic_error(p))),
                Err(p) => Err(panic_error(p)),
            };
            let error = match result {
                Ok(()) => {
                    self.counters.recovered.fetch_add(1, Ordering::Relaxed);
                    self.counters.meters.given_up(self.recoverer.kind());
                    self.counters.recent.push(
                        &self.state.topic,
                        self.state.partition,
                        record.offset,
                        format!("given up ({})", self.recoverer.kind()),
                        failure,
                    );
                    if let Some(b) = &self.counters.breaker {
                        b.on_given_up(&self.cx.listener_id);
                    }
                    return Outcome::Recovered;
                }
                Err(error) => error,
            };
            failures += 1;
            self.counters.meters.recoverer_failures.increment(1);
            self.counters.recent.push(
                &self.state.topic,
                self.state.partition,
                record.offset,
                "recoverer failed: the record waits".to_owned(),
                &error,
            );
            let pause = recoverer_pause(failures);
            tracing::error!(
                listener = %self.cx.listener_id,
                topic = %self.state.topic,
                partition = self.state.partition,
                offset = record.offset,
                recoverer_attempt = failures,
                error = %error,
                failure = %failure,
                "recoverer failed: the record is kept (not committed), its partition waits, and the recoverer runs again after {pause:?}",
            );
            tokio::select! {
                biased;
                () = self.state.stop.cancelled() => return Outcome::Stopped,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Runs `start` (extract + call) and awaits it, retrying failures per the policy.
    /// `start` returns `Err(Ok(e))` for a decode error (no retry) and `Err(Err(e))` for a
    /// failure to retry. `Err` when the record is to be given up.
    pub(super) async fn with_retries<F>(&self, offset: i64, start: F) -> Result<Outcome, Failure>
    where
        F: FnMut(&ListenerContext) -> Result<HandlerFuture, Result<crate::ExtractError, BoxError>>,
    {
        self.with_retries_from(offset, 1, false, start).await
    }

    /// [`with_retries`](Self::with_retries), counting from `first_attempt`; with `split`, an
    /// error naming a batch's failing record returns at once (as `Exhausted`).
    async fn with_retries_from<F>(
        &self,
        offset: i64,
        first_attempt: u32,
        split: bool,
        mut start: F,
    ) -> Result<Outcome, Failure>
    where
        F: FnMut(&ListenerContext) -> Result<HandlerFuture, Result<crate::ExtractError, BoxError>>,
    {
        let attempts = self.retry.attempts.max(1);
        let mut attempt = first_attempt.max(1);
        let mut waited = 0u32;
        let mut retry_cx = None;
        loop {
            // The first attempt uses the partition's context as it is; a retry gets a copy
            // that carries its attempt number (`DeliveryAttempt`).
            let cx = if attempt == 1 {
                &self.cx
            } else {
                let cx = retry_cx.get_or_insert_with(|| self.cx.clone());
                cx.attempt = attempt;
                &*cx
            };
            let meters = &self.counters.meters;
            let started = meters.timed.then(Instant::now);
            let result = match start(cx) {
                Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(result) => {
                        if let Some(started) = started {
                            match &result {
                                Ok(()) => meters.call_success.record(started.elapsed()),
                                Err(_) => meters.call_error.record(started.elapsed()),
                            }
                        }
                        result
                    }
                    Err(p) => {
                        if let Some(started) = started {
                            meters.call_panic.record(started.elapsed());
                        }
                        Err(panic_error(p))
                    }
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
                        () = self.state.stop.cancelled() => return Ok(Outcome::Stopped),
                        () = tokio::time::sleep(self.retry.pause(1, 0.0).max(Duration::from_millis(100))) => {}
                    }
                    continue;
                }
                Err(Ok(decode)) => return Err(Failure::Decode(decode)),
                Err(Err(e)) => Err(e),
            };
            let error = match result {
                Ok(()) => return Ok(Outcome::Done),
                Err(error) => error,
            };
            meters.failures.increment(1);
            self.counters.recent.push(
                &self.state.topic,
                self.state.partition,
                offset,
                format!("handler failed (attempt {attempt})"),
                &error,
            );
            if split && BatchListenerFailed::index_in(&*error).is_some() {
                return Err(Failure::Exhausted {
                    attempts: attempt,
                    last: error,
                });
            }
            if self.is_not_retryable(&*error) {
                return Err(Failure::NotRetryable { attempt, error });
            }
            if attempt >= attempts {
                return Err(Failure::Exhausted {
                    attempts,
                    last: error,
                });
            }
            let pause = self.retry.pause(attempt, random_unit(offset, attempt));
            tracing::warn!(
                listener = %self.cx.listener_id,
                topic = %self.state.topic,
                partition = self.state.partition,
                offset,
                attempt,
                attempts,
                error = %error,
                "handler failed; retrying after {pause:?}",
            );
            meters.retried.increment(1);
            attempt += 1;
            tokio::select! {
                biased;
                () = self.state.stop.cancelled() => return Ok(Outcome::Stopped),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// A number in `[0, 1)` for a random back-off: the process's random hash seed over the record,
/// the attempt and the clock (no generator to share between partitions).
fn random_unit(offset: i64, attempt: u32) -> f64 {
    use std::hash::BuildHasher as _;
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let h = SEED
        .get_or_init(Default::default)
        .hash_one((offset, attempt, nanos));
    (h >> 11) as f64 / (1u64 << 53) as f64
}
