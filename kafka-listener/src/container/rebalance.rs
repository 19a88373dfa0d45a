//! The rebalance protocol: taking on assigned partitions (their queues and workers) and giving
//! up revoked ones (waiting for their handlers, committing), with the application's
//! [`RebalanceListener`] hooks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

use super::commit::{commit, describe};
use super::consumer::{Assigned, ConsumerCore, CoreContext};
use super::ffi::PartitionQueue;
use super::poll::chunk_bytes;
use super::seek::{resolve, AssignmentSeeker};
use super::state::{pause, PartitionState};
use super::worker::Worker;
use crate::error_handler::{LogRecoverer, Recoverer};

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
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

impl ConsumerCore {
    /// Takes on newly assigned partitions: splits each one's queue off the consumer queue
    /// (before librdkafka starts fetching it, so no record goes elsewhere) and starts its
    /// worker.
    pub(super) fn assign<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) {
        if self.closed.load(Ordering::Acquire) {
            // Closing: nothing is handled any more, and no queue may outlive the consumer.
            return;
        }
        // Also an empty assignment: the consumer is in its group (readiness).
        self.joined.store(true, Ordering::Release);
        self.counters.meters.assigned.increment(1);
        let mut assigned = self.assigned();
        for elem in tpl.elements() {
            let (topic, partition) = (elem.topic(), elem.partition());
            if assigned
                .iter()
                .any(|a| a.state.partition == partition && &*a.state.topic == topic)
            {
                continue;
            }
            let state = Arc::new(PartitionState::new(Arc::from(topic), partition));
            if self.user_paused.load(Ordering::Acquire) {
                // Before its worker starts, so it takes nothing while the container is paused.
                state.paused.fetch_or(pause::USER, Ordering::AcqRel);
            }
            match PartitionQueue::split(consumer, topic, partition, Arc::clone(&state.wake)) {
                Some(queue) => *state.queue.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue),
                None => {
                    // Its records would go to the consumer queue, where nobody takes them;
                    // the poll loop reports that as a dead consumer (see `stray`).
                    tracing::error!(consumer = %self.name, %topic, partition,
                        "could not split the partition's queue off the consumer queue");
                }
            }
            let worker = Worker {
                state: Arc::clone(&state),
                handler: self.handler,
                cx: self.cx.clone(),
                retry: self.props.retry,
                recoverer: self.props.recoverer.clone().unwrap_or_else(|| {
                    Arc::new(LogRecoverer::new(&self.props.listener_id)) as Arc<dyn Recoverer>
                }),
                not_retryable: self.props.not_retryable.clone(),
                retry_topic_max_delay: self.props.retry_topic_max_delay,
                delivery_attempt_header: self.props.delivery_attempt_header,
                ack_mode: self.props.ack_mode,
                counters: Arc::clone(&self.counters),
                requests: self.requests_tx.clone(),
                max_records: self.props.max_poll_records.max(1),
                max_bytes: chunk_bytes(&self.props),
                lanes: self.props.concurrency_per_partition.max(1) as usize,
            };
            let (listener, what) = (
                self.name.clone(),
                format!("partition worker {topic}-{partition}"),
            );
            self.runtime.spawn(async move {
                use futures::FutureExt as _;
                let run = std::panic::AssertUnwindSafe(worker.run());
                if let Err(payload) = run.catch_unwind().await {
                    let cause = super::supervision::panic_message(&*payload);
                    super::supervision::report_death(&listener, &what, &cause);
                }
            });
            assigned.push(Assigned { state });
        }
        tracing::info!(consumer = %self.name, partitions = %describe(tpl), "partitions assigned");
    }

    /// Revoke protocol: stop the partitions' workers, wait for in-flight handlers up to the
    /// revoke deadline, commit what finished (unless the assignment was lost), forget them.
    pub(super) fn revoke<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) {
        let lost = consumer.assignment_lost();
        let mut assigned = self.assigned();
        let revoked: Vec<Assigned> = {
            let mut keep = Vec::with_capacity(assigned.len());
            let mut gone = Vec::new();
            for a in assigned.drain(..) {
                let hit = tpl
                    .elements()
                    .iter()
                    .any(|e| e.partition() == a.state.partition && e.topic() == &*a.state.topic);
                if hit {
                    gone.push(a);
                } else {
                    keep.push(a);
                }
            }
            *assigned = keep;
            gone
        };
        drop(assigned);
        if revoked.is_empty() || self.closed.load(Ordering::Acquire) {
            return;
        }
        for a in &revoked {
            a.state.stop.cancel();
            a.state.wake.notify_one();
        }
        // librdkafka keeps a partition's pause across revoke and re-assignment: lift ours now,
        // or the partition would never be fetched again if it comes back to this consumer.
        let mut paused = TopicPartitionList::new();
        for a in &revoked {
            if a.state.paused.swap(0, Ordering::AcqRel) != 0 {
                let _ = paused.add_partition(&a.state.topic, a.state.partition);
            }
        }
        if paused.count() > 0 {
            if let Err(e) = consumer.resume(&paused) {
                tracing::warn!(consumer = %self.name, error = %e, "lifting pauses of revoked partitions failed");
            }
        }
        let listener = self.props.rebalance_listener.as_deref();
        if lost {
            self.counters.meters.lost.increment(1);
            for a in &revoked {
                a.state.release_queue();
            }
            tracing::warn!(consumer = %self.name, partitions = %describe(tpl),
                "partitions lost: nothing committed; their unfinished records will be redelivered to the new owner");
            if let Some(l) = listener {
                self.user_callback("on_partitions_lost", || {
                    l.on_partitions_lost(&partitions_of(tpl))
                });
            }
            return;
        }
        if let Some(l) = listener {
            self.user_callback("on_partitions_revoked_before_commit", || {
                l.on_partitions_revoked_before_commit(&partitions_of(tpl))
            });
        }
        let deadline = Instant::now() + self.props.revoke_timeout;
        for a in &revoked {
            if !a.state.wait_exited(deadline) {
                tracing::warn!(consumer = %self.name, topic = %a.state.topic, partition = a.state.partition,
                    "revoke: handler still running at kafka.listener.revoke-timeout; its record stays uncommitted and will be redelivered");
            }
            a.state.release_queue();
        }
        // An asynchronous commit still in flight could land after the synchronous one.
        self.settle_commits(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1)),
        );
        let committed = commit(
            consumer,
            &self.name,
            &self.counters.meters,
            &revoked,
            CommitMode::Sync,
            |s| s.offsets.pending_unconfirmed(),
        );
        self.counters.meters.revoked.increment(1);
        tracing::info!(consumer = %self.name, partitions = %describe(tpl), committed, "partitions revoked");
        if let Some(l) = listener {
            self.user_callback("on_partitions_revoked_after_commit", || {
                l.on_partitions_revoked_after_commit(&partitions_of(tpl))
            });
        }
    }

    /// Runs a user `RebalanceListener` callback. It runs inside librdkafka's rebalance callback,
    /// where a panic would abort the process; a panic is caught, logged and treated as a dead
    /// consumer (the process shuts down gracefully and exits non-zero). The rebalance itself
    /// goes on (the revoke still commits what finished).
    pub(super) fn user_callback(&self, name: &str, f: impl FnOnce()) {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let cause = super::supervision::panic_message(&*payload);
            super::supervision::report_death(
                &self.name,
                &format!("RebalanceListener::{name}"),
                &cause,
            );
        }
    }

    /// Assignment: the application's rebalance listener may choose starting offsets, which go
    /// into the list handed to librdkafka (a seek right after assignment would fail).
    pub(super) fn assign_with_seeks<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: &mut TopicPartitionList,
    ) {
        if let Some(l) = self.props.rebalance_listener.as_deref() {
            let mut seeker = AssignmentSeeker::default();
            self.user_callback("on_partitions_assigned", || {
                l.on_partitions_assigned(&partitions_of(tpl), &mut seeker)
            });
            for (tp, target) in seeker.seeks {
                if tpl.find_partition(&tp.topic, tp.partition).is_none() {
                    continue;
                }
                match resolve(consumer, &tp.topic, tp.partition, target) {
                    Ok(offset) => {
                        let _ = tpl.set_partition_offset(&tp.topic, tp.partition, offset);
                    }
                    Err(e) => tracing::error!(consumer = %self.name, topic = %tp.topic,
                        partition = tp.partition, ?target, error = %e,
                        "seek on assignment failed; starting from the committed offset"),
                }
            }
        }
        self.assign(consumer, tpl);
    }

    /// Applies the application's pause to partitions that were just assigned, or makes sure
    /// they are not paused (a pause left from an earlier assignment survives in librdkafka).
    pub(super) fn apply_user_pause<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) {
        // librdkafka pauses only for nacks, and a nack's pause does not carry over to a new
        // assignment.
        if tpl.count() > 0 {
            if let Err(e) = consumer.resume(tpl) {
                tracing::warn!(consumer = %self.name, error = %e, "clearing stale pauses of assigned partitions failed");
            }
        }
        if !self.user_paused.load(Ordering::Acquire) {
            return;
        }
        // Newly assigned partitions start paused too (ours only, see `poll::apply_request`).
        for a in self.assigned().iter() {
            if tpl
                .find_partition(&a.state.topic, a.state.partition)
                .is_some()
            {
                a.state.paused.fetch_or(pause::USER, Ordering::AcqRel);
            }
        }
    }
}

impl ConsumerContext for CoreContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let core = &self.0;
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                core.assign_with_seeks(consumer, tpl);
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                core.apply_user_pause(consumer, tpl);
                r
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                core.revoke(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(consumer = %core.name, error = ?other, "rebalance error; giving up the assignment");
                core.revoke(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = result {
            tracing::error!(consumer = %core.name, error = %e, partitions = %describe(tpl), "applying a rebalance failed");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // The commits we send report through `CommitQueue` (rdkafka does not route their
        // results here); this stays for any result that does arrive.
        if let Err(e) = result {
            tracing::warn!(consumer = %self.0.name, error = %e, offsets = %describe(offsets), "asynchronous commit failed; will commit again");
            self.0.commit_failed(offsets);
        }
    }
}
