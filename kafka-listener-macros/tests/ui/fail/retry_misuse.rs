use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders", retry(attempts = 3, tries = 2))]
async fn unknown_option(value: String) {
    let _ = value;
}

#[kafka_listener(topics = "orders", batch, retry(attempts = 3))]
async fn batch(values: Vec<String>) {
    let _ = values;
}

#[kafka_listener(topics = "orders", dead_letter = 3)]
async fn bad_dead_letter(value: String) {
    let _ = value;
}

#[kafka_listener(topics = "orders", retry(attempts = 3), blocking_retry(attempts = 2))]
async fn both(value: String) {
    let _ = value;
}

#[kafka_listener(topics = "orders", blocking_retry(attempts = 3, jitter = "yes", sleep = 1))]
async fn bad_blocking(value: String) {
    let _ = value;
}

fn main() {}
