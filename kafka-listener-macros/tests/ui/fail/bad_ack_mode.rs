use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", ack_mode = "manual-immediate")]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
