//! Forwarding: `#[kafka_listener(send_to = "topic")]` sends what the handler returns
//! (Spring's `@SendTo`).
//!
//! The handler's return value becomes zero or more records: `Json<T>`, `String`, `Vec<u8>` or
//! `Bytes` for one record keyed like the input, `Option<_>` to send nothing, `Vec<_>` for
//! several (in order), and a [`ProducerRecord`] for full control (its topic, if empty, is the
//! `send_to` topic). Every forward is awaited until the broker acknowledged it, and only then
//! is the input finished: its offset is committed after its forwards, in every ack mode. In
//! the manual modes the forwards acknowledge the input (a `send_to` listener does not take an
//! `Acknowledgment`). A forward that fails fails the call: the record is retried (and may be
//! forwarded twice: at-least-once), then given to the recoverer.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::listener::{ExtractError, FromRecord, ListenerContext};
use crate::{Acknowledgment, BoxError, ConsumerRecord, Json, ProducerRecord, ProducerTemplate};

/// The records a `send_to` handler's return value becomes; see [`IntoForwards`].
#[derive(Debug, Default)]
pub struct Forwards {
    items: Vec<Forward>,
}

#[derive(Debug)]
enum Forward {
    /// A value, keyed like the input, to the `send_to` topic.
    Value(Vec<u8>),
    /// A record as the handler built it.
    Record(ProducerRecord),
}

impl Forwards {
    /// Adds a value, keyed like the input, for the `send_to` topic.
    pub fn value(&mut self, bytes: impl Into<Vec<u8>>) {
        self.items.push(Forward::Value(bytes.into()));
    }

    /// Adds a record as built (an empty topic means the `send_to` topic).
    pub fn record(&mut self, record: ProducerRecord) {
        self.items.push(Forward::Record(record));
    }

    /// Number of records to send.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is to be sent.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What a `send_to` handler may return (inside `Result<_, E>` or on its own).
#[diagnostic::on_unimplemented(
    message = "a #[kafka_listener(send_to = ...)] function cannot forward `{Self}`",
    label = "not something to forward",
    note = "return Json<T>, String, Vec<u8>, Bytes, ProducerRecord, Option<_> or Vec<_> of those (or Result<_, E> of them)"
)]
pub trait IntoForwards {
    /// Adds the records this value becomes.
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError>;
}

impl IntoForwards for () {
    fn into_forwards(self, _: &mut Forwards) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<T: Serialize> IntoForwards for Json<T> {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        out.value(serde_json::to_vec(&self.0)?);
        Ok(())
    }
}

impl IntoForwards for String {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        out.value(self.into_bytes());
        Ok(())
    }
}

impl IntoForwards for Vec<u8> {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        out.value(self);
        Ok(())
    }
}

impl IntoForwards for Bytes {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        out.value(self.to_vec());
        Ok(())
    }
}

impl IntoForwards for ProducerRecord {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        out.record(self);
        Ok(())
    }
}

impl<T: IntoForwards> IntoForwards for Option<T> {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        self.map_or(Ok(()), |v| v.into_forwards(out))
    }
}

impl<T: IntoForwards> IntoForwards for Vec<Json<T>>
where
    Json<T>: IntoForwards,
{
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        self.into_iter().try_for_each(|v| v.into_forwards(out))
    }
}

impl IntoForwards for Vec<String> {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        self.into_iter().try_for_each(|v| v.into_forwards(out))
    }
}

impl IntoForwards for Vec<ProducerRecord> {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        self.into_iter().try_for_each(|v| v.into_forwards(out))
    }
}

impl IntoForwards for Vec<Vec<u8>> {
    fn into_forwards(self, out: &mut Forwards) -> Result<(), BoxError> {
        self.into_iter().try_for_each(|v| v.into_forwards(out))
    }
}

/// A `send_to` handler's return type: `Result<T, E>` or `T`, with `T: IntoForwards`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a #[kafka_listener(send_to = ...)] function cannot return `{Self}`",
    label = "nothing to forward",
    note = "return Json<T>, String, Vec<u8>, Bytes, ProducerRecord, Option<_> or Vec<_> of those, or Result<_, E> of them with E converting into BoxError"
)]
pub trait IntoForwardResult {
    /// The records to send, or the handler's error.
    fn into_forward_result(self) -> Result<Forwards, BoxError>;
}

impl<T: IntoForwards, E: Into<BoxError>> IntoForwardResult for Result<T, E> {
    fn into_forward_result(self) -> Result<Forwards, BoxError> {
        let mut out = Forwards::default();
        self.map_err(Into::into)?.into_forwards(&mut out)?;
        Ok(out)
    }
}

impl<T: IntoForwards> IntoForwardResult for T {
    fn into_forward_result(self) -> Result<Forwards, BoxError> {
        let mut out = Forwards::default();
        self.into_forwards(&mut out)?;
        Ok(out)
    }
}

/// What generated code of a `send_to` listener needs after the call: where to send, the input's
/// key, and the input's acknowledgment (manual modes).
#[doc(hidden)]
#[derive(Debug)]
pub struct Forwarder {
    producer: ProducerTemplate,
    topic: Arc<str>,
    key: Option<Bytes>,
    ack: Acknowledgment,
}

impl Forwarder {
    /// For `record`; `declared` is the attribute's `send_to` (the runtime's resolved value,
    /// in the context, wins).
    pub fn new(
        record: &ConsumerRecord,
        cx: &ListenerContext,
        declared: &'static str,
    ) -> Result<Self, ExtractError> {
        let producer = ProducerTemplate::from_record(record, cx)?;
        let topic = match &cx.send_to {
            Some(topic) => Arc::clone(topic),
            None if !declared.contains("${") => Arc::from(declared),
            None => {
                return Err(ExtractError::Unavailable(
                    "the send_to topic has placeholders, resolved only when the application starts the listener",
                ))
            }
        };
        Ok(Forwarder {
            producer,
            topic,
            key: record.key.clone(),
            ack: Acknowledgment::from_record(record, cx)?,
        })
    }

    /// Sends the forwards and waits for every acknowledgement; then acknowledges the input.
    pub async fn forward(self, result: Result<Forwards, BoxError>) -> Result<(), BoxError> {
        let forwards = result?;
        let sends = forwards.items.into_iter().map(|item| {
            let record = match item {
                Forward::Value(value) => ProducerRecord {
                    topic: self.topic.to_string(),
                    key: self.key.as_ref().map(|k| k.to_vec()),
                    value: Some(value),
                    ..ProducerRecord::default()
                },
                Forward::Record(mut record) => {
                    if record.topic.is_empty() {
                        record.topic = self.topic.to_string();
                    }
                    record
                }
            };
            self.producer.send_record(record)
        });
        // Enqueued in order (each future enqueues on its first poll, and join_all polls them
        // in order); with the idempotent producer they are written in that order.
        for result in futures::future::join_all(sends).await {
            result?;
        }
        self.ack.acknowledge();
        Ok(())
    }
}
