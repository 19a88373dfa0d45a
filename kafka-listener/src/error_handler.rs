//! What happens when a handler fails: retries in place, then the recoverer.
//!
//! A handler `Err` (or panic) is retried on the same record (`kafka.listener.retry.attempts`,
//! default 10 attempts like Spring's `DefaultErrorHandler`) after a back-off: fixed
//! (`kafka.listener.retry.backoff.delay`, default 1s) or growing by
//! `kafka.listener.retry.backoff.multiplier` up to `kafka.listener.retry.backoff.max-delay`,
//! optionally randomised (`kafka.listener.retry.backoff.random`; Spring Boot's names for its
//! retry topics' back-off). Only the failing partition waits (with key lanes, only the failing
//! key); the others keep flowing. An error the handler marks [`NonRetryable`] skips the
//! retries. When the attempts are exhausted the [`Recoverer`] runs: by default it logs the
//! record (listener id, topic, partition, offset, error) and the offset moves on; with
//! `kafka.listener[.<id>].dead-letter.enabled=true` it publishes the record to a dead-letter
//! topic and the offset moves on only once the broker acknowledged it. A record that cannot
//! be decoded skips the retries (it would fail the same way every time) and goes straight to
//! the recoverer. A stop (shutdown or revoke) during the back-off abandons the record
//! *unfinished*: it is not committed and will be delivered again.

use std::sync::Arc;
use std::time::Duration;

use crate::{BoxError, ConsumerRecord};

/// How often and after what pause a failing record is retried in place.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Total attempts, the first included (>= 1).
    pub attempts: u32,
    /// Pause after the first failed attempt.
    pub backoff: Duration,
    /// Each further pause is the previous one times this (1: a fixed back-off).
    pub multiplier: f64,
    /// The longest pause.
    pub max_backoff: Duration,
    /// Each pause is drawn at random between half of it and all of it (so partitions that
    /// failed together do not retry in step).
    pub random: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::fixed(10, Duration::from_secs(1))
    }
}

impl RetryPolicy {
    /// `attempts` in all, `backoff` between them.
    pub fn fixed(attempts: u32, backoff: Duration) -> Self {
        RetryPolicy {
            attempts,
            backoff,
            multiplier: 1.0,
            max_backoff: Duration::from_secs(30).max(backoff),
            random: false,
        }
    }

    /// `attempts` in all; the pauses start at `initial` and grow by `multiplier` up to `max`.
    pub fn exponential(attempts: u32, initial: Duration, multiplier: f64, max: Duration) -> Self {
        RetryPolicy {
            multiplier: multiplier.max(1.0),
            max_backoff: max,
            ..RetryPolicy::fixed(attempts, initial)
        }
    }

    /// Draws each pause at random between half of it and all of it.
    pub fn with_random(mut self, random: bool) -> Self {
        self.random = random;
        self
    }

    /// The pause after failed attempt number `attempt` (1 for the first). `unit` in `[0, 1)`
    /// picks the random part when [`random`](Self::random) is set.
    pub fn pause(&self, attempt: u32, unit: f64) -> Duration {
        let growth = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(1_000) as i32);
        let secs = (self.backoff.as_secs_f64() * growth).min(self.max_backoff.as_secs_f64());
        let secs = if self.random {
            secs * (0.5 + 0.5 * unit.clamp(0.0, 1.0))
        } else {
            secs
        };
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_backoff)
    }
}

/// Marks a handler's error as not worth retrying (bad data, a rule the record breaks): the
/// record goes to the recoverer after this attempt, whatever `retry.attempts` says (Spring's
/// not-retryable exceptions). Return `Err(NonRetryable::new(e).into())`, or wrap anywhere in
/// the error's chain of sources.
#[derive(Debug)]
pub struct NonRetryable(pub BoxError);

impl NonRetryable {
    /// Wraps `error`.
    pub fn new(error: impl Into<BoxError>) -> Self {
        NonRetryable(error.into())
    }

    /// Whether `error`, or an error in its chain of sources, is marked non-retryable.
    pub fn is_in(error: &(dyn std::error::Error + 'static)) -> bool {
        find_in_chain::<NonRetryable>(error).is_some()
    }
}

impl std::fmt::Display for NonRetryable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (not retryable)", self.0)
    }
}

impl std::error::Error for NonRetryable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A batch listener's error that names the record it failed at (Spring's
/// `BatchListenerFailedException`): `index` is a position in the handler's vectors. The
/// records before it are finished (committed as usual), and the handler is called again with
/// the batch from that record on, after the back-off; once that record has used up the
/// retries it alone goes to the recoverer, and the calls go on with the records after it. The
/// retry count belongs to the record: it starts again when another record fails. Applies in
/// the automatic ack modes; in the manual modes the whole batch is retried. (An error naming
/// no record after one that did continues that record's count.)
#[derive(Debug)]
pub struct BatchListenerFailed {
    /// The failing record's position in the handler's vectors.
    pub index: usize,
    /// What went wrong.
    pub source: BoxError,
}

impl BatchListenerFailed {
    /// The batch failed at position `index`.
    pub fn new(index: usize, source: impl Into<BoxError>) -> Self {
        BatchListenerFailed {
            index,
            source: source.into(),
        }
    }

    /// The index named by `error` or an error in its chain of sources.
    pub fn index_in(error: &(dyn std::error::Error + 'static)) -> Option<usize> {
        find_in_chain::<BatchListenerFailed>(error).map(|b| b.index)
    }
}

impl std::fmt::Display for BatchListenerFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch failed at index {}: {}", self.index, self.source)
    }
}

impl std::error::Error for BatchListenerFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The first error of type `T` in `error`'s chain of sources, `error` included.
fn find_in_chain<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref::<T>())
}

/// Why a record is handed to the recoverer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure {
    /// It could not be decoded into the handler's arguments.
    Decode(crate::ExtractError),
    /// The handler failed on every attempt; the last error.
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: BoxError,
    },
    /// The handler's error is marked [`NonRetryable`].
    NotRetryable {
        /// The attempt that returned it.
        attempt: u32,
        /// The error.
        error: BoxError,
    },
}

impl Failure {
    /// The error that gave the record up (the decode error, or the handler's last error).
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            Failure::Decode(e) => e,
            Failure::Exhausted { last, .. } => &**last,
            Failure::NotRetryable { error, .. } => &**error,
        }
    }

    /// Handler calls made (0 for a record that could not be decoded).
    pub fn attempts(&self) -> u32 {
        match self {
            Failure::Decode(_) => 0,
            Failure::Exhausted { attempts, .. } => *attempts,
            Failure::NotRetryable { attempt, .. } => *attempt,
        }
    }

    /// A Spring-style class name for the failure (the `kafka_dlt-exception-fqcn` header):
    /// `kafka_listener::DecodeError`, `kafka_listener::RetriesExhausted` or
    /// `kafka_listener::NonRetryable`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Decode(_) => "kafka_listener::DecodeError",
            Failure::Exhausted { .. } => "kafka_listener::RetriesExhausted",
            Failure::NotRetryable { .. } => "kafka_listener::NonRetryable",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Decode(e) => write!(f, "decode error: {e}"),
            Failure::Exhausted { attempts, last } => {
                write!(f, "failed after {attempts} attempt(s): {last}")
            }
            Failure::NotRetryable { attempt, error } => {
                write!(f, "failed at attempt {attempt}, not retried: {error}")
            }
        }
    }
}

/// A listener's own rule for errors not worth retrying (Spring's `addNotRetryableExceptions`),
/// beside the [`NonRetryable`] mark: called with each handler error.
pub type RetryableClassifier = dyn Fn(&(dyn std::error::Error + 'static)) -> bool + Send + Sync;

/// The future a [`Recoverer`] returns.
pub type RecoverFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// What is done with a record the error handler gave up on (Spring's
/// `ConsumerRecordRecoverer`): log it, publish it to a dead-letter topic
/// ([`DeadLetterPublisher`](crate::DeadLetterPublisher)), or anything else.
///
/// `Ok` lets the offset move past the record. An `Err` is logged and the recoverer is called
/// again after a back-off (1 s, doubling up to 30 s) for as long as it fails: the record is
/// never skipped by a failing recoverer. Only its partition waits (with key lanes, its key);
/// a stop (shutdown, revoke) during the back-off leaves the record uncommitted, to be
/// delivered again.
///
/// Set one per listener with
/// [`ApplicationBuilder::recoverer`](crate::ApplicationBuilder::recoverer) or
/// [`ContainerProperties::recoverer`](crate::ContainerProperties).
pub trait Recoverer: Send + Sync + 'static {
    /// Recovers `record`, given up because of `failure`.
    fn recover<'a>(&'a self, record: &'a ConsumerRecord, failure: &'a Failure)
        -> RecoverFuture<'a>;

    /// What it does with a record, as the `recoverer` label of
    /// `kafka_listener_records_given_up_total`: `dead_letter`, `retry_topic`, `log`, or
    /// `custom` (the default; a wrapper may pass on what it wraps).
    fn kind(&self) -> &'static str {
        "custom"
    }
}

impl std::fmt::Debug for dyn Recoverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recoverer")
    }
}

/// The default recoverer: logs the record (listener, topic, partition, offset, error) and lets
/// the offset move past it.
#[derive(Debug, Clone, Default)]
pub struct LogRecoverer {
    listener: Arc<str>,
}

impl LogRecoverer {
    /// Logs under `listener`'s id.
    pub fn new(listener: &str) -> Self {
        LogRecoverer {
            listener: Arc::from(listener),
        }
    }
}

impl Recoverer for LogRecoverer {
    fn recover<'a>(
        &'a self,
        record: &'a ConsumerRecord,
        failure: &'a Failure,
    ) -> RecoverFuture<'a> {
        tracing::error!(
            listener = %self.listener,
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
            error = %failure,
            "record skipped: the offset moves past it (no dead-letter topic is configured)"
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn kind(&self) -> &'static str {
        "log"
    }
}

/// The pause before calling a failing recoverer again: 1 s after the first failure, doubling
/// up to 30 s.
pub(crate) fn recoverer_pause(failures: u32) -> Duration {
    RetryPolicy::exponential(
        u32::MAX,
        Duration::from_secs(1),
        2.0,
        Duration::from_secs(30),
    )
    .pause(failures.max(1), 0.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_back_off_pauses_the_same_each_time() {
        let p = RetryPolicy::fixed(5, Duration::from_millis(200));
        assert_eq!(p.pause(1, 0.3), Duration::from_millis(200));
        assert_eq!(p.pause(4, 0.9), Duration::from_millis(200));
    }

    #[test]
    fn an_exponential_back_off_grows_to_its_maximum() {
        let p = RetryPolicy::exponential(
            10,
            Duration::from_millis(100),
            2.0,
            Duration::from_millis(700),
        );
        let pauses: Vec<u128> = (1..=5).map(|a| p.pause(a, 0.0).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 700, 700]);
        assert_eq!(
            p.pause(u32::MAX, 0.0),
            Duration::from_millis(700),
            "no overflow"
        );
    }

    #[test]
    fn a_random_pause_lies_between_half_and_all_of_it() {
        let p = RetryPolicy::fixed(3, Duration::from_secs(1)).with_random(true);
        assert_eq!(p.pause(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.pause(1, 1.0), Duration::from_secs(1));
        assert!(p.pause(1, 0.5) > Duration::from_millis(700));
    }

    #[test]
    fn a_non_retryable_mark_is_found_anywhere_in_the_chain() {
        #[derive(Debug)]
        struct Outer(NonRetryable);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let marked: BoxError = Box::new(Outer(NonRetryable::new("bad amount")));
        assert!(NonRetryable::is_in(&*marked));
        let plain: BoxError = "timeout".into();
        assert!(!NonRetryable::is_in(&*plain));
        assert_eq!(
            NonRetryable::new("bad amount").to_string(),
            "bad amount (not retryable)"
        );
    }
}
