//! Extractors: the types a `#[kafka_listener]` function may take as arguments.
//!
//! | argument | gives | on a tombstone (null value) |
//! |---|---|---|
//! | `Json<T>` | the value decoded as JSON by serde | decode error |
//! | `String` | the value as UTF-8 | decode error |
//! | `Vec<u8>`, `Bytes` | the raw value | decode error |
//! | `Option<P>` (P one of the above) | `Some(payload)` | `None` |
//! | `Key<K>` (K one of the above, or `Option<_>`) | the key, decoded | - |
//! | `Headers` | the headers | - |
//! | `RecordMeta` | topic, partition, offset, timestamp, key | - |
//! | `ConsumerRecord` | the whole record | - |
//! | `ProducerTemplate` | the shared producer, to send records | - |
//!
//! A batch listener (`#[kafka_listener(batch, ...)]`) takes `Vec<E>` of any of these.
//!
//! A record whose value or key cannot be decoded never reaches the handler: it goes to the
//! error path (logged and skipped, without retries).

use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{ConsumerRecord, FromBatch, Headers, ListenerContext, RecordMeta};
use crate::{BoxError, ProducerTemplate};

/// Why a record could not be turned into a handler's arguments.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The value is null (a tombstone) but the argument needs one; take `Option<_>` to accept tombstones.
    #[error("the record's value is null (a tombstone); take Option<_> to accept tombstones")]
    NullValue,
    /// The key is null but the argument needs one; take `Key<Option<_>>` to accept null keys.
    #[error("the record's key is null; take Key<Option<_>> to accept null keys")]
    NullKey,
    /// The bytes could not be decoded into the argument's type.
    #[error("cannot decode the record's {part} as {target}: {source}")]
    Decode {
        /// `"value"` or `"key"`.
        part: &'static str,
        /// The target type's name.
        target: &'static str,
        /// The decoder's error.
        #[source]
        source: BoxError,
    },
    /// The argument needs something this listener does not have (a producer, say).
    #[error("{0}")]
    Unavailable(&'static str),
}

impl ExtractError {
    /// Whether the record itself is at fault (its bytes cannot become the argument): such a
    /// record goes to the error path without retries. [`ExtractError::Unavailable`] is not the
    /// record's fault (the application is not running, a producer is not configured): the
    /// record is not skipped, the container retries it until the cause goes or the partition
    /// is stopped, and it stays uncommitted.
    pub fn is_record_fault(&self) -> bool {
        !matches!(self, ExtractError::Unavailable(_))
    }
}

/// Turns a record into one handler argument.
///
/// Implemented by every extractor: `Json<T>`, `String`, `Vec<u8>`, `Bytes`, `Option<_>` (tombstones),
/// `Key<K>`, `Headers`, `RecordMeta`, `ConsumerRecord` and `ProducerTemplate`. A record that cannot
/// be decoded never reaches the handler: it goes to the error path without retries.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a #[kafka_listener] function",
    label = "not an extractor",
    note = "arguments are extractors: Json<T>, String, Vec<u8>, Bytes, Option<_> (tombstones), Key<K>, Headers, RecordMeta, ConsumerRecord, ProducerTemplate, Acknowledgment, Seeker, ListenerRegistry, DeliveryAttempt",
    note = "a batch listener takes Vec<_> of those"
)]
pub trait FromRecord: Sized {
    /// Extracts the argument from the record.
    fn from_record(record: &ConsumerRecord, cx: &ListenerContext) -> Result<Self, ExtractError>;
}

/// Decodes a record's value or key. Implemented by the payload types:
/// `Json<T>`, `String`, `Vec<u8>`, `Bytes`, and `Option<P>` of those.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a payload type",
    label = "cannot decode a record's value or key into this",
    note = "payload types are Json<T>, String, Vec<u8>, Bytes, and Option<_> of them"
)]
pub trait FromPayload: Sized {
    /// Decodes `bytes` (`None` when null). `part` is `"value"` or `"key"`, for messages.
    fn from_payload(bytes: Option<&Bytes>, part: &'static str) -> Result<Self, ExtractError>;
}

fn required<'a>(bytes: Option<&'a Bytes>, part: &'static str) -> Result<&'a Bytes, ExtractError> {
    bytes.ok_or(if part == "key" {
        ExtractError::NullKey
    } else {
        ExtractError::NullValue
    })
}

impl FromPayload for Bytes {
    fn from_payload(bytes: Option<&Bytes>, part: &'static str) -> Result<Self, ExtractError> {
        required(bytes, part).cloned()
    }
}

impl FromPayload for Vec<u8> {
    fn from_payload(bytes: Option<&Bytes>, part: &'static str) -> Result<Self, ExtractError> {
        required(bytes, part).map(|b| b.to_vec())
    }
}

impl FromPayload for String {
    fn from_payload(bytes: Option<&Bytes>, part: &'static str) -> Result<Self, ExtractError> {
        let bytes = required(bytes, part)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| ExtractError::Decode {
                part,
                target: "String (UTF-8)",
                source: e.into(),
            })
    }
}

impl<T: DeserializeOwned> FromPayload for Json<T> {
    fn from_payload(bytes: Option<&Bytes>, part: &'static str) -> Result<Self, ExtractError> {
        let bytes = required(bytes, part)?;
        serde_json::from_slice(bytes)
            .map(Json)
            .map_err(|e| ExtractError::Decode {
                part,
                target: std::any::type_name::<T>(),
                source: e.into(),
            })
    }
}

impl<P: FromPayload> FromPayload for Option<P> {
    fn from_payload(bytes: Option<&Bytes>, part: &'static str) -> Result<Self, ExtractError> {
        match bytes {
            None => Ok(None),
            Some(_) => P::from_payload(bytes, part).map(Some),
        }
    }
}

macro_rules! payload_extractor {
    ($($ty:ty),* $(,)?) => {$(
        impl FromRecord for $ty {
            fn from_record(record: &ConsumerRecord, _: &ListenerContext) -> Result<Self, ExtractError> {
                <$ty as FromPayload>::from_payload(record.value.as_ref(), "value")
            }
        }
    )*};
}

payload_extractor!(Bytes, Vec<u8>, String);

impl<T: DeserializeOwned> FromRecord for Json<T> {
    fn from_record(record: &ConsumerRecord, _: &ListenerContext) -> Result<Self, ExtractError> {
        Json::from_payload(record.value.as_ref(), "value")
    }
}

impl<P: FromPayload> FromRecord for Option<P> {
    fn from_record(record: &ConsumerRecord, _: &ListenerContext) -> Result<Self, ExtractError> {
        Option::from_payload(record.value.as_ref(), "value")
    }
}

impl<K: FromPayload> FromRecord for Key<K> {
    fn from_record(record: &ConsumerRecord, _: &ListenerContext) -> Result<Self, ExtractError> {
        K::from_payload(record.key.as_ref(), "key").map(Key)
    }
}

impl FromRecord for Headers {
    fn from_record(record: &ConsumerRecord, _: &ListenerContext) -> Result<Self, ExtractError> {
        Ok(record.headers.clone())
    }
}

impl FromRecord for RecordMeta {
    fn from_record(record: &ConsumerRecord, _: &ListenerContext) -> Result<Self, ExtractError> {
        Ok(record.meta())
    }
}

/// The delivery attempt of this call: 1 the first time a record (or batch) is handled, 2 on
/// the first retry, and so on (Spring's `@Header(KafkaHeaders.DELIVERY_ATTEMPT)`). Counted per
/// delivery: a record delivered again after a restart or rebalance starts at 1. In a batch
/// listener take it once, not in a `Vec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryAttempt(pub u32);

impl FromRecord for DeliveryAttempt {
    fn from_record(_: &ConsumerRecord, cx: &ListenerContext) -> Result<Self, ExtractError> {
        Ok(DeliveryAttempt(cx.attempt))
    }
}

impl FromBatch for DeliveryAttempt {
    fn from_batch(_: &[ConsumerRecord], _: &[usize], cx: &ListenerContext) -> Self {
        DeliveryAttempt(cx.attempt)
    }
}

impl FromRecord for ConsumerRecord {
    fn from_record(record: &ConsumerRecord, _: &ListenerContext) -> Result<Self, ExtractError> {
        Ok(record.clone())
    }
}

impl FromRecord for ProducerTemplate {
    fn from_record(_: &ConsumerRecord, cx: &ListenerContext) -> Result<Self, ExtractError> {
        cx.producer.clone().ok_or(ExtractError::Unavailable(
            "no ProducerTemplate is configured for this listener",
        ))
    }
}

/// A JSON value, decoded with serde. `Json<T>` derefs to `T`.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The record's key, decoded as `K` (`Key<String>`, `Key<Json<T>>`, `Key<Option<String>>` for
/// keys that may be null). `Key<K>` derefs to `K`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<K>(pub K);

impl<K> Key<K> {
    /// Unwraps the key.
    pub fn into_inner(self) -> K {
        self.0
    }
}

impl<K> Deref for Key<K> {
    type Target = K;
    fn deref(&self) -> &K {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> ListenerContext {
        ListenerContext::for_tests("t")
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Order {
        id: String,
    }

    #[test]
    fn json_decodes_value() {
        let r = ConsumerRecord::new("t", 0, 1).with_value(&br#"{"id":"a"}"#[..]);
        let Json(o) = Json::<Order>::from_record(&r, &cx()).expect("decodes");
        assert_eq!(o, Order { id: "a".into() });
    }

    #[test]
    fn bad_json_is_a_decode_error_naming_the_type() {
        let r = ConsumerRecord::new("t", 0, 1).with_value(&b"{nope"[..]);
        let err = Json::<Order>::from_record(&r, &cx()).expect_err("must fail");
        let text = err.to_string();
        assert!(
            text.contains("cannot decode the record's value as"),
            "{text}"
        );
        assert!(text.contains("Order"), "{text}");
    }

    #[test]
    fn tombstone_is_none_for_option_and_an_error_otherwise() {
        let r = ConsumerRecord::new("t", 0, 1);
        assert_eq!(
            Option::<String>::from_record(&r, &cx()).expect("option accepts null"),
            None
        );
        assert!(matches!(
            String::from_record(&r, &cx()),
            Err(ExtractError::NullValue)
        ));
        assert!(matches!(
            Json::<Order>::from_record(&r, &cx()),
            Err(ExtractError::NullValue)
        ));
    }

    #[test]
    fn invalid_utf8_is_a_decode_error() {
        let r = ConsumerRecord::new("t", 0, 1).with_value(vec![0xff, 0xfe]);
        assert!(matches!(
            String::from_record(&r, &cx()),
            Err(ExtractError::Decode { part: "value", .. })
        ));
    }

    #[test]
    fn key_extractor_decodes_key_and_reports_null_keys() {
        let r = ConsumerRecord::new("t", 0, 1).with_key(&b"k1"[..]);
        assert_eq!(Key::<String>::from_record(&r, &cx()).expect("key").0, "k1");
        let r = ConsumerRecord::new("t", 0, 1);
        assert!(matches!(
            Key::<String>::from_record(&r, &cx()),
            Err(ExtractError::NullKey)
        ));
        assert_eq!(
            Key::<Option<String>>::from_record(&r, &cx())
                .expect("null key ok")
                .0,
            None
        );
    }

    #[test]
    fn headers_last_wins_and_null_values_are_kept() {
        let r = ConsumerRecord::new("t", 0, 1)
            .with_header("a", Some(&b"1"[..]))
            .with_header("a", Some(&b"2"[..]))
            .with_header("n", None::<Bytes>);
        let h = Headers::from_record(&r, &cx()).expect("headers");
        assert_eq!(h.last_str("a"), Some("2"));
        assert_eq!(h.last("n"), Some(None));
        assert_eq!(h.last("missing"), None);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn meta_carries_position() {
        let r = ConsumerRecord::new("orders", 3, 42).with_timestamp(7);
        let m = RecordMeta::from_record(&r, &cx()).expect("meta");
        assert_eq!(
            (&*m.topic, m.partition, m.offset, m.timestamp),
            ("orders", 3, 42, Some(7))
        );
    }

    #[test]
    fn producer_extractor_without_producer_is_unavailable() {
        let r = ConsumerRecord::new("t", 0, 1);
        assert!(matches!(
            ProducerTemplate::from_record(&r, &cx()),
            Err(ExtractError::Unavailable(_))
        ));
    }
}
