use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", groupId = "billing")]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
