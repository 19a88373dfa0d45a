//! A small listener service for the supervision tests. It prints `handled <partition>
//! <offset> <key>` for every record and, as `PROBE_PANIC` says, makes a consumer die:
//!
//! - `consumer-thread`: after 50 records, the consumer thread panics (fault injection);
//! - `rebalance-listener`: the `RebalanceListener` panics on assignment (a user bug);
//! - `nack`: the record at offset 1500 of partition 0 is nacked once with a 30 s delay (the
//!   test kills the process during it); it is not printed as handled;
//! - `fail-sevens`: records whose key ends in `7` fail (printed as `failed …`), for the
//!   retry-topic test that kills the process while their copies wait for their due time.
//!
//! Every handled record is printed as `handled <partition> <offset> <key> <topic>`.
//! Topic and group come from `--set probe.topic=… --set probe.group=…`.

use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kafka_listener::{
    kafka_listener, Acknowledgment, AssignmentSeeker, BoxError, Key, ListenerRegistry,
    RebalanceListener, RecordMeta, TopicPartition,
};

static NACKED: AtomicBool = AtomicBool::new(false);

static HANDLED: AtomicU64 = AtomicU64::new(0);

fn mode() -> String {
    std::env::var("PROBE_PANIC").unwrap_or_default()
}

struct PanicOnAssign;

impl RebalanceListener for PanicOnAssign {
    fn on_partitions_assigned(&self, _: &[TopicPartition], _: &mut AssignmentSeeker) {
        if mode() == "rebalance-listener" {
            eprintln!("probe: the RebalanceListener panics now");
            panic!("probe: RebalanceListener bug on assignment");
        }
    }
}

static PANIC_ON_ASSIGN: PanicOnAssign = PanicOnAssign;

#[kafka_listener(
    id = "probe",
    topics = "${probe.topic}",
    group_id = "${probe.group}",
    rebalance_listener = PANIC_ON_ASSIGN
)]
async fn probe(
    meta: RecordMeta,
    key: Key<String>,
    registry: ListenerRegistry,
    ack: Acknowledgment,
) -> Result<(), BoxError> {
    if mode() == "nack"
        && meta.partition == 0
        && meta.offset == 1500
        && !NACKED.swap(true, Ordering::SeqCst)
    {
        println!("nacked {} {} {}", meta.partition, meta.offset, key.as_str());
        ack.nack(Duration::from_secs(30));
        return Ok(());
    }
    if mode() == "fail-sevens" && key.as_str().ends_with('7') {
        println!(
            "failed {} {} {} {}",
            meta.partition,
            meta.offset,
            key.as_str(),
            meta.topic
        );
        return Err(format!("probe: {} fails", key.as_str()).into());
    }
    println!(
        "handled {} {} {} {}",
        meta.partition,
        meta.offset,
        key.as_str(),
        meta.topic
    );
    let n = HANDLED.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 50 && mode() == "consumer-thread" {
        eprintln!("probe: injecting a consumer-thread panic now");
        if let Some(container) = registry.container("probe") {
            container.inject_consumer_panic();
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Printed once every listener runs (and SIGTERM is handled).
    kafka_listener::run_with(|_producer| async { println!("probe: running") })
}
