//! Records as handlers see them: owned copies taken out of librdkafka's buffers.

use std::sync::Arc;

use bytes::Bytes;

/// One record consumed from Kafka, owned (copied out of librdkafka's buffer once).
///
/// Handlers usually take extractors ([`Json`](crate::Json), [`RecordMeta`], ...) rather than the
/// whole record, but `ConsumerRecord` is itself an extractor for handlers that want everything.
#[derive(Debug, Clone)]
pub struct ConsumerRecord {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
    /// The timestamp is the broker's log-append time (else the producer's create time).
    pub(crate) log_append_time: bool,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Headers,
}

impl ConsumerRecord {
    /// Builds a record by hand, for tests of handlers and for tools.
    pub fn new(topic: &str, partition: i32, offset: i64) -> Self {
        ConsumerRecord {
            topic: Arc::from(topic),
            partition,
            offset,
            timestamp: None,
            log_append_time: false,
            key: None,
            value: None,
            headers: Headers::default(),
        }
    }

    /// Sets the key (builder style).
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value (builder style). A record without a value is a tombstone.
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sets the timestamp in milliseconds since the epoch (builder style).
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: Option<impl Into<Bytes>>) -> Self {
        self.headers.push(name.as_bytes(), value.map(Into::into));
        self
    }

    /// Adds a header whose name is raw bytes, maybe not UTF-8 (builder style), as Go, C or
    /// Python clients can write.
    pub fn with_raw_header(mut self, name: &[u8], value: Option<impl Into<Bytes>>) -> Self {
        self.headers.push(name, value.map(Into::into));
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset within the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp (create or log-append time), milliseconds since the epoch.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// Whether [`timestamp`](Self::timestamp) is the broker's log-append time rather than the
    /// producer's create time (the topic's `message.timestamp.type`).
    pub fn is_log_append_time(&self) -> bool {
        self.log_append_time
    }

    /// The raw key, `None` for a null key.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The raw value, `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Where this record sits, for logs and extractors.
    pub fn meta(&self) -> RecordMeta {
        RecordMeta {
            topic: Arc::clone(&self.topic),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.clone(),
        }
    }
}

/// A record's headers, in the order they were sent. Names may repeat; values may be null.
///
/// Kafka header names are bytes on the wire; Java clients write UTF-8, other clients may not.
/// [`iter`](Headers::iter) and the look-ups by name see each name as text (bytes that are not
/// UTF-8 become U+FFFD); [`iter_raw`](Headers::iter_raw) gives the exact bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    /// The name as text (lossy when the bytes are not UTF-8).
    name: Box<str>,
    /// The exact name bytes, kept only when they are not UTF-8.
    raw: Option<Box<[u8]>>,
    value: Option<Bytes>,
}

impl Header {
    fn name_bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.name.as_bytes())
    }
}

impl Headers {
    /// Appends a header; never fails, whatever the name bytes are.
    pub(crate) fn push(&mut self, name: &[u8], value: Option<Bytes>) {
        let (name, raw) = match std::str::from_utf8(name) {
            Ok(text) => (Box::from(text), None),
            Err(_) => (
                String::from_utf8_lossy(name).into_owned().into_boxed_str(),
                Some(Box::from(name)),
            ),
        };
        self.0.push(Header { name, raw, value });
    }

    /// The value of the last header with this name (Kafka's convention for "the" value).
    /// `None` if absent; `Some(None)` if present with a null value. Only a header whose name
    /// bytes are exactly `name`'s UTF-8 matches.
    pub fn last(&self, name: &str) -> Option<Option<&[u8]>> {
        self.0
            .iter()
            .rev()
            .find(|h| h.name_bytes() == name.as_bytes())
            .map(|h| h.value.as_deref())
    }

    /// The last header with this name, as UTF-8 text; `None` if absent, null or not UTF-8.
    pub fn last_str(&self, name: &str) -> Option<&str> {
        self.last(name)
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All headers, in order, names as text (bytes that are not UTF-8 become U+FFFD).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0.iter().map(|h| (&*h.name, h.value.as_deref()))
    }

    /// All headers, in order, names as the exact bytes the producer wrote.
    pub fn iter_raw(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.0.iter().map(|h| (h.name_bytes(), h.value.as_deref()))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a record came from: topic, partition, offset, timestamp and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch, if the record has one.
    pub timestamp: Option<i64>,
    /// The raw key, if any.
    pub key: Option<Bytes>,
}
