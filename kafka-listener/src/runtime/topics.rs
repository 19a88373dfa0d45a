//! `kafka.admin.auto-create`: the topics the listeners need, created at start-up when missing.
//!
//! What is created: every retry topic and dead-letter topic (`<topic>-retry-*`, `<topic>-dlt`,
//! and a `dead-letter.topic` that does not depend on the record), with at least as many
//! partitions as the topic it serves, so a dead letter or retry copy keeps its original's
//! partition; and the listener topics that declare `new-topic.*`. Existing topics are checked
//! and never altered: one with fewer partitions than it needs is reported.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use super::plan::ListenerPlan;
use crate::{Error, Result};

/// A listener's `new-topic.*` declaration.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct NewTopicSpec {
    pub(super) partitions: Option<u32>,
    pub(super) replicas: Option<u32>,
    pub(super) configs: Vec<(String, String)>,
}

/// One topic that should exist.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Needed {
    pub(super) listener: String,
    pub(super) topic: String,
    /// The topic whose partitions it must match at least (retry and dead-letter topics).
    pub(super) source: Option<String>,
    pub(super) spec: NewTopicSpec,
}

/// The topics `plans` need created if missing.
pub(super) fn needed(plans: &[ListenerPlan]) -> Vec<Needed> {
    let mut out: Vec<Needed> = Vec::new();
    let mut add = |n: Needed| {
        if !out.iter().any(|o| o.topic == n.topic) {
            out.push(n);
        }
    };
    for p in plans {
        let id = &p.props.listener_id;
        let spec = p.new_topic.clone().unwrap_or_default();
        if p.new_topic.is_some() {
            for t in &p.props.topics {
                add(Needed {
                    listener: id.clone(),
                    topic: t.clone(),
                    source: None,
                    spec: spec.clone(),
                });
            }
        }
        // Derived topics take the declaration's partitions and replicas (not its configs: a
        // compacted or short-lived source must not make its dead letters so), and the
        // source's partitions at least.
        let derived = |topic: String, source: &str| Needed {
            listener: id.clone(),
            topic,
            source: Some(source.to_owned()),
            spec: NewTopicSpec {
                configs: Vec::new(),
                ..spec.clone()
            },
        };
        let main_of_chain = p.retry_topic.is_some() && p.props.retry_topic_max_delay.is_none();
        if main_of_chain {
            for t in &p.props.topics {
                add(derived(crate::retry_topic::retry_dlt(t), t));
            }
            // Its retry container (planned next) lists the retry topics.
            if let Some(retries) = plans.iter().find(|r| {
                r.props.retry_topic_max_delay.is_some()
                    && r.props.listener_id == format!("{id}-retry")
            }) {
                for t in &p.props.topics {
                    for r in retries
                        .props
                        .topics
                        .iter()
                        .filter(|r| r.starts_with(&format!("{t}-retry")))
                    {
                        add(derived(r.clone(), t));
                    }
                }
            }
        } else if let (Some(template), None) = (&p.dead_letter, p.props.retry_topic_max_delay) {
            let sources = p
                .props
                .topics
                .iter()
                .chain(p.props.partitions.iter().map(|tp| &tp.topic));
            for t in sources {
                add(derived(template.replace("{topic}", t), t));
            }
        }
    }
    out
}

/// Creates what is missing of `needed` (blocking). Returns a line per topic created.
pub(super) fn create_missing(
    config: &ClientConfig,
    timeout: Duration,
    needed: &[Needed],
) -> Result<Vec<String>> {
    if needed.is_empty() {
        return Ok(Vec::new());
    }
    let consumer: rdkafka::consumer::BaseConsumer =
        config.create().map_err(|source| Error::ClientCreation {
            client: "topic auto-creation".into(),
            origin: None,
            source,
        })?;
    let partitions_of = |c: &rdkafka::consumer::BaseConsumer| -> Result<BTreeMap<String, usize>> {
        use rdkafka::consumer::Consumer as _;
        let metadata = c
            .fetch_metadata(None, timeout)
            .map_err(|e| Error::Listener {
                id: "kafka.admin.auto-create".into(),
                message: format!("reading the topics' metadata: {e}"),
            })?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    };
    let existing = partitions_of(&consumer)?;
    let mut to_create = Vec::new();
    for n in needed {
        // A derived topic whose source neither exists nor is created here: its partitions are
        // unknown, so it is left for when the source is there.
        if let Some(source) = &n.source {
            let source_created = needed
                .iter()
                .any(|m| &m.topic == source && m.source.is_none());
            if !existing.contains_key(source) && !source_created {
                tracing::warn!(listener = %n.listener, topic = %n.topic, %source,
                    "not created: its source topic does not exist yet (its partition count is unknown)");
                continue;
            }
        }
        let declared_source = n.source.as_ref().and_then(|s| {
            needed
                .iter()
                .find(|m| &m.topic == s && m.source.is_none())
                .and_then(|m| m.spec.partitions)
        });
        let want = n
            .source
            .as_ref()
            .and_then(|s| existing.get(s).copied())
            .unwrap_or(0)
            .max(declared_source.unwrap_or(0) as usize)
            .max(n.spec.partitions.unwrap_or(1) as usize)
            .max(1);
        match existing.get(&n.topic) {
            Some(&have) if have < want => tracing::warn!(
                listener = %n.listener, topic = %n.topic, partitions = have, needed = want,
                "this topic has fewer partitions than it needs (its source's); records of the other partitions go to another partition of it. Not altered: add partitions by hand"
            ),
            Some(_) => {}
            None => to_create.push((n, want)),
        }
    }
    if to_create.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|source| Error::ClientCreation {
            client: "topic auto-creation (admin)".into(),
            origin: None,
            source,
        })?;
    let new_topics: Vec<NewTopic<'_>> = to_create
        .iter()
        .map(|(n, partitions)| {
            let replication = match n.spec.replicas {
                Some(r) => TopicReplication::Fixed(r as i32),
                // The broker's default.replication.factor.
                None => TopicReplication::Fixed(-1),
            };
            let mut t = NewTopic::new(&n.topic, *partitions as i32, replication);
            for (k, v) in &n.spec.configs {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results =
        futures::executor::block_on(admin.create_topics(&new_topics, &options)).map_err(|e| {
            Error::Listener {
                id: "kafka.admin.auto-create".into(),
                message: format!("creating topics: {e}"),
            }
        })?;
    let mut created = Vec::new();
    for (result, (n, partitions)) in results.into_iter().zip(&to_create) {
        match result {
            Ok(topic) => {
                tracing::info!(listener = %n.listener, %topic, partitions, "topic created (kafka.admin.auto-create)");
                created.push(format!(
                    "listener {}: created topic {topic} ({partitions} partitions)",
                    n.listener
                ));
            }
            // Another instance created it meanwhile.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Listener {
                    id: n.listener.clone(),
                    message: format!("creating topic {topic} (kafka.admin.auto-create): {code}"),
                })
            }
        }
    }
    // Wait until the metadata shows them, so the start-up check and the consumers find them.
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let now = partitions_of(&consumer)?;
        if to_create.iter().all(|(n, _)| now.contains_key(&n.topic)) {
            break;
        }
        if std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(created)
}
