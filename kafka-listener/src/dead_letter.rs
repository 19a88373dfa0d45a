//! Dead letters: publishing a record the error handler gave up on to a dead-letter topic, with
//! Spring's headers in Spring's encodings (Spring's `DeadLetterPublishingRecoverer`), so a
//! Spring consumer of the dead-letter topic, or its tooling, reads them as it reads its own.
//!
//! The record goes to `<topic>.DLT` by default, to the original's partition when the
//! dead-letter topic has that partition (otherwise the partitioner picks one by key), with the
//! original key, value and headers. The [`Recoverer`] contract does the rest: the offset moves
//! past the record only once the broker acknowledged the dead letter, and a publish that fails
//! (topic missing, not authorised, broker down, record too large) is tried again after a
//! back-off while the partition waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error_handler::{Failure, RecoverFuture, Recoverer};
use crate::{BoxError, ConsumerRecord, ProducerRecord, ProducerTemplate};

/// Spring's dead-letter header names (`KafkaHeaders.DLT_*`) and how their values are encoded.
pub mod headers {
    /// The original topic, UTF-8.
    pub const ORIGINAL_TOPIC: &str = "kafka_dlt-original-topic";
    /// The original partition, a 4-byte big-endian integer (Java's `int`).
    pub const ORIGINAL_PARTITION: &str = "kafka_dlt-original-partition";
    /// The original offset, an 8-byte big-endian integer (Java's `long`).
    pub const ORIGINAL_OFFSET: &str = "kafka_dlt-original-offset";
    /// The original timestamp in milliseconds, an 8-byte big-endian integer.
    pub const ORIGINAL_TIMESTAMP: &str = "kafka_dlt-original-timestamp";
    /// `CreateTime` or `LogAppendTime` (Java's `TimestampType` names), UTF-8.
    pub const ORIGINAL_TIMESTAMP_TYPE: &str = "kafka_dlt-original-timestamp-type";
    /// The consumer group that gave the record up, UTF-8.
    pub const ORIGINAL_CONSUMER_GROUP: &str = "kafka_dlt-original-consumer-group";
    /// What kind of failure it was (see [`Failure::kind`](crate::Failure::kind)), UTF-8.
    pub const EXCEPTION_FQCN: &str = "kafka_dlt-exception-fqcn";
    /// The error's type name, as far as it can be known (best effort: the name its `Debug`
    /// output starts with), UTF-8.
    pub const EXCEPTION_CAUSE_FQCN: &str = "kafka_dlt-exception-cause-fqcn";
    /// The error's message, UTF-8.
    pub const EXCEPTION_MESSAGE: &str = "kafka_dlt-exception-message";
    /// The failure and the error's chain of sources, one per line (`Caused by: ...`), UTF-8.
    pub const EXCEPTION_STACKTRACE: &str = "kafka_dlt-exception-stacktrace";
}

/// Picks the dead-letter topic for a record and its failure; `None` keeps the default.
pub type DeadLetterRouter = dyn Fn(&ConsumerRecord, &Failure) -> Option<String> + Send + Sync;

/// How long a dead-letter topic's partition count is trusted before it is looked up again.
const PARTITIONS_TTL: Duration = Duration::from_secs(60);

/// Publishes given-up records to a dead-letter topic (Spring's
/// `DeadLetterPublishingRecoverer`). Configured by
/// `kafka.listener[.<id>].dead-letter.enabled` and `.topic`; build one by hand to route by
/// error ([`route`](Self::route)) and set it with
/// [`ApplicationBuilder::recoverer`](crate::ApplicationBuilder::recoverer).
pub struct DeadLetterPublisher {
    producer: ProducerTemplate,
    group_id: String,
    /// The destination; `{topic}` stands for the record's topic.
    topic: String,
    router: Option<Arc<DeadLetterRouter>>,
    partitions: Mutex<HashMap<String, (usize, Instant)>>,
}

impl std::fmt::Debug for DeadLetterPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterPublisher")
            .field("group_id", &self.group_id)
            .field("topic", &self.topic)
            .field("router", &self.router.is_some())
            .finish_non_exhaustive()
    }
}

impl DeadLetterPublisher {
    /// Default destination: `{topic}.DLT`.
    pub const DEFAULT_TOPIC: &'static str = "{topic}.DLT";

    /// Publishes with `producer`; `group_id` goes into the consumer-group header.
    pub fn new(producer: ProducerTemplate, group_id: impl Into<String>) -> Self {
        DeadLetterPublisher {
            producer,
            group_id: group_id.into(),
            topic: Self::DEFAULT_TOPIC.to_owned(),
            router: None,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// The destination topic; `{topic}` stands for the record's own topic
    /// (default `{topic}.DLT`).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// Chooses the destination per record and failure (for example by the error's type, found
    /// with `failure.error().downcast_ref::<T>()`); `None` keeps [`topic`](Self::topic).
    pub fn route(
        mut self,
        router: impl Fn(&ConsumerRecord, &Failure) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.router = Some(Arc::new(router));
        self
    }

    /// The dead-letter topic of `record`.
    pub fn destination(&self, record: &ConsumerRecord, failure: &Failure) -> String {
        self.router
            .as_ref()
            .and_then(|r| r(record, failure))
            .unwrap_or_else(|| self.topic.replace("{topic}", record.topic()))
    }

    /// The partition count of `topic`, from the cache or the broker; an error if the topic
    /// does not exist (a broker with `auto.create.topics.enable` creates it on this request).
    async fn partition_count(&self, topic: &str) -> Result<usize, BoxError> {
        if let Some((n, at)) = self.cache().get(topic) {
            if at.elapsed() < PARTITIONS_TTL {
                return Ok(*n);
            }
        }
        match self.producer.partition_count(topic).await? {
            Some(n) => {
                self.cache().insert(topic.to_owned(), (n, Instant::now()));
                Ok(n)
            }
            None => Err(format!("dead-letter topic {topic:?} does not exist").into()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (usize, Instant)>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The dead letter for `record`: its key, value and headers, Spring's headers added.
    pub fn dead_letter(
        &self,
        record: &ConsumerRecord,
        failure: &Failure,
        topic: String,
    ) -> ProducerRecord {
        let mut out = ProducerRecord {
            topic,
            key: record.key().map(<[u8]>::to_vec),
            value: record.value().map(<[u8]>::to_vec),
            ..ProducerRecord::default()
        };
        // A record dead-lettered before (a dead-letter topic consumed and failing again)
        // keeps its first original-* headers; the exception headers say what failed now.
        for (name, value) in record.headers().iter_raw() {
            if name.starts_with(b"kafka_dlt-exception-") {
                continue;
            }
            out.headers.push((
                String::from_utf8_lossy(name).into_owned(),
                value.map(<[u8]>::to_vec),
            ));
        }
        let mut original = |name: &str, value: Vec<u8>| {
            if record.headers().last(name).is_none() {
                out.headers.push((name.to_owned(), Some(value)));
            }
        };
        original(headers::ORIGINAL_TOPIC, record.topic().as_bytes().to_vec());
        original(
            headers::ORIGINAL_PARTITION,
            record.partition().to_be_bytes().to_vec(),
        );
        original(
            headers::ORIGINAL_OFFSET,
            record.offset().to_be_bytes().to_vec(),
        );
        original(
            headers::ORIGINAL_TIMESTAMP,
            record.timestamp().unwrap_or(-1).to_be_bytes().to_vec(),
        );
        let kind = match (record.timestamp(), record.is_log_append_time()) {
            (None, _) => "NoTimestampType",
            (Some(_), true) => "LogAppendTime",
            (Some(_), false) => "CreateTime",
        };
        original(headers::ORIGINAL_TIMESTAMP_TYPE, kind.as_bytes().to_vec());
        original(
            headers::ORIGINAL_CONSUMER_GROUP,
            self.group_id.as_bytes().to_vec(),
        );
        let error = failure.error();
        let mut exception = |name: &str, value: String| {
            out.headers
                .push((name.to_owned(), Some(value.into_bytes())));
        };
        exception(headers::EXCEPTION_FQCN, failure.kind().to_owned());
        exception(headers::EXCEPTION_CAUSE_FQCN, type_name_of(failure));
        exception(headers::EXCEPTION_MESSAGE, error.to_string());
        exception(headers::EXCEPTION_STACKTRACE, stack_trace(failure));
        out
    }

    async fn publish(&self, record: &ConsumerRecord, failure: &Failure) -> Result<(), BoxError> {
        let topic = self.destination(record, failure);
        let letter = self.dead_letter(record, failure, topic);
        self.send_letter(record, failure, letter).await
    }

    /// Sends `letter` (built from `record`) and waits for the broker's acknowledgement: to the
    /// record's partition when its topic has it.
    pub(crate) async fn send_letter(
        &self,
        record: &ConsumerRecord,
        failure: &Failure,
        mut letter: ProducerRecord,
    ) -> Result<(), BoxError> {
        if !self.producer.is_confirmed() {
            return Err("kafka.producer.acks=0: the broker never confirms a dead letter, so the record is kept (set acks=1 or all)".into());
        }
        let partitions = self.partition_count(&letter.topic).await?;
        let destination = letter.topic.clone();
        letter.partition = usize::try_from(record.partition())
            .ok()
            .filter(|p| *p < partitions)
            .map(|_| record.partition());
        match self.producer.send_record(letter).await {
            Ok(at) => {
                tracing::warn!(
                    topic = record.topic(),
                    partition = record.partition(),
                    offset = record.offset(),
                    to = %destination,
                    to_partition = at.partition,
                    to_offset = at.offset,
                    error = %failure,
                    "record published to its dead-letter or retry topic"
                );
                Ok(())
            }
            Err(e) => {
                // The partition count may be what changed (topic re-created).
                self.cache().clear();
                Err(e.into())
            }
        }
    }
}

impl Recoverer for DeadLetterPublisher {
    fn recover<'a>(
        &'a self,
        record: &'a ConsumerRecord,
        failure: &'a Failure,
    ) -> RecoverFuture<'a> {
        Box::pin(self.publish(record, failure))
    }

    fn kind(&self) -> &'static str {
        "dead_letter"
    }
}

/// The error's type name, as far as a `dyn Error` tells it: the identifier its `Debug` output
/// starts with (`ParseIntError { .. }` gives `ParseIntError`); a boxed string gives `String`.
fn type_name_of(failure: &Failure) -> String {
    if let Failure::Decode(_) = failure {
        return "kafka_listener::ExtractError".to_owned();
    }
    let debug = format!("{:?}", failure.error());
    let name: String = debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    if name.is_empty() {
        "String".to_owned()
    } else {
        name
    }
}

/// The failure, then each source of its error on a line of its own.
fn stack_trace(failure: &Failure) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{}: {failure}", failure.kind());
    let mut next = failure.error().source();
    while let Some(e) = next {
        let _ = write!(out, "\nCaused by: {e}");
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_come_from_the_debug_output() {
        let parse = "x".parse::<i32>().expect_err("not a number");
        let failure = Failure::Exhausted {
            attempts: 3,
            last: Box::new(parse),
        };
        assert_eq!(type_name_of(&failure), "ParseIntError");
        let failure = Failure::NotRetryable {
            attempt: 1,
            error: "negative amount".into(),
        };
        assert_eq!(type_name_of(&failure), "String");
        assert_eq!(
            stack_trace(&failure),
            "kafka_listener::NonRetryable: failed at attempt 1, not retried: negative amount"
        );
    }
}
