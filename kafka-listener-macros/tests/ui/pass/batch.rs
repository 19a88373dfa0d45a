//! A batch listener takes `Vec<_>` of extractors.

use kafka_listener::{kafka_listener, BoxError, Json, RecordMeta};

#[derive(serde::Deserialize)]
struct Order {
    #[allow(dead_code)]
    id: String,
}

#[kafka_listener(topics = "orders", batch)]
async fn orders(orders: Vec<Json<Order>>, metas: Vec<RecordMeta>) -> Result<(), BoxError> {
    let _ = orders.iter().zip(&metas).count();
    Ok(())
}

#[kafka_listener(topics = "raw", batch = true)]
async fn raw(values: Vec<Vec<u8>>, keys: std::vec::Vec<kafka_listener::Key<Option<String>>>) {
    let _ = (values, keys);
}

#[kafka_listener(topics = "plain", batch = false)]
async fn not_a_batch(value: Vec<u8>) {
    let _ = value;
}

fn main() {}
