use kafka_listener::kafka_listener;

struct Billing;

impl Billing {
    #[kafka_listener(topics = "orders")]
    async fn on_order(&self, value: String) {
        let _ = value;
    }
}

fn main() {}
