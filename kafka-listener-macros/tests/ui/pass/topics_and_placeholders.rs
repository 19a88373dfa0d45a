//! `topics` as one string or a list; placeholders wherever a value may come from configuration.

use kafka_listener::kafka_listener;

#[kafka_listener(topics = "orders")]
async fn one_topic(value: String) {
    let _ = value;
}

#[kafka_listener(topics = ["orders", "returns", "eu.orders_v2-retry"])]
async fn topic_list(value: String) {
    let _ = value;
}

#[kafka_listener(
    topics = ["${ORDERS_TOPIC}", "${REGION:eu}.returns"],
    group_id = "${GROUP:billing}",
    concurrency = "${CONCURRENCY:3}",
    ack_mode = "${ACK_MODE:manual_immediate}",
    auto_startup = "${ENABLED:false}",
    client_id_prefix = "${CLIENT_PREFIX}",
)]
async fn placeholders(value: String) {
    let _ = value;
}

#[kafka_listener(topics = "t", concurrency = "4", ack_mode = "${ACK_MODE}")]
async fn string_concurrency(value: String) {
    let _ = value;
}

fn main() {}
