//! Property tests of the configuration loader: arbitrary file contents, random key/value sets,
//! environment variables and `--set` flags must never panic, and every error must start with
//! where the offending value came from (`file:line`, `config file ...`, `env NAME`,
//! `--set ...`, `code ...`), so a user knows what to fix. Secret values never appear in an
//! error, a dump or a `Debug` print.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_listener::config::{Config, ConfigError, LoadOptions};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Listener ids passed to `settings`, as a service with two listeners would.
const LISTENERS: &[&str] = &["orders", "on_audit"];

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n),
        // Failures are reported with their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A fresh file under Cargo's per-test scratch directory.
fn temp_file(contents: &[u8]) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prop_config");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(format!(
        "application-{}-{}.properties",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

/// Checks that `text` (one error's message) starts with a location.
fn starts_with_location(text: &str, file: Option<&Path>) -> bool {
    if let Some(file) = file {
        let name = file.display().to_string();
        if let Some(rest) = text.strip_prefix(&name) {
            // `path:LINE: ...`
            let rest = rest.strip_prefix(':').unwrap_or("");
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 && rest[digits..].starts_with(':') {
                return true;
            }
        }
        if text.starts_with(&format!("config file {name}")) {
            return true;
        }
    }
    ["env ", "--set ", "code "]
        .iter()
        .any(|prefix| text.starts_with(prefix))
}

/// Every individual error of `error` is located; none is nested or empty.
fn assert_located(error: &ConfigError, file: Option<&Path>) -> Result<(), TestCaseError> {
    for e in error.errors() {
        prop_assert!(
            !matches!(e, ConfigError::Many(_)),
            "nested Many in errors(): {error}"
        );
        let text = e.to_string();
        prop_assert!(
            starts_with_location(&text, file),
            "error without a location: {text:?}\n(all: {error})"
        );
    }
    Ok(())
}

/// Loads a file (and optional env / flags) and checks the error, if any.
fn load_and_check(
    contents: &[u8],
    overrides: Vec<String>,
    env: Vec<(String, String)>,
) -> Result<Option<Config>, TestCaseError> {
    let path = temp_file(contents);
    let options = LoadOptions {
        config_file: Some(path.clone()),
        profile: None,
        overrides,
        env,
    };
    let result = Config::load(&options);
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(config) => {
            // Whatever loaded must also turn into settings or located errors.
            let _ = config.dump();
            let _ = format!("{:?}", config.source_of("kafka.bootstrap-servers"));
            if let Err(e) = config.settings(LISTENERS) {
                assert_located(&e, Some(&path))?;
            }
            Ok(Some(config))
        }
        Err(e) => {
            assert_located(&e, Some(&path))?;
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Strategies

/// Keys a real file would hold: known keys (valid and misspelt), per-listener keys,
/// passthrough properties, Spring-prefixed keys, foreign keys and random junk.
fn key() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "kafka.bootstrap-servers",
        "kafka.client-id",
        "kafka.consumer.group-id",
        "kafka.consumer.auto-offset-reset",
        "kafka.consumer.enable-auto-commit",
        "kafka.consumer.max-poll-records",
        "kafka.consumer.fetch-min-size",
        "kafka.consumer.fetch-max-wait",
        "kafka.consumer.heartbeat-interval",
        "kafka.consumer.isolation-level",
        "kafka.consumer.key-deserializer",
        "kafka.producer.acks",
        "kafka.producer.batch-size",
        "kafka.producer.buffer-memory",
        "kafka.producer.compression-type",
        "kafka.producer.retries",
        "kafka.producer.transaction-id-prefix",
        "kafka.producer.value-serializer",
        "kafka.admin.operation-timeout",
        "kafka.listener.ack-mode",
        "kafka.listener.ack-count",
        "kafka.listener.ack-time",
        "kafka.listener.concurrency",
        "kafka.listener.poll-timeout",
        "kafka.listener.shutdown-timeout",
        "kafka.listener.revoke-timeout",
        "kafka.listener.missing-topics-fatal",
        "kafka.listener.auto-startup",
        "kafka.listener.group-id",
        "kafka.listener.retry.attempts",
        "kafka.listener.retry.backoff.delay",
        "kafka.listener.orders.concurrency",
        "kafka.listener.orders.ack-mode",
        "kafka.listener.ordrs.concurrency",
        "kafka.listener.on_audit.poll-timeout",
        "kafka.listener.nope.whatever",
        "kafka.properties.security.protocol",
        "kafka.consumer.properties.fetch.min.bytes",
        "kafka.producer.properties.linger.ms",
        "kafka.admin.properties.socket.timeout.ms",
        "kafka.properties.sasl.password",
        "spring.kafka.bootstrap-servers",
        "spring.kafka.listener.ack-mode",
        "kafka.bootstrap-server",
        "kafka.listner.concurrency",
        "kafka.",
        "kafka",
        "spring.kafka.",
        "server.port",
        "ORDERS_TOPIC",
        "A",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        6 => known,
        1 => "kafka\\.[a-z.\\-_]{0,30}",
        1 => "(spring\\.)?kafka\\.listener\\.[a-zA-Z0-9_\\-]{0,8}\\.[a-z\\-.]{0,16}",
        1 => ".{0,20}",
    ]
}

/// Values: typed values, placeholders (nested, broken, cyclic), escapes and junk.
fn value() -> impl Strategy<Value = String> {
    let typed = prop::sample::select(vec![
        "",
        " ",
        "0",
        "1",
        "-1",
        "4",
        "18446744073709551616",
        "true",
        "false",
        "yes",
        "all",
        "record",
        "MANUAL_IMMEDIATE",
        "count-time",
        "earliest",
        "latest",
        "none",
        "read_committed",
        "zstd",
        "brotli",
        "500ms",
        "30s",
        "1h 30m",
        "0s",
        "99999999999999999999s",
        "10KB",
        "3GB",
        "1.5MB",
        "127.0.0.1:9092",
        "host:notaport",
        "a:1,b:2,,",
        "embedded",
        "${A}",
        "${A:x}",
        "${A:${B:${C:1}}}",
        "${",
        "${}",
        "${:}",
        "}${",
        "\\${A}",
        "${kafka.listener.concurrency}",
        "${kafka.properties.sasl.password}",
        "${ORDERS_TOPIC:orders}",
        "\\u0041",
        "\\uD800",
        "\\u12",
        "\\",
        "\u{0}",
        "é€😀",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        5 => typed,
        1 => "[ -~]{0,24}",
        1 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
}

/// A `.properties` line built from the pieces above, or a comment, blank or broken line.
fn line() -> impl Strategy<Value = String> {
    let sep = prop::sample::select(vec!["=", ":", " ", " = ", "\t", "==", ""]);
    prop_oneof![
        8 => (key(), sep, value()).prop_map(|(k, s, v)| format!("{k}{s}{v}")),
        1 => "[#!].{0,20}",
        1 => Just(String::new()),
        1 => (key(), value()).prop_map(|(k, v)| format!("{k}={v}\\")),
        1 => ".{0,30}",
    ]
}

fn file_text() -> impl Strategy<Value = String> {
    let newline = prop::sample::select(vec!["\n", "\r\n", "\r"]);
    (prop::collection::vec(line(), 0..24), newline).prop_map(|(lines, nl)| lines.join(nl))
}

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(cases(256))]

    /// Any text at all as a config file: no panic, every error located.
    #[test]
    fn arbitrary_text_never_panics_and_errors_are_located(text in any::<String>()) {
        load_and_check(text.as_bytes(), vec![], vec![])?;
    }

    /// Any bytes (not UTF-8, NUL, lone surrogates' encodings...): no panic, errors located.
    #[test]
    fn arbitrary_bytes_never_panic_and_errors_are_located(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load_and_check(&bytes, vec![], vec![])?;
    }

    /// Files made of plausible (and broken) key/value lines.
    #[test]
    fn properties_like_files_never_panic_and_errors_are_located(text in file_text()) {
        load_and_check(text.as_bytes(), vec![], vec![])?;
    }

    /// Random key/value sets through `from_pairs` and `settings`.
    #[test]
    fn random_pairs_never_panic_and_errors_are_located(
        pairs in prop::collection::vec((key(), value()), 0..16)
    ) {
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match Config::from_pairs(&borrowed) {
            Ok(config) => {
                let _ = config.dump();
                if let Err(e) = config.settings(LISTENERS) {
                    assert_located(&e, None)?;
                }
                for (k, _) in &pairs {
                    let _ = config.get(k);
                    let _ = config.source_of(k);
                }
            }
            Err(e) => assert_located(&e, None)?,
        }
    }

    /// The same key/value sets spread over a file, the environment and `--set` flags.
    #[test]
    fn random_layers_never_panic_and_errors_are_located(
        file in prop::collection::vec((key(), value()), 0..10),
        env in prop::collection::vec((env_name(), value()), 0..6),
        flags in prop::collection::vec(prop_oneof![
            3 => (key(), value()).prop_map(|(k, v)| format!("{k}={v}")),
            1 => ".{0,16}",
        ], 0..6),
    ) {
        let text: String = file.iter().map(|(k, v)| format!("{}={}\n", escape_key(k), escape_value(v))).collect();
        load_and_check(text.as_bytes(), flags, env)?;
    }

    /// Placeholders any depth: an error (or a value), never a stack overflow.
    #[test]
    fn deeply_nested_placeholders_do_not_overflow(depth in 0usize..3000, close in any::<bool>()) {
        let closing = if close { "}".repeat(depth) } else { String::new() };
        let text = format!("kafka.client-id={}x{closing}\n", "${A:".repeat(depth));
        load_and_check(text.as_bytes(), vec![], vec![])?;
    }

    /// Long placeholder chains through many keys.
    #[test]
    fn long_placeholder_chains_resolve_or_fail_located(len in 1usize..400, cyclic in any::<bool>()) {
        let mut text = String::new();
        for i in 0..len {
            let next = if i + 1 == len {
                if cyclic { "${k0}".to_owned() } else { "end".to_owned() }
            } else {
                format!("${{k{}}}", i + 1)
            };
            text.push_str(&format!("k{i}={next}\n"));
        }
        text.push_str("kafka.client-id=${k0}\n");
        let loaded = load_and_check(text.as_bytes(), vec![], vec![])?;
        // The resolver allows 32 levels of nesting; deeper chains are a located error.
        if cyclic || len > 32 {
            prop_assert!(loaded.is_none(), "a cycle or a chain of {} loaded", len);
        } else {
            let config = loaded.expect("a chain within the nesting limit loads");
            prop_assert_eq!(config.get("kafka.client-id"), Some("end"));
        }
    }

    /// A secret value never shows in errors, dumps or Debug output, whichever key or
    /// placeholder carries it.
    #[test]
    fn secrets_never_appear_in_errors_dumps_or_debug(
        secret in "[A-Za-z0-9]{12}",
        secret_key in prop::sample::select(vec![
            "kafka.properties.sasl.password",
            "kafka.consumer.properties.ssl.key.password",
            "kafka.producer.properties.sasl.oauthbearer.client.secret",
            "kafka.properties.ssl.keystore.password",
        ]),
        user in prop::sample::select(vec![
            "kafka.listener.concurrency",
            "kafka.client-id",
            "kafka.consumer.group-id",
            "kafka.listener.poll-timeout",
            "kafka.bootstrap-servers",
            "kafka.listener.orders.ack-mode",
        ]),
        via_flag in any::<bool>(),
    ) {
        let marker = format!("S3cr3t{secret}");
        // The secret is set on a secret key and referred to by another key's placeholder.
        let file = format!("{secret_key}={marker}\n{user}=${{{secret_key}}}\n");
        let flags = if via_flag { vec![format!("{secret_key}={marker}x")] } else { vec![] };
        let shown = load_showing_everything(&file, flags);
        prop_assert!(!shown.contains(&marker), "secret shown:\n{}", shown);
    }
}

/// Loads `file` (and `--set` flags) and returns everything a user could see: the error, or
/// the dump, the `Debug` print and the settings error.
fn load_showing_everything(file: &str, flags: Vec<String>) -> String {
    let path = temp_file(file.as_bytes());
    let options = LoadOptions {
        config_file: Some(path.clone()),
        profile: None,
        overrides: flags,
        env: vec![],
    };
    let shown = match Config::load(&options) {
        Ok(config) => {
            let mut shown = format!("{}\n{config:?}", config.dump());
            if let Err(e) = config.settings(LISTENERS) {
                shown.push_str(&format!("\n{e}\n{e:?}"));
            }
            shown
        }
        Err(e) => format!("{e}\n{e:?}"),
    };
    let _ = std::fs::remove_file(&path);
    shown
}

/// A secret that reaches a typed key through a placeholder whose *name* does not look secret
/// (`alias=${kafka.properties.sasl.password}`, `concurrency=${alias}`) stays hidden.
#[test]
fn secrets_never_appear_through_indirect_placeholders() {
    let marker = "S3cr3tIndirect42";
    let file = format!(
        "kafka.properties.sasl.password={marker}\nplain.alias=${{kafka.properties.sasl.password}}\nkafka.listener.concurrency=${{plain.alias}}\n"
    );
    let shown = load_showing_everything(&file, vec![]);
    assert!(!shown.contains(marker), "secret shown:\n{shown}");
}

/// Environment variable names: ours (`KAFKA_...`, `SPRING_KAFKA_...`, per-listener ones) and
/// others.
fn env_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_LISTENER_CONCURRENCY",
            "KAFKA_LISTENER_ACK_MODE",
            "KAFKA_LISTENER_ORDERS_CONCURRENCY",
            "KAFKA_LISTENER_ORDRS_CONCURRENCY",
            "KAFKA_LISTENER_ON_AUDIT_POLL_TIMEOUT",
            "KAFKA_LISTENER_RETRY_ATTEMPTS",
            "KAFKA_CONSUMER_PROPERTIES_FETCH_MIN_BYTES",
            "KAFKA_PROPERTIES_SASL_PASSWORD",
            "SPRING_KAFKA_LISTENER_ACK_MODE",
            "KAFKA_PORT",
            "A",
            "B",
            "ORDERS_TOPIC",
        ]).prop_map(str::to_owned),
        1 => "(SPRING_)?KAFKA_[A-Z_]{0,24}",
        1 => "[A-Za-z_][A-Za-z0-9_]{0,10}",
    ]
}

/// Escapes a key for a `.properties` line (separators and escapes are special in keys).
fn escape_key(k: &str) -> String {
    let mut out = String::new();
    for c in k.chars() {
        match c {
            '=' | ':' | ' ' | '\t' | '\\' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a value for a `.properties` line (only line breaks and backslashes matter).
fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[test]
fn a_missing_file_is_a_located_error() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prop_config/does-not-exist.properties");
    let err = Config::load(&LoadOptions {
        config_file: Some(path.clone()),
        profile: None,
        overrides: vec![],
        env: vec![],
    })
    .expect_err("a named file must exist");
    assert!(starts_with_location(&err.to_string(), Some(&path)), "{err}");
}
