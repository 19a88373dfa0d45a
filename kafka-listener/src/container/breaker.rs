//! The circuit breaker on given-up records: when too many of a listener's records are given
//! up (dead-lettered or skipped), the listener stops taking records instead of draining its
//! topic into the dead-letter topic — a bad deploy, a broken dependency that every record
//! trips over, or a producer writing garbage.
//!
//! The breaker is the container's (all its consumers and partitions count together); with
//! retry topics, the `<id>-retry` container has one of its own, reset through its own
//! container. It trips
//! after a record is given up that makes `consecutive` in a row, or more than `ratio` of the
//! last `window` records. While it is open no worker takes new records and a record about to
//! be given up waits (uncommitted) before its recoverer runs; records in flight finish. It
//! closes by command ([`ListenerContainer::reset_circuit_breaker`](super::ListenerContainer))
//! or after `reset_after`. Nothing is lost while it is open: what was not taken stays in
//! librdkafka's queue (which stops fetching once full) or in the topic.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// When a listener's circuit breaker trips (`kafka.listener[.<id>].circuit-breaker.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerPolicy {
    /// Trip after this many records in a row were given up.
    pub consecutive: Option<u32>,
    /// Trip when more than this share of the last `window` records was given up.
    pub ratio: Option<f64>,
    /// Records the ratio is taken over; the ratio is judged once that many were seen.
    pub window: u32,
    /// Close on its own after this long (`None`: by command only).
    pub reset_after: Option<Duration>,
}

impl CircuitBreakerPolicy {
    /// Trips after `n` records in a row were given up.
    pub fn consecutive(n: u32) -> Self {
        CircuitBreakerPolicy {
            consecutive: Some(n.max(1)),
            ratio: None,
            window: 100,
            reset_after: None,
        }
    }

    /// Trips when more than `ratio` of the last `window` records were given up.
    pub fn ratio(ratio: f64, window: u32) -> Self {
        CircuitBreakerPolicy {
            consecutive: None,
            ratio: Some(ratio),
            window: window.max(1),
            reset_after: None,
        }
    }

    /// Closes on its own `after` it tripped.
    pub fn reset_after(mut self, after: Duration) -> Self {
        self.reset_after = Some(after);
        self
    }
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    policy: CircuitBreakerPolicy,
    open: AtomicBool,
    closed: Notify,
    /// Records given up in a row (any success resets it).
    run: AtomicU32,
    /// Records finished or given up, numbered (for the ratio's window).
    seen: AtomicU64,
    /// The numbers of the given-up records among the last `window` seen.
    recent: Mutex<VecDeque<u64>>,
    opened_at: Mutex<Option<Instant>>,
    /// Times it tripped.
    trips: AtomicU64,
}

impl CircuitBreaker {
    pub(crate) fn new(policy: CircuitBreakerPolicy) -> Self {
        CircuitBreaker {
            policy,
            open: AtomicBool::new(false),
            closed: Notify::new(),
            run: AtomicU32::new(0),
            seen: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
            opened_at: Mutex::new(None),
            trips: AtomicU64::new(0),
        }
    }

    /// `n` records were handled successfully.
    pub(crate) fn on_done(&self, n: u64) {
        if self.run.load(Ordering::Relaxed) != 0 {
            self.run.store(0, Ordering::Relaxed);
        }
        if self.policy.ratio.is_some() {
            self.seen.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A record was given up; trips the breaker if that is one too many.
    pub(crate) fn on_given_up(&self, listener: &str) {
        let run = self.run.fetch_add(1, Ordering::Relaxed) + 1;
        let seen = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reason = None;
        if let Some(limit) = self.policy.consecutive {
            if run >= limit {
                reason = Some(format!("{run} records in a row were given up"));
            }
        }
        if let Some(ratio) = self.policy.ratio {
            let window = u64::from(self.policy.window.max(1));
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.push_back(seen);
            while recent.front().is_some_and(|n| *n + window <= seen) {
                recent.pop_front();
            }
            let share = recent.len() as f64 / window as f64;
            if seen >= window && share > ratio {
                reason = Some(format!(
                    "{} of the last {window} records were given up (more than {ratio})",
                    recent.len()
                ));
            }
        }
        if let Some(reason) = reason {
            if !self.open.swap(true, Ordering::AcqRel) {
                self.trips.fetch_add(1, Ordering::Relaxed);
                *self.opened_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                let resume = match self.policy.reset_after {
                    Some(after) => format!("it closes on its own after {after:?}"),
                    None => "close it with ListenerContainer::reset_circuit_breaker".to_owned(),
                };
                tracing::error!(
                    listener,
                    "CIRCUIT BREAKER OPEN: {reason}; the listener takes no more records (nothing is committed past what finished, nothing is lost); {resume}"
                );
            }
        }
    }

    /// Whether it is open now (closing it first if `reset_after` has passed).
    pub(crate) fn is_open(&self) -> bool {
        if !self.open.load(Ordering::Acquire) {
            return false;
        }
        let due = self.policy.reset_after.is_some_and(|after| {
            self.opened_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|at| at.elapsed() >= after)
        });
        if due {
            self.reset("reset-after passed");
            return false;
        }
        true
    }

    /// Closes it; the counts start again.
    pub(crate) fn reset(&self, why: &str) {
        self.run.store(0, Ordering::Relaxed);
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.opened_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if self.open.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                reason = why,
                "circuit breaker closed: the listener takes records again"
            );
        }
        self.closed.notify_waiters();
    }

    /// Waits until it is closed (at most until `reset_after` is due: the caller looks again).
    pub(crate) async fn closed(&self) {
        let notified = self.closed.notified();
        if !self.is_open() {
            return;
        }
        let wait = match (
            self.policy.reset_after,
            *self.opened_at.lock().unwrap_or_else(|p| p.into_inner()),
        ) {
            (Some(after), Some(at)) => after.saturating_sub(at.elapsed()),
            _ => Duration::from_secs(3600),
        };
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }

    /// Times it tripped since the container was created.
    pub(crate) fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_given_up_records_trips_it_and_a_success_breaks_the_run() {
        let b = CircuitBreaker::new(CircuitBreakerPolicy::consecutive(3));
        b.on_given_up("l");
        b.on_given_up("l");
        b.on_done(1);
        b.on_given_up("l");
        b.on_given_up("l");
        assert!(!b.is_open());
        b.on_given_up("l");
        assert!(b.is_open());
        assert_eq!(b.trips(), 1);
        b.reset("test");
        assert!(!b.is_open());
        b.on_given_up("l");
        assert!(!b.is_open(), "the count starts again after a reset");
    }

    #[test]
    fn a_share_above_the_ratio_within_the_window_trips_it() {
        let b = CircuitBreaker::new(CircuitBreakerPolicy::ratio(0.2, 10));
        // 2 of 10: not more than 0.2.
        b.on_done(4);
        b.on_given_up("l");
        b.on_done(4);
        b.on_given_up("l");
        assert!(!b.is_open());
        // The first given-up record leaves the window, a new one enters: still 2 of 10.
        b.on_done(4);
        b.on_given_up("l");
        assert!(!b.is_open());
        // 3 of the last 10.
        b.on_done(1);
        b.on_given_up("l");
        assert!(b.is_open());
    }

    #[test]
    fn it_closes_on_its_own_after_reset_after() {
        let b = CircuitBreaker::new(
            CircuitBreakerPolicy::consecutive(1).reset_after(Duration::from_millis(30)),
        );
        b.on_given_up("l");
        assert!(b.is_open());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!b.is_open());
    }
}
