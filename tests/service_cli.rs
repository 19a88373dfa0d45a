//! The service command line as a new user meets it, on the `orders` example binary: options
//! before or after the subcommand, `listeners`, `config` (sources, secrets masked), `check`
//! (exit code 0 or 1 with the reason: unreachable broker, missing topic, denied group), and a
//! service that runs with no properties file at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kafka_listener_tests::*;

fn orders_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/orders/application.properties")
}

/// An empty working directory of its own (no `application.properties` in it).
fn empty_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-logs")
        .join(unique("cli"));
    std::fs::create_dir_all(&dir).expect("working directory");
    dir
}

/// Runs `orders` in `dir` with `args`, environment cleared of the broker variables.
fn orders(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(orders_bin())
        .current_dir(dir)
        .args(args)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("RUST_LOG", "off")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run orders");
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn options_go_before_or_after_the_subcommand() {
    let dir = empty_dir();
    let config = orders_config();
    let config = config.to_str().expect("utf-8 path");
    for args in [
        vec!["listeners", "--config", config],
        vec!["--config", config, "listeners"],
        vec![
            "--set",
            "kafka.listener.orders.concurrency=5",
            "listeners",
            "--config",
            config,
        ],
    ] {
        let out = orders(&dir, &args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("orders\t"))
            .unwrap_or_else(|| panic!("{args:?}: no orders line in {stdout}"));
        for part in [
            "topics=orders",
            "group=orders",
            "ack-mode=batch",
            "5 attempts",
            "dead letter to {topic}.DLT",
        ] {
            assert!(
                line.contains(part),
                "{args:?}: {part:?} missing from {line}"
            );
        }
        let concurrency = if args.contains(&"--set") { "5" } else { "2" };
        assert!(
            line.contains(&format!("concurrency={concurrency}")),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn config_shows_each_value_with_its_source_and_masks_secrets() {
    let dir = empty_dir();
    let config = orders_config();
    let out = orders(
        &dir,
        &[
            "config",
            "--config",
            config.to_str().expect("utf-8 path"),
            "--set",
            "kafka.properties.sasl.password=hunter2",
        ],
        &[("KAFKA_CONSUMER_MAX_POLL_RECORDS", "77")],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("hunter2"), "a secret leaked: {all}");
    let line_of = |key: &str| {
        all.lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("{key} missing: {all}"))
            .to_owned()
    };
    assert!(line_of("kafka.properties.sasl.password").contains("******"));
    assert!(
        line_of("kafka.consumer.max-poll-records").contains("env KAFKA_CONSUMER_MAX_POLL_RECORDS")
    );
    assert!(line_of("kafka.listener.orders.concurrency").contains("application.properties"));
    assert!(line_of("kafka.listener.ack-mode").contains("# default"));
}

#[test]
fn without_a_properties_file_the_defaults_and_environment_apply_but_an_explicit_missing_file_is_an_error(
) {
    let dir = empty_dir();
    let out = orders(
        &dir,
        &["config"],
        &[("KAFKA_BOOTSTRAP_SERVERS", "broker-from-env:9092")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("kafka.bootstrap-servers = broker-from-env:9092"),
        "{}",
        text(&out)
    );
    let out = orders(&dir, &["config", "--config", "missing.properties"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("missing.properties"), "{}", text(&out));
}

/// Started with environment variables only (the embedded broker), the service runs, and
/// stops cleanly on SIGTERM.
#[test]
fn a_service_runs_on_environment_variables_alone() {
    let dir = empty_dir();
    let mut child = Command::new(orders_bin())
        .current_dir(&dir)
        .env("KAFKA_BOOTSTRAP_SERVERS", "embedded")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn orders");
    // Running: still alive after its start-up (the embedded cluster's group join takes ~3 s;
    // the listener is up well before), and no start-up error.
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            panic!("exited early with {status}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "clean exit: {}", text(&out));
    assert!(
        text(&out).contains("started"),
        "the listener said it started: {}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reaches_the_broker_and_names_what_is_missing() {
    let Some(bs) = real_broker() else { return };
    let dir = empty_dir();
    let config = orders_config();
    let config = config.to_str().expect("utf-8 path");
    let topic = unique("cli-check");
    let group = format!("kafka.listener.orders.group-id={}", unique("cli-g"));
    let set_bs = format!("kafka.bootstrap-servers={bs}");
    let check = |dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "check", "--config", config, "--set", &set_bs, "--set", &group,
        ];
        args.extend_from_slice(extra);
        orders(dir, &args, &[("ORDERS_TOPIC", topic.as_str())])
    };

    // Nothing there yet: the input topic is named.
    let out = check(&dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("topic \"{topic}\" does not exist")),
        "{}",
        text(&out)
    );
    // The input topic, not its dead-letter topic: that one is named.
    create_topic(&bs, &topic, 2).await;
    let out = check(&dir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{topic}.DLT")),
        "{}",
        text(&out)
    );
    create_topic(&bs, &format!("{topic}.DLT"), 2).await;
    let out = check(&dir, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        format!("ok: brokers: {bs} answered"),
        format!("ok: listener orders: topic {topic} exists and is readable"),
        format!("ok: listener orders: dead-letter topic {topic}.DLT exists"),
    ] {
        assert!(stdout.contains(&line), "{line:?} missing: {stdout}");
    }
    // An unreachable broker.
    let out = orders(
        &dir,
        &[
            "check",
            "--set",
            "kafka.bootstrap-servers=127.0.0.1:1",
            "--set",
            "kafka.admin.operation-timeout=2s",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("broker unreachable"), "{}", text(&out));
}

fn quickstart_bin() -> PathBuf {
    let mut path = orders_bin();
    path.set_file_name("quickstart");
    path
}

/// `kafka.logging.format=json` and Spring Boot's `logging.level.*` keys: one JSON object a
/// line, and with the record span on (`logging.level.kafka_listener.record=debug`), the
/// handler's events carry the record's listener, topic, partition, offset and key.
#[test]
fn json_logs_carry_the_record_span_when_its_level_is_on() {
    let dir = empty_dir();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/quickstart/application.properties");
    let mut child = Command::new(quickstart_bin())
        .current_dir(&dir)
        .args(["--config", config.to_str().expect("utf-8 path")])
        .args(["--set", "kafka.logging.format=json"])
        .args(["--set", "logging.level.kafka_listener.record=debug"])
        .args(["--set", "kafka.management.port=0"])
        // The embedded cluster of its properties file, whatever broker the suite runs.
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn quickstart");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().expect("lines").push(line);
        }
    });
    let with_span = |lines: &[String]| {
        lines.iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["span"]["name"] == "record" && v["span"]["offset"].is_number())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !with_span(&lines.lock().expect("lines")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    let errors = errors.join().expect("stderr reader");
    let lines = lines.lock().expect("lines").clone();
    assert!(
        status.success(),
        "clean exit; output:\n{}\nstderr:\n{errors}",
        lines.join("\n")
    );
    assert!(!lines.is_empty(), "it logged");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(
        with_span(&lines),
        "a handler event with the record span:\n{}",
        lines.join("\n")
    );
}
