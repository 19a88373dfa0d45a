//! kl-bench: the benchmark driver. `scripts/bench` builds everything and runs `kl-bench run`.
//!
//! - `kl-bench prepare`: makes sure the workload topics hold exactly the records asked for
//!   (6 partitions; 100-byte and 1 KiB values), producing them once and reusing them after.
//! - `kl-bench run`: for each payload size and each run, starts every contender as its own
//!   process under `/usr/bin/time` (peak RSS, CPU seconds), each in a fresh consumer group
//!   reading the topic from the beginning until its last record; then the latency runs (a fresh
//!   topic, records sent at a fixed rate once the consumer owns its partitions). Writes every
//!   raw result to `target/bench/results-<time>.json` (and `latest.json`), and prints the
//!   table of medians (with the min–max spread of the runs) and the targets in Markdown (also
//!   written to `latest.md`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use kafka_listener_bench::{now_ns, ContenderReport, ASSIGNED_PREFIX, RESULT_PREFIX};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const PARTITIONS: i32 = 6;

#[derive(Debug, Parser)]
#[command(about = "kafka-listener benchmark driver")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Makes sure the workload topics exist with exactly the records asked for.
    Prepare(PrepareArgs),
    /// Runs the contenders and prints the table.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
struct PrepareArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Records per topic.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value sizes in bytes, comma-separated.
    #[arg(long, default_value = "100,1024")]
    sizes: String,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Quick mode: 100,000 records, 1 run, short latency and sleep runs.
    #[arg(long)]
    quick: bool,
    /// Runs per contender (default 5; 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Records per topic (default 1,000,000; 100,000 with --quick).
    #[arg(long)]
    records: Option<u64>,
    /// Value sizes in bytes, comma-separated.
    #[arg(long, default_value = "100,1024")]
    sizes: String,
    /// Contenders to run, by letter.
    #[arg(long, default_value = "abcdefgh")]
    only: String,
    /// Records contender (d) handles (1 ms each; default 60,000, 12,000 with --quick).
    #[arg(long)]
    sleep_records: Option<u64>,
    /// Records contender (h) handles (1 ms each, by key; default 300,000, 60,000 with --quick).
    #[arg(long)]
    keyed_records: Option<u64>,
    /// Seconds of traffic per latency run (default 10; 4 with --quick).
    #[arg(long)]
    latency_seconds: Option<u64>,
    /// Records per second in the latency runs.
    #[arg(long, default_value_t = 5_000)]
    latency_rate: u64,
    /// Skip the latency runs.
    #[arg(long)]
    no_latency: bool,
    /// A shell command printing the broker's request counts since it started, one `API COUNT`
    /// per line (scripts/bench passes `scripts/kafka-broker request-counts`); read before and
    /// after each latency run.
    #[arg(long)]
    request_counts: Option<String>,
    /// Skip the throughput runs.
    #[arg(long)]
    no_throughput: bool,
    /// Where results go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Where bench-raw and bench-listener are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Contender (e).
    #[arg(
        long,
        default_value = "target/bench/ruststream/release/bench-ruststream"
    )]
    ruststream_bin: PathBuf,
    /// Contender (f).
    #[arg(
        long,
        default_value = "benches/spring/target/kafka-listener-bench-spring.jar"
    )]
    spring_jar: PathBuf,
    /// Contender (g).
    #[arg(long, default_value = "target/bench/rdkafka-perf/rdkafka_performance")]
    perf_bin: PathBuf,
    /// Longest a contender may run, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The command line to record in the results (scripts/bench passes its own).
    #[arg(long, default_value = "")]
    command_line: String,
    /// Extra arguments for one contender, `LETTER:ARGS` (whitespace-separated), repeatable:
    /// `--extra 'b:--set kafka.consumer.max-poll-records=5000'`. For experiments; results
    /// record the full command line of each process.
    #[arg(long, value_name = "LETTER:ARGS")]
    extra: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Contender {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
}

/// Distinct keys of contender (h)'s topic.
const KEYS: u64 = 10_000;

impl Contender {
    const ALL: [Contender; 8] = [
        Contender::A,
        Contender::B,
        Contender::C,
        Contender::D,
        Contender::E,
        Contender::F,
        Contender::G,
        Contender::H,
    ];

    fn letter(self) -> char {
        match self {
            Contender::A => 'a',
            Contender::B => 'b',
            Contender::C => 'c',
            Contender::D => 'd',
            Contender::E => 'e',
            Contender::F => 'f',
            Contender::G => 'g',
            Contender::H => 'h',
        }
    }

    fn name(self) -> &'static str {
        match self {
            Contender::A => "raw rdkafka BaseConsumer loop, async commit per drained batch",
            Contender::B => "kafka-listener, ack-mode batch, no-op handler",
            Contender::C => "kafka-listener, ack-mode record, no-op handler",
            Contender::D => "kafka-listener, handler awaits 1 ms per record",
            Contender::E => "ruststream-rdkafka 0.7, default commit (auto), no-op handler",
            Contender::F => "Spring Boot 4.0 + spring-kafka @KafkaListener, ack-mode BATCH",
            Contender::G => "librdkafka rdkafka_performance -G (C, auto commit)",
            Contender::H => {
                "kafka-listener, handler awaits 1 ms per record, concurrency_per_partition = 64, 10,000 keys"
            }
        }
    }
}

/// One contender process, as measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunResult {
    contender: Contender,
    scenario: String,
    payload_bytes: usize,
    run: usize,
    records_target: u64,
    topic: String,
    group: String,
    ok: bool,
    error: Option<String>,
    spawn_ns: u64,
    exit_ns: u64,
    report: Option<ContenderReport>,
    /// From /usr/bin/time.
    wall_s: Option<f64>,
    user_s: Option<f64>,
    sys_s: Option<f64>,
    max_rss_kib: Option<u64>,
    /// Derived.
    records_per_s: Option<f64>,
    start_to_first_s: Option<f64>,
    join_s: Option<f64>,
    first_excl_join_s: Option<f64>,
    log: String,
    /// Latency runs: requests the broker served during the run, per API (`Fetch`,
    /// `OffsetCommit`), from `--request-counts`.
    #[serde(default)]
    broker_requests: Option<BTreeMap<String, u64>>,
}

impl RunResult {
    fn cpu_s(&self) -> Option<f64> {
        Some(self.user_s? + self.sys_s?)
    }

    /// CPU time (user + sys) per record handled, in µs; the records are those `records_per_s`
    /// counts (for (d), its own prefix of the topic).
    fn cpu_us_per_record(&self) -> Option<f64> {
        let records = self.report.as_ref()?.records;
        if records == 0 {
            return None;
        }
        Some(self.cpu_s()? * 1e6 / records as f64)
    }

    /// Latency runs: requests of `api` the broker served per second of the run (from the
    /// first record to the last).
    fn requests_per_s(&self, api: &str) -> Option<f64> {
        let n = *self.broker_requests.as_ref()?.get(api).unwrap_or(&0);
        let r = self.report.as_ref()?;
        (r.last_ns > r.first_ns).then(|| n as f64 / ((r.last_ns - r.first_ns) as f64 / 1e9))
    }

    fn derive(&mut self) {
        let Some(r) = &self.report else { return };
        if r.last_ns > r.first_ns && r.first_ns > 0 {
            self.records_per_s = Some(r.records as f64 / ((r.last_ns - r.first_ns) as f64 / 1e9));
        }
        if r.first_ns > self.spawn_ns {
            self.start_to_first_s = Some((r.first_ns - self.spawn_ns) as f64 / 1e9);
        }
        if r.assigned_ns > r.ready_ns && r.ready_ns > 0 {
            self.join_s = Some((r.assigned_ns - r.ready_ns) as f64 / 1e9);
        }
        if let (Some(f), Some(j)) = (self.start_to_first_s, self.join_s) {
            self.first_excl_join_s = Some(f - j);
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Prepare(a) => parse_sizes(&a.sizes).and_then(|sizes| {
            for size in sizes {
                prepare_topic(&a.bootstrap, a.records, size)?;
            }
            Ok(())
        }),
        Cmd::Run(a) => run(*a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kl-bench: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_sizes(s: &str) -> BoxResult<Vec<usize>> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .map_err(|e| format!("size {x:?}: {e}").into())
        })
        .collect()
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[kl-bench {}] {}", clock(), msg.as_ref());
}

fn clock() -> String {
    let s = now_ns() / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

// ---------------------------------------------------------------------------------------------
// Topics and producing

fn topic_name(size: usize, records: u64) -> String {
    format!("bench-{size}b-{records}")
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn runtime() -> BoxResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Partition count of `topic`, or `None` if it does not exist.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> BoxResult<Option<usize>> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().len()))
}

fn record_count(consumer: &BaseConsumer, topic: &str, partitions: usize) -> BoxResult<u64> {
    let mut total = 0u64;
    for p in 0..partitions as i32 {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        total += (high - low).max(0) as u64;
    }
    Ok(total)
}

fn create_topic(bootstrap: &str, topic: &str) -> BoxResult<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let results = runtime()?.block_on(admin.create_topics(&[new], &opts))?;
    for r in results {
        if let Err((t, e)) = r {
            return Err(format!("creating topic {t}: {e}").into());
        }
    }
    let consumer: BaseConsumer = base_config(bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while partitions_of(&consumer, topic)? != Some(PARTITIONS as usize) {
        if Instant::now() > deadline {
            return Err(format!("topic {topic} did not appear in the metadata").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn delete_topic(bootstrap: &str, topic: &str) -> BoxResult<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime()?.block_on(admin.delete_topics(&[topic], &opts))?;
    for r in results {
        if let Err((t, e)) = r {
            return Err(format!("deleting topic {t}: {e}").into());
        }
    }
    let consumer: BaseConsumer = base_config(bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while partitions_of(&consumer, topic)?.is_some() {
        if Instant::now() > deadline {
            return Err(format!("topic {topic} still listed after deletion").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

struct CountingContext {
    failed: AtomicU64,
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn producer(bootstrap: &str, linger_ms: &str) -> BoxResult<ThreadedProducer<CountingContext>> {
    let mut c = base_config(bootstrap);
    c.set("linger.ms", linger_ms)
        .set("socket.nagle.disable", "true")
        .set("queue.buffering.max.kbytes", "262144");
    Ok(c.create_with_context(CountingContext {
        failed: AtomicU64::new(0),
    })?)
}

fn send_with_retry(
    p: &ThreadedProducer<CountingContext>,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    payload: &[u8],
) -> BoxResult<()> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic)
        .partition(partition)
        .payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Makes sure `bench-<size>b-<records>` holds exactly `records` records in 6 partitions.
fn prepare_topic(bootstrap: &str, records: u64, size: usize) -> BoxResult<String> {
    let topic = topic_name(size, records);
    let mut payload = vec![0u8; size];
    for (i, b) in payload.iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    let what = format!("records of {size} bytes");
    prepare_workload(bootstrap, &topic, records, &what, |p, i| {
        payload[..8].copy_from_slice(&i.to_be_bytes());
        send_with_retry(p, &topic, (i % PARTITIONS as u64) as i32, None, &payload)
    })?;
    Ok(topic)
}

/// Reuses `topic` if it holds exactly `records` records in 6 partitions; otherwise (re)creates
/// it and produces record `i` for each `i` in `0..records` with `send`, then checks the count.
fn prepare_workload(
    bootstrap: &str,
    topic: &str,
    records: u64,
    what: &str,
    mut send: impl FnMut(&ThreadedProducer<CountingContext>, u64) -> BoxResult<()>,
) -> BoxResult<()> {
    let consumer: BaseConsumer = base_config(bootstrap).create()?;
    if let Some(parts) = partitions_of(&consumer, topic)? {
        let have = record_count(&consumer, topic, parts)?;
        if parts == PARTITIONS as usize && have == records {
            log(format!("workload {topic}: {have} records, reused"));
            return Ok(());
        }
        log(format!(
            "workload {topic}: {parts} partitions, {have} records; recreating"
        ));
        delete_topic(bootstrap, topic)?;
    }
    create_topic(bootstrap, topic)?;
    let started = Instant::now();
    let p = producer(bootstrap, "20")?;
    for i in 0..records {
        send(&p, i)?;
    }
    p.flush(Duration::from_secs(120))?;
    let failed = p.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} records of {topic} could not be produced").into());
    }
    let have = record_count(&consumer, topic, PARTITIONS as usize)?;
    if have != records {
        return Err(format!("{topic} holds {have} records after producing {records}").into());
    }
    log(format!(
        "workload {topic}: produced {records} {what} in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Waits (at most 20 s) until the machine is at least 80 % idle over one second, so a latency
/// run does not start while the broker still digests the previous one (its commits, log
/// flushes, group cleanup).
fn settle() {
    fn cpu() -> Option<(u64, u64)> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((idle, v.iter().sum()))
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let Some((i0, t0)) = cpu() else { return };
        std::thread::sleep(Duration::from_secs(1));
        let Some((i1, t1)) = cpu() else { return };
        if t1 > t0 && (i1 - i0) as f64 / (t1 - t0) as f64 >= 0.8 {
            break;
        }
    }
    if started.elapsed() > Duration::from_secs(2) {
        log(format!(
            "waited {:.0} s for the machine to settle",
            started.elapsed().as_secs_f64()
        ));
    }
}

/// The broker's request counts per API, from `cmd` (`API COUNT` lines); `None` if it fails.
fn request_counts(cmd: &str) -> Option<BTreeMap<String, u64>> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().ok()?;
    if !out.status.success() {
        log(format!(
            "request counts ({cmd}) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return None;
    }
    let counts: BTreeMap<String, u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect();
    (!counts.is_empty()).then_some(counts)
}

/// Contender (h)'s workload: `records` 100-byte records with 10,000 keys (`key-00000` …),
/// record `i` keyed `i % 10,000` and carrying `i` in its first 8 bytes; a key's records all go
/// to one partition (key index modulo the partitions), so per-key order can be checked.
fn prepare_keyed_topic(bootstrap: &str, records: u64) -> BoxResult<String> {
    let topic = format!("bench-keyed-100b-{records}");
    let mut payload = vec![b'k'; 100];
    prepare_workload(bootstrap, &topic, records, "keyed records", |p, i| {
        let k = i % KEYS;
        payload[..8].copy_from_slice(&i.to_be_bytes());
        let key = format!("key-{k:05}");
        let partition = (k % PARTITIONS as u64) as i32;
        send_with_retry(p, &topic, partition, Some(key.as_bytes()), &payload)
    })?;
    Ok(topic)
}

/// Sends `records` 100-byte records at `rate` per second, each carrying its send time.
fn produce_paced(
    p: &ThreadedProducer<CountingContext>,
    topic: &str,
    records: u64,
    rate: u64,
) -> BoxResult<()> {
    let mut payload = vec![b'x'; 100];
    let start = Instant::now();
    let step = 1e9 / rate as f64;
    for i in 0..records {
        let due = start + Duration::from_nanos((i as f64 * step) as u64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        payload[..8].copy_from_slice(&now_ns().to_be_bytes());
        send_with_retry(p, topic, (i % PARTITIONS as u64) as i32, None, &payload)?;
    }
    p.flush(Duration::from_secs(30))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Contender processes

struct Paths {
    bin_dir: PathBuf,
    ruststream_bin: PathBuf,
    spring_jar: PathBuf,
    perf_bin: PathBuf,
}

fn command_for(
    c: Contender,
    paths: &Paths,
    bootstrap: &str,
    topic: &str,
    group: &str,
    records: u64,
    warmup: Option<u64>,
) -> Vec<String> {
    let s = |x: &str| x.to_owned();
    let p = |x: &Path| x.display().to_string();
    let rust_args = |mut v: Vec<String>| {
        v.extend([
            s("--bootstrap"),
            s(bootstrap),
            s("--topic"),
            s(topic),
            s("--group"),
            s(group),
            s("--records"),
            records.to_string(),
        ]);
        if let Some(w) = warmup {
            v.extend([s("--latency-warmup"), w.to_string()]);
        }
        v
    };
    match c {
        Contender::A => rust_args(vec![p(&paths.bin_dir.join("bench-raw"))]),
        Contender::B | Contender::C | Contender::D | Contender::H => {
            let mode = match c {
                Contender::B => "batch",
                Contender::C => "record",
                Contender::H => "keyed",
                _ => "sleep",
            };
            rust_args(vec![
                p(&paths.bin_dir.join("bench-listener")),
                s("--mode"),
                s(mode),
            ])
        }
        Contender::E => rust_args(vec![p(&paths.ruststream_bin)]),
        Contender::F => {
            let mut v = vec![
                s("java"),
                s("-jar"),
                p(&paths.spring_jar),
                format!("--bench.bootstrap={bootstrap}"),
                format!("--bench.topic={topic}"),
                format!("--bench.group={group}"),
                format!("--bench.records={records}"),
            ];
            if let Some(w) = warmup {
                v.push(format!("--bench.latency-warmup={w}"));
            }
            v
        }
        Contender::G => vec![
            s("stdbuf"),
            s("-oL"),
            p(&paths.perf_bin),
            s("-G"),
            s(group),
            s("-t"),
            s(topic),
            s("-b"),
            s(bootstrap),
            s("-c"),
            records.to_string(),
            s("-i"),
            s("100"),
            s("-X"),
            s("auto.offset.reset=earliest"),
        ],
    }
}

struct Line {
    at_ns: u64,
    err: bool,
    text: String,
}

struct Finished {
    spawn_ns: u64,
    exit_ns: u64,
    lines: Vec<Line>,
    timed_out: bool,
    exit_ok: bool,
    time: Option<(f64, f64, f64, u64)>,
}

/// Runs `cmd` under /usr/bin/time in its own process group; `on_line` sees every output line
/// as it arrives (with the driver's clock).
fn run_process(
    cmd: &[String],
    log_path: &Path,
    timeout: Duration,
    on_line: &mut dyn FnMut(&Line),
) -> BoxResult<Finished> {
    let time_file = log_path.with_extension("time");
    let _ = fs::remove_file(&time_file);
    let mut log_file = File::create(log_path)?;
    writeln!(log_file, "$ {}", cmd.join(" "))?;
    let mut command = Command::new("/usr/bin/time");
    command
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&time_file)
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let spawn_ns = now_ns();
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<Line>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for text in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(Line {
                    at_ns: now_ns(),
                    err: false,
                    text,
                });
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for text in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(Line {
                    at_ns: now_ns(),
                    err: true,
                    text,
                });
            }
        }));
    }
    drop(tx);
    let mut lines = Vec::new();
    let mut timed_out = false;
    let mut deadline = started + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let ms = line.at_ns.saturating_sub(spawn_ns) as f64 / 1e6;
                writeln!(
                    log_file,
                    "{ms:>10.1} {} {}",
                    if line.err { "E" } else { "O" },
                    line.text
                )?;
                on_line(&line);
                if line.text.starts_with(RESULT_PREFIX) {
                    // Graceful shutdown gets a bounded grace period.
                    deadline = deadline.min(Instant::now() + Duration::from_secs(60));
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                writeln!(log_file, "kl-bench: timed out; killing process group {pid}")?;
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(format!("-{pid}"))
                    .status();
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    let exit_ns = now_ns();
    for r in readers {
        let _ = r.join();
    }
    let time = fs::read_to_string(&time_file).ok().and_then(|t| {
        let last = t.lines().rev().find(|l| !l.trim().is_empty())?.to_owned();
        let f: Vec<&str> = last.split_whitespace().collect();
        if f.len() != 4 {
            return None;
        }
        Some((
            f[0].parse().ok()?,
            f[1].parse().ok()?,
            f[2].parse().ok()?,
            f[3].parse().ok()?,
        ))
    });
    writeln!(log_file, "kl-bench: exit {status}; time {time:?}")?;
    Ok(Finished {
        spawn_ns,
        exit_ns,
        lines,
        timed_out,
        exit_ok: status.success(),
        time,
    })
}

/// rdkafka_performance prints no result line of ours: read its own output.
fn perf_report(lines: &[Line]) -> Option<ContenderReport> {
    let mut report = ContenderReport::default();
    let mut last: Option<(u64, u64)> = None; // (messages, ms) of the last summary
    for l in lines {
        let t = l.text.as_str();
        if l.err && t.contains("Waiting for group rebalance") && report.ready_ns == 0 {
            report.ready_ns = l.at_ns;
        }
        if l.err
            && t.contains("Group rebalanced")
            && t.contains("assigned")
            && report.assigned_ns == 0
        {
            report.assigned_ns = l.at_ns;
        }
        // "% 123 messages (12300 bytes) consumed in 456ms: 269 msgs/s (0.03 MB/s)"
        if let Some(rest) = t.strip_prefix("% ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if words.len() > 5 && words[1] == "messages" && words[4] == "consumed" {
                let msgs: u64 = words[0].parse().ok()?;
                let ms: u64 = words[6]
                    .trim_end_matches(':')
                    .trim_end_matches("ms")
                    .parse()
                    .ok()?;
                if msgs > 0 && report.first_ns == 0 && !l.err {
                    report.first_ns = l.at_ns.saturating_sub(ms * 1_000_000);
                }
                last = Some((msgs, ms));
            }
        }
    }
    let (msgs, ms) = last?;
    if report.first_ns == 0 {
        return None;
    }
    report.records = msgs;
    report.last_ns = report.first_ns + ms * 1_000_000;
    Some(report)
}

#[allow(clippy::too_many_arguments)]
fn run_contender(
    c: Contender,
    scenario: &str,
    size: usize,
    run: usize,
    args: &RunArgs,
    paths: &Paths,
    topic: &str,
    records: u64,
    warmup: Option<u64>,
    logs: &Path,
    on_assigned: &mut dyn FnMut(),
) -> BoxResult<RunResult> {
    let group = format!(
        "bench-{}-{scenario}-{size}-{}-{run}",
        c.letter(),
        now_ns() / 1_000_000
    );
    let mut cmd = command_for(c, paths, &args.bootstrap, topic, &group, records, warmup);
    for extra in &args.extra {
        if let Some(rest) = extra.strip_prefix(&format!("{}:", c.letter())) {
            cmd.extend(rest.split_whitespace().map(str::to_owned));
        }
    }
    let log_path = logs.join(format!("{scenario}-{size}b-run{run}-{}.log", c.letter()));
    let mut assigned = false;
    let finished = run_process(
        &cmd,
        &log_path,
        Duration::from_secs(args.timeout),
        &mut |line| {
            if !assigned && line.text.starts_with(ASSIGNED_PREFIX) {
                assigned = true;
                on_assigned();
            }
        },
    )?;
    let report = if c == Contender::G {
        perf_report(&finished.lines)
    } else {
        finished.lines.iter().find_map(|l| {
            l.text
                .strip_prefix(RESULT_PREFIX)
                .and_then(|j| serde_json::from_str::<ContenderReport>(j).ok())
        })
    };
    let mut error = None;
    if finished.timed_out {
        error = Some(format!("timed out after {} s", args.timeout));
    } else if report.is_none() {
        error = Some("no result line".to_owned());
    } else if !finished.exit_ok {
        error = Some("non-zero exit".to_owned());
    }
    if let Some(r) = &report {
        if r.records < records {
            error = Some(format!("handled {} of {records} records", r.records));
        }
    }
    let (wall_s, user_s, sys_s, max_rss_kib) = match finished.time {
        Some((w, u, s, m)) => (Some(w), Some(u), Some(s), Some(m)),
        None => (None, None, None, None),
    };
    let mut result = RunResult {
        contender: c,
        scenario: scenario.to_owned(),
        payload_bytes: size,
        run,
        records_target: records,
        topic: topic.to_owned(),
        group,
        ok: error.is_none(),
        error,
        spawn_ns: finished.spawn_ns,
        exit_ns: finished.exit_ns,
        report,
        wall_s,
        user_s,
        sys_s,
        max_rss_kib,
        records_per_s: None,
        start_to_first_s: None,
        join_s: None,
        first_excl_join_s: None,
        log: log_path.display().to_string(),
        broker_requests: None,
    };
    result.derive();
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// The run

struct Plan {
    runs: usize,
    records: u64,
    sleep_records: u64,
    keyed_records: u64,
    latency_records: u64,
    latency_warmup: u64,
}

fn run(args: RunArgs) -> BoxResult<()> {
    let plan = Plan {
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 5 }),
        records: args
            .records
            .unwrap_or(if args.quick { 100_000 } else { 1_000_000 }),
        sleep_records: args
            .sleep_records
            .unwrap_or(if args.quick { 12_000 } else { 60_000 }),
        keyed_records: args
            .keyed_records
            .unwrap_or(if args.quick { 60_000 } else { 300_000 }),
        latency_records: args
            .latency_seconds
            .unwrap_or(if args.quick { 4 } else { 10 })
            * args.latency_rate,
        // The first second is warm-up (connections, JIT); not counted.
        latency_warmup: args.latency_rate,
    };
    let sizes = parse_sizes(&args.sizes)?;
    let contenders: Vec<Contender> = Contender::ALL
        .into_iter()
        .filter(|c| args.only.contains(c.letter()))
        .collect();
    let paths = Paths {
        bin_dir: args.bin_dir.clone(),
        ruststream_bin: args.ruststream_bin.clone(),
        spring_jar: args.spring_jar.clone(),
        perf_bin: args.perf_bin.clone(),
    };
    let stamp = now_ns() / 1_000_000_000;
    let loadavg_at_start = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let logs = args.out.join("logs").join(stamp.to_string());
    fs::create_dir_all(&logs)?;
    let mut results: Vec<RunResult> = Vec::new();
    let started = Instant::now();

    if !args.no_throughput {
        let keyed = if contenders.contains(&Contender::H) {
            Some(prepare_keyed_topic(&args.bootstrap, plan.keyed_records)?)
        } else {
            None
        };
        for &size in &sizes {
            let topic = prepare_topic(&args.bootstrap, plan.records, size)?;
            for run in 1..=plan.runs {
                for &c in &contenders {
                    // (d) and (h) are I/O-bound (1 ms per record), 100-byte records only:
                    // (d) a prefix of the 100-byte topic, (h) its own keyed topic.
                    let (records, topic) = match c {
                        Contender::D | Contender::H if size != sizes[0] => continue,
                        Contender::D => (plan.sleep_records.min(plan.records), &topic),
                        Contender::H => match &keyed {
                            Some(k) => (plan.keyed_records, k),
                            None => continue,
                        },
                        _ => (plan.records, &topic),
                    };
                    let r = run_contender(
                        c,
                        "throughput",
                        size,
                        run,
                        &args,
                        &paths,
                        topic,
                        records,
                        None,
                        &logs,
                        &mut || {},
                    )?;
                    log(describe(&r));
                    results.push(r);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    if !args.no_latency {
        let latency_contenders: Vec<Contender> = contenders
            .iter()
            .copied()
            .filter(|c| matches!(c, Contender::A | Contender::B | Contender::F))
            .collect();
        for run in 1..=plan.runs {
            // Rotated, so no contender always runs right after the same one.
            let mut order = latency_contenders.clone();
            let shift = (run - 1) % order.len().max(1);
            order.rotate_left(shift);
            for &c in &order {
                let topic = format!("bench-lat-{stamp}-{run}-{}", c.letter());
                create_topic(&args.bootstrap, &topic)?;
                let p = producer(&args.bootstrap, "0")?;
                // Connect and learn the leaders before the clock starts.
                p.client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(10))?;
                let mut sender: Option<std::thread::JoinHandle<Result<(), String>>> = None;
                let (records, rate) = (plan.latency_records, args.latency_rate);
                let t = topic.clone();
                let mut start_sender = || {
                    let (p, t) = (p.clone(), t.clone());
                    sender = Some(std::thread::spawn(move || {
                        produce_paced(&p, &t, records, rate).map_err(|e| e.to_string())
                    }));
                };
                settle();
                let before = args.request_counts.as_deref().and_then(request_counts);
                let mut r = run_contender(
                    c,
                    "latency",
                    100,
                    run,
                    &args,
                    &paths,
                    &topic,
                    plan.latency_records,
                    Some(plan.latency_warmup),
                    &logs,
                    &mut start_sender,
                )?;
                let after = args.request_counts.as_deref().and_then(request_counts);
                if let (Some(before), Some(after)) = (before, after) {
                    r.broker_requests = Some(
                        after
                            .iter()
                            .map(|(k, v)| {
                                (k.clone(), v - before.get(k).copied().unwrap_or(0).min(*v))
                            })
                            .filter(|(_, v)| *v > 0)
                            .collect(),
                    );
                }
                match sender.take().map(|h| h.join()) {
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        r.ok = false;
                        r.error = Some(format!("producer: {e}"));
                    }
                    Some(Err(_)) => {
                        r.ok = false;
                        r.error = Some("producer thread panicked".to_owned());
                    }
                    None => {
                        r.ok = false;
                        r.error = Some("never announced its assignment".to_owned());
                    }
                }
                if r.report.as_ref().and_then(|x| x.latency).is_none() {
                    r.ok = false;
                    r.error
                        .get_or_insert_with(|| "no latency figures".to_owned());
                }
                log(describe(&r));
                results.push(r);
                if let Err(e) = delete_topic(&args.bootstrap, &topic) {
                    log(format!("could not delete {topic}: {e}"));
                }
            }
        }
    }

    let table = render(&results, &plan, &sizes, &contenders);
    let machine = machine();
    let doc = serde_json::json!({
        "stamp": stamp,
        "command": args.command_line,
        "machine": machine,
        "loadavg_at_start": loadavg_at_start.trim(),
        "plan": {
            "runs": plan.runs,
            "records": plan.records,
            "sleep_records": plan.sleep_records,
            "keyed_records": plan.keyed_records,
            "latency_records": plan.latency_records,
            "latency_rate": args.latency_rate,
            "latency_warmup": plan.latency_warmup,
            "sizes": sizes,
        },
        "elapsed_s": started.elapsed().as_secs_f64(),
        "results": results,
        "table_markdown": table,
    });
    let json = serde_json::to_string_pretty(&doc)?;
    let file = args.out.join(format!("results-{stamp}.json"));
    fs::write(&file, &json)?;
    fs::write(args.out.join("latest.json"), &json)?;
    fs::write(args.out.join("latest.md"), &table)?;
    println!("{table}");
    log(format!(
        "raw results: {} (logs in {}); {:.0} s in all",
        file.display(),
        logs.display(),
        started.elapsed().as_secs_f64()
    ));
    if results.iter().any(|r| !r.ok) {
        return Err("some contender runs failed (see the table and the logs)".into());
    }
    Ok(())
}

fn describe(r: &RunResult) -> String {
    let f = |x: Option<f64>, d: usize| x.map_or("-".to_owned(), |v| format!("{v:.d$}"));
    let lat = r
        .report
        .as_ref()
        .and_then(|x| x.latency)
        .map(|l| format!(" p50 {:.2} ms p99 {:.2} ms", l.p50_us / 1e3, l.p99_us / 1e3))
        .unwrap_or_default();
    format!(
        "({}) {} {}b run {}: {} rec/s, rss {} MiB, cpu {} s, first {} s, join {} s{}{}",
        r.contender.letter(),
        r.scenario,
        r.payload_bytes,
        r.run,
        f(r.records_per_s, 0),
        f(r.max_rss_kib.map(|k| k as f64 / 1024.0), 1),
        f(r.cpu_s(), 2),
        f(r.start_to_first_s, 3),
        f(r.join_s, 3),
        lat,
        r.error
            .as_ref()
            .map(|e| format!(" FAILED: {e}"))
            .unwrap_or_default()
    )
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median, smallest and largest over the successful runs.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn spread(v: Vec<f64>) -> Option<Spread> {
    let (min, max) = (
        v.iter().copied().reduce(f64::min)?,
        v.iter().copied().reduce(f64::max)?,
    );
    let n = v.len();
    Some(Spread {
        median: median(v)?,
        min,
        max,
        n,
    })
}

/// `median (min–max)`; only the median when a single run counted.
fn show(s: Option<Spread>, f: &dyn Fn(f64) -> String) -> String {
    match s {
        None => "—".to_owned(),
        Some(s) if s.n > 1 => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
        Some(s) => f(s.median),
    }
}

#[derive(Default, Clone, Copy)]
struct Medians {
    runs: usize,
    rate: Option<Spread>,
    cpu_us: Option<Spread>,
    rss_mib: Option<f64>,
    cpu_s: Option<f64>,
    first_s: Option<f64>,
    join_s: Option<f64>,
    first_excl_s: Option<f64>,
    p50_ms: Option<Spread>,
    p99_ms: Option<Spread>,
    max_ms: Option<f64>,
    /// Latency runs: the broker's Fetch and OffsetCommit requests per second of the run.
    fetches_per_s: Option<f64>,
    commits_per_s: Option<f64>,
}

fn medians<'a>(rs: impl Iterator<Item = &'a RunResult>) -> Medians {
    let ok: Vec<&RunResult> = rs.filter(|r| r.ok).collect();
    let all = |f: &dyn Fn(&RunResult) -> Option<f64>| -> Vec<f64> {
        ok.iter().filter_map(|r| f(r)).collect()
    };
    let m = |f: &dyn Fn(&RunResult) -> Option<f64>| median(all(f));
    let s = |f: &dyn Fn(&RunResult) -> Option<f64>| spread(all(f));
    let lat = |f: &dyn Fn(&kafka_listener_bench::LatencySummary) -> f64| {
        all(&|r| r.report.as_ref()?.latency.as_ref().map(|l| f(l) / 1e3))
    };
    Medians {
        runs: ok.len(),
        rate: s(&|r| r.records_per_s),
        cpu_us: s(&|r| r.cpu_us_per_record()),
        rss_mib: m(&|r| r.max_rss_kib.map(|k| k as f64 / 1024.0)),
        cpu_s: m(&|r| r.cpu_s()),
        first_s: m(&|r| r.start_to_first_s),
        join_s: m(&|r| r.join_s),
        first_excl_s: m(&|r| r.first_excl_join_s),
        p50_ms: spread(lat(&|l| l.p50_us)),
        p99_ms: spread(lat(&|l| l.p99_us)),
        max_ms: median(lat(&|l| l.max_us)),
        fetches_per_s: m(&|r| r.requests_per_s("Fetch")),
        commits_per_s: m(&|r| r.requests_per_s("OffsetCommit")),
    }
}

fn fmt(x: Option<f64>, d: usize) -> String {
    x.map_or("—".to_owned(), |v| format!("{v:.d$}"))
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn render(results: &[RunResult], plan: &Plan, sizes: &[usize], contenders: &[Contender]) -> String {
    let mut out = String::new();
    let mut by: BTreeMap<(String, usize, Contender), Medians> = BTreeMap::new();
    for r in results {
        let key = (r.scenario.clone(), r.payload_bytes, r.contender);
        if by.contains_key(&key) {
            continue;
        }
        let m = medians(results.iter().filter(|x| {
            x.scenario == r.scenario
                && x.payload_bytes == r.payload_bytes
                && x.contender == r.contender
        }));
        by.insert(key, m);
    }
    let get = |s: &str, size: usize, c: Contender| by.get(&(s.to_owned(), size, c)).copied();
    let med = |s: Option<Spread>| s.map(|s| s.median);
    let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let dec = |d: usize| move |v: f64| format!("{v:.d$}");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let targets = |out: &mut String, title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            out.push_str(&format!("\n### Targets ({title})\n\n"));
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
    };
    for &size in sizes {
        if !results
            .iter()
            .any(|r| r.scenario == "throughput" && r.payload_bytes == size)
        {
            continue;
        }
        out.push_str(&format!(
            "\n### {size}-byte records: {} per run, 6 partitions, median (min–max) of {} run(s)\n\n",
            thousands(plan.records as f64),
            plan.runs
        ));
        out.push_str("| | contender | records/s | × (a) | CPU µs/record | CPU × (a) | peak RSS MiB | CPU s | start → first record s | group join s | first record excl. join s | runs ok |\n");
        out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let t = |c| get("throughput", size, c);
        let rate = |m: Option<Medians>| med(m?.rate);
        let cpu = |m: Option<Medians>| med(m?.cpu_us);
        let floor = t(Contender::A);
        for &c in contenders {
            let Some(m) = t(c) else {
                continue;
            };
            let name = match c {
                Contender::D => format!(
                    "{} ({} records)",
                    c.name(),
                    thousands(plan.sleep_records.min(plan.records) as f64)
                ),
                Contender::H => format!(
                    "{} ({} records)",
                    c.name(),
                    thousands(plan.keyed_records as f64)
                ),
                _ => c.name().to_owned(),
            };
            out.push_str(&format!(
                "| ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} |\n",
                c.letter(),
                name,
                show(m.rate, &thousands),
                fmt(ratio(rate(Some(m)), rate(floor)), 2),
                show(m.cpu_us, &dec(2)),
                fmt(ratio(cpu(Some(m)), cpu(floor)), 2),
                fmt(m.rss_mib, 1),
                fmt(m.cpu_s, 2),
                fmt(m.first_s, 3),
                fmt(m.join_s, 3),
                fmt(m.first_excl_s, 3),
                m.runs,
                plan.runs
            ));
        }
        // Targets (issue 9), from this table's medians.
        let (a, b, c_, f) = (
            t(Contender::A),
            t(Contender::B),
            t(Contender::C),
            t(Contender::F),
        );
        let mut lines = Vec::new();
        if let Some(r) = ratio(rate(b), rate(a)) {
            lines.push(format!(
                "- (b) batch mode ≥ 0.95 × (a) records/s: {r:.2} × — {}",
                verdict(r >= 0.95)
            ));
        }
        if let Some(r) = ratio(rate(c_), rate(a)) {
            lines.push(format!(
                "- (c) record mode ≥ 0.85 × (a) records/s: {r:.2} × — {}",
                verdict(r >= 0.85)
            ));
        }
        if let (Some(xb), Some(xa)) = (cpu(b), cpu(a)) {
            lines.push(format!(
                "- (b) CPU µs/record ≤ (a)'s: {xb:.2} vs {xa:.2} µs/record — {}",
                verdict(xb <= xa)
            ));
        }
        if let Some(r) = ratio(rate(b), rate(f)) {
            lines.push(format!(
                "- (b) ≥ 3 × (f) Spring records/s: {r:.2} × — {}",
                verdict(r >= 3.0)
            ));
        }
        if let Some(x) = rate(t(Contender::H)) {
            lines.push(format!(
                "- (h) 1 ms handler by key ≥ 50,000 records/s on 6 partitions, per-key order checked: {} records/s — {}",
                thousands(x),
                verdict(x >= 50_000.0)
            ));
        }
        if let (Some(rb), Some(rf)) = (b.and_then(|m| m.rss_mib), f.and_then(|m| m.rss_mib)) {
            lines.push(format!(
                "- peak RSS (b) ≤ 1/10 of (f): {rb:.1} MiB vs {rf:.1} MiB = 1/{:.1} — {}",
                rf / rb,
                verdict(rb * 10.0 <= rf)
            ));
        }
        for (label, m) in [("b", b), ("c", c_)] {
            if let Some(x) = m.and_then(|m| m.first_excl_s) {
                lines.push(format!(
                    "- ({label}) first record within 1 s of start, excluding the group join: {x:.3} s — {}",
                    verdict(x <= 1.0)
                ));
            }
        }
        targets(&mut out, &format!("{size}-byte records"), lines);
    }
    if results.iter().any(|r| r.scenario == "latency") {
        out.push_str(&format!(
            "\n### End-to-end latency at {} records/s (send → handler), 100-byte records, {} s per run after 1 s warm-up, median (min–max) of {} run(s)\n\n",
            thousands(plan.latency_warmup as f64),
            (plan.latency_records - plan.latency_warmup) / plan.latency_warmup.max(1),
            plan.runs
        ));
        out.push_str(
            "| | contender | p50 ms | p99 ms | max ms | broker Fetch/s | broker OffsetCommit/s | runs ok |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for &c in contenders {
            let Some(m) = get("latency", 100, c) else {
                continue;
            };
            out.push_str(&format!(
                "| ({}) | {} | {} | {} | {} | {} | {} | {}/{} |\n",
                c.letter(),
                c.name(),
                show(m.p50_ms, &dec(2)),
                show(m.p99_ms, &dec(2)),
                fmt(m.max_ms, 1),
                fmt(m.fetches_per_s, 0),
                fmt(m.commits_per_s, 0),
                m.runs,
                plan.runs
            ));
        }
        // Targets (issue 9), from this table's medians.
        let (b, f) = (
            get("latency", 100, Contender::B),
            get("latency", 100, Contender::F),
        );
        let p50 = |m: Option<Medians>| med(m?.p50_ms);
        let p99 = |m: Option<Medians>| med(m?.p99_ms);
        let mut lines = Vec::new();
        if let Some(x) = p50(b) {
            lines.push(format!(
                "- (b) p50 ≤ 5 ms: {x:.2} ms — {}",
                verdict(x <= 5.0)
            ));
        }
        if let Some(x) = p99(b) {
            lines.push(format!(
                "- (b) p99 ≤ 50 ms: {x:.2} ms — {}",
                verdict(x <= 50.0)
            ));
        }
        for (label, (pb, pf)) in [("p50", (p50(b), p50(f))), ("p99", (p99(b), p99(f)))] {
            if let (Some(xb), Some(xf)) = (pb, pf) {
                lines.push(format!(
                    "- (b) {label} below (f)'s: {xb:.2} ms vs {xf:.2} ms — {}",
                    verdict(xb < xf)
                ));
            }
        }
        targets(&mut out, "latency, 100-byte records", lines);
    }
    out
}

fn machine() -> serde_json::Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|x| x.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_kib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let loadavg = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    serde_json::json!({
        "commit": git(&["rev-parse", "--short", "HEAD"]),
        "worktree_clean": git(&["status", "--porcelain", "--untracked-files=no"]).is_empty(),
        "loadavg_at_end": loadavg.trim(),
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "mem_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel,
        "librdkafka": librdkafka,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_listener_bench::LatencySummary;

    /// A successful run with these figures: (records/s, CPU s, peak RSS MiB), latency (p50, p99) ms.
    fn result(
        c: Contender,
        scenario: &str,
        size: usize,
        run: usize,
        (rate, cpu_s, rss_mib): (f64, f64, f64),
        latency: Option<(f64, f64)>,
    ) -> RunResult {
        let records = if c == Contender::D { 60_000 } else { 1_000_000 };
        let first_ns = 2_000_000_000;
        let mut r = RunResult {
            contender: c,
            scenario: scenario.to_owned(),
            payload_bytes: size,
            run,
            records_target: records,
            topic: String::new(),
            group: String::new(),
            ok: true,
            error: None,
            spawn_ns: 1_800_000_000,
            exit_ns: 0,
            report: Some(ContenderReport {
                ready_ns: 1_850_000_000,
                assigned_ns: 1_900_000_000,
                first_ns,
                last_ns: first_ns + (records as f64 / rate * 1e9) as u64,
                records,
                latency: latency.map(|(p50, p99)| LatencySummary {
                    samples: 45_000,
                    p50_us: p50 * 1e3,
                    p99_us: p99 * 1e3,
                    max_us: p99 * 1.1e3,
                }),
            }),
            wall_s: Some(2.0),
            user_s: Some(cpu_s * 0.75),
            sys_s: Some(cpu_s * 0.25),
            max_rss_kib: Some((rss_mib * 1024.0) as u64),
            records_per_s: None,
            start_to_first_s: None,
            join_s: None,
            first_excl_join_s: None,
            log: String::new(),
            broker_requests: None,
        };
        r.derive();
        r
    }

    #[test]
    fn render_shows_spread_cpu_per_record_and_targets() {
        use Contender::{A, B, C, D, F};
        let plan = Plan {
            runs: 2,
            records: 1_000_000,
            sleep_records: 60_000,
            keyed_records: 300_000,
            latency_records: 50_000,
            latency_warmup: 5_000,
        };
        let mut results = Vec::new();
        for run in 1..=2 {
            let k = if run == 1 { 0.9 } else { 1.1 };
            for (c, rate, cpu, rss) in [
                (A, 1_400_000.0, 0.69, 71.5),
                (B, 1_350_000.0, 0.65, 30.0),
                (C, 1_200_000.0, 0.80, 32.0),
                (D, 2_477.0, 0.86, 29.5),
                (F, 400_000.0, 6.9, 330.1),
            ] {
                results.push(result(
                    c,
                    "throughput",
                    100,
                    run,
                    (rate * k, cpu * k, rss),
                    None,
                ));
            }
            for (c, p50, p99) in [(A, 139.75, 441.43), (B, 3.0, 40.0), (F, 3.26, 181.83)] {
                let figures = (5_000.0, 1.0, 30.0);
                let lat = Some((p50 * k, p99 * k));
                results.push(result(c, "latency", 100, run, figures, lat));
            }
            // 1 KiB: (b) misses, (c)'s runs failed, (a) and (f) ran once.
            let mut failed = result(C, "throughput", 1024, run, (900_000.0, 1.4, 105.8), None);
            failed.ok = false;
            results.push(failed);
            results.push(result(
                B,
                "throughput",
                1024,
                run,
                (950_000.0, 1.41, 107.8),
                None,
            ));
            if run == 1 {
                results.push(result(
                    A,
                    "throughput",
                    1024,
                    run,
                    (1_200_000.0, 0.9, 36.4),
                    None,
                ));
                results.push(result(
                    F,
                    "throughput",
                    1024,
                    run,
                    (330_000.0, 8.29, 515.6),
                    None,
                ));
            }
        }
        let md = render(&results, &plan, &[100, 1024], &Contender::ALL);
        println!("{md}");
        for expected in [
            "| (a) | raw rdkafka BaseConsumer loop, async commit per drained batch | 1,400,000 (1,260,000–1,540,000) | 1.00 | 0.69 (0.62–0.76) | 1.00 |",
            "| (a) | raw rdkafka BaseConsumer loop, async commit per drained batch | 1,200,000 | 1.00 | 0.90 | 1.00 |",
            "| (b) | kafka-listener, ack-mode batch, no-op handler | 3.00 (2.70–3.30) | 40.00 (36.00–44.00) |",
            "| (c) | kafka-listener, ack-mode record, no-op handler | — | — | — | — | — | — | — | — | — | 0/2 |",
            "### Targets (100-byte records)\n\n- (b) batch mode ≥ 0.95 × (a) records/s: 0.96 × — met\n",
            "- (b) ≥ 3 × (f) Spring records/s: 3.38 × — met",
            "### Targets (1024-byte records)\n\n- (b) batch mode ≥ 0.95 × (a) records/s: 0.79 × — MISSED\n",
            "- peak RSS (b) ≤ 1/10 of (f): 107.8 MiB vs 515.6 MiB = 1/4.8 — MISSED",
            "### Targets (latency, 100-byte records)\n\n- (b) p50 ≤ 5 ms: 3.00 ms — met\n- (b) p99 ≤ 50 ms: 40.00 ms — met\n- (b) p50 below (f)'s: 3.00 ms vs 3.26 ms — met\n- (b) p99 below (f)'s: 40.00 ms vs 181.83 ms — met\n",
        ] {
            assert!(md.contains(expected), "missing {expected:?}");
        }
        let target_lines = md.lines().filter(|l| l.starts_with("- "));
        assert!(target_lines
            .clone()
            .all(|l| l.ends_with(" met") || l.ends_with(" MISSED")));
        assert_eq!(target_lines.count(), 7 + 5 + 4);
    }
}
