//! A record listener may take each extractor, under any plain argument pattern.

use kafka_listener::{
    kafka_listener, ConsumerRecord, Headers, Json, Key, ProducerTemplate, RecordMeta,
};

#[derive(serde::Deserialize)]
struct Order {
    #[allow(dead_code)]
    id: String,
}

#[kafka_listener(topics = "t")]
async fn json(order: Json<Order>) {
    let _ = &order.id;
}

#[kafka_listener(topics = "t")]
async fn string(value: String) {
    let _ = value;
}

#[kafka_listener(topics = "t")]
async fn raw_bytes(value: Vec<u8>) {
    let _ = value;
}

#[kafka_listener(topics = "t")]
async fn tombstone_aware(value: Option<String>) {
    let _ = value;
}

#[kafka_listener(topics = "t")]
async fn key(key: Key<String>, value: Json<Order>) {
    let _ = (key, value);
}

#[kafka_listener(topics = "t")]
async fn nullable_key(key: Key<Option<String>>) {
    let _ = key;
}

#[kafka_listener(topics = "t")]
async fn headers(headers: Headers) {
    let _ = headers.last_str("trace-id");
}

#[kafka_listener(topics = "t")]
async fn meta(meta: RecordMeta) {
    let _ = meta.offset;
}

#[kafka_listener(topics = "t")]
async fn whole_record(record: ConsumerRecord) {
    let _ = record.offset();
}

#[kafka_listener(topics = "t")]
async fn producer(producer: ProducerTemplate, value: String) {
    let _ = producer.send("out", "key", value).await;
}

#[kafka_listener(topics = "t")]
async fn patterns(mut value: String, _: RecordMeta) {
    value.push('!');
}

#[kafka_listener(topics = "t")]
async fn no_arguments() {}

fn main() {}
