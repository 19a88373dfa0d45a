//! Copying records out of librdkafka with one allocation per chunk, not two per record.
//!
//! The poll loop copies every key and value of a partition's poll-cycle chunk into one
//! growing buffer; when the chunk is handed over, the buffer is frozen and each record's key
//! and value become slices of it (shared, reference-counted, no further copy). Besides the
//! allocations themselves this avoids malloc contention between the consumer thread, which
//! allocated, and the runtime's workers, which free.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};

use super::raw_headers;
use crate::listener::{ConsumerRecord, Headers};

struct Pending {
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: Headers,
}

/// The records of one partition taken in one poll cycle, not yet handed over.
pub(crate) struct ChunkBuilder {
    buf: BytesMut,
    records: Vec<Pending>,
}

impl ChunkBuilder {
    pub(crate) fn new() -> Self {
        ChunkBuilder {
            buf: BytesMut::with_capacity(16 * 1024),
            records: Vec::with_capacity(64),
        }
    }

    fn copy(&mut self, bytes: Option<&[u8]>) -> Option<Range<usize>> {
        bytes.map(|b| {
            let start = self.buf.len();
            self.buf.extend_from_slice(b);
            start..self.buf.len()
        })
    }

    pub(crate) fn push(&mut self, message: &BorrowedMessage<'_>) {
        let key = self.copy(message.key());
        let value = self.copy(message.payload());
        // Header names are read as bytes: rdkafka's own iterator panics on a name that is not
        // UTF-8, and any non-Java client can write one.
        let mut headers = Headers::default();
        if message.headers().is_some() {
            headers = Headers::with_capacity(message.headers().map_or(0, |h| h.count()));
            raw_headers::for_each_header(message, |name, value| {
                headers.push(name, value.map(Bytes::copy_from_slice))
            });
        }
        self.records.push(Pending {
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key,
            value,
            headers,
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The finished records, sharing one buffer.
    pub(crate) fn build(self, topic: &Arc<str>, partition: i32) -> Vec<ConsumerRecord> {
        let buf = self.buf.freeze();
        self.records
            .into_iter()
            .map(|p| ConsumerRecord {
                topic: Arc::clone(topic),
                partition,
                offset: p.offset,
                timestamp: p.timestamp,
                key: p.key.map(|r| buf.slice(r)),
                value: p.value.map(|r| buf.slice(r)),
                headers: p.headers,
            })
            .collect()
    }
}
