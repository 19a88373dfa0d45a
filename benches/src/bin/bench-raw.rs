//! Contender (a): a hand-written rdkafka loop, the floor every framework is measured against.
//!
//! One `BaseConsumer` on the main thread subscribes in a fresh group, polls records one by one,
//! and after each drained batch (up to `--max-batch` records, or until `poll` returns nothing)
//! commits the consumed position asynchronously. librdkafka defaults otherwise, except
//! `fetch.queue.backoff.ms=10` (as kafka-listener sets it). Stops after
//! `--records` records and prints the result line (see the crate docs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use kafka_listener_bench::{emit_assigned, now_ns, ContenderReport, LatencyRecorder};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::ClientContext;

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
    /// Most records per drained batch (one commit each).
    #[arg(long, default_value_t = 500)]
    max_batch: usize,
    /// Latency mode: measure send-to-handler latency, skipping this many records first.
    #[arg(long)]
    latency_warmup: Option<u64>,
    /// Extra librdkafka property (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

struct Ctx {
    assigned_ns: AtomicU64,
    announce: bool,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if tpl.count() > 0 && self.assigned_ns.load(Ordering::Relaxed) == 0 {
                let now = now_ns();
                self.assigned_ns.store(now, Ordering::Relaxed);
                if self.announce {
                    emit_assigned(now);
                }
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // librdkafka's default (1000 ms) idles a partition for a second whenever its prefetch
        // queue filled up, which makes a plain loop bimodal (0.3 or 1.9 M records/s here);
        // kafka-listener sets 10 ms too (DESIGN.md section 8).
        .set("fetch.queue.backoff.ms", "10");
    for kv in &args.set {
        let (k, v) = kv.split_once('=').ok_or("--set wants KEY=VALUE")?;
        config.set(k, v);
    }
    let consumer: BaseConsumer<Ctx> = config.create_with_context(Ctx {
        assigned_ns: AtomicU64::new(0),
        announce: args.latency_warmup.is_some(),
    })?;
    consumer.subscribe(&[&args.topic])?;
    let mut report = ContenderReport {
        ready_ns: now_ns(),
        ..ContenderReport::default()
    };
    let latency = args
        .latency_warmup
        .map(|w| LatencyRecorder::new(w, args.records as usize));
    let mut bytes = 0usize;
    let target = args.records;
    let mut count = 0u64;
    while count < target {
        let mut taken = 0;
        let mut timeout = Duration::from_millis(100);
        while taken < args.max_batch && count < target {
            match consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    eprintln!("consumer error: {e}");
                    break;
                }
                Some(Ok(message)) => {
                    let payload = message.payload().unwrap_or_default();
                    bytes += payload.len();
                    if let Some(l) = &latency {
                        l.record(count, payload, now_ns());
                    }
                    count += 1;
                    if count == 1 {
                        report.first_ns = now_ns();
                    }
                    taken += 1;
                    timeout = Duration::ZERO;
                }
            }
        }
        if taken > 0 {
            // Commits what poll handed out (librdkafka stores each position as it is polled).
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                eprintln!("commit: {e}");
            }
        }
    }
    report.last_ns = now_ns();
    report.records = count;
    report.assigned_ns = consumer.context().assigned_ns.load(Ordering::Relaxed);
    report.latency = latency.and_then(|l| l.summary());
    report.emit();
    eprintln!("bench-raw: {count} records, {bytes} payload bytes");
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        eprintln!("final commit: {e}");
    }
    drop(consumer); // closes: leaves the group
    Ok(())
}
