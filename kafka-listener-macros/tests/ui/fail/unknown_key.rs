use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", retries = 3)]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
