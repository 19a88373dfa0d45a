//! Non-blocking retries through retry topics (Spring's `@RetryableTopic`):
//! `kafka.listener[.<id>].retry-topic.enabled=true`.
//!
//! A record that fails on `<topic>` is not retried in place: it is published to
//! `<topic>-retry-0` with the time it is due, and its offset on `<topic>` moves on once the
//! broker acknowledged that copy (a crash before loses nothing: the original comes again).
//! A second container of the listener (id `<id>-retry`, same group, same handler) consumes
//! the retry topics; a record that is not due yet holds its partition, paused, until it is
//! (the consumer keeps polling; no task sleeps holding records). A record failing there goes
//! to the next retry topic, `<topic>-retry-1`, ..., and after `attempts` calls in all to
//! `<topic>-dlt`. Records that cannot be decoded, and errors marked not retryable, go to
//! `<topic>-dlt` at once. The retry copies and the dead letter carry Spring's headers:
//! `retry_topic-attempts` (4-byte integer: the attempt the copy is for),
//! `retry_topic-backoff-timestamp` and `retry_topic-original-timestamp` (8-byte big-endian
//! milliseconds), and the `kafka_dlt-*` headers of a dead letter.
//!
//! This trades per-key order for throughput: a failed record's successors on the main topic
//! are handled before its retry.

use std::time::Duration;

use crate::dead_letter::{headers as dlt, DeadLetterPublisher};
use crate::error_handler::{Failure, RecoverFuture, Recoverer, RetryPolicy};
use crate::{BoxError, ConsumerRecord, ProducerTemplate};

/// Spring's retry-topic header names.
pub mod headers {
    /// The attempt a retry copy is for (the original's first call is 1): a 4-byte big-endian
    /// integer (Spring also wrote a single byte once; both are read).
    pub const ATTEMPTS: &str = "retry_topic-attempts";
    /// When the copy is due, milliseconds since the epoch, 8-byte big-endian.
    pub const BACKOFF_TIMESTAMP: &str = "retry_topic-backoff-timestamp";
    /// The original record's timestamp, milliseconds, 8-byte big-endian.
    pub const ORIGINAL_TIMESTAMP: &str = "retry_topic-original-timestamp";
}

/// The retry topics of `topic` for `attempts` calls in all: `<topic>-retry-0` ...
pub fn retry_topics(topic: &str, attempts: u32) -> Vec<String> {
    (0..attempts.saturating_sub(1))
        .map(|i| format!("{topic}-retry-{i}"))
        .collect()
}

/// The topic each retry of `topic` goes to, in order (the copy after call n is at index
/// n - 1), for the back-off `policy` (whose `attempts` counts every call).
///
/// With `single_topic` (Spring's `SameIntervalTopicReuseStrategy.SINGLE_TOPIC`) retries that
/// wait as long as the one before them reuse its topic: a fixed back-off with two or more
/// retries has one retry topic, `<topic>-retry`; an exponential one capped by its longest
/// pause has `<topic>-retry-0`, ..., `<topic>-retry-k`, the last reused by every retry that
/// waits the longest pause; a single retry keeps `<topic>-retry-0`. Without, each retry has
/// its own topic, `<topic>-retry-<n>` (`@RetryableTopic`'s default before spring-kafka 3.2,
/// and ours: see the README).
pub fn retry_chain(topic: &str, policy: &RetryPolicy, single_topic: bool) -> Vec<String> {
    let retries = policy.attempts.saturating_sub(1);
    if !single_topic {
        return retry_topics(topic, policy.attempts);
    }
    let pauses: Vec<Duration> = (1..=retries).map(|n| policy.pause(n, 1.0)).collect();
    // The trailing run of equal pauses shares the topic of its first retry.
    let Some(mut first_of_run) = pauses.len().checked_sub(1) else {
        return Vec::new();
    };
    while first_of_run > 0 && pauses[first_of_run - 1] == pauses[first_of_run] {
        first_of_run -= 1;
    }
    // Spring shares a topic only between two or more retries: one retry keeps `-retry-0`.
    if first_of_run == 0 && pauses.len() > 1 {
        return vec![format!("{topic}-retry"); pauses.len()];
    }
    (0..pauses.len())
        .map(|i| format!("{topic}-retry-{}", i.min(first_of_run)))
        .collect()
}

/// The dead-letter topic behind `topic`'s retry topics.
pub fn retry_dlt(topic: &str) -> String {
    format!("{topic}-dlt")
}

/// A big-endian integer header of 1 to 8 bytes (Spring's encodings over its versions).
pub(crate) fn be_int(value: &[u8]) -> Option<i64> {
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    // Sign-extend from the first byte, as Java's BigInteger does.
    let mut n: i64 = if value[0] & 0x80 != 0 { -1 } else { 0 };
    for b in value {
        n = (n << 8) | i64::from(*b);
    }
    Some(n)
}

/// The attempt `record` is on: 1 on the main topic, the header's value on a retry topic.
pub(crate) fn attempt_of(record: &ConsumerRecord) -> u32 {
    record
        .headers()
        .last(headers::ATTEMPTS)
        .flatten()
        .and_then(be_int)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1)
        .max(1)
}

/// How long until `record` is due (`None`: due now, or no retry header).
pub(crate) fn not_due_for(record: &ConsumerRecord, now_ms: i64) -> Option<Duration> {
    let due = record
        .headers()
        .last(headers::BACKOFF_TIMESTAMP)
        .flatten()
        .and_then(be_int)?;
    (due > now_ms).then(|| Duration::from_millis((due - now_ms) as u64))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The recoverer of a listener with retry topics: to the next retry topic, or to the
/// dead-letter topic. The runtime sets it up for `retry-topic.enabled`; build one by hand to
/// wrap it in a recoverer of your own.
#[derive(Debug)]
pub struct RetryTopicRecoverer {
    publisher: DeadLetterPublisher,
    /// Calls in all, the first on the main topic included.
    attempts: u32,
    /// The pauses: after call n, `pause(n)`.
    backoff: RetryPolicy,
    /// The main topics (a record's place in the chain comes from its topic's name, not from
    /// headers it may have brought along).
    main_topics: Vec<String>,
    /// Retries with equal pauses share a topic (see [`retry_chain`]).
    single_topic: bool,
}

impl RetryTopicRecoverer {
    /// Publishes with `producer` for consumer group `group_id`: `attempts` calls in all, the
    /// copy after call n due `backoff.pause(n)` later.
    pub fn new(
        producer: ProducerTemplate,
        group_id: &str,
        attempts: u32,
        backoff: RetryPolicy,
    ) -> Self {
        RetryTopicRecoverer {
            publisher: DeadLetterPublisher::new(producer, group_id),
            attempts: attempts.max(1),
            backoff: RetryPolicy {
                attempts: attempts.max(1),
                ..backoff
            },
            main_topics: Vec::new(),
            single_topic: false,
        }
    }

    /// Retries that wait as long as the one before them reuse its topic (Spring's
    /// `SameIntervalTopicReuseStrategy.SINGLE_TOPIC`; see [`retry_chain`]).
    pub fn single_topic_for_same_intervals(mut self, single: bool) -> Self {
        self.single_topic = single;
        self
    }

    /// The topic of each retry of `main`, in order.
    fn chain(&self, main: &str) -> Vec<String> {
        retry_chain(main, &self.backoff, self.single_topic)
    }

    /// The listener's main topics. A record on one of them is on its first attempt, whatever
    /// headers it carries; one on `<main>-retry-<n>` on attempt `n + 2`. Without them, the
    /// attempt and main topic come from the record's headers.
    pub fn for_topics(mut self, main_topics: Vec<String>) -> Self {
        self.main_topics = main_topics;
        self
    }

    /// The record's main topic and attempt.
    fn place(&self, record: &ConsumerRecord) -> (String, u32) {
        let topic = record.topic();
        if self.main_topics.iter().any(|t| t == topic) {
            return (topic.to_owned(), 1);
        }
        for main in &self.main_topics {
            let chain = self.chain(main);
            let Some(first) = chain.iter().position(|t| t == topic) else {
                continue;
            };
            let last = chain.iter().rposition(|t| t == topic).unwrap_or(first);
            // A topic of one retry says which; a shared one leaves it to the copy's header
            // (written by the recoverer that sent it there), within the topic's range.
            let attempt = if first == last {
                first as u32 + 2
            } else {
                attempt_of(record).clamp(first as u32 + 2, last as u32 + 2)
            };
            return (main.clone(), attempt);
        }
        let base = record
            .headers()
            .last_str(dlt::ORIGINAL_TOPIC)
            .map_or_else(|| topic.to_owned(), str::to_owned);
        (base, attempt_of(record))
    }

    async fn forward(&self, record: &ConsumerRecord, failure: &Failure) -> Result<(), BoxError> {
        let (base, attempt) = self.place(record);
        let retry = !matches!(failure, Failure::Decode(_) | Failure::NotRetryable { .. })
            && attempt < self.attempts;
        // The copy after call n goes to the chain's topic n - 1.
        let topic = match self.chain(&base).get(attempt as usize - 1) {
            Some(next) if retry => next.clone(),
            _ => retry_dlt(&base),
        };
        let mut letter = self.publisher.dead_letter(record, failure, topic);
        let original_ts = record
            .headers()
            .last(headers::ORIGINAL_TIMESTAMP)
            .flatten()
            .and_then(be_int)
            .or(record.timestamp())
            .unwrap_or(-1);
        letter.headers.retain(|(name, _)| {
            name != headers::ATTEMPTS
                && name != headers::BACKOFF_TIMESTAMP
                && name != headers::ORIGINAL_TIMESTAMP
        });
        let next = attempt + 1;
        letter
            .headers
            .push((headers::ATTEMPTS.into(), Some(next.to_be_bytes().to_vec())));
        let due = now_ms() + self.backoff.pause(attempt, 0.0).as_millis() as i64;
        letter.headers.push((
            headers::BACKOFF_TIMESTAMP.into(),
            Some(due.to_be_bytes().to_vec()),
        ));
        letter.headers.push((
            headers::ORIGINAL_TIMESTAMP.into(),
            Some(original_ts.to_be_bytes().to_vec()),
        ));
        self.publisher.send_letter(record, failure, letter).await
    }
}

impl Recoverer for RetryTopicRecoverer {
    fn recover<'a>(
        &'a self,
        record: &'a ConsumerRecord,
        failure: &'a Failure,
    ) -> RecoverFuture<'a> {
        Box::pin(self.forward(record, failure))
    }

    fn kind(&self) -> &'static str {
        "retry_topic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_decode_in_every_width_spring_wrote() {
        assert_eq!(be_int(&[3]), Some(3));
        assert_eq!(be_int(&3u32.to_be_bytes()), Some(3));
        assert_eq!(
            be_int(&1_700_000_000_123i64.to_be_bytes()),
            Some(1_700_000_000_123)
        );
        // BigInteger.toByteArray() of a millisecond timestamp: minimal length.
        assert_eq!(
            be_int(&[0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]),
            Some(0x018b_cfe5_6800)
        );
        assert_eq!(be_int(&[]), None);
    }

    #[test]
    fn a_single_topic_serves_retries_with_equal_delays() {
        let fixed = RetryPolicy::fixed(4, Duration::from_secs(1));
        assert_eq!(retry_chain("orders", &fixed, true), ["orders-retry"; 3]);
        assert_eq!(
            retry_chain("orders", &fixed, false),
            retry_topics("orders", 4)
        );
        // 1 s, 2 s, 4 s, 5 s, 5 s: the two longest pauses share the fourth topic.
        let capped =
            RetryPolicy::exponential(6, Duration::from_secs(1), 2.0, Duration::from_secs(5));
        assert_eq!(
            retry_chain("orders", &capped, true),
            [
                "orders-retry-0",
                "orders-retry-1",
                "orders-retry-2",
                "orders-retry-3",
                "orders-retry-3"
            ]
        );
        // Growing pauses: a topic each, as without reuse.
        let growing =
            RetryPolicy::exponential(4, Duration::from_secs(1), 2.0, Duration::from_secs(60));
        assert_eq!(
            retry_chain("orders", &growing, true),
            retry_topics("orders", 4)
        );
        assert!(retry_chain("orders", &RetryPolicy::fixed(1, Duration::ZERO), true).is_empty());
        // One retry: nothing to share, so the indexed name.
        assert_eq!(
            retry_chain(
                "orders",
                &RetryPolicy::fixed(2, Duration::from_secs(1)),
                true
            ),
            ["orders-retry-0"]
        );
    }

    #[test]
    fn retry_topics_are_numbered_from_zero() {
        assert_eq!(
            retry_topics("orders", 3),
            ["orders-retry-0", "orders-retry-1"]
        );
        assert!(retry_topics("orders", 1).is_empty());
        assert_eq!(retry_dlt("orders"), "orders-dlt");
    }

    /// A producer that is never used to send (the tests only ask where a record goes).
    fn unreachable_producer() -> crate::ProducerTemplate {
        crate::ProducerTemplate::from_producer(
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .create()
                .expect("producer"),
            true,
        )
    }

    #[test]
    fn a_records_place_comes_from_its_topic_not_from_headers_it_brought() {
        let producer = unreachable_producer();
        let r = RetryTopicRecoverer::new(producer, "g", 3, RetryPolicy::default())
            .for_topics(vec!["orders".into()]);
        // A replayed dead letter of another application, with its headers.
        let foreign = ConsumerRecord::new("orders", 0, 7)
            .with_header(dlt::ORIGINAL_TOPIC, Some(b"payments".to_vec()))
            .with_header(headers::ATTEMPTS, Some(3u32.to_be_bytes().to_vec()));
        assert_eq!(r.place(&foreign), ("orders".to_owned(), 1));
        let copy = ConsumerRecord::new("orders-retry-1", 0, 0);
        assert_eq!(r.place(&copy), ("orders".to_owned(), 3));
    }

    #[test]
    fn on_a_shared_retry_topic_the_attempt_comes_from_the_copys_header_within_its_range() {
        let producer = unreachable_producer();
        let r = RetryTopicRecoverer::new(
            producer,
            "g",
            5,
            RetryPolicy::fixed(5, Duration::from_secs(1)),
        )
        .single_topic_for_same_intervals(true)
        .for_topics(vec!["orders".into()]);
        let at = |attempt: u32| {
            ConsumerRecord::new("orders-retry", 0, 0)
                .with_header(headers::ATTEMPTS, Some(attempt.to_be_bytes().to_vec()))
        };
        assert_eq!(r.place(&at(3)), ("orders".to_owned(), 3));
        assert_eq!(r.place(&at(5)), ("orders".to_owned(), 5));
        // Out of the topic's range (2..=5): clamped, never past the last attempt.
        assert_eq!(r.place(&at(1)), ("orders".to_owned(), 2));
        assert_eq!(r.place(&at(9)), ("orders".to_owned(), 5));
        assert_eq!(
            r.place(&ConsumerRecord::new("orders-retry", 0, 0)),
            ("orders".to_owned(), 2)
        );
    }

    #[test]
    fn the_attempt_comes_from_the_header() {
        let main = ConsumerRecord::new("t", 0, 0);
        assert_eq!(attempt_of(&main), 1);
        let copy = ConsumerRecord::new("t-retry-0", 0, 0)
            .with_header(headers::ATTEMPTS, Some(2u32.to_be_bytes().to_vec()))
            .with_header(
                headers::BACKOFF_TIMESTAMP,
                Some(5_000i64.to_be_bytes().to_vec()),
            );
        assert_eq!(attempt_of(&copy), 2);
        assert_eq!(not_due_for(&copy, 4_000), Some(Duration::from_secs(1)));
        assert_eq!(not_due_for(&copy, 5_000), None);
    }
}
