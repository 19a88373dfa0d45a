//! Running the application: configuration, producer, containers, signals, shutdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::future::Future;

use clap::Parser;
use futures::future::BoxFuture;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::config::{AckMode, Config, ConfigError, LoadOptions, Passthrough, Settings, Source};
use crate::container::{
    AssignmentSeeker, ContainerProperties, ContainerReport, ListenerContainer, PartitionAssignment,
    RebalanceListener, TopicPartition,
};
use crate::embedded::EmbeddedCluster;
use crate::error_handler::{Recoverer, RetryPolicy};
use crate::listener::{registered_listeners, ListenerContext, ListenerDefinition};
use crate::registry::ListenerRegistry;
use crate::{CircuitBreakerPolicy, DeadLetterPublisher, Error, ProducerTemplate, Result};

/// Command line of a service binary built on [`run`].
#[derive(Debug, Parser)]
#[command(about = "A Kafka listener service built with kafka-listener", long_about = None)]
struct Cli {
    /// Properties file to load.
    #[arg(long, value_name = "FILE", default_value = "application.properties")]
    config: PathBuf,
    /// Profile: also loads application-{NAME}.properties beside the config file.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Overrides one key (highest precedence); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Load and validate the configuration, print it (secrets masked), and exit.
    Check,
    /// List the registered listeners and exit.
    Listeners,
}

/// Loads the configuration, starts every registered listener, and runs until SIGTERM or
/// SIGINT; then shuts down gracefully (see the crate docs) and returns the exit code.
///
/// Command line: `--config FILE` (default `application.properties`), `--profile NAME`,
/// `--set key=value` (repeatable), `--help`; subcommands `check` and `listeners`.
///
/// Exit codes: 0 after a clean shutdown; 1 if start-up failed (configuration, broker
/// unreachable, missing topic); 2 on a command-line error; 3 if shutdown could not commit or
/// flush everything; 4 if a consumer thread or partition worker died (a bug, a panicking
/// `RebalanceListener`): the death is logged as an error at once and the process shuts down
/// gracefully so its supervisor restarts it (fail fast rather than restart in-process).
pub fn run() -> ExitCode {
    run_inner(None)
}

/// A task started once the listeners are running; see [`run_with`].
type Runner = Box<dyn FnOnce(ProducerTemplate) -> BoxFuture<'static, ()> + Send>;

/// Like [`run`], and once every listener has started, runs `runner` with the shared producer as a
/// background task (Spring Boot's `CommandLineRunner`). The task is stopped when shutdown begins,
/// before the listeners stop.
pub fn run_with<F, Fut>(runner: F) -> ExitCode
where
    F: FnOnce(ProducerTemplate) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_inner(Some(Box::new(move |p| Box::pin(runner(p)))))
}

fn run_inner(runner: Option<Runner>) -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kl-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run_cli(cli, runner));
    // Handlers cut off by the shutdown deadline must not hold the process.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

async fn run_cli(cli: Cli, runner: Option<Runner>) -> ExitCode {
    // Listen first: a SIGTERM that arrives while the application starts is kept and handled as
    // a graceful shutdown once it is up, instead of killing the process outright.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for SIGTERM/SIGINT: {e}");
            return ExitCode::from(1);
        }
    };
    let builder = Application::builder()
        .config_file(cli.config)
        .profile(cli.profile)
        .overrides(cli.set);
    match cli.command {
        Some(Command::Listeners) => {
            for def in registered_listeners() {
                println!(
                    "{}\ttopics={}\t{}",
                    def.id,
                    def.topics.join(","),
                    def.location
                );
            }
            return ExitCode::SUCCESS;
        }
        Some(Command::Check) => {
            return match builder.load_config() {
                Ok((config, _)) => {
                    print!("{}", config.dump());
                    println!("# configuration OK");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    report_startup_error(&e);
                    ExitCode::from(1)
                }
            };
        }
        None => {}
    }
    let app = match builder.start().await {
        Ok(app) => app,
        Err(e) => {
            report_startup_error(&e);
            return ExitCode::from(1);
        }
    };
    crate::registry::set_global(app.registry());
    let background = runner.map(|r| tokio::spawn(r(app.producer().clone())));
    let died = tokio::select! {
        _ = signals.next() => None,
        cause = crate::container::supervision::first_death() => Some(cause),
    };
    match &died {
        None => tracing::info!("shutdown requested: stop fetching, finishing in-flight records (a second signal forces exit)"),
        Some(cause) => tracing::error!(%cause, "a consumer died: shutting down, finishing in-flight records of the others; exit code 4"),
    }
    tokio::spawn(async move {
        signals.next().await;
        eprintln!("second signal: forced exit; unfinished records were not committed and will be redelivered");
        std::process::exit(130);
    });
    if let Some(task) = background {
        task.abort();
    }
    let report = app.shutdown().await;
    if let Some(cause) = died {
        eprintln!("error: {cause}");
        ExitCode::from(4)
    } else if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

fn report_startup_error(e: &Error) {
    eprintln!("error: {e}");
}

/// SIGTERM and SIGINT (Ctrl-C), registered once so none is missed between waits.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,librdkafka=warn"));
    // An application that installed its own subscriber keeps it.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

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
struct Classifier(Arc<crate::error_handler::RetryableClassifier>);

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Classifier")
    }
}

/// Makes a listener's recoverer once the producer exists.
#[derive(Clone)]
struct RecovererFactory(Arc<MakeRecoverer>);

type MakeRecoverer = dyn Fn(&ProducerTemplate, &str) -> Arc<dyn Recoverer> + Send + Sync;

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

    /// Loads the configuration, checks the brokers and topics, creates the producer and starts
    /// every listener whose auto-startup is on.
    pub async fn start(self) -> Result<Application> {
        let defs = self.definitions()?;
        let (config, settings) = self.load_config()?;
        let mut plans = Vec::with_capacity(defs.len());
        for def in &defs {
            let (plan, retries) = plan_listener(def, &config, &settings)?;
            plans.push(plan);
            plans.extend(retries);
        }

        let embedded = if settings.bootstrap_servers.trim() == "embedded" {
            let cluster = tokio::task::spawn_blocking(EmbeddedCluster::start)
                .await
                .map_err(|e| Error::Shutdown(format!("embedded cluster start panicked: {e}")))??;
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

        if !plans.is_empty() {
            let mut admin = base_client_config(&settings, &bootstrap);
            for p in &settings.admin.properties {
                admin.set(&p.key, &p.value);
            }
            let check = StartupCheck {
                config: admin,
                timeout: settings.admin.operation_timeout,
                bootstrap: bootstrap.clone(),
                topics: plans
                    .iter()
                    .filter(|p| p.missing_topics_fatal)
                    .flat_map(|p| {
                        p.props
                            .topics
                            .iter()
                            .map(|t| (p.props.listener_id.clone(), t.clone()))
                    })
                    .collect(),
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
            };
            tokio::task::spawn_blocking(move || check.run())
                .await
                .map_err(|e| Error::Shutdown(format!("start-up check panicked: {e}")))??;
        }

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
        // Starting may block briefly (explicit partitions' starting offsets are looked up).
        let rt = runtime.clone();
        tokio::task::spawn_blocking(move || to_start.iter().try_for_each(|c| c.start_on(&rt)))
            .await
            .map_err(|e| Error::Shutdown(format!("starting the listeners panicked: {e}")))?
            .map_err(|e| attach_origin(e, &settings))?;
        Ok(Application {
            registry,
            containers,
            producer,
            embedded,
            bootstrap,
            shutdown_timeout: settings.listener.shutdown_timeout,
            close_timeout: settings.producer.close_timeout,
        })
    }
}

/// Partitions of each topic the embedded cluster creates.
const EMBEDDED_PARTITIONS: i32 = 3;

/// A `&'static` rebalance listener from the attribute, as the container's shared one.
struct StaticRebalanceListener(&'static dyn RebalanceListener);

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

struct ListenerPlan {
    props: ContainerProperties,
    handler: crate::listener::Handler,
    auto_startup: bool,
    missing_topics_fatal: bool,
    /// `dead-letter.enabled`: the dead-letter topic (`{topic}` for the record's topic).
    dead_letter: Option<String>,
    /// Where the handler's return value goes, placeholders resolved.
    send_to: Option<String>,
    /// Retry topics: calls in all and the delays (the policy), and whether retries with the
    /// same delay share a topic.
    retry_topic: Option<(RetryPolicy, bool)>,
}

/// A value set for this listener in the configuration (`kafka.listener.<id>.<key>`) wins over
/// the attribute, which wins over the global `kafka.listener.<key>`.
fn listener_value<T>(
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

fn positive_u32(s: &str) -> std::result::Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "expected a positive integer".to_owned())
}

/// The listener's plan, and with retry topics the plan of its retry-topic container.
fn plan_listener(
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
        retries.topics = props
            .topics
            .iter()
            .flat_map(|t| crate::retry_topic::retry_chain(t, policy, *single_topic))
            .collect();
        retries.topics.dedup();
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
            });
        }
    }
    let plan = ListenerPlan {
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

fn passthrough(out: &mut Vec<(String, String)>, items: &[Passthrough]) {
    for p in items {
        out.push((p.key.clone(), p.value.clone()));
    }
}

/// `kafka.properties.*`: for every client.
fn common_client_config(settings: &Settings) -> Vec<(String, String)> {
    // Like the Java client (TCP_NODELAY): with Nagle on, a handler that awaits each send waits
    // out the peer's delayed ACK (~40 ms) per record.
    let mut out = vec![("socket.nagle.disable".to_owned(), "true".to_owned())];
    passthrough(&mut out, &settings.security);
    passthrough(&mut out, &settings.properties);
    out
}

fn base_client_config(settings: &Settings, bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in common_client_config(settings) {
        config.set(k, v);
    }
    config
}

/// The consumer's librdkafka settings from `kafka.properties.*`, `kafka.consumer.*` and
/// `kafka.consumer.properties.*`, in that order (later wins).
fn consumer_client_config(settings: &Settings) -> Vec<(String, String)> {
    let c = &settings.consumer;
    let mut out = common_client_config(settings);
    out.push((
        "auto.offset.reset".into(),
        c.auto_offset_reset.as_librdkafka().into(),
    ));
    if let Some(v) = c.fetch_min_size {
        out.push(("fetch.min.bytes".into(), v.to_string()));
    }
    if let Some(v) = c.fetch_max_wait {
        out.push(("fetch.wait.max.ms".into(), v.as_millis().to_string()));
    }
    if let Some(v) = c.heartbeat_interval {
        out.push(("heartbeat.interval.ms".into(), v.as_millis().to_string()));
    }
    if let Some(v) = &c.isolation_level {
        out.push(("isolation.level".into(), v.as_librdkafka().into()));
    }
    passthrough(&mut out, &c.properties);
    out
}

fn create_producer(
    settings: &Settings,
    config: &Config,
    bootstrap: &str,
) -> Result<ProducerTemplate> {
    let p = &settings.producer;
    let mut client = base_client_config(settings, bootstrap);
    client.set("acks", p.acks.as_librdkafka());
    if p.acks.as_librdkafka() == "all" {
        // Retries without duplicates or reordering; librdkafka's recommended setting with acks=all.
        client.set("enable.idempotence", "true");
    }
    if let Some(id) = p.client_id.as_ref().or(settings.client_id.as_ref()) {
        client.set("client.id", id);
    }
    if let Some(v) = p.batch_size {
        client.set("batch.size", v.to_string());
    }
    if let Some(v) = p.buffer_memory {
        client.set("queue.buffering.max.kbytes", (v / 1024).max(1).to_string());
    }
    if let Some(v) = &p.compression_type {
        client.set("compression.type", v);
    }
    if let Some(v) = p.retries {
        client.set("message.send.max.retries", v.to_string());
    }
    if let Some(v) = p.linger {
        client.set("linger.ms", v.as_millis().to_string());
    }
    if p.transaction_id_prefix.is_some() {
        return Err(Error::from(ConfigError::Unsupported {
            origin: config
                .source_of("kafka.producer.transaction-id-prefix")
                .cloned()
                .unwrap_or(Source::Default),
            key: "kafka.producer.transaction-id-prefix".into(),
            reason: "transactions are not supported yet",
        }));
    }
    // The Java client's max.block.ms is ours to apply (librdkafka has no such property).
    let mut max_block = Duration::from_secs(60);
    for item in &p.properties {
        if item.key == "max.block.ms" {
            max_block = item
                .value
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    Error::from(ConfigError::InvalidValue {
                        origin: item.source.clone(),
                        key: "kafka.producer.properties.max.block.ms".into(),
                        value: Some(item.value.clone()),
                        expected: "expected milliseconds (a whole number, e.g. 60000)".into(),
                    })
                })?;
            continue;
        }
        client.set(&item.key, &item.value);
    }
    let producer: FutureProducer = client.create().map_err(|source| {
        attach_origin(
            Error::ClientCreation {
                client: "producer".into(),
                origin: None,
                source,
            },
            settings,
        )
    })?;
    Ok(
        ProducerTemplate::from_producer(producer, p.acks.as_librdkafka() != "0")
            .with_max_block(max_block)
            .with_default_topic(p.default_topic.clone()),
    )
}

/// Names where a passthrough key came from when librdkafka rejects it.
fn attach_origin(error: Error, settings: &Settings) -> Error {
    match error {
        Error::ClientCreation {
            client,
            origin: None,
            source,
        } => {
            let text = source.to_string();
            // librdkafka names the offending property in quotes.
            let origin = settings
                .properties
                .iter()
                .chain(&settings.consumer.properties)
                .chain(&settings.producer.properties)
                .find(|p| text.contains(&format!("\"{}\"", p.key)))
                .map(|p| p.source.to_string());
            Error::ClientCreation {
                client,
                origin,
                source,
            }
        }
        other => other,
    }
}

struct StartupCheck {
    config: ClientConfig,
    timeout: Duration,
    bootstrap: String,
    topics: Vec<(String, String)>,
    /// (listener id, group, one of its topics): the group's offsets must be readable.
    groups: Vec<(String, String, String)>,
}

/// Remembers the first authentication or TLS failure librdkafka reports: a metadata request
/// alone only says "transport failure" and would be retried until the deadline.
#[derive(Default)]
struct CheckContext {
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
    fn run(self) -> Result<()> {
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
        for (id, topic) in &self.topics {
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
            if !named.as_ref().is_some_and(present) {
                return Err(Error::MissingTopic {
                    id: id.clone(),
                    topic: topic.clone(),
                    bootstrap: self.bootstrap.clone(),
                });
            }
        }
        for (id, group, topic) in &self.groups {
            self.check_group(id, group, topic)?;
        }
        Ok(())
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
    fn check_group(&self, id: &str, group: &str, topic: &str) -> Result<()> {
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
                Ok(_) => return Ok(()),
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
        Ok(())
    }
}

/// A running application: its containers, producer and (if configured) embedded cluster.
#[derive(Debug)]
pub struct Application {
    registry: ListenerRegistry,
    containers: Vec<ListenerContainer>,
    producer: ProducerTemplate,
    embedded: Option<EmbeddedCluster>,
    bootstrap: String,
    shutdown_timeout: Duration,
    /// `kafka.template.close-timeout`.
    close_timeout: Option<Duration>,
}

/// The outcome of a graceful shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Totals over every listener.
    pub listeners: ContainerReport,
    /// Records the producer could not deliver before the flush deadline.
    pub unflushed: i32,
    /// How long shutdown took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Nothing failed to commit or flush, and every consumer made its final commit (one that
    /// committed but was still leaving the group at the deadline does not count against it).
    pub fn is_clean(&self) -> bool {
        self.listeners.commit_failures == 0
            && self.listeners.consumers_not_closed == 0
            && self.listeners.consumers_died == 0
            && self.unflushed == 0
    }
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.listeners;
        write!(
            f,
            "shutdown in {:.1?}: {} records finished ({} skipped by the recoverer), {} partitions committed, {} records redeliverable, {} commit failures, {} handlers cut off, {} unflushed sends",
            self.elapsed, l.finished, l.recovered, l.committed_partitions, l.redeliverable, l.commit_failures, l.handlers_cut_off, self.unflushed
        )?;
        if l.consumers_not_closed > 0 {
            write!(
                f,
                ", {} consumers without a final commit by the deadline",
                l.consumers_not_closed
            )?;
        }
        if l.consumers_still_closing > 0 {
            write!(
                f,
                ", {} consumers still leaving the group",
                l.consumers_still_closing
            )?;
        }
        if l.consumers_died > 0 {
            write!(f, ", {} consumers died", l.consumers_died)?;
        }
        Ok(())
    }
}

impl Application {
    /// A builder.
    pub fn builder() -> ApplicationBuilder {
        ApplicationBuilder::default()
    }

    /// The shared producer.
    pub fn producer(&self) -> &ProducerTemplate {
        &self.producer
    }

    /// The bootstrap servers in use (the embedded cluster's when `embedded`).
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The embedded cluster, when `kafka.bootstrap-servers=embedded`.
    pub fn embedded(&self) -> Option<&EmbeddedCluster> {
        self.embedded.as_ref()
    }

    /// A listener's container, by id.
    pub fn container(&self, id: &str) -> Option<&ListenerContainer> {
        self.containers.iter().find(|c| c.listener_id() == id)
    }

    /// The registry of this application's containers.
    pub fn registry(&self) -> &ListenerRegistry {
        &self.registry
    }

    /// Records finished so far by every listener.
    pub fn finished(&self) -> u64 {
        self.containers
            .iter()
            .map(ListenerContainer::finished)
            .sum()
    }

    /// Graceful shutdown: stop fetching, finish in-flight records within each listener's
    /// shutdown timeout, commit what finished, flush the producer, close the consumers.
    pub async fn shutdown(self) -> ShutdownReport {
        let started = Instant::now();
        let Application {
            containers,
            producer,
            embedded,
            shutdown_timeout,
            close_timeout,
            registry,
            ..
        } = self;
        let deadlines: Vec<Instant> = containers
            .iter()
            .map(|c| started + c.properties().shutdown_timeout)
            .collect();
        for (c, d) in containers.iter().zip(&deadlines) {
            c.stop(*d);
        }
        let flush_budget = shutdown_timeout.max(Duration::from_secs(5));
        let (listeners, unflushed) = tokio::task::spawn_blocking(move || {
            let mut total = ContainerReport::default();
            for (c, d) in containers.iter().zip(deadlines) {
                total.merge(&c.wait(d));
            }
            // Handlers may take a `ListenerRegistry` until their containers stopped; after
            // that its clones of the containers (and their producer handles) must go before
            // the embedded cluster does.
            drop(registry);
            drop(containers);
            // Sends that handlers awaited are delivered already; this catches fire-and-forget ones.
            let left = (started + flush_budget).saturating_duration_since(Instant::now());
            let budget = close_timeout.unwrap_or(left.max(Duration::from_secs(1)));
            let unflushed = match producer.flush(budget) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "producer flush incomplete");
                    producer.in_flight().max(1)
                }
            };
            // The cluster goes last: clients still connected to it would log it as lost. Give
            // the tasks that still hold a producer handle (workers winding down, an aborted
            // runner) a moment to drop it.
            if embedded.is_some() {
                let until = Instant::now() + Duration::from_secs(1);
                while producer.handles() > 1 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            drop(producer);
            drop(embedded);
            (total, unflushed)
        })
        .await
        .unwrap_or_default();
        let report = ShutdownReport {
            listeners,
            unflushed,
            elapsed: started.elapsed(),
        };
        if report.is_clean() {
            tracing::info!("{report}");
        } else {
            tracing::error!("{report}");
        }
        report
    }
}
