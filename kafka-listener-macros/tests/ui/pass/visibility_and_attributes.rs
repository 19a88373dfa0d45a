//! The function keeps its visibility, docs and other attributes, and stays callable.

pub mod listeners {
    use kafka_listener::{kafka_listener, Json};

    #[derive(serde::Deserialize)]
    pub struct Order {
        pub id: String,
    }

    /// Handles orders.
    #[kafka_listener(topics = "orders")]
    #[allow(clippy::unused_async)]
    pub async fn on_order(order: Json<Order>) {
        let _ = &order.id;
    }

    #[kafka_listener(topics = "returns")]
    pub(crate) async fn on_return(value: String) {
        let _ = value;
    }
}

async fn call_directly() {
    listeners::on_order(kafka_listener::Json(listeners::Order { id: "1".into() })).await;
    listeners::on_return(String::new()).await;
}

fn main() {
    let _ = call_directly;
}
