//! What `#[kafka_listener]` expands to, checked by running it: the registration is found with
//! the values written in the attribute, and the erased handler extracts arguments and calls the
//! user's function.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use kafka_listener::__private::Handler;
use kafka_listener::{
    find_listener, kafka_listener, BoxError, ConsumerRecord, ExtractError, Json, Key,
    ListenerContext, ListenerDefinition, RecordMeta,
};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Order {
    id: String,
    amount: u32,
}

static ORDERS_SEEN: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

#[kafka_listener(
    topics = ["orders", "${REGION:eu}.orders"],
    group_id = "billing",
    concurrency = 3,
    ack_mode = "manual_immediate",
    properties = ["max.poll.records=10", "fetch.min.bytes=1"],
    client_id_prefix = "bill",
    auto_startup = false,
)]
async fn on_order(order: Json<Order>, meta: RecordMeta) -> Result<(), BoxError> {
    ORDERS_SEEN
        .lock()
        .expect("lock")
        .push((order.id.clone(), meta.offset));
    if order.amount == 0 {
        return Err(format!("order {} has no amount", order.id).into());
    }
    Ok(())
}

static UNIT_CALLS: AtomicUsize = AtomicUsize::new(0);

#[kafka_listener(id = "unit-listener", topics = "pings")]
async fn on_ping() {
    UNIT_CALLS.fetch_add(1, Ordering::SeqCst);
}

static KEYS_SEEN: Mutex<Vec<(Option<String>, String)>> = Mutex::new(Vec::new());

#[kafka_listener(topics = "keyed", concurrency = "${KEYED_CONCURRENCY:2}")]
async fn on_keyed(key: Key<Option<String>>, value: String) -> Result<(), std::io::Error> {
    KEYS_SEEN.lock().expect("lock").push((key.0, value));
    Ok(())
}

static BATCHES_SEEN: Mutex<Vec<Vec<(String, i64)>>> = Mutex::new(Vec::new());

#[kafka_listener(topics = "orders", batch, id = "order-batch")]
async fn on_orders(orders: Vec<Json<Order>>, metas: Vec<RecordMeta>) {
    let pairs = orders
        .into_iter()
        .zip(metas)
        .map(|(order, meta)| (order.0.id, meta.offset))
        .collect();
    BATCHES_SEEN.lock().expect("lock").push(pairs);
}

fn listener(id: &str) -> &'static ListenerDefinition {
    find_listener(id).unwrap_or_else(|| panic!("listener `{id}` is not registered"))
}

fn record_handler(id: &str) -> kafka_listener::__private::RecordHandlerFn {
    match listener(id).handler {
        Handler::Record(handler) => handler,
        other => panic!("listener `{id}` should be a record listener, is {other:?}"),
    }
}

fn batch_handler(id: &str) -> kafka_listener::__private::BatchHandlerFn {
    match listener(id).handler {
        Handler::Batch(handler) => handler,
        other => panic!("listener `{id}` should be a batch listener, is {other:?}"),
    }
}

fn order_record(offset: i64, json: &str) -> ConsumerRecord {
    ConsumerRecord::new("orders", 0, offset).with_value(json.as_bytes().to_vec())
}

#[test]
fn registration_keeps_every_key_as_written() {
    let def = listener("on_order");
    assert_eq!(def.id, "on_order", "id defaults to the function's name");
    assert_eq!(def.topics, ["orders", "${REGION:eu}.orders"]);
    assert_eq!(def.group_id, Some("billing"));
    assert_eq!(def.concurrency, Some("3"));
    assert_eq!(def.ack_mode, Some("manual_immediate"));
    assert_eq!(def.auto_startup, Some("false"));
    assert_eq!(def.properties, ["max.poll.records=10", "fetch.min.bytes=1"]);
    assert_eq!(def.client_id_prefix, Some("bill"));
    assert!(!def.handler.is_batch());
    assert_eq!(def.location, "expand_behaviour::on_order");
}

#[test]
fn unset_keys_are_none_and_explicit_id_wins() {
    let def = listener("unit-listener");
    assert_eq!(def.topics, ["pings"]);
    assert_eq!(
        (
            def.group_id,
            def.concurrency,
            def.ack_mode,
            def.auto_startup
        ),
        (None, None, None, None)
    );
    assert!(def.properties.is_empty());
    assert_eq!(def.client_id_prefix, None);
    assert!(
        find_listener("on_ping").is_none(),
        "an explicit id replaces the function name"
    );
    assert_eq!(
        listener("on_keyed").concurrency,
        Some("${KEYED_CONCURRENCY:2}")
    );
}

#[test]
fn batch_flag_registers_a_batch_handler() {
    assert!(listener("order-batch").handler.is_batch());
}

#[tokio::test]
async fn record_handler_extracts_arguments_and_calls_the_function() {
    let handler = record_handler("on_order");
    let cx = ListenerContext::for_tests("on_order");
    let future = handler(&order_record(41, r#"{"id":"o-41","amount":5}"#), &cx)
        .expect("a valid record extracts");
    future.await.expect("the function returns Ok");
    assert!(
        ORDERS_SEEN
            .lock()
            .expect("lock")
            .contains(&("o-41".to_owned(), 41)),
        "the function should have seen order o-41 at offset 41"
    );
}

#[tokio::test]
async fn function_error_is_returned_by_the_handler_future() {
    let handler = record_handler("on_order");
    let cx = ListenerContext::for_tests("on_order");
    let future = handler(&order_record(42, r#"{"id":"o-42","amount":0}"#), &cx)
        .expect("a valid record extracts");
    let error = future.await.expect_err("amount 0 makes the function fail");
    assert_eq!(error.to_string(), "order o-42 has no amount");
}

#[tokio::test]
async fn undecodable_record_is_an_extract_error_and_the_function_is_not_called() {
    let handler = record_handler("on_order");
    let cx = ListenerContext::for_tests("on_order");
    let result = handler(&order_record(43, "{not json"), &cx);
    assert!(
        matches!(result, Err(ExtractError::Decode { part: "value", .. })),
        "expected a value decode error, got {:?}",
        result.as_ref().err()
    );
    assert!(
        !ORDERS_SEEN
            .lock()
            .expect("lock")
            .iter()
            .any(|(_, o)| *o == 43),
        "the function must not run for a record that cannot be decoded"
    );
}

#[tokio::test]
async fn listener_without_arguments_runs_once_per_record() {
    let handler = record_handler("unit-listener");
    let cx = ListenerContext::for_tests("unit-listener");
    let before = UNIT_CALLS.load(Ordering::SeqCst);
    for offset in 0..2 {
        let record = ConsumerRecord::new("pings", 0, offset);
        handler(&record, &cx)
            .expect("nothing to extract")
            .await
            .expect("() is Ok");
    }
    assert_eq!(UNIT_CALLS.load(Ordering::SeqCst) - before, 2);
}

#[tokio::test]
async fn io_error_result_and_optional_key_are_supported() {
    let handler = record_handler("on_keyed");
    let cx = ListenerContext::for_tests("on_keyed");
    let null_key = ConsumerRecord::new("keyed", 0, 0).with_value(&b"v0"[..]);
    let with_key = ConsumerRecord::new("keyed", 0, 1)
        .with_key(&b"k1"[..])
        .with_value(&b"v1"[..]);
    for record in [&null_key, &with_key] {
        handler(record, &cx)
            .expect("extracts")
            .await
            .expect("returns Ok");
    }
    let seen = KEYS_SEEN.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [
            (None, "v0".to_owned()),
            (Some("k1".to_owned()), "v1".to_owned())
        ]
    );
}

#[tokio::test]
async fn batch_leaves_out_undecodable_records_and_keeps_vectors_aligned() {
    let handler = batch_handler("order-batch");
    let cx = ListenerContext::for_tests("order-batch");
    let records = [
        order_record(10, r#"{"id":"a","amount":1}"#),
        order_record(11, "oops"),
        order_record(12, r#"{"id":"c","amount":3}"#),
    ];
    let invocation = handler(&records, &cx);
    let rejected: Vec<usize> = invocation.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, [1], "only the bad record (index 1) is rejected");
    invocation
        .future
        .expect("two records decoded, so there is a call")
        .await
        .expect("the function returns ()");
    let batches = BATCHES_SEEN.lock().expect("lock").clone();
    assert!(
        batches.contains(&vec![("a".to_owned(), 10), ("c".to_owned(), 12)]),
        "expected the function to see orders a@10 and c@12 together, saw {batches:?}"
    );
}

#[test]
fn batch_with_no_decodable_record_has_no_call() {
    let handler = batch_handler("order-batch");
    let cx = ListenerContext::for_tests("order-batch");
    let records = [order_record(20, "x"), order_record(21, "y")];
    let invocation = handler(&records, &cx);
    assert!(
        invocation.future.is_none(),
        "nothing decoded, nothing to call"
    );
    assert_eq!(
        invocation
            .rejected
            .iter()
            .map(|(i, _)| *i)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    assert!(
        handler(&[], &cx).future.is_none(),
        "an empty batch has no call"
    );
}

#[tokio::test]
async fn user_function_stays_callable_directly() {
    let order = Order {
        id: "direct".into(),
        amount: 1,
    };
    let meta = kafka_listener::FromRecord::from_record(
        &ConsumerRecord::new("orders", 0, 99),
        &ListenerContext::for_tests("t"),
    )
    .expect("meta");
    on_order(Json(order), meta).await.expect("Ok");
}

#[kafka_listener(
    id = "error-handling",
    topics = "payments",
    retry(attempts = 4, backoff = "1s", multiplier = 2, max = "${MAX_DELAY:30s}"),
    dead_letter = "{topic}.failed"
)]
async fn on_payment(value: String) {
    let _ = value;
}

#[kafka_listener(
    id = "blocking",
    topics = "payments",
    blocking_retry(
        attempts = 3,
        backoff = "500ms",
        multiplier = 1.5,
        max = "5s",
        jitter = true
    )
)]
async fn on_payment_blocking(value: String) {
    let _ = value;
}

#[kafka_listener(
    id = "single-retry-topic",
    topics = "payments",
    retry(attempts = 4, backoff = "2s", single_topic = true)
)]
async fn on_payment_single(value: String) {
    let _ = value;
}

#[test]
fn blocking_retry_and_single_topic_register_listener_keys_as_written() {
    assert_eq!(
        listener("blocking").settings,
        &[
            ("retry.attempts", "3"),
            ("retry.backoff.delay", "500ms"),
            ("retry.backoff.multiplier", "1.5"),
            ("retry.backoff.max-delay", "5s"),
            ("retry.backoff.random", "true"),
        ]
    );
    assert_eq!(
        listener("single-retry-topic").settings,
        &[
            ("retry-topic.enabled", "true"),
            ("retry-topic.attempts", "4"),
            ("retry-topic.backoff.delay", "2s"),
            ("retry-topic.same-interval-topic-reuse", "single-topic"),
        ]
    );
}

#[test]
fn retry_and_dead_letter_register_listener_keys_as_written() {
    let def = listener("error-handling");
    assert_eq!(
        def.settings,
        &[
            ("retry-topic.enabled", "true"),
            ("retry-topic.attempts", "4"),
            ("retry-topic.backoff.delay", "1s"),
            ("retry-topic.backoff.multiplier", "2"),
            ("retry-topic.backoff.max-delay", "${MAX_DELAY:30s}"),
            ("dead-letter.enabled", "true"),
            ("dead-letter.topic", "{topic}.failed"),
        ]
    );
}

#[kafka_listener(id = "one-topic", topic = "refunds")]
async fn on_refund(value: String) {
    let _ = value;
}

#[test]
fn topic_names_the_one_topic() {
    assert_eq!(listener("one-topic").topics, &["refunds"]);
}

#[test]
fn the_payload_type_is_registered_and_a_type_without_a_schema_has_none() {
    let def = listener("on_order");
    assert_eq!(def.payload_type, Some("Json<Order>"));
    let schema = def.payload_schema.expect("a schema function");
    assert_eq!(schema(), None, "Order does not implement JsonSchema");
}
