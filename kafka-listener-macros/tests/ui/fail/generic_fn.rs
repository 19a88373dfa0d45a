use kafka_listener::{kafka_listener, Json};

#[kafka_listener(topics = "orders")]
async fn on_order<T: serde::de::DeserializeOwned>(order: Json<T>) {
    let _ = order;
}

fn main() {}
