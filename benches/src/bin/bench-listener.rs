//! Contenders (b), (c) and (d): kafka-listener with `#[kafka_listener]` handlers.
//!
//! - `--mode batch`: ack mode `batch` (the default), a handler that only counts;
//! - `--mode record`: ack mode `record`, the same handler;
//! - `--mode sleep`: ack mode `batch`, a handler that awaits a 1 ms timer per record
//!   (I/O-bound work; partitions are handled in parallel).
//! - `--mode keyed`: the same handler with `concurrency_per_partition = 64`, on a topic with
//!   10,000 keys whose records carry their sequence number: each key's numbers must arrive
//!   in increasing order (checked per record; a violation fails the run).
//!
//! Everything else is the framework's defaults. Stops after `--records` records, prints the
//! result line (see the crate docs), then shuts down gracefully (final commit, leave group).
//! The group-join time is taken from the container's "partitions assigned" log event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kafka_listener::{kafka_listener, Application, Bytes};
use kafka_listener_bench::{emit_assigned, now_ns, ContenderReport, LatencyRecorder};
use tokio::sync::Notify;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Batch,
    Record,
    Sleep,
    Keyed,
}

/// Keys of the keyed workload (kl-bench's `KEYS`): record `i` has key index `i % KEYS`.
const KEYS: usize = 10_000;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    /// Stop after this many records.
    #[arg(long)]
    records: u64,
    #[arg(long, value_enum, default_value = "batch")]
    mode: Mode,
    /// Latency mode: measure send-to-handler latency, skipping this many records first.
    #[arg(long)]
    latency_warmup: Option<u64>,
    /// Extra configuration `key=value` (repeatable), as `--set` of a service.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

struct State {
    target: u64,
    count: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    assigned_ns: AtomicU64,
    announce: bool,
    done: Notify,
    latency: Option<LatencyRecorder>,
    /// `--mode keyed`: the last sequence number seen per key, and the violations of order.
    last_of_key: std::sync::Mutex<Vec<u64>>,
    out_of_order: AtomicU64,
}

static STATE: OnceLock<State> = OnceLock::new();

fn on_record(value: &[u8]) {
    let Some(s) = STATE.get() else { return };
    let n = s.count.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(l) = &s.latency {
        l.record(n - 1, value, now_ns());
    }
    if n == 1 {
        s.first_ns.store(now_ns(), Ordering::Relaxed);
    }
    if n == s.target {
        s.last_ns.store(now_ns(), Ordering::Relaxed);
        s.done.notify_one();
    }
}

/// (b) and (c): counts the record.
#[kafka_listener(
    id = "bench_noop",
    topics = "${bench.topic}",
    group_id = "${bench.group}"
)]
async fn bench_noop(value: Bytes) {
    on_record(&value);
}

/// (d): 1 ms of simulated I/O per record.
#[kafka_listener(
    id = "bench_sleep",
    topics = "${bench.topic}",
    group_id = "${bench.group}"
)]
async fn bench_sleep(value: Bytes) {
    tokio::time::sleep(Duration::from_millis(1)).await;
    on_record(&value);
}

/// (h): 1 ms of simulated I/O per record, up to 64 records of a partition at once by key.
#[kafka_listener(
    id = "bench_keyed",
    topics = "${bench.topic}",
    group_id = "${bench.group}",
    concurrency_per_partition = 64
)]
async fn bench_keyed(value: Bytes) {
    tokio::time::sleep(Duration::from_millis(1)).await;
    if let (Some(s), Some(seq)) = (STATE.get(), value.get(..8)) {
        let seq = u64::from_be_bytes(seq.try_into().unwrap_or_default());
        let mut last = s.last_of_key.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut last[seq as usize % KEYS];
        if *slot != u64::MAX && *slot >= seq {
            s.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        *slot = seq;
    }
    on_record(&value);
}

/// Notes the time of the container's first "partitions assigned" event.
struct AssignedLayer;

struct MessageIs<'a>(&'a str, bool);

impl Visit for MessageIs<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}").contains(self.0) {
            self.1 = true;
        }
    }
}

impl<S: Subscriber> Layer<S> for AssignedLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let Some(s) = STATE.get() else { return };
        if s.assigned_ns.load(Ordering::Relaxed) != 0 {
            return;
        }
        let mut visit = MessageIs("partitions assigned", false);
        event.record(&mut visit);
        if visit.1 {
            let now = now_ns();
            if s.assigned_ns
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
                && s.announce
            {
                emit_assigned(now);
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let state = State {
        target: args.records,
        count: AtomicU64::new(0),
        first_ns: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        assigned_ns: AtomicU64::new(0),
        announce: args.latency_warmup.is_some(),
        done: Notify::new(),
        latency: args
            .latency_warmup
            .map(|w| LatencyRecorder::new(w, args.records as usize)),
        last_of_key: std::sync::Mutex::new(vec![u64::MAX; KEYS]),
        out_of_order: AtomicU64::new(0),
    };
    let state = STATE.get_or_init(|| state);
    // Warnings only, unless BENCH_LOG names targets (`kafka_listener=debug`) for a diagnosis.
    let log_filter = std::env::var("BENCH_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::WARN));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(log_filter))
        .with(AssignedLayer.with_filter(Targets::new().with_target("kafka_listener", Level::INFO)))
        .init();

    let (listener, ack_mode) = match args.mode {
        Mode::Batch => ("bench_noop", "batch"),
        Mode::Record => ("bench_noop", "record"),
        Mode::Sleep => ("bench_sleep", "batch"),
        Mode::Keyed => ("bench_keyed", "batch"),
    };
    let mut builder = Application::builder()
        .only([listener])
        // Only what is set here: nothing from the process environment.
        .env(vec![("KL_BENCH".to_owned(), "1".to_owned())])
        .set("kafka.bootstrap-servers", &args.bootstrap)
        .set("bench.topic", &args.topic)
        .set("bench.group", &args.group)
        .set("kafka.listener.ack-mode", ack_mode);
    // For experiments outside the harness (kl-bench never sets it): `BENCH_LISTENER_SET` holds
    // `key=value` pairs separated by spaces, applied like `--set`.
    let experiment = std::env::var("BENCH_LISTENER_SET").unwrap_or_default();
    for kv in args
        .set
        .iter()
        .cloned()
        .chain(experiment.split_whitespace().map(str::to_owned))
    {
        builder = builder.overrides([kv]);
    }
    let app = builder.start().await?;
    let ready_ns = now_ns();
    state.done.notified().await;
    let report = ContenderReport {
        ready_ns,
        assigned_ns: state.assigned_ns.load(Ordering::Relaxed),
        first_ns: state.first_ns.load(Ordering::Relaxed),
        last_ns: state.last_ns.load(Ordering::Relaxed),
        records: state.count.load(Ordering::Relaxed).min(args.records),
        latency: state.latency.as_ref().and_then(LatencyRecorder::summary),
    };
    report.emit();
    let shutdown = app.shutdown().await;
    eprintln!("bench-listener: shutdown {shutdown:?}");
    let out_of_order = state.out_of_order.load(Ordering::Relaxed);
    if out_of_order > 0 {
        return Err(format!(
            "{out_of_order} records arrived before an earlier record of their key"
        )
        .into());
    }
    Ok(())
}
