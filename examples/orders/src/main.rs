//! The orders service: consumes JSON orders from `orders` (group `orders`) and, for each,
//! produces `{"id": <id>, "status": "accepted"}` keyed by the order id to `orders.accepted`.
//!
//! ```sh
//! scripts/kafka-broker start
//! scripts/kafka-broker topics --create --topic orders --partitions 6
//! scripts/kafka-broker topics --create --topic orders.accepted --partitions 6
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run -p orders -- --config examples/orders/application.properties
//! ```
//!
//! Delivery reasoning: the handler awaits the broker's acknowledgement of its output
//! (`acks=all`) before returning `Ok`, and the container commits an order's offset only after
//! the handler returned. So every committed order has its acceptance on `orders.accepted`; a
//! crash can at worst repeat an acceptance (at-least-once), never lose one. A graceful stop
//! (SIGTERM) finishes in-flight orders, commits them and exits 0: nothing is repeated.

use std::sync::OnceLock;

use kafka_listener::{kafka_listener, Acknowledgment, BoxError, Json, ProducerTemplate};
use serde::{Deserialize, Serialize};

/// Output topic: `orders.accepted` (`ORDERS_ACCEPTED_TOPIC` overrides it, as `ORDERS_TOPIC`
/// overrides the input, so tests can run on topics of their own).
fn accepted_topic() -> &'static str {
    static TOPIC: OnceLock<String> = OnceLock::new();
    TOPIC.get_or_init(|| {
        std::env::var("ORDERS_ACCEPTED_TOPIC").unwrap_or_else(|_| "orders.accepted".to_owned())
    })
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // amount and customer are part of the contract, unused by this service
struct Order {
    id: String,
    amount_cents: i64,
    customer: String,
}

#[derive(Debug, Serialize)]
struct Accepted<'a> {
    id: &'a str,
    status: &'static str,
}

/// Accepts an order. A send failure is returned as an error, so the record is retried and
/// never committed without its acceptance written. The explicit acknowledgement matters only
/// when the ack mode is `manual` or `manual_immediate` (`--set kafka.listener.ack-mode=manual`);
/// in the other modes the container commits on its own schedule.
#[kafka_listener(id = "orders", topics = "${ORDERS_TOPIC:orders}", group_id = "orders")]
async fn accept_order(
    order: Json<Order>,
    producer: ProducerTemplate,
    ack: Acknowledgment,
) -> Result<(), BoxError> {
    let accepted = Accepted {
        id: &order.id,
        status: "accepted",
    };
    producer
        .send_json(accepted_topic(), &order.id, &accepted)
        .await?;
    ack.acknowledge();
    Ok(())
}

fn main() -> std::process::ExitCode {
    kafka_listener::run()
}
