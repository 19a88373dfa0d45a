//! [`ApplicationBuilder`]: which configuration and listeners, and starting them.

use std::path::PathBuf;
use std::sync::Arc;

use super::application::Application;
use super::check::StartupCheck;
use super::clients::{attach_origin, base_client_config, create_producer};
use super::plan::{plan_listener, ListenerPlan, EMBEDDED_PARTITIONS};
use crate::config::{Config, LoadOptions, Settings};
use crate::container::ListenerContainer;
use crate::embedded::EmbeddedCluster;
use crate::error_handler::Recoverer;
use crate::listener::{registered_listeners, ListenerContext, ListenerDefinition};
use crate::registry::ListenerRegistry;
use crate::{DeadLetterPublisher, Error, ProducerTemplate, Result};

/// Builds an [`Application`]: which configuration, which listeners.
#[derive(Debug, Default)]
pub struct ApplicationBuilder {
    options: LoadOptions,
    only: Option<Vec<String>>,
    extra: Vec<&'static ListenerDefinition>,
    use_registered: bool,
    recoverers: Vec<(String, RecovererFactory)>,
    not_retryable: Vec<(String, Classifier)>,
}

/// A listener's rule for errors not worth retrying.
#[derive(Clone)]
pub(super) struct Classifier(pub(super) Arc<crate::error_handler::RetryableClassifier>);

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Classifier")
    }
}

/// Makes a listener's recoverer once the producer exists.
#[derive(Clone)]
pub(super) struct RecovererFactory(pub(super) Arc<MakeRecoverer>);

pub(super) type MakeRecoverer = dyn Fn(&ProducerTemplate, &str) -> Arc<dyn Recoverer> + Send + Sync;

impl std::fmt::Debug for RecovererFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecovererFactory")
    }
}

impl ApplicationBuilder {
    /// Errors of listener `id` for which `rule` returns true skip the retries and go to the
    /// recoverer at once, like errors marked [`NonRetryable`](crate::NonRetryable) (Spring's
    /// not-retryable exceptions; look for a type with `error.downcast_ref::<T>()`, or walk
    /// `error.source()`).
    pub fn not_retryable(
        mut self,
        id: &str,
        rule: impl Fn(&(dyn std::error::Error + 'static)) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.not_retryable
            .push((id.to_owned(), Classifier(Arc::new(rule))));
        self
    }

    /// The recoverer of listener `id`, made by `make` from the application's producer and
    /// the listener's consumer group once they exist; it replaces what
    /// `kafka.listener.<id>.dead-letter.*` configures, and with retry topics the retry-topic
    /// recoverer of that container (the main listener `<id>` and its `<id>-retry` each take
    /// their own; wrap a [`RetryTopicRecoverer`](crate::retry_topic::RetryTopicRecoverer) to
    /// keep the retry topics). For example, dead letters routed by error type:
    ///
    /// ```no_run
    /// # use kafka_listener::{Application, DeadLetterPublisher};
    /// # #[derive(Debug)] struct Invalid;
    /// # impl std::fmt::Display for Invalid { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("invalid") } }
    /// # impl std::error::Error for Invalid {}
    /// let builder = Application::builder().recoverer("on_order", |producer, group| {
    ///     DeadLetterPublisher::new(producer.clone(), group).route(|record, failure| {
    ///         failure
    ///             .error()
    ///             .downcast_ref::<Invalid>()
    ///             .map(|_| format!("{}.invalid", record.topic()))
    ///     })
    /// });
    /// ```
    pub fn recoverer<R, F>(mut self, id: &str, make: F) -> Self
    where
        R: Recoverer,
        F: Fn(&ProducerTemplate, &str) -> R + Send + Sync + 'static,
    {
        self.recoverers.push((
            id.to_owned(),
            RecovererFactory(Arc::new(move |p: &ProducerTemplate, g: &str| {
                Arc::new(make(p, g)) as Arc<dyn Recoverer>
            })),
        ));
        self
    }

    /// The properties file (default `application.properties`; a missing default file is fine).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.config_file = Some(path.into());
        self
    }

    /// The profile (`application-{profile}.properties`).
    pub fn profile(mut self, profile: Option<String>) -> Self {
        self.options.profile = profile;
        self
    }

    /// `key=value` overrides, as `--set` gives them.
    pub fn overrides(mut self, items: impl IntoIterator<Item = String>) -> Self {
        self.options.overrides.extend(items);
        self
    }

    /// One override.
    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.options.overrides.push(format!("{key}={value}"));
        self
    }

    /// Replaces the environment the configuration reads (default: the process environment).
    pub fn env(mut self, vars: Vec<(String, String)>) -> Self {
        self.options.env = vars;
        self
    }

    /// Starts only these registered listeners (by id) instead of all of them.
    pub fn only<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only = Some(ids.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a listener that is not registered with `#[kafka_listener]` (built by hand).
    /// With this, registered listeners start only if named with [`only`](Self::only).
    pub fn listener(mut self, def: &'static ListenerDefinition) -> Self {
        self.extra.push(def);
        self
    }

    fn definitions(&self) -> Result<Vec<&'static ListenerDefinition>> {
        let mut defs: Vec<&'static ListenerDefinition> = self.extra.clone();
        let registered = registered_listeners();
        match &self.only {
            Some(ids) => {
                for id in ids {
                    match registered.iter().find(|d| d.id == id) {
                        Some(d) => defs.push(d),
                        None => {
                            return Err(Error::Listener {
                                id: id.clone(),
                                message: format!(
                                    "no registered listener has this id (registered: {})",
                                    registered
                                        .iter()
                                        .map(|d| d.id)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            })
                        }
                    }
                }
            }
            None if self.extra.is_empty() || self.use_registered => defs.extend(registered),
            None => {}
        }
        defs.sort_by_key(|d| d.id);
        if let Some(w) = defs.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(Error::Listener {
                id: w[0].id.to_owned(),
                message: format!(
                    "two listeners share this id: {} and {}; give one an explicit id = \"...\"",
                    w[0].location, w[1].location
                ),
            });
        }
        Ok(defs)
    }

    /// Loads and validates the configuration against the listeners, without starting anything.
    pub fn load_config(&self) -> Result<(Config, Settings)> {
        let defs = self.definitions()?;
        let mut options = self.options.clone();
        if options.env.is_empty() {
            options.env = std::env::vars().collect();
        }
        let config = Config::load(&options)?;
        let ids: Vec<&str> = defs.iter().map(|d| d.id).collect();
        let settings = config.settings(&ids)?;
        Ok((config, settings))
    }

    /// The configuration and every container's plan (a listener with retry topics has two).
    fn plans(&self) -> Result<(Config, Settings, Vec<ListenerPlan>)> {
        let defs = self.definitions()?;
        let (config, settings) = self.load_config()?;
        let mut plans = Vec::with_capacity(defs.len());
        for def in &defs {
            let (plan, retries) = plan_listener(def, &config, &settings)?;
            plans.push(plan);
            plans.extend(retries);
        }
        Ok((config, settings, plans))
    }

    /// An AsyncAPI 3.0 document of the listeners (`asyncapi` on the command line): a channel
    /// per topic, a `receive` operation per listener container with its group, a `send`
    /// operation per `send_to`, and each payload's JSON Schema where its type implements
    /// `schemars::JsonSchema`.
    pub fn asyncapi(&self, title: &str) -> Result<serde_json::Value> {
        let defs = self.definitions()?;
        let (_, settings, plans) = self.plans()?;
        Ok(super::asyncapi::document(title, &settings, &defs, &plans))
    }

    /// A line per listener container as configured (`listeners` on the command line): id,
    /// topics, group, ack mode, concurrency and what happens to a failing record.
    pub fn describe(&self) -> Result<Vec<String>> {
        let (_, _, plans) = self.plans()?;
        Ok(plans
            .iter()
            .map(|plan| {
                let p = &plan.props;
                let source = if let Some(pattern) = &p.topic_pattern {
                    format!("pattern={pattern}")
                } else if !p.partitions.is_empty() {
                    let parts: Vec<String> = p
                        .partitions
                        .iter()
                        .map(|tp| format!("{}:{}", tp.topic, tp.partition))
                        .collect();
                    format!("partitions={}", parts.join(","))
                } else {
                    format!("topics={}", p.topics.join(","))
                };
                let retries = if plan.retry_topic.is_some() {
                    "no retries in place".to_owned()
                } else {
                    let r = &p.retry;
                    format!(
                        "{} attempts, back-off {:?} x{} up to {:?}{}",
                        r.attempts,
                        r.backoff,
                        r.multiplier,
                        r.max_backoff,
                        if r.random { " (random)" } else { "" }
                    )
                };
                let then = match (&plan.retry_topic, &plan.dead_letter) {
                    (Some((policy, single)), _) => format!(
                        "retry topics ({} calls{}) then <topic>-dlt",
                        policy.attempts,
                        if *single {
                            ", equal delays share a topic"
                        } else {
                            ""
                        }
                    ),
                    (None, Some(topic)) => format!("dead letter to {topic}"),
                    (None, None) => "log and skip".to_owned(),
                };
                let custom = self.recoverers.iter().any(|(id, _)| *id == p.listener_id);
                format!(
                    "{}\t{source}\tgroup={}\tack-mode={}\tconcurrency={}\terrors={retries}; then {}{}",
                    p.listener_id,
                    p.group_id,
                    p.ack_mode,
                    p.concurrency,
                    if custom { "a custom recoverer" } else { then.as_str() },
                    if plan.auto_startup { "" } else { "\tauto-startup=false" },
                )
            })
            .collect())
    }

    /// What `start` checks before it starts anything, and more, without starting anything:
    /// the configuration and the listeners are valid, the brokers answer (with the configured
    /// credentials), every topic a listener reads exists and is readable (whatever
    /// `missing-topics-fatal` says), its dead-letter topic exists when dead letters are on
    /// (unless routed per record), and its group's offsets are readable. Returns a line for
    /// each thing verified; the first failure is the error. On the embedded cluster only the
    /// configuration is checked.
    pub async fn check(self) -> Result<Vec<String>> {
        let (_, settings, plans) = self.plans()?;
        let mut verified = vec![format!(
            "configuration: valid ({} listener container{})",
            plans.len(),
            if plans.len() == 1 { "" } else { "s" }
        )];
        if settings.bootstrap_servers.trim() == "embedded" {
            verified.push("brokers: embedded (in-process), nothing to reach".into());
            return Ok(verified);
        }
        let mut check = startup_check(&settings, &settings.bootstrap_servers, &plans, true, |id| {
            self.recoverers.iter().any(|(r, _)| r == id)
        });
        verified.push(format!("brokers: {} answered", settings.bootstrap_servers));
        if settings.admin.auto_create {
            // Created at start-up when missing: not a failure here.
            let needed = super::topics::needed(&plans);
            check
                .topics
                .retain(|(_, t, _)| !needed.iter().any(|n| n.topic == *t));
            for n in &needed {
                verified.push(format!(
                    "listener {}: topic {} is created at start-up if missing (kafka.admin.auto-create)",
                    n.listener, n.topic
                ));
            }
        }
        for (id, topic, dead_letter) in &check.topics {
            verified.push(if *dead_letter {
                format!("listener {id}: dead-letter topic {topic} exists")
            } else {
                format!("listener {id}: topic {topic} exists and is readable")
            });
        }
        let groups: Vec<(String, String)> = check
            .groups
            .iter()
            .map(|(id, group, _)| (id.clone(), group.clone()))
            .collect();
        let outcome = tokio::task::spawn_blocking(move || check.run())
            .await
            .map_err(|e| Error::Panicked {
                what: "the check".into(),
                message: e.to_string(),
            })??;
        for (id, group) in groups {
            verified.push(
                if outcome.inconclusive_groups.contains(&(id.clone(), group.clone())) {
                    format!("listener {id}: group {group}: inconclusive (no answer in time; not refused)")
                } else {
                    format!("listener {id}: group {group} offsets readable")
                },
            );
        }
        for (id, topic) in &outcome.stray_retry_topics {
            verified.push(format!("warning: listener {id}: retry topic {topic} is not read by its retry container (settings changed?): copies on it are not retried"));
        }
        Ok(verified)
    }

    /// Loads the configuration, checks the brokers and topics, creates the producer and starts
    /// every listener whose auto-startup is on.
    pub async fn start(self) -> Result<Application> {
        let (config, settings, plans) = self.plans()?;

        let embedded = if settings.bootstrap_servers.trim() == "embedded" {
            let cluster = tokio::task::spawn_blocking(EmbeddedCluster::start)
                .await
                .map_err(|e| Error::Panicked {
                    what: "starting the embedded cluster".into(),
                    message: e.to_string(),
                })??;
            for plan in &plans {
                for topic in &plan.props.topics {
                    cluster.create_topic(topic, EMBEDDED_PARTITIONS)?;
                }
            }
            Some(cluster)
        } else {
            None
        };
        let bootstrap = match &embedded {
            Some(c) => c.bootstrap_servers().to_owned(),
            None => settings.bootstrap_servers.clone(),
        };

        let producer = create_producer(&settings, &config, &bootstrap)?;

        if settings.admin.auto_create {
            let needed = super::topics::needed(&plans);
            match &embedded {
                Some(cluster) => {
                    for n in &needed {
                        cluster.create_topic(&n.topic, EMBEDDED_PARTITIONS)?;
                    }
                }
                None => {
                    let admin = admin_config(&settings, &bootstrap);
                    let timeout = settings.admin.operation_timeout;
                    tokio::task::spawn_blocking(move || {
                        super::topics::create_missing(&admin, timeout, &needed)
                    })
                    .await
                    .map_err(|e| Error::Panicked {
                        what: "creating the topics".into(),
                        message: e.to_string(),
                    })??;
                }
            }
        }
        if !plans.is_empty() {
            let check = startup_check(&settings, &bootstrap, &plans, false, |_| false);
            let outcome = tokio::task::spawn_blocking(move || check.run())
                .await
                .map_err(|e| Error::Panicked {
                    what: "the start-up check".into(),
                    message: e.to_string(),
                })??;
            for (listener, topic) in &outcome.stray_retry_topics {
                tracing::warn!(%listener, %topic, "a retry topic of this listener's main topic is not read by its retry container (the retry-topic settings changed?): copies on it are not retried until it is read again");
            }
        }

        // The metrics recorder goes in before any container registers its handles.
        let prometheus = settings
            .management
            .port
            .and_then(|_| crate::telemetry::prometheus(crate::telemetry::UPKEEP_EVERY));
        let runtime = tokio::runtime::Handle::current();
        let registry = ListenerRegistry::default();
        // Each listener's own topics (a retry-topic container's recoverer needs its main ones).
        let plans_topics: std::collections::HashMap<String, Vec<String>> = plans
            .iter()
            .map(|p| (p.props.listener_id.clone(), p.props.topics.clone()))
            .collect();
        let mut containers = Vec::with_capacity(plans.len());
        let mut to_start = Vec::new();
        for mut plan in plans {
            plan.props
                .client_config
                .insert(0, ("bootstrap.servers".into(), bootstrap.clone()));
            // The per-partition lag gauges come from librdkafka's statistics.
            if settings.management.port.is_some()
                && !plan
                    .props
                    .client_config
                    .iter()
                    .any(|(k, _)| k == "statistics.interval.ms")
            {
                plan.props.client_config.push((
                    "statistics.interval.ms".into(),
                    settings.management.lag_interval.as_millis().to_string(),
                ));
            }
            let custom = self
                .recoverers
                .iter()
                .rev()
                .find(|(id, _)| *id == plan.props.listener_id);
            plan.props.recoverer = match (custom, &plan.dead_letter) {
                (Some((_, make)), _) => Some((make.0)(&producer, &plan.props.group_id)),
                _ if plan.retry_topic.is_some() => {
                    let (backoff, single_topic) = plan.retry_topic.unwrap_or_default();
                    let base = plan
                        .props
                        .listener_id
                        .strip_suffix("-retry")
                        .filter(|_| plan.props.retry_topic_max_delay.is_some())
                        .unwrap_or(&plan.props.listener_id)
                        .to_owned();
                    let main_topics = plans_topics
                        .get(&base)
                        .cloned()
                        .unwrap_or_else(|| plan.props.topics.clone());
                    Some(Arc::new(
                        crate::retry_topic::RetryTopicRecoverer::new(
                            producer.clone(),
                            &plan.props.group_id,
                            backoff.attempts,
                            backoff,
                        )
                        .single_topic_for_same_intervals(single_topic)
                        .for_topics(main_topics),
                    ) as Arc<dyn Recoverer>)
                }
                (None, Some(topic)) => Some(Arc::new(
                    DeadLetterPublisher::new(producer.clone(), &plan.props.group_id)
                        .topic(topic.clone()),
                ) as Arc<dyn Recoverer>),
                (None, None) => None,
            };
            // A listener's rule applies to its retry-topic container too.
            plan.props.not_retryable = self
                .not_retryable
                .iter()
                .rev()
                .find(|(id, _)| {
                    *id == plan.props.listener_id
                        || (plan.props.retry_topic_max_delay.is_some()
                            && format!("{id}-retry") == plan.props.listener_id)
                })
                .map(|(_, c)| Arc::clone(&c.0));
            if custom.is_some() && plan.retry_topic.is_some() {
                tracing::warn!(listener = %plan.props.listener_id,
                    "a recoverer set with ApplicationBuilder::recoverer replaces the retry-topic recoverer of this container (wrap a RetryTopicRecoverer to keep the retry topics; the main listener and <id>-retry each take their own)");
            }
            let cx = ListenerContext {
                listener_id: plan.props.listener_id.as_str().into(),
                producer: Some(producer.clone()),
                partition: None,
                registry: Some(registry.handle()),
                attempt: 1,
                send_to: plan.send_to.as_deref().map(Arc::from),
            };
            let container = ListenerContainer::new(plan.props, plan.handler, cx);
            if plan.auto_startup {
                to_start.push(container.clone());
            } else {
                tracing::info!(
                    listener = container.listener_id(),
                    "auto-startup is off: not started (start it through the ListenerRegistry)"
                );
            }
            containers.push(container);
        }
        let _ = registry.containers.set(containers.clone());
        let management = match settings.management.port {
            Some(port) => Some(
                crate::management::Management::start(
                    &settings.management.address,
                    port,
                    registry.downgrade(),
                    prometheus,
                    settings.management.token.clone(),
                    settings.management.lag_interval,
                )
                .await?,
            ),
            None => None,
        };
        // Starting may block briefly (explicit partitions' starting offsets are looked up).
        let rt = runtime.clone();
        tokio::task::spawn_blocking(move || to_start.iter().try_for_each(|c| c.start_on(&rt)))
            .await
            .map_err(|e| Error::Panicked {
                what: "starting the listeners".into(),
                message: e.to_string(),
            })?
            .map_err(|e| attach_origin(e, &settings))?;
        if let Some(m) = &management {
            m.started();
        }
        Ok(Application {
            registry,
            containers,
            producer,
            embedded,
            bootstrap,
            shutdown_timeout: settings.listener.shutdown_timeout,
            close_timeout: settings.producer.close_timeout,
            management,
        })
    }
}

/// The start-up check of `plans`: their topics (only those of listeners with
/// `missing-topics-fatal`, unless `every_topic`, which also adds dead-letter topics) and their
/// groups.
fn startup_check(
    settings: &Settings,
    bootstrap: &str,
    plans: &[ListenerPlan],
    every_topic: bool,
    custom_recoverer: impl Fn(&str) -> bool,
) -> StartupCheck {
    let admin = admin_config(settings, bootstrap);
    let mut topics: Vec<(String, String, bool)> = Vec::new();
    for p in plans
        .iter()
        .filter(|p| every_topic || p.missing_topics_fatal)
    {
        let id = &p.props.listener_id;
        let mut add = |t: String, dead_letter: bool| {
            if !topics.iter().any(|(i, x, _)| i == id && *x == t) {
                topics.push((id.clone(), t, dead_letter));
            }
        };
        for t in &p.props.topics {
            add(t.clone(), false);
        }
        if !every_topic {
            continue;
        }
        for tp in &p.props.partitions {
            add(tp.topic.clone(), false);
        }
        // Where given-up records go, when that does not depend on the record (a custom
        // recoverer decides for itself).
        if custom_recoverer(id) {
            continue;
        }
        let main_of_chain = p.retry_topic.is_some() && p.props.retry_topic_max_delay.is_none();
        if main_of_chain {
            for t in &p.props.topics {
                add(crate::retry_topic::retry_dlt(t), true);
            }
        } else if let Some(template) = &p.dead_letter {
            for t in p
                .props
                .topics
                .iter()
                .chain(p.props.partitions.iter().map(|tp| &tp.topic))
            {
                add(template.replace("{topic}", t), true);
            }
        }
    }
    // The retry topics each main topic's retry container reads.
    let retry_chains = plans
        .iter()
        .filter(|p| p.retry_topic.is_some() && p.props.retry_topic_max_delay.is_none())
        .flat_map(|main| {
            let retries = plans.iter().find(|r| {
                r.props.retry_topic_max_delay.is_some()
                    && r.props.listener_id == format!("{}-retry", main.props.listener_id)
            });
            main.props.topics.iter().map(move |t| {
                let chain = retries
                    .map(|r| {
                        r.props
                            .topics
                            .iter()
                            .filter(|c| c.starts_with(&format!("{t}-retry")))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                (main.props.listener_id.clone(), t.clone(), chain)
            })
        })
        .collect();
    StartupCheck {
        config: admin,
        timeout: settings.admin.operation_timeout,
        bootstrap: bootstrap.to_owned(),
        topics,
        retry_chains,
        groups: plans
            .iter()
            .filter_map(|p| {
                let topic = p.props.topics.first().or(p
                    .props
                    .partitions
                    .first()
                    .map(|tp| &tp.topic))?;
                Some((
                    p.props.listener_id.clone(),
                    p.props.group_id.clone(),
                    topic.clone(),
                ))
            })
            .collect(),
    }
}

/// The admin client's configuration: the common one plus `kafka.admin.properties.*`.
fn admin_config(settings: &Settings, bootstrap: &str) -> rdkafka::ClientConfig {
    let mut admin = base_client_config(settings, bootstrap);
    for p in &settings.admin.properties {
        admin.set(&p.key, &p.value);
    }
    admin
}
