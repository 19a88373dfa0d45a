//! Offset tracking: what may be committed for one partition.
//!
//! Records of a partition are handled one at a time in offset order, so "finished and
//! contiguous" is the offset after the last finished record. Two positions are kept:
//!
//! - `finished`: the next offset after everything finished. Revoke and shutdown commit this.
//! - `ackable`: what the ack mode allows committing now (equal to `finished` in `record` mode,
//!   moved at the end of each batch in `batch` mode). The poll loop commits this.
//!
//! A third and fourth position say what was sent to the broker (`committed`, so the poll loop
//! does not send the same offset twice) and what the broker confirmed (`confirmed`: a
//! synchronous commit that returned, or an asynchronous one whose callback reported success).
//! Revoke and shutdown commit synchronously whatever is not confirmed: an asynchronous commit
//! still in flight may yet fail.
//!
//! Both only move forward (`fetch_max`), so a late or repeated report can never move a commit
//! backwards, and neither can run ahead of finished work because only the partition worker,
//! after a record finished, advances them.

use std::sync::atomic::{AtomicI64, Ordering};

/// No position yet (nothing finished since assignment).
pub(crate) const UNSET: i64 = -1;

#[derive(Debug)]
pub(crate) struct PartitionOffsets {
    finished: AtomicI64,
    ackable: AtomicI64,
    /// What the consumer thread last asked the broker to commit. Only the consumer thread
    /// touches it, except the commit callback, which resets it on failure (same thread).
    committed: AtomicI64,
    /// What the broker confirmed as committed.
    confirmed: AtomicI64,
}

impl PartitionOffsets {
    pub(crate) fn new() -> Self {
        PartitionOffsets {
            finished: AtomicI64::new(UNSET),
            ackable: AtomicI64::new(UNSET),
            committed: AtomicI64::new(UNSET),
            confirmed: AtomicI64::new(UNSET),
        }
    }

    /// The next offset after everything finished (`UNSET`: nothing since assignment).
    pub(crate) fn finished_offset(&self) -> i64 {
        self.finished.load(Ordering::Acquire)
    }

    /// What the broker confirmed as committed (`UNSET`: nothing since assignment).
    pub(crate) fn confirmed_offset(&self) -> i64 {
        self.confirmed.load(Ordering::Acquire)
    }

    /// The record at `offset` and every record before it that this worker took are finished.
    pub(crate) fn finish(&self, offset: i64) {
        self.finished.fetch_max(offset + 1, Ordering::AcqRel);
    }

    /// The ack mode allows committing everything finished so far.
    pub(crate) fn ack_finished(&self) {
        let finished = self.finished.load(Ordering::Acquire);
        self.ackable.fetch_max(finished, Ordering::AcqRel);
    }

    /// The offset to commit under the ack mode, if it is ahead of the last commit.
    pub(crate) fn pending_ack(&self) -> Option<i64> {
        Self::ahead(
            self.ackable.load(Ordering::Acquire),
            self.committed.load(Ordering::Acquire),
        )
    }

    /// The offset to commit on revoke or shutdown (everything finished), if ahead of what the
    /// broker confirmed: a commit that was only sent may still fail.
    pub(crate) fn pending_unconfirmed(&self) -> Option<i64> {
        Self::ahead(
            self.finished.load(Ordering::Acquire),
            self.confirmed.load(Ordering::Acquire),
        )
    }

    /// Everything finished, if ahead of the last commit sent (manual mode's poll-loop commit).
    pub(crate) fn pending_finished(&self) -> Option<i64> {
        Self::ahead(
            self.finished.load(Ordering::Acquire),
            self.committed.load(Ordering::Acquire),
        )
    }

    fn ahead(candidate: i64, committed: i64) -> Option<i64> {
        (candidate != UNSET && candidate > committed).then_some(candidate)
    }

    /// A commit of `offset` was sent.
    pub(crate) fn committed(&self, offset: i64) {
        self.committed.fetch_max(offset, Ordering::AcqRel);
    }

    /// The broker confirmed a commit of `offset`.
    pub(crate) fn confirmed(&self, offset: i64) {
        self.committed.fetch_max(offset, Ordering::AcqRel);
        self.confirmed.fetch_max(offset, Ordering::AcqRel);
    }

    /// Starts over after a seek: positions from before it mean nothing now. The next commit
    /// carries whatever finishes after the seek, even if that is below the last commit (a seek
    /// backwards is a deliberate rewind).
    pub(crate) fn reset(&self) {
        self.finished.store(UNSET, Ordering::Release);
        self.ackable.store(UNSET, Ordering::Release);
        self.committed.store(UNSET, Ordering::Release);
        self.confirmed.store(UNSET, Ordering::Release);
    }

    /// A commit failed: forget what was committed so the next cycle commits again.
    pub(crate) fn commit_failed(&self) {
        self.committed.store(UNSET, Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn last_committed(&self) -> Option<i64> {
        let c = self.committed.load(Ordering::Acquire);
        (c != UNSET).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_committable_before_a_record_finishes() {
        let o = PartitionOffsets::new();
        assert_eq!(o.pending_ack(), None);
        assert_eq!(o.pending_finished(), None);
    }

    #[test]
    fn batch_mode_commits_only_after_ack_but_shutdown_commits_all_finished() {
        let o = PartitionOffsets::new();
        o.finish(10);
        o.finish(11);
        assert_eq!(o.pending_ack(), None, "batch not complete yet");
        assert_eq!(o.pending_finished(), Some(12));
        o.ack_finished();
        assert_eq!(o.pending_ack(), Some(12));
    }

    #[test]
    fn commits_only_move_forward() {
        let o = PartitionOffsets::new();
        o.finish(20);
        o.ack_finished();
        o.committed(21);
        o.finish(5); // a stale report must not move anything back
        o.ack_finished();
        assert_eq!(o.pending_ack(), None);
        assert_eq!(o.pending_finished(), None);
        assert_eq!(o.last_committed(), Some(21));
    }

    #[test]
    fn an_asynchronous_commit_in_flight_does_not_count_for_revoke() {
        let o = PartitionOffsets::new();
        o.finish(9);
        o.ack_finished();
        o.committed(10); // sent asynchronously, no answer yet
        assert_eq!(
            o.pending_ack(),
            None,
            "the poll loop does not send it twice"
        );
        assert_eq!(
            o.pending_unconfirmed(),
            Some(10),
            "revoke and shutdown commit it synchronously"
        );
        o.confirmed(10);
        assert_eq!(o.pending_unconfirmed(), None);
    }

    #[test]
    fn failed_commit_is_retried() {
        let o = PartitionOffsets::new();
        o.finish(3);
        o.ack_finished();
        o.committed(4);
        assert_eq!(o.pending_ack(), None);
        o.commit_failed();
        assert_eq!(o.pending_ack(), Some(4));
    }
}
