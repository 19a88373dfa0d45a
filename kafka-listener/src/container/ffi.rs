//! The container's only calls into librdkafka's C API, each behind a safe function.
//!
//! Headers as bytes: rdkafka's safe header iterator turns every header name into `&str` with an `unwrap`, so a
//! single record whose header name is not UTF-8 (Go, C and Python clients can write one) would
//! panic the consumer thread. This module is the one place that reads headers through the C
//! API instead; it hands out names and values as byte slices and never panics on what a
//! record carries.
//!
//! Partition queues: [`PartitionQueue`] splits an assigned partition's queue off the consumer
//! queue and takes its records in batches (`rd_kafka_consume_batch_queue`, which rdkafka's
//! safe API lacks), destroying each message right after it was copied out.
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
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

/// Calls `f(name, value)` for each header of the message at `msg`, in order. A null value is
/// `None`.
///
/// A header name is read up to its first NUL byte (librdkafka hands names out NUL-terminated),
/// so a name with an embedded NUL arrives truncated there; nothing else is changed.
fn for_each_header_of(msg: *const rd::rd_kafka_message_t, mut f: impl FnMut(&[u8], Option<&[u8]>)) {
    let mut hdrs: *mut rd::rd_kafka_headers_t = ptr::null_mut();
    // SAFETY: callers pass a live message; librdkafka writes a pointer to headers owned by
    // that message (or leaves it null and returns an error). It only reads the message
    // (parsing headers lazily is internal to librdkafka and synchronised there).
    let err = unsafe { rd::rd_kafka_message_headers(msg, &mut hdrs) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return;
    }
    // SAFETY: `hdrs` is non-null and owned by the message, alive while the caller holds it.
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

/// One record taken from a [`PartitionQueue`], borrowed for the duration of a callback: the
/// message is destroyed (its memory handed back to librdkafka) right after.
pub(crate) struct Fetched<'a> {
    msg: &'a rd::rd_kafka_message_t,
}

impl Fetched<'_> {
    /// The error librdkafka delivered instead of a record (a fetch error), if any.
    pub(crate) fn error(&self) -> Option<RDKafkaRespErr> {
        (self.msg.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).then_some(self.msg.err)
    }

    pub(crate) fn offset(&self) -> i64 {
        self.msg.offset
    }

    /// Milliseconds since the epoch, `None` when the record has none; and whether it is the
    /// broker's log-append time (else the producer's create time).
    pub(crate) fn timestamp(&self) -> (Option<i64>, bool) {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is live while borrowed; `kind` is a valid local.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.msg, &mut kind) };
        let log_append = kind == rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME;
        (
            (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0)
                .then_some(ts),
            log_append,
        )
    }

    fn bytes(&self, data: *const c_void, len: usize) -> Option<&[u8]> {
        if data.is_null() {
            None
        } else if len == 0 {
            Some(&[])
        } else {
            // SAFETY: librdkafka's key and payload pointers address `len` bytes owned by the
            // message, which lives as long as the borrow of `self`.
            Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
        }
    }

    pub(crate) fn key(&self) -> Option<&[u8]> {
        self.bytes(self.msg.key, self.msg.key_len)
    }

    pub(crate) fn payload(&self) -> Option<&[u8]> {
        self.bytes(self.msg.payload, self.msg.len)
    }

    /// Calls `f(name, value)` for each header, in order (see `for_each_header_of`).
    pub(crate) fn for_each_header(&self, f: impl FnMut(&[u8], Option<&[u8]>)) {
        for_each_header_of(self.msg, f);
    }
}

/// One assigned partition's own librdkafka queue, split from the consumer queue: its fetched
/// records arrive here and only here, so the partition's worker takes them in batches without
/// going through the consumer thread, and librdkafka's prefetch limits
/// (`queued.min.messages`, `queued.max.messages.kbytes`) apply to this partition alone.
///
/// librdkafka calls back (on one of its threads) when a record lands in the empty queue; the
/// callback wakes the worker through `wake`. Split it *before* the partition is assigned (or
/// its first records go to the consumer queue), split it again on every assignment, and drop
/// it before the consumer.
pub(crate) struct PartitionQueue {
    queue: ptr::NonNull<rd::rd_kafka_queue_t>,
    /// Kept alive for the callback, which borrows it through a raw pointer.
    _wake: std::sync::Arc<tokio::sync::Notify>,
}

// SAFETY: librdkafka queues may be used from any thread (every operation locks the queue);
// the handle is only a pointer, and `wake` is `Send + Sync`.
unsafe impl Send for PartitionQueue {}
// SAFETY: as above.
unsafe impl Sync for PartitionQueue {}

impl std::fmt::Debug for PartitionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionQueue").finish_non_exhaustive()
    }
}

/// Records taken from a queue per C call.
const BATCH: usize = 64;

unsafe extern "C" fn wake_worker(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Notify` inside the `Arc` the `PartitionQueue` holds, and
    // librdkafka calls this under the queue's lock, which `Drop` takes (by disabling the
    // callback) before that `Arc` is released. `notify_one` neither blocks nor panics.
    let wake = unsafe { &*opaque.cast::<tokio::sync::Notify>() };
    wake.notify_one();
}

impl PartitionQueue {
    /// Splits `topic`/`partition`'s queue from `consumer`'s queue. `None` if librdkafka
    /// returns no queue (the topic name holds a NUL byte, or the handle is going away).
    pub(crate) fn split<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> Option<Self> {
        let topic = std::ffi::CString::new(topic).ok()?;
        // SAFETY: the handle and the topic string are live for the call; the returned queue
        // reference is ours and destroyed in `Drop`.
        let queue = unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        let queue = ptr::NonNull::new(queue)?;
        // SAFETY: `queue` is live. Forwarding to null stops the partition's records from
        // going on to the consumer queue; librdkafka keeps it so across (re)assignment while
        // this handle lives. The callback's opaque pointer stays valid until `Drop` disables
        // the callback (see `wake_worker`).
        unsafe {
            rd::rd_kafka_queue_forward(queue.as_ptr(), ptr::null_mut());
            rd::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(wake_worker),
                std::sync::Arc::as_ptr(&wake).cast_mut().cast::<c_void>(),
            );
        }
        Some(PartitionQueue { queue, _wake: wake })
    }

    /// Takes up to `max` records without waiting, calling `f` on each in offset order
    /// (fetch errors included: see [`Fetched::error`]). Returns how many it took; fewer than
    /// `max` means the queue is empty now.
    pub(crate) fn consume(&self, max: usize, mut f: impl FnMut(&Fetched<'_>)) -> usize {
        let mut taken = 0;
        let mut batch = [ptr::null_mut::<rd::rd_kafka_message_t>(); BATCH];
        while taken < max {
            let want = (max - taken).min(BATCH);
            // SAFETY: the queue is live; librdkafka writes at most `want` message pointers
            // into `batch`, each ours to destroy. Timeout 0: it never blocks.
            let n = unsafe {
                rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, batch.as_mut_ptr(), want)
            };
            let n = usize::try_from(n).unwrap_or(0);
            // Destroys every message of this call even if `f` unwinds.
            let guard = DestroyOnDrop(&batch[..n]);
            for &msg in guard.0 {
                // SAFETY: librdkafka returned it non-null and live; destroyed by the guard
                // after this loop, never before.
                if let Some(msg) = unsafe { msg.as_ref() } {
                    f(&Fetched { msg });
                }
            }
            drop(guard);
            taken += n;
            if n < want {
                break;
            }
        }
        taken
    }
}

struct DestroyOnDrop<'a>(&'a [*mut rd::rd_kafka_message_t]);

impl Drop for DestroyOnDrop<'_> {
    fn drop(&mut self) {
        for &msg in self.0 {
            if !msg.is_null() {
                // SAFETY: each pointer came from `rd_kafka_consume_batch_queue` and is
                // destroyed exactly once, here.
                unsafe { rd::rd_kafka_message_destroy(msg) };
            }
        }
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: the queue is ours. Disabling the callback takes the queue's lock, so no
        // callback runs (or will run) with our `wake` pointer once it returns; then the
        // reference is released. Nothing uses the queue after this.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, ptr::null_mut());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
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
