//! Parallelism by key inside a partition (`concurrency_per_partition = N`, record listeners).
//!
//! The partition's worker takes records as usual and sorts them into one lane per key: a
//! lane runs its records one after another in offset order, different lanes run at the same
//! time, at most `N` records of the partition at once. All of it runs on the worker's task
//! (the handlers' futures are polled together), so it helps handlers that await (I/O, other
//! services); a handler that burns CPU gets its parallelism from the partitions.
//!
//! Commits stay gap-aware: the worker keeps the offsets it took and not yet finished in
//! order ([`Window`]), and only the lowest unfinished one bounds what may be committed.
//! Records finished above a gap are not remembered across a rebalance or restart: they are
//! delivered again (at-least-once; a duplicate, never a loss).
//!
//! Records without a key share one lane: they keep their offset order among themselves.
//!
//! Seeks and nacks: the worker stops starting records, drops the ones waiting in lanes (they
//! stay unfinished, so nothing passes them), lets the ones in flight finish, and only then
//! sends a nack's rewind, which goes back to the lowest unfinished offset when that is below
//! the nacked record. Records of other keys that finished above it come again.
//!
//! Stops (revoke, shutdown, the container's stop): records above the highest one started are
//! dropped, the ones below it still run (the gaps are filled), so the final commit covers
//! everything finished and a stop within its deadline delivers nothing twice. Once the
//! partition's queue is released (the deadline passed, or the assignment was lost) nothing
//! more starts: the partition may be another consumer's. A record whose retries a stop cuts
//! short stays unfinished, its key's later records are dropped with it, and records of other
//! keys that finished above it are delivered again to the partition's next owner.
//!
//! The window holds at most `max-poll-records` offsets, finished ones above the lowest
//! unfinished included: a record that takes long holds that many records behind it, and then
//! the partition waits for it (head-of-line blocking, bounded by the window).

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt as _};

use super::state::{pause, ConsumerRequest, NackRequest};
use super::worker::{Chunk, Outcome, Take, Worker, IDLE_CHECK};
use crate::config::AckMode;
use crate::listener::{ConsumerRecord, RecordHandlerFn};

/// The offsets taken since the lowest unfinished one, in offset order (finished ones above
/// it included), plus where each chunk ended.
#[derive(Debug, Default)]
pub(super) struct Window {
    /// `(offset, finished)`, ascending; the front is always unfinished.
    offsets: VecDeque<(i64, bool)>,
    /// Last offset, record count and bytes of each chunk still (partly) in the window.
    chunks: VecDeque<(i64, usize, usize)>,
    /// Bytes of the chunks in `chunks`.
    bytes: usize,
}

/// What finishing one offset released.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Advance {
    /// The window's front moved: every offset below this one is finished.
    pub(super) finished_below: Option<i64>,
    /// Chunks now wholly finished: record count and bytes.
    pub(super) released: (usize, usize),
    /// How many chunks ended.
    pub(super) chunks_ended: usize,
}

impl Window {
    pub(super) fn push_chunk(&mut self, offsets: impl IntoIterator<Item = i64>, bytes: usize) {
        let before = self.offsets.len();
        self.offsets.extend(offsets.into_iter().map(|o| (o, false)));
        let len = self.offsets.len() - before;
        if let Some(&(last, _)) = self.offsets.back().filter(|_| len > 0) {
            self.chunks.push_back((last, len, bytes));
            self.bytes += bytes;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.offsets.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The lowest offset taken and not finished.
    pub(super) fn first_unfinished(&self) -> Option<i64> {
        self.offsets.front().map(|(o, _)| *o)
    }

    /// Marks `offset` finished; an offset not in the window is ignored.
    pub(super) fn finish(&mut self, offset: i64) -> Advance {
        let mut advance = Advance::default();
        let Ok(i) = self.offsets.binary_search_by_key(&offset, |(o, _)| *o) else {
            return advance;
        };
        self.offsets[i].1 = true;
        if i != 0 {
            return advance;
        }
        let mut last = offset;
        while let Some(&(o, true)) = self.offsets.front() {
            last = o;
            self.offsets.pop_front();
        }
        advance.finished_below = Some(last + 1);
        while let Some(&(end, len, bytes)) = self.chunks.front() {
            if end > last {
                break;
            }
            self.chunks.pop_front();
            self.bytes -= bytes;
            advance.released.0 += len;
            advance.released.1 += bytes;
            advance.chunks_ended += 1;
        }
        advance
    }

    /// Forgets everything (after a seek, or when the worker exits): the record count and
    /// bytes of the chunks it held.
    pub(super) fn clear(&mut self) -> (usize, usize) {
        let released = self
            .chunks
            .drain(..)
            .fold((0, 0), |(n, b), (_, len, bytes)| (n + len, b + bytes));
        self.offsets.clear();
        self.bytes = 0;
        released
    }
}

/// A key's lane: whether one of its records is running, and the ones waiting behind it.
#[derive(Debug, Default)]
struct Lane {
    running: bool,
    waiting: VecDeque<ConsumerRecord>,
}

/// Lanes by key hash (two keys with one hash share a lane: order is kept, a little
/// parallelism lost).
#[derive(Debug, Default)]
pub(super) struct Lanes {
    lanes: HashMap<u64, Lane>,
    /// Lanes with nothing running and a record waiting, in the order they became ready.
    ready: VecDeque<u64>,
    hasher: RandomState,
}

impl Lanes {
    pub(super) fn key_of(&self, record: &ConsumerRecord) -> u64 {
        self.hasher.hash_one(record.key.as_deref())
    }

    pub(super) fn push(&mut self, record: ConsumerRecord) {
        let key = self.key_of(&record);
        let lane = self.lanes.entry(key).or_default();
        lane.waiting.push_back(record);
        if !lane.running && lane.waiting.len() == 1 {
            self.ready.push_back(key);
        }
    }

    /// The next record to start, if a lane is ready; its lane is then running.
    pub(super) fn start_next(&mut self) -> Option<(u64, ConsumerRecord)> {
        let key = self.ready.pop_front()?;
        let lane = self.lanes.get_mut(&key)?;
        let record = lane.waiting.pop_front()?;
        lane.running = true;
        Some((key, record))
    }

    /// The running record of `key` ended unfinished (it comes again): the lane's waiting
    /// records are dropped with it, so none of them runs before it.
    pub(super) fn abandon(&mut self, key: u64) {
        self.lanes.remove(&key);
        self.ready.retain(|k| *k != key);
    }

    /// The running record of `key` ended: its lane's next record, if any, becomes ready.
    pub(super) fn ended(&mut self, key: u64) {
        if let Entry::Occupied(mut lane) = self.lanes.entry(key) {
            lane.get_mut().running = false;
            if lane.get().waiting.is_empty() {
                lane.remove();
            } else {
                self.ready.push_back(key);
            }
        }
    }

    /// Drops every record not yet started (they stay unfinished in the window).
    pub(super) fn drop_waiting(&mut self) {
        self.drop_waiting_above(i64::MIN);
    }

    /// Drops the records not yet started whose offset is above `limit`.
    pub(super) fn drop_waiting_above(&mut self, limit: i64) {
        self.lanes.retain(|_, lane| {
            // A lane's records are in offset order: the ones to drop are at its end.
            let keep = lane.waiting.partition_point(|r| r.offset <= limit);
            lane.waiting.truncate(keep);
            lane.running || !lane.waiting.is_empty()
        });
        let lanes = &self.lanes;
        self.ready
            .retain(|key| lanes.get(key).is_some_and(|l| !l.waiting.is_empty()));
    }

    pub(super) fn has_waiting(&self) -> bool {
        !self.ready.is_empty() || self.lanes.values().any(|l| !l.waiting.is_empty())
    }
}

impl Worker {
    /// The worker loop with key lanes (`lanes` > 1, record listeners).
    pub(super) async fn run_keyed(&self, f: RecordHandlerFn, lanes: usize) {
        let state = &self.state;
        let mut window = Window::default();
        let mut keys = Lanes::default();
        let mut inflight = FuturesUnordered::new();
        // Epoch and generation of what the window holds.
        let mut held = (state.epoch(), 0u64);
        // A chunk taken at a newer epoch than the window's, kept until the window is cleared.
        let mut next: Option<Chunk> = None;
        let mut nack: Option<NackRequest> = None;
        let mut gone = false;
        // The highest offset started since the window was last cleared.
        let mut max_started = i64::MIN;
        loop {
            // Released (revoked, lost, shut down): the partition may be someone else's now,
            // so nothing more starts, not even to fill gaps.
            gone |= state.released.load(Ordering::Acquire);
            let stopping = gone || state.stop.is_cancelled();
            let epoch_now = state.epoch();
            let stale = !window.is_empty() && held.0 != epoch_now;
            let hold = stale
                || gone
                || nack.is_some()
                || next.is_some()
                || state.seek_pending.load(Ordering::Acquire);
            if hold {
                // Nothing more starts: what is in flight finishes first.
                keys.drop_waiting();
            } else if stopping {
                // A stop fills the gaps below what already ran (so the commit covers every
                // record finished, and a graceful stop redelivers nothing twice) and starts
                // nothing above.
                keys.drop_waiting_above(max_started);
            }
            if inflight.is_empty() {
                if stopping && (hold || !keys.has_waiting()) {
                    break;
                }
                if let Some(request) = nack.take() {
                    if held.0 == epoch_now {
                        // Back to the nacked record, or lower if a record below it is
                        // unfinished (it was waiting in its lane and dropped).
                        let offset = window
                            .first_unfinished()
                            .map_or(request.offset, |o| o.min(request.offset));
                        state.seek_pending.store(true, Ordering::Release);
                        let _ = self.requests.send(ConsumerRequest::Nack {
                            state: Arc::clone(state),
                            request: NackRequest { offset, ..request },
                        });
                    }
                    continue;
                }
                if stale || (window.is_empty() && next.is_some()) {
                    let (len, bytes) = window.clear();
                    self.release(len, bytes);
                    max_started = i64::MIN;
                    held = (epoch_now, held.1);
                    if let Some(chunk) = next.take() {
                        if chunk.epoch == epoch_now {
                            self.admit(chunk, &mut window, &mut keys, &mut held);
                        } else {
                            self.release(chunk.records.len(), chunk.bytes);
                        }
                    }
                    continue; // a fresh look: the wake-up that led here is used up
                }
            }
            // A seek may have landed since the checks above: the window's records must not
            // start then.
            let hold = hold
                || state.seek_pending.load(Ordering::Acquire)
                || (!window.is_empty() && state.epoch() != held.0);
            if !hold {
                while inflight.len() < lanes {
                    let Some((key, record)) = keys.start_next() else {
                        break;
                    };
                    max_started = max_started.max(record.offset);
                    inflight.push(self.run_one(f, key, record));
                }
            }
            let user_paused =
                state.paused.load(Ordering::Acquire) & pause::USER != 0 || self.breaker_open();
            let room = window.len() < self.max_records && window.bytes() < self.max_bytes;
            if !hold && !stopping && !user_paused && room {
                match self.take(self.max_records - window.len()) {
                    Take::Gone => {
                        gone = true;
                        continue;
                    }
                    Take::Chunk(chunk) => {
                        let fits = if window.is_empty() {
                            chunk.epoch == epoch_now
                        } else {
                            chunk.epoch == held.0
                        };
                        if fits {
                            self.admit(chunk, &mut window, &mut keys, &mut held);
                        } else {
                            // Taken after a seek the window's records predate: they go first.
                            next = Some(chunk);
                        }
                        continue;
                    }
                    Take::Nothing => {}
                }
            }
            tokio::select! {
                biased;
                () = state.stop.cancelled(), if !stopping => {}
                Some((key, offset, outcome)) = inflight.next(), if !inflight.is_empty() => {
                    if self.lane_done(offset, outcome, held, &mut window, &mut nack) {
                        keys.ended(key);
                    } else {
                        // Comes again later: the key's later records must not run before it.
                        keys.abandon(key);
                    }
                }
                () = state.wake.notified() => {}
                () = self.breaker_closed() => {}
                () = tokio::time::sleep(IDLE_CHECK) => {}
            }
        }
        let (len, bytes) = window.clear();
        self.release(len, bytes);
        if let Some(chunk) = next.take() {
            self.release(chunk.records.len(), chunk.bytes);
        }
    }

    /// Puts a taken chunk's records into the window and their lanes.
    fn admit(&self, chunk: Chunk, window: &mut Window, keys: &mut Lanes, held: &mut (u64, u64)) {
        *held = (chunk.epoch, chunk.generation);
        if window.is_empty() {
            if let Some(first) = chunk.records.first() {
                self.state.resume_from(chunk.epoch, first.offset);
            }
        }
        window.push_chunk(chunk.records.iter().map(|r| r.offset), chunk.bytes);
        let manual = self.manual();
        for record in chunk.records {
            if manual {
                // Pending from the take on: a commit must not pass a record still waiting in
                // its lane while later ones are acknowledged.
                self.state.manual_dispatch(record.offset);
            }
            keys.push(record);
        }
    }

    async fn run_one(
        &self,
        f: RecordHandlerFn,
        key: u64,
        record: ConsumerRecord,
    ) -> (u64, i64, Outcome) {
        let outcome = self.handle_record(f, &record).await;
        (key, record.offset, outcome)
    }

    /// One record of a lane ended. Notes a nack asked for meanwhile (by this record or one
    /// of another lane); then, unless the record comes again (stopped, nacked, or from before
    /// a seek: returns false), marks it finished and publishes how far the partition is.
    fn lane_done(
        &self,
        offset: i64,
        outcome: Outcome,
        (epoch, generation): (u64, u64),
        window: &mut Window,
        nack: &mut Option<NackRequest>,
    ) -> bool {
        let state = &self.state;
        if let Some(request) = state.take_nack(epoch) {
            if nack.is_none_or(|n| request.offset < n.offset) {
                *nack = Some(request);
            }
        }
        if matches!(outcome, Outcome::Stopped) || nack.is_some_and(|n| offset >= n.offset) {
            return false; // comes again: after the rewind, or to the partition's next owner
        }
        if epoch != state.epoch() {
            return false; // from before a seek
        }
        state.finished_count.fetch_add(1, Ordering::AcqRel);
        self.counters.finished.fetch_add(1, Ordering::Relaxed);
        if self.manual() {
            if matches!(outcome, Outcome::Recovered) {
                state.manual_ack(generation, offset);
            } else if state.manual_is_pending(offset) {
                state.warn_unacknowledged_once(&self.cx.listener_id, offset);
            }
        }
        let advance = window.finish(offset);
        let Some(below) = advance.finished_below else {
            return true;
        };
        match self.ack_mode {
            AckMode::Manual | AckMode::ManualImmediate => {
                if self.ack_mode == AckMode::ManualImmediate || advance.chunks_ended > 0 {
                    state.ack_finished_at(epoch);
                }
                state.resume_from(epoch, window.first_unfinished().unwrap_or(below));
            }
            AckMode::Record => state.finish(epoch, below - 1, true),
            _ => {
                state.finish(epoch, below - 1, false);
                if advance.chunks_ended > 0 {
                    state.ack_finished_at(epoch);
                }
            }
        }
        self.release(advance.released.0, advance.released.1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_bounds_the_commit_by_its_lowest_unfinished_offset() {
        let mut w = Window::default();
        w.push_chunk([10, 11, 12], 30);
        w.push_chunk([13, 14], 20);
        assert_eq!(w.finish(12), Advance::default(), "11 and 10 still run");
        assert_eq!(w.finish(11), Advance::default());
        assert_eq!(
            w.finish(10),
            Advance {
                finished_below: Some(13),
                released: (3, 30),
                chunks_ended: 1
            }
        );
        assert_eq!(w.first_unfinished(), Some(13));
        assert_eq!(w.finish(14), Advance::default());
        assert_eq!(
            w.finish(99),
            Advance::default(),
            "not in the window: ignored"
        );
        let last = w.finish(13);
        assert_eq!(last.finished_below, Some(15));
        assert_eq!(last.released, (2, 20));
        assert!(w.is_empty());
        assert_eq!(w.bytes(), 0);
    }

    #[test]
    fn clearing_the_window_releases_what_it_held() {
        let mut w = Window::default();
        w.push_chunk([1, 2], 10);
        w.push_chunk([3], 5);
        w.finish(1);
        assert_eq!(w.clear(), (3, 15), "a chunk half done and one untouched");
        assert!(w.is_empty());
    }

    fn record(offset: i64, key: Option<&'static str>) -> ConsumerRecord {
        let r = ConsumerRecord::new("t", 0, offset);
        match key {
            Some(k) => r.with_key(k),
            None => r,
        }
    }

    #[test]
    fn a_key_runs_its_records_in_order_and_other_keys_alongside() {
        let mut lanes = Lanes::default();
        for (offset, key) in [(0, "a"), (1, "b"), (2, "a"), (3, "c"), (4, "b")] {
            lanes.push(record(offset, Some(key)));
        }
        let started: Vec<_> = std::iter::from_fn(|| lanes.start_next()).collect();
        let offsets: Vec<i64> = started.iter().map(|(_, r)| r.offset).collect();
        assert_eq!(offsets, [0, 1, 3], "one record per key at a time");
        let key_a = started[0].0;
        lanes.ended(key_a);
        let (_, next) = lanes.start_next().expect("a's next record");
        assert_eq!(next.offset, 2);
        assert!(lanes.start_next().is_none(), "b's next waits for offset 1");
        lanes.ended(started[1].0);
        assert_eq!(lanes.start_next().map(|(_, r)| r.offset), Some(4));
    }

    #[test]
    fn records_without_a_key_share_one_lane() {
        let mut lanes = Lanes::default();
        lanes.push(record(0, None));
        lanes.push(record(1, None));
        lanes.push(record(2, Some("")));
        let first = lanes.start_next().expect("first keyless record");
        assert_eq!(first.1.offset, 0);
        assert_eq!(
            lanes.start_next().map(|(_, r)| r.offset),
            Some(2),
            "an empty key is a key, not the absence of one"
        );
        assert!(lanes.start_next().is_none());
        lanes.ended(first.0);
        assert_eq!(lanes.start_next().map(|(_, r)| r.offset), Some(1));
    }

    #[test]
    fn a_stop_keeps_the_waiting_records_below_the_highest_started() {
        let mut lanes = Lanes::default();
        for (offset, key) in [(0, "a"), (1, "a"), (2, "b"), (3, "a"), (4, "c")] {
            lanes.push(record(offset, Some(key)));
        }
        let (a, _) = lanes.start_next().expect("offset 0");
        let (b, _) = lanes.start_next().expect("offset 2");
        lanes.drop_waiting_above(2);
        assert!(lanes.start_next().is_none(), "4 (c) dropped, 1 waits for a");
        lanes.ended(b);
        lanes.ended(a);
        assert_eq!(lanes.start_next().map(|(_, r)| r.offset), Some(1));
        assert!(lanes.start_next().is_none(), "3 was above the limit");
        assert!(!lanes.has_waiting());
    }

    #[test]
    fn an_abandoned_record_takes_its_keys_waiting_records_with_it() {
        let mut lanes = Lanes::default();
        for (offset, key) in [(0, "a"), (1, "b"), (2, "a"), (3, "b")] {
            lanes.push(record(offset, Some(key)));
        }
        let (a, _) = lanes.start_next().expect("offset 0");
        let (b, _) = lanes.start_next().expect("offset 1");
        lanes.abandon(a);
        lanes.ended(b);
        assert_eq!(lanes.start_next().map(|(_, r)| r.offset), Some(3));
        assert!(lanes.start_next().is_none(), "2 must not run before 0");
    }

    #[test]
    fn dropping_waiting_records_keeps_running_lanes_and_forgets_the_rest() {
        let mut lanes = Lanes::default();
        lanes.push(record(0, Some("a")));
        lanes.push(record(1, Some("a")));
        lanes.push(record(2, Some("b")));
        let (a, _) = lanes.start_next().expect("offset 0");
        lanes.drop_waiting();
        assert!(!lanes.has_waiting());
        assert!(lanes.start_next().is_none());
        lanes.ended(a);
        assert!(
            lanes.start_next().is_none(),
            "a's second record was dropped"
        );
        lanes.push(record(5, Some("a")));
        assert_eq!(lanes.start_next().map(|(_, r)| r.offset), Some(5));
    }
}
