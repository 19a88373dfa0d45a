//! Listener declarations: what `#[kafka_listener]` registers, the handler signature it erases
//! to, and the extractors handlers take.

mod extract;
mod record;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use extract::{DeliveryAttempt, ExtractError, FromPayload, FromRecord, Json, Key};
pub use record::{ConsumerRecord, Headers, RecordMeta};

use crate::{BoxError, ProducerTemplate};

/// The future a handler call returns once its arguments are extracted.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;

/// A record listener, erased: extracts the arguments from one record and starts the call.
///
/// Extraction is separate from the call so that a record that cannot be decoded goes to the
/// error path without retries, and so that a retry re-extracts from the same record.
pub type RecordHandlerFn =
    fn(&ConsumerRecord, &ListenerContext) -> Result<HandlerFuture, ExtractError>;

/// A batch listener, erased: extracts every record's arguments and starts one call with the
/// records that could be decoded.
pub type BatchHandlerFn = fn(&[ConsumerRecord], &ListenerContext) -> BatchInvocation;

/// The result of preparing a batch call.
pub struct BatchInvocation {
    /// The handler call, over the records that were decoded (`None` if none could be).
    pub future: Option<HandlerFuture>,
    /// Index (into the batch) and error of every record that could not be decoded; those go to
    /// the error path and are not part of the call.
    pub rejected: Vec<(usize, ExtractError)>,
}

impl std::fmt::Debug for BatchInvocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchInvocation")
            .field("future", &self.future.as_ref().map(|_| "…"))
            .field("rejected", &self.rejected)
            .finish()
    }
}

/// How a listener is called.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Handler {
    /// Once per record.
    Record(RecordHandlerFn),
    /// Once per batch (the records of one partition from one poll cycle).
    Batch(BatchHandlerFn),
}

impl Handler {
    /// Whether this is a batch listener.
    pub fn is_batch(&self) -> bool {
        matches!(self, Handler::Batch(_))
    }
}

/// A listener declaration, as `#[kafka_listener]` registers it (through `inventory`).
///
/// Values are kept as written in the attribute (after macro validation); `${placeholders}` are
/// resolved against the configuration when the listener starts. Embedders and tests can build
/// one by hand with [`ListenerDefinition::new`] and set the public fields (it is
/// `#[non_exhaustive]`, so new fields are not a breaking change).
#[derive(Clone)]
#[non_exhaustive]
pub struct ListenerDefinition {
    /// The listener id (default: the function's name). Used in config keys
    /// `kafka.listener.<id>.*`, logs and metrics.
    pub id: &'static str,
    /// Topics to subscribe to.
    pub topics: &'static [&'static str],
    /// Consumer group; default `kafka.consumer.group-id`, then the listener id.
    pub group_id: Option<&'static str>,
    /// Number of consumers, as written (`"3"` or a placeholder).
    pub concurrency: Option<&'static str>,
    /// Records of one partition handled at once, one per key, as written (`"16"` or a
    /// placeholder).
    pub concurrency_per_partition: Option<&'static str>,
    /// Ack mode, as written.
    pub ack_mode: Option<&'static str>,
    /// Whether the listener starts with the application, as written.
    pub auto_startup: Option<&'static str>,
    /// Consumer property overrides, `"key=value"` each, librdkafka names.
    pub properties: &'static [&'static str],
    /// Prefix for the consumers' `client.id`.
    pub client_id_prefix: Option<&'static str>,
    /// Subscribe to topics matching this regular expression (instead of `topics`).
    pub topic_pattern: Option<&'static str>,
    /// Explicit partitions, `"topic:partition"` or `"topic:partition@offset"`: assigned
    /// directly, without group rebalancing.
    pub partitions: &'static [&'static str],
    /// Rebalance callbacks.
    pub rebalance_listener: Option<&'static dyn crate::RebalanceListener>,
    /// Where the handler's return value is sent (`send_to`), as written.
    pub send_to: Option<&'static str>,
    /// Listener keys the attribute sets (`retry(...)`, `dead_letter`): the suffix after
    /// `kafka.listener.` and the value as written. `kafka.listener.<id>.<key>` wins over them,
    /// they win over the global `kafka.listener.<key>`.
    pub settings: &'static [(&'static str, &'static str)],
    /// The erased handler.
    pub handler: Handler,
    /// Where the listener is declared (`module::path::fn_name`), for messages.
    pub location: &'static str,
    /// The payload as the handler takes it (`Json<Order>`, `String`), as written; `None` when
    /// it takes none of those (the AsyncAPI document then describes no payload).
    pub payload_type: Option<&'static str>,
    /// The payload's JSON Schema, when its type implements `schemars::JsonSchema`.
    pub payload_schema: Option<fn() -> Option<serde_json::Value>>,
}

impl ListenerDefinition {
    /// A definition with only the required parts set, for tests and embedders.
    pub const fn new(id: &'static str, topics: &'static [&'static str], handler: Handler) -> Self {
        ListenerDefinition {
            id,
            topics,
            group_id: None,
            concurrency: None,
            concurrency_per_partition: None,
            ack_mode: None,
            auto_startup: None,
            properties: &[],
            client_id_prefix: None,
            topic_pattern: None,
            partitions: &[],
            rebalance_listener: None,
            send_to: None,
            settings: &[],
            handler,
            location: "",
            payload_type: None,
            payload_schema: None,
        }
    }
}

/// Finds a payload type's JSON Schema by autoref: [`ViaSchemars`] applies when the type
/// implements `schemars::JsonSchema`, [`NoSchema`] otherwise (for generated code).
#[doc(hidden)]
#[derive(Debug)]
pub struct SchemaProbe<T>(std::marker::PhantomData<T>);

impl<T> SchemaProbe<T> {
    /// A probe for `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        SchemaProbe(std::marker::PhantomData)
    }
}

/// The schema of a payload type that has one (draft-07, subschemas inlined, as AsyncAPI
/// messages embed it).
#[doc(hidden)]
pub trait ViaSchemars {
    /// The schema.
    fn payload_schema(&self) -> Option<serde_json::Value>;
}

impl<T: schemars::JsonSchema> ViaSchemars for SchemaProbe<T> {
    fn payload_schema(&self) -> Option<serde_json::Value> {
        let mut settings = schemars::generate::SchemaSettings::draft07();
        settings.inline_subschemas = true;
        let schema = settings.into_generator().into_root_schema_for::<T>();
        let mut value = serde_json::to_value(schema).ok()?;
        if let Some(map) = value.as_object_mut() {
            map.remove("$schema");
        }
        Some(value)
    }
}

/// The fallback: no schema.
#[doc(hidden)]
pub trait NoSchema {
    /// None.
    fn payload_schema(&self) -> Option<serde_json::Value> {
        None
    }
}

impl<T> NoSchema for &SchemaProbe<T> {}

impl std::fmt::Debug for ListenerDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerDefinition")
            .field("id", &self.id)
            .field("topics", &self.topics)
            .field("topic_pattern", &self.topic_pattern)
            .field("partitions", &self.partitions)
            .field("group_id", &self.group_id)
            .field("concurrency", &self.concurrency)
            .field("concurrency_per_partition", &self.concurrency_per_partition)
            .field("ack_mode", &self.ack_mode)
            .field("send_to", &self.send_to)
            .field("settings", &self.settings)
            .field("handler", &self.handler)
            .field("location", &self.location)
            .field("payload_type", &self.payload_type)
            .finish_non_exhaustive()
    }
}

inventory::collect!(ListenerDefinition);

/// Every listener registered with `#[kafka_listener]` in this binary, sorted by id.
///
/// Remember that a library crate's listeners are linked only if the binary references the
/// crate (`use my_listeners as _;`).
pub fn registered_listeners() -> Vec<&'static ListenerDefinition> {
    let mut all: Vec<_> = inventory::iter::<ListenerDefinition>.into_iter().collect();
    all.sort_by_key(|d| d.id);
    all
}

/// Looks up a registered listener by id.
pub fn find_listener(id: &str) -> Option<&'static ListenerDefinition> {
    inventory::iter::<ListenerDefinition>
        .into_iter()
        .find(|d| d.id == id)
}

/// What extractors may draw on besides the record itself.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    pub(crate) listener_id: Arc<str>,
    pub(crate) producer: Option<ProducerTemplate>,
    /// The partition being handled (set by the container for each partition worker; the
    /// container's `PartitionLink`, kept opaque here so this module does not depend on the
    /// container).
    pub(crate) partition: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// The application's containers (a `registry::WeakRegistry`, opaque for the same reason).
    pub(crate) registry: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// The delivery attempt of the call (1 for the first; see `DeliveryAttempt`).
    pub(crate) attempt: u32,
    /// The listener's `send_to` topic, placeholders resolved.
    pub(crate) send_to: Option<Arc<str>>,
}

impl ListenerContext {
    /// The listener's id.
    pub fn listener_id(&self) -> &str {
        &self.listener_id
    }

    /// A context for calling erased handlers in tests (of the macro's expansion).
    #[doc(hidden)]
    pub fn for_tests(listener_id: &str) -> Self {
        ListenerContext {
            listener_id: Arc::from(listener_id),
            producer: None,
            partition: None,
            registry: None,
            attempt: 1,
            send_to: None,
        }
    }
}

/// A batch-level argument of a batch listener: extracted once per batch, not per record
/// (`Acknowledgment`). Other batch arguments are `Vec<_>` of record extractors.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a batch #[kafka_listener] function",
    label = "not a batch extractor",
    note = "a batch listener takes Vec<_> of record extractors (Vec<Json<T>>, Vec<RecordMeta>, ...) or Acknowledgment, DeliveryAttempt"
)]
pub trait FromBatch: Sized {
    /// Builds the argument for the records at `accepted` (indexes into `records` of the records
    /// that were decoded and are passed to the handler).
    fn from_batch(records: &[ConsumerRecord], accepted: &[usize], cx: &ListenerContext) -> Self;
}

/// What a listener function may return: `()` or `Result<(), E>` with `E: Into<BoxError>`.
#[diagnostic::on_unimplemented(
    message = "a #[kafka_listener] function must return `()` or `Result<(), E>` where E converts into BoxError, not `{Self}`",
    label = "unsupported return type"
)]
pub trait IntoHandlerResult {
    /// Converts into the handler outcome.
    fn into_handler_result(self) -> Result<(), BoxError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}
