use kafka_listener::kafka_listener;

#[kafka_listener(partitions = ["orders:0", "orders-1"])]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
