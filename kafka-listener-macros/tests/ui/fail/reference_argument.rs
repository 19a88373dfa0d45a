use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders")]
async fn on_order(value: &str) {
    let _ = value;
}

fn main() {}
