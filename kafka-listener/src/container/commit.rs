//! Commits: what may be committed, when (the ack mode's schedule), and how (asynchronously,
//! one at a time through the commit queue; synchronously on revoke and shutdown).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::{Assigned, ConsumerCore, CoreContext};
use super::ffi::{CommitOutcome, CommitQueue};
use super::state::PartitionState;
use crate::config::AckMode;

impl ConsumerCore {
    /// Applies the outcomes of asynchronous commits that came back (waiting at most `wait` for
    /// the one in flight, if any).
    pub(super) fn settle_commits(&self, wait: Duration) {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = commits.as_ref() {
            self.settle_with(queue, wait);
        }
    }

    pub(super) fn settle_with(&self, queue: &CommitQueue, wait: Duration) {
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

    pub(super) fn commit_in_flight(&self) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub(super) fn apply_commit_outcome(&self, outcome: &CommitOutcome) {
        let ok =
            outcome.error.is_none() && outcome.partitions.iter().all(|(_, _, _, e)| e.is_none());
        let sent_at = if self.counters.meters.timed {
            self.commit_sent_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        } else {
            None
        };
        self.counters
            .meters
            .commit(sent_at.map(|s| s.elapsed()), ok);
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
    pub(super) fn commit_async(
        &self,
        consumer: &BaseConsumer<CoreContext>,
        assigned: &[Assigned],
        offset_of: impl Fn(&PartitionState) -> Option<i64>,
    ) -> bool {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = commits.as_ref() else {
            drop(commits);
            return commit(
                consumer,
                &self.name,
                &self.counters.meters,
                assigned,
                CommitMode::Async,
                offset_of,
            ) > 0;
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
                if self.counters.meters.timed {
                    *self
                        .commit_sent_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                }
                true
            }
            Err(e) => {
                self.counters.meters.commit(None, false);
                tracing::warn!(consumer = %self.name, error = ?e, offsets = %describe(&tpl), "commit failed; will retry");
                false
            }
        }
    }

    pub(super) fn commit_failed(&self, offsets: &TopicPartitionList) {
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
pub(super) fn commit_list(
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
pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    name: &str,
    meters: &crate::telemetry::ListenerMeters,
    partitions: &[Assigned],
    mode: CommitMode,
    offset_of: impl Fn(&PartitionState) -> Option<i64>,
) -> usize {
    let (tpl, picked) = commit_list(partitions, offset_of);
    if picked.is_empty() {
        return 0;
    }
    let started = meters.timed.then(Instant::now);
    let result = consumer.commit(&tpl, mode);
    // An asynchronous commit's answer comes later (and is not reported here): only its
    // failure to be sent counts.
    if matches!(mode, CommitMode::Sync) || result.is_err() {
        meters.commit(started.map(|s| s.elapsed()), result.is_ok());
    }
    match result {
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

pub(super) fn describe(tpl: &TopicPartitionList) -> String {
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

/// When the ack mode lets the poll loop commit: `count` after `ack_count` records finished
/// since the last commit, `time` after `ack_time`, `count_time` after either; the other modes
/// on every turn (each turn sends at most one asynchronous commit, so they coalesce anyway).
#[derive(Debug)]
pub(super) struct CommitSchedule {
    mode: AckMode,
    ack_count: u64,
    ack_time: Duration,
    last_commit: Instant,
    finished_at_last_commit: u64,
}

impl CommitSchedule {
    pub(super) fn new(mode: AckMode, ack_count: u64, ack_time: Duration, now: Instant) -> Self {
        CommitSchedule {
            mode,
            ack_count: ack_count.max(1),
            ack_time,
            last_commit: now,
            finished_at_last_commit: 0,
        }
    }

    /// Whether this turn may commit, given the records the consumer's partitions finished so
    /// far (a total that drops when partitions move away).
    pub(super) fn due(&mut self, finished: u64, now: Instant) -> bool {
        if finished < self.finished_at_last_commit {
            self.finished_at_last_commit = finished; // partitions moved away
        }
        let by_count = finished - self.finished_at_last_commit >= self.ack_count;
        let by_time = now.saturating_duration_since(self.last_commit) >= self.ack_time;
        match self.mode {
            AckMode::Count => by_count,
            AckMode::Time => by_time,
            AckMode::CountTime => by_count || by_time,
            _ => true,
        }
    }

    /// A commit went out: the `time`/`count` modes count from here. (A turn that sent
    /// nothing, because a commit was in flight, does not use up the schedule.)
    pub(super) fn sent(&mut self, finished: u64, now: Instant) {
        self.last_commit = now;
        self.finished_at_last_commit = finished;
    }
}

/// What the poll loop may commit for a partition this turn.
pub(super) fn committable(mode: AckMode, state: &PartitionState) -> Option<i64> {
    match mode {
        // Acknowledgements made after the batch ended (from another task, say) count once
        // the partition has nothing in progress.
        AckMode::Manual if state.queued.load(Ordering::Acquire) == 0 => {
            state.offsets.pending_finished()
        }
        _ => state.offsets.pending_ack(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn schedule(mode: AckMode, count: u64) -> (CommitSchedule, Instant) {
        let t0 = Instant::now();
        (CommitSchedule::new(mode, count, 5 * SECOND, t0), t0)
    }

    #[test]
    fn batch_record_and_manual_modes_commit_every_turn() {
        for mode in [
            AckMode::Batch,
            AckMode::Record,
            AckMode::Manual,
            AckMode::ManualImmediate,
        ] {
            let (mut s, t0) = schedule(mode, 100);
            assert!(s.due(0, t0), "{mode:?}");
            s.sent(0, t0);
            assert!(s.due(1, t0), "{mode:?}");
        }
    }

    #[test]
    fn count_mode_waits_for_ack_count_records_since_the_last_commit() {
        let (mut s, t0) = schedule(AckMode::Count, 10);
        assert!(!s.due(9, t0));
        assert!(
            !s.due(9, t0 + 60 * SECOND),
            "time does not count in count mode"
        );
        assert!(s.due(10, t0));
        s.sent(10, t0);
        assert!(!s.due(19, t0));
        assert!(s.due(20, t0));
    }

    #[test]
    fn a_turn_that_sent_nothing_does_not_use_up_the_schedule() {
        let (mut s, t0) = schedule(AckMode::Count, 10);
        assert!(s.due(12, t0));
        // A commit was in flight, so nothing went out: the next turn is still due.
        assert!(s.due(12, t0));
        s.sent(12, t0);
        assert!(!s.due(12, t0));
    }

    #[test]
    fn time_mode_commits_once_ack_time_passed_since_the_last_commit() {
        let (mut s, t0) = schedule(AckMode::Time, 1);
        assert!(
            !s.due(1_000, t0 + 4 * SECOND),
            "records do not count in time mode"
        );
        assert!(s.due(1_000, t0 + 5 * SECOND));
        s.sent(1_000, t0 + 5 * SECOND);
        assert!(!s.due(2_000, t0 + 9 * SECOND));
        assert!(s.due(2_000, t0 + 10 * SECOND));
    }

    #[test]
    fn count_time_mode_commits_on_whichever_comes_first() {
        let (mut s, t0) = schedule(AckMode::CountTime, 10);
        assert!(!s.due(5, t0 + SECOND));
        assert!(s.due(10, t0 + SECOND), "by count");
        s.sent(10, t0 + SECOND);
        assert!(!s.due(11, t0 + 5 * SECOND));
        assert!(s.due(11, t0 + 6 * SECOND), "by time");
    }

    #[test]
    fn partitions_moving_away_lower_the_baseline_instead_of_underflowing() {
        let (mut s, t0) = schedule(AckMode::Count, 10);
        s.sent(100, t0);
        // A revoke took partitions with 80 finished records away: the total drops to 20.
        assert!(!s.due(20, t0));
        assert!(!s.due(29, t0));
        assert!(s.due(30, t0));
    }

    #[test]
    fn an_ack_count_of_zero_behaves_as_one() {
        let (mut s, t0) = schedule(AckMode::Count, 0);
        assert!(!s.due(0, t0));
        assert!(s.due(1, t0));
    }
}
