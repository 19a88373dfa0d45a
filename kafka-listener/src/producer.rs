//! `ProducerTemplate`: sending records (Spring's `KafkaTemplate`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::Serialize;

use crate::{Error, Result};

/// Where a sent record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendResult {
    /// The partition it was written to.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// Sends records; Spring's `KafkaTemplate`. Cheap to clone (one shared librdkafka producer).
///
/// Configured from `kafka.producer.*` (defaults: `acks=all`, idempotence on). Every `send`
/// resolves once the broker acknowledged the record (or delivery failed), so a handler that
/// awaits its sends before returning `Ok` never commits an input whose output was lost.
/// The runtime flushes it on shutdown.
///
/// Handlers get it as an extractor argument: `producer: ProducerTemplate`.
#[derive(Clone)]
pub struct ProducerTemplate {
    inner: Arc<FutureProducer>,
    /// The broker confirms each record (`acks` is not 0): a delivery must say where the
    /// record was written.
    confirmed: bool,
    /// How long a send waits while the buffer is full (`max.block.ms`).
    max_block: Duration,
    /// `kafka.template.default-topic`.
    default_topic: Option<Arc<str>>,
}

impl std::fmt::Debug for ProducerTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerTemplate").finish_non_exhaustive()
    }
}

/// A record to send, with optional key, partition and headers. Built with
/// [`new`](Self::new) and the builder methods (it may gain fields).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ProducerRecord {
    /// Target topic.
    pub topic: String,
    /// Key bytes (`None` for a null key).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None` for a tombstone).
    pub value: Option<Vec<u8>>,
    /// Explicit partition; default: librdkafka's partitioner (by key hash).
    pub partition: Option<i32>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp in milliseconds since the epoch; default: the time of the send.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with the given value.
    pub fn new(topic: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (milliseconds since the epoch).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

impl ProducerTemplate {
    pub(crate) fn from_producer(producer: FutureProducer, confirmed: bool) -> Self {
        ProducerTemplate {
            inner: Arc::new(producer),
            confirmed,
            max_block: Duration::from_secs(60),
            default_topic: None,
        }
    }

    pub(crate) fn with_max_block(mut self, max_block: Duration) -> Self {
        self.max_block = max_block;
        self
    }

    pub(crate) fn with_default_topic(mut self, topic: Option<String>) -> Self {
        self.default_topic = topic.map(Arc::from);
        self
    }

    /// Sends to `kafka.template.default-topic` (Spring's `sendDefault`); an error if none is
    /// configured.
    pub async fn send_default(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<SendResult> {
        let Some(topic) = self.default_topic.clone() else {
            return Err(Error::NoDefaultTopic);
        };
        self.send(&topic, key, value).await
    }

    /// Sends `value` with `key` to `topic`; resolves to where it was written.
    pub async fn send(
        &self,
        topic: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<SendResult> {
        let record = FutureRecord::to(topic)
            .key(key.as_ref())
            .payload(value.as_ref());
        self.deliver(topic, record).await
    }

    /// Sends `value` serialized as JSON, with `key`, to `topic`.
    pub async fn send_json<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<SendResult> {
        let bytes = serde_json::to_vec(value).map_err(Error::Serialize)?;
        self.send(topic, key, bytes).await
    }

    /// Sends a fully described record.
    pub async fn send_record(&self, record: ProducerRecord) -> Result<SendResult> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic);
        if let Some(key) = &record.key {
            out = out.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            out = out.payload(value.as_slice());
        }
        if let Some(partition) = record.partition {
            out = out.partition(partition);
        }
        if let Some(timestamp) = record.timestamp {
            out = out.timestamp(timestamp);
        }
        if !record.headers.is_empty() {
            out = out.headers(headers);
        }
        self.deliver(&record.topic, out).await
    }

    async fn deliver<K, V>(&self, topic: &str, record: FutureRecord<'_, K, V>) -> Result<SendResult>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        V: rdkafka::message::ToBytes + ?Sized,
    {
        // A full buffer is waited out for max.block.ms at most (as the Java client does), then
        // the send fails: nothing queues without bound.
        match self
            .inner
            .send(record, Timeout::After(self.max_block))
            .await
        {
            // A delivery report without an offset under acks=1/all is not proof that the
            // record is in the log (the model-based fault test saw one on the mock cluster
            // after injected produce errors, with the record missing): not delivered.
            Ok(delivery) if self.confirmed && delivery.offset < 0 => Err(Error::Unconfirmed {
                topic: topic.to_owned(),
            }),
            Ok(delivery) => Ok(SendResult {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) => Err(Error::ProducerBufferFull {
                topic: topic.to_owned(),
                waited: self.max_block,
            }),
            Err((source, _)) => Err(Error::kafka(format!("sending to {topic}"), source)),
        }
    }

    /// Waits until every queued record is delivered or `timeout` passes. Blocking: call it from
    /// a blocking context (the runtime does this at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner
            .flush(timeout)
            .map_err(|e| Error::kafka("flushing the producer", e))
    }

    /// The number of partitions of `topic`, `None` if it does not exist (asked of the broker).
    /// Like any producer's metadata request (the Java client's too), it lets a broker with
    /// `auto.create.topics.enable=true` create the topic, with the broker's default partitions.
    pub async fn partition_count(&self, topic: &str) -> Result<Option<usize>> {
        let producer = Arc::clone(&self.inner);
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), Duration::from_secs(10))
        })
        .await
        .map_err(|e| Error::Panicked {
            what: format!("looking up topic {topic}"),
            message: e.to_string(),
        })?
        .map_err(|e| Error::kafka(format!("looking up topic {topic}"), e))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|n| *n > 0))
    }

    /// How many handles to this producer exist (this one included).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Whether the broker confirms each record (`acks` is not 0).
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Records still queued or in flight.
    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }
}
