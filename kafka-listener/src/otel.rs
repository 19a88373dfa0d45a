//! OpenTelemetry (the `opentelemetry` cargo feature): a record's W3C `traceparent` header
//! becomes the parent of its span, so a trace started by the producer continues through the
//! handler. The application exports spans with `tracing-opentelemetry`'s layer in its own
//! subscriber; with the record span's level off, nothing is parsed.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::ConsumerRecord;

/// The header W3C Trace Context names.
const TRACEPARENT: &str = "traceparent";

pub(crate) fn set_parent(span: &tracing::Span, record: &ConsumerRecord) {
    if span.is_disabled() {
        return;
    }
    let Some(parent) = record
        .headers()
        .last_str(TRACEPARENT)
        .and_then(parse_traceparent)
    else {
        return;
    };
    let cx = opentelemetry::Context::new().with_remote_span_context(parent);
    let _ = span.set_parent(cx);
}

/// `version-traceid-parentid-flags`, lowercase hex (W3C Trace Context level 1); a version
/// other than `00` may carry more fields after these, `ff` is invalid, all-zero ids too.
pub(crate) fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_w3c_defines_it() {
        let sc = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid");
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex")
        );
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        // A later version may add fields.
        assert!(
            parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-x")
                .is_some()
        );
    }
}
