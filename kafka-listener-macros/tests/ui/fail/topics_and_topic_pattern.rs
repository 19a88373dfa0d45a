use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", topic_pattern = "orders-.*")]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
