//! Metrics, through the [`metrics`] facade: what each listener records, and the Prometheus
//! recorder the management endpoint installs.
//!
//! Every listener container registers its handles once, when it is created, so the hot path
//! pays an atomic add or a histogram sample per record and never builds a label set. Without a
//! recorder (no management endpoint and none installed by the application) the handles are
//! no-ops. An application that installs its own `metrics` recorder before starting gets the
//! same metrics there.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `spring_kafka_listener_seconds` | summary | `name`, `result`, `exception` | each handler call (Spring's Micrometer timer `spring.kafka.listener`, same tags: `result` is `success` or `failure`, `exception` is `none`, `handler_error` or `panic`) |
//! | `kafka_listener_records_handled_total` | counter | `listener` | records whose handler succeeded |
//! | `kafka_listener_handler_failures_total` | counter | `listener` | handler calls that failed (each retry counts) |
//! | `kafka_listener_records_retried_total` | counter | `listener` | retries in place |
//! | `kafka_listener_records_given_up_total` | counter | `listener`, `recoverer` | records handed to the recoverer once it succeeded: `dead_letter`, `retry_topic`, `log` or `custom` |
//! | `kafka_listener_recoverer_failures_total` | counter | `listener` | recoverer attempts that failed (a dead letter not acknowledged): the partition waits |
//! | `kafka_listener_commit_seconds` | summary | `listener`, `result` | offset commits, sent to answered |
//! | `kafka_listener_commit_failures_total` | counter | `listener` | commits that failed (they are sent again) |
//! | `kafka_listener_rebalances_total` | counter | `listener`, `kind` | `assigned`, `revoked` or `lost` callbacks |
//! | `kafka_listener_committed_lag` | gauge | `listener`, `group`, `topic`, `partition` | records not finished: the partition's end (high watermark, or last stable offset under `read_committed`) minus the group's committed offset |
//! | `kafka_listener_seconds_since_last_commit` | gauge | `listener`, `group`, `topic`, `partition` | since the committed offset last moved (or the partition was assigned) |
//! | `kafka_listener_seconds_since_last_record` | gauge | `listener`, `group`, `topic`, `partition` | since a record of the partition last finished (or it was assigned) |
//! | `kafka_listener_assigned_partitions` | gauge | `listener` | partitions its consumers own |
//! | `kafka_listener_paused_partitions` | gauge | `listener` | of those, paused (by the application, a nack, or a retry copy not due yet) |
//! | `kafka_listener_circuit_breaker_open` | gauge | `listener` | 1 while its circuit breaker is open |
//! | `kafka_listener_circuit_breaker_trips_total` | counter | `listener` | times it tripped |
//! | `kafka_listener_running` | gauge | `listener` | 1 while started |
//!
//! The per-partition gauges come from librdkafka's statistics, every
//! `kafka.management.lag-interval` (5 s), so their resolution is that interval; a partition
//! that moved to another consumer reports 0 here from the next tick on (its new owner reports
//! it), so summing over a group's pods counts each partition once. The end offset is the one
//! the consumer last fetched: a partition whose prefetch queue is full (its worker far behind)
//! or that is paused fetches less often, so its lag can lag behind by a fetch. Before the
//! group's first commit on a partition the lag counts from the log start under
//! `auto-offset-reset=earliest` and is not reported otherwise.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram, Label};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// A listener's metric handles, registered once per container.
#[derive(Debug, Clone)]
pub(crate) struct ListenerMeters {
    pub(crate) call_success: Histogram,
    pub(crate) call_error: Histogram,
    pub(crate) call_panic: Histogram,
    pub(crate) handled: Counter,
    pub(crate) failures: Counter,
    pub(crate) retried: Counter,
    /// Per recoverer kind, made on first use (a container has one recoverer).
    given_up: GivenUp,
    pub(crate) recoverer_failures: Counter,
    pub(crate) commit_ok: Histogram,
    pub(crate) commit_failed: Histogram,
    pub(crate) commit_failures: Counter,
    pub(crate) assigned: Counter,
    pub(crate) revoked: Counter,
    pub(crate) lost: Counter,
    /// Handler calls are timed (two clock reads a call): only when a recorder that keeps
    /// the timings is there (see [`enable_handler_timing`]).
    pub(crate) timed: bool,
    listener: String,
}

static TIMING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Times every handler call for `spring_kafka_listener_seconds` in listeners created from now
/// on. The management endpoint's recorder turns this on by itself; an application that
/// installs a `metrics` recorder of its own calls this (before starting) to get the timer
/// too. Without it the counters are still recorded, and the hot path reads no clock.
pub fn enable_handler_timing() {
    TIMING.store(true, std::sync::atomic::Ordering::Release);
}

impl Default for ListenerMeters {
    /// Handles that record nothing.
    fn default() -> Self {
        ListenerMeters {
            call_success: Histogram::noop(),
            call_error: Histogram::noop(),
            call_panic: Histogram::noop(),
            handled: Counter::noop(),
            failures: Counter::noop(),
            retried: Counter::noop(),
            given_up: GivenUp::default(),
            recoverer_failures: Counter::noop(),
            commit_ok: Histogram::noop(),
            commit_failed: Histogram::noop(),
            commit_failures: Counter::noop(),
            assigned: Counter::noop(),
            revoked: Counter::noop(),
            lost: Counter::noop(),
            timed: false,
            listener: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct GivenUp(std::sync::Arc<OnceLock<(&'static str, Counter)>>);

impl ListenerMeters {
    /// Registers `listener`'s handles with the recorder installed now.
    pub(crate) fn new(listener: &str) -> Self {
        let l = listener.to_owned();
        let call = |result: &'static str, exception: &'static str| {
            metrics::histogram!("spring_kafka_listener_seconds",
                "name" => l.clone(), "result" => result, "exception" => exception)
        };
        let commit = |result: &'static str| metrics::histogram!("kafka_listener_commit_seconds", "listener" => l.clone(), "result" => result);
        let rebalance = |kind: &'static str| metrics::counter!("kafka_listener_rebalances_total", "listener" => l.clone(), "kind" => kind);
        ListenerMeters {
            call_success: call("success", "none"),
            call_error: call("failure", "handler_error"),
            call_panic: call("failure", "panic"),
            handled: metrics::counter!("kafka_listener_records_handled_total", "listener" => l.clone()),
            failures: metrics::counter!("kafka_listener_handler_failures_total", "listener" => l.clone()),
            retried: metrics::counter!("kafka_listener_records_retried_total", "listener" => l.clone()),
            given_up: GivenUp::default(),
            recoverer_failures: metrics::counter!("kafka_listener_recoverer_failures_total", "listener" => l.clone()),
            commit_ok: commit("success"),
            commit_failed: commit("failure"),
            commit_failures: metrics::counter!("kafka_listener_commit_failures_total", "listener" => l.clone()),
            assigned: rebalance("assigned"),
            revoked: rebalance("revoked"),
            lost: rebalance("lost"),
            timed: TIMING.load(std::sync::atomic::Ordering::Acquire),
            listener: l,
        }
    }

    /// A record handed to a recoverer of `kind` that succeeded.
    pub(crate) fn given_up(&self, kind: &'static str) {
        let (made_for, counter) = self.given_up.0.get_or_init(|| {
            (
                kind,
                metrics::counter!("kafka_listener_records_given_up_total",
                    "listener" => self.listener.clone(), "recoverer" => kind),
            )
        });
        if *made_for == kind {
            counter.increment(1);
        } else {
            metrics::counter!("kafka_listener_records_given_up_total",
                "listener" => self.listener.clone(), "recoverer" => kind)
            .increment(1);
        }
    }

    /// A commit answered (after `took`, when timed).
    pub(crate) fn commit(&self, took: Option<Duration>, ok: bool) {
        match (ok, took) {
            (true, Some(took)) => self.commit_ok.record(took),
            (true, None) => {}
            (false, took) => {
                if let Some(took) = took {
                    self.commit_failed.record(took);
                }
                self.commit_failures.increment(1);
            }
        }
    }
}

/// One partition's progress between two statistics ticks, for the "seconds since" gauges.
#[derive(Debug)]
struct Progress {
    committed: i64,
    finished: i64,
    committed_at: Instant,
    finished_at: Instant,
    /// The committed lag at the last tick (`None`: not known yet).
    lag: Option<i64>,
}

/// Something that went wrong with a record, for the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct RecentEvent {
    /// Milliseconds since the epoch.
    pub(crate) at_ms: i64,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// `handler failed`, `given up (dead_letter)`, `recoverer failed`, ...
    pub(crate) what: String,
    pub(crate) error: String,
}

/// The last few [`RecentEvent`]s of a listener (failures only: nothing on the happy path).
#[derive(Debug, Default)]
pub(crate) struct RecentEvents(Mutex<std::collections::VecDeque<RecentEvent>>);

impl RecentEvents {
    const KEEP: usize = 20;

    pub(crate) fn push(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        what: String,
        error: &dyn std::fmt::Display,
    ) {
        let mut error = error.to_string();
        if error.len() > 300 {
            let mut cut = 300;
            while !error.is_char_boundary(cut) {
                cut -= 1;
            }
            error.truncate(cut);
            error.push('…');
        }
        let event = RecentEvent {
            at_ms: crate::retry_topic::now_ms(),
            topic: topic.to_owned(),
            partition,
            offset,
            what,
            error,
        };
        let mut events = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == Self::KEEP {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// Newest first.
    pub(crate) fn list(&self) -> Vec<RecentEvent> {
        let events = self.0.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().rev().cloned().collect()
    }
}

/// The per-partition gauges of one consumer, refreshed from librdkafka's statistics.
#[derive(Debug, Default)]
pub(crate) struct PartitionGauges {
    progress: Mutex<HashMap<(String, i32), Progress>>,
}

/// What one statistics tick knows of a partition.
pub(crate) struct PartitionSample<'a> {
    pub(crate) listener: &'a str,
    pub(crate) group: &'a str,
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    /// The end: high watermark, or last stable offset under `read_committed` (< 0: unknown).
    pub(crate) end: i64,
    /// The group's committed offset as librdkafka knows it (< 0: none yet).
    pub(crate) committed: i64,
    /// The log start offset (a group with no commit starts there under `earliest`); `-1` when
    /// the group would not start there.
    pub(crate) start: i64,
    /// Our own finished position (< 0: nothing finished since assignment).
    pub(crate) finished: i64,
}

impl PartitionGauges {
    /// Sets the gauges of the partitions in `samples`, and forgets the others (revoked).
    pub(crate) fn update(&self, samples: &[PartitionSample<'_>], now: Instant) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        // A partition that moved away: its series go to 0 here (its new owner reports it),
        // so a sum over the group's pods counts it once. The series stay (one per partition
        // of the subscribed topics at most).
        progress.retain(|(t, p), _| {
            let kept = samples
                .iter()
                .any(|s| s.topic == t.as_str() && s.partition == *p);
            if !kept {
                if let Some(s) = samples.first() {
                    let labels = [
                        Label::new("listener", s.listener.to_owned()),
                        Label::new("group", s.group.to_owned()),
                        Label::new("topic", t.clone()),
                        Label::new("partition", p.to_string()),
                    ];
                    for name in [
                        "kafka_listener_committed_lag",
                        "kafka_listener_seconds_since_last_commit",
                        "kafka_listener_seconds_since_last_record",
                    ] {
                        metrics::gauge!(name, labels.iter()).set(0.0);
                    }
                }
            }
            kept
        });
        for s in samples {
            let labels = [
                Label::new("listener", s.listener.to_owned()),
                Label::new("group", s.group.to_owned()),
                Label::new("topic", s.topic.to_owned()),
                Label::new("partition", s.partition.to_string()),
            ];
            let entry = progress
                .entry((s.topic.to_owned(), s.partition))
                .or_insert(Progress {
                    committed: s.committed,
                    finished: s.finished,
                    committed_at: now,
                    finished_at: now,
                    lag: None,
                });
            if s.committed != entry.committed {
                entry.committed = s.committed;
                entry.committed_at = now;
            }
            if s.finished != entry.finished {
                entry.finished = s.finished;
                entry.finished_at = now;
            }
            metrics::gauge!("kafka_listener_seconds_since_last_commit", labels.iter())
                .set(now.duration_since(entry.committed_at).as_secs_f64());
            metrics::gauge!("kafka_listener_seconds_since_last_record", labels.iter())
                .set(now.duration_since(entry.finished_at).as_secs_f64());
            entry.lag = committed_lag(s);
            if let Some(lag) = entry.lag {
                metrics::gauge!("kafka_listener_committed_lag", labels.iter()).set(lag as f64);
            }
        }
    }
}

impl PartitionGauges {
    /// The committed lag of `topic`/`partition` at the last statistics tick.
    pub(crate) fn lag(&self, topic: &str, partition: i32) -> Option<i64> {
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        progress
            .get(&(topic.to_owned(), partition))
            .and_then(|p| p.lag)
    }
}

/// Records of the partition not finished: its end minus the group's committed offset (the
/// log start when the group has none yet). `None` while the end is unknown.
pub(crate) fn committed_lag(s: &PartitionSample<'_>) -> Option<i64> {
    if s.end < 0 {
        return None;
    }
    let base = if s.committed >= 0 {
        s.committed
    } else if s.start >= 0 {
        s.start
    } else {
        return None;
    };
    Some((s.end - base).max(0))
}

/// Per-listener gauges read from the containers when metrics are rendered.
pub(crate) fn listener_gauges(
    listener: &str,
    running: bool,
    assigned: usize,
    paused: usize,
    breaker_open: bool,
    breaker_trips: u64,
) {
    let l = listener.to_owned();
    metrics::gauge!("kafka_listener_running", "listener" => l.clone())
        .set(f64::from(u8::from(running)));
    metrics::gauge!("kafka_listener_assigned_partitions", "listener" => l.clone())
        .set(assigned as f64);
    metrics::gauge!("kafka_listener_paused_partitions", "listener" => l.clone()).set(paused as f64);
    metrics::gauge!("kafka_listener_circuit_breaker_open", "listener" => l.clone())
        .set(f64::from(u8::from(breaker_open)));
    metrics::counter!("kafka_listener_circuit_breaker_trips_total", "listener" => l)
        .absolute(breaker_trips);
}

/// The process's Prometheus recorder: installed on first use. `None` when another recorder
/// was installed first (the application's own: our metrics go there instead).
pub(crate) fn prometheus(upkeep_every: Duration) -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    enable_handler_timing();
                    // Histogram samples are drained by upkeep (or a scrape): without it, a
                    // service nobody scrapes would keep every sample.
                    let upkeep = handle.clone();
                    let _ = std::thread::Builder::new()
                        .name("kl-metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(upkeep_every);
                            upkeep.run_upkeep();
                        });
                    Some(handle)
                }
                Err(_) => {
                    tracing::warn!("a metrics recorder was installed before ours: kafka-listener's metrics go to it, and /metrics serves none");
                    None
                }
            }
        })
        .clone()
}

/// How often the recorder's upkeep drains histogram samples.
pub(crate) const UPKEEP_EVERY: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(end: i64, committed: i64, start: i64) -> PartitionSample<'static> {
        PartitionSample {
            listener: "l",
            group: "g",
            topic: "t",
            partition: 0,
            end,
            committed,
            start,
            finished: -1,
        }
    }

    #[test]
    fn lag_is_the_end_minus_the_committed_offset_or_the_log_start() {
        assert_eq!(committed_lag(&sample(100, 40, 0)), Some(60));
        assert_eq!(committed_lag(&sample(100, 100, 0)), Some(0));
        assert_eq!(committed_lag(&sample(100, -1001, 10)), Some(90));
        assert_eq!(committed_lag(&sample(-1, 40, 0)), None);
        // A committed offset ahead of a stale end is not a negative lag.
        assert_eq!(committed_lag(&sample(100, 120, 0)), Some(0));
    }
}
