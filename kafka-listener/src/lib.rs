//! kafka-listener: declarative Kafka listeners after Spring for Apache Kafka.

pub mod config;
mod container;
mod embedded;
mod error;
mod error_handler;
mod listener;
mod producer;
mod runtime;

pub use container::{ContainerProperties, ContainerReport, ListenerContainer};
pub use embedded::EmbeddedCluster;
pub use error::{BoxError, Error, Result};
pub use error_handler::RetryPolicy;
pub use kafka_listener_macros::kafka_listener;
pub use listener::{
    find_listener, registered_listeners, BatchHandlerFn, BatchInvocation, ConsumerRecord,
    ExtractError, FromPayload, FromRecord, Handler, HandlerFuture, Headers, IntoHandlerResult,
    Json, Key, ListenerContext, ListenerDefinition, RecordHandlerFn, RecordMeta,
};
pub use producer::{ProducerRecord, ProducerTemplate, SendResult};
pub use runtime::{run, run_with, Application, ApplicationBuilder, ShutdownReport};

/// Re-exported for users who need librdkafka directly.
pub use rdkafka;

/// Re-exported: the `Bytes` extractor is `bytes::Bytes`.
pub use bytes::Bytes;

/// Not public API: what `#[kafka_listener]` expands to refers to these.
#[doc(hidden)]
pub mod __private {
    pub use crate::listener::{
        BatchInvocation, ConsumerRecord, ExtractError, FromRecord, Handler, HandlerFuture,
        IntoHandlerResult, ListenerContext, ListenerDefinition,
    };
    pub use inventory;
}
