//! librdkafka client configuration and the producer.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;

use crate::config::{Config, ConfigError, Passthrough, Settings, Source};
use crate::{Error, ProducerTemplate, Result};

pub(super) fn passthrough(out: &mut Vec<(String, String)>, items: &[Passthrough]) {
    for p in items {
        out.push((p.key.clone(), p.value.clone()));
    }
}

/// `kafka.properties.*`: for every client.
pub(super) fn common_client_config(settings: &Settings) -> Vec<(String, String)> {
    // Like the Java client (TCP_NODELAY): with Nagle on, a handler that awaits each send waits
    // out the peer's delayed ACK (~40 ms) per record.
    let mut out = vec![("socket.nagle.disable".to_owned(), "true".to_owned())];
    passthrough(&mut out, &settings.security);
    passthrough(&mut out, &settings.properties);
    out
}

pub(super) fn base_client_config(settings: &Settings, bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in common_client_config(settings) {
        config.set(k, v);
    }
    config
}

/// The consumer's librdkafka settings from `kafka.properties.*`, `kafka.consumer.*` and
/// `kafka.consumer.properties.*`, in that order (later wins).
pub(super) fn consumer_client_config(settings: &Settings) -> Vec<(String, String)> {
    let c = &settings.consumer;
    let mut out = common_client_config(settings);
    out.push((
        "auto.offset.reset".into(),
        c.auto_offset_reset.as_librdkafka().into(),
    ));
    if let Some(v) = c.fetch_min_size {
        out.push(("fetch.min.bytes".into(), v.to_string()));
    }
    if let Some(v) = c.fetch_max_wait {
        out.push(("fetch.wait.max.ms".into(), v.as_millis().to_string()));
    }
    if let Some(v) = c.heartbeat_interval {
        out.push(("heartbeat.interval.ms".into(), v.as_millis().to_string()));
    }
    if let Some(v) = &c.isolation_level {
        out.push(("isolation.level".into(), v.as_librdkafka().into()));
    }
    passthrough(&mut out, &c.properties);
    out
}

pub(super) fn create_producer(
    settings: &Settings,
    config: &Config,
    bootstrap: &str,
) -> Result<ProducerTemplate> {
    let p = &settings.producer;
    let mut client = base_client_config(settings, bootstrap);
    client.set("acks", p.acks.as_librdkafka());
    if p.acks.as_librdkafka() == "all" {
        // Retries without duplicates or reordering; librdkafka's recommended setting with acks=all.
        client.set("enable.idempotence", "true");
    }
    if let Some(id) = p.client_id.as_ref().or(settings.client_id.as_ref()) {
        client.set("client.id", id);
    }
    if let Some(v) = p.batch_size {
        client.set("batch.size", v.to_string());
    }
    if let Some(v) = p.buffer_memory {
        client.set("queue.buffering.max.kbytes", (v / 1024).max(1).to_string());
    }
    if let Some(v) = &p.compression_type {
        client.set("compression.type", v);
    }
    if let Some(v) = p.retries {
        client.set("message.send.max.retries", v.to_string());
    }
    if let Some(v) = p.linger {
        client.set("linger.ms", v.as_millis().to_string());
    }
    if p.transaction_id_prefix.is_some() {
        return Err(Error::from(ConfigError::Unsupported {
            origin: config
                .source_of("kafka.producer.transaction-id-prefix")
                .cloned()
                .unwrap_or(Source::Default),
            key: "kafka.producer.transaction-id-prefix".into(),
            reason: "transactions are not supported yet",
        }));
    }
    // The Java client's max.block.ms is ours to apply (librdkafka has no such property).
    let mut max_block = Duration::from_secs(60);
    for item in &p.properties {
        if item.key == "max.block.ms" {
            max_block = item
                .value
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    Error::from(ConfigError::InvalidValue {
                        origin: item.source.clone(),
                        key: "kafka.producer.properties.max.block.ms".into(),
                        value: Some(item.value.clone()),
                        expected: "expected milliseconds (a whole number, e.g. 60000)".into(),
                    })
                })?;
            continue;
        }
        client.set(&item.key, &item.value);
    }
    let producer: FutureProducer = client.create().map_err(|source| {
        attach_origin(
            Error::ClientCreation {
                client: "producer".into(),
                origin: None,
                source,
            },
            settings,
        )
    })?;
    Ok(
        ProducerTemplate::from_producer(producer, p.acks.as_librdkafka() != "0")
            .with_max_block(max_block)
            .with_default_topic(p.default_topic.clone()),
    )
}

/// Names where a passthrough key came from when librdkafka rejects it.
pub(super) fn attach_origin(error: Error, settings: &Settings) -> Error {
    match error {
        Error::ClientCreation {
            client,
            origin: None,
            source,
        } => {
            let text = source.to_string();
            // librdkafka names the offending property in quotes.
            let origin = settings
                .properties
                .iter()
                .chain(&settings.consumer.properties)
                .chain(&settings.producer.properties)
                .find(|p| text.contains(&format!("\"{}\"", p.key)))
                .map(|p| p.source.to_string());
            Error::ClientCreation {
                client,
                origin,
                source,
            }
        }
        other => other,
    }
}
