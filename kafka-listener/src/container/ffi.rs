//! The container's only calls into librdkafka's C API, each behind a safe function.
//!
//! Headers as bytes: rdkafka's safe header iterator turns every header name into `&str` with an `unwrap`, so a
//! single record whose header name is not UTF-8 (Go, C and Python clients can write one) would
//! panic the consumer thread. This module is the one place that reads headers through the C
//! API instead; it hands out names and values as byte slices and never panics on what a
//! record carries.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::{c_char, c_void};
use std::ptr;

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;

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
