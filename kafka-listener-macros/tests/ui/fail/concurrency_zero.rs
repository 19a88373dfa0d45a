use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", concurrency = 0)]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
