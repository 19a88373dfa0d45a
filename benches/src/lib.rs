//! Benchmark harness of kafka-listener: what every contender process reports, and how.
//!
//! Each contender is its own process. It consumes a topic in a fresh consumer group until it
//! has handled `--records` records, then prints one line `BENCH-RESULT {json}` (a
//! [`ContenderReport`]) on stdout and shuts down the way its framework does. In latency mode it
//! also prints `BENCH-ASSIGNED <ns>` once it owns partitions, so the driver (`kl-bench`) knows
//! when to start producing. All times are wall-clock nanoseconds since the Unix epoch, so the
//! driver can line them up with its own clock (same machine).
//!
//! Latency payloads carry the producer's send time in their first 8 bytes (big-endian
//! nanoseconds since the epoch): [`payload_ns`] reads it back.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Prefix of the result line a contender prints on stdout.
pub const RESULT_PREFIX: &str = "BENCH-RESULT ";
/// Prefix of the line a contender prints once it has been assigned partitions.
pub const ASSIGNED_PREFIX: &str = "BENCH-ASSIGNED ";

/// Wall-clock nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The send time a latency payload carries (0 if the payload is shorter than 8 bytes).
pub fn payload_ns(payload: &[u8]) -> u64 {
    match payload.get(..8) {
        Some(head) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(head);
            u64::from_be_bytes(b)
        }
        None => 0,
    }
}

/// What a contender reports when it has handled its records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContenderReport {
    /// When the consumer was created and subscribed (the framework's "started").
    pub ready_ns: u64,
    /// When the first partitions were assigned (group joined); 0 if unknown.
    pub assigned_ns: u64,
    /// When the first record was handled.
    pub first_ns: u64,
    /// When the last counted record was handled.
    pub last_ns: u64,
    /// Records handled.
    pub records: u64,
    /// Latency figures, in latency mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
}

impl ContenderReport {
    /// Prints the result line.
    pub fn emit(&self) {
        match serde_json::to_string(self) {
            Ok(json) => println!("{RESULT_PREFIX}{json}"),
            Err(e) => eprintln!("cannot encode the result: {e}"),
        }
    }
}

/// Prints the "partitions assigned" line (latency mode needs it).
pub fn emit_assigned(at_ns: u64) {
    println!("{ASSIGNED_PREFIX}{at_ns}");
}

/// End-to-end latency (send time to handler), in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples counted (after the warm-up).
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// Collects latency samples from any thread; the first `warmup` records are not counted.
#[derive(Debug)]
pub struct LatencyRecorder {
    warmup: u64,
    samples: Mutex<Vec<u64>>,
}

impl LatencyRecorder {
    /// A recorder that ignores records number `0..warmup`.
    pub fn new(warmup: u64, capacity: usize) -> Self {
        LatencyRecorder {
            warmup,
            samples: Mutex::new(Vec::with_capacity(capacity)),
        }
    }

    /// Records the latency of the record number `index` (0-based, in handling order) whose
    /// payload carries its send time, handled at `now`.
    pub fn record(&self, index: u64, payload: &[u8], now: u64) {
        if index < self.warmup {
            return;
        }
        let sent = payload_ns(payload);
        if sent == 0 || sent > now {
            return;
        }
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push(now - sent);
    }

    /// Percentiles of what was recorded (`None` if nothing was).
    pub fn summary(&self) -> Option<LatencySummary> {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        summarize(&mut samples)
    }
}

/// Percentiles of latencies given in nanoseconds.
pub fn summarize(samples_ns: &mut [u64]) -> Option<LatencySummary> {
    if samples_ns.is_empty() {
        return None;
    }
    samples_ns.sort_unstable();
    let at = |q: f64| {
        let i = ((samples_ns.len() as f64 - 1.0) * q).round() as usize;
        samples_ns[i.min(samples_ns.len() - 1)] as f64 / 1000.0
    };
    Some(LatencySummary {
        samples: samples_ns.len() as u64,
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: at(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_time_round_trips() {
        let mut p = vec![0u8; 100];
        p[..8].copy_from_slice(&123_456_789u64.to_be_bytes());
        assert_eq!(payload_ns(&p), 123_456_789);
        assert_eq!(payload_ns(&[1, 2]), 0);
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let s = summarize(&mut v).expect("samples");
        assert_eq!(s.samples, 100);
        assert!((s.p50_us - 50.0).abs() <= 1.0);
        assert!((s.p99_us - 99.0).abs() <= 1.0);
        assert!((s.max_us - 100.0).abs() < f64::EPSILON);
    }

    #[test]
    fn warmup_is_skipped() {
        let r = LatencyRecorder::new(2, 4);
        let mut p = [0u8; 8];
        p.copy_from_slice(&1_000u64.to_be_bytes());
        r.record(0, &p, 2_000);
        r.record(1, &p, 2_000);
        r.record(2, &p, 3_000);
        let s = r.summary().expect("one sample");
        assert_eq!(s.samples, 1);
        assert!((s.p50_us - 2.0).abs() < f64::EPSILON);
    }
}
