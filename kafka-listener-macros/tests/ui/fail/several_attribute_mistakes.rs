use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", ackMode = "record", concurrency = 0, ack_mode = "recrod")]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
