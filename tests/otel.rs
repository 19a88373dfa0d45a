//! With the `opentelemetry` feature, a record's W3C `traceparent` header becomes the parent
//! of its span: the handler's span joins the producer's trace (an in-memory exporter checks
//! the trace id and the parent span id). Its own binary: it installs the global subscriber.

use std::time::Duration;

use kafka_listener::testing::TestApp;
use kafka_listener::{kafka_listener, Key};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt as _;

#[kafka_listener(id = "traced", topics = "otel-traced")]
async fn traced(key: Key<String>) {
    tracing::info!(key = %key.as_str(), "handled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_header_becomes_the_record_spans_parent() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "warn,kafka_listener::record=debug",
        ))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let app = TestApp::builder(["traced"]).start().await.expect("starts");
    let record = kafka_listener::ProducerRecord::new("otel-traced", b"v".to_vec())
        .key("k1")
        .header(
            "traceparent",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_vec(),
        );
    app.producer().send_record(record).await.expect("sent");
    // And one without: its span starts a trace of its own.
    app.send("otel-traced", "k2", b"v").await.expect("sent");
    app.await_finished("traced", 2, Duration::from_secs(30))
        .await
        .expect("handled");
    app.shutdown().await;
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let records: Vec<_> = spans.iter().filter(|s| s.name == "record").collect();
    assert_eq!(records.len(), 2, "a span per record: {spans:?}");
    let trace = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex");
    let joined = records
        .iter()
        .find(|s| s.span_context.trace_id() == trace)
        .expect("the record with a traceparent joined its trace");
    assert_eq!(
        joined.parent_span_id,
        SpanId::from_hex("b7ad6b7169203331").expect("hex")
    );
    assert!(
        records.iter().any(|s| s.span_context.trace_id() != trace),
        "the other record has a trace of its own"
    );
}
