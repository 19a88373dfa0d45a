//! Chaos suite for kafka-listener.
//!
//! Runs the `orders` example (the system under test) against a real Apache Kafka broker while
//! an independent producer writes orders with unique ids, and breaks things on a seeded random
//! schedule: `kill9` (SIGKILL and restart), `sigterm` (graceful stop and restart), `scale`
//! (1 → 3 → 1 processes in the group) and `broker-restart` (the broker stopped for 15 s, the
//! service must ride it out). Afterwards it reads the output topic and counts, per order id,
//! how often it was accepted: any lost order fails the run, and so does any duplicate where
//! the delivery semantics promise none. See `RELIABILITY.md`; normally run by `scripts/chaos`.
//!
//! ```text
//! kafka-listener-chaos [SCENARIO...] [--quick] [--seed N] [--orders N] [--set KEY=VALUE]...
//!                      [--bootstrap HOST:PORT] [--restart-port PORT] [--orders-bin PATH]
//! ```

mod fleet;
mod kafka;
mod rng;
mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scenario::{Ctx, Kind, Report};

/// The suite's error type: every failure of the harness itself is a message.
pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "\
usage: kafka-listener-chaos [SCENARIO...] [OPTIONS]

scenarios (default: all, in this order):
  kill9           SIGKILL the service at random moments and restart it (10 times; --quick: 3)
  sigterm         the same with SIGTERM: duplicates must be zero
  scale           1 -> 3 -> 1 service processes in the group while orders flow
  broker-restart  stop the broker for 15 s mid-stream (the suite's own broker, on
                  --restart-port); the service must recover without a restart

options:
  --quick               5,000 orders and 3 kills instead of 50,000 and 10
  --seed N              replay a run (decimal or 0x hex); printed at the start of every run
  --orders N            orders per scenario
  --set KEY=VALUE       extra --set for every service process (e.g. kafka.listener.ack-mode=record)
  --bootstrap B         shared broker for kill9/sigterm/scale (default: $KAFKA_BOOTSTRAP_SERVERS
                        or 127.0.0.1:9092)
  --restart-port P      port of the suite's own broker for broker-restart (default 19092)
  --orders-bin PATH     the orders binary (default: $ORDERS_BIN or target/debug/orders)
";

struct Args {
    kinds: Vec<Kind>,
    seed: u64,
    ctx: Ctx,
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_args() -> Result<Args, String> {
    let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .ok_or("no repository root")?;
    let mut kinds = Vec::new();
    let mut quick = false;
    let mut seed = None;
    let mut orders = None;
    let mut sets = Vec::new();
    let mut bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let mut restart_port: u16 = 19092;
    let mut orders_bin = std::env::var_os("ORDERS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root.join("target/debug/orders"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--quick" => quick = true,
            "--seed" => {
                let v = value("--seed")?;
                seed = Some(parse_u64(&v).ok_or(format!("--seed {v}: not a number"))?);
            }
            "--orders" => {
                let v = value("--orders")?;
                orders = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(format!("--orders {v}: not a positive number"))?,
                );
            }
            "--set" => sets.push(value("--set")?),
            "--bootstrap" => bootstrap = value("--bootstrap")?,
            "--restart-port" => {
                let v = value("--restart-port")?;
                restart_port = v
                    .parse()
                    .map_err(|_| format!("--restart-port {v}: not a port"))?;
            }
            "--orders-bin" => orders_bin = PathBuf::from(value("--orders-bin")?),
            other => match Kind::parse(other) {
                Some(kind) => kinds.push(kind),
                None => return Err(format!("unknown scenario or option {other:?}")),
            },
        }
    }
    if kinds.is_empty() {
        kinds = Kind::ALL.to_vec();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seed = seed.unwrap_or_else(|| rng::Rng::new(now.as_nanos() as u64).next_u64() >> 16);
    let run_id = format!("{}-{}", now.as_secs(), std::process::id());
    if !orders_bin.exists() {
        return Err(format!(
            "{} not found: build it first (cargo build -p orders; scripts/chaos does)",
            orders_bin.display()
        ));
    }
    // Shorter session timeout than librdkafka's 45 s: a SIGKILLed member is noticed (and its
    // partitions reassigned) within seconds instead of stalling the group for 45 s per kill.
    let mut all_sets = vec![
        "kafka.consumer.properties.session.timeout.ms=6000".to_owned(),
        "kafka.consumer.heartbeat-interval=1s".to_owned(),
    ];
    all_sets.extend(sets);
    Ok(Args {
        kinds,
        seed,
        ctx: Ctx {
            orders_config: repo_root.join("examples/orders/application.properties"),
            out_dir: repo_root.join("target/chaos").join(&run_id),
            repo_root,
            orders_bin,
            bootstrap,
            restart_port,
            run_id,
            quick,
            orders,
            sets: all_sets,
        },
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Args { kinds, seed, ctx } = args;
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    println!(
        "chaos run {}: seed {seed:#x}, {}{} — replay: scripts/chaos {} --seed {seed:#x}{}",
        ctx.run_id,
        names.join(" "),
        if ctx.quick { " (quick)" } else { "" },
        names.join(" "),
        if ctx.quick { " --quick" } else { "" },
    );
    println!(
        "system under test: {} ; service --set {:?}; logs under {}",
        ctx.orders_bin.display(),
        ctx.sets,
        ctx.out_dir.display()
    );
    let revision = git_revision(&ctx.repo_root);
    println!("source: {revision}");
    let started = Instant::now();
    let mut reports: Vec<Result<Report, (Kind, String)>> = Vec::new();
    for kind in kinds {
        let result = scenario::run(kind, &ctx, seed).map_err(|e| (kind, e.to_string()));
        match &result {
            Ok(r) => print_report(r),
            Err((k, e)) => println!("!! {} could not run: {e}", k.name()),
        }
        reports.push(result);
    }
    let ok = print_summary(&reports, seed, &ctx, started.elapsed());
    if let Err(e) = write_results(&reports, seed, &ctx, &revision) {
        eprintln!("warning: writing results.json: {e}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The commit the system under test was built from, `-dirty` when the tree has changes.
fn git_revision(repo: &std::path::Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["describe", "--always", "--dirty"]) {
        Some(rev) if !rev.is_empty() => rev,
        _ => "unknown (not a git checkout)".to_owned(),
    }
}

fn print_report(r: &Report) {
    for note in &r.notes {
        println!("  note: {note}");
    }
    for problem in &r.problems {
        println!("  FAIL: {problem}");
    }
}

fn print_summary(
    reports: &[Result<Report, (Kind, String)>],
    seed: u64,
    ctx: &Ctx,
    wall: Duration,
) -> bool {
    println!();
    println!(
        "{:<15} {:>9} {:>9} {:>6} {:>11} {:>9} {:>6}  verdict",
        "scenario", "produced", "accepted", "lost", "duplicated", "wall", "procs"
    );
    let mut all_ok = true;
    for result in reports {
        match result {
            Ok(r) => {
                let verdict = if r.passed() {
                    match (r.duplicated_ids, r.kind.duplicates_allowed()) {
                        (0, _) => "ok".to_owned(),
                        (_, Some(_)) => "ok (duplicates allowed here)".to_owned(),
                        (_, None) => "ok".to_owned(),
                    }
                } else {
                    all_ok = false;
                    "FAILED".to_owned()
                };
                println!(
                    "{:<15} {:>9} {:>9} {:>6} {:>11} {:>8.1}s {:>6}  {verdict}",
                    r.kind.name(),
                    r.produced,
                    r.accepted_distinct,
                    r.lost,
                    r.duplicate_records,
                    r.wall.as_secs_f64(),
                    r.processes
                );
            }
            Err((kind, e)) => {
                all_ok = false;
                println!("{:<15} could not run: {e}", kind.name());
            }
        }
    }
    println!(
        "(accepted = distinct order ids on the output topic; duplicated = acceptances beyond the first)"
    );
    println!(
        "total {:.1}s; seed {seed:#x}; logs {}; {}",
        wall.as_secs_f64(),
        ctx.out_dir.display(),
        if all_ok { "PASSED" } else { "FAILED" }
    );
    all_ok
}

fn write_results(
    reports: &[Result<Report, (Kind, String)>],
    seed: u64,
    ctx: &Ctx,
    revision: &str,
) -> Res<()> {
    let scenarios: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| match r {
            Ok(r) => serde_json::json!({
                "scenario": r.kind.name(),
                "seed": format!("{:#x}", r.seed),
                "passed": r.passed(),
                "produced": r.produced,
                "accepted_distinct": r.accepted_distinct,
                "lost": r.lost,
                "duplicated_ids": r.duplicated_ids,
                "duplicate_records": r.duplicate_records,
                "wall_seconds": r.wall.as_secs_f64(),
                "processes": r.processes,
                "problems": r.problems,
                "notes": r.notes,
                "logs": r.log_dir.display().to_string(),
            }),
            Err((kind, e)) => serde_json::json!({
                "scenario": kind.name(),
                "passed": false,
                "error": e,
            }),
        })
        .collect();
    let doc = serde_json::json!({
        "run": ctx.run_id,
        "seed": format!("{seed:#x}"),
        "quick": ctx.quick,
        "source": revision,
        "service_sets": ctx.sets,
        "scenarios": scenarios,
    });
    std::fs::create_dir_all(&ctx.out_dir)?;
    std::fs::write(
        ctx.out_dir.join("results.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    Ok(())
}
