//! kafka-listener: declarative Kafka listeners after Spring for Apache Kafka.

#[path = "config_stub.rs"]
pub mod config;
mod error;
mod listener;
mod producer;

pub use error::{BoxError, Error, Result};
pub use kafka_listener_macros::kafka_listener;
pub use listener::{
    find_listener, registered_listeners, BatchHandlerFn, BatchInvocation, ConsumerRecord,
    ExtractError, FromPayload, FromRecord, Handler, HandlerFuture, Headers, IntoHandlerResult,
    Json, Key, ListenerContext, ListenerDefinition, RecordHandlerFn, RecordMeta,
};
pub use producer::{ProducerRecord, ProducerTemplate, SendResult};

/// Re-exported for users who need librdkafka directly.
pub use rdkafka;

/// Not public API: what `#[kafka_listener]` expands to refers to these.
#[doc(hidden)]
pub mod __private {
    pub use crate::listener::{
        BatchInvocation, ConsumerRecord, ExtractError, FromRecord, Handler, HandlerFuture,
        IntoHandlerResult, ListenerContext, ListenerDefinition,
    };
    pub use inventory;
}
