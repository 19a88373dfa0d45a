//! Partition workers: one async task per assigned partition, taking its records in order.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::offsets::PartitionOffsets;
use crate::config::AckMode;
use crate::error_handler::{panic_error, recover, Failure, RetryPolicy};
use crate::listener::{ConsumerRecord, Handler, HandlerFuture, ListenerContext};
use crate::BoxError;

/// The records of one partition from one poll cycle.
pub(crate) type Chunk = Vec<ConsumerRecord>;

/// What the consumer thread and a partition worker share.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offsets: PartitionOffsets,
    /// Records handed to the worker and not yet finished or dropped.
    pub(crate) queued: AtomicUsize,
    /// Records finished (handled or recovered) since assignment.
    finished_count: AtomicU64,
    /// Paused by back-pressure (consumer thread only).
    pub(crate) paused: AtomicBool,
    /// Stop taking records: set on revoke and shutdown. The record in hand finishes.
    pub(crate) stop: CancellationToken,
    exited: Mutex<bool>,
    exited_cv: Condvar,
}

impl PartitionState {
    pub(crate) fn new(topic: Arc<str>, partition: i32) -> Self {
        PartitionState {
            topic,
            partition,
            offsets: PartitionOffsets::new(),
            queued: AtomicUsize::new(0),
            finished_count: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            stop: CancellationToken::new(),
            exited: Mutex::new(false),
            exited_cv: Condvar::new(),
        }
    }

    /// Blocks the calling (consumer) thread until the worker exited or `deadline` passed.
    /// Returns whether it exited.
    pub(crate) fn wait_exited(&self, deadline: Instant) -> bool {
        let mut exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
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
}

pub(crate) struct Worker {
    pub(crate) state: Arc<PartitionState>,
    pub(crate) handler: Handler,
    pub(crate) cx: ListenerContext,
    pub(crate) retry: RetryPolicy,
    pub(crate) ack_mode: AckMode,
    pub(crate) counters: Arc<Counters>,
}

enum Outcome {
    /// Handled (successfully or by the recoverer): the offset may move past it.
    Finished,
    /// Abandoned by a stop: not finished, must be redelivered.
    Stopped,
}

impl Worker {
    pub(crate) async fn run(self, mut rx: mpsc::UnboundedReceiver<Chunk>) {
        let _exit = ExitGuard(Arc::clone(&self.state));
        let stop = self.state.stop.clone();
        loop {
            let chunk = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                chunk = rx.recv() => match chunk {
                    Some(chunk) => chunk,
                    None => break,
                },
            };
            let len = chunk.len();
            let done = match self.handler {
                Handler::Record(f) => self.run_records(f, &chunk).await,
                Handler::Batch(f) => match self.run_batch(f, &chunk).await {
                    Outcome::Finished => len,
                    Outcome::Stopped => 0,
                },
            };
            self.state.queued.fetch_sub(len, Ordering::AcqRel);
            if done < len {
                break; // stopped part-way: the rest is redelivered to whoever owns it next
            }
            if self.ack_mode == AckMode::Batch {
                self.state.offsets.ack_finished();
            }
        }
        // Whatever is still queued is dropped unfinished; it was never committed.
        rx.close();
        while let Ok(chunk) = rx.try_recv() {
            self.state.queued.fetch_sub(chunk.len(), Ordering::AcqRel);
        }
    }

    /// Handles the records one by one; returns how many finished.
    async fn run_records(
        &self,
        f: crate::listener::RecordHandlerFn,
        chunk: &[ConsumerRecord],
    ) -> usize {
        for (i, record) in chunk.iter().enumerate() {
            if self.state.stop.is_cancelled() {
                return i;
            }
            let outcome = self
                .with_retries(record.offset, || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| f(record, &self.cx)))
                        .map_err(|p| Err(panic_error(p)))
                        .and_then(|r| r.map_err(Ok))
                })
                .await;
            match outcome {
                Outcome::Finished => {
                    self.state.offsets.finish(record.offset);
                    if self.ack_mode == AckMode::Record {
                        self.state.offsets.ack_finished();
                    }
                    self.state.finished_count.fetch_add(1, Ordering::AcqRel);
                    self.counters.finished.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Stopped => return i,
            }
        }
        chunk.len()
    }

    async fn run_batch(
        &self,
        f: crate::listener::BatchHandlerFn,
        chunk: &[ConsumerRecord],
    ) -> Outcome {
        let Some(last) = chunk.last() else {
            return Outcome::Finished;
        };
        let mut first_call = true;
        let outcome = self
            .with_retries(last.offset, || {
                let invocation =
                    match std::panic::catch_unwind(AssertUnwindSafe(|| f(chunk, &self.cx))) {
                        Ok(invocation) => invocation,
                        Err(p) => return Err(Err(panic_error(p))),
                    };
                // Undecodable records go to the recoverer once, not on every retry.
                if std::mem::take(&mut first_call) {
                    for (index, error) in invocation.rejected {
                        if let Some(r) = chunk.get(index) {
                            self.counters.recovered.fetch_add(1, Ordering::Relaxed);
                            recover(
                                &self.cx.listener_id,
                                &r.topic,
                                r.partition,
                                r.offset,
                                &Failure::Decode(error),
                            );
                        }
                    }
                }
                match invocation.future {
                    Some(fut) => Ok(fut),
                    None => Ok(Box::pin(async { Ok(()) }) as HandlerFuture),
                }
            })
            .await;
        if let Outcome::Finished = outcome {
            self.state.offsets.finish(last.offset);
            self.state
                .finished_count
                .fetch_add(chunk.len() as u64, Ordering::AcqRel);
            self.counters
                .finished
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        outcome
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
        loop {
            let result = match start() {
                Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(result) => result,
                    Err(p) => Err(panic_error(p)),
                },
                Err(Ok(decode)) => {
                    self.counters.recovered.fetch_add(1, Ordering::Relaxed);
                    recover(
                        &self.cx.listener_id,
                        &self.state.topic,
                        self.state.partition,
                        offset,
                        &Failure::Decode(decode),
                    );
                    return Outcome::Finished;
                }
                Err(Err(e)) => Err(e),
            };
            let error = match result {
                Ok(()) => return Outcome::Finished,
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
                return Outcome::Finished;
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
