//! Chunks: a partition's records as its worker takes them from librdkafka, copied out with a
//! few allocations per chunk, not two per record.
//!
//! The worker copies every key and value of a chunk into a growing
//! buffer; when the chunk is handed over, the buffers are frozen and each record's key and
//! value become slices of them (shared, reference-counted, no further copy). Besides the
//! allocations themselves this hands librdkafka its message memory back at once (its
//! prefetch limits count what the application still holds).
//!
//! A buffer is closed once it holds [`SEGMENT`] bytes and a new one is started, so a `Bytes`
//! an application keeps from one record pins at most one segment (256 KiB, or the record
//! itself if it is larger), never a whole chunk of `max-poll-records` records.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::ffi;
use crate::listener::{ConsumerRecord, Headers};

/// Bytes after which a buffer is closed and the next record starts a new one.
const SEGMENT: usize = 256 * 1024;

/// Where a key or value lives: segment index and range in it.
type Slot = (usize, Range<usize>);

struct Pending {
    offset: i64,
    timestamp: Option<i64>,
    log_append_time: bool,
    key: Option<Slot>,
    value: Option<Slot>,
    headers: Headers,
}

/// The records of one partition taken in one poll cycle, not yet handed over.
pub(crate) struct ChunkBuilder {
    /// Closed segments.
    full: Vec<BytesMut>,
    /// The segment being filled (index `full.len()`).
    buf: BytesMut,
    records: Vec<Pending>,
    /// Key, value and header bytes copied so far (for the memory budget).
    bytes: usize,
}

impl ChunkBuilder {
    pub(crate) fn new() -> Self {
        ChunkBuilder {
            full: Vec::new(),
            buf: BytesMut::with_capacity(16 * 1024),
            records: Vec::with_capacity(64),
            bytes: 0,
        }
    }

    fn copy(&mut self, bytes: Option<&[u8]>) -> Option<Slot> {
        bytes.map(|b| {
            if !self.buf.is_empty() && self.buf.len() + b.len() > SEGMENT {
                let next = BytesMut::with_capacity(b.len().clamp(16 * 1024, SEGMENT));
                self.full.push(std::mem::replace(&mut self.buf, next));
            }
            let start = self.buf.len();
            self.buf.extend_from_slice(b);
            self.bytes += b.len();
            (self.full.len(), start..self.buf.len())
        })
    }

    /// Key, value and header bytes of the records so far.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn push(&mut self, message: &ffi::Fetched<'_>) {
        let key = self.copy(message.key());
        let value = self.copy(message.payload());
        // Header names are read as bytes: rdkafka's own iterator panics on a name that is not
        // UTF-8, and any non-Java client can write one.
        let mut headers = Headers::default();
        let mut header_bytes = 0;
        message.for_each_header(|name, value| {
            header_bytes += name.len() + value.map_or(0, <[u8]>::len);
            headers.push(name, value.map(Bytes::copy_from_slice))
        });
        self.bytes += header_bytes;
        let (timestamp, log_append_time) = message.timestamp();
        self.records.push(Pending {
            offset: message.offset(),
            timestamp,
            log_append_time,
            key,
            value,
            headers,
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The finished records, sharing the chunk's segments.
    pub(crate) fn build(self, topic: &Arc<str>, partition: i32) -> Vec<ConsumerRecord> {
        let mut segments: Vec<Bytes> = self.full.into_iter().map(BytesMut::freeze).collect();
        segments.push(self.buf.freeze());
        let slice = |slot: Slot| segments[slot.0].slice(slot.1);
        self.records
            .into_iter()
            .map(|p| ConsumerRecord {
                topic: Arc::clone(topic),
                partition,
                offset: p.offset,
                timestamp: p.timestamp,
                log_append_time: p.log_append_time,
                key: p.key.map(slice),
                value: p.value.map(slice),
                headers: p.headers,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retained_value_pins_one_segment_not_the_whole_chunk() {
        let mut b = ChunkBuilder::new();
        let value = vec![7u8; 1024];
        let slots: Vec<Slot> = (0..2_000).filter_map(|_| b.copy(Some(&value))).collect();
        assert_eq!(b.bytes(), 2_000 * 1024);
        // 2,000 KiB in segments of at most 256 KiB.
        assert_eq!(b.full.len() + 1, 8);
        assert!(b.full.iter().all(|s| s.len() <= SEGMENT));
        assert_eq!(slots[0].0, 0);
        assert_eq!(slots[1_999].0, 7);
        // A record larger than a segment gets a segment of its own.
        let big = vec![1u8; 3 * SEGMENT];
        let slot = b.copy(Some(&big)).expect("slot");
        assert_eq!(slot.1, 0..3 * SEGMENT);
    }
}
