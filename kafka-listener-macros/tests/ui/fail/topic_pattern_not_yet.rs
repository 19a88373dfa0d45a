use kafka_listener::kafka_listener;

#[kafka_listener(topic_pattern = "orders-.*")]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
