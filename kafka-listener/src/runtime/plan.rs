//! Listener planning: from a definition and the configuration to container properties (and a retry-topic container's).

use std::sync::Arc;
use std::time::Duration;

use super::clients::consumer_client_config;
use crate::config::{AckMode, Config, Settings};
use crate::container::{
    AssignmentSeeker, ContainerProperties, PartitionAssignment, RebalanceListener, TopicPartition,
};
use crate::error_handler::RetryPolicy;
use crate::listener::ListenerDefinition;
use crate::{CircuitBreakerPolicy, DeadLetterPublisher, Error, Result};

/// Partitions of each topic the embedded cluster creates.
pub(super) const EMBEDDED_PARTITIONS: i32 = 3;

/// A `&'static` rebalance listener from the attribute, as the container's shared one.
pub(super) struct StaticRebalanceListener(&'static dyn RebalanceListener);

impl RebalanceListener for StaticRebalanceListener {
    fn on_partitions_assigned(&self, partitions: &[TopicPartition], seeker: &mut AssignmentSeeker) {
        self.0.on_partitions_assigned(partitions, seeker);
    }
    fn on_partitions_revoked_before_commit(&self, partitions: &[TopicPartition]) {
        self.0.on_partitions_revoked_before_commit(partitions);
    }
    fn on_partitions_revoked_after_commit(&self, partitions: &[TopicPartition]) {
        self.0.on_partitions_revoked_after_commit(partitions);
    }
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        self.0.on_partitions_lost(partitions);
    }
}

pub(super) struct ListenerPlan {
    pub(super) props: ContainerProperties,
    pub(super) handler: crate::listener::Handler,
    pub(super) auto_startup: bool,
    pub(super) missing_topics_fatal: bool,
    /// `dead-letter.enabled`: the dead-letter topic (`{topic}` for the record's topic).
    pub(super) dead_letter: Option<String>,
    /// Where the handler's return value goes, placeholders resolved.
    pub(super) send_to: Option<String>,
    /// Retry topics: calls in all and the delays (the policy), and whether retries with the
    /// same delay share a topic.
    pub(super) retry_topic: Option<(RetryPolicy, bool)>,
    /// `new-topic.*`: how the listener's topics are created by `kafka.admin.auto-create`
    /// (`None`: not declared).
    pub(super) new_topic: Option<super::topics::NewTopicSpec>,
}

/// A value set for this listener in the configuration (`kafka.listener.<id>.<key>`) wins over
/// the attribute, which wins over the global `kafka.listener.<key>`.
pub(super) fn listener_value<T>(
    config: &Config,
    id: &str,
    key: &str,
    attribute: Option<&'static str>,
    configured: Option<T>,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    let per_listener = config
        .source_of(&format!("kafka.listener.{id}.{key}"))
        .is_some();
    if per_listener {
        return Ok(configured);
    }
    if let Some(raw) = attribute {
        let origin = format!("#[kafka_listener] {id} {key}");
        let value = config.resolve_placeholders(raw, &origin)?;
        return parse(value.trim())
            .map(Some)
            .map_err(|message| Error::Listener {
                id: id.to_owned(),
                message: format!("{key} = {value:?}: {message}"),
            });
    }
    Ok(configured)
}

pub(super) fn positive_u32(s: &str) -> std::result::Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "expected a positive integer".to_owned())
}

/// The listener's plan, and with retry topics the plan of its retry-topic container.
pub(super) fn plan_listener(
    def: &ListenerDefinition,
    config: &Config,
    settings: &Settings,
) -> Result<(ListenerPlan, Option<ListenerPlan>)> {
    let id = def.id;
    let ls = settings.listeners.get(id).unwrap_or(&settings.listener);
    // Keys the attribute sets: below `kafka.listener.<id>.<key>`, above the global ones.
    let with_attribute;
    let ls = if def.settings.is_empty() {
        ls
    } else {
        let mut merged = ls.clone();
        for (key, raw) in def.settings {
            if config
                .source_of(&format!("kafka.listener.{id}.{key}"))
                .is_some()
            {
                continue;
            }
            let value =
                config.resolve_placeholders(raw, &format!("#[kafka_listener] {id} {key}"))?;
            merged
                .apply_attribute(key, value.trim())
                .map_err(|message| Error::Listener {
                    id: id.into(),
                    message: format!("{key} = {value:?}: {message}"),
                })?;
        }
        with_attribute = merged;
        &with_attribute
    };
    let mut topics = Vec::with_capacity(def.topics.len());
    for raw in def.topics {
        let topic = config.resolve_placeholders(raw, &format!("#[kafka_listener] {id} topics"))?;
        if topic.trim().is_empty() {
            return Err(Error::Listener {
                id: id.into(),
                message: format!("topic {raw:?} resolves to an empty name"),
            });
        }
        topics.push(topic.trim().to_owned());
    }
    let concurrency = listener_value(
        config,
        id,
        "concurrency",
        def.concurrency,
        ls.concurrency,
        positive_u32,
    )?
    .unwrap_or(1);
    let concurrency_per_partition = listener_value(
        config,
        id,
        "concurrency-per-partition",
        def.concurrency_per_partition,
        ls.concurrency_per_partition,
        positive_u32,
    )?
    .unwrap_or(1);
    if concurrency_per_partition > 1 && def.handler.is_batch() {
        return Err(Error::Listener {
            id: id.into(),
            message: format!(
                "concurrency-per-partition = {concurrency_per_partition}: a batch listener gets a partition's records in one call; key lanes apply to record listeners (leave it at 1, or drop `batch`)"
            ),
        });
    }
    let ack_mode = listener_value(
        config,
        id,
        "ack-mode",
        def.ack_mode,
        Some(ls.ack_mode),
        |s| s.parse::<AckMode>().map_err(|e| e.to_string()),
    )?
    .unwrap_or(ls.ack_mode);
    let auto_startup = listener_value(
        config,
        id,
        "auto-startup",
        def.auto_startup,
        ls.auto_startup,
        |s| {
            s.parse::<bool>()
                .map_err(|_| "expected true or false".to_owned())
        },
    )?
    .unwrap_or(true);
    let group_id = listener_value(
        config,
        id,
        "group-id",
        def.group_id,
        ls.group_id.clone(),
        |s| Ok(s.to_owned()),
    )?
    .or_else(|| settings.consumer.group_id.clone())
    .unwrap_or_else(|| id.to_owned());

    let topic_pattern = def
        .topic_pattern
        .map(|p| config.resolve_placeholders(p, &format!("#[kafka_listener] {id} topic_pattern")))
        .transpose()?;
    let mut partitions = Vec::with_capacity(def.partitions.len());
    for raw in def.partitions {
        let item =
            config.resolve_placeholders(raw, &format!("#[kafka_listener] {id} partitions"))?;
        partitions.push(item.parse::<PartitionAssignment>().map_err(|message| {
            Error::Listener {
                id: id.into(),
                message: format!("partitions: {message}"),
            }
        })?);
    }
    for p in &partitions {
        if !topics.contains(&p.topic) {
            topics.push(p.topic.clone());
        }
    }
    let mut props = ContainerProperties::new(id, topics, "");
    props.topic_pattern = topic_pattern;
    props.partitions = partitions;
    props.rebalance_listener = def
        .rebalance_listener
        .map(|l| Arc::new(StaticRebalanceListener(l)) as Arc<dyn RebalanceListener>);
    props.client_config.clear();
    props.group_id = group_id;
    props.concurrency = concurrency;
    props.concurrency_per_partition = concurrency_per_partition;
    props.ack_mode = ack_mode;
    props.ack_count = ls.ack_count;
    props.ack_time = ls.ack_time;
    props.max_poll_records = settings.consumer.max_poll_records;
    props.poll_timeout = ls.poll_timeout;
    if ls.poll_timeout > Duration::from_millis(100) {
        tracing::info!(listener = %def.id, poll_timeout = ?ls.poll_timeout,
            "kafka.listener.poll-timeout above 100 ms has no further effect: the consumer thread polls in slices of at most 100 ms, serving seeks, nacks, pauses and commits between them");
    }
    props.shutdown_timeout = ls.shutdown_timeout;
    props.revoke_timeout = ls.revoke_timeout;
    props.max_buffered_bytes = usize::try_from(ls.max_buffered_bytes).unwrap_or(usize::MAX);
    props.delivery_attempt_header = ls.delivery_attempt_header;
    props.retry = RetryPolicy::exponential(
        ls.retry_attempts,
        ls.retry_backoff_delay,
        ls.retry_backoff_multiplier,
        ls.retry_backoff_max_delay.max(ls.retry_backoff_delay),
    )
    .with_random(ls.retry_backoff_random);
    if def.send_to.is_some() && settings.producer.acks.as_librdkafka() == "0" {
        return Err(Error::Listener {
            id: id.into(),
            message: "send_to needs kafka.producer.acks=1 or all: with acks=0 the broker never confirms a forward, and the input is finished only once it has".into(),
        });
    }
    if ls.dead_letter_enabled && settings.producer.acks.as_librdkafka() == "0" {
        return Err(Error::Listener {
            id: id.into(),
            message: "dead-letter.enabled needs kafka.producer.acks=1 or all: with acks=0 the broker never confirms a dead letter, and the offset moves past a record only once it has".into(),
        });
    }
    if ls.circuit_breaker_consecutive.is_some() || ls.circuit_breaker_ratio.is_some() {
        props.circuit_breaker = Some(CircuitBreakerPolicy {
            consecutive: ls.circuit_breaker_consecutive,
            ratio: ls.circuit_breaker_ratio,
            window: ls.circuit_breaker_window,
            reset_after: ls.circuit_breaker_reset_after,
        });
    }
    props.client_id_prefix = def
        .client_id_prefix
        .map(str::to_owned)
        .or_else(|| settings.consumer.client_id.clone())
        .or_else(|| settings.client_id.clone())
        .unwrap_or_else(|| id.to_owned());
    for (k, v) in consumer_client_config(settings) {
        props.set(&k, &v);
    }
    for item in def.properties {
        let resolved =
            config.resolve_placeholders(item, &format!("#[kafka_listener] {id} properties"))?;
        match resolved.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                props.set(k.trim(), v.trim());
            }
            _ => {
                return Err(Error::Listener {
                    id: id.into(),
                    message: format!("property {resolved:?}: expected key=value"),
                })
            }
        }
    }
    let retry_topic = ls.retry_topic_enabled.then(|| {
        (
            RetryPolicy::exponential(
                ls.retry_topic_attempts,
                ls.retry_topic_backoff_delay,
                ls.retry_topic_backoff_multiplier,
                ls.retry_topic_backoff_max_delay
                    .max(ls.retry_topic_backoff_delay),
            ),
            ls.retry_topic_single_topic,
        )
    });
    let mut retry_plan = None;
    if let Some((policy, single_topic)) = &retry_topic {
        let refuse = |why: &str| Error::Listener {
            id: id.into(),
            message: format!("retry-topic.enabled: {why}"),
        };
        if def.handler.is_batch() {
            return Err(refuse("retry topics apply to record listeners"));
        }
        if props.topic_pattern.is_some() || !props.partitions.is_empty() {
            return Err(refuse(
                "retry topics need named topics (not topic_pattern or partitions)",
            ));
        }
        if settings.producer.acks.as_librdkafka() == "0" {
            return Err(refuse("needs kafka.producer.acks=1 or all: a retry copy must be confirmed before its original is committed"));
        }
        // Non-blocking: no retries in place, the record moves to the next retry topic.
        props.retry = RetryPolicy::fixed(1, Duration::ZERO);
        let mut retries = props.clone();
        retries.listener_id = format!("{id}-retry");
        retries.client_id_prefix = format!("{}-retry", props.client_id_prefix);
        retries.topics = Vec::new();
        for t in props
            .topics
            .iter()
            .flat_map(|t| crate::retry_topic::retry_chain(t, policy, *single_topic))
        {
            if !retries.topics.contains(&t) {
                retries.topics.push(t);
            }
        }
        // A main topic that is also a retry or dead-letter topic of the chain would be read by
        // both containers: copies would run before they are due, from attempt 1 again.
        if let Some(clash) = props.topics.iter().find(|t| {
            retries.topics.contains(t)
                || props
                    .topics
                    .iter()
                    .any(|m| crate::retry_topic::retry_dlt(m) == **t)
        }) {
            return Err(refuse(&format!(
                "topic {clash} is both a main topic of this listener and one of its retry or dead-letter topics; rename it or give the listeners separately"
            )));
        }
        retries.retry_topic_max_delay = Some(policy.max_backoff);
        retries.rebalance_listener = None;
        if !retries.topics.is_empty() {
            retry_plan = Some(ListenerPlan {
                props: retries,
                handler: def.handler,
                auto_startup,
                missing_topics_fatal: true,
                send_to: None,
                retry_topic,
                dead_letter: None,
                new_topic: None,
            });
        }
    }
    let declared = ls.new_topic_partitions.is_some()
        || ls.new_topic_replicas.is_some()
        || !ls.new_topic_configs.is_empty();
    let plan = ListenerPlan {
        new_topic: declared.then(|| super::topics::NewTopicSpec {
            partitions: ls.new_topic_partitions,
            replicas: ls.new_topic_replicas,
            configs: ls.new_topic_configs.clone(),
        }),
        props,
        handler: def.handler,
        auto_startup,
        missing_topics_fatal: ls.missing_topics_fatal,
        send_to: def
            .send_to
            .map(|t| config.resolve_placeholders(t, &format!("#[kafka_listener] {id} send_to")))
            .transpose()?,
        dead_letter: ls.dead_letter_enabled.then(|| {
            ls.dead_letter_topic
                .clone()
                .unwrap_or_else(|| DeadLetterPublisher::DEFAULT_TOPIC.to_owned())
        }),
        retry_topic,
    };
    if let Some(retry) = &mut retry_plan {
        retry.send_to = plan.send_to.clone();
    }
    Ok((plan, retry_plan))
}
