//! Health after a consumer died (its own test binary: a death is process-wide, and the
//! process is expected to exit after one). Liveness and readiness both go down at once.

use std::time::Duration;

use kafka_listener::{kafka_listener, Key};
use kafka_listener_tests::*;

#[kafka_listener(id = "mortal", topics = "mg-mortal", group_id = "mg-mortal")]
async fn mortal(key: Key<String>) {
    let _ = key;
}

async fn status(addr: std::net::SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(addr, path))
        .await
        .expect("http task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_and_readiness_go_down_when_a_consumer_dies() {
    init_logging();
    let app = embedded_app("mortal")
        .set("kafka.management.port", 0)
        .start()
        .await
        .expect("starts on the embedded cluster");
    let addr = app.management_address().expect("the endpoint runs");
    let mut ready = (0, String::new());
    for _ in 0..300 {
        ready = status(addr, "/health/ready").await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready.0, 200, "ready once in its group: {}", ready.1);
    assert_eq!(status(addr, "/health/live").await.0, 200);

    app.container("mortal")
        .expect("container")
        .inject_consumer_panic();
    let mut live = (200, String::new());
    for _ in 0..200 {
        live = status(addr, "/health/live").await;
        if live.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(live.0, 503, "liveness after the death: {}", live.1);
    assert!(live.1.contains("died"), "{}", live.1);
    let (code, body) = status(addr, "/health/ready").await;
    assert_eq!(code, 503, "{body}");
    let report = app.shutdown().await;
    assert_eq!(report.listeners.consumers_died, 1, "{report}");
}
