//! Declarative Kafka listeners for Rust, after Spring for Apache Kafka's `@KafkaListener`.
//!
//! Annotate an `async fn`, build one service binary, point it at an `application.properties`:
//! the framework runs the consumers, poll loops, offset commits, rebalances, retries and a
//! graceful, lossless shutdown on SIGTERM.
//!
//! ```no_run
//! use kafka_listener::{kafka_listener, BoxError, Json, ProducerTemplate, RecordMeta};
//!
//! #[derive(serde::Deserialize)]
//! struct Order { id: String, amount_cents: i64 }
//!
//! /// Three consumers in group "billing"; default ack mode (batch).
//! #[kafka_listener(topics = "orders", group_id = "billing", concurrency = 3)]
//! async fn on_order(order: Json<Order>, meta: RecordMeta, producer: ProducerTemplate) -> Result<(), BoxError> {
//!     tracing::info!(id = %order.id, partition = meta.partition, "order received");
//!     producer.send("orders.billed", &order.id, "{}").await?;
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     kafka_listener::run() // --config FILE, --profile NAME, --set key=value, --help
//! }
//! ```
//!
//! # Pieces
//!
//! - [`kafka_listener`](macro@kafka_listener): the attribute; its docs list every key.
//! - Extractors (handler arguments): [`Json`], `String`, `Vec<u8>`, [`Bytes`], `Option<_>` for
//!   tombstones, [`Key`], [`Headers`], [`RecordMeta`], [`ConsumerRecord`], [`ProducerTemplate`];
//!   batch listeners take `Vec<_>` of them. See [`FromRecord`].
//! - [`run`] / [`run_with`]: the service entry point. [`Application`] is the same thing as a
//!   library call, for tests and embedders.
//! - [`config`]: `application.properties`, profiles, environment, `--set`; every key.
//! - [`ListenerContainer`]: one per listener, usable on its own with [`ContainerProperties`].
//! - [`ProducerTemplate`]: Spring's `KafkaTemplate`.
//! - [`Acknowledgment`], [`Seeker`], [`RebalanceListener`], [`ListenerRegistry`]: manual
//!   commits, seeks, rebalance callbacks and lifecycle.
//! - [`EmbeddedCluster`]: `kafka.bootstrap-servers=embedded`, librdkafka's in-process mock.
//!
//! # How records flow
//!
//! Each of a listener's `concurrency` consumers runs on its own OS thread, which owns the
//! librdkafka consumer and every call on it (polls, commits, pauses, the rebalance callback).
//! A poll cycle drains up to `kafka.consumer.max-poll-records` (500) records and hands them
//! over in one chunk per partition to that partition's worker, an async task: records of a
//! partition are handled one at a time in offset order, partitions in parallel. When a
//! partition's queue holds 4 × `max-poll-records` records (at least 2,000), the partition is
//! paused (the consumer keeps polling, so the group never sees it as dead, however slow the
//! handler) and resumed once three quarters drained; the wide margin matters because a pause
//! makes librdkafka drop the partition's prefetched records, which are fetched again. `enable.auto.commit` and `enable.auto.offset.store` are off: offsets
//! are committed explicitly, only for finished records.
//!
//! # Delivery semantics (at-least-once)
//!
//! In every mode a commit covers only finished records: a handler's `Ok` (or the recoverer
//! after its errors) finishes a record in the automatic modes; an acknowledgement does in the
//! manual ones. Commits carry explicit offsets and only move forward (except after a
//! deliberate seek backwards).
//!
//! | ack mode | commits | a crash (kill -9) redelivers | cost |
//! |---|---|---|---|
//! | `batch` (default) | a partition's offset once every record it received in one poll cycle is finished | the records in flight and those of the last poll cycle per partition (≤ `max-poll-records`) | one asynchronous commit per poll cycle |
//! | `record` | after each record (asynchronous, coalesced: one commit per poll-loop turn carries the latest finished offset of each partition) | the records in flight, plus those finished in the ~100 ms before the crash | the most commit requests |
//! | `time` | like `batch`, but at most once per `kafka.listener.ack-time` (5s) | up to `ack-time` worth of finished records | one commit per `ack-time` |
//! | `count` | like `batch`, once `kafka.listener.ack-count` (1) records finished since the last commit | up to `ack-count` finished records plus a poll cycle | one commit per `ack-count` records |
//! | `count_time` | whichever of `count` and `time` comes first | the smaller of the two | |
//! | `manual` | acknowledged records, at the end of the poll cycle's batch (or, for records acknowledged later from another task, when the partition has nothing in progress) | unacknowledged records and acknowledged ones since the last commit | one commit per poll cycle |
//! | `manual_immediate` | acknowledged records, on the consumer's next turn (within ~100 ms) | unacknowledged records and those acknowledged in the last ~100 ms | a commit per acknowledgement burst |
//!
//! In the manual modes the handler takes an [`Acknowledgment`]: commits never pass an
//! unacknowledged record, whatever order acknowledgements come in; a handler that returns
//! without acknowledging is logged once per partition. [`Acknowledgment::nack`] redelivers the
//! record (and the rest of its partition) after a delay, pausing only that partition.
//!
//! - **Graceful shutdown** (SIGTERM or SIGINT; a second signal forces exit): stop fetching →
//!   let each partition's record in hand finish within `kafka.listener.shutdown-timeout` (30s)
//!   → commit everything finished, synchronously → flush the producer → close the consumers
//!   (leave the group) → exit 0. Records fetched but not yet started are not handled and not
//!   committed: the next owner gets them, once. A handler still running at the deadline is cut
//!   off: its record is *not* committed and will be redelivered. One log line reports records
//!   finished, partitions committed, records redeliverable and unflushed sends. Exit code 3 if
//!   a final commit or the flush failed.
//! - **Errors**: a handler `Err` or panic is retried in place after
//!   `kafka.listener.retry.backoff.delay` (1s; growing by `retry.backoff.multiplier` up to
//!   `retry.backoff.max-delay`, optionally randomised by `retry.backoff.random`), up to
//!   `kafka.listener.retry.attempts` (10) attempts; only that partition waits. An error marked
//!   [`NonRetryable`] skips the retries; a handler sees its attempt as a [`DeliveryAttempt`].
//!   Then the record is logged (listener, topic, partition, offset, error) and skipped. A record that cannot be decoded into the handler's
//!   arguments skips the retries and is logged and skipped at once. A stop during the back-off
//!   leaves the record unfinished (redelivered).
//!
//! What can be duplicated: records in flight or finished-but-uncommitted when a process
//! crashes or a partition is lost, a record whose handler was cut off by a timeout, and
//! records after a `nack` or a seek backwards (on purpose). What can be lost: nothing, at the
//! default settings (`auto-offset-reset=earliest`, producer `acks=all` with idempotence).
//!
//! # Parallelism by key inside a partition
//!
//! `concurrency_per_partition = N` (or `kafka.listener.<id>.concurrency-per-partition`) lets a
//! record listener handle up to N records of one partition at once, one per key: records with
//! the same key run one after another in offset order, different keys alongside (their
//! futures are polled together on the partition's task, so it pays off for handlers that
//! await, not for ones that compute). Records without a key share one lane and keep their
//! order. What changes in the guarantees:
//!
//! - Commits stay gap-aware: the committed offset never passes the lowest unfinished record.
//!   Records of other keys finished above it are not remembered: after a crash or a lost
//!   partition they come again. A graceful stop, rebalance or shutdown first runs the waiting
//!   records below the highest one started, so within its deadline it duplicates nothing;
//!   past the deadline, or when the assignment was lost, nothing more starts. A record whose
//!   retries the stop cut short stays unfinished (with its key's later records), and what
//!   finished above it comes again.
//! - At most `max-poll-records` records of a partition are held, finished ones above the
//!   lowest unfinished included: one slow record holds that many behind it before the
//!   partition waits for it.
//! - A `nack` or a handler's seek stops the partition starting records, lets those in flight
//!   finish, and goes back no further than needed: a nack to the lowest unfinished record if
//!   that is below the nacked one, a seek of its own partition no further than the first
//!   unfinished record before the seeking one. Records of other keys above that point are
//!   delivered again.
//! - Batch listeners refuse it (a batch is a partition's records in one call).
//!
//! # Rebalances
//!
//! Each consumer runs librdkafka's rebalance callback on its own thread, so it can block
//! safely while handlers (on the async runtime) finish:
//!
//! 1. **Revoke**: the revoked partitions stop taking records; the record each is handling gets
//!    up to `kafka.listener.revoke-timeout` (15s, well below `max.poll.interval.ms`) to
//!    finish; the listener's [`RebalanceListener::on_partitions_revoked_before_commit`] runs;
//!    everything finished is committed **synchronously**; `on_partitions_revoked_after_commit`
//!    runs; only then does the consumer give the partitions up. The next owner starts exactly
//!    after the last finished record: a graceful rebalance duplicates nothing. A handler cut
//!    off by the revoke timeout is redelivered to the next owner.
//! 2. **Lost** (the consumer was evicted, its session expired): nothing is committed — the
//!    partitions already belong to someone else; `on_partitions_lost` runs.
//! 3. **Assign**: `on_partitions_assigned` may choose starting positions through an
//!    [`AssignmentSeeker`] (beginning, end, offset, timestamp, relative); they go into the
//!    assignment itself. New partitions start with clean offset tracking, paused if the
//!    container is paused.
//!
//! `partition.assignment.strategy=cooperative-sticky` (as a consumer property) works: only the
//! partitions that change owner are revoked; the others keep flowing. Slow handlers never
//! cause a rebalance: the consumer thread keeps polling (pausing a full partition instead), so
//! `max.poll.interval.ms` is not the limit on a handler's duration.
//!
//! # Seeks, patterns, partitions, lifecycle
//!
//! - A handler takes a [`Seeker`] to move its partition (the next record comes from the new
//!   position) or another partition of its consumer; [`ListenerContainer::seek`] does it from
//!   outside.
//! - `topic_pattern = "orders\\..*"` subscribes by regular expression; topics created later are
//!   picked up at the next metadata refresh. `partitions = ["orders:0", "orders:1@100"]`
//!   assigns partitions directly (no group rebalancing; commits still follow the ack mode).
//! - The [`ListenerRegistry`] (from [`Application::registry`], [`registry`] under [`run`], or
//!   as a handler argument) finds a container by listener id to `pause()`, `resume()`,
//!   `stop_gracefully()` or `start()` it. A paused container keeps polling, so it stays in the
//!   group. `auto_startup = false` listeners start only when asked.
//!
//! # Blocking and threads
//!
//! Handlers run on the tokio runtime that [`run`] builds (multi-threaded). librdkafka calls
//! that block (commits, metadata, close) never run on its worker threads.
//!
//! # A library crate of listeners
//!
//! Listeners register through `inventory`. A library crate whose only use is its
//! `#[kafka_listener]` functions is not linked unless the binary references it:
//! write `use my_listeners as _;` in the binary.

#![warn(missing_debug_implementations)]

pub mod config;
mod container;
pub mod dead_letter;
mod embedded;
mod error;
mod error_handler;
mod forward;
mod librdkafka_log;
mod listener;
mod management;
#[cfg(feature = "opentelemetry")]
mod otel;
mod producer;
mod registry;
pub mod retry_topic;
pub(crate) mod runtime;
pub mod telemetry;
pub mod testing;

pub use container::{
    Acknowledgment, AssignmentSeeker, CircuitBreakerPolicy, ContainerProperties, ContainerReport,
    ListenerContainer, PartitionAssignment, RebalanceListener, SeekTarget, Seeker, TopicPartition,
};
pub use dead_letter::DeadLetterPublisher;
pub use embedded::EmbeddedCluster;
pub use error::{BoxError, Error, Result};
pub use error_handler::{
    BatchListenerFailed, Failure, LogRecoverer, NonRetryable, RecoverFuture, Recoverer,
    RetryPolicy, RetryableClassifier,
};
pub use forward::{Forwards, IntoForwards};
pub use kafka_listener_macros::kafka_listener;
pub use listener::{
    find_listener, registered_listeners, ConsumerRecord, DeliveryAttempt, ExtractError, FromBatch,
    FromPayload, FromRecord, Headers, Json, Key, ListenerContext, ListenerDefinition, RecordMeta,
};

/// The ack modes (Spring's `ContainerProperties.AckMode`).
pub use config::AckMode;
pub use producer::{ProducerRecord, ProducerTemplate, SendResult};
pub use registry::{registry, ListenerRegistry};
pub use runtime::{run, run_with, Application, ApplicationBuilder, ShutdownReport};

/// Re-exported for users who need librdkafka directly.
pub use rdkafka;

/// Re-exported: the `Bytes` extractor is `bytes::Bytes`.
pub use bytes::Bytes;

/// Not public API: what `#[kafka_listener]` expands to refers to these (and tests of the
/// expansion). They may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::container::RebalanceListener;
    pub use crate::forward::{Forwarder, IntoForwardResult};
    pub use crate::listener::{
        BatchHandlerFn, BatchInvocation, ConsumerRecord, ExtractError, FromBatch, FromRecord,
        Handler, HandlerFuture, IntoHandlerResult, ListenerContext, ListenerDefinition, NoSchema,
        RecordHandlerFn, SchemaProbe, ViaSchemars,
    };
    pub use inventory;
    pub use serde_json;
}
