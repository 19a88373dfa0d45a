use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", properties = ["max.poll.records=10", "fetch.min.bytes"])]
async fn on_order(value: String) {
    let _ = value;
}

fn main() {}
