//! Fast tests on the embedded mock cluster (no broker needed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_listener::{kafka_listener, Application, Json};
use kafka_listener_tests::*;

static HANDLED: AtomicU64 = AtomicU64::new(0);

#[derive(serde::Deserialize)]
struct Event {
    n: u64,
}

#[kafka_listener(id = "embedded_events", topics = "events", group_id = "embedded")]
async fn on_event(event: Json<Event>) {
    HANDLED.fetch_add(event.n.min(1), Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_cluster_delivers_produced_records_to_the_listener() {
    init_logging();
    let app = Application::builder()
        .only(["embedded_events"])
        .env(vec![("KL_TEST".into(), "1".into())])
        .set("kafka.bootstrap-servers", "embedded")
        .start()
        .await
        .expect("embedded app starts");
    for i in 0..200u64 {
        app.producer()
            .send_json("events", format!("k{i}"), &serde_json::json!({ "n": 1 }))
            .await
            .expect("send to the embedded cluster");
    }
    wait_until(Duration::from_secs(60), "200 events handled", || {
        HANDLED.load(Ordering::SeqCst) == 200
    })
    .await;
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.listeners.finished, 200);
}
