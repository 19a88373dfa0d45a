use kafka_listener::kafka_listener;

#[kafka_listener(group_id = "billing")]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
