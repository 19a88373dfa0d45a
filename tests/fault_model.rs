//! The model-based fault test: random, seeded schedules drive real listeners through handler
//! outcomes, seeks, nacks, pause/resume/stop/start, consumers joining and leaving, short
//! shutdown timeouts and broker request errors; after each schedule the invariants are checked
//! against the broker's committed offsets and the log of handler calls.
//!
//! - `embedded_schedules`: many fast cases on librdkafka's mock cluster (explicit partitions,
//!   so no group join delay), with request errors injected into commits, fetches and offset
//!   lookups.
//! - `real_broker_schedules`: fewer, longer cases on the real broker with group subscription:
//!   a second consumer process-alike joins and leaves (eager or cooperative-sticky).
//!
//! A third of the schedules run with key lanes (`concurrency-per-partition = 4`, seven keys
//! per partition): first deliveries must then be in offset order per key, and a stop that
//! cut a retry short may redeliver records of other keys (by design); some schedules pause
//! the container before its first record is taken.
//!
//! Half the schedules publish given-up records to a dead-letter topic: some records fail on
//! every attempt (poison) and must then be finished or dead-lettered, never lost; in some of
//! those the dead-letter topic appears only later (its partition must wait, uncommitted), and
//! on the embedded cluster produce requests fail now and then. A third of those run with the
//! circuit breaker tripping on every given-up record (`circuit-breaker.consecutive=1`), closed
//! after 100 ms or by a [`Step::ResetBreaker`]: a record about to be given up then waits,
//! uncommitted, through stops, rebalances and seeks.
//!
//! Every case prints its seed. A failure prints the command that replays it. Environment:
//! `MODEL_SEED` (first seed; default: from the clock), `MODEL_CASES` / `MODEL_BROKER_CASES`
//! (counts; defaults 200 / 20), `MODEL_LONG=1` (ten times as many, and handlers slower than
//! `max.poll.interval.ms` on the real broker).
//!
//! Extending it: add an [`Action`] (and its weight in [`Run::action`]), or a control step in
//! [`drive`]; the invariants in [`check`] hold for every schedule.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_listener::dead_letter::headers as dlt_headers;
use kafka_listener::retry_topic::RetryTopicRecoverer;
use kafka_listener::{
    kafka_listener, Acknowledgment, Application, BoxError, ConsumerRecord, DeadLetterPublisher,
    EmbeddedCluster, Failure, Headers, RecordMeta, RecoverFuture, Recoverer, RetryPolicy,
    SeekTarget, Seeker,
};
use kafka_listener_tests::*;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const PARTITIONS: i32 = 2;

/// Distinct keys: record `i` of a partition (its offset) has key `k{i % KEYS}`, so key lanes
/// see several records per key.
const KEYS: i64 = 7;

/// One step of splitmix64: a well-mixed hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What a handler call does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Ok,
    /// Returns an error (retried by the container).
    Fail,
    /// Panics (caught, retried like an error).
    Panic,
    /// Takes this long, then Ok.
    Slow(u64),
    /// `nack` with this delay (ms).
    Nack(u64),
    /// Manual modes: acknowledges from another task after this delay (ms); Ok otherwise.
    AckLater(u64),
    /// Seeks its partition back this many records (at least to 0).
    SeekBack(i64),
    /// Seeks far past the end (the reset policy, earliest, applies).
    SeekOutOfRange,
    /// Seeks with a target whose lookup fails (an injected error), on the embedded cluster.
    SeekFailing,
    /// Fails on every attempt: the record is given up (dead-lettered).
    Poison,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Call,
    Finish,
    /// Its dead letter was acknowledged by the broker (it counts as finished).
    DeadLettered,
}

/// The state of one schedule, shared with the handler through [`RUNS`].
struct Run {
    seed: u64,
    manual: bool,
    /// Phase 1 plays the schedule; phase 2 (false) only finishes what is left.
    chaos: AtomicBool,
    /// The case's own mock cluster (embedded cases): injected errors hit only this case.
    cluster: Option<Arc<EmbeddedCluster>>,
    slow_beyond_poll_interval: bool,
    calls: Mutex<HashMap<(i32, i64), u32>>,
    log: Mutex<Vec<(i32, i64, Event)>>,
    nacks_left: AtomicU32,
    seeks_left: AtomicU32,
    /// A nack or seek happened: records may be delivered again by design.
    redelivery: AtomicBool,
    /// A handler failed or panicked (with key lanes, a stop during its retry leaves it
    /// unfinished below records of other keys that finished: those come again).
    failed: AtomicBool,
    /// Poison records are drawn (the schedule dead-letters).
    poison: bool,
}

impl Run {
    fn action(&self, partition: i32, offset: i64, call: u32) -> Action {
        if !self.chaos.load(Ordering::Acquire) {
            return Action::Ok;
        }
        let h =
            mix(self.seed
                ^ mix(((partition as u64) << 40) ^ (offset as u64) ^ ((call as u64) << 56)));
        // Poison is a property of the record, not of the call: every attempt fails.
        if self.poison
            && mix(self.seed ^ 0xDEAD ^ ((partition as u64) << 40) ^ offset as u64) % 1000 < 8
        {
            return Action::Poison;
        }
        let roll = h % 1000;
        let arg = (h >> 20) % 1000;
        // Retried outcomes only on early calls, so every record finishes within the attempts.
        match roll {
            0..=39 if call <= 1 => Action::Fail,
            40..=54 if call <= 1 => Action::Panic,
            55..=84 => Action::Slow(1 + arg % 30),
            85..=89 if self.slow_beyond_poll_interval && arg < 20 => Action::Slow(8_000),
            90..=109 if call == 1 && self.manual => Action::AckLater(arg % 200),
            110..=119 if call == 1 && take(&self.nacks_left) => Action::Nack(arg % 300),
            120..=125 if call == 1 && take(&self.seeks_left) => {
                Action::SeekBack(1 + (arg % 50) as i64)
            }
            126..=127 if call == 1 && take(&self.seeks_left) => Action::SeekOutOfRange,
            128..=130 if call == 1 && self.cluster.is_some() && take(&self.seeks_left) => {
                Action::SeekFailing
            }
            _ => Action::Ok,
        }
    }

    fn note(&self, partition: i32, offset: i64, event: Event) {
        self.log
            .lock()
            .expect("log")
            .push((partition, offset, event));
    }

    fn finished(&self) -> HashMap<i32, HashSet<i64>> {
        self.finished_since(0)
    }

    /// Records finished by log entries from index `from` on.
    fn finished_since(&self, from: usize) -> HashMap<i32, HashSet<i64>> {
        let mut out: HashMap<i32, HashSet<i64>> = HashMap::new();
        for (p, o, e) in self.log.lock().expect("log").iter().skip(from) {
            if *e != Event::Call {
                out.entry(*p).or_default().insert(*o);
            }
        }
        out
    }
}

fn take(budget: &AtomicU32) -> bool {
    budget
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

static RUNS: Mutex<BTreeMap<String, Arc<Run>>> = Mutex::new(BTreeMap::new());

fn run_of(topic: &str) -> Option<Arc<Run>> {
    RUNS.lock().expect("runs").get(topic).cloned()
}

async fn body(
    meta: RecordMeta,
    headers: Headers,
    ack: Acknowledgment,
    seeker: Seeker,
) -> Result<(), BoxError> {
    // A retry topic's copy stands for its original.
    let (topic, p, o) = original_of(&meta.topic, meta.partition, meta.offset, &headers);
    let Some(run) = run_of(&topic) else {
        return Ok(());
    };
    let call = {
        let mut calls = run.calls.lock().expect("calls");
        let n = calls.entry((p, o)).or_insert(0);
        *n += 1;
        *n
    };
    run.note(p, o, Event::Call);
    let finish = move |run: &Run, ack: &Acknowledgment| {
        run.note(p, o, Event::Finish);
        ack.acknowledge();
    };
    match run.action(p, o, call) {
        Action::Ok => finish(&run, &ack),
        Action::Fail => {
            run.failed.store(true, Ordering::Release);
            return Err("model: transient failure".into());
        }
        Action::Panic => {
            run.failed.store(true, Ordering::Release);
            panic!("model: handler panic at {p}@{o}")
        }
        Action::Poison => {
            run.failed.store(true, Ordering::Release);
            return Err("model: poison".into());
        }
        Action::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            finish(&run, &ack);
        }
        Action::Nack(ms) => {
            run.redelivery.store(true, Ordering::Release);
            ack.nack(Duration::from_millis(ms));
        }
        Action::AckLater(ms) => {
            let run = Arc::clone(&run);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                finish(&run, &ack);
            });
        }
        Action::SeekBack(n) => {
            run.redelivery.store(true, Ordering::Release);
            finish(&run, &ack);
            seeker.seek(SeekTarget::Offset((o - n).max(0)));
        }
        Action::SeekOutOfRange => {
            run.redelivery.store(true, Ordering::Release);
            finish(&run, &ack);
            seeker.seek(SeekTarget::Offset(o + 1_000_000));
        }
        Action::SeekFailing => {
            run.redelivery.store(true, Ordering::Release);
            finish(&run, &ack);
            if let Some(cluster) = &run.cluster {
                let _ = cluster.inject_request_errors(
                    RDKafkaApiKey::OffsetFetch,
                    &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
                );
            }
            seeker.seek(SeekTarget::Relative(0));
        }
    }
    Ok(())
}

/// The real recoverer (dead-letter publisher or retry-topic recoverer), noting each
/// acknowledged dead letter or retry copy in the run's log, for the original record.
struct NotingPublisher<R> {
    inner: R,
}

impl<R: Recoverer> Recoverer for NotingPublisher<R> {
    fn recover<'a>(
        &'a self,
        record: &'a ConsumerRecord,
        failure: &'a Failure,
    ) -> RecoverFuture<'a> {
        Box::pin(async move {
            self.inner.recover(record, failure).await?;
            let (topic, p, o) = original_of(
                record.topic(),
                record.partition(),
                record.offset(),
                record.headers(),
            );
            if let Some(run) = run_of(&topic) {
                run.note(p, o, Event::DeadLettered);
            }
            Ok(())
        })
    }
}

/// The record a retry topic's copy stands for (Spring's original-* headers); the record
/// itself otherwise.
fn original_of(topic: &str, partition: i32, offset: i64, headers: &Headers) -> (String, i32, i64) {
    if !topic.contains("-retry-") && !topic.ends_with("-retry") {
        return (topic.to_owned(), partition, offset);
    }
    headers
        .last_str(dlt_headers::ORIGINAL_TOPIC)
        .zip(headers.last(dlt_headers::ORIGINAL_PARTITION).flatten())
        .zip(headers.last(dlt_headers::ORIGINAL_OFFSET).flatten())
        .and_then(|((t, p), o)| position_from(p, o).map(|(p, o)| (t.to_owned(), p, o)))
        .unwrap_or_else(|| (topic.to_owned(), partition, offset))
}

#[kafka_listener(
    id = "model_explicit",
    partitions = ["${model.topic}:0", "${model.topic}:1"],
    group_id = "${model.group}"
)]
async fn model_explicit(
    meta: RecordMeta,
    ack: Acknowledgment,
    seeker: Seeker,
    headers: Headers,
) -> Result<(), BoxError> {
    body(meta, headers, ack, seeker).await
}

#[kafka_listener(
    id = "model_group",
    topics = "${model.topic}",
    group_id = "${model.group}"
)]
async fn model_group(
    meta: RecordMeta,
    ack: Acknowledgment,
    seeker: Seeker,
    headers: Headers,
) -> Result<(), BoxError> {
    body(meta, headers, ack, seeker).await
}

/// A schedule's configuration, drawn from its seed.
#[derive(Debug, Clone)]
struct Schedule {
    seed: u64,
    listener: &'static str,
    ack_mode: &'static str,
    concurrency: u32,
    max_poll_records: u32,
    shutdown_timeout: &'static str,
    assignment: &'static str,
    records: usize,
    /// Control steps of phase 1, in order.
    steps: Vec<Step>,
    /// `concurrency-per-partition`: key lanes when above 1.
    lanes: u32,
    /// Given-up records go to `<topic>.DLT`; poison records are drawn.
    dead_letter: bool,
    /// The dead-letter topic is created only at a [`Step::CreateDlt`] (or before phase 2).
    dlt_late: bool,
    /// Given-up records go through retry topics (real broker, group listener): three calls
    /// in all, then `<topic>-dlt`.
    retry_topics: bool,
    /// With retry topics: both retries share `<topic>-retry` (Spring's single topic).
    single_topic: bool,
    /// The circuit breaker trips on every given-up record and closes after 100 ms (or at a
    /// [`Step::ResetBreaker`]).
    breaker: bool,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Wait(u64),
    Pause,
    Resume,
    StopStart,
    /// A second application joins the group (real broker) …
    Join,
    /// … and leaves again.
    Leave,
    /// The next commits fail.
    CommitErrors(u8),
    /// The next fetches fail.
    FetchErrors(u8),
    /// More records arrive.
    Produce(usize),
    /// The dead-letter topic is created now.
    CreateDlt,
    /// The next produce requests fail (embedded; dead letters are sent meanwhile).
    ProduceErrors(u8),
    /// The circuit breaker is closed by command.
    ResetBreaker,
}

const MODES: [&str; 7] = [
    "record",
    "batch",
    "time",
    "count",
    "count_time",
    "manual",
    "manual_immediate",
];

impl Schedule {
    fn draw(seed: u64, embedded: bool) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut steps = Vec::new();
        for _ in 0..rng.usize(2..8) {
            steps.push(Step::Wait(rng.u64(20..400)));
            let step = match rng.u32(0..10) {
                0 | 1 => Step::Pause,
                2 => Step::Resume,
                3 => Step::StopStart,
                4 if embedded => Step::CommitErrors(rng.u8(1..4)),
                5 if embedded => Step::FetchErrors(rng.u8(1..3)),
                4 | 5 => Step::Join,
                6 if !embedded => Step::Leave,
                _ => Step::Produce(rng.usize(10..300)),
            };
            steps.push(step);
        }
        steps.push(Step::Resume);
        let mut schedule = Schedule {
            seed,
            listener: if embedded {
                "model_explicit"
            } else {
                "model_group"
            },
            ack_mode: MODES[rng.usize(0..MODES.len())],
            concurrency: rng.u32(1..3),
            max_poll_records: [1, 7, 100, 500][rng.usize(0..4)],
            shutdown_timeout: ["50ms", "3s"][rng.usize(0..2)],
            assignment: ["range", "cooperative-sticky"][rng.usize(0..2)],
            records: rng.usize(50..1500),
            steps,
            lanes: [1, 1, 4][rng.usize(0..3)],
            dead_letter: false,
            dlt_late: false,
            retry_topics: false,
            single_topic: false,
            breaker: false,
        };
        // Paused before the first record is taken (drawn last: earlier seeds keep their
        // other draws).
        if rng.u32(0..4) == 0 {
            schedule.steps.insert(0, Step::Pause);
        }
        schedule.dead_letter = rng.bool();
        schedule.dlt_late = schedule.dead_letter && rng.u32(0..3) == 0;
        if schedule.dlt_late {
            let at = rng.usize(0..=schedule.steps.len());
            schedule.steps.insert(at, Step::CreateDlt);
        }
        if schedule.dead_letter && embedded && rng.bool() {
            let at = rng.usize(0..=schedule.steps.len());
            schedule.steps.insert(at, Step::ProduceErrors(rng.u8(1..4)));
        }
        if schedule.dead_letter && !embedded && rng.bool() {
            schedule.retry_topics = true;
            schedule.dlt_late = false;
            schedule.steps.retain(|s| !matches!(s, Step::CreateDlt));
        }
        // Drawn last, so earlier seeds keep their other draws.
        schedule.breaker = schedule.dead_letter && rng.u32(0..3) == 0;
        if schedule.breaker {
            for _ in 0..rng.usize(1..3) {
                let at = rng.usize(0..=schedule.steps.len());
                schedule.steps.insert(at, Step::ResetBreaker);
            }
        }
        schedule.single_topic = schedule.retry_topics && rng.bool();
        schedule
    }
}

async fn start_app(s: &Schedule, bs: &str, topic: &str, group: &str) -> Application {
    let mut b = Application::builder()
        .only([s.listener])
        .env(Vec::new())
        .set("kafka.bootstrap-servers", bs)
        .set("model.topic", topic)
        .set("model.group", group)
        .set(
            &format!("kafka.listener.{}.ack-mode", s.listener),
            s.ack_mode,
        )
        .set("kafka.listener.concurrency", s.concurrency)
        .set("kafka.listener.concurrency-per-partition", s.lanes)
        .set("kafka.listener.ack-count", 20)
        .set("kafka.listener.ack-time", "50ms")
        .set("kafka.listener.retry.attempts", 3)
        .set("kafka.listener.retry.backoff.delay", "5ms")
        .set("kafka.listener.shutdown-timeout", s.shutdown_timeout)
        .set("kafka.listener.revoke-timeout", "3s")
        .set("kafka.consumer.max-poll-records", s.max_poll_records)
        .set(
            "kafka.consumer.properties.partition.assignment.strategy",
            s.assignment,
        );
    if s.retry_topics {
        let backoff = RetryPolicy::fixed(3, Duration::from_millis(50));
        b = b
            .set("kafka.listener.retry-topic.enabled", true)
            .set("kafka.listener.retry-topic.attempts", 3)
            .set("kafka.listener.retry-topic.backoff.delay", "50ms")
            .set(
                "kafka.listener.retry-topic.same-interval-topic-reuse",
                if s.single_topic {
                    "single-topic"
                } else {
                    "multiple-topics"
                },
            );
        let (single, main) = (s.single_topic, topic.to_owned());
        for id in [s.listener.to_owned(), format!("{}-retry", s.listener)] {
            let main = main.clone();
            b = b.recoverer(&id, move |producer, group| NotingPublisher {
                inner: RetryTopicRecoverer::new(producer.clone(), group, 3, backoff)
                    .single_topic_for_same_intervals(single)
                    .for_topics(vec![main.clone()]),
            });
        }
    } else if s.dead_letter {
        b = b.recoverer(s.listener, |producer, group| NotingPublisher {
            inner: DeadLetterPublisher::new(producer.clone(), group),
        });
    }
    if s.breaker {
        b = b
            .set("kafka.listener.circuit-breaker.consecutive", 1)
            .set("kafka.listener.circuit-breaker.reset-after", "100ms");
    }
    if s.listener == "model_group" {
        b = b
            .set("kafka.consumer.properties.max.poll.interval.ms", "7000")
            .set("kafka.consumer.properties.session.timeout.ms", "6000");
    }
    b.start()
        .await
        .unwrap_or_else(|e| panic!("seed {}: start: {e}", s.seed))
}

/// Produces records `from..from + n` to every partition, in order, and waits for them.
async fn produce_all(bs: &str, topic: &str, from: usize, n: usize) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bs)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    let mut deliveries = Vec::with_capacity(n * PARTITIONS as usize);
    for i in from..from + n {
        let (key, value) = (format!("k{}", i as i64 % KEYS), format!("{{\"seq\":{i}}}"));
        for p in 0..PARTITIONS {
            let record = FutureRecord::to(topic)
                .partition(p)
                .key(&key)
                .payload(&value);
            deliveries.push(
                producer
                    .send_result(record)
                    .unwrap_or_else(|(e, _)| panic!("enqueue to {topic}: {e}")),
            );
        }
    }
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("delivery to {topic} failed: {e}"),
            Err(_) => panic!("delivery to {topic} cancelled"),
        }
    }
}

/// Phase 1: the schedule's steps against a running application; returns whether any step
/// or report allows duplicates by design.
async fn drive(
    s: &Schedule,
    run: &Run,
    bs: &str,
    topic: &str,
    group: &str,
    produced: &mut usize,
) -> bool {
    let app = start_app(s, bs, topic, group).await;
    let mut dup_allowed = false;
    let mut second: Option<Application> = None;
    let container = app.container(s.listener).expect("container").clone();
    for step in &s.steps {
        match *step {
            Step::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Step::Pause => container.pause(),
            Step::Resume => container.resume(),
            Step::StopStart => {
                let report = container.stop_gracefully(Duration::from_secs(3)).await;
                dup_allowed |= report.handlers_cut_off > 0 || report.commit_failures > 0;
                container
                    .start()
                    .unwrap_or_else(|e| panic!("seed {}: restart: {e}", s.seed));
            }
            Step::Join if second.is_none() => {
                second = Some(start_app(s, bs, topic, group).await);
            }
            Step::Join => {}
            Step::Leave => {
                if let Some(other) = second.take() {
                    let report = other.shutdown().await;
                    dup_allowed |= !report.is_clean() || report.listeners.handlers_cut_off > 0;
                }
            }
            Step::CommitErrors(n) | Step::FetchErrors(n) => {
                let api = if matches!(step, Step::CommitErrors(_)) {
                    RDKafkaApiKey::OffsetCommit
                } else {
                    RDKafkaApiKey::Fetch
                };
                let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; n as usize];
                if let Some(cluster) = &run.cluster {
                    cluster.inject_request_errors(api, &errors).expect("inject");
                }
                dup_allowed = true; // a failed commit may be redelivered after shutdown
            }
            Step::Produce(n) => {
                produce_all(bs, topic, *produced, n).await;
                *produced += n;
            }
            Step::CreateDlt => create_dlt(run, bs, topic).await,
            Step::ResetBreaker => container.reset_circuit_breaker(),
            Step::ProduceErrors(n) => {
                if let Some(cluster) = &run.cluster {
                    let errors =
                        vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; n as usize];
                    cluster
                        .inject_request_errors(RDKafkaApiKey::Produce, &errors)
                        .expect("inject");
                }
            }
        }
    }
    if let Some(other) = second.take() {
        let report = other.shutdown().await;
        dup_allowed |= !report.is_clean() || report.listeners.handlers_cut_off > 0;
    }
    let report = app.shutdown().await;
    assert_eq!(
        report.listeners.consumers_died, 0,
        "seed {}: a consumer died: {report}",
        s.seed
    );
    // Tripping on every given-up record (the embedded schedules have no second application
    // to have given one up).
    if s.breaker && run.cluster.is_some() && !s.retry_topics {
        let dead_lettered = run
            .log
            .lock()
            .expect("log")
            .iter()
            .filter(|(_, _, e)| *e == Event::DeadLettered)
            .count() as u64;
        // A give-up trips the breaker unless it was already open: records given up at once on
        // other partitions (or key lanes) may share a trip, at most one per worker each.
        let workers = PARTITIONS as u64 * u64::from(s.lanes.max(1));
        assert!(
            container.circuit_breaker_trips() * workers >= dead_lettered,
            "seed {}: {dead_lettered} records were given up and the breaker tripped only {} times ({workers} workers)",
            s.seed,
            container.circuit_breaker_trips()
        );
    }
    dup_allowed |= report.listeners.handlers_cut_off > 0 || report.listeners.commit_failures > 0;
    dup_allowed
}

/// With retry topics: every record whose last event is a retry copy or dead letter
/// acknowledged is in `<topic>-dlt` (else its copy is still on its way, or was lost).
fn retry_copies_settled(run: &Run, dead: &HashSet<(i32, i64)>) -> bool {
    let mut last: HashMap<(i32, i64), Event> = HashMap::new();
    for (p, o, e) in run.log.lock().expect("log").iter() {
        if *e != Event::Call {
            last.insert((*p, *o), *e);
        }
    }
    last.iter()
        .filter(|(_, e)| **e == Event::DeadLettered)
        .all(|(po, _)| dead.contains(po))
}

/// Creates the case's dead-letter topic, `<topic>.DLT`.
async fn create_dlt(run: &Run, bs: &str, topic: &str) {
    let dlt = format!("{topic}.DLT");
    match &run.cluster {
        // The mock cluster creates topics on a producer's metadata request, as a broker with
        // auto.create.topics.enable does: the first dead letter may have created it already.
        Some(c) => {
            if let Err(e) = c.create_topic(&dlt, PARTITIONS) {
                assert!(
                    e.to_string().contains("TopicAlreadyExists"),
                    "dead-letter topic: {e}"
                );
            }
        }
        None => create_topic(bs, &dlt, PARTITIONS).await,
    }
}

/// Every dead letter the log records is in `<topic>.DLT`, with its original partition and
/// offset in Spring's headers.
async fn dead_letters_are_published(s: &Schedule, run: &Run, bs: &str, topic: &str) {
    let noted: HashSet<(i32, i64)> = run
        .log
        .lock()
        .expect("log")
        .iter()
        .filter(|e| e.2 == Event::DeadLettered)
        .map(|e| (e.0, e.1))
        .collect();
    if noted.is_empty() {
        return;
    }
    // The topic may hold a dead letter more than once (at-least-once): read on until every
    // noted one was seen, or nothing more arrives.
    let mut want = noted.len();
    let published = loop {
        let letters = read_topic(bs, &format!("{topic}.DLT"), want, Duration::from_secs(10)).await;
        let published: HashSet<(i32, i64)> = letters
            .iter()
            .map(|l| {
                l.original_position()
                    .expect("4-byte partition and 8-byte offset headers")
            })
            .collect();
        if noted.is_subset(&published) || letters.len() < want {
            break published;
        }
        want = letters.len() + noted.difference(&published).count();
    };
    let missing: Vec<_> = noted.difference(&published).collect();
    assert!(
        missing.is_empty(),
        "seed {}: dead letters acknowledged but not in the topic: {missing:?} ({s:?})",
        s.seed
    );
}

/// The group's committed offsets; retried, since an injected error may still be pending
/// for the offset lookups of the case's cluster.
async fn committed(bs: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let mut last = None;
    for _ in 0..3 {
        match try_committed_offsets(bs, group, topic, PARTITIONS).await {
            Ok(offsets) => return offsets,
            Err(e) => last = Some(e),
        }
    }
    panic!("reading committed offsets of {group} failed three times: {last:?}")
}

/// Waits (at most 30 s) until consumer group `group` has no members.
async fn group_left(bs: &str, group: &str) {
    let (bs, group) = (bs.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bs)
            .create()
            .expect("group lookup client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let members = consumer
                .fetch_group_list(Some(&group), Duration::from_secs(5))
                .ok()
                .map(|list| {
                    list.groups()
                        .iter()
                        .map(|g| g.members().len())
                        .sum::<usize>()
                });
            if members == Some(0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("group {group} still has members after 30 s; phase 2 starts anyway");
    })
    .await
    .expect("group lookup task");
}

/// Checks that every offset below each committed offset has finished.
async fn commits_never_pass_unfinished(
    s: &Schedule,
    run: &Run,
    bs: &str,
    group: &str,
    topic: &str,
) {
    let committed = committed(bs, group, topic).await;
    let finished = run.finished();
    for (p, c) in committed {
        let done = finished.get(&p).cloned().unwrap_or_default();
        if let Some(gap) = (0..c).find(|o| !done.contains(o)) {
            if std::env::var("MODEL_DEBUG").is_ok() {
                let log = run.log.lock().expect("log");
                for (i, e) in log.iter().enumerate() {
                    if e.0 == p && (e.1 - gap).abs() <= 8 {
                        eprintln!("DEBUG {i}: {e:?}");
                    }
                }
            }
            panic!(
                "seed {}: partition {p} committed {c} but offset {gap} never finished ({s:?})",
                s.seed
            );
        }
    }
}

/// The invariants after both phases.
fn check(s: &Schedule, run: &Run, dup_allowed: bool, end: &HashMap<i32, i64>) {
    let log = run.log.lock().expect("log").clone();
    let mut first_calls: HashMap<i32, Vec<i64>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut finishes: HashMap<(i32, i64), usize> = HashMap::new();
    for (p, o, e) in &log {
        if *e == Event::Call && seen.insert((*p, *o)) {
            first_calls.entry(*p).or_default().push(*o);
        }
        if *e != Event::Call {
            *finishes.entry((*p, *o)).or_default() += 1;
        }
    }
    for p in 0..PARTITIONS {
        let firsts = first_calls.get(&p).cloned().unwrap_or_default();
        // In offset order: per partition, or with key lanes per key.
        let lanes = if s.lanes > 1 { KEYS } else { 1 };
        for lane in 0..lanes {
            let of_lane: Vec<i64> = firsts
                .iter()
                .copied()
                .filter(|o| o % lanes == lane)
                .collect();
            assert!(
                of_lane.windows(2).all(|w| w[0] < w[1]),
                "seed {}: partition {p}: first deliveries out of order: {:?}",
                s.seed,
                of_lane.windows(2).find(|w| w[0] >= w[1])
            );
        }
        for o in 0..end[&p] {
            assert!(
                finishes.contains_key(&(p, o)),
                "seed {}: partition {p} offset {o} was never finished",
                s.seed
            );
        }
    }
    let lanes_retried = s.lanes > 1 && run.failed.load(Ordering::Acquire);
    // With retry topics a record is "finished" on the main topic when its copy is
    // acknowledged, and again by each retry topic it passes through.
    let moved: HashSet<(i32, i64)> = if s.retry_topics {
        log.iter()
            .filter(|e| e.2 == Event::DeadLettered)
            .map(|e| (e.0, e.1))
            .collect()
    } else {
        HashSet::new()
    };
    if !dup_allowed && !lanes_retried && !run.redelivery.load(Ordering::Acquire) {
        if let Some(((p, o), n)) = finishes
            .iter()
            .find(|(po, n)| **n > 1 && !moved.contains(po))
        {
            panic!(
                "seed {}: {p}@{o} finished {n} times on a graceful schedule ({s:?})",
                s.seed
            );
        }
    }
}

async fn one_case(seed: u64, broker: &str, embedded: bool, long: bool) {
    let s = Schedule::draw(seed, embedded);
    let (topic, group) = (unique(&format!("model-{seed}")), unique("model-g"));
    let cluster = embedded.then(|| Arc::new(EmbeddedCluster::start().expect("embedded cluster")));
    let bs = match &cluster {
        Some(c) => {
            c.create_topic(&topic, PARTITIONS)
                .expect("topic on the embedded cluster");
            c.bootstrap_servers().to_owned()
        }
        None => {
            create_topic(broker, &topic, PARTITIONS).await;
            broker.to_owned()
        }
    };
    let bs = bs.as_str();
    let run = Arc::new(Run {
        seed,
        manual: s.ack_mode.starts_with("manual"),
        chaos: AtomicBool::new(true),
        cluster,
        slow_beyond_poll_interval: long && !embedded,
        calls: Mutex::new(HashMap::new()),
        log: Mutex::new(Vec::new()),
        nacks_left: AtomicU32::new(3),
        seeks_left: AtomicU32::new(2),
        redelivery: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        poison: s.dead_letter,
    });
    if s.retry_topics {
        let chain: &[&str] = if s.single_topic {
            &["-retry", "-dlt"]
        } else {
            &["-retry-0", "-retry-1", "-dlt"]
        };
        for t in chain {
            create_topic(bs, &format!("{topic}{t}"), PARTITIONS).await;
        }
    } else if s.dead_letter && !s.dlt_late {
        create_dlt(&run, bs, &topic).await;
    }
    RUNS.lock()
        .expect("runs")
        .insert(topic.clone(), Arc::clone(&run));
    let mut produced = s.records;
    produce_all(bs, &topic, 0, s.records).await;

    let phase1 = tokio::time::timeout(
        Duration::from_secs(if long { 300 } else { 60 }),
        drive(&s, &run, bs, &topic, &group, &mut produced),
    );
    let t0 = Instant::now();
    let dup_allowed = phase1
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: phase 1 hung ({s:?})"));
    let t1 = Instant::now();
    commits_never_pass_unfinished(&s, &run, bs, &group, &topic).await;
    // With retry topics, what phase 1 dead-lettered in the end is in `<topic>-dlt`.
    let retry_dead: HashSet<(i32, i64)> = if s.retry_topics {
        read_topic(
            bs,
            &format!("{topic}-dlt"),
            usize::MAX,
            Duration::from_secs(2),
        )
        .await
        .iter()
        .filter_map(ReadRecord::original_position)
        .collect()
    } else {
        HashSet::new()
    };

    // Phase 2: a clean application finishes the rest: everything from the committed offset
    // on must be finished again by it (phase 1 may have finished records it did not commit).
    run.chaos.store(false, Ordering::Release);
    // Phase 2 runs on the same mock cluster: errors phase 1 injected and no request used up
    // (commit errors injected while the container was paused, say) would fail its commits.
    if let Some(cluster) = &run.cluster {
        for api in [
            RDKafkaApiKey::OffsetCommit,
            RDKafkaApiKey::Fetch,
            RDKafkaApiKey::Produce,
            RDKafkaApiKey::OffsetFetch,
        ] {
            cluster
                .clear_request_errors(api)
                .expect("clear injected errors");
        }
    }
    if s.dlt_late && !s.steps.iter().any(|st| matches!(st, Step::CreateDlt)) {
        create_dlt(&run, bs, &topic).await;
    }
    // Phase 2 stands for a new process, which starts once the old one exited. A consumer that
    // did not close by phase 1's shutdown deadline lingers in this process (a real process
    // would have exited) and stays a member for a while: wait until the group has none.
    if run.cluster.is_none() {
        group_left(bs, &group).await;
    }
    let resume_from = committed(bs, &group, &topic).await;
    let log_mark = run.log.lock().expect("log").len();
    let app = start_app(&s, bs, &topic, &group).await;
    let end = end_offsets(bs, &topic, PARTITIONS).await;
    // Wait until everything finished (the count and time modes may hold the last commit
    // until shutdown), then shut down: the commit must then be at the end.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let finished = run.finished_since(log_mark);
        let done = (0..PARTITIONS).all(|p| {
            let f = finished.get(&p);
            let from = resume_from.get(&p).copied().unwrap_or(0);
            (from..end[&p]).all(|o| f.is_some_and(|f| f.contains(&o)))
        }) && (!s.retry_topics || retry_copies_settled(&run, &retry_dead));
        if done {
            break;
        }
        if Instant::now() >= deadline {
            let missing: Vec<(i32, Vec<i64>)> = (0..PARTITIONS)
                .map(|p| {
                    let f = finished.get(&p);
                    let from = resume_from.get(&p).copied().unwrap_or(0);
                    let gaps: Vec<i64> = (from..end[&p])
                        .filter(|o| !f.is_some_and(|f| f.contains(o)))
                        .take(10)
                        .collect();
                    (p, gaps)
                })
                .collect();
            panic!(
                "seed {seed}: phase 2 never finished every record (from {resume_from:?}, end {end:?}, first unfinished {missing:?}, {s:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = app.shutdown().await;
    assert!(report.is_clean(), "seed {seed}: phase 2 shutdown: {report}");
    let committed = committed(bs, &group, &topic).await;
    for p in 0..PARTITIONS {
        let at = committed.get(&p).copied().unwrap_or(0);
        assert_eq!(
            at, end[&p],
            "seed {seed}: partition {p} not committed at the end after a clean shutdown ({s:?})"
        );
    }
    commits_never_pass_unfinished(&s, &run, bs, &group, &topic).await;
    if !s.retry_topics {
        dead_letters_are_published(&s, &run, bs, &topic).await;
    }
    check(&s, &run, dup_allowed, &end);
    eprintln!(
        "case {seed}: {} {} x{} lanes {} dead letters {}{} phase 1 {:.1?}, phase 2 {:.1?}",
        s.listener,
        s.ack_mode,
        s.concurrency,
        s.lanes,
        match (s.dead_letter, s.dlt_late, s.retry_topics) {
            (false, _, _) => "off",
            (true, _, true) if s.single_topic => "retry topics (single)",
            (true, _, true) => "retry topics",
            (true, false, _) => "on",
            (true, true, _) => "late",
        },
        if s.breaker { " (breaker)" } else { "" },
        t1 - t0,
        t1.elapsed()
    );
    RUNS.lock().expect("runs").remove(&topic);
}

fn base_seed() -> u64 {
    std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 % 1_000_000_000)
                .unwrap_or(1)
        })
}

fn cases(var: &str, default: usize) -> usize {
    let long = std::env::var("MODEL_LONG").as_deref() == Ok("1");
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if long { default * 10 } else { default })
}

/// Handler panics of the model are expected; keep them out of the output.
fn quiet_model_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with("model: handler panic") {
                default(info);
            }
        }));
    });
}

/// Runs `count` cases from the base seed, `parallel` at a time (their waits dominate, not CPU).
async fn run_cases(name: &str, bs: &str, embedded: bool, count: usize, var: &str, parallel: usize) {
    use futures::StreamExt as _;
    quiet_model_panics();
    let long = std::env::var("MODEL_LONG").as_deref() == Ok("1");
    let base = base_seed();
    eprintln!(
        "{name}: {count} cases, seeds {base}..{} ({parallel} at a time)",
        base + count as u64
    );
    let started = Instant::now();
    let mut results = futures::stream::iter(0..count as u64)
        .map(|i| {
            let seed = base + i;
            let bs = bs.to_owned();
            async move {
                let case = tokio::spawn(async move { one_case(seed, &bs, embedded, long).await });
                (seed, case.await)
            }
        })
        .buffer_unordered(parallel.max(1));
    while let Some((seed, result)) = results.next().await {
        if let Err(e) = result {
            eprintln!(
                "{name}: case {seed} failed; replay with:\n  MODEL_SEED={seed} {var}=1 cargo test -p kafka-listener-tests --test fault_model {name} -- --nocapture"
            );
            std::panic::resume_unwind(e.into_panic());
        }
    }
    eprintln!(
        "{name}: {count} cases passed in {:.1?} (seeds {base}..{})",
        started.elapsed(),
        base + count as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_schedules() {
    init_logging();
    run_cases(
        "embedded_schedules",
        "",
        true,
        cases("MODEL_CASES", 200),
        "MODEL_CASES",
        4,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_schedules() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    run_cases(
        "real_broker_schedules",
        &bs,
        false,
        cases("MODEL_BROKER_CASES", 20),
        "MODEL_BROKER_CASES",
        2,
    )
    .await;
}
