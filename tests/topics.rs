//! `kafka.admin.auto-create`, against the real broker: retry and dead-letter topics are
//! created with as many partitions as their source, a listener topic declared with
//! `new_topic(...)` with its partitions and configs; `check` reports what start-up creates.

use std::time::Duration;

use kafka_listener::{kafka_listener, BoxError, Key};
use kafka_listener_tests::*;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Partitions of `topic` (`None`: it does not exist).
fn partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

async fn topic_config(bootstrap: &str, topic: &str, name: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let resource = results.into_iter().next()?.ok()?;
    resource
        .entries
        .into_iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value)
}

#[kafka_listener(
    id = "auto_topics",
    topics = "${at.topic}",
    group_id = "${at.group}",
    retry(attempts = 3, backoff = "1s"),
    new_topic(partitions = 4, replicas = 1, configs = "retention.ms=3600000")
)]
async fn auto_topics(key: Key<String>) -> Result<(), BoxError> {
    let _ = key;
    Ok(())
}

#[kafka_listener(
    id = "auto_dlt",
    topics = "${ad.topic}",
    group_id = "${ad.group}",
    dead_letter
)]
async fn auto_dlt(key: Key<String>) -> Result<(), BoxError> {
    let _ = key;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_makes_declared_retry_and_dead_letter_topics_with_their_sources_partitions() {
    init_logging();
    let Some(bs) = real_broker() else { return };
    let (topic, group) = (unique("at"), unique("at-g"));
    // `check` with auto-create: a missing dead-letter topic is what start-up creates, not a
    // failure (the input topic itself, undeclared, must exist).
    let orders_topic = unique("at-orders");
    create_topic(&bs, &orders_topic, 2).await;
    let out = std::process::Command::new(orders_bin())
        .args(["check", "--set", &format!("kafka.bootstrap-servers={bs}")])
        .args(["--set", "kafka.admin.auto-create=true"])
        .args(["--set", "kafka.listener.orders.dead-letter.enabled=true"])
        .env("ORDERS_TOPIC", &orders_topic)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("RUST_LOG", "off")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("orders check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "topic {orders_topic}.DLT is created at start-up if missing"
        )),
        "{text}"
    );

    let app = start_listener(
        &bs,
        "auto_topics",
        &[
            ("at.topic", topic.as_str()),
            ("at.group", group.as_str()),
            ("kafka.admin.auto-create", "true"),
        ],
    )
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    for t in [
        topic.clone(),
        format!("{topic}-retry-0"),
        format!("{topic}-retry-1"),
        format!("{topic}-dlt"),
    ] {
        assert_eq!(
            partitions(&bs, &t),
            Some(4),
            "{t}: the declared 4 partitions"
        );
    }
    assert_eq!(
        topic_config(&bs, &topic, "retention.ms").await.as_deref(),
        Some("3600000"),
        "the declared config"
    );

    // An existing 3-partition topic, not declared: its dead-letter topic gets 3 partitions.
    let (source, group) = (unique("ad"), unique("ad-g"));
    create_topic(&bs, &source, 3).await;
    assert_eq!(partitions(&bs, &format!("{source}.DLT")), None);
    let app = start_listener(
        &bs,
        "auto_dlt",
        &[
            ("ad.topic", source.as_str()),
            ("ad.group", group.as_str()),
            ("kafka.admin.auto-create", "true"),
        ],
    )
    .await;
    app.shutdown().await;
    assert_eq!(partitions(&bs, &format!("{source}.DLT")), Some(3));

    // Off (the default): nothing is created.
    let (other, group) = (unique("ad-off"), unique("ad-g"));
    create_topic(&bs, &other, 2).await;
    let app = start_listener(
        &bs,
        "auto_dlt",
        &[("ad.topic", other.as_str()), ("ad.group", group.as_str())],
    )
    .await;
    app.shutdown().await;
    assert_eq!(partitions(&bs, &format!("{other}.DLT")), None);
}
