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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::ffi::{CommitOutcome, CommitQueue, PartitionQueue};
use super::partition::{pause, ConsumerRequest, Counters, PartitionState, Worker};
use super::rebalance::{partitions_of, resolve, AssignmentSeeker};
use super::ContainerProperties;
use crate::config::AckMode;
use crate::listener::{Handler, ListenerContext};

/// A partition assigned to this consumer, seen from the consumer thread.
struct Assigned {
    state: Arc<PartitionState>,
}

/// The partitions of a commit in flight, each with its full-seek generation when sent.
type InFlight = Vec<(Arc<PartitionState>, u64)>;

/// What the poll loop and the rebalance callback (same thread) share.
pub(crate) struct ConsumerCore {
    pub(crate) name: String,
    props: Arc<ContainerProperties>,
    handler: Handler,
    cx: ListenerContext,
    counters: Arc<Counters>,
    runtime: tokio::runtime::Handle,
    assigned: Mutex<Vec<Assigned>>,
    /// Set once shutdown committed: the revoke that librdkafka runs while closing must not
    /// commit again (work cut off by the deadline may finish late and must stay uncommitted).
    closed: AtomicBool,
    pub(crate) requests_tx: std::sync::mpsc::Sender<ConsumerRequest>,
    /// Paused by the application: newly assigned partitions start paused too.
    user_paused: AtomicBool,
    requests_rx: Mutex<Option<std::sync::mpsc::Receiver<ConsumerRequest>>>,
    /// Asynchronous commits go through it, one at a time (see [`CommitQueue`]). Installed by
    /// the poll loop and always dropped before the consumer.
    commits: Mutex<Option<CommitQueue>>,
    /// The partitions (state and full-seek generation when sent) of the asynchronous commit
    /// whose outcome has not come back yet; `None` when none is in flight. An outcome applies
    /// only to the same state in the same generation (not to a re-assignment or after a seek).
    in_flight: Mutex<Option<InFlight>>,
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
        }
    }

    /// The partitions this consumer owns now.
    pub(crate) fn assignment(&self) -> Vec<(String, i32)> {
        self.assigned()
            .iter()
            .map(|a| (a.state.topic.to_string(), a.state.partition))
            .collect()
    }

    fn assigned(&self) -> MutexGuard<'_, Vec<Assigned>> {
        // Only this consumer's thread locks it; poisoning would mean a panic here, and the
        // state is still consistent (plain data), so carry on.
        self.assigned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes on newly assigned partitions: splits each one's queue off the consumer queue
    /// (before librdkafka starts fetching it, so no record goes elsewhere) and starts its
    /// worker.
    fn assign<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tpl: &TopicPartitionList) {
        if self.closed.load(Ordering::Acquire) {
            // Closing: nothing is handled any more, and no queue may outlive the consumer.
            return;
        }
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
                ack_mode: self.props.ack_mode,
                counters: Arc::clone(&self.counters),
                requests: self.requests_tx.clone(),
                max_records: self.props.max_poll_records.max(1),
                max_bytes: chunk_bytes(&self.props),
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
    fn revoke<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tpl: &TopicPartitionList) {
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
        let committed = commit(consumer, &self.name, &revoked, CommitMode::Sync, |s| {
            s.offsets.pending_unconfirmed()
        });
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
    fn user_callback(&self, name: &str, f: impl FnOnce()) {
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
    fn assign_with_seeks<C: ConsumerContext>(
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
    fn apply_user_pause<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) {
        if !self.user_paused.load(Ordering::Acquire) {
            if tpl.count() > 0 {
                if let Err(e) = consumer.resume(tpl) {
                    tracing::warn!(consumer = %self.name, error = %e, "clearing stale pauses of assigned partitions failed");
                }
            }
            return;
        }
        let assigned = self.assigned();
        let mut to_pause = TopicPartitionList::new();
        for a in assigned.iter() {
            if tpl
                .find_partition(&a.state.topic, a.state.partition)
                .is_some()
                && a.state.paused.fetch_or(pause::USER, Ordering::AcqRel) == 0
            {
                let _ = to_pause.add_partition(&a.state.topic, a.state.partition);
            }
        }
        if to_pause.count() > 0 {
            if let Err(e) = consumer.pause(&to_pause) {
                tracing::warn!(consumer = %self.name, error = %e, "pausing newly assigned partitions failed");
            }
        }
    }

    /// Applies the outcomes of asynchronous commits that came back (waiting at most `wait` for
    /// the one in flight, if any).
    fn settle_commits(&self, wait: Duration) {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = commits.as_ref() {
            self.settle_with(queue, wait);
        }
    }

    fn settle_with(&self, queue: &CommitQueue, wait: Duration) {
        let mut timeout = if self.commit_in_flight() {
            wait
        } else {
            Duration::ZERO
        };
        while let Some(outcome) = queue.poll(timeout) {
            self.apply_commit_outcome(&outcome);
            timeout = Duration::ZERO;
        }
        if self.commit_in_flight() && !wait.is_zero() {
            // librdkafka defers a commit while it has no coordinator and retries one that
            // timed out; if it lands after the synchronous commit that follows, the group's
            // offset moves back (duplicates after a restart, never a loss).
            tracing::warn!(consumer = %self.name, ?wait, "an asynchronous commit is still unanswered; committing synchronously anyway");
        }
    }

    fn commit_in_flight(&self) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn apply_commit_outcome(&self, outcome: &CommitOutcome) {
        let sent = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        for (state, generation) in sent {
            if state.epoch_and_generation().1 != generation {
                continue; // seeked since: the positions it confirmed are gone
            }
            let Some((_, _, offset, perr)) = outcome
                .partitions
                .iter()
                .find(|(t, p, _, _)| *p == state.partition && t.as_str() == &*state.topic)
            else {
                continue;
            };
            match outcome.error.or(*perr) {
                None => state.offsets.confirmed(*offset),
                Some(e) => {
                    tracing::warn!(consumer = %self.name, topic = %state.topic, partition = state.partition,
                        offset, error = ?e, "asynchronous commit failed; will commit again");
                    state.offsets.commit_failed();
                }
            }
        }
    }

    /// Sends an asynchronous commit of what the ack mode allows, unless one is in flight (the
    /// next turn carries the newer offsets). Without a commit queue, rdkafka's own commit.
    /// Returns whether a commit went out.
    fn commit_async(
        &self,
        consumer: &BaseConsumer<CoreContext>,
        assigned: &[Assigned],
        offset_of: impl Fn(&PartitionState) -> Option<i64>,
    ) -> bool {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = commits.as_ref() else {
            drop(commits);
            return commit(consumer, &self.name, assigned, CommitMode::Async, offset_of) > 0;
        };
        if self.commit_in_flight() {
            return false;
        }
        let (tpl, picked) = commit_list(assigned, offset_of);
        if picked.is_empty() {
            return false;
        }
        match queue.commit(consumer, &tpl) {
            Ok(()) => {
                let mut sent = Vec::with_capacity(picked.len());
                for (state, offset) in picked {
                    state.offsets.committed(offset);
                    sent.push((Arc::clone(state), state.epoch_and_generation().1));
                }
                *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent);
                true
            }
            Err(e) => {
                tracing::warn!(consumer = %self.name, error = ?e, offsets = %describe(&tpl), "commit failed; will retry");
                false
            }
        }
    }

    fn commit_failed(&self, offsets: &TopicPartitionList) {
        for a in self.assigned().iter() {
            if offsets
                .elements()
                .iter()
                .any(|e| e.partition() == a.state.partition && e.topic() == &*a.state.topic)
            {
                a.state.offsets.commit_failed();
            }
        }
    }
}

/// The offsets `offset_of` gives the partitions that have one, as a list to commit and with
/// the partition each came from.
fn commit_list(
    partitions: &[Assigned],
    offset_of: impl Fn(&PartitionState) -> Option<i64>,
) -> (TopicPartitionList, Vec<(&Arc<PartitionState>, i64)>) {
    let mut tpl = TopicPartitionList::new();
    let mut picked = Vec::new();
    for a in partitions {
        if let Some(offset) = offset_of(&a.state) {
            if tpl
                .add_partition_offset(&a.state.topic, a.state.partition, Offset::Offset(offset))
                .is_ok()
            {
                picked.push((&a.state, offset));
            }
        }
    }
    (tpl, picked)
}

/// Commits `offset_of` for each partition that has one; returns how many partitions it
/// committed (0 on failure, which is logged).
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    name: &str,
    partitions: &[Assigned],
    mode: CommitMode,
    offset_of: impl Fn(&PartitionState) -> Option<i64>,
) -> usize {
    let (tpl, picked) = commit_list(partitions, offset_of);
    if picked.is_empty() {
        return 0;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            for (state, offset) in &picked {
                match mode {
                    CommitMode::Sync => state.offsets.confirmed(*offset),
                    CommitMode::Async => state.offsets.committed(*offset),
                }
            }
            picked.len()
        }
        Err(e) => {
            tracing::warn!(consumer = %name, error = %e, offsets = %describe(&tpl), ?mode, "commit failed; will retry");
            0
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    let mut out = String::new();
    for (i, e) in tpl.elements().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(e.topic());
        out.push('-');
        out.push_str(&e.partition().to_string());
        if let Offset::Offset(o) = e.offset() {
            out.push('@');
            out.push_str(&o.to_string());
        }
    }
    if out.is_empty() {
        out.push_str("(none)");
    }
    out
}

/// librdkafka's view of our core: routes rebalance and commit callbacks and logs.
pub(crate) struct CoreContext(pub(crate) Arc<ConsumerCore>);

impl ClientContext for CoreContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::runtime::log_librdkafka(&self.0.name, level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(consumer = %self.0.name, error = %error, "librdkafka: {reason}");
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

/// When the ack mode lets the poll loop commit.
struct CommitSchedule {
    mode: AckMode,
    ack_count: u64,
    ack_time: Duration,
    last_commit: Instant,
    finished_at_last_commit: u64,
}

impl CommitSchedule {
    /// Whether this turn may commit (`time`/`count` modes gate; the others always may), with
    /// the records finished so far (for [`CommitSchedule::sent`]).
    fn due(&mut self, assigned: &[Assigned]) -> Option<u64> {
        let finished: u64 = assigned.iter().map(|a| a.state.finished_records()).sum();
        if finished < self.finished_at_last_commit {
            self.finished_at_last_commit = finished; // partitions moved away
        }
        let by_count = finished - self.finished_at_last_commit >= self.ack_count;
        let by_time = self.last_commit.elapsed() >= self.ack_time;
        let due = match self.mode {
            AckMode::Count => by_count,
            AckMode::Time => by_time,
            AckMode::CountTime => by_count || by_time,
            _ => true,
        };
        due.then_some(finished)
    }

    /// A commit went out: the `time`/`count` modes count from here. (A turn that sent
    /// nothing, because a commit was in flight, does not use up the schedule.)
    fn sent(&mut self, finished: u64) {
        self.last_commit = Instant::now();
        self.finished_at_last_commit = finished;
    }
}

/// What the poll loop may commit for a partition this turn.
fn committable(mode: AckMode, state: &PartitionState) -> Option<i64> {
    match mode {
        // Acknowledgements made after the batch ended (from another task, say) count once
        // the partition has nothing in progress.
        AckMode::Manual if state.queued.load(Ordering::Acquire) == 0 => {
            state.offsets.pending_finished()
        }
        _ => state.offsets.pending_ack(),
    }
}

/// The poll loop. Returns when `stop` is set, after the shutdown protocol.
pub(crate) fn poll_loop(
    consumer: OwnedConsumer,
    stop: &AtomicBool,
    deadline: &Mutex<Option<Instant>>,
) -> ConsumerReport {
    let core = Arc::clone(&consumer.context().0);
    let props = Arc::clone(&core.props);
    // Records go to the partition queues; this thread wakes for rebalances and errors, and
    // at least this often for requests and commits (so commits coalesce to one per turn).
    let slice = props.poll_timeout.min(Duration::from_millis(100));
    let requests = core
        .requests_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    // Dropped before the consumer on every path (see `OwnedConsumer`).
    *core.commits.lock().unwrap_or_else(|p| p.into_inner()) = CommitQueue::new(&consumer);
    let mut schedule = CommitSchedule {
        mode: props.ack_mode,
        ack_count: props.ack_count.max(1),
        ack_time: props.ack_time,
        last_commit: Instant::now(),
        finished_at_last_commit: 0,
    };
    // Partitions paused by a nack, and when to resume them.
    let mut nacked: Vec<(Arc<PartitionState>, Instant)> = Vec::new();
    // Rewinds that failed and are retried.
    let mut rewinds: Vec<Rewind> = Vec::new();
    // An authorization error was reported (once).
    let mut denied = false;
    // A record arrived on the consumer queue (reported once).
    let mut strays = false;

    while !stop.load(Ordering::Acquire) {
        if let Some(requests) = &requests {
            while let Ok(request) = requests.try_recv() {
                apply_request(&consumer, &core, request, &mut nacked, &mut rewinds);
            }
        }
        if !rewinds.is_empty() {
            retry_rewinds(&consumer, &core, &mut rewinds, &mut nacked);
        }
        resume_nacked(&consumer, &core.name, &mut nacked);
        let mut timeout = slice;
        loop {
            match consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    use rdkafka::types::RDKafkaErrorCode as C;
                    match e.rdkafka_error_code() {
                        // The ACLs will not change by retrying: say so and stop the process
                        // (a consumer that cannot read is as good as dead).
                        Some(
                            C::GroupAuthorizationFailed
                            | C::TopicAuthorizationFailed
                            | C::Authentication
                            | C::SaslAuthenticationFailed,
                        ) if !denied => {
                            denied = true;
                            super::supervision::report_death(
                                &props.listener_id,
                                &format!("consumer {}", core.name),
                                &format!("not authorized (group {:?}): {e}; the principal needs READ and DESCRIBE on the group and its topics", props.group_id),
                            );
                        }
                        _ => tracing::warn!(consumer = %core.name, error = %e, "consumer error"),
                    }
                    break;
                }
                Some(Ok(message)) => {
                    stray(&core, &message, &mut strays);
                    timeout = Duration::ZERO;
                }
            }
        }
        core.settle_commits(Duration::ZERO);
        let assigned = core.assigned();
        if let Some(finished) = schedule.due(&assigned) {
            if core.commit_async(&consumer, &assigned, |s| committable(props.ack_mode, s)) {
                schedule.sent(finished);
            }
        }
    }
    let deadline = deadline
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(|| Instant::now() + props.shutdown_timeout);
    shutdown(consumer, &core, deadline)
}

/// A record on the consumer queue: every assigned partition has a queue of its own, so this
/// means a split failed. Nobody handles such records, so nothing after one may be committed:
/// its partition takes nothing more (its worker stops) and the consumer is reported dead
/// (the process shuts down and exits non-zero; the record is redelivered after a restart).
fn stray(
    core: &ConsumerCore,
    message: &rdkafka::message::BorrowedMessage<'_>,
    reported: &mut bool,
) {
    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
    let state = core
        .assigned()
        .iter()
        .find(|a| a.state.partition == partition && &*a.state.topic == topic)
        .map(|a| Arc::clone(&a.state));
    if let Some(state) = state {
        state.seek_pending.store(true, Ordering::Release);
        state.stop.cancel();
        state.wake.notify_one();
    }
    if !std::mem::replace(reported, true) {
        super::supervision::report_death(
            &core.props.listener_id,
            &format!("consumer {}", core.name),
            &format!("record {topic}-{partition}@{offset} arrived on the consumer queue instead of its partition's queue; nothing from it on is handled or committed"),
        );
    }
}

/// The bytes a worker takes in one chunk (`max-buffered-bytes` / 8, at least 64 KiB).
fn chunk_bytes(props: &ContainerProperties) -> usize {
    (props.max_buffered_bytes / 8).max(64 << 10)
}

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
struct ReleaseFirst(Arc<ConsumerCore>);

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

/// Applies a partition worker's request on the consumer thread.
fn apply_request(
    consumer: &BaseConsumer<CoreContext>,
    core: &ConsumerCore,
    request: ConsumerRequest,
    nacked: &mut Vec<(Arc<PartitionState>, Instant)>,
    rewinds: &mut Vec<Rewind>,
) {
    match request {
        ConsumerRequest::InjectPanic => panic!("injected panic (fault injection)"),
        ConsumerRequest::Pause | ConsumerRequest::Resume => {
            let pausing = matches!(request, ConsumerRequest::Pause);
            core.user_paused.store(pausing, Ordering::Release);
            let mut tpl = TopicPartitionList::new();
            for a in core.assigned().iter() {
                let changed = if pausing {
                    a.state.paused.fetch_or(pause::USER, Ordering::AcqRel) == 0
                } else {
                    a.state.paused.fetch_and(!pause::USER, Ordering::AcqRel) == pause::USER
                };
                if changed {
                    let _ = tpl.add_partition(&a.state.topic, a.state.partition);
                }
            }
            let result = if tpl.count() == 0 {
                Ok(())
            } else if pausing {
                consumer.pause(&tpl)
            } else {
                consumer.resume(&tpl)
            };
            match result {
                Ok(()) => {
                    tracing::info!(consumer = %core.name, paused = pausing, "consumer {}", if pausing { "paused" } else { "resumed" })
                }
                Err(e) => tracing::warn!(consumer = %core.name, error = %e, "pause/resume failed"),
            }
        }
        ConsumerRequest::Seek {
            topic,
            partition,
            target,
        } => {
            let state = core
                .assigned()
                .iter()
                .find(|a| a.state.partition == partition && *a.state.topic == *topic)
                .map(|a| Arc::clone(&a.state));
            let Some(state) = state else {
                return; // another consumer of the container owns it, or nobody does
            };
            let result = resolve(consumer, &topic, partition, target)
                .and_then(|offset| seek_locked(consumer, &state, offset, None, true));
            match result {
                Ok(()) => {
                    // A rewind still owed from a failed nack seek would undo this seek.
                    rewinds.retain(|r| !Arc::ptr_eq(&r.state, &state));
                    tracing::info!(consumer = %core.name, %topic, partition, ?target, "seeked");
                }
                Err(e) if state.seek_pending.load(Ordering::Acquire) => {
                    // The worker dropped what it had queued, waiting for this seek: deliver
                    // those records again rather than leave a gap a later commit would pass.
                    match state.resume_at() {
                        Some(offset) => {
                            tracing::error!(consumer = %core.name, %topic, partition, ?target, error = %e,
                                offset, "seek failed; rewinding to the first record not yet handled");
                            let mut rewind = Rewind {
                                state,
                                offset,
                                delay: Duration::ZERO,
                                why: "failed seek",
                                failures: 0,
                                next_try: Instant::now(),
                            };
                            if !rewind.apply(consumer, core, nacked) {
                                rewinds.push(rewind);
                            }
                        }
                        None => {
                            tracing::error!(consumer = %core.name, %topic, partition, ?target, error = %e,
                                "seek failed; the partition goes on from where it was");
                            state.seek_pending.store(false, Ordering::Release);
                            state.wake.notify_one();
                        }
                    }
                }
                Err(e) => {
                    // Another partition's seek: its worker dropped nothing.
                    tracing::error!(consumer = %core.name, %topic, partition, ?target, error = %e,
                        "seek failed; the partition goes on from where it was");
                }
            }
        }
        ConsumerRequest::Nack { state, request } => {
            let mut rewind = Rewind {
                state,
                offset: request.offset,
                delay: request.delay,
                why: "nack",
                failures: 0,
                next_try: Instant::now(),
            };
            if !rewind.apply(consumer, core, nacked) {
                rewinds.push(rewind);
            }
        }
    }
}

/// A rewind the consumer thread owes a partition: a nack's, or the fallback of a seek that
/// could not be applied. Until it is applied the partition stays paused and its worker takes
/// nothing (`seek_pending`), so no record from `offset` on is handled or committed.
struct Rewind {
    state: Arc<PartitionState>,
    offset: i64,
    /// How long the partition stays paused after the rewind (a nack's delay).
    delay: Duration,
    why: &'static str,
    failures: u32,
    next_try: Instant,
}

impl Rewind {
    /// Pauses the partition and seeks it back to `offset`. Returns whether this rewind is
    /// done (applied, or moot because the partition was revoked: its next owner starts from
    /// the committed offset, which never passes `offset`). On failure it is retried, with a
    /// back-off, until it succeeds or the partition goes.
    fn apply(
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
        if state.paused.fetch_or(pause::NACK, Ordering::AcqRel) == 0 {
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
fn seek_locked<C: ConsumerContext>(
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
    state.seek_pending.store(false, Ordering::Release);
    drop(queue);
    state.wake.notify_one();
    Ok(())
}

/// Retries the rewinds that failed before and are due.
fn retry_rewinds(
    consumer: &BaseConsumer<CoreContext>,
    core: &ConsumerCore,
    rewinds: &mut Vec<Rewind>,
    nacked: &mut Vec<(Arc<PartitionState>, Instant)>,
) {
    let now = Instant::now();
    rewinds.retain_mut(|r| r.next_try > now || !r.apply(consumer, core, nacked));
}

fn resume_nacked(
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
        if state.paused.fetch_and(!pause::NACK, Ordering::AcqRel) == pause::NACK {
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

/// Shutdown protocol for one consumer: stop every worker, wait for in-flight handlers until
/// the deadline, commit everything finished synchronously, then close (leave the group).
fn shutdown(consumer: OwnedConsumer, core: &ConsumerCore, deadline: Instant) -> ConsumerReport {
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
        commit(&consumer, &core.name, &assigned, CommitMode::Sync, |s| {
            s.offsets.pending_unconfirmed()
        });
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
    // Dropping the consumer closes it: final revoke (a no-op now), leave group.
    drop(consumer);
    report
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
