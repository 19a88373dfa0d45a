//! The orders service: consumes JSON orders from `orders` (group `orders`) and, for each valid
//! one, produces `{"id": <id>, "status": "accepted"}` keyed like the order to
//! `orders.accepted`. Orders that cannot be decoded, and orders with a negative
//! `amount_cents` (a validation error, not worth retrying), go to `orders.DLT` with Spring's
//! `kafka_dlt-*` headers (original topic, partition, offset, the error).
//!
//! ```sh
//! scripts/kafka-broker start
//! scripts/kafka-broker topics --create --topic orders --partitions 6
//! scripts/kafka-broker topics --create --topic orders.accepted --partitions 6
//! scripts/kafka-broker topics --create --topic orders.DLT --partitions 6
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 cargo run -p orders -- --config examples/orders/application.properties
//! ```
//!
//! Delivery reasoning: `send_to` sends the handler's return value and waits for the broker's
//! acknowledgement (`acks=all`) before the order counts as finished, and the container
//! commits an order's offset only after that; a dead letter likewise is acknowledged before
//! the offset moves past its order. So every committed order has its acceptance on
//! `orders.accepted` or its dead letter on `orders.DLT`; a crash can at worst repeat one
//! (at-least-once), never lose one. A graceful stop (SIGTERM) finishes in-flight orders,
//! commits them and exits 0: nothing is repeated. In the manual ack modes
//! (`--set kafka.listener.ack-mode=manual`) the forward acknowledges the order.

use kafka_listener::{kafka_listener, BoxError, Json, NonRetryable};
use serde::{Deserialize, Serialize};

/// An order, as the shop publishes it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)] // customer is part of the contract, unused by this service
struct Order {
    /// The order's id, also the record key.
    id: String,
    /// The amount in cents; negative amounts are refused (dead-lettered).
    amount_cents: i64,
    /// Who ordered.
    customer: String,
}

#[derive(Debug, Serialize)]
struct Accepted {
    id: String,
    status: &'static str,
}

/// Accepts an order. `ORDERS_TOPIC` and `ORDERS_ACCEPTED_TOPIC` override the topics (tests run
/// on topics of their own); the dead-letter topic follows the input (`<topic>.DLT`).
#[kafka_listener(
    id = "orders",
    topics = "${ORDERS_TOPIC:orders}",
    group_id = "orders",
    send_to = "${ORDERS_ACCEPTED_TOPIC:orders.accepted}"
)]
async fn accept_order(order: Json<Order>) -> Result<Json<Accepted>, BoxError> {
    if order.amount_cents < 0 {
        let reason = format!("amount_cents is negative ({})", order.amount_cents);
        return Err(NonRetryable::new(reason).into());
    }
    Ok(Json(Accepted {
        id: order.0.id,
        status: "accepted",
    }))
}

fn main() -> std::process::ExitCode {
    kafka_listener::run()
}
