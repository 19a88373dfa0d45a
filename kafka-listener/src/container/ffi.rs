//! The container's only calls into librdkafka's C API, each behind a safe function.
//!
//! Headers as bytes: rdkafka's safe header iterator turns every header name into `&str` with an `unwrap`, so a
//! single record whose header name is not UTF-8 (Go, C and Python clients can write one) would
//! panic the consumer thread. This module is the one place that reads headers through the C
//! API instead; it hands out names and values as byte slices and never panics on what a
//! record carries.
//!
//! Commit results: rdkafka does not report the outcome of an asynchronous commit (librdkafka
//! only posts it for an `offset_commit_cb`, which rdkafka does not set). [`CommitQueue`]
//! sends commits through a queue of ours and reads their final outcomes back.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

/// Calls `f(name, value)` for each header of `message`, in order. A null value is `None`.
///
/// A header name is read up to its first NUL byte (librdkafka hands names out NUL-terminated),
/// so a name with an embedded NUL arrives truncated there; nothing else is changed.
pub(crate) fn for_each_header(
    message: &BorrowedMessage<'_>,
    mut f: impl FnMut(&[u8], Option<&[u8]>),
) {
    let msg = message.ptr();
    let mut hdrs: *mut rd::rd_kafka_headers_t = ptr::null_mut();
    // SAFETY: `msg` points to the live message `message` borrows; librdkafka writes a pointer
    // to headers owned by that message (or leaves it null and returns an error).
    let err = unsafe { rd::rd_kafka_message_headers(msg, &mut hdrs) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return;
    }
    // SAFETY: `hdrs` is non-null and owned by the message, alive while `message` is borrowed.
    let count = unsafe { rd::rd_kafka_header_cnt(hdrs) };
    for idx in 0..count {
        let mut name: *const c_char = ptr::null();
        let mut value: *const c_void = ptr::null();
        let mut size = 0usize;
        // SAFETY: `idx < count`; the out-pointers are valid locals. librdkafka sets them to
        // memory owned by the headers, valid until the message is destroyed.
        let err =
            unsafe { rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka stores every header name NUL-terminated; it lives as long as the
        // message, which outlives this call.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = if value.is_null() {
            None
        } else if size == 0 {
            Some(&[][..])
        } else {
            // SAFETY: `value` is non-null and points to `size` bytes owned by the message.
            Some(unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) })
        };
        f(name, value);
    }
}

/// Offset commits whose results come back to us: librdkafka posts the result of a commit sent
/// through this queue once it is final (after its own retries), which the safe API does not
/// report for asynchronous commits. The consumer keeps one commit in flight at a time, so a
/// retried older commit can never land after a newer one.
pub(crate) struct CommitQueue {
    queue: ptr::NonNull<rd::rd_kafka_queue_t>,
}

// SAFETY: librdkafka queues may be used from any thread; the handle is only a pointer.
unsafe impl Send for CommitQueue {}
// SAFETY: as above; every operation on the queue is internally synchronised by librdkafka.
unsafe impl Sync for CommitQueue {}

/// The final result of one commit sent through a [`CommitQueue`].
#[derive(Debug)]
pub(crate) struct CommitOutcome {
    /// The request's own error, if any.
    pub(crate) error: Option<RDKafkaRespErr>,
    /// Topic, partition, committed offset and that partition's error, if any.
    pub(crate) partitions: Vec<(String, i32, i64, Option<RDKafkaRespErr>)>,
}

impl CommitQueue {
    /// A new queue on `consumer`'s handle. It must be dropped before the consumer.
    pub(crate) fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<Self> {
        // SAFETY: the handle is live for the duration of the call; the returned queue is
        // owned by us and destroyed in `Drop`.
        let queue = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        ptr::NonNull::new(queue).map(|queue| CommitQueue { queue })
    }

    /// Sends an asynchronous commit of `offsets`; its outcome arrives through [`Self::poll`].
    pub(crate) fn commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> Result<(), RDKafkaRespErr> {
        // SAFETY: the handle and the list are live for the call; librdkafka copies the list.
        // No callback: the result is served as an event by `rd_kafka_queue_poll`.
        let err = unsafe {
            rd::rd_kafka_commit_queue(
                consumer.client().native_ptr(),
                offsets.ptr(),
                self.queue.as_ptr(),
                None,
                ptr::null_mut(),
            )
        };
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
            e => Err(e),
        }
    }

    /// The next commit outcome, waiting at most `timeout`.
    pub(crate) fn poll(&self, timeout: std::time::Duration) -> Option<CommitOutcome> {
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        loop {
            // SAFETY: the queue is ours and live; the event, if any, is ours to destroy.
            let ev = unsafe { rd::rd_kafka_queue_poll(self.queue.as_ptr(), ms) };
            if ev.is_null() {
                return None;
            }
            // SAFETY: `ev` is a live event until destroyed below.
            let kind = unsafe { rd::rd_kafka_event_type(ev) };
            if kind != rd::RD_KAFKA_EVENT_OFFSET_COMMIT {
                // SAFETY: destroying the event we own.
                unsafe { rd::rd_kafka_event_destroy(ev) };
                continue;
            }
            // SAFETY: `ev` is a live commit event.
            let err = unsafe { rd::rd_kafka_event_error(ev) };
            let mut partitions = Vec::new();
            // SAFETY: the list belongs to the event and lives until it is destroyed; `cnt`
            // elements are initialised, each with a NUL-terminated topic name.
            unsafe {
                let list = rd::rd_kafka_event_topic_partition_list(ev);
                if !list.is_null() {
                    let list = &*list;
                    let count = usize::try_from(list.cnt).unwrap_or(0);
                    if !list.elems.is_null() {
                        for elem in std::slice::from_raw_parts(list.elems, count) {
                            let topic = if elem.topic.is_null() {
                                String::new()
                            } else {
                                CStr::from_ptr(elem.topic).to_string_lossy().into_owned()
                            };
                            let perr = (elem.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
                                .then_some(elem.err);
                            partitions.push((topic, elem.partition, elem.offset, perr));
                        }
                    }
                }
                rd::rd_kafka_event_destroy(ev);
            }
            let error = (err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).then_some(err);
            return Some(CommitOutcome { error, partitions });
        }
    }
}

impl Drop for CommitQueue {
    fn drop(&mut self) {
        // SAFETY: the queue is ours; nothing uses it after this.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}
