use std::rc::Rc;

use kafka_listener::kafka_listener;

async fn save(_: &str) {}

#[kafka_listener(topics = "orders")]
async fn on_order(value: String) {
    let shared = Rc::new(value);
    save(&shared).await;
}

fn main() {}
