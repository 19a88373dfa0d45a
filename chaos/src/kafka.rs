//! The suite's own Kafka clients, independent of the system under test: topic creation, the
//! order producer, committed and end offsets, and the reader that counts acceptances per id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::Res;

/// Partitions of every topic the suite creates.
pub(crate) const PARTITIONS: i32 = 6;

/// The id of order number `i`.
pub(crate) fn order_id(i: usize) -> String {
    format!("o{i}")
}

fn order_index(id: &str) -> Option<usize> {
    id.strip_prefix('o')?.parse().ok()
}

/// Creates `topics` with [`PARTITIONS`] partitions each and waits until their metadata shows
/// every partition (retrying while a freshly started broker is still settling).
pub(crate) fn create_topics(bootstrap: &str, topics: &[&str]) -> Res<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set_log_level(RDKafkaLogLevel::Error)
        .create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics(&new, &options))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, e)) => return Err(format!("creating topic {topic}: {e}").into()),
        }
    }
    let probe = metadata_client(bootstrap)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for topic in topics {
        loop {
            let ready = probe
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics().first().map(|t| {
                        t.error().is_none()
                            && t.partitions().len() == PARTITIONS as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("topic {topic} has no leaders after 60 s").into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

fn metadata_client(bootstrap: &str) -> Res<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set_log_level(RDKafkaLogLevel::Error)
        .create()?)
}

/// High watermark (end offset) of every partition of `topic`.
pub(crate) fn end_offsets(bootstrap: &str, topic: &str) -> Res<Vec<i64>> {
    let client = metadata_client(bootstrap)?;
    (0..PARTITIONS)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(_, high)| high)
                .map_err(Into::into)
        })
        .collect()
}

/// Reads the committed offsets of one group on one topic; kept open between polls.
pub(crate) struct OffsetsProbe {
    client: BaseConsumer,
    topic: String,
    pub(crate) group: String,
}

impl OffsetsProbe {
    pub(crate) fn new(bootstrap: &str, group: &str, topic: &str) -> Res<Self> {
        let client = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set_log_level(RDKafkaLogLevel::Error)
            .create()?;
        Ok(OffsetsProbe {
            client,
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
    }

    /// Committed offset per partition (`-1` where the group committed nothing yet).
    pub(crate) fn committed(&self) -> Res<Vec<i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.topic, p);
        }
        let committed = self
            .client
            .committed_offsets(tpl, Duration::from_secs(10))?;
        let mut out = vec![-1; PARTITIONS as usize];
        for e in committed.elements() {
            if let (Offset::Offset(o), Ok(i)) = (e.offset(), usize::try_from(e.partition())) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = o;
                }
            }
        }
        Ok(out)
    }
}

/// Delivery bookkeeping of the order producer.
#[derive(Default)]
struct Deliveries {
    delivered: Mutex<Vec<bool>>,
    delivered_count: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

struct DeliveryContext(Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        match result {
            Ok(_) => {
                let mut delivered = self.0.delivered.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = delivered.get_mut(*index) {
                    if !*slot {
                        *slot = true;
                        self.0.delivered_count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err((e, _)) => self
                .0
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("order {}: {e}", order_id(*index))),
        }
    }
}

/// What the producer thread reports.
pub(crate) struct Produced {
    /// Per order index: whether the broker acknowledged it.
    pub(crate) delivered: Vec<bool>,
    /// Delivery failures (the order is then not counted as produced).
    pub(crate) failures: Vec<String>,
    /// From the first send to the last acknowledgement.
    pub(crate) elapsed: Duration,
}

/// The independent order producer: sends `count` orders with unique ids, spread evenly over
/// `window`, keyed by id (so they spread over the partitions), `acks=all`, idempotent, with a
/// delivery timeout long enough to ride out a broker outage.
pub(crate) struct OrderProducer {
    handle: Option<JoinHandle<Res<Produced>>>,
    deliveries: Arc<Deliveries>,
    sent: Arc<AtomicUsize>,
    abort: Arc<AtomicBool>,
}

impl OrderProducer {
    pub(crate) fn spawn(bootstrap: &str, topic: &str, count: usize, window: Duration) -> Res<Self> {
        let deliveries = Arc::new(Deliveries {
            delivered: Mutex::new(vec![false; count]),
            ..Deliveries::default()
        });
        let producer: BaseProducer<DeliveryContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "600000")
            .set_log_level(RDKafkaLogLevel::Error)
            .create_with_context(DeliveryContext(Arc::clone(&deliveries)))?;
        let sent = Arc::new(AtomicUsize::new(0));
        let abort = Arc::new(AtomicBool::new(false));
        let topic = topic.to_owned();
        let handle = {
            let (sent, abort, deliveries) = (
                Arc::clone(&sent),
                Arc::clone(&abort),
                Arc::clone(&deliveries),
            );
            std::thread::Builder::new()
                .name("order-producer".into())
                .spawn(move || {
                    let started = Instant::now();
                    produce_loop(&producer, &topic, count, window, &sent, &abort)?;
                    let start = Instant::now();
                    // Everything is enqueued: wait for the last acknowledgements.
                    while producer.in_flight_count() > 0 && !abort.load(Ordering::Acquire) {
                        producer.poll(Duration::from_millis(100));
                        if start.elapsed() > Duration::from_secs(660) {
                            return Err("producer: deliveries still pending after 11 min".into());
                        }
                    }
                    let delivered = std::mem::take(
                        &mut *deliveries
                            .delivered
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()),
                    );
                    let failures = std::mem::take(
                        &mut *deliveries
                            .failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()),
                    );
                    Ok(Produced {
                        delivered,
                        failures,
                        elapsed: started.elapsed(),
                    })
                })?
        };
        Ok(OrderProducer {
            handle: Some(handle),
            deliveries,
            sent,
            abort,
        })
    }

    /// Orders enqueued so far.
    pub(crate) fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Orders acknowledged by the broker so far.
    pub(crate) fn delivered(&self) -> usize {
        self.deliveries.delivered_count.load(Ordering::Relaxed)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    pub(crate) fn join(mut self) -> Res<Produced> {
        self.handle
            .take()
            .ok_or("the producer was joined already")?
            .join()
            .map_err(|_| "the producer thread panicked")?
    }
}

// A producer dropped without `join` (the harness failed) stops sending.
impl Drop for OrderProducer {
    fn drop(&mut self) {
        self.abort.store(true, Ordering::Release);
    }
}

fn produce_loop(
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    count: usize,
    window: Duration,
    sent: &AtomicUsize,
    abort: &AtomicBool,
) -> Res<()> {
    let start = Instant::now();
    let mut next = 0;
    while next < count {
        if abort.load(Ordering::Acquire) {
            return Ok(());
        }
        let due = if window.is_zero() {
            count
        } else {
            let f = start.elapsed().as_secs_f64() / window.as_secs_f64();
            ((f * count as f64).ceil() as usize).min(count)
        };
        while next < due {
            let id = order_id(next);
            let body = serde_json::json!({
                "id": id,
                "amount_cents": (next as i64 % 10_000) * 7 + 1,
                "customer": format!("c{}", next % 97),
            })
            .to_string();
            let mut record = BaseRecord::with_opaque_to(topic, Box::new(next))
                .key(id.as_str())
                .payload(body.as_str());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                        if abort.load(Ordering::Acquire) {
                            return Ok(());
                        }
                    }
                    Err((e, _)) => return Err(format!("enqueueing {id}: {e}").into()),
                }
            }
            next += 1;
            sent.store(next, Ordering::Relaxed);
        }
        producer.poll(Duration::from_millis(5));
    }
    Ok(())
}

/// What reached the output topic.
#[derive(Debug, Default)]
pub(crate) struct Accepted {
    /// How often each order index was accepted.
    pub(crate) per_order: HashMap<usize, u32>,
    /// Records that are not a well-formed acceptance keyed by a known order id.
    pub(crate) malformed: Vec<String>,
    /// Records read.
    pub(crate) records: u64,
}

/// Reads every partition of `topic` from the beginning to its current end and counts the
/// acceptances per order id.
pub(crate) fn read_accepted(bootstrap: &str, topic: &str) -> Res<Accepted> {
    let ends = end_offsets(bootstrap, topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set_log_level(RDKafkaLogLevel::Error)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for (p, &end) in ends.iter().enumerate() {
        if end > 0 {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
            remaining += 1;
        }
    }
    let mut accepted = Accepted::default();
    if remaining == 0 {
        return Ok(accepted);
    }
    consumer.assign(&tpl)?;
    let mut done = vec![false; ends.len()];
    let deadline = Instant::now() + Duration::from_secs(180);
    while remaining > 0 {
        if Instant::now() > deadline {
            return Err(format!("reading {topic}: not at the end after 180 s").into());
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let p = message.partition() as usize;
        accepted.records += 1;
        count_one(&message, &mut accepted);
        if message.offset() + 1 >= ends[p] && !done[p] {
            done[p] = true;
            remaining -= 1;
        }
    }
    Ok(accepted)
}

fn count_one(message: &impl Message, accepted: &mut Accepted) {
    let describe = || {
        format!(
            "partition {} offset {}: key {:?} value {:?}",
            message.partition(),
            message.offset(),
            message.key().map(String::from_utf8_lossy),
            message.payload().map(String::from_utf8_lossy)
        )
    };
    let parsed: Option<serde_json::Value> = message
        .payload()
        .and_then(|p| serde_json::from_slice(p).ok());
    let Some(value) = parsed else {
        accepted.malformed.push(describe());
        return;
    };
    let id = value.get("id").and_then(|v| v.as_str());
    let ok = value.get("status").and_then(|v| v.as_str()) == Some("accepted")
        && id.is_some()
        && message.key() == id.map(str::as_bytes);
    match (ok, id.and_then(order_index)) {
        (true, Some(index)) => *accepted.per_order.entry(index).or_default() += 1,
        _ => accepted.malformed.push(describe()),
    }
}

/// Samples, every 250 ms, the group's committed offsets on the input and the record counts of
/// input and output, into a tab-separated file next to the service logs: the timeline to read
/// next to the event lines when a count looks wrong (how far commits lag, when they stall).
pub(crate) struct CommitTrace {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl CommitTrace {
    pub(crate) fn spawn(
        bootstrap: &str,
        group: &str,
        (input, output): (&str, &str),
        path: &std::path::Path,
        t0: Instant,
    ) -> Res<Self> {
        use std::io::Write as _;
        let probe = OffsetsProbe::new(bootstrap, group, input)?;
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(
            file,
            "seconds\tcommitted_total\tinput_records\toutput_records\tcommitted_per_partition"
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let (input, output) = (input.to_owned(), output.to_owned());
        let handle = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("commit-trace".into())
                .spawn(move || {
                    let ends = |topic: &str| -> Option<i64> {
                        (0..PARTITIONS)
                            .map(|p| {
                                probe
                                    .client
                                    .fetch_watermarks(topic, p, Duration::from_secs(2))
                                    .ok()
                                    .map(|(_, high)| high)
                            })
                            .sum()
                    };
                    while !stop.load(Ordering::Acquire) {
                        let committed = probe.committed().ok();
                        let total: Option<i64> = committed
                            .as_ref()
                            .map(|c| c.iter().map(|o| (*o).max(0)).sum());
                        let show =
                            |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
                        let _ = writeln!(
                            file,
                            "{:.2}\t{}\t{}\t{}\t{:?}",
                            t0.elapsed().as_secs_f64(),
                            show(total),
                            show(ends(&input)),
                            show(ends(&output)),
                            committed.unwrap_or_default()
                        );
                        let _ = file.flush();
                        std::thread::sleep(Duration::from_millis(250));
                    }
                })?
        };
        Ok(CommitTrace {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for CommitTrace {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
