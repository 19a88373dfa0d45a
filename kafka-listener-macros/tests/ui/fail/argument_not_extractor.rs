use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders")]
async fn on_order(value: String, count: u32) {
    let _ = (value, count);
}

fn main() {}
