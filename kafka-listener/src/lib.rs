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
//! - [`EmbeddedCluster`]: `kafka.bootstrap-servers=embedded`, librdkafka's in-process mock.
//!
//! # How records flow
//!
//! Each of a listener's `concurrency` consumers runs on its own OS thread, which owns the
//! librdkafka consumer and every call on it (polls, commits, pauses, the rebalance callback).
//! A poll cycle drains up to `kafka.consumer.max-poll-records` (500) records and hands them
//! over in one chunk per partition to that partition's worker, an async task: records of a
//! partition are handled one at a time in offset order, partitions in parallel. When a
//! partition's queue holds `max-poll-records` records, the partition is paused (the consumer
//! keeps polling, so the group never sees it as dead, however slow the handler) and resumed
//! once half drained. `enable.auto.commit` and `enable.auto.offset.store` are off: offsets
//! are committed explicitly, only for finished records.
//!
//! # Delivery semantics (at-least-once)
//!
//! | ack mode | commits | a crash (kill -9) redelivers | cost |
//! |---|---|---|---|
//! | `batch` (default) | a partition's offset once every record it received in one poll cycle is finished | at most the records of the last poll cycle per partition (≤ `max-poll-records`) plus those in flight | one asynchronous commit per poll cycle |
//! | `record` | after each record (asynchronous, coalesced: one commit per poll-loop turn carries the latest finished offset of each partition) | records in flight, plus those finished since the last commit reached the broker | more commit requests |
//!
//! `time`, `count`, `count_time`, `manual` and `manual_immediate` are accepted by the
//! configuration and rejected at start-up for now ("not supported yet").
//!
//! In every mode a commit covers only finished records: a handler's `Ok` (or the recoverer
//! after its errors) finishes a record, nothing else does.
//!
//! - **Graceful shutdown** (SIGTERM or SIGINT; a second signal forces exit): stop fetching →
//!   let each partition's record in hand finish within `kafka.listener.shutdown-timeout` (30s)
//!   → commit everything finished, synchronously → flush the producer → close the consumers
//!   (leave the group) → exit 0. Records fetched but not yet started are not handled and not
//!   committed: the next owner gets them, once. A handler still running at the deadline is cut
//!   off: its record is *not* committed and will be redelivered. One log line reports records
//!   finished, partitions committed, records redeliverable and unflushed sends. Exit code 3 if
//!   a final commit or the flush failed.
//! - **Rebalance**: on revoke, the revoked partitions stop taking records, their in-flight
//!   handlers get up to `kafka.listener.revoke-timeout` (15s) to finish, what finished is
//!   committed synchronously inside the callback, and only then does the consumer give the
//!   partitions up. A lost assignment (session timed out) commits nothing. New partitions start
//!   with clean state.
//! - **Errors**: a handler `Err` or panic is retried in place after
//!   `kafka.listener.retry.backoff.delay` (1s), up to `kafka.listener.retry.attempts` (10)
//!   attempts; only that partition waits. Then the record is logged (listener, topic,
//!   partition, offset, error) and skipped. A record that cannot be decoded into the handler's
//!   arguments skips the retries and is logged and skipped at once. A stop during the back-off
//!   leaves the record unfinished (redelivered).
//!
//! What can be duplicated: records in flight or finished-but-uncommitted when a process
//! crashes or a partition is lost, and a record whose handler was cut off by a timeout.
//! What can be lost: nothing, at the default settings (`auto-offset-reset=earliest`,
//! producer `acks=all` with idempotence).
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

pub mod config;
mod container;
mod embedded;
mod error;
mod error_handler;
mod listener;
mod producer;
mod runtime;

pub use container::{
    Acknowledgment, AssignmentSeeker, ContainerProperties, ContainerReport, ListenerContainer,
    PartitionAssignment, RebalanceListener, SeekTarget, Seeker, TopicPartition,
};
pub use embedded::EmbeddedCluster;
pub use error::{BoxError, Error, Result};
pub use error_handler::RetryPolicy;
pub use kafka_listener_macros::kafka_listener;
pub use listener::{
    find_listener, registered_listeners, BatchHandlerFn, BatchInvocation, ConsumerRecord,
    ExtractError, FromBatch, FromPayload, FromRecord, Handler, HandlerFuture, Headers,
    IntoHandlerResult, Json, Key, ListenerContext, ListenerDefinition, RecordHandlerFn, RecordMeta,
};
pub use producer::{ProducerRecord, ProducerTemplate, SendResult};
pub use runtime::{
    registry, run, run_with, Application, ApplicationBuilder, ListenerRegistry, ShutdownReport,
};

/// Re-exported for users who need librdkafka directly.
pub use rdkafka;

/// Re-exported: the `Bytes` extractor is `bytes::Bytes`.
pub use bytes::Bytes;

/// Not public API: what `#[kafka_listener]` expands to refers to these.
#[doc(hidden)]
pub mod __private {
    pub use crate::container::RebalanceListener;
    pub use crate::listener::{
        BatchInvocation, ConsumerRecord, ExtractError, FromBatch, FromRecord, Handler,
        HandlerFuture, IntoHandlerResult, ListenerContext, ListenerDefinition,
    };
    pub use inventory;
}
