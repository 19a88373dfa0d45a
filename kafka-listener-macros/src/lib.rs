//! Procedural macros for `kafka-listener`. Use them through the `kafka_listener` crate
//! (`kafka_listener::kafka_listener`); this crate's paths are not stable.

mod attr;
mod expand;
mod suggest;
mod validate;

use proc_macro::TokenStream;

/// Declares a Kafka listener: Spring for Apache Kafka's `@KafkaListener`, on an `async fn`.
///
/// ```no_run
/// use kafka_listener::{kafka_listener, BoxError, Json, RecordMeta};
/// # #[derive(serde::Deserialize)] struct Order { id: String }
///
/// #[kafka_listener(topics = "orders", group_id = "billing", concurrency = 3)]
/// async fn on_order(order: Json<Order>, meta: RecordMeta) -> Result<(), BoxError> {
///     println!("order {} at offset {}", order.id, meta.offset);
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// The function stays as written (callable from your own code and tests). Next to it the
/// macro registers a [`ListenerDefinition`] that the runtime finds at startup, with no list to
/// maintain by hand: every `#[kafka_listener]` linked into the binary is started by
/// `kafka_listener::run`. A listener in a library crate is linked only if the binary uses that
/// crate (`use my_listeners as _;`).
///
/// # Keys
///
/// Keys are Spring's attribute names in snake case. One of `topics`, `topic_pattern` or
/// `partitions` is required.
///
/// | key | value | default | Spring |
/// |---|---|---|---|
/// | `topics` | `"a"` or `["a", "b"]` | one of these three is required | `topics` |
/// | `topic` | `"a"`: one topic, the same as `topics = "a"` (not both) | | `topics` |
/// | `topic_pattern` | `"orders-.*"`: a regular expression (librdkafka syntax) | | `topicPattern` |
/// | `partitions` | `["orders:0", "orders:1@100"]`: explicit partitions, optional start (offset, `earliest`, `latest`, `-N` before the committed offset); no group rebalancing | | `topicPartitions` |
/// | `id` | `"name"`: letters, digits, `_`, `-` | the function's name | `id` |
/// | `group_id` | `"group"` | `kafka.consumer.group-id`, then the listener id | `groupId` |
/// | `concurrency` | `3` (≥ 1), or `"${PLACEHOLDER:3}"` | `kafka.listener.<id>.concurrency`, then 1 | `concurrency` |
/// | `concurrency_per_partition` | `16` (≥ 1), or `"${PLACEHOLDER:16}"`; record listeners | `kafka.listener.<id>.concurrency-per-partition`, then 1 | none (Confluent's Parallel Consumer's key ordering) |
/// | `ack_mode` | `"record"`, `"batch"`, `"time"`, `"count"`, `"count_time"`, `"manual"`, `"manual_immediate"`, or a placeholder | the configured ack mode | `ackMode` (container property) |
/// | `batch` | flag, or `batch = true` / `batch = false` | `false` (one call per record) | `batch` |
/// | `auto_startup` | `true`, `false`, or a placeholder | `true` | `autoStartup` |
/// | `properties` | `["key=value", ...]`, librdkafka names | none | `properties` |
/// | `client_id_prefix` | `"prefix"` | none (librdkafka's default `client.id`) | `clientIdPrefix` |
/// | `rebalance_listener` | path of a `static` implementing `RebalanceListener` | none | container's `ConsumerRebalanceListener` |
/// | `send_to` | `"topic"`: the handler's return value is sent there, keyed like the input; the input is finished once every forward was acknowledged; record listeners | none | `@SendTo` |
/// | `retry` | `retry(attempts = 4, backoff = "1s", multiplier = 2, max = "30s", single_topic = false)` (each option optional): retry topics, `kafka.listener.<id>.retry-topic.*`; `single_topic = true`: retries with equal delays share one topic (`<topic>-retry` for a fixed delay); record listeners | off | `@RetryableTopic` (`sameIntervalTopicReuseStrategy`) |
/// | `new_topic` | `new_topic(partitions = 6, replicas = 3, configs = "retention.ms=604800000")` (each option optional): how `kafka.admin.auto-create=true` creates the listener's topics when missing, `kafka.listener.<id>.new-topic.*` | not declared | `TopicBuilder` / `NewTopic` |
/// | `blocking_retry` | `blocking_retry(attempts = 3, backoff = "1s", multiplier = 2, max = "10s", jitter = true)` (each option optional): retries in place while only the failing partition waits, `kafka.listener.<id>.retry.*`; not with `retry` | `kafka.listener.retry.*` (10 attempts, 1 s) | `DefaultErrorHandler` with a `BackOff` |
/// | `dead_letter` | flag, `true`/`false`, or a topic (`"{topic}.DLT"`): `kafka.listener.<id>.dead-letter.*` | off | `DeadLetterPublishingRecoverer` |
///
/// Values are checked at compile time and registered as written; configuration
/// (`kafka.listener.<id>.*`) can override them when the application starts.
///
/// ## `topics`
///
/// One topic as a string, or several as a list. Names follow Kafka's rules (letters, digits,
/// `_`, `.`, `-`; at most 249 characters); placeholders may stand for all or part of a name.
///
/// ```no_run
/// # use kafka_listener::kafka_listener;
/// #[kafka_listener(topics = ["orders", "${REGION:eu}.returns"])]
/// async fn on_order_event(event: String) {
///     println!("{event}");
/// }
/// # fn main() {}
/// ```
///
/// Topic patterns (`topic_pattern`) and explicit partitions (`partitions`) are not supported
/// yet.
///
/// ## `id`
///
/// Names the listener in configuration keys (`kafka.listener.<id>.*`), logs and metrics, and
/// is what [`find_listener`] looks up. It cannot be a placeholder. Ids must be unique within a
/// binary; the runtime refuses to start with duplicates.
///
/// ## `group_id`
///
/// The consumer group. Without it the listener uses `kafka.consumer.group-id`, and without that
/// its own id, so two listeners never share a group by accident.
///
/// ## `concurrency`
///
/// How many consumers (each on its own task) the listener runs; Kafka assigns each consumer a
/// share of the partitions, so more consumers than partitions leaves some idle. An integer
/// literal of at least 1, or a string holding a placeholder (`"${ORDERS_CONCURRENCY:3}"`) or
/// a positive integer.
///
/// ## `concurrency_per_partition`
///
/// How many records of one partition a record listener handles at once. Records with the
/// same key are handled one after another in offset order, records with different keys at
/// the same time (their futures are polled together on the partition's task: this helps a
/// handler that awaits I/O, not one that computes). Records without a key share one lane
/// and keep their order. Commits never pass the lowest unfinished record; records of other
/// keys finished above it are delivered again after a rebalance or restart (at-least-once).
///
/// ```no_run
/// # use kafka_listener::{kafka_listener, BoxError};
/// #[kafka_listener(topics = "payments", concurrency_per_partition = 64)]
/// async fn on_payment(payment: String) -> Result<(), BoxError> {
///     // e.g. a call to another service: 64 of them in flight per partition
///     let _ = payment;
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// ## `ack_mode`
///
/// When offsets are committed, after Spring's `AckMode`:
///
/// | value | commits |
/// |---|---|
/// | `record` | after each record the handler finished |
/// | `batch` | after all records of a poll were handled |
/// | `time` | handled records, at most every `ack-time` |
/// | `count` | handled records, every `ack-count` records |
/// | `count_time` | whichever of `count` or `time` comes first |
/// | `manual` | what the handler acknowledged, in batch |
/// | `manual_immediate` | what the handler acknowledged, at once |
///
/// Spelling variants are rejected with a hint (`"RECORD"`, `"manual-immediate"` → did you
/// mean `manual_immediate`?). A placeholder's default is checked too (`"${ACK:record}"`).
///
/// ## `batch`
///
/// A batch listener is called once per poll with all records of one partition, and every
/// argument is a `Vec` of an extractor. Records that cannot be decoded are left out of the
/// call (and go to the error path); the vectors stay aligned, so `orders[i]` and `metas[i]`
/// come from the same record.
///
/// ```no_run
/// use kafka_listener::{kafka_listener, Json, RecordMeta};
/// # #[derive(serde::Deserialize)] struct Order { id: String }
///
/// #[kafka_listener(topics = "orders", batch)]
/// async fn on_orders(orders: Vec<Json<Order>>, metas: Vec<RecordMeta>) {
///     for (order, meta) in orders.iter().zip(&metas) {
///         println!("order {} at offset {}", order.id, meta.offset);
///     }
/// }
/// # fn main() {}
/// ```
///
/// ## `auto_startup`
///
/// `false` registers the listener without starting it with the application. `true`, `false`
/// or a placeholder whose default, if any, is `true` or `false` (`"${ORDERS_ENABLED:true}"`).
///
/// ## `properties`
///
/// Consumer properties for this listener only, `"key=value"` with librdkafka's names; they
/// override `kafka.consumer.*`.
///
/// ```no_run
/// # use kafka_listener::kafka_listener;
/// #[kafka_listener(
///     topics = "audit",
///     properties = ["max.poll.interval.ms=600000", "fetch.min.bytes=65536"],
/// )]
/// async fn on_audit(line: Vec<u8>) {
///     println!("{} bytes", line.len());
/// }
/// # fn main() {}
/// ```
///
/// ## `client_id_prefix`
///
/// Prefix of the consumers' `client.id`; each consumer gets `<prefix>-<n>`.
///
/// ## Placeholders
///
/// `${name}` or `${name:default}` is resolved against the configuration when the listener
/// starts (properties file, profile, environment, `--set`). Placeholders are allowed in
/// `topics`, `group_id`, `concurrency`, `ack_mode`, `auto_startup` and `client_id_prefix`,
/// never in `id`. Where the value has a fixed set of forms (`concurrency`, `ack_mode`,
/// `auto_startup`), the placeholder must be the whole value and its default is checked.
///
/// ```no_run
/// # use kafka_listener::kafka_listener;
/// #[kafka_listener(
///     id = "order-audit",
///     topics = "${ORDERS_TOPIC:orders}",
///     group_id = "${AUDIT_GROUP:audit}",
///     concurrency = "${AUDIT_CONCURRENCY:2}",
///     ack_mode = "${AUDIT_ACK_MODE:batch}",
///     auto_startup = "${AUDIT_ENABLED:true}",
/// )]
/// async fn audit(value: Option<String>) {
///     println!("{value:?}");
/// }
/// # fn main() {}
/// ```
///
/// # The function
///
/// * It is an `async fn`, free (not a method), not generic.
/// * Every argument is an extractor, a type implementing [`FromRecord`], taken by value with a
///   plain name (`order: Json<Order>`, `mut order`, `_`): `Json<T>`, `String`, `Vec<u8>`,
///   `Bytes`, `Option<_>` of those (to accept tombstones), `Key<K>`, `Headers`, `RecordMeta`,
///   `ConsumerRecord`, `ProducerTemplate`, `Acknowledgment`. A batch listener takes `Vec<_>`
///   of them, plus at most one `Acknowledgment` for the whole batch (a `FromBatch`). No
///   arguments is fine too.
/// * It returns `()` or `Result<(), E>` where `E` converts into `BoxError`. An `Err` goes to
///   the listener's error handler (retries, then the recoverer).
/// * Its future must be `Send + 'static`: it runs on the runtime's worker threads. Do not hold
///   a `std::sync::MutexGuard` or an `Rc` across an `.await`.
///
/// A record whose value or key cannot be decoded never reaches the function: it goes to the
/// error path without retries.
///
/// # Errors
///
/// Mistakes are compile errors on the offending token: unknown keys (with a hint for Spring
/// spellings such as `groupId`), duplicate keys, bad values, a missing `topics`, a non-async
/// function, a reference argument (`&str` → take `String`), a type that is not an extractor
/// (with the list of extractors), a `Vec` argument without `batch`. All attribute mistakes are
/// reported in one compile.
///
/// [`ListenerDefinition`]: https://docs.rs/kafka-listener/latest/kafka_listener/struct.ListenerDefinition.html
/// [`find_listener`]: https://docs.rs/kafka-listener/latest/kafka_listener/fn.find_listener.html
/// [`FromRecord`]: https://docs.rs/kafka-listener/latest/kafka_listener/trait.FromRecord.html
#[proc_macro_attribute]
pub fn kafka_listener(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::kafka_listener(attr.into(), item.into()).into()
}
