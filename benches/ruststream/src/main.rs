//! Contender (e): the benchmark job written with ruststream-rdkafka.
//!
//! One `#[subscriber]` over the raw bytes of each record, on the topic and fresh group given on
//! the command line, reading from the earliest offset, with the framework's defaults otherwise
//! (commit mode `Commit::Auto`: librdkafka's timer commit; one handler lane). Stops after
//! `--records` records, prints the `BENCH-RESULT {json}` line the driver reads (the fields of
//! `kafka_listener_bench::ContenderReport`), then shuts the app down gracefully.
//!
//! `RunningApp::start` returns once the group has assigned the partitions (the framework waits
//! for it), so the group join is measured as the span of `start()`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use ruststream_rdkafka::prelude::*;
use tokio::sync::Notify;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    records: u64,
    /// Latency mode is not offered for this contender.
    #[arg(long)]
    latency_warmup: Option<u64>,
}

struct State {
    topic: String,
    group: String,
    target: u64,
    count: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    done: Notify,
}

static STATE: OnceLock<State> = OnceLock::new();

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn state() -> &'static State {
    STATE.get().expect("state is set before the app starts")
}

/// The record's bytes as they arrived, no codec.
#[derive(Deserialized)]
struct Raw<'a>(&'a [u8]);

#[subscriber(
    KafkaTopic::new(state().topic.clone())
        .group(state().group.clone())
        .start(StartOffset::Earliest)
)]
async fn bench_noop(record: &Raw<'_>) -> HandlerOutcome {
    let s = state();
    std::hint::black_box(record.0.len());
    let n = s.count.fetch_add(1, Ordering::Relaxed) + 1;
    if n == 1 {
        s.first_ns.store(now_ns(), Ordering::Relaxed);
    }
    if n == s.target {
        s.last_ns.store(now_ns(), Ordering::Relaxed);
        s.done.notify_one();
    }
    HandlerOutcome::ack()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.latency_warmup.is_some() {
        return Err("latency mode is not implemented for this contender".into());
    }
    let _ = STATE.set(State {
        topic: args.topic.clone(),
        group: args.group.clone(),
        target: args.records,
        count: AtomicU64::new(0),
        first_ns: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        done: Notify::new(),
    });
    let app = RustStream::new(AppInfo::new("bench", "0.1.0")).with_broker(
        KafkaBroker::new([args.bootstrap.as_str()]),
        |b| {
            b.include(bench_noop);
        },
    );
    let ready_ns = now_ns();
    let running = app.start().await?;
    let assigned_ns = now_ns();
    let s = state();
    s.done.notified().await;
    println!(
        "BENCH-RESULT {{\"ready_ns\":{ready_ns},\"assigned_ns\":{assigned_ns},\"first_ns\":{},\"last_ns\":{},\"records\":{}}}",
        s.first_ns.load(Ordering::Relaxed),
        s.last_ns.load(Ordering::Relaxed),
        s.count.load(Ordering::Relaxed).min(args.records)
    );
    running.shutdown().await?;
    Ok(())
}
