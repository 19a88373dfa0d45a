//! Shutdown: the final commit under the deadline, and the order in which the partition
//! queues, the commit queue and the consumer are destroyed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

use super::commit::commit;
use super::consumer::{ConsumerCore, ConsumerReport, CoreContext};

/// The consumer together with what must be destroyed before it: its [`CommitQueue`] and
/// the partition queues split off it (librdkafka's handle must outlive every queue taken
/// from it). Fields drop in order, so the guard runs before the consumer on every path:
/// normal shutdown, a consumer thread that unwinds, and a start that failed half-way.
pub(crate) struct OwnedConsumer {
    _release: ReleaseFirst,
    consumer: BaseConsumer<CoreContext>,
}

impl OwnedConsumer {
    pub(crate) fn new(consumer: BaseConsumer<CoreContext>) -> Self {
        OwnedConsumer {
            _release: ReleaseFirst(Arc::clone(&consumer.context().0)),
            consumer,
        }
    }
}

impl std::ops::Deref for OwnedConsumer {
    type Target = BaseConsumer<CoreContext>;

    fn deref(&self) -> &Self::Target {
        &self.consumer
    }
}

/// See [`OwnedConsumer`].
pub(super) struct ReleaseFirst(Arc<ConsumerCore>);

impl Drop for ReleaseFirst {
    fn drop(&mut self) {
        // No queue is split from here on (librdkafka may still call the rebalance callback
        // while the consumer closes).
        self.0.closed.store(true, Ordering::Release);
        let assigned = std::mem::take(&mut *self.0.assigned());
        for a in &assigned {
            a.state.stop.cancel();
            a.state.wake.notify_one();
            a.state.release_queue();
        }
        self.0
            .commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// Shutdown protocol for one consumer: stop every worker, wait for in-flight handlers until
/// the deadline, commit everything finished synchronously. Returns the consumer for the caller
/// to close (leave the group) once it reported.
pub(super) fn shutdown(
    consumer: OwnedConsumer,
    core: &ConsumerCore,
    deadline: Instant,
) -> (ConsumerReport, OwnedConsumer) {
    let mut report = ConsumerReport::default();
    // Taken first, so it is dropped before `consumer` on every path (also when unwinding).
    let commit_queue = core
        .commits
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let assigned = std::mem::take(&mut *core.assigned());
    for a in &assigned {
        a.state.stop.cancel();
        a.state.wake.notify_one();
    }
    for a in &assigned {
        if !a.state.wait_exited(deadline) {
            report.handlers_cut_off += 1;
            tracing::warn!(consumer = %core.name, topic = %a.state.topic, partition = a.state.partition,
                "shutdown: handler still running at kafka.listener.shutdown-timeout; its record is not committed and will be redelivered");
        }
        a.state.release_queue();
    }
    // The asynchronous commit in flight, if any, must not land after the last one.
    if let Some(queue) = &commit_queue {
        core.settle_with(
            queue,
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1)),
        );
    }
    // The last commit is worth a few tries: a transient error (a request timeout, the
    // coordinator moving) would otherwise leave finished records to be redelivered.
    for attempt in 0..3 {
        if attempt > 0 {
            if assigned
                .iter()
                .all(|a| a.state.offsets.pending_unconfirmed().is_none())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        commit(
            &consumer,
            &core.name,
            &core.counters.meters,
            &assigned,
            CommitMode::Sync,
            |s| s.offsets.pending_unconfirmed(),
        );
    }
    for a in &assigned {
        match a.state.offsets.pending_unconfirmed() {
            Some(_) => report.commit_failures += 1,
            None if a.state.finished_records() > 0 => report.committed_partitions += 1,
            None => {}
        }
    }
    core.closed.store(true, Ordering::Release);
    for a in &assigned {
        let finished = a.state.finished_records();
        report.redeliverable += a.state.taken_records().saturating_sub(finished);
    }
    // The commit queue goes before the consumer (librdkafka's handle must outlive it).
    drop(commit_queue);
    // The caller reports, then drops the consumer, which closes it: the final revoke (a no-op
    // now) and leaving the group. Closing can take a while (a JoinGroup the broker holds until
    // the group's rebalance completes, up to max.poll.interval.ms), and by now nothing is at
    // stake any more: what finished is committed.
    (report, consumer)
}
