//! Every key at once.

use kafka_listener::{kafka_listener, BoxError, Json};

#[derive(serde::Deserialize)]
struct Payment {
    #[allow(dead_code)]
    amount: u64,
}

#[kafka_listener(
    id = "payment-listener-v2",
    topics = ["payments", "refunds"],
    group_id = "ledger",
    concurrency = 4,
    ack_mode = "count_time",
    batch,
    auto_startup = false,
    properties = ["max.poll.records=500", "fetch.min.bytes=65536", "isolation.level=read_committed"],
    client_id_prefix = "ledger",
)]
async fn on_payments(payments: Vec<Json<Payment>>) -> Result<(), BoxError> {
    let _ = payments.len();
    Ok(())
}

fn main() {}
