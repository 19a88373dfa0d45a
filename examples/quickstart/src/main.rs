//! Quick start: one binary that produces its own sample events and consumes them with a
//! `#[kafka_listener]`, on the embedded (in-process, non-durable) Kafka cluster.
//!
//! ```sh
//! cargo run -p quickstart          # Ctrl-C to stop; it shuts down gracefully and exits 0
//! ```
//!
//! Its `application.properties` (in this folder; the README's command points at it) sets
//! `kafka.bootstrap-servers=embedded`. Point it at a real broker with
//! `--set kafka.bootstrap-servers=127.0.0.1:9092` after creating the topic `quickstart.events`
//! (topics are never auto-created).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_listener::{kafka_listener, BoxError, Json, ProducerTemplate, RecordMeta};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct PageView {
    user: String,
    page: String,
    seq: u64,
}

static SEEN: AtomicU64 = AtomicU64::new(0);

/// Consumes page views. The default ack mode (`batch`) commits a partition's offset once the
/// records it got in one poll cycle are finished.
#[kafka_listener(
    id = "page_views",
    topics = "quickstart.events",
    group_id = "quickstart"
)]
async fn on_page_view(view: Json<PageView>, meta: RecordMeta) -> Result<(), BoxError> {
    let n = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= 3 || n.is_multiple_of(200) {
        tracing::info!(
            consumed = n,
            seq = view.seq,
            user = %view.user,
            page = %view.page,
            partition = meta.partition,
            offset = meta.offset,
            "page view consumed"
        );
    }
    Ok(())
}

/// The outside world, simulated: a page view every 5 ms.
async fn produce_samples(producer: ProducerTemplate) {
    let pages = ["/", "/orders", "/cart", "/help"];
    for seq in 0u64.. {
        let view = PageView {
            user: format!("user-{}", seq % 7),
            page: pages[(seq % 4) as usize].to_owned(),
            seq,
        };
        if let Err(e) = producer
            .send_json("quickstart.events", &view.user, &view)
            .await
        {
            tracing::warn!(error = %e, "sample send failed");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() -> std::process::ExitCode {
    kafka_listener::run_with(produce_samples)
}
