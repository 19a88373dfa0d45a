use kafka_listener::{kafka_listener, Json};

#[derive(serde::Deserialize)]
struct Order {}

#[kafka_listener(topics = "orders", batch)]
async fn on_orders(orders: Json<Order>) {
    let _ = orders;
}

fn main() {}
