//! The ProducerTemplate's edges without a broker: a full buffer fails after max.block.ms with
//! a clear error (never an unbounded queue), and send_default needs a default topic.

use std::time::{Duration, Instant};

use kafka_listener::{Application, Error};
use kafka_listener_tests::*;

/// An application without listeners whose producer points at a port nobody listens on.
fn unreachable() -> kafka_listener::ApplicationBuilder {
    Application::builder()
        .only(Vec::<String>::new())
        .env(Vec::new())
        .set("kafka.bootstrap-servers", "127.0.0.1:1")
        .set("kafka.producer.properties.queue.buffering.max.messages", 1)
        .set("kafka.producer.properties.max.block.ms", 300)
        // Shutdown would otherwise wait the shutdown timeout for records that cannot go.
        .set("kafka.template.close-timeout", "200ms")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_fails_the_send_after_max_block_ms() {
    init_logging();
    let app = unreachable()
        .start()
        .await
        .expect("start without listeners");
    let producer = app.producer().clone();
    // The first record takes the buffer's one place (it can never be delivered).
    let first = tokio::spawn({
        let p = producer.clone();
        async move { p.send("t", "k", "v1").await }
    });
    wait_until(Duration::from_secs(5), "the first record queued", || {
        producer.in_flight() == 1
    })
    .await;
    let started = Instant::now();
    let second = producer.send("t", "k", "v2").await;
    let waited = started.elapsed();
    match second {
        Err(Error::ProducerBufferFull { topic, waited: w }) => {
            assert_eq!(topic, "t");
            assert_eq!(w, Duration::from_millis(300));
        }
        other => panic!("expected ProducerBufferFull, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "waited {waited:?} for max.block.ms = 300"
    );
    let message = Error::ProducerBufferFull {
        topic: "t".into(),
        waited: Duration::from_millis(300),
    }
    .to_string();
    assert!(message.contains("max.block.ms"), "{message}");
    first.abort();
    drop(producer);
    let started = Instant::now();
    let report = app.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "kafka.template.close-timeout bounds the flush: {report}"
    );
    assert_eq!(
        report.unflushed, 1,
        "the record that could not go is reported: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_default_needs_a_default_topic_and_max_block_needs_a_number() {
    init_logging();
    let app = unreachable()
        .start()
        .await
        .expect("start without listeners");
    let error = app
        .producer()
        .send_default("k", "v")
        .await
        .expect_err("no default topic");
    assert!(matches!(error, Error::NoDefaultTopic), "{error}");
    assert!(error.to_string().contains("kafka.template.default-topic"));
    let _ = app.shutdown().await;

    let error = start_error(
        unreachable().set("kafka.producer.properties.max.block.ms", "soon"),
        "max.block.ms must be milliseconds",
    )
    .await;
    assert!(
        error.contains("kafka.producer.properties.max.block.ms") && error.contains("milliseconds"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_default_goes_to_the_default_topic() {
    init_logging();
    let app = Application::builder()
        .only(Vec::<String>::new())
        .env(Vec::new())
        .set("kafka.bootstrap-servers", "embedded")
        .set("kafka.template.default-topic", "defaults")
        .set("kafka.producer.linger", "1ms")
        .set("kafka.template.close-timeout", "2s")
        .start()
        .await
        .expect("start on the embedded cluster");
    let cluster = app.embedded().expect("embedded");
    cluster.create_topic("defaults", 1).expect("topic");
    let at = app
        .producer()
        .send_default("k", "v")
        .await
        .expect("delivered");
    assert_eq!((at.partition, at.offset), (0, 0));
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
}
