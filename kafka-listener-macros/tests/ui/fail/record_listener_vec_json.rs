use kafka_listener::{kafka_listener, Json};

#[derive(serde::Deserialize)]
struct Order {}

#[kafka_listener(topics = "orders")]
async fn on_orders(orders: Vec<Json<Order>>) {
    let _ = orders;
}

fn main() {}
