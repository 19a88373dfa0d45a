use kafka_listener::{kafka_listener, Acknowledgment, Json};

// The forwards acknowledge a send_to listener's record: an Acknowledgment would let a manual
// mode commit before them.
#[kafka_listener(topics = "orders", send_to = "orders.accepted")]
async fn acknowledges(value: String, ack: Acknowledgment) -> Option<String> {
    ack.acknowledge();
    Some(value)
}

#[kafka_listener(topics = "orders", batch, send_to = "orders.accepted")]
async fn batch(values: Vec<String>) {
    let _ = values;
}

// Not something to forward.
#[kafka_listener(topics = "orders", send_to = "orders.accepted")]
async fn forwards_a_number(value: Json<u32>) -> Result<u64, std::io::Error> {
    Ok(u64::from(value.0))
}

fn main() {}
