use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders")]
async fn on_order(value: String) -> Option<()> {
    let _ = value;
    None
}

fn main() {}
