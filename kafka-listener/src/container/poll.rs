//! The consumer thread's loop: requests from workers and the application, the consumer queue
//! (rebalances, errors), nack resumes and rewinds, and the commit schedule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use super::commit::{committable, CommitSchedule};
use super::consumer::{ConsumerCore, ConsumerReport, CoreContext};
use super::ffi::CommitQueue;
use super::seek::{resolve, resume_nacked, retry_rewinds, seek_locked, Rewind};
use super::shutdown::{shutdown, OwnedConsumer};
use super::state::{pause, ConsumerRequest, PartitionState};
use super::ContainerProperties;

/// The poll loop. Returns when `stop` is set, after the shutdown protocol's final commit, with
/// the consumer still to be closed (see [`shutdown`]).
pub(crate) fn poll_loop(
    consumer: OwnedConsumer,
    stop: &AtomicBool,
    deadline: &Mutex<Option<Instant>>,
) -> (ConsumerReport, OwnedConsumer) {
    let core = Arc::clone(&consumer.context().0);
    let props = Arc::clone(&core.props);
    // Records go to the partition queues; this thread wakes for rebalances and errors, and
    // at least this often for requests and commits (so commits coalesce to one per turn).
    let slice = props.poll_timeout.min(Duration::from_millis(100));
    let requests = core
        .requests_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    // Dropped before the consumer on every path (see `OwnedConsumer`).
    *core.commits.lock().unwrap_or_else(|p| p.into_inner()) = CommitQueue::new(&consumer);
    let mut schedule = CommitSchedule::new(
        props.ack_mode,
        props.ack_count,
        props.ack_time,
        Instant::now(),
    );
    // Partitions paused by a nack, and when to resume them.
    let mut nacked: Vec<(Arc<PartitionState>, Instant)> = Vec::new();
    // Rewinds that failed and are retried.
    let mut rewinds: Vec<Rewind> = Vec::new();
    // An authorization error was reported (once).
    let mut denied = false;
    // A record arrived on the consumer queue (reported once).
    let mut strays = false;

    while !stop.load(Ordering::Acquire) {
        if let Some(requests) = &requests {
            while let Ok(request) = requests.try_recv() {
                apply_request(&consumer, &core, request, &mut nacked, &mut rewinds);
            }
        }
        if !rewinds.is_empty() {
            retry_rewinds(&consumer, &core, &mut rewinds, &mut nacked);
        }
        resume_nacked(&consumer, &core.name, &mut nacked);
        let mut timeout = slice;
        loop {
            match consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    use rdkafka::types::RDKafkaErrorCode as C;
                    match e.rdkafka_error_code() {
                        // The ACLs will not change by retrying: say so and stop the process
                        // (a consumer that cannot read is as good as dead).
                        Some(
                            C::GroupAuthorizationFailed
                            | C::TopicAuthorizationFailed
                            | C::Authentication
                            | C::SaslAuthenticationFailed,
                        ) if !denied => {
                            denied = true;
                            super::supervision::report_death(
                                &props.listener_id,
                                &format!("consumer {}", core.name),
                                &format!("not authorized (group {:?}): {e}; the principal needs READ and DESCRIBE on the group and its topics", props.group_id),
                            );
                        }
                        _ => tracing::warn!(consumer = %core.name, error = %e, "consumer error"),
                    }
                    break;
                }
                Some(Ok(message)) => {
                    stray(&core, &message, &mut strays);
                    timeout = Duration::ZERO;
                }
            }
        }
        core.settle_commits(Duration::ZERO);
        let assigned = core.assigned();
        let finished: u64 = assigned.iter().map(|a| a.state.finished_records()).sum();
        if schedule.due(finished, Instant::now())
            && core.commit_async(&consumer, &assigned, |s| committable(props.ack_mode, s))
        {
            schedule.sent(finished, Instant::now());
        }
    }
    let deadline = deadline
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(|| Instant::now() + props.shutdown_timeout);
    shutdown(consumer, &core, deadline)
}

/// A record on the consumer queue: every assigned partition has a queue of its own, so this
/// means a split failed. Nobody handles such records, so nothing after one may be committed:
/// its partition takes nothing more (its worker stops) and the consumer is reported dead
/// (the process shuts down and exits non-zero; the record is redelivered after a restart).
pub(super) fn stray(
    core: &ConsumerCore,
    message: &rdkafka::message::BorrowedMessage<'_>,
    reported: &mut bool,
) {
    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
    let state = core
        .assigned()
        .iter()
        .find(|a| a.state.partition == partition && &*a.state.topic == topic)
        .map(|a| Arc::clone(&a.state));
    if let Some(state) = state {
        state.seek_pending.store(true, Ordering::Release);
        state.stop.cancel();
        state.wake.notify_one();
    }
    if !std::mem::replace(reported, true) {
        super::supervision::report_death(
            &core.props.listener_id,
            &format!("consumer {}", core.name),
            &format!("record {topic}-{partition}@{offset} arrived on the consumer queue instead of its partition's queue; nothing from it on is handled or committed"),
        );
    }
}

/// The bytes a worker takes in one chunk (`max-buffered-bytes` / 8, at least 64 KiB).
pub(super) fn chunk_bytes(props: &ContainerProperties) -> usize {
    (props.max_buffered_bytes / 8).max(64 << 10)
}

/// A handler's seek under key lanes (`from` is its record's offset) goes no further than the
/// first unfinished record before the handler's own: records of other keys taken before it
/// may still wait, and a seek past them would skip them. Without lanes `from` is `None` and
/// the target stands (every record before the handler's is finished; the position the
/// worker publishes lags within a chunk, so it must not be used there).
fn not_past_unfinished(
    consumer: &str,
    state: &PartitionState,
    target: rdkafka::Offset,
    from: Option<i64>,
) -> rdkafka::Offset {
    let (Some(from), Some(unfinished)) = (from, state.resume_at()) else {
        return target;
    };
    if unfinished >= from {
        return target;
    }
    let lowered = match target {
        rdkafka::Offset::Offset(o) if o <= unfinished => return target,
        rdkafka::Offset::Beginning => return target,
        _ => rdkafka::Offset::Offset(unfinished),
    };
    tracing::info!(consumer, topic = %state.topic, partition = state.partition, ?target,
        unfinished, "seek from a handler lowered to the first unfinished record before the handler's (records of other keys wait there)");
    lowered
}

/// Applies a partition worker's request on the consumer thread.
pub(super) fn apply_request(
    consumer: &BaseConsumer<CoreContext>,
    core: &ConsumerCore,
    request: ConsumerRequest,
    nacked: &mut Vec<(Arc<PartitionState>, Instant)>,
    rewinds: &mut Vec<Rewind>,
) {
    match request {
        ConsumerRequest::InjectPanic => panic!("injected panic (fault injection)"),
        ConsumerRequest::Pause | ConsumerRequest::Resume => {
            // The application's pause is ours alone: workers stop taking records, and
            // librdkafka stops fetching a partition once its queue is full, as for any slow
            // handler. librdkafka's own pause is not used for it: a partition paused before its
            // worker took anything resumes at librdkafka's fetch position, past the records it
            // had fetched and dropped at the pause (the fault test found records skipped so).
            let pausing = matches!(request, ConsumerRequest::Pause);
            core.user_paused.store(pausing, Ordering::Release);
            for a in core.assigned().iter() {
                if pausing {
                    a.state.paused.fetch_or(pause::USER, Ordering::AcqRel);
                } else {
                    a.state.paused.fetch_and(!pause::USER, Ordering::AcqRel);
                    a.state.wake.notify_one();
                }
            }
            tracing::info!(consumer = %core.name, paused = pausing, "consumer {}", if pausing { "paused" } else { "resumed" });
        }
        ConsumerRequest::Seek {
            topic,
            partition,
            target,
            from,
        } => {
            let state = core
                .assigned()
                .iter()
                .find(|a| a.state.partition == partition && *a.state.topic == *topic)
                .map(|a| Arc::clone(&a.state));
            let Some(state) = state else {
                return; // another consumer of the container owns it, or nobody does
            };
            let result = resolve(consumer, &topic, partition, target)
                .map(|offset| not_past_unfinished(&core.name, &state, offset, from))
                .and_then(|offset| seek_locked(consumer, &state, offset, None, true));
            match result {
                Ok(()) => {
                    // A rewind still owed from a failed nack seek would undo this seek.
                    rewinds.retain(|r| !Arc::ptr_eq(&r.state, &state));
                    tracing::info!(consumer = %core.name, %topic, partition, ?target, "seeked");
                }
                Err(e) if state.seek_pending.load(Ordering::Acquire) => {
                    // The worker dropped what it had queued, waiting for this seek: deliver
                    // those records again rather than leave a gap a later commit would pass.
                    match state.resume_at() {
                        Some(offset) => {
                            tracing::error!(consumer = %core.name, %topic, partition, ?target, error = %e,
                                offset, "seek failed; rewinding to the first record not yet handled");
                            let mut rewind = Rewind {
                                state,
                                offset,
                                delay: Duration::ZERO,
                                why: "failed seek",
                                failures: 0,
                                next_try: Instant::now(),
                            };
                            if !rewind.apply(consumer, core, nacked) {
                                rewinds.push(rewind);
                            }
                        }
                        None => {
                            tracing::error!(consumer = %core.name, %topic, partition, ?target, error = %e,
                                "seek failed; the partition goes on from where it was");
                            state.seek_pending.store(false, Ordering::Release);
                            state.wake.notify_one();
                        }
                    }
                }
                Err(e) => {
                    // Another partition's seek: its worker dropped nothing.
                    tracing::error!(consumer = %core.name, %topic, partition, ?target, error = %e,
                        "seek failed; the partition goes on from where it was");
                }
            }
        }
        ConsumerRequest::Nack { state, request } => {
            let mut rewind = Rewind {
                state,
                offset: request.offset,
                delay: request.delay,
                why: "nack",
                failures: 0,
                next_try: Instant::now(),
            };
            if !rewind.apply(consumer, core, nacked) {
                rewinds.push(rewind);
            }
        }
    }
}
