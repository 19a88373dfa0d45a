use std::time::Duration;

use kafka_listener::{kafka_listener, Acknowledgment, Json, RecordMeta};

#[derive(serde::Deserialize)]
struct Order {
    id: String,
}

#[kafka_listener(topics = "audit", ack_mode = "manual_immediate")]
async fn on_audit(line: String, ack: Acknowledgment) {
    if line.is_empty() {
        ack.nack(Duration::from_secs(1));
    } else {
        ack.acknowledge();
    }
}

#[kafka_listener(topics = "orders", batch, ack_mode = "manual")]
async fn on_orders(orders: Vec<Json<Order>>, metas: Vec<RecordMeta>, ack: Acknowledgment) {
    let _ = (orders.len(), metas.len(), orders.first().map(|o| o.id.clone()));
    ack.acknowledge_up_to(orders.len().saturating_sub(1));
}

fn main() {}
