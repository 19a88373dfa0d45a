use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", group_id = "billing", group_id = "shipping")]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
