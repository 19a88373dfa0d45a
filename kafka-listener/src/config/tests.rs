//! Tests of loading, layering, validation and settings (the parsers and the
//! schema have their own tests next to them).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// A directory that is removed when dropped; tests run in parallel, so each
/// gets its own.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kafka-listener-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn options(file: &Path) -> LoadOptions {
    LoadOptions {
        config_file: Some(file.to_path_buf()),
        ..LoadOptions::default()
    }
}

/// Loads as if the working directory had no default config file.
fn load_without_file(options: &LoadOptions) -> Result<Config, ConfigError> {
    Builder::load_with_default(options, Path::new("/nonexistent/application.properties"))
}

fn load_ok(options: &LoadOptions) -> Config {
    Config::load(options).unwrap_or_else(|e| panic!("unexpected error:\n{e}"))
}

fn load_err(options: &LoadOptions) -> String {
    match Config::load(options) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn pairs_ok(pairs: &[(&str, &str)]) -> Config {
    Config::from_pairs(pairs).unwrap_or_else(|e| panic!("unexpected error:\n{e}"))
}

fn pairs_err(pairs: &[(&str, &str)]) -> String {
    match Config::from_pairs(pairs) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn settings_ok(config: &Config, ids: &[&str]) -> Settings {
    config
        .settings(ids)
        .unwrap_or_else(|e| panic!("unexpected error:\n{e}"))
}

// --- files -----------------------------------------------------------------

#[test]
fn file_values_keep_file_and_line() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "# Kafka\n\
         kafka.bootstrap-servers = broker1:9092,broker2:9092\n\
         spring.kafka.consumer.group-id: orders\n\
         kafka.listener.ack-mode record\n\
         server.port=8080\n\
         logging.level.rdkafka=debug\n",
    );
    let config = load_ok(&options(&path));
    assert_eq!(
        config.get("kafka.bootstrap-servers"),
        Some("broker1:9092,broker2:9092")
    );
    assert_eq!(config.get("kafka.consumer.group-id"), Some("orders"));
    // Either prefix finds the normalized key.
    assert_eq!(config.get("spring.kafka.consumer.group-id"), Some("orders"));
    assert_eq!(config.get("kafka.listener.ack-mode"), Some("record"));
    assert_eq!(
        config
            .source_of("kafka.consumer.group-id")
            .map(ToString::to_string),
        Some(format!("{}:3", path.display()))
    );
    assert_eq!(
        config.source_of("kafka.consumer.group-id"),
        Some(&Source::File {
            path: path.clone(),
            line: 3
        })
    );
    // Other keys are kept (placeholders may use them) but are not ours.
    assert_eq!(config.get("server.port"), Some("8080"));
    assert!(!config.dump().contains("server.port"));
    assert_eq!(
        config.source_of("kafka.listener.ack-time"),
        Some(&Source::Default)
    );
}

#[test]
fn line_numbers_after_continuations_are_exact() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "kafka.bootstrap-servers=a:1,\\\n  b:2,\\\n  c:3\nkafka.listener.concurency=2\n",
    );
    assert_eq!(
        load_err(&options(&path)),
        format!(
            "{}:4: unknown key kafka.listener.concurency; did you mean kafka.listener.concurrency?",
            path.display()
        )
    );
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "kafka.client-id=a\nkafka.client-id=\\uZZZZ\n",
    );
    assert_eq!(
        load_err(&options(&path)),
        format!("{}:2: Malformed \\uxxxx encoding: not hex.", path.display())
    );
}

#[test]
fn missing_explicit_file_is_an_error() {
    let options = options(Path::new("./nope.properties"));
    assert_eq!(
        load_err(&options),
        "config file ./nope.properties: No such file or directory (os error 2)"
    );
    match Config::load(&options) {
        Err(ConfigError::Io { path, error }) => {
            assert_eq!(path, Path::new("./nope.properties"));
            assert_eq!(error.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_default_file_means_defaults_only() {
    let dir = TempDir::new();
    let config =
        Builder::load_with_default(&LoadOptions::default(), &dir.0.join(DEFAULT_CONFIG_FILE))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.get("kafka.bootstrap-servers"),
        Some("localhost:9092")
    );
    assert_eq!(
        config.source_of("kafka.bootstrap-servers"),
        Some(&Source::Default)
    );
}

#[test]
fn default_file_is_read_when_present() {
    let dir = TempDir::new();
    let path = dir.write(DEFAULT_CONFIG_FILE, "kafka.client-id=app\n");
    let config = Builder::load_with_default(&LoadOptions::default(), &path)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.get("kafka.client-id"), Some("app"));
}

#[test]
fn profile_file_must_exist() {
    let dir = TempDir::new();
    let main = dir.write("application.properties", "");
    let options = LoadOptions {
        profile: Some("prod".to_owned()),
        ..options(&main)
    };
    assert_eq!(
        load_err(&options),
        format!(
            "config file {}: No such file or directory (os error 2)",
            dir.0.join("application-prod.properties").display()
        )
    );
    // Even when the (optional) default file is missing.
    let missing_default = dir.0.join("missing").join(DEFAULT_CONFIG_FILE);
    let options = LoadOptions {
        profile: Some("prod".to_owned()),
        ..LoadOptions::default()
    };
    assert!(matches!(
        Builder::load_with_default(&options, &missing_default),
        Err(ConfigError::Io { .. })
    ));
}

#[test]
fn profile_file_is_named_after_the_config_file() {
    assert_eq!(
        profile_file(Path::new("application.properties"), "dev"),
        Path::new("application-dev.properties")
    );
    assert_eq!(
        profile_file(Path::new("conf/orders.properties"), "dev"),
        Path::new("conf/orders-dev.properties")
    );
}

// --- layering ----------------------------------------------------------------

#[test]
fn precedence_of_all_five_layers() {
    let dir = TempDir::new();
    let main = dir.write(
        "application.properties",
        "kafka.listener.ack-mode=record\nkafka.listener.ack-count=2\nkafka.listener.ack-time=2s\nkafka.listener.concurrency=2\n",
    );
    dir.write(
        "application-dev.properties",
        "kafka.listener.ack-count=3\nkafka.listener.ack-time=3s\nkafka.listener.concurrency=3\n",
    );
    let options = LoadOptions {
        config_file: Some(main.clone()),
        profile: Some("dev".to_owned()),
        overrides: vec!["kafka.listener.concurrency=5".to_owned()],
        env: env(&[
            ("KAFKA_LISTENER_ACK_TIME", "4s"),
            ("KAFKA_LISTENER_CONCURRENCY", "4"),
        ]),
    };
    let config = load_ok(&options);
    let layer = |key: &str| {
        (
            config.get(key).map(str::to_owned),
            config.source_of(key).map(ToString::to_string),
        )
    };
    assert_eq!(
        layer("kafka.listener.shutdown-timeout"),
        (Some("30s".into()), Some("default".into()))
    );
    assert_eq!(
        layer("kafka.listener.ack-mode"),
        (Some("record".into()), Some(format!("{}:1", main.display())))
    );
    assert_eq!(
        layer("kafka.listener.ack-count"),
        (
            Some("3".into()),
            Some(format!(
                "{}:1",
                dir.0.join("application-dev.properties").display()
            ))
        )
    );
    assert_eq!(
        layer("kafka.listener.ack-time"),
        (
            Some("4s".into()),
            Some("env KAFKA_LISTENER_ACK_TIME".into())
        )
    );
    assert_eq!(
        layer("kafka.listener.concurrency"),
        (
            Some("5".into()),
            Some("--set kafka.listener.concurrency=5".into())
        )
    );
    let settings = settings_ok(&config, &[]);
    assert_eq!(settings.listener.ack_mode, AckMode::Record);
    assert_eq!(settings.listener.ack_count, 3);
    assert_eq!(settings.listener.ack_time, Duration::from_secs(4));
    assert_eq!(settings.listener.concurrency, Some(5));
}

#[test]
fn environment_relaxed_binding() {
    let options = LoadOptions {
        env: env(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092"),
            ("SPRING_KAFKA_CONSUMER_GROUP_ID", "spring-group"),
            // Both spellings: ours wins, whatever the order.
            ("SPRING_KAFKA_CLIENT_ID", "spring-client"),
            ("KAFKA_CLIENT_ID", "our-client"),
            ("KAFKA_LISTENER_RETRY_BACKOFF_DELAY", "250ms"),
            ("KAFKA_CONSUMER_PROPERTIES_FETCH_MIN_BYTES", "1"),
            ("KAFKA_PRODUCER_PROPERTIES_LINGER_MS", "5"),
            ("KAFKA_PROPERTIES_SECURITY_PROTOCOL", "SSL"),
            ("SPRING_KAFKA_ADMIN_PROPERTIES_REQUEST_TIMEOUT_MS", "100"),
            // Not ours: ignored.
            ("KAFKA_PORT", "not a port"),
            ("KAFKA_HEAP_OPTS", "-Xmx1g"),
            ("kafka_client_id", "lowercase is not bound"),
            ("PATH", "/usr/bin"),
        ]),
        ..LoadOptions::default()
    };
    let config = load_without_file(&options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.get("kafka.bootstrap-servers"), Some("k1:9092"));
    assert_eq!(
        config.source_of("kafka.bootstrap-servers"),
        Some(&Source::Env {
            var: "KAFKA_BOOTSTRAP_SERVERS".to_owned()
        })
    );
    assert_eq!(config.get("kafka.consumer.group-id"), Some("spring-group"));
    assert_eq!(config.get("kafka.client-id"), Some("our-client"));
    let settings = settings_ok(&config, &[]);
    assert_eq!(
        settings.listener.retry_backoff_delay,
        Duration::from_millis(250)
    );
    let names = |list: &[Passthrough]| {
        list.iter()
            .map(|p| format!("{}={} ({})", p.key, p.value, p.source))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&settings.consumer.properties),
        ["fetch.min.bytes=1 (env KAFKA_CONSUMER_PROPERTIES_FETCH_MIN_BYTES)"]
    );
    assert_eq!(
        names(&settings.producer.properties),
        ["linger.ms=5 (env KAFKA_PRODUCER_PROPERTIES_LINGER_MS)"]
    );
    assert_eq!(
        names(&settings.properties),
        ["security.protocol=SSL (env KAFKA_PROPERTIES_SECURITY_PROTOCOL)"]
    );
    assert_eq!(
        names(&settings.admin.properties),
        ["request.timeout.ms=100 (env SPRING_KAFKA_ADMIN_PROPERTIES_REQUEST_TIMEOUT_MS)"]
    );
}

#[test]
fn environment_values_are_validated_with_the_variable_named() {
    let options = LoadOptions {
        env: env(&[("KAFKA_LISTENER_SHUTDOWN_TIMEOUT", "half a minute")]),
        ..LoadOptions::default()
    };
    let err = load_without_file(&options)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("env KAFKA_LISTENER_SHUTDOWN_TIMEOUT: kafka.listener.shutdown-timeout = \"half a minute\": \
             expected a duration like 500ms, 30s or 1m (a bare number means milliseconds)"
            .to_owned())
    );
}

#[test]
fn overrides_must_be_key_value_and_ours() {
    let options = LoadOptions {
        overrides: vec![
            "kafka.listener.concurrency".to_owned(),
            "=4".to_owned(),
            "bootstrap-servers=x:1".to_owned(),
            "app.topic=orders".to_owned(),
        ],
        ..LoadOptions::default()
    };
    let err = load_without_file(&options)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("--set kafka.listener.concurrency: expected key=value (e.g. --set kafka.listener.concurrency=4)\n\
             --set =4: expected key=value (e.g. --set kafka.listener.concurrency=4)\n\
             --set bootstrap-servers=x:1: unknown key bootstrap-servers; did you mean kafka.bootstrap-servers?"
            .to_owned())
    );
}

#[test]
fn value_from_flag_is_not_repeated_in_its_error() {
    assert_eq!(
        load_without_file(&LoadOptions {
            overrides: vec!["kafka.listener.concurrency=0".to_owned()],
            ..LoadOptions::default()
        })
        .map(|_| ())
        .map_err(|e| e.to_string()),
        Err(
            "--set kafka.listener.concurrency=0: expected a positive integer (1, 2, ...)"
                .to_owned()
        )
    );
}

// --- validation ----------------------------------------------------------------

#[test]
fn typed_value_errors_name_source_key_and_value() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "kafka.listener.concurrency = zero\nkafka.listener.ack-mode=recrod\n",
    );
    assert_eq!(
        load_err(&options(&path)),
        format!(
            "{p}:1: kafka.listener.concurrency = \"zero\": expected a positive integer (1, 2, ...)\n\
             {p}:2: kafka.listener.ack-mode = \"recrod\": expected one of record, batch, time, count, \
             count_time, manual, manual_immediate (did you mean record?)",
            p = path.display()
        )
    );
}

#[test]
fn every_enum_value_loads_and_bad_ones_fail() {
    for (text, mode) in [
        ("record", AckMode::Record),
        ("BATCH", AckMode::Batch),
        ("time", AckMode::Time),
        ("count", AckMode::Count),
        ("count-time", AckMode::CountTime),
        ("MANUAL", AckMode::Manual),
        ("MANUAL_IMMEDIATE", AckMode::ManualImmediate),
    ] {
        let settings = settings_ok(&pairs_ok(&[("kafka.listener.ack-mode", text)]), &[]);
        assert_eq!(settings.listener.ack_mode, mode, "{text}");
    }
    for (text, value) in [
        ("earliest", AutoOffsetReset::Earliest),
        ("latest", AutoOffsetReset::Latest),
        ("none", AutoOffsetReset::None),
    ] {
        let settings = settings_ok(
            &pairs_ok(&[("kafka.consumer.auto-offset-reset", text)]),
            &[],
        );
        assert_eq!(settings.consumer.auto_offset_reset, value);
    }
    for (text, value) in [
        ("read_committed", IsolationLevel::ReadCommitted),
        ("read_uncommitted", IsolationLevel::ReadUncommitted),
    ] {
        let settings = settings_ok(&pairs_ok(&[("kafka.consumer.isolation-level", text)]), &[]);
        assert_eq!(settings.consumer.isolation_level, Some(value));
    }
    for (text, value) in [
        ("all", Acks::All),
        ("-1", Acks::All),
        ("1", Acks::Leader),
        ("0", Acks::None),
    ] {
        let settings = settings_ok(&pairs_ok(&[("kafka.producer.acks", text)]), &[]);
        assert_eq!(settings.producer.acks, value);
    }
    for text in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let settings = settings_ok(&pairs_ok(&[("kafka.producer.compression-type", text)]), &[]);
        assert_eq!(settings.producer.compression_type.as_deref(), Some(text));
    }
    let bad = [
        (
            "kafka.listener.ack-mode",
            "sometimes",
            "expected one of record, batch, time, count, count_time, manual, manual_immediate",
        ),
        (
            "kafka.consumer.auto-offset-reset",
            "smallest",
            "expected one of earliest, latest, none",
        ),
        (
            "kafka.consumer.isolation-level",
            "read_comitted",
            "expected one of read_committed, read_uncommitted (did you mean read_committed?)",
        ),
        ("kafka.producer.acks", "2", "expected one of all, 1, 0, -1"),
        (
            "kafka.producer.compression-type",
            "brotli",
            "expected one of none, gzip, snappy, lz4, zstd",
        ),
        (
            "kafka.listener.missing-topics-fatal",
            "maybe",
            "expected true or false",
        ),
        (
            "kafka.listener.retry.attempts",
            "0",
            "expected a positive integer (1, 2, ...)",
        ),
        (
            "kafka.producer.retries",
            "-1",
            "expected a non-negative integer (0, 1, 2, ...)",
        ),
        (
            "kafka.producer.batch-size",
            "big",
            "expected a size in bytes (e.g. 16384, 64KB, 32MB)",
        ),
        (
            "kafka.listener.poll-timeout",
            "0",
            "expected a duration greater than zero, like 500ms or 1s",
        ),
        (
            "kafka.bootstrap-servers",
            "",
            "expected a comma-separated list of host:port (or \"embedded\")",
        ),
    ];
    for (key, value, expected) in bad {
        assert_eq!(
            pairs_err(&[(key, value)]),
            format!("code {key}={value}: {expected}")
        );
    }
}

#[test]
fn durations_in_config() {
    let config = pairs_ok(&[
        ("kafka.listener.shutdown-timeout", "30"),
        ("kafka.listener.revoke-timeout", "1m 30s"),
        ("kafka.consumer.fetch-max-wait", "500ms"),
        ("kafka.consumer.heartbeat-interval", "3s"),
        ("kafka.admin.operation-timeout", "2m"),
    ]);
    let settings = settings_ok(&config, &[]);
    // A bare number is milliseconds, as in Spring Boot.
    assert_eq!(
        settings.listener.shutdown_timeout,
        Duration::from_millis(30)
    );
    assert_eq!(settings.listener.revoke_timeout, Duration::from_secs(90));
    assert_eq!(
        settings.consumer.fetch_max_wait,
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        settings.consumer.heartbeat_interval,
        Some(Duration::from_secs(3))
    );
    assert_eq!(settings.admin.operation_timeout, Duration::from_secs(120));
}

#[test]
fn unknown_keys_get_suggestions() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "server.port=8080\n\
         kafka.consumer.grup-id=a\n\
         spring.kafka.bootstrap-server=b:1\n\
         kafka.consumer.groupId=c\n\
         kafka.listener.ack_mode=record\n\
         kafka.frobnicate=yes\n\
         Kafka.client-id=x\n\
         kafka.listener.idle-between-polls=1s\n",
    );
    assert_eq!(
        load_err(&options(&path)),
        format!(
            "{p}:2: unknown key kafka.consumer.grup-id; did you mean kafka.consumer.group-id?\n\
             {p}:3: unknown key spring.kafka.bootstrap-server; did you mean spring.kafka.bootstrap-servers?\n\
             {p}:4: unknown key kafka.consumer.groupId; did you mean kafka.consumer.group-id?\n\
             {p}:5: unknown key kafka.listener.ack_mode; did you mean kafka.listener.ack-mode?\n\
             {p}:6: unknown key kafka.frobnicate\n\
             {p}:7: unknown key Kafka.client-id; did you mean kafka.client-id?\n\
             {p}:8: unknown key kafka.listener.idle-between-polls",
            p = path.display()
        )
    );
}

#[test]
fn serializer_keys_explain_why_they_are_unsupported() {
    let err = pairs_err(&[
        (
            "spring.kafka.consumer.value-deserializer",
            "org.apache.kafka.common.serialization.StringDeserializer",
        ),
        ("kafka.producer.properties.key.serializer", "x"),
    ]);
    assert_eq!(
        err,
        "code spring.kafka.consumer.value-deserializer=org.apache.kafka.common.serialization.StringDeserializer: \
         spring.kafka.consumer.value-deserializer is not supported: payload types are chosen by the handler's \
         extractor arguments (Json<T>, String, Vec<u8>), not by configuration\n\
         code kafka.producer.properties.key.serializer=x: kafka.producer.properties.key.serializer is not \
         supported: payload types are chosen by the handler's extractor arguments (Json<T>, String, Vec<u8>), \
         not by configuration"
    );
}

#[test]
fn all_errors_of_a_load_are_collected() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "kafka.consumer.grup-id=a\nkafka.listener.concurrency=0\nkafka.consumer.group-id=${GROUP}\n",
    );
    let options = LoadOptions {
        overrides: vec!["kafka.listener.ack-count=many".to_owned()],
        env: env(&[("KAFKA_LISTENER_POLL_TIMEOUT", "never")]),
        ..options(&path)
    };
    let Err(err) = Config::load(&options) else {
        panic!("expected errors")
    };
    assert_eq!(err.errors().len(), 5, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            // In reading order: the file by line, then the environment, then flags.
            "{p}:1: unknown key kafka.consumer.grup-id; did you mean kafka.consumer.group-id?\n\
             {p}:2: kafka.listener.concurrency = \"0\": expected a positive integer (1, 2, ...)\n\
             {p}:3: kafka.consumer.group-id: unresolved placeholder ${{GROUP}} \
             (no key or environment variable GROUP, and no default)\n\
             env KAFKA_LISTENER_POLL_TIMEOUT: kafka.listener.poll-timeout = \"never\": \
             expected a duration like 500ms, 30s or 1m (a bare number means milliseconds)\n\
             --set kafka.listener.ack-count=many: expected a positive integer (1, 2, ...)",
            p = path.display()
        )
    );
}

// --- placeholders ----------------------------------------------------------------

#[test]
fn placeholders_resolve_keys_env_and_defaults() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "app.name=orders\n\
         kafka.client-id=${app.name}-client\n\
         kafka.consumer.group-id=${spring.kafka.client-id}-group\n\
         kafka.bootstrap-servers=${BROKER_HOST}:${BROKER_PORT:9092}\n\
         kafka.producer.transaction-id-prefix=${TX_PREFIX:${app.name}-tx-}\n\
         kafka.listener.concurrency=${WORKERS:1}\n",
    );
    let options = LoadOptions {
        env: env(&[("BROKER_HOST", "kafka.internal"), ("WORKERS", "3")]),
        ..options(&path)
    };
    let config = load_ok(&options);
    assert_eq!(config.get("kafka.client-id"), Some("orders-client"));
    assert_eq!(
        config.get("kafka.consumer.group-id"),
        Some("orders-client-group")
    );
    assert_eq!(
        config.get("kafka.bootstrap-servers"),
        Some("kafka.internal:9092")
    );
    assert_eq!(
        config.get("kafka.producer.transaction-id-prefix"),
        Some("orders-tx-")
    );
    assert_eq!(settings_ok(&config, &[]).listener.concurrency, Some(3));
    // A key wins over an environment variable of the same name.
    let config = pairs_ok(&[("app.host", "from-key"), ("kafka.client-id", "${app.host}")]);
    assert_eq!(config.get("kafka.client-id"), Some("from-key"));
}

#[test]
fn placeholder_errors_name_the_value_containing_them() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "a=${b}\nb=${a}\nkafka.client-id=x\nkafka.consumer.group-id=${GROUP}\nkafka.producer.client-id=${a}\nkafka.listener.group-id=${oops\n",
    );
    assert_eq!(
        load_err(&options(&path)),
        format!(
            "{p}:4: kafka.consumer.group-id: unresolved placeholder ${{GROUP}} \
             (no key or environment variable GROUP, and no default)\n\
             {p}:2: b: placeholder cycle ${{a}} -> ${{b}} -> ${{a}}\n\
             {p}:6: kafka.listener.group-id: unterminated placeholder: \"${{\" without a matching \"}}\" \
             (write \\${{ for a literal \"${{\")",
            p = path.display()
        )
    );
}

#[test]
fn resolve_placeholders_for_macro_attributes() {
    let config = load_without_file(&LoadOptions {
        env: env(&[("ORDERS_TOPIC", "orders.v2")]),
        ..LoadOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config
            .resolve_placeholders(
                "${ORDERS_TOPIC:orders}",
                "#[kafka_listener] on_order topics"
            )
            .ok(),
        Some("orders.v2".to_owned())
    );
    assert_eq!(
        config
            .resolve_placeholders("${AUDIT_TOPIC:audit}", "x")
            .ok(),
        Some("audit".to_owned())
    );
    assert_eq!(
        config
            .resolve_placeholders("${kafka.bootstrap-servers}", "x")
            .ok(),
        Some("localhost:9092".to_owned())
    );
    assert_eq!(
        config
            .resolve_placeholders("${AUDIT_TOPIC}", "#[kafka_listener] on_audit topics")
            .map_err(|e| e.to_string()),
        Err(
            "#[kafka_listener] on_audit topics: unresolved placeholder ${AUDIT_TOPIC} \
             (no key or environment variable AUDIT_TOPIC, and no default)"
                .to_owned()
        )
    );
}

// --- listeners ----------------------------------------------------------------

#[test]
fn per_listener_keys_override_global_ones() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "kafka.listener.concurrency=2\n\
         kafka.listener.on_order.concurrency=4\n\
         kafka.listener.on_order.retry.attempts=3\n\
         kafka.listener.on_audit.ack-mode=manual\n\
         spring.kafka.listener.on_audit.group-id=audit\n",
    );
    let options = LoadOptions {
        env: env(&[
            // Per-listener beats global even from a lower layer.
            ("KAFKA_LISTENER_RETRY_ATTEMPTS", "7"),
            ("KAFKA_LISTENER_ON_AUDIT_AUTO_STARTUP", "false"),
        ]),
        ..options(&path)
    };
    let config = load_ok(&options);
    let settings = settings_ok(&config, &["on_order", "on_audit", "plain"]);
    let order = &settings.listeners["on_order"];
    let audit = &settings.listeners["on_audit"];
    let plain = &settings.listeners["plain"];
    assert_eq!(
        (order.concurrency, order.retry_attempts, order.ack_mode),
        (Some(4), 3, AckMode::Batch)
    );
    assert_eq!(
        (audit.concurrency, audit.retry_attempts, audit.ack_mode),
        (Some(2), 7, AckMode::Manual)
    );
    assert_eq!(audit.group_id.as_deref(), Some("audit"));
    assert_eq!(audit.auto_startup, Some(false));
    assert_eq!(plain, &settings.listener);
    assert_eq!(settings.listener.retry_attempts, 7);
    assert_eq!(
        config.source_of("kafka.listener.on_audit.auto-startup"),
        Some(&Source::Env {
            var: "KAFKA_LISTENER_ON_AUDIT_AUTO_STARTUP".to_owned()
        })
    );
    assert_eq!(
        config.get("kafka.listener.on_audit.auto-startup"),
        Some("false")
    );
}

#[test]
fn per_listener_env_and_flags_follow_layer_precedence() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "kafka.listener.on_order.concurrency=2\nkafka.listener.on_order.ack-mode=record\n",
    );
    let options = LoadOptions {
        overrides: vec!["kafka.listener.on_order.ack-mode=time".to_owned()],
        env: env(&[
            ("KAFKA_LISTENER_ON_ORDER_CONCURRENCY", "3"),
            ("KAFKA_LISTENER_ON_ORDER_ACK_MODE", "count"),
        ]),
        ..options(&path)
    };
    let config = load_ok(&options);
    let order = &settings_ok(&config, &["on_order"]).listeners["on_order"];
    assert_eq!(order.concurrency, Some(3));
    assert_eq!(order.ack_mode, AckMode::Time);
    assert_eq!(
        config
            .source_of("kafka.listener.on_order.concurrency")
            .map(ToString::to_string),
        Some("env KAFKA_LISTENER_ON_ORDER_CONCURRENCY".to_owned())
    );
}

#[test]
fn unknown_listener_ids_are_errors_with_suggestions() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "kafka.listener.on_order.concurrency=1\nkafka.listener.on_ordr.concurrency=2\n",
    );
    let options = LoadOptions {
        env: env(&[
            ("KAFKA_LISTENER_ON_AUDT_ACK_MODE", "record"),
            ("KAFKA_LISTENER_ZZZ_CONCURRENCY", "1"),
        ]),
        ..options(&path)
    };
    let config = load_ok(&options);
    assert_eq!(
        config.settings(&["on_order", "on_audit"]).map(|_| ()).map_err(|e| e.to_string()),
        Err(format!(
            "{p}:2: kafka.listener.on_ordr.concurrency: no listener with id on_ordr; did you mean on_order? \
             (listeners: on_order, on_audit)\n\
             env KAFKA_LISTENER_ON_AUDT_ACK_MODE: kafka.listener.on_audt.ack-mode: no listener with id on_audt; \
             did you mean on_audit? (listeners: on_order, on_audit)\n\
             env KAFKA_LISTENER_ZZZ_CONCURRENCY: kafka.listener.zzz.concurrency: no listener with id zzz \
             (listeners: on_order, on_audit)",
            p = path.display()
        ))
    );
    assert_eq!(
        pairs_ok(&[("kafka.listener.x.concurrency", "1")]).settings(&[]).map(|_| ()).map_err(|e| e.to_string()),
        Err("code kafka.listener.x.concurrency=1: kafka.listener.x.concurrency: no listener with id x \
             (no listeners are registered)"
            .to_owned())
    );
}

#[test]
fn per_listener_values_are_validated_at_load() {
    assert_eq!(
        pairs_err(&[("kafka.listener.on_order.retry.backoff.delay", "soon")]),
        "code kafka.listener.on_order.retry.backoff.delay=soon: \
         expected a duration like 500ms, 30s or 1m (a bare number means milliseconds)"
    );
}

// --- settings, secrets, dump -------------------------------------------------------

#[test]
fn defaults() {
    let settings = settings_ok(&pairs_ok(&[]), &["a"]);
    let listener = ListenerSettings {
        ack_mode: AckMode::Batch,
        ack_count: 1,
        ack_time: Duration::from_secs(5),
        concurrency: None,
        concurrency_per_partition: None,
        poll_timeout: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(30),
        revoke_timeout: Duration::from_secs(15),
        missing_topics_fatal: true,
        auto_startup: None,
        group_id: None,
        retry_attempts: 10,
        retry_backoff_delay: Duration::from_secs(1),
        retry_backoff_multiplier: 1.0,
        retry_backoff_max_delay: Duration::from_secs(30),
        retry_backoff_random: false,
        max_buffered_bytes: 64 << 20,
        dead_letter_enabled: false,
        dead_letter_topic: None,
        delivery_attempt_header: false,
        retry_topic_enabled: false,
        retry_topic_attempts: 3,
        retry_topic_backoff_delay: Duration::from_secs(1),
        retry_topic_backoff_multiplier: 1.0,
        retry_topic_backoff_max_delay: Duration::from_secs(30),
        retry_topic_single_topic: false,
        circuit_breaker_consecutive: None,
        circuit_breaker_ratio: None,
        circuit_breaker_window: 100,
        circuit_breaker_reset_after: None,
        new_topic_partitions: None,
        new_topic_replicas: None,
        new_topic_configs: Vec::new(),
    };
    let expected = Settings {
        bootstrap_servers: "localhost:9092".to_owned(),
        client_id: None,
        properties: vec![],
        security: vec![],
        consumer: ConsumerSettings {
            group_id: None,
            client_id: None,
            auto_offset_reset: AutoOffsetReset::Earliest,
            enable_auto_commit: None,
            max_poll_records: 500,
            fetch_min_size: None,
            fetch_max_wait: None,
            heartbeat_interval: None,
            isolation_level: None,
            properties: vec![],
        },
        producer: ProducerSettings {
            client_id: None,
            acks: Acks::All,
            batch_size: None,
            buffer_memory: None,
            compression_type: None,
            retries: None,
            transaction_id_prefix: None,
            linger: None,
            default_topic: None,
            close_timeout: None,
            properties: vec![],
        },
        admin: AdminSettings {
            operation_timeout: Duration::from_secs(10),
            auto_create: false,
            properties: vec![],
        },
        management: ManagementSettings {
            port: None,
            address: "127.0.0.1".to_owned(),
            lag_interval: Duration::from_secs(5),
            token: None,
        },
        listener: listener.clone(),
        listeners: [("a".to_owned(), listener)].into_iter().collect(),
    };
    assert_eq!(settings, expected);
}

#[test]
fn enable_auto_commit_true_is_refused_with_file_line_and_reason() {
    let dir = TempDir::new();
    let file = dir.write(
        "application.properties",
        "kafka.bootstrap-servers=embedded\nkafka.consumer.enable-auto-commit=true\nkafka.consumer.properties.enable.auto.commit=TRUE\n",
    );
    let config = load_ok(&options(&file));
    let error = match config.settings(&[]) {
        Ok(s) => panic!("enable-auto-commit=true accepted: {s:?}"),
        Err(e) => e.to_string(),
    };
    for needle in [
        "application.properties:2",
        "kafka.consumer.enable-auto-commit",
        "application.properties:3",
        "kafka.consumer.properties.enable.auto.commit",
        "commits the offsets of finished records itself",
    ] {
        assert!(error.contains(needle), "{needle:?} missing from:\n{error}");
    }
}

#[test]
fn spring_security_keys_and_java_jaas_become_librdkafka_properties() {
    let dir = TempDir::new();
    let file = dir.write(
        "application.properties",
        "spring.kafka.security.protocol=SASL_SSL\n\
         spring.kafka.ssl.trust-store-location=file:/etc/kafka/ca.pem\n\
         spring.kafka.properties.sasl.mechanism=SCRAM-SHA-512\n\
         spring.kafka.properties.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"alice-secret\";\n\
         spring.kafka.properties.ssl.endpoint.identification.algorithm=\n",
    );
    let s = settings_ok(&load_ok(&options(&file)), &[]);
    let pairs = |list: &[Passthrough]| -> Vec<(String, String)> {
        list.iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect()
    };
    assert_eq!(
        pairs(&s.security),
        [
            ("security.protocol".to_owned(), "sasl_ssl".to_owned()),
            ("ssl.ca.location".to_owned(), "/etc/kafka/ca.pem".to_owned()),
        ]
    );
    let props = pairs(&s.properties);
    for expected in [
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "alice"),
        ("sasl.password", "alice-secret"),
        ("ssl.endpoint.identification.algorithm", "none"),
    ] {
        assert!(
            props.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} missing from {:?}",
            s.properties
        );
    }
    assert!(!props.iter().any(|(k, _)| k == "sasl.jaas.config"));
    assert!(
        !format!("{s:?}").contains("alice-secret"),
        "password in Debug"
    );

    // Spring's own JAAS keys.
    let file = dir.write(
        "application.properties",
        "kafka.jaas.enabled=true\n\
         kafka.jaas.login-module=org.apache.kafka.common.security.plain.PlainLoginModule\n\
         kafka.jaas.options.username=bob\n\
         kafka.jaas.options.password=bob-secret\n",
    );
    let s = settings_ok(&load_ok(&options(&file)), &[]);
    assert_eq!(
        pairs(&s.security),
        [
            ("sasl.username".to_owned(), "bob".to_owned()),
            ("sasl.password".to_owned(), "bob-secret".to_owned()),
        ]
    );
}

#[test]
fn stores_librdkafka_cannot_read_are_refused_with_the_way_out() {
    let dir = TempDir::new();
    let file = dir.write(
        "application.properties",
        "kafka.ssl.trust-store-location=/etc/kafka/truststore.jks\n\
         kafka.ssl.trust-store-password=changeit\n\
         kafka.ssl.key-store-location=classpath:client.p12\n\
         kafka.properties.sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;\n",
    );
    let error = match load_ok(&options(&file)).settings(&[]) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e.to_string(),
    };
    for needle in [
        "application.properties:1",
        "kafka.ssl.trust-store-location",
        "keytool -exportcert",
        "application.properties:3",
        "no classpath outside the JVM",
        "application.properties:4",
        "Kerberos/GSSAPI is not built in",
    ] {
        assert!(error.contains(needle), "{needle:?} missing from:\n{error}");
    }
    assert!(!error.contains("changeit"));
}

#[test]
fn every_field_is_read() {
    let config = pairs_ok(&[
        ("kafka.bootstrap-servers", "embedded"),
        ("kafka.client-id", "app"),
        ("kafka.consumer.client-id", "app-c"),
        ("kafka.consumer.group-id", "g"),
        ("kafka.consumer.enable-auto-commit", "false"),
        ("kafka.consumer.max-poll-records", "10"),
        ("kafka.consumer.fetch-min-size", "1KB"),
        ("kafka.producer.client-id", "app-p"),
        ("kafka.producer.batch-size", "16384"),
        ("kafka.producer.buffer-memory", "32MB"),
        ("kafka.producer.retries", "0"),
        ("kafka.producer.transaction-id-prefix", "tx-"),
        ("kafka.listener.missing-topics-fatal", "false"),
        ("kafka.listener.group-id", ""),
    ]);
    let s = settings_ok(&config, &[]);
    assert_eq!(s.bootstrap_servers, "embedded");
    assert_eq!(s.client_id.as_deref(), Some("app"));
    assert_eq!(s.consumer.client_id.as_deref(), Some("app-c"));
    assert_eq!(s.consumer.group_id.as_deref(), Some("g"));
    assert_eq!(s.consumer.enable_auto_commit, Some(false));
    assert_eq!(s.consumer.max_poll_records, 10);
    assert_eq!(s.consumer.fetch_min_size, Some(1024));
    assert_eq!(s.producer.client_id.as_deref(), Some("app-p"));
    assert_eq!(s.producer.batch_size, Some(16384));
    assert_eq!(s.producer.buffer_memory, Some(32 << 20));
    assert_eq!(s.producer.retries, Some(0));
    assert_eq!(s.producer.transaction_id_prefix.as_deref(), Some("tx-"));
    assert!(!s.listener.missing_topics_fatal);
    // An empty value means "not set".
    assert_eq!(s.listener.group_id, None);
}

#[test]
fn secrets_are_masked_everywhere() {
    let dir = TempDir::new();
    let path = dir.write(
        "application.properties",
        "kafka.properties.sasl.password=hunter2\n\
         kafka.properties.ssl.key.password=hunter3\n\
         kafka.consumer.properties.oauth.token=hunter4\n\
         kafka.listener.concurrency=${API_TOKEN}\n",
    );
    let options = LoadOptions {
        overrides: vec![
            "kafka.sasl.password=hunter5".to_owned(),
            "kafka.properties.client.secret=${NOPE}hunter6".to_owned(),
        ],
        env: env(&[
            ("API_TOKEN", "hunter7"),
            ("KAFKA_PROPERTIES_SASL_USERNAME", "hunter8"),
        ]),
        ..options(&path)
    };
    let err = load_err(&options);
    assert_eq!(
        err,
        format!(
            "{}:4: kafka.listener.concurrency = \"******\": expected a positive integer (1, 2, ...)\n\
             --set kafka.sasl.password=******: unknown key kafka.sasl.password\n\
             --set kafka.properties.client.secret=******: kafka.properties.client.secret: \
             unresolved placeholder ${{NOPE}} (no key or environment variable NOPE, and no default)",
            path.display()
        )
    );
    let options = LoadOptions {
        overrides: vec![
            r#"kafka.properties.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="hunter9";"#.to_owned(),
        ],
        env: env(&[("KAFKA_PROPERTIES_SASL_USERNAME", "hunter8")]),
        ..options
    };
    let path = dir.write(
        "application.properties",
        "kafka.properties.sasl.password=hunter2\nkafka.client-id=app\n",
    );
    let config = load_ok(&LoadOptions {
        config_file: Some(path.clone()),
        ..options
    });
    let dump = config.dump();
    let debug = format!("{config:?} {:?}", settings_ok(&config, &[]));
    for shown in [&dump, &debug] {
        for secret in ["hunter2", "hunter8", "hunter9"] {
            assert!(!shown.contains(secret), "{secret} leaked in:\n{shown}");
        }
    }
    let line_of = |key: &str| {
        dump.lines()
            .find(|l| l.starts_with(key))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        line_of("kafka.properties.sasl.password"),
        Some(format!(
            "kafka.properties.sasl.password = ****** # {}:1",
            path.display()
        ))
    );
    assert_eq!(
        line_of("kafka.properties.sasl.jaas.config"),
        Some("kafka.properties.sasl.jaas.config = ****** # --set kafka.properties.sasl.jaas.config=******".to_owned())
    );
    assert_eq!(
        line_of("kafka.properties.sasl.username"),
        Some(
            "kafka.properties.sasl.username = ****** # env KAFKA_PROPERTIES_SASL_USERNAME"
                .to_owned()
        )
    );
    let options_debug = format!(
        "{:?}",
        LoadOptions {
            overrides: vec!["kafka.properties.sasl.password=hunter2".into()],
            env: env(&[("X", "hunter2")]),
            ..LoadOptions::default()
        }
    );
    assert!(!options_debug.contains("hunter2"), "{options_debug}");
}

#[test]
fn dump_lists_effective_values_sorted_and_aligned() {
    let config = pairs_ok(&[
        ("kafka.consumer.group-id", "orders"),
        ("spring.kafka.listener.on_order.concurrency", "4"),
        ("server.port", "8080"),
    ]);
    assert_eq!(
        config.dump(),
        "\
kafka.admin.auto-create = false                                          # default
kafka.admin.operation-timeout = 10s                                      # default
kafka.bootstrap-servers = localhost:9092                                 # default
kafka.consumer.auto-offset-reset = earliest                              # default
kafka.consumer.group-id = orders                                         # code kafka.consumer.group-id=orders
kafka.consumer.max-poll-records = 500                                    # default
kafka.listener.ack-count = 1                                             # default
kafka.listener.ack-mode = batch                                          # default
kafka.listener.ack-time = 5s                                             # default
kafka.listener.circuit-breaker.window = 100                              # default
kafka.listener.dead-letter.enabled = false                               # default
kafka.listener.delivery-attempt-header = false                           # default
kafka.listener.max-buffered-bytes = 64MB                                 # default
kafka.listener.missing-topics-fatal = true                               # default
kafka.listener.on_order.concurrency = 4                                  # code spring.kafka.listener.on_order.concurrency=4
kafka.listener.poll-timeout = 100ms                                      # default
kafka.listener.retry-topic.attempts = 3                                  # default
kafka.listener.retry-topic.backoff.delay = 1s                            # default
kafka.listener.retry-topic.backoff.max-delay = 30s                       # default
kafka.listener.retry-topic.backoff.multiplier = 1                        # default
kafka.listener.retry-topic.enabled = false                               # default
kafka.listener.retry-topic.same-interval-topic-reuse = multiple-topics   # default
kafka.listener.retry.attempts = 10                                       # default
kafka.listener.retry.backoff.delay = 1s                                  # default
kafka.listener.retry.backoff.max-delay = 30s                             # default
kafka.listener.retry.backoff.multiplier = 1                              # default
kafka.listener.retry.backoff.random = false                              # default
kafka.listener.revoke-timeout = 15s                                      # default
kafka.listener.shutdown-timeout = 30s                                    # default
kafka.logging.format = text                                              # default
kafka.management.address = 127.0.0.1                                     # default
kafka.management.lag-interval = 5s                                       # default
kafka.producer.acks = all                                                # default
"
    );
}

#[test]
fn docs_table_lists_every_key() {
    let docs = include_str!("mod.rs");
    for def in schema::KEYS {
        let row = format!(
            "//! | `{}` | {} |",
            def.key,
            def.default.map_or("—".to_owned(), |d| format!("`{d}`"))
        );
        assert!(docs.contains(&row), "missing or wrong docs row: {row}");
    }
}

// --- robustness ----------------------------------------------------------------

/// A tiny deterministic PRNG (xorshift64*), so the randomized test needs no
/// extra dependency and every failure is reproducible from its iteration.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        // Truncation is fine: this only picks among a few choices.
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[test]
fn arbitrary_files_never_panic_and_errors_always_have_a_location() {
    const KEYS: &[&str] = &[
        "kafka.bootstrap-servers",
        "kafka.listener.ack-mode",
        "kafka.listener.concurrency",
        "kafka.listener.on_order.ack-time",
        "spring.kafka.consumer.group-id",
        "kafka.consumer.grup-id",
        "kafka.properties.sasl.password",
        "kafka.",
        "kafka.listener.",
        "spring.kafka.",
        "Kafka.X",
        "kafka.consumer.properties.",
        "server.port",
        "a",
        "b",
        "",
        "kafka.listener.x.retry.attempts",
        "kafka.consumer.value-deserializer",
        "k\\=y",
        "kafka\\u002elistener.concurrency",
        "ä.ö",
    ];
    const SEPARATORS: &[&str] = &["=", ":", " ", "\t", " = ", "==", "\\", ""];
    const VALUES: &[&str] = &[
        "",
        "1",
        "0",
        "-1",
        "record",
        "RECORD",
        "30s",
        "${a}",
        "${b:2}",
        "${",
        "}",
        "${a:${b}}",
        "\\${x}",
        "${kafka.listener.concurrency}",
        "\\",
        "\\\\",
        "\\u00e9",
        "\\uZZ",
        "ключ",
        "😀",
        "#",
        "!",
        "${${a}}",
        "true",
        "embedded",
        "a:1,,b",
        "  spaced  ",
        "\u{0}",
        "\r",
        "\u{feff}",
    ];
    const ENDINGS: &[&str] = &["\n", "\r\n", "\r", "\\\n", "\\\\\n", ""];
    let dir = TempDir::new();
    let path = dir.0.join("fuzz.properties");
    let location = format!("{}:", path.display());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for iteration in 0..1000 {
        if iteration % 8 == 0 {
            // Arbitrary bytes, mostly not UTF-8.
            let bytes: Vec<u8> = (0..rng.below(64))
                .map(|_| rng.next().to_le_bytes()[0])
                .collect();
            std::fs::write(&path, &bytes).expect("write fuzz file");
            if let Err(error) = Config::load(&options(&path)) {
                for single in error.errors() {
                    assert!(single.to_string().starts_with(&location), "{single}");
                }
            }
            continue;
        }
        let mut text = String::new();
        for _ in 0..rng.below(8) {
            match rng.below(10) {
                0 => text.push_str(rng.pick(&["# c\n", "! c\n", "  # \\u\n", "\n", "   \n"])),
                1 => {
                    // Raw noise from a small alphabet rich in syntax characters.
                    for _ in 0..rng.below(20) {
                        text.push_str(rng.pick(&[
                            "a", "=", ":", "\\", "$", "{", "}", "#", " ", "\n", "\r", "é", "😀",
                            "u",
                        ]));
                    }
                }
                _ => {
                    text.push_str(rng.pick(KEYS));
                    text.push_str(rng.pick(SEPARATORS));
                    text.push_str(rng.pick(VALUES));
                    text.push_str(rng.pick(ENDINGS));
                }
            }
        }
        std::fs::write(&path, &text).expect("write fuzz file");
        if let Err(error) = Config::load(&options(&path)) {
            for single in error.errors() {
                let message = single.to_string();
                let rest = message.strip_prefix(&location).unwrap_or_else(|| {
                    panic!(
                        "iteration {iteration}: error without location: {message}\nfile: {text:?}"
                    )
                });
                assert!(
                    rest.starts_with(|c: char| c.is_ascii_digit()),
                    "iteration {iteration}: error without line: {message}\nfile: {text:?}"
                );
                assert!(!message.contains("hunter"), "{message}");
            }
        }
    }
}
