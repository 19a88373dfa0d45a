//! What happens when a handler fails: retries in place, then the recoverer.
//!
//! A handler `Err` (or panic) is retried on the same record with a fixed back-off
//! (`kafka.listener.retry.attempts`, default 10 attempts like Spring's `DefaultErrorHandler`;
//! `kafka.listener.retry.backoff.delay`, default 1s). Only the failing partition waits; the
//! others keep flowing. When the attempts are exhausted the recoverer runs: it logs the record
//! (listener id, topic, partition, offset, error) and the offset moves on. A record that cannot
//! be decoded skips the retries (it would fail the same way every time) and goes straight to
//! the recoverer. A stop (shutdown or revoke) during the back-off abandons the record
//! *unfinished*: it is not committed and will be delivered again.

use std::time::Duration;

use crate::BoxError;

/// Fixed back-off retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (>= 1).
    pub attempts: u32,
    /// Pause between attempts.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            backoff: Duration::from_secs(1),
        }
    }
}

/// Why a record (or batch) is handed to the recoverer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It could not be decoded into the handler's arguments.
    Decode(crate::ExtractError),
    /// The handler failed on every attempt; the last error.
    Exhausted { attempts: u32, last: BoxError },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Decode(e) => write!(f, "decode error: {e}"),
            Failure::Exhausted { attempts, last } => {
                write!(f, "failed after {attempts} attempt(s): {last}")
            }
        }
    }
}

/// The default recoverer: log and skip.
pub(crate) fn recover(listener: &str, topic: &str, partition: i32, offset: i64, failure: &Failure) {
    tracing::error!(
        listener,
        topic,
        partition,
        offset,
        error = %failure,
        "record skipped: the offset moves past it (no dead-letter topic is configured)"
    );
}

/// Turns a caught panic payload into an error.
pub(crate) fn panic_error(payload: Box<dyn std::any::Any + Send>) -> BoxError {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("handler panicked: {text}").into()
}
