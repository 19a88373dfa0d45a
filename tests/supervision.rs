//! Supervision, checked from outside: a consumer that dies anyway (a panic in its thread, a
//! panicking `RebalanceListener`) is reported as an error within a second and the process exits
//! with code 4; nothing it held is lost (a restarted service handles it, committed = end).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_listener_tests::*;

type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A running probe service; killed if the test fails before it exits.
struct Probe {
    child: Child,
    lines: Lines,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stream: impl Read + Send + 'static, lines: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            lines.lock().expect("lines").push((Instant::now(), line));
        }
    });
}

fn spawn_probe(bootstrap: &str, topic: &str, group: &str, panic: &str) -> Probe {
    spawn_probe_with(bootstrap, topic, group, panic, &[])
}

fn spawn_probe_with(
    bootstrap: &str,
    topic: &str,
    group: &str,
    panic: &str,
    sets: &[String],
) -> Probe {
    // Its own working directory, with an (empty) application.properties.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-logs")
        .join(unique("probe"));
    std::fs::create_dir_all(&dir).expect("probe dir");
    std::fs::write(dir.join("application.properties"), "").expect("probe config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_panic-probe"))
        .current_dir(&dir)
        .args(["--set", &format!("kafka.bootstrap-servers={bootstrap}")])
        .args(["--set", &format!("probe.topic={topic}")])
        .args(["--set", &format!("probe.group={group}")])
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .env("PROBE_PANIC", panic)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn panic-probe");
    let lines = Lines::default();
    collect(child.stdout.take().expect("stdout"), Arc::clone(&lines));
    collect(child.stderr.take().expect("stderr"), Arc::clone(&lines));
    Probe { child, lines }
}

impl Probe {
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "probe still running after {timeout:?}; output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, and waits for it to be gone.
    fn kill9(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let _ = self.child.wait();
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn output(&self) -> String {
        let lines = self.lines.lock().expect("lines");
        lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    /// When the first line containing `needle` was printed.
    fn first(&self, needle: &str) -> Option<Instant> {
        let lines = self.lines.lock().expect("lines");
        lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }

    fn handled_keys(&self) -> HashSet<String> {
        let lines = self.lines.lock().expect("lines");
        lines
            .iter()
            .filter_map(|(_, l)| l.strip_prefix("handled "))
            .filter_map(|l| l.split(' ').nth(2).map(str::to_owned))
            .collect()
    }
}

/// Runs a probe that must die of `panic`: exit code 4, the death logged as an error within a
/// second of `trigger` being printed; then a healthy probe finishes everything.
async fn dies_loudly_and_loses_nothing(panic: &str, trigger: &str, cause: &str) {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique(&format!("supervision-{panic}")), unique("g"));
    create_topic(&bs, &topic, 2).await;
    let keys: HashSet<String> = produce_seq(&bs, &topic, 0, 300).await.into_iter().collect();

    let mut dying = spawn_probe(&bs, &topic, &group, panic);
    let status = dying.wait_exit(Duration::from_secs(90));
    let output = dying.output();
    assert_eq!(status.code(), Some(4), "exit code; output:\n{output}");
    let triggered = dying
        .first(trigger)
        .unwrap_or_else(|| panic!("{trigger:?} never printed; output:\n{output}"));
    let reported = dying
        .first("a consumer died")
        .unwrap_or_else(|| panic!("the death was never logged; output:\n{output}"));
    assert!(
        reported.saturating_duration_since(triggered) < Duration::from_secs(1),
        "the death was logged {:?} after the panic",
        reported.saturating_duration_since(triggered)
    );
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains(cause)),
        "the exit names the cause {cause:?}; output:\n{output}"
    );
    let first_run = dying.handled_keys();

    let healthy = spawn_probe(&bs, &topic, &group, "");
    wait_until(Duration::from_secs(60), "the healthy probe runs", || {
        healthy.first("probe: running").is_some()
    })
    .await;
    wait_until(Duration::from_secs(90), "every record handled", || {
        let all: HashSet<String> = first_run.union(&healthy.handled_keys()).cloned().collect();
        all == keys
    })
    .await;
    healthy.sigterm();
    let mut healthy = healthy;
    let status = healthy.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "clean exit; output:\n{}",
        healthy.output()
    );
    assert_committed_at_end(&bs, &group, &topic, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_thread_that_panics_is_reported_within_a_second_and_the_process_exits_4() {
    dies_loudly_and_loses_nothing("consumer-thread", "panicked at", "injected panic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_rebalance_listener_is_reported_within_a_second_and_the_process_exits_4() {
    dies_loudly_and_loses_nothing(
        "rebalance-listener",
        "the RebalanceListener panics now",
        "RebalanceListener::on_partitions_assigned",
    )
    .await;
}

/// A nack under a backlog, then SIGKILL during the nack delay: the restarted service must
/// still get the nacked record and everything after it (before the fix, batch and record
/// commits passed the nacked offset while the worker went on with later records).
async fn sigkill_during_a_nack_delay_loses_nothing(mode: &str) {
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique(&format!("nack-kill-{mode}")), unique("g"));
    create_topic(&bs, &topic, 1).await;
    let keys: HashSet<String> = produce_seq(&bs, &topic, 0, 4000)
        .await
        .into_iter()
        .collect();
    let sets = vec![format!("kafka.listener.probe.ack-mode={mode}")];
    let mut nacking = spawn_probe_with(&bs, &topic, &group, "nack", &sets);
    wait_until(Duration::from_secs(90), "the nack", || {
        nacking.first("nacked ").is_some()
    })
    .await;
    // The window is the condition: with the bug, later records are handled and committed in
    // it (within ~100 ms); with the fix nothing happens, so there is no event to wait for.
    // 1.5 s of the 30 s delay, then kill -9.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nacking.kill9();
    let first_run = nacking.handled_keys();
    assert!(
        !first_run.contains("k1500"),
        "the nacked record was not handled"
    );

    let healthy = spawn_probe_with(&bs, &topic, &group, "", &sets);
    wait_until(Duration::from_secs(60), "the healthy probe runs", || {
        healthy.first("probe: running").is_some()
    })
    .await;
    wait_until(
        Duration::from_secs(90),
        "every record, the nacked one included",
        || {
            let all: HashSet<String> = first_run.union(&healthy.handled_keys()).cloned().collect();
            all == keys
        },
    )
    .await;
    let mut healthy = healthy;
    healthy.sigterm();
    let status = healthy.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "clean exit; output:\n{}",
        healthy.output()
    );
    assert_committed_at_end(&bs, &group, &topic, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_nack_delay_in_batch_mode_loses_nothing() {
    init_logging();
    sigkill_during_a_nack_delay_loses_nothing("batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_nack_delay_in_record_mode_loses_nothing() {
    init_logging();
    sigkill_during_a_nack_delay_loses_nothing("record").await;
}

/// Retry topics, then SIGKILL while the failed records' copies wait for their due time: the
/// restarted service handles every one of them (from the retry topic, or from the main topic
/// if the original's commit did not happen before the kill), and committed = end after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_retry_topic_delay_loses_nothing() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("retry-kill"), unique("g"));
    let retry0 = format!("{topic}-retry-0");
    for t in [
        topic.clone(),
        retry0.clone(),
        format!("{topic}-retry-1"),
        format!("{topic}-dlt"),
    ] {
        create_topic(&bs, &t, 2).await;
    }
    let keys: HashSet<String> = produce_seq(&bs, &topic, 0, 200).await.into_iter().collect();
    let sevens: HashSet<String> = keys.iter().filter(|k| k.ends_with('7')).cloned().collect();
    assert_eq!(sevens.len(), 20);
    let sets = vec![
        "kafka.listener.probe.retry-topic.enabled=true".to_owned(),
        "kafka.listener.probe.retry-topic.attempts=3".to_owned(),
        // Long enough that every copy is still waiting when the kill comes.
        "kafka.listener.probe.retry-topic.backoff.delay=10s".to_owned(),
    ];
    let failing = spawn_probe_with(&bs, &topic, &group, "fail-sevens", &sets);
    let failed_keys = |p: &Probe| -> HashSet<String> {
        let lines = p.lines.lock().expect("lines");
        lines
            .iter()
            .filter_map(|(_, l)| l.strip_prefix("failed "))
            .filter_map(|l| l.split(' ').nth(2).map(str::to_owned))
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "every record handled or failed once",
        || {
            let done: HashSet<String> = failing
                .handled_keys()
                .union(&failed_keys(&failing))
                .cloned()
                .collect();
            done == keys
        },
    )
    .await;
    // An original is committed only after its copy was acknowledged: once the main topic is
    // committed to its end, every copy is on the retry topic, waiting out its 10 s. Kill -9.
    let end = end_offsets(&bs, &topic, 2).await;
    let deadline = Instant::now() + Duration::from_secs(8);
    while committed_offsets(&bs, &group, &topic, 2).await != end {
        assert!(
            Instant::now() < deadline,
            "the main topic was not committed to its end ({end:?}) within the copies' delay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut failing = failing;
    failing.kill9();
    let output = failing.output();
    assert!(
        !output.lines().any(|l| l.ends_with(&format!(" {retry0}"))),
        "no copy was due before the kill; output:\n{output}"
    );
    let first_run = failing.handled_keys();
    assert!(first_run.is_disjoint(&sevens), "the failing keys failed");

    let healthy = spawn_probe_with(&bs, &topic, &group, "", &sets);
    wait_until(
        Duration::from_secs(90),
        "every record, the failed ones included",
        || {
            let all: HashSet<String> = first_run.union(&healthy.handled_keys()).cloned().collect();
            all == keys
        },
    )
    .await;
    let from_retry_topic: HashSet<String> = {
        let lines = healthy.lines.lock().expect("lines");
        lines
            .iter()
            .filter_map(|(_, l)| l.strip_prefix("handled "))
            .filter(|l| l.ends_with(&format!(" {retry0}")))
            .filter_map(|l| l.split(' ').nth(2).map(str::to_owned))
            .collect()
    };
    // The originals were committed before the kill: every failed record came back as its
    // copy, from the retry topic.
    assert_eq!(from_retry_topic, sevens, "every copy survived the kill");
    let mut healthy = healthy;
    healthy.sigterm();
    let status = healthy.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "clean exit; output:\n{}",
        healthy.output()
    );
    assert_committed_at_end(&bs, &group, &topic, 2).await;
    assert_committed_at_end(&bs, &group, &retry0, 2).await;
}
