use kafka_listener::kafka_listener;

#[kafka_listener(topics = [])]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
