//! The start-up check: brokers reachable, topics there and readable, group offsets readable.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::{Error, Result};

pub(super) struct StartupCheck {
    pub(super) config: ClientConfig,
    pub(super) timeout: Duration,
    pub(super) bootstrap: String,
    /// (listener id, topic, a dead-letter topic: records are written to it, not read).
    pub(super) topics: Vec<(String, String, bool)>,
    /// (listener id, group, one of its topics): the group's offsets must be readable.
    pub(super) groups: Vec<(String, String, String)>,
    /// (listener id, main topic, its retry topics now): other `<main>-retry*` topics in the
    /// cluster may hold copies nothing consumes any more.
    pub(super) retry_chains: Vec<(String, String, Vec<String>)>,
}

/// What the check could not settle, and what it noticed.
#[derive(Debug, Default)]
pub(super) struct CheckOutcome {
    /// (listener id, group) whose offsets could not be read in time (a coordinator still
    /// loading, say): neither refused nor verified.
    pub(super) inconclusive_groups: Vec<(String, String)>,
    /// (listener id, topic): a retry topic of one of the listener's main topics that its
    /// retry container does not read (the retry-topic settings changed since copies went
    /// there?).
    pub(super) stray_retry_topics: Vec<(String, String)>,
}

/// Remembers the first authentication or TLS failure librdkafka reports: a metadata request
/// alone only says "transport failure" and would be retried until the deadline.
#[derive(Default)]
pub(super) struct CheckContext {
    fatal: Mutex<Option<(RDKafkaErrorCode, String)>>,
    /// A group or topic authorization error (FindCoordinator reports one this way).
    denied: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl rdkafka::ClientContext for CheckContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::librdkafka_log::log_librdkafka("start-up check", level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use RDKafkaErrorCode as C;
        if let Some(code @ (C::Authentication | C::SaslAuthenticationFailed | C::SSL)) =
            error.rdkafka_error_code()
        {
            let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            fatal.get_or_insert((code, reason.to_owned()));
        } else if let Some(code @ (C::GroupAuthorizationFailed | C::TopicAuthorizationFailed)) =
            error.rdkafka_error_code()
        {
            let mut denied = self.denied.lock().unwrap_or_else(|p| p.into_inner());
            denied.get_or_insert((code, reason.to_owned()));
        }
    }
}

impl rdkafka::consumer::ConsumerContext for CheckContext {}

impl StartupCheck {
    /// Blocking: the brokers answer within the timeout (failing at once on wrong credentials
    /// or an untrusted certificate), every listener's topic exists and is readable, and every
    /// listener's group is.
    pub(super) fn run(self) -> Result<CheckOutcome> {
        let mut outcome = CheckOutcome::default();
        let consumer: BaseConsumer<CheckContext> = self
            .config
            .create_with_context(CheckContext::default())
            .map_err(|source| Error::ClientCreation {
                client: "start-up check".into(),
                origin: None,
                source,
            })?;
        let deadline = Instant::now() + self.timeout;
        let metadata = loop {
            let slice =
                Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now()));
            match consumer.fetch_metadata(None, slice) {
                Ok(m) => break m,
                Err(source) => {
                    // Error callbacks are served by polling.
                    let _ = consumer.poll(Duration::ZERO);
                    if let Some(e) = self.fatal(consumer.context()) {
                        return Err(e);
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::BrokerUnreachable {
                            bootstrap: self.bootstrap.clone(),
                            timeout: self.timeout,
                            source,
                        });
                    }
                }
            }
        };
        for (id, main, chain) in &self.retry_chains {
            // `<main>-retry` or `<main>-retry-<n>`: the names a retry chain can have.
            let of_chain = |name: &str| {
                name.strip_prefix(main.as_str())
                    .and_then(|rest| rest.strip_prefix("-retry"))
                    .is_some_and(|rest| {
                        rest.is_empty()
                            || rest.strip_prefix('-').is_some_and(|n| {
                                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                            })
                    })
            };
            for t in metadata.topics() {
                if of_chain(t.name()) && !chain.iter().any(|c| c == t.name()) {
                    outcome
                        .stray_retry_topics
                        .push((id.clone(), t.name().to_owned()));
                }
            }
        }
        for (id, topic, dead_letter) in &self.topics {
            let present = |m: &rdkafka::metadata::Metadata| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            };
            if present(&metadata) {
                continue;
            }
            // A topic the principal may not describe is left out of the all-topics answer;
            // asked for by name, the broker says why.
            let named = consumer.fetch_metadata(Some(topic), self.timeout).ok();
            let denied = named.as_ref().is_some_and(|m| {
                m.topics().iter().any(|t| {
                    t.name() == topic
                        && t.error()
                            == Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
                })
            });
            if denied {
                return Err(Error::NotAuthorized {
                    id: id.clone(),
                    what: "topic",
                    name: topic.clone(),
                    detail: "Broker: Topic authorization failed".into(),
                });
            }
            if !named.as_ref().is_some_and(present) && *dead_letter {
                return Err(Error::Listener {
                    id: id.clone(),
                    message: format!("dead-letter topic {topic:?} does not exist on {} (a given-up record would wait, uncommitted, until it does): create it", self.bootstrap),
                });
            }
            if !named.as_ref().is_some_and(present) {
                return Err(Error::MissingTopic {
                    id: id.clone(),
                    topic: topic.clone(),
                    bootstrap: self.bootstrap.clone(),
                });
            }
        }
        for (id, group, topic) in &self.groups {
            if !self.check_group(id, group, topic)? {
                outcome
                    .inconclusive_groups
                    .push((id.clone(), group.clone()));
            }
        }
        Ok(outcome)
    }

    fn fatal(&self, cx: &CheckContext) -> Option<Error> {
        let fatal = cx.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        Some(match fatal.0 {
            RDKafkaErrorCode::SSL => Error::Tls {
                bootstrap: self.bootstrap.clone(),
                detail: fatal.1,
            },
            _ => Error::Authentication {
                bootstrap: self.bootstrap.clone(),
                detail: fatal.1,
            },
        })
    }

    /// Reading the group's committed offsets needs DESCRIBE on the group and the topic: the
    /// first thing a principal without ACLs fails at, named here instead of in a retry loop.
    /// `Ok(false)`: neither refused nor answered in time.
    fn check_group(&self, id: &str, group: &str, topic: &str) -> Result<bool> {
        let mut config = self.config.clone();
        config.set("group.id", group);
        let consumer: BaseConsumer<CheckContext> = config
            .create_with_context(CheckContext::default())
            .map_err(|source| Error::ClientCreation {
                client: format!("start-up check of group {group}"),
                origin: None,
                source,
            })?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let denied = |code: RDKafkaErrorCode, detail: String| match code {
            RDKafkaErrorCode::GroupAuthorizationFailed => Some(Error::NotAuthorized {
                id: id.to_owned(),
                what: "group",
                name: group.to_owned(),
                detail,
            }),
            RDKafkaErrorCode::TopicAuthorizationFailed => Some(Error::NotAuthorized {
                id: id.to_owned(),
                what: "topic",
                name: topic.to_owned(),
                detail,
            }),
            _ => None,
        };
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            // In slices: a group the principal may not use fails its coordinator lookup, which
            // librdkafka reports through the error callback, served by polling.
            match consumer.committed_offsets(tpl.clone(), Duration::from_millis(500)) {
                Ok(_) => return Ok(true),
                Err(e) => {
                    if let Some(error) = e
                        .rdkafka_error_code()
                        .and_then(|c| denied(c, e.to_string()))
                    {
                        return Err(error);
                    }
                    let _ = consumer.poll(Duration::ZERO);
                    let reported = consumer
                        .context()
                        .denied
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    if let Some(error) = reported.and_then(|(c, detail)| denied(c, detail)) {
                        return Err(error);
                    }
                    if let Some(error) = self.fatal(consumer.context()) {
                        return Err(error);
                    }
                }
            }
        }
        // Inconclusive (a coordinator still loading, say): the consumer retries on its own.
        tracing::debug!(listener = id, group, "start-up group check inconclusive");
        Ok(false)
    }
}
