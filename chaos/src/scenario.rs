//! The four scenarios. Each one: fresh topics and group, the order producer running through a
//! production window, the chaos actions at seeded random moments inside it, then a drain
//! (the group's committed offsets reach the input's end), a graceful stop of whatever still
//! runs, and a count per order id of what reached the output topic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fleet::{self, Fleet, ServiceSpec};
use crate::kafka::{self, OffsetsProbe, OrderProducer};
use crate::rng::Rng;
use crate::Res;

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// SIGKILL the service at random moments, restart it each time.
    Kill9,
    /// SIGTERM the service at random moments, restart it each time.
    Sigterm,
    /// 1 → 3 → 1 processes in the group.
    Scale,
    /// Stop the broker for a while mid-stream; the service must ride it out.
    BrokerRestart,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] =
        [Kind::Kill9, Kind::Sigterm, Kind::Scale, Kind::BrokerRestart];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Kill9 => "kill9",
            Kind::Sigterm => "sigterm",
            Kind::Scale => "scale",
            Kind::BrokerRestart => "broker-restart",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether our delivery semantics allow duplicates in this scenario, and why.
    pub(crate) fn duplicates_allowed(self) -> Option<&'static str> {
        match self {
            Kind::Kill9 => Some("a crash repeats the records in flight since the last commit"),
            Kind::BrokerRestart => Some(
                "partitions whose session expired during the outage are lost, and their \
                 unfinished records are redelivered",
            ),
            Kind::Sigterm | Kind::Scale => None,
        }
    }
}

/// Sizes and timings of one scenario run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) orders: usize,
    /// The producer spreads the orders evenly over this long.
    pub(crate) window: Duration,
    /// Kills (kill9) or graceful restarts (sigterm).
    pub(crate) kills: usize,
    /// Broker outage (broker-restart).
    pub(crate) outage: Duration,
    /// Longest wait for the group to commit everything once the producer is done.
    pub(crate) drain_timeout: Duration,
}

impl Plan {
    pub(crate) fn new(kind: Kind, quick: bool, orders: Option<usize>) -> Plan {
        let (default_orders, window, kills) = match (quick, kind) {
            (false, _) => (50_000, Duration::from_secs(60), 10),
            (true, Kind::BrokerRestart) => (5_000, Duration::from_secs(25), 3),
            (true, _) => (5_000, Duration::from_secs(15), 3),
        };
        Plan {
            orders: orders.unwrap_or(default_orders),
            window,
            kills,
            outage: Duration::from_secs(15),
            drain_timeout: if quick {
                Duration::from_secs(120)
            } else {
                Duration::from_secs(300)
            },
        }
    }
}

/// Everything a scenario needs from the command line and the environment.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) repo_root: PathBuf,
    pub(crate) orders_bin: PathBuf,
    pub(crate) orders_config: PathBuf,
    /// The shared broker (kill9, sigterm, scale).
    pub(crate) bootstrap: String,
    /// Port of the suite's own broker (broker-restart).
    pub(crate) restart_port: u16,
    pub(crate) out_dir: PathBuf,
    pub(crate) run_id: String,
    pub(crate) quick: bool,
    pub(crate) orders: Option<usize>,
    /// `--set` items for every service process.
    pub(crate) sets: Vec<String>,
}

/// The outcome of one scenario.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) kind: Kind,
    pub(crate) seed: u64,
    pub(crate) produced: usize,
    pub(crate) accepted_distinct: usize,
    pub(crate) lost: usize,
    /// Orders accepted more than once.
    pub(crate) duplicated_ids: usize,
    /// Acceptances beyond the first, summed.
    pub(crate) duplicate_records: u64,
    pub(crate) wall: Duration,
    pub(crate) processes: usize,
    /// Why the run fails besides loss and forbidden duplicates.
    pub(crate) problems: Vec<String>,
    /// Things worth knowing that are not failures.
    pub(crate) notes: Vec<String>,
    pub(crate) log_dir: PathBuf,
}

impl Report {
    pub(crate) fn passed(&self) -> bool {
        self.problems.is_empty()
            && self.lost == 0
            && (self.duplicated_ids == 0 || self.kind.duplicates_allowed().is_some())
    }
}

/// Prints a line prefixed with the time since `t0`.
fn say(t0: Instant, text: &str) {
    println!("  [{:>6.1}s] {text}", t0.elapsed().as_secs_f64());
}

/// A chaos action at a moment of the production window.
#[derive(Debug, Clone)]
enum Action {
    /// SIGKILL, not before the moment and `after_assigned` after the victim got partitions.
    Kill {
        after_assigned: Duration,
        restart_after: Duration,
    },
    /// SIGTERM, timed as `Kill`.
    Term {
        after_assigned: Duration,
        restart_after: Duration,
    },
    ScaleUp {
        to: usize,
        gap: Duration,
    },
    ScaleDown {
        to: usize,
        victims_seed: u64,
    },
    BrokerOutage,
}

fn schedule(kind: Kind, plan: &Plan, rng: &mut Rng) -> Vec<(Duration, Action)> {
    let w = plan.window.as_secs_f64();
    let mut events: Vec<(Duration, Action)> = match kind {
        Kind::Kill9 | Kind::Sigterm => (0..plan.kills)
            .map(|_| {
                let at = Duration::from_secs_f64(rng.range_f64(0.1 * w, 0.9 * w));
                let after_assigned = Duration::from_secs_f64(rng.range_f64(0.0, 2.5));
                let restart_after = Duration::from_secs_f64(rng.range_f64(0.0, 1.5));
                let action = if kind == Kind::Kill9 {
                    Action::Kill {
                        after_assigned,
                        restart_after,
                    }
                } else {
                    Action::Term {
                        after_assigned,
                        restart_after,
                    }
                };
                (at, action)
            })
            .collect(),
        Kind::Scale => vec![
            (
                Duration::from_secs_f64(rng.range_f64(0.2 * w, 0.35 * w)),
                Action::ScaleUp {
                    to: 3,
                    gap: Duration::from_secs_f64(rng.range_f64(0.0, 2.0)),
                },
            ),
            (
                Duration::from_secs_f64(rng.range_f64(0.6 * w, 0.75 * w)),
                Action::ScaleDown {
                    to: 1,
                    victims_seed: rng.next_u64(),
                },
            ),
        ],
        Kind::BrokerRestart => vec![(
            Duration::from_secs_f64(rng.range_f64(0.2 * w, 0.35 * w)),
            Action::BrokerOutage,
        )],
    };
    events.sort_by_key(|(at, _)| *at);
    events
}

/// The suite's own broker for broker-restart: `scripts/kafka-broker` on another port, with
/// its own data directory, so the shared broker is never touched.
struct OwnBroker {
    script: PathBuf,
    port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl OwnBroker {
    fn run(&self, verb: &str) -> Res<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let status = Command::new(&self.script)
            .arg(verb)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_DATA_DIR", &self.data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "KAFKA_PORT={} scripts/kafka-broker {verb} failed ({status}); see {}",
                self.port,
                self.log.display()
            )
            .into())
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Runs one scenario. `Err` means the harness itself could not run it.
pub(crate) fn run(kind: Kind, ctx: &Ctx, seed: u64) -> Res<Report> {
    let mut rng = Rng::derive(seed, kind.name());
    let plan = Plan::new(kind, ctx.quick, ctx.orders);
    let log_dir = ctx.out_dir.join(kind.name());
    std::fs::create_dir_all(&log_dir)?;
    println!(
        "== {} (seed {seed:#x}): {} orders over {:.0?}{}",
        kind.name(),
        plan.orders,
        plan.window,
        match kind {
            Kind::Kill9 => format!(", {} SIGKILLs", plan.kills),
            Kind::Sigterm => format!(", {} SIGTERMs", plan.kills),
            Kind::Scale => ", 1 -> 3 -> 1 processes".to_owned(),
            Kind::BrokerRestart => format!(", broker down {:.0?}", plan.outage),
        }
    );
    let broker = (kind == Kind::BrokerRestart).then(|| OwnBroker {
        script: ctx.repo_root.join("scripts/kafka-broker"),
        port: ctx.restart_port,
        data_dir: ctx.repo_root.join("target/chaos-kafka"),
        log: log_dir.join("broker-script.log"),
    });
    let t_setup = Instant::now();
    let bootstrap = match &broker {
        Some(b) => {
            b.run("start")?;
            println!(
                "  own broker up on {} in {:.1?} (data {})",
                b.bootstrap(),
                t_setup.elapsed(),
                b.data_dir.display()
            );
            b.bootstrap()
        }
        None => ctx.bootstrap.clone(),
    };
    let result = run_on(
        kind,
        ctx,
        seed,
        &plan,
        &mut rng,
        &bootstrap,
        broker.as_ref(),
        &log_dir,
    );
    if let Some(b) = &broker {
        if let Err(e) = b.run("stop") {
            eprintln!("warning: {e}");
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn run_on(
    kind: Kind,
    ctx: &Ctx,
    seed: u64,
    plan: &Plan,
    rng: &mut Rng,
    bootstrap: &str,
    broker: Option<&OwnBroker>,
    log_dir: &std::path::Path,
) -> Res<Report> {
    let tag = format!("chaos-{}-{}", kind.name(), ctx.run_id);
    let (input, output, group) = (
        format!("{tag}-orders"),
        format!("{tag}-accepted"),
        format!("{tag}-group"),
    );
    kafka::create_topics(bootstrap, &[&input, &output])?;
    let mut fleet = Fleet::new(ServiceSpec {
        bin: ctx.orders_bin.clone(),
        config: ctx.orders_config.clone(),
        bootstrap: bootstrap.to_owned(),
        input: input.clone(),
        output: output.clone(),
        group: group.clone(),
        sets: ctx.sets.clone(),
        log_dir: log_dir.to_path_buf(),
    })?;
    let probe = OffsetsProbe::new(bootstrap, &group, &input)?;
    let mut report = Report {
        kind,
        seed,
        produced: 0,
        accepted_distinct: 0,
        lost: 0,
        duplicated_ids: 0,
        duplicate_records: 0,
        wall: Duration::ZERO,
        processes: 0,
        problems: Vec::new(),
        notes: Vec::new(),
        log_dir: log_dir.to_path_buf(),
    };
    let t0 = Instant::now();
    let outcome = drive(
        kind,
        plan,
        rng,
        bootstrap,
        broker,
        &mut fleet,
        &probe,
        (&input, &output),
        &mut report,
        t0,
    );
    let produced = match outcome {
        Ok(produced) => produced,
        Err(e) => {
            fleet.kill_all();
            return Err(e);
        }
    };

    // Count.
    let accepted = kafka::read_accepted(bootstrap, &output)?;
    report.wall = t0.elapsed();
    report.processes = fleet.services.len();
    let mut lost_ids = Vec::new();
    for (i, delivered) in produced.delivered.iter().enumerate() {
        if *delivered {
            report.produced += 1;
            match accepted.per_order.get(&i) {
                None => lost_ids.push(kafka::order_id(i)),
                Some(&n) if n > 1 => {
                    report.duplicated_ids += 1;
                    report.duplicate_records += u64::from(n - 1);
                }
                Some(_) => {}
            }
        }
    }
    report.lost = lost_ids.len();
    report.accepted_distinct = accepted.per_order.len();
    let unexpected: Vec<String> = accepted
        .per_order
        .keys()
        .filter(|&&i| !produced.delivered.get(i).copied().unwrap_or(false))
        .map(|&i| kafka::order_id(i))
        .collect();
    if !lost_ids.is_empty() {
        report.problems.push(format!(
            "LOST {} orders, e.g. {}",
            lost_ids.len(),
            lost_ids
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !produced.failures.is_empty() {
        report.problems.push(format!(
            "the test producer failed {} deliveries (harness problem), e.g. {}",
            produced.failures.len(),
            produced.failures[0]
        ));
    }
    if !unexpected.is_empty() {
        report.notes.push(format!(
            "{} accepted ids whose production was not acknowledged (a delivery report lost with the broker), e.g. {}",
            unexpected.len(),
            unexpected[0]
        ));
    }
    if !accepted.malformed.is_empty() {
        report.problems.push(format!(
            "{} malformed output records, e.g. {}",
            accepted.malformed.len(),
            accepted.malformed[0]
        ));
    }
    if report.duplicated_ids > 0 {
        let mut dups: Vec<(usize, u32)> = accepted
            .per_order
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(&i, &n)| (i, n))
            .collect();
        dups.sort_unstable();
        let sample: Vec<String> = dups
            .iter()
            .take(8)
            .map(|(i, n)| format!("{}x{n}", kafka::order_id(*i)))
            .collect();
        let line = format!(
            "{} ids duplicated ({} extra records), e.g. {}",
            report.duplicated_ids,
            report.duplicate_records,
            sample.join(" ")
        );
        match kind.duplicates_allowed() {
            Some(why) => report.notes.push(format!("{line} — allowed: {why}")),
            None => report
                .problems
                .push(format!("DUPLICATES where none are promised: {line}")),
        }
    }
    report.notes.push(format!(
        "producer: {} orders acknowledged in {:.1?}; output: {} records",
        report.produced, produced.elapsed, accepted.records
    ));
    Ok(report)
}

/// Runs the producer, the actions, the drain and the final stop; returns the producer report.
#[allow(clippy::too_many_arguments)]
fn drive(
    kind: Kind,
    plan: &Plan,
    rng: &mut Rng,
    bootstrap: &str,
    broker: Option<&OwnBroker>,
    fleet: &mut Fleet,
    probe: &OffsetsProbe,
    (input, output): (&str, &str),
    report: &mut Report,
    t0: Instant,
) -> Res<kafka::Produced> {
    let events = schedule(kind, plan, rng);
    let first = fleet.start()?;
    say(t0, &format!("started {}", fleet.services[first].name()));
    let producer = OrderProducer::spawn(bootstrap, input, plan.orders, plan.window)?;
    let _trace = kafka::CommitTrace::spawn(
        bootstrap,
        &probe.group,
        (input, output),
        &report.log_dir.join("commits.tsv"),
        t0,
    )?;
    let mut watch = Watch::default();
    for (at, action) in events {
        while t0.elapsed() < at {
            watch.check(fleet, report, t0)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        watch.check(fleet, report, t0)?;
        let progress = format!("(sent {}, acked {})", producer.sent(), producer.delivered());
        match action {
            Action::Kill {
                after_assigned,
                restart_after,
            }
            | Action::Term {
                after_assigned,
                restart_after,
            } => {
                let graceful = matches!(action, Action::Term { .. });
                let Some(&victim) = fleet.running().first() else {
                    continue;
                };
                let name = fleet.services[victim].name();
                // Strike while it works: once it owns partitions (a restarted process first
                // waits for the group to drop its killed predecessor), plus a random delay.
                if graceful && !fleet.services[victim].wait_started(Duration::from_secs(20)) {
                    report.problems.push(format!(
                        "{name} did not log \"listener started\" within 20 s"
                    ));
                }
                if !fleet.services[victim].wait_log("partitions assigned", Duration::from_secs(30))
                {
                    report.notes.push(format!(
                        "{name} had no partitions after 30 s; struck anyway"
                    ));
                }
                std::thread::sleep(after_assigned);
                watch.check(fleet, report, t0)?;
                let progress =
                    format!("(sent {}, acked {})", producer.sent(), producer.delivered());
                let t_stop = Instant::now();
                if graceful {
                    fleet.services[victim].sigterm()?;
                } else {
                    fleet.services[victim].sigkill()?;
                }
                let status = fleet.services[victim].wait(Duration::from_secs(45));
                let verb = if graceful { "SIGTERM" } else { "SIGKILL" };
                // With the process gone, the group's commits are final until the restart:
                // acceptances beyond them will be repeated.
                let committed = committed_sum(probe).unwrap_or(-1);
                let accepted: i64 = kafka::end_offsets(bootstrap, output)
                    .map(|e| e.iter().sum())
                    .unwrap_or(-1);
                say(
                    t0,
                    &format!(
                        "{verb} {name} {progress}: exited {} after {:.1?}; group committed {committed} orders, output holds {accepted} records",
                        status.map_or_else(
                            || "never (killed after 45 s)".to_owned(),
                            |s| s.to_string()
                        ),
                        t_stop.elapsed()
                    ),
                );
                if graceful && !status.is_some_and(|s| s.success()) {
                    report.problems.push(format!(
                        "{name} did not exit 0 after SIGTERM: {status:?}; {}",
                        fleet.services[victim].log.display()
                    ));
                }
                std::thread::sleep(restart_after);
                let next = fleet.start()?;
                say(t0, &format!("started {}", fleet.services[next].name()));
            }
            Action::ScaleUp { to, gap } => {
                while fleet.running().len() < to {
                    let next = fleet.start()?;
                    say(
                        t0,
                        &format!(
                            "scale up: started {} (sent {}, acked {})",
                            fleet.services[next].name(),
                            producer.sent(),
                            producer.delivered()
                        ),
                    );
                    std::thread::sleep(gap);
                }
            }
            Action::ScaleDown { to, victims_seed } => {
                let mut pick = Rng::new(victims_seed);
                let mut running = fleet.running();
                let mut victims = Vec::new();
                while running.len() > to {
                    victims.push(running.remove(pick.below(running.len())));
                }
                for &v in &victims {
                    fleet.services[v].wait_started(Duration::from_secs(20));
                    fleet.services[v].sigterm()?;
                    say(
                        t0,
                        &format!(
                            "scale down: SIGTERM {} {progress}",
                            fleet.services[v].name()
                        ),
                    );
                }
                for &v in &victims {
                    let status = fleet.services[v].wait(Duration::from_secs(45));
                    let name = fleet.services[v].name();
                    say(t0, &format!("scale down: {name} exited {status:?}"));
                    if !status.is_some_and(|s| s.success()) {
                        report.problems.push(format!(
                            "{name} did not exit 0 after SIGTERM: {status:?}; {}",
                            fleet.services[v].log.display()
                        ));
                    }
                }
            }
            Action::BrokerOutage => {
                let Some(b) = broker else { continue };
                let before = committed_sum(probe);
                let pids: Vec<u32> = fleet
                    .running()
                    .iter()
                    .map(|&i| fleet.services[i].pid())
                    .collect();
                say(
                    t0,
                    &format!("stopping the broker {progress}, committed {before:?}"),
                );
                b.run("stop")?;
                let down = Instant::now();
                say(
                    t0,
                    &format!("broker stopped; starting it again in {:.0?}", plan.outage),
                );
                while down.elapsed() < plan.outage {
                    watch.check(fleet, report, t0)?;
                    std::thread::sleep(Duration::from_millis(100));
                }
                b.run("start")?;
                let up = Instant::now();
                say(
                    t0,
                    &format!(
                        "broker serving again: down {:.1?} in all ({:.0?} stopped, then start-up)",
                        down.elapsed(),
                        plan.outage
                    ),
                );
                // Recovery: the same processes commit beyond what they had before the outage.
                let recovered = loop {
                    watch.check(fleet, report, t0)?;
                    if committed_sum(probe).is_some_and(|c| Some(c) > before) {
                        break Some(up.elapsed());
                    }
                    if up.elapsed() > Duration::from_secs(120) {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                let same: Vec<u32> = fleet
                    .running()
                    .iter()
                    .map(|&i| fleet.services[i].pid())
                    .collect();
                match recovered {
                    Some(d) => {
                        say(
                            t0,
                            &format!("service committing again {d:.1?} after the broker came back"),
                        );
                        report.notes.push(format!(
                            "recovered without a restart: committing again {d:.1?} after the broker was back (processes {pids:?} still {same:?})"
                        ));
                    }
                    None => report.problems.push(
                        "no commit progress within 120 s after the broker came back".to_owned(),
                    ),
                }
                if pids != same {
                    report.problems.push(format!(
                        "the service processes changed across the outage: {pids:?} -> {same:?}"
                    ));
                }
            }
        }
    }
    // Let the producer finish.
    while !producer.is_finished() {
        watch.check(fleet, report, t0)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let produced = producer.join()?;
    say(
        t0,
        &format!(
            "producer done: {} acknowledged, {} failed",
            produced.delivered.iter().filter(|d| **d).count(),
            produced.failures.len()
        ),
    );
    // Drain: the group commits up to the end of the input.
    let ends = kafka::end_offsets(bootstrap, input)?;
    let drain = Instant::now();
    let mut last_print = Instant::now();
    loop {
        watch.check(fleet, report, t0)?;
        let committed = probe.committed().unwrap_or_default();
        if committed == ends {
            say(t0, &format!("drained: committed = end offsets {ends:?}"));
            break;
        }
        if drain.elapsed() > plan.drain_timeout {
            report.problems.push(format!(
                "not drained within {:.0?}: committed {committed:?}, end {ends:?}",
                plan.drain_timeout
            ));
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            let behind: i64 = ends
                .iter()
                .zip(committed.iter().chain(std::iter::repeat(&-1)))
                .map(|(e, c)| e - (*c).max(0))
                .sum();
            say(t0, &format!("draining: {behind} records not committed yet"));
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Graceful stop of what still runs.
    let running = fleet.running();
    for &i in &running {
        fleet.services[i].wait_started(Duration::from_secs(20));
        fleet.services[i].sigterm()?;
    }
    for &i in &running {
        let status = fleet.services[i].wait(Duration::from_secs(45));
        let name = fleet.services[i].name();
        say(t0, &format!("final SIGTERM: {name} exited {status:?}"));
        if !status.is_some_and(|s| s.success()) {
            report.problems.push(format!(
                "{name} did not exit 0 after the final SIGTERM: {status:?}; {}",
                fleet.services[i].log.display()
            ));
        }
    }
    for s in &fleet.services {
        let (skipped, lines) = fleet::grep(&s.log, "record skipped", 3);
        if skipped > 0 {
            report.problems.push(format!(
                "svc{} skipped {skipped} records (recoverer), e.g. {lines:?}",
                s.number
            ));
        }
        let (retries, lines) = fleet::grep(&s.log, "handler failed; retrying", 1);
        if retries > 0 {
            report.notes.push(format!(
                "svc{} retried a handler {retries} times, e.g. {lines:?}",
                s.number
            ));
        }
        let (lost, lines) = fleet::grep(&s.log, "partitions lost", 1);
        if lost > 0 {
            report.notes.push(format!(
                "svc{}: {lost} lost-partition events, e.g. {lines:?}",
                s.number
            ));
        }
    }
    Ok(produced)
}

fn committed_sum(probe: &OffsetsProbe) -> Option<i64> {
    probe
        .committed()
        .ok()
        .map(|c| c.iter().map(|o| (*o).max(0)).sum())
}

/// Notices processes that exit without being told to.
#[derive(Default)]
struct Watch {
    seen: BTreeMap<usize, ()>,
}

impl Watch {
    fn check(&mut self, fleet: &mut Fleet, report: &mut Report, t0: Instant) -> Res<()> {
        for i in fleet.crashed() {
            if self.seen.insert(i, ()).is_some() {
                continue;
            }
            let s = &fleet.services[i];
            let line = format!(
                "{} exited on its own with {:?}; last warnings: {:?}; log {}",
                s.name(),
                s.status,
                fleet::warnings(&s.log, 5),
                s.log.display()
            );
            say(t0, &line);
            report.problems.push(line);
            if fleet.running().is_empty() {
                let next = fleet.start()?;
                say(
                    t0,
                    &format!(
                        "started {} to finish the count",
                        fleet.services[next].name()
                    ),
                );
            }
        }
        Ok(())
    }
}
