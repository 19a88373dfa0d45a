//! TLS and SASL against the real broker in secured mode (`KAFKA_SECURITY=sasl_ssl
//! scripts/kafka-broker start`: a SASL_SSL listener beside PLAINTEXT, SCRAM users `alice` (ALL
//! on every topic and group) and `bob` (no ACLs), the standard authorizer).
//!
//! Set up through the PLAINTEXT listener (its principal is a super user on the test broker);
//! every client under test goes through SASL_SSL with Spring Boot's keys only.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_listener::{kafka_listener, Application, Key, RecordMeta};
use kafka_listener_tests::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};

/// The SASL_SSL bootstrap and the CA file, from `scripts/test` (`KAFKA_SASL_BOOTSTRAP_SERVERS`,
/// `KAFKA_SASL_CA`). `None` skips, unless `KAFKA_REQUIRE_SECURED=1`.
fn secured() -> Option<(String, String)> {
    match (
        std::env::var("KAFKA_SASL_BOOTSTRAP_SERVERS"),
        std::env::var("KAFKA_SASL_CA"),
    ) {
        (Ok(bs), Ok(ca)) if !bs.is_empty() && !ca.is_empty() => Some((bs, ca)),
        _ => {
            assert!(
                std::env::var("KAFKA_REQUIRE_SECURED").as_deref() != Ok("1"),
                "KAFKA_REQUIRE_SECURED=1 but KAFKA_SASL_BOOTSTRAP_SERVERS / KAFKA_SASL_CA are not set"
            );
            eprintln!("no secured broker: SASL_SSL test skipped");
            None
        }
    }
}

/// Spring Boot keys for SCRAM-SHA-512 over SASL_SSL as `user`.
fn scram(ca: &str, user: &str, password: &str) -> Vec<(String, String)> {
    vec![
        ("kafka.security.protocol".into(), "SASL_SSL".into()),
        ("kafka.ssl.trust-store-location".into(), format!("file:{ca}")),
        ("kafka.properties.sasl.mechanism".into(), "SCRAM-SHA-512".into()),
        (
            "kafka.properties.sasl.jaas.config".into(),
            format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";"
            ),
        ),
    ]
}

static SEEN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

#[kafka_listener(id = "secure", topics = "${test.topic}", group_id = "${test.group}")]
async fn secure(meta: RecordMeta, key: Key<String>) {
    SEEN.lock()
        .expect("seen")
        .push((meta.topic.to_string(), key.as_str().to_owned()));
}

fn seen(topic: &str) -> usize {
    SEEN.lock()
        .expect("seen")
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, k)| k.clone())
        .collect::<HashSet<_>>()
        .len()
}

async fn start_secure(
    sasl: &str,
    topic: &str,
    group: &str,
    security: &[(String, String)],
) -> kafka_listener::Result<Application> {
    let mut b = Application::builder()
        .only(["secure"])
        .env(Vec::new())
        .set("kafka.bootstrap-servers", sasl)
        .set("kafka.admin.operation-timeout", "15s")
        .set("test.topic", topic)
        .set("test.group", group);
    for (k, v) in security {
        b = b.set(k, v);
    }
    b.start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_with_scram_credentials_consumes_and_commits_over_sasl_ssl() {
    init_logging();
    let Some(plain) = real_broker() else { return };
    let Some((sasl, ca)) = secured() else { return };
    let (topic, group) = (unique("secure"), unique("g"));
    create_topic(&plain, &topic, 2).await;
    produce_seq(&plain, &topic, 0, 200).await;
    let app = start_secure(&sasl, &topic, &group, &scram(&ca, "alice", "alice-secret"))
        .await
        .expect("alice starts");
    wait_until(Duration::from_secs(60), "200 records over SASL_SSL", || {
        seen(&topic) == 200
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_committed_at_end(&plain, &group, &topic, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_unsecured_oauthbearer_logins_work_with_java_style_jaas_entries() {
    init_logging();
    let Some(plain) = real_broker() else { return };
    let Some((sasl, ca)) = secured() else { return };
    for (mechanism, jaas) in [
        (
            "PLAIN",
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="alice-secret";"#,
        ),
        (
            "OAUTHBEARER",
            r#"org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="alice";"#,
        ),
    ] {
        let (topic, group) = (unique(&format!("secure-{mechanism}")), unique("g"));
        create_topic(&plain, &topic, 1).await;
        produce_seq(&plain, &topic, 0, 20).await;
        let security = vec![
            ("kafka.security.protocol".to_owned(), "SASL_SSL".to_owned()),
            ("kafka.ssl.trust-store-location".to_owned(), ca.clone()),
            (
                "kafka.properties.sasl.mechanism".to_owned(),
                mechanism.to_owned(),
            ),
            (
                "kafka.properties.sasl.jaas.config".to_owned(),
                jaas.to_owned(),
            ),
        ];
        let app = start_secure(&sasl, &topic, &group, &security)
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        wait_until(Duration::from_secs(60), mechanism, || seen(&topic) == 20).await;
        let report = app.shutdown().await;
        assert!(report.is_clean(), "{mechanism}: {report}");
        assert_committed_at_end(&plain, &group, &topic, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_start_up_within_seconds_naming_authentication() {
    init_logging();
    let Some(plain) = real_broker() else { return };
    let Some((sasl, ca)) = secured() else { return };
    let (topic, group) = (unique("secure-badpw"), unique("g"));
    create_topic(&plain, &topic, 1).await;
    let started = Instant::now();
    let error = start_secure(
        &sasl,
        &topic,
        &group,
        &scram(&ca, "alice", "not-the-password-x1"),
    )
    .await
    .expect_err("a wrong password must not start");
    let message = error.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed after {:?}, not within seconds",
        started.elapsed()
    );
    assert!(
        message.contains("authentication failed") && message.contains("SASL"),
        "names authentication: {message}"
    );
    assert!(
        !message.contains("not-the-password-x1"),
        "password leaked: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused() {
    init_logging();
    let Some(plain) = real_broker() else { return };
    let Some((sasl, ca)) = secured() else { return };
    let other = PathBuf::from(&ca).with_file_name("other-ca.pem");
    let (topic, group) = (unique("secure-ca"), unique("g"));
    create_topic(&plain, &topic, 1).await;
    let started = Instant::now();
    let error = start_secure(
        &sasl,
        &topic,
        &group,
        &scram(&other.display().to_string(), "alice", "alice-secret"),
    )
    .await
    .expect_err("an untrusted broker certificate must be refused");
    let message = error.to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        message.contains("TLS") && message.contains("certificate verify failed"),
        "names the certificate: {message}"
    );
}

/// `scripts/kafka-broker acls ...` on the secured broker.
fn acl(args: &[&str]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(root.join("scripts/kafka-broker"))
        .arg("acls")
        .args(args)
        .env("KAFKA_SECURITY", "sasl_ssl")
        .stdout(Stdio::null())
        .status()
        .expect("kafka-broker acls");
    assert!(status.success(), "acls {args:?}");
}

/// Lets `bob` read and describe `topic` (nothing on any group).
fn bob_may_read(topic: &str) {
    acl(&[
        "--add",
        "--allow-principal",
        "User:bob",
        "--operation",
        "Read",
        "--operation",
        "Describe",
        "--topic",
        topic,
    ]);
}

/// Takes `bob`'s ACLs on `topic` away again.
fn bob_may_not_read(topic: &str) {
    acl(&[
        "--remove",
        "--force",
        "--allow-principal",
        "User:bob",
        "--topic",
        topic,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_without_acls_gets_an_authorization_error_naming_the_topic_then_the_group() {
    init_logging();
    let Some(plain) = real_broker() else { return };
    let Some((sasl, ca)) = secured() else { return };
    let (topic, group) = (unique("secure-bob"), unique("bob-g"));
    create_topic(&plain, &topic, 1).await;
    let bob = scram(&ca, "bob", "bob-secret");
    let error = start_secure(&sasl, &topic, &group, &bob)
        .await
        .expect_err("bob may not read the topic");
    let message = error.to_string();
    assert!(
        message.contains("not authorized for topic") && message.contains(&topic),
        "names the topic: {message}"
    );

    bob_may_read(&topic);
    let error = start_secure(&sasl, &topic, &group, &bob)
        .await
        .expect_err("bob may not use the group");
    let message = error.to_string();
    assert!(
        message.contains("not authorized for group") && message.contains(&group),
        "names the group: {message}"
    );
    assert!(!message.contains("bob-secret"));
    bob_may_not_read(&topic);
}

fn orders_over_sasl(
    sasl: &str,
    ca: &str,
    password: &str,
    input: &str,
    output: &str,
    group: &str,
) -> Command {
    let config =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/orders/application.properties");
    let mut cmd = Command::new(orders_bin());
    cmd.arg("--config")
        .arg(config)
        .args(["--set", &format!("kafka.listener.orders.group-id={group}")])
        .env("KAFKA_BOOTSTRAP_SERVERS", sasl)
        .env("ORDERS_TOPIC", input)
        .env("ORDERS_ACCEPTED_TOPIC", output)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    // Configuration only, as a Spring user would write it (environment variables here).
    cmd.env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .env("KAFKA_SSL_TRUST_STORE_LOCATION", ca)
        .env("KAFKA_PROPERTIES_SASL_MECHANISM", "SCRAM-SHA-256")
        .args([
            "--set",
            &format!("kafka.properties.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"{password}\";"),
        ]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_service_runs_over_sasl_ssl_with_configuration_only() {
    init_logging();
    let Some(plain) = real_broker() else { return };
    let Some((sasl, ca)) = secured() else { return };
    let (input, output, group) = (
        unique("orders-sasl"),
        unique("orders-sasl.accepted"),
        unique("g"),
    );
    create_topic(&plain, &input, 3).await;
    create_topic(&plain, &output, 3).await;
    let orders: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            let id = format!("order-{i}");
            let body = serde_json::json!({ "id": id, "amount_cents": 100, "customer": "c" });
            (id, body.to_string().into_bytes())
        })
        .collect();
    produce(&plain, &input, &orders).await;

    let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-logs");
    let _ = std::fs::create_dir_all(&logs);
    let log_path = logs.join(format!("{}.log", unique("orders-sasl")));
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = orders_over_sasl(&sasl, &ca, "alice-secret", &input, &output, &group)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn orders");

    // Read the acceptances over PLAINTEXT.
    let (plain2, out2) = (plain.clone(), output.clone());
    let accepted = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &plain2)
            .set("group.id", unique("reader"))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("reader");
        consumer.subscribe(&[&out2]).expect("subscribe");
        let mut ids = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while ids.len() < 300 && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                ids.insert(m.key().map(|k| String::from_utf8_lossy(k).into_owned()));
            }
        }
        ids.len()
    })
    .await
    .expect("reader");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(35);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("orders did not exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(
        accepted, 300,
        "every order accepted over SASL_SSL; log:\n{output_log}"
    );
    assert!(status.success(), "exit {status}; log:\n{output_log}");
    assert!(
        !output_log.contains("alice-secret"),
        "password in the service log"
    );
    assert_committed_at_end(&plain, &group, &input, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_service_with_a_wrong_password_exits_1_naming_authentication() {
    init_logging();
    let Some(plain) = real_broker() else { return };
    let Some((sasl, ca)) = secured() else { return };
    let (input, output, group) = (
        unique("orders-badpw"),
        unique("orders-badpw.accepted"),
        unique("g"),
    );
    create_topic(&plain, &input, 1).await;
    create_topic(&plain, &output, 1).await;
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        orders_over_sasl(&sasl, &ca, "wrong-pw-x2", &input, &output, &group)
            .output()
            .expect("run orders")
    })
    .await
    .expect("orders task");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "exit code; output:\n{text}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        text.contains("authentication failed"),
        "names authentication:\n{text}"
    );
    assert!(!text.contains("wrong-pw-x2"), "password leaked:\n{text}");
}

/// `orders check` as a principal that may read the topic but not use the group: exit 1, the
/// group named, the password nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_denied_group_and_exits_1() {
    init_logging();
    let Some(plain) = real_broker() else { return };
    let Some((sasl, ca)) = secured() else { return };
    let (topic, group) = (unique("check-bob"), unique("check-bob-g"));
    create_topic(&plain, &topic, 1).await;
    bob_may_read(&topic);
    let out = Command::new(orders_bin())
        .arg("check")
        .args(["--set", &format!("kafka.listener.orders.group-id={group}")])
        .args(["--set", "kafka.admin.operation-timeout=10s"])
        .env("KAFKA_BOOTSTRAP_SERVERS", &sasl)
        .env("ORDERS_TOPIC", &topic)
        .env("RUST_LOG", "off")
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .env("KAFKA_SSL_TRUST_STORE_LOCATION", &ca)
        .env("KAFKA_PROPERTIES_SASL_MECHANISM", "SCRAM-SHA-256")
        .args([
            "--set",
            "kafka.properties.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"bob\" password=\"bob-secret\";",
        ])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("orders check");
    bob_may_not_read(&topic);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not authorized for group") && text.contains(&group),
        "names the group: {text}"
    );
    assert!(!text.contains("bob-secret"), "the password leaked: {text}");
}
