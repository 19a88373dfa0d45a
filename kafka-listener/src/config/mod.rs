//! Configuration: Spring Boot style `application.properties`.
//!
//! Keys use Spring Boot's `spring.kafka.*` vocabulary under the shorter
//! `kafka.` prefix; `spring.kafka.` is accepted as a synonym, so an existing
//! Spring file can be reused as is.
//!
//! # Where values come from
//!
//! Lowest precedence first; a later layer overrides an earlier one key by key:
//!
//! 1. built-in defaults (table below);
//! 2. the config file: [`LoadOptions::config_file`], or `application.properties`
//!    in the working directory (which may be absent; an explicitly named file
//!    must exist);
//! 3. the profile file, when [`LoadOptions::profile`] is set: the config
//!    file's name with `-<profile>` appended to the stem, next to it
//!    (`application-dev.properties`); it must exist;
//! 4. environment variables (see below);
//! 5. `--set key=value` overrides ([`LoadOptions::overrides`]).
//!
//! Files use Java `.properties` syntax (`key=value`, `key: value` or
//! `key value`; `#`/`!` comments; a trailing `\` continues a line; `\t`, `\n`,
//! `\uXXXX` and `\=` style escapes) but are read as UTF-8. Values are trimmed.
//! Keys outside `kafka.*`/`spring.kafka.*` (`server.port`, `logging.level.x`, ...)
//! are allowed and ignored, except that placeholders can refer to them.
//!
//! Every `kafka.*` key is checked when loading: a key that is not in the
//! table below (and not a passthrough or per-listener key) is an error with a
//! "did you mean" suggestion, and every value is checked against its type.
//! All problems are reported together, each with the file and line (or
//! environment variable, or flag) it came from.
//!
//! ## Environment variables
//!
//! As in Spring Boot's relaxed binding, every key in the table can be set by
//! an environment variable named like the key in upper case with `.` and `-`
//! replaced by `_`: `KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_LISTENER_RETRY_ATTEMPTS`.
//! `SPRING_KAFKA_...` works too (`KAFKA_...` wins if both are set).
//! Passthrough properties: `KAFKA_PROPERTIES_<NAME>`,
//! `KAFKA_CONSUMER_PROPERTIES_<NAME>`, `KAFKA_PRODUCER_PROPERTIES_<NAME>` and
//! `KAFKA_ADMIN_PROPERTIES_<NAME>`, where `<NAME>` is the librdkafka property
//! in upper case with `_` for `.` (`KAFKA_CONSUMER_PROPERTIES_FETCH_MIN_BYTES`
//! sets `fetch.min.bytes`). Per listener: `KAFKA_LISTENER_<ID>_<KEY>`
//! (`KAFKA_LISTENER_ON_ORDER_CONCURRENCY=4`). Other `KAFKA_*` variables are
//! ignored, since they often configure something else (a broker, a script).
//!
//! ## Placeholders
//!
//! `${NAME}` and `${NAME:default}` in a value are replaced by the value of
//! the configuration key `NAME` (any key, after layering), else the
//! environment variable `NAME`, else the default; otherwise loading fails.
//! Placeholders nest (`${A:${B:x}}`) and may refer to values with
//! placeholders; loops are reported. `\${` is a literal `${` (in a
//! `.properties` file that is written `\\${`, since the file format consumes
//! one backslash).
//!
//! ## Secrets
//!
//! Values of keys containing `password`, `secret`, `sasl.`, `ssl.key` or
//! `token` (in any case) are shown as `******` in [`Config::dump`], in `Debug`
//! output and in every error message.
//!
//! # Keys
//!
//! Durations are written `500ms`, `30s`, `1m`, `1h 30m` (humantime syntax); a
//! bare number is milliseconds, as in Spring Boot. Sizes are bytes, optionally
//! with `KB`, `MB` or `GB` (powers of 1024). Enum values are case-insensitive
//! and `-`/`_` are interchangeable (`MANUAL_IMMEDIATE`, `manual-immediate`).
//! For optional text keys, an empty value means "not set".
//!
//! | Key | Default | Meaning |
//! |-----|---------|---------|
//! | `kafka.bootstrap-servers` | `localhost:9092` | Brokers, comma-separated `host:port` list. `embedded` runs an in-process mock cluster. |
//! | `kafka.client-id` | — | Client id for all clients, unless a section sets its own. |
//! | `kafka.properties.<name>` | — | Raw librdkafka property for every client (`kafka.properties.security.protocol=SSL`). The Java client's names that librdkafka spells differently are translated: `sasl.jaas.config` (SCRAM, PLAIN, unsecured OAUTHBEARER), `ssl.truststore.*`, `ssl.keystore.*`, an empty `ssl.endpoint.identification.algorithm`. |
//! | `kafka.security.protocol` | — | `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`. |
//! | `kafka.ssl.trust-store-location` | — | CA certificates the broker's certificate must be signed by: a PEM file (`file:` prefix allowed). PKCS12 and JKS trust stores are refused with the command that converts them. |
//! | `kafka.ssl.trust-store-type` | — | `PEM` (inferred from `.pem`, `.crt`, `.cer`). |
//! | `kafka.ssl.trust-store-password` | — | Accepted for Spring compatibility; a PEM trust store has none. |
//! | `kafka.ssl.trust-store-certificates` | — | The CA certificates themselves, PEM text. |
//! | `kafka.ssl.key-store-location` | — | The client's certificate and key for mutual TLS: PKCS12 (`.p12`, `.pfx`) or one PEM file holding both. |
//! | `kafka.ssl.key-store-type` | — | `PKCS12` or `PEM` (inferred from the file name). |
//! | `kafka.ssl.key-store-password` | — | Password of a PKCS12 key store. Secret. |
//! | `kafka.ssl.key-store-certificate-chain` | — | The client certificate chain, PEM text. |
//! | `kafka.ssl.key-store-key` | — | The client's private key, PEM text. Secret. |
//! | `kafka.ssl.key-password` | — | Password of the private key. Secret. |
//! | `kafka.jaas.enabled` | — | `true`: SASL credentials come from `kafka.jaas.login-module` and `kafka.jaas.options.*`. |
//! | `kafka.jaas.login-module` | — | `…ScramLoginModule`, `…PlainLoginModule` (options `username`, `password`) or `…OAuthBearerLoginModule` (option `unsecuredLoginStringClaim_sub`). |
//! | `kafka.jaas.control-flag` | — | Accepted for Spring compatibility (`required`). |
//! | `kafka.jaas.options.<name>` | — | Options of the login module (`username`, `password`). |
//! | `kafka.consumer.group-id` | — | Consumer group of listeners that do not name one. |
//! | `kafka.consumer.client-id` | — | Client id of consumers. |
//! | `kafka.consumer.auto-offset-reset` | `earliest` | `earliest`, `latest` or `none` (fail): where a group without committed offsets starts. **Differs from Kafka and Spring (`latest`)** so that a new group does not silently skip records produced before it first joined. |
//! | `kafka.consumer.enable-auto-commit` | — | Only `false`: offsets are committed by the listener container according to `ack-mode`, for finished records only; `true` is refused. |
//! | `kafka.consumer.max-poll-records` | `500` | Most records handed to a batch listener at once. |
//! | `kafka.consumer.fetch-min-size` | — | Size: least data the broker should return for a fetch (`fetch.min.bytes`). When unset the container uses 4 KiB, not librdkafka's 1 byte: at moderate rates a fetch per record or two costs the client and the broker far more CPU and, on a busy machine, latency (see BENCHMARKS.md). |
//! | `kafka.consumer.fetch-max-wait` | — | Duration: longest the broker waits to reach `fetch-min-size` (`fetch.wait.max.ms`). When unset the container uses 10 ms, not librdkafka's 500 ms: it bounds what `fetch-min-size` adds to latency when traffic is sparse; an idle consumer sends a fetch this often. |
//! | `kafka.consumer.heartbeat-interval` | — | Duration between group heartbeats (`heartbeat.interval.ms`). |
//! | `kafka.consumer.isolation-level` | — | `read_committed` or `read_uncommitted`. |
//! | `kafka.consumer.properties.<name>` | — | Raw librdkafka property for consumers. |
//! | `kafka.producer.client-id` | — | Client id of producers. |
//! | `kafka.producer.acks` | `all` | `all` (or `-1`), `1` or `0`: replicas that must confirm a record. |
//! | `kafka.producer.batch-size` | — | Size: largest batch per partition (`batch.size`). |
//! | `kafka.producer.buffer-memory` | — | Size: memory for records waiting to be sent. |
//! | `kafka.producer.compression-type` | — | `none`, `gzip`, `snappy`, `lz4` or `zstd`. |
//! | `kafka.producer.retries` | — | How often a failed send is retried (`0`, `1`, ...). |
//! | `kafka.producer.transaction-id-prefix` | — | Transactions: not supported yet, rejected at start-up. |
//! | `kafka.producer.linger` | — | Duration: how long a record may wait for others to fill its batch (`linger.ms`; librdkafka's default is 5 ms). |
//! | `kafka.producer.properties.<name>` | — | Raw librdkafka property for producers. `max.block.ms` (the Java client's) is understood here: how long a send waits while the producer's buffer is full (default 60 s, as Java's), then fails with a clear error; nothing queues without bound. |
//! | `kafka.template.default-topic` | — | The topic of `ProducerTemplate::send_default` (Spring's `KafkaTemplate.sendDefault`). |
//! | `kafka.template.close-timeout` | — | Duration: how long shutdown waits for the producer's records in flight (default: what is left of `kafka.listener.shutdown-timeout`, at least 1 s). |
//! | `kafka.admin.operation-timeout` | `10s` | Duration: timeout of admin requests (topic checks). |
//! | `kafka.admin.properties.<name>` | — | Raw librdkafka property for the admin client. |
//! | `kafka.admin.auto-create` | `false` | At start-up, create what is missing: every retry topic and dead-letter topic (with at least as many partitions as its source topic), and the listener topics that declare `new-topic.*`. Existing topics are checked, never altered. Spring Boot's `spring.kafka.admin.auto-create` (there on by default, for declared `NewTopic`s). |
//! | `kafka.logging.format` | `text` | `json` for one JSON object a line (the record span's fields included), for log pipelines. Levels come from `RUST_LOG`, or when it is not set from Spring Boot's `logging.level.<target>` keys (`logging.level.root=warn`, `logging.level.kafka_listener=debug`; dots read as `::`). Service binaries (`kafka_listener::run`) only. |
//! | `kafka.management.port` | — | The management endpoint's port (`/health/live`, `/health/ready`, `/metrics`, the status page at `/`); off unless set, `0` for any free port. |
//! | `kafka.management.address` | `127.0.0.1` | The address the management endpoint binds (`0.0.0.0` to reach it from outside the host or pod). |
//! | `kafka.management.lag-interval` | `5s` | Duration: how often the per-partition lag and timing gauges are refreshed (librdkafka's `statistics.interval.ms` on the consumers, set only while the endpoint is on). |
//! | `kafka.management.token` | — | Status-page actions (pause, resume, stop, start, reset the breaker) need `Authorization: Bearer <token>`; without a token they are refused. Secret. |
//! | `kafka.listener.ack-mode` | `batch` | When offsets are committed: `record`, `batch`, `time`, `count`, `count_time`, `manual`, `manual_immediate` (see [`AckMode`]). |
//! | `kafka.listener.ack-count` | `1` | Records between commits in `count` and `count_time` modes. |
//! | `kafka.listener.ack-time` | `5s` | Duration between commits in `time` and `count_time` modes. |
//! | `kafka.listener.concurrency` | — | Consumers per listener (1, 2, ...); when unset the listener's own setting, or 1, applies. |
//! | `kafka.listener.concurrency-per-partition` | — | Record listeners: records of one partition handled at once, at most one per key, each key's records in offset order (1, 2, ...); when unset the listener's own setting, or 1 (one record at a time), applies. Commits stay below the lowest unfinished record; records finished above it are delivered again after a rebalance or restart. Records without a key share one lane. |
//! | `kafka.listener.poll-timeout` | `100ms` | Longest one poll waits for records when none arrive (greater than zero). At most 100 ms takes effect: the consumer thread serves seeks, nacks, pauses and commits between polls; a larger value (Spring's default is 5 s) is logged at start-up and treated as 100 ms. |
//! | `kafka.listener.shutdown-timeout` | `30s` | Duration shutdown waits for running handlers. |
//! | `kafka.listener.revoke-timeout` | `15s` | Duration a rebalance waits for running handlers of revoked partitions. |
//! | `kafka.listener.missing-topics-fatal` | `true` | Fail at startup when a topic does not exist. |
//! | `kafka.listener.auto-startup` | — | `false` registers listeners without starting them; when unset the listener's own setting applies. |
//! | `kafka.listener.group-id` | — | Consumer group; useful per listener. |
//! | `kafka.listener.retry.attempts` | `10` | Delivery attempts per record, the first included, before it is given up (as Spring's `DefaultErrorHandler`). |
//! | `kafka.listener.retry.backoff.delay` | `1s` | The pause after the first failed attempt (and every pause, with the default multiplier). |
//! | `kafka.listener.retry.backoff.multiplier` | `1` | Each further pause is the previous one times this (≥ 1; `2` doubles it). Spring Boot's name for its retry topics' back-off. |
//! | `kafka.listener.retry.backoff.max-delay` | `30s` | The longest pause (never below `delay`). |
//! | `kafka.listener.retry.backoff.random` | `false` | Draw each pause at random between half of it and all of it, so partitions that failed together do not retry in step. |
//! | `kafka.listener.delivery-attempt-header` | `false` | Record listeners see each call's delivery attempt (1, 2, ...) as a `kafka_deliveryAttempt` header, a 4-byte big-endian integer (Spring's `deliveryAttemptHeader`); the `DeliveryAttempt` extractor has it either way. |
//! | `kafka.listener.new-topic.partitions` | — | Declares the listener's topics for `kafka.admin.auto-create`: their partitions (Spring's `TopicBuilder.partitions`). |
//! | `kafka.listener.new-topic.replicas` | — | Their replication factor (default: the broker's `default.replication.factor`). |
//! | `kafka.listener.new-topic.configs` | — | Their topic configs, `name=value` pairs separated by commas (`retention.ms=604800000,cleanup.policy=compact`). |
//! | `kafka.listener.retry-topic.enabled` | `false` | Retry failed records through retry topics instead of in place (Spring's `@RetryableTopic`): `<topic>-retry-0`, `-retry-1`, ... (or shared topics, see `same-interval-topic-reuse`) then `<topic>-dlt`, consumed by a second container `<id>-retry` with the same handler; the main topic is not held up (per-key order is given up). Record listeners on named topics; the topics must exist. See `kafka_listener::retry_topic`. |
//! | `kafka.listener.retry-topic.attempts` | `3` | Calls in all, the first on the main topic included: `attempts - 1` retries (a topic each, unless shared). |
//! | `kafka.listener.retry-topic.backoff.delay` | `1s` | How long after its failure a record is due on the first retry topic. |
//! | `kafka.listener.retry-topic.backoff.multiplier` | `1` | Each further retry topic's delay is the previous one times this. |
//! | `kafka.listener.retry-topic.backoff.max-delay` | `30s` | The longest delay. |
//! | `kafka.listener.retry-topic.same-interval-topic-reuse` | `multiple-topics` | `single-topic`: retries whose delay equals the one before share its topic (Spring's `SameIntervalTopicReuseStrategy`; a fixed delay with two or more retries then has one topic, `<topic>-retry`). The default keeps a topic per retry, unlike `@RetryableTopic` since spring-kafka 3.2 (see the README). |
//! | `kafka.listener.dead-letter.enabled` | `false` | Records the retries gave up on are published to a dead-letter topic (with Spring's `kafka_dlt-*` headers) instead of being logged and skipped. The offset moves past such a record only once the broker acknowledged its dead letter; a publish that fails is tried again (1 s, doubling up to 30 s) while the partition waits. |
//! | `kafka.listener.dead-letter.topic` | — | The dead-letter topic (default `{topic}.DLT`); `{topic}` stands for the failed record's topic. A missing one holds the partition (and says so in the log) until it exists; a broker with `auto.create.topics.enable=true` creates it on the first dead letter (with its default partition count), as it would for a Spring service. |
//! | `kafka.listener.circuit-breaker.consecutive` | — | Trip the listener's circuit breaker when this many records in a row were given up (dead-lettered or skipped): every partition of the listener pauses instead of draining the topic into the dead-letter topic. |
//! | `kafka.listener.circuit-breaker.ratio` | — | Trip it when more than this share (`0.5`) of the last `window` records was given up. |
//! | `kafka.listener.circuit-breaker.window` | `100` | Records the ratio is taken over (the breaker waits for that many before judging). |
//! | `kafka.listener.circuit-breaker.reset-after` | — | Close a tripped breaker on its own after this long (default: only by command, `ListenerRegistry::reset_circuit_breaker`). |
//! | `kafka.listener.max-buffered-bytes` | `64MB` | Memory budget per assigned partition for records fetched and not yet finished (keys, values, headers): each partition has a librdkafka queue of its own, prefetched up to an eighth of it (`queued.max.messages.kbytes`, at least 1 MiB), and its worker takes chunks of at most an eighth of it (and at most `max-poll-records` records). A full queue simply stops being fetched: no partition is paused for back-pressure. A consumer's peak is therefore about assigned partitions × a quarter of the budget; lower it for consumers with many partitions. |
//! | `kafka.listener.<id>.<key>` | — | Any `kafka.listener.*` key above, for the listener with id `<id>` only. It beats the global key whatever layer either comes from. |
//!
//! Spring's `kafka.consumer.key-deserializer`, `value-deserializer` and
//! `kafka.producer.key-serializer`, `value-serializer` are rejected: payload
//! types are chosen by the handler's extractor arguments (`Json<T>`,
//! `String`, `Vec<u8>`).

mod error;
mod placeholder;
mod properties;
mod schema;
mod security;
mod settings;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use settings::{
    AckMode, Acks, AdminSettings, AutoOffsetReset, ConsumerSettings, IsolationLevel,
    ListenerSettings, ManagementSettings, ParseEnumError, Passthrough, ProducerSettings, Settings,
};

use schema::{KeyClass, KeyDef};

/// The config file read when [`LoadOptions::config_file`] is `None`.
pub const DEFAULT_CONFIG_FILE: &str = "application.properties";

/// What secret values are replaced with wherever they would be shown.
pub(crate) const MASK: &str = "******";

/// How to load a [`Config`].
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// The config file; `None` means [`DEFAULT_CONFIG_FILE`] in the working
    /// directory, which may be missing (defaults apply). A file named here
    /// must exist.
    pub config_file: Option<PathBuf>,
    /// A profile: also loads `<stem>-<profile>.<ext>` next to the config file
    /// (`application-dev.properties`), which must exist.
    pub profile: Option<String>,
    /// `--set key=value` items; they take precedence over everything else.
    pub overrides: Vec<String>,
    /// The environment. Passed in rather than read so that tests (and
    /// embedders) control it; see [`LoadOptions::with_process_env`].
    pub env: Vec<(String, String)>,
}

impl LoadOptions {
    /// Sets [`LoadOptions::env`] to this process's environment. Variables
    /// that are not valid Unicode are skipped (none of ours can be).
    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        self
    }
}

// Hand-written: the environment is full of other programs' secrets and
// overrides may carry ours, so neither may end up in a log via `{:?}`.
impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let overrides: Vec<String> = self.overrides.iter().map(|arg| mask_arg(arg)).collect();
        f.debug_struct("LoadOptions")
            .field("config_file", &self.config_file)
            .field("profile", &self.profile)
            .field("overrides", &overrides)
            .field("env", &format_args!("[{} variables]", self.env.len()))
            .finish()
    }
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// The built-in default.
    Default,
    /// A line of a config file (displayed `path:line`).
    File {
        /// The file as named (relative paths stay relative).
        path: PathBuf,
        /// 1-based line where the entry starts.
        line: usize,
    },
    /// An environment variable (displayed `env NAME`).
    Env {
        /// The variable's name.
        var: String,
    },
    /// A `--set` override (displayed `--set key=value`).
    Flag {
        /// The argument as given, with the value masked for secret keys.
        arg: String,
    },
    /// [`Config::from_pairs`] (displayed `code key=value`).
    Code {
        /// The pair as `key=value`, with the value masked for secret keys.
        pair: String,
    },
}

impl Source {
    /// Layer order, for comparing a per-listener environment variable with a
    /// per-listener key (everything else is layered by overwriting), and for
    /// sorting errors.
    fn rank(&self) -> u8 {
        match self {
            Source::Default => 0,
            Source::File { .. } => FILE_RANK,
            Source::Env { .. } => 2,
            Source::Flag { .. } | Source::Code { .. } => FLAG_RANK,
        }
    }
}

const FILE_RANK: u8 = 1;
const FLAG_RANK: u8 = 3;

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env { var } => write!(f, "env {var}"),
            Source::Flag { arg } => write!(f, "--set {arg}"),
            Source::Code { pair } => write!(f, "code {pair}"),
        }
    }
}

/// One effective value.
#[derive(Debug, Clone)]
struct Entry {
    /// As written (trimmed), placeholders unresolved.
    raw: String,
    /// Placeholders resolved (once `resolved`).
    value: String,
    source: Source,
    /// Whether placeholder resolution succeeded; a value whose placeholders
    /// failed already has an error and is not type-checked on top of it.
    resolved: bool,
}

impl Entry {
    fn new(value: &str, source: Source) -> Self {
        let value = value.trim();
        Entry {
            raw: value.to_owned(),
            value: value.to_owned(),
            source,
            resolved: false,
        }
    }
}

/// A `KAFKA_LISTENER_<ID>_<KEY>` variable, kept until the listener ids are
/// known (they are only registered when the application starts).
#[derive(Debug, Clone)]
struct ListenerEnv {
    /// `<ID>` as written in the variable name.
    id: String,
    def: &'static KeyDef,
    entry: Entry,
}

impl ListenerEnv {
    fn matches(&self, id: &str) -> bool {
        schema::env_name(id) == self.id
    }

    /// The key this variable stands for, as an error or dump would show it.
    fn key(&self) -> String {
        listener_key(&self.id.to_ascii_lowercase(), self.def)
    }
}

fn listener_key(id: &str, def: &KeyDef) -> String {
    format!(
        "{}{id}.{}",
        schema::LISTENER_PREFIX,
        schema::listener_suffix(def)
    )
}

/// Loaded, layered, validated configuration.
///
/// Build typed [`Settings`] from it with [`Config::settings`]; keep it around
/// to explain where a value came from ([`Config::source_of`]) and to resolve
/// placeholders in listener attributes ([`Config::resolve_placeholders`]).
#[derive(Clone)]
pub struct Config {
    /// Our keys, normalized to the `kafka.` prefix.
    entries: BTreeMap<String, Entry>,
    /// Everything else from files and flags; only read by placeholders.
    others: BTreeMap<String, Entry>,
    env: BTreeMap<String, String>,
    listener_env: Vec<ListenerEnv>,
}

impl Config {
    /// Loads configuration from all layers (see the [module docs](self)),
    /// resolves placeholders and validates every `kafka.*` key and value.
    ///
    /// # Errors
    ///
    /// Every problem found, as one [`ConfigError`] (a [`ConfigError::Many`]
    /// when there are several).
    pub fn load(options: &LoadOptions) -> Result<Config, ConfigError> {
        Builder::load_with_default(options, Path::new(DEFAULT_CONFIG_FILE))
    }

    /// Configuration from literal pairs, for tests and embedding: defaults
    /// plus these pairs, validated like a loaded file. No environment is
    /// consulted.
    ///
    /// # Errors
    ///
    /// As [`Config::load`].
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut builder = Builder::new(&[]);
        for (key, value) in pairs {
            let pair = mask_arg(&format!("{key}={value}"));
            builder.insert(key, value, Source::Code { pair });
        }
        builder.finish()
    }

    /// The effective value of a key (placeholders resolved). `spring.kafka.`
    /// keys are looked up as `kafka.`; keys that are not ours (`server.port`)
    /// are answered too. Keys with only a built-in default have that value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lookup_entry(key).map(|entry| entry.value.as_str())
    }

    /// Keys that are not ours starting with `prefix` (`logging.level.`), with the prefix
    /// taken off, and their values (placeholders resolved), sorted.
    pub fn prefixed(&self, prefix: &str) -> Vec<(String, String)> {
        self.others
            .iter()
            .filter_map(|(k, e)| Some((k.strip_prefix(prefix)?.to_owned(), e.value.clone())))
            .collect()
    }

    /// Where the effective value of a key came from; see [`Config::get`].
    /// For `kafka.listener.<id>.<key>` this includes `KAFKA_LISTENER_<ID>_<KEY>`.
    pub fn source_of(&self, key: &str) -> Option<&Source> {
        self.lookup_entry(key).map(|entry| &entry.source)
    }

    fn lookup_entry(&self, key: &str) -> Option<&Entry> {
        let Some(key) = normalize(key) else {
            return self.others.get(key);
        };
        let entry = self.entries.get(&key);
        if let KeyClass::PerListener { id, def } = schema::classify(&key) {
            return self.effective_listener_entry(id, def, entry);
        }
        entry
    }

    /// The per-listener entry that wins between a key and an environment variable.
    fn effective_listener_entry<'a>(
        &'a self,
        id: &str,
        def: &KeyDef,
        key_entry: Option<&'a Entry>,
    ) -> Option<&'a Entry> {
        let env_entry = self
            .listener_env
            .iter()
            .filter(|l| std::ptr::eq(l.def, def) && l.matches(id))
            .map(|l| &l.entry)
            .next_back();
        match (key_entry, env_entry) {
            (Some(k), Some(e)) => Some(if e.source.rank() > k.source.rank() {
                e
            } else {
                k
            }),
            (k, e) => k.or(e),
        }
    }

    /// Typed settings, with the effective [`ListenerSettings`] of each of
    /// `listener_ids`.
    ///
    /// # Errors
    ///
    /// Per-listener keys or `KAFKA_LISTENER_<ID>_<KEY>` variables whose id is
    /// not among `listener_ids` (with a suggestion), all at once.
    pub fn settings(&self, listener_ids: &[&str]) -> Result<Settings, ConfigError> {
        let mut errors = Vec::new();
        let known: Box<[String]> = listener_ids.iter().map(|id| (*id).to_owned()).collect();
        let unknown = |origin: &Source, key: String, id: &str| ConfigError::UnknownListener {
            origin: origin.clone(),
            key,
            id: id.to_owned(),
            suggestion: schema::suggest(id, listener_ids.iter().copied()).map(str::to_owned),
            known: known.clone(),
        };
        for (key, entry) in &self.entries {
            if let KeyClass::PerListener { id, .. } = schema::classify(key) {
                if !listener_ids.contains(&id) {
                    errors.push(unknown(&entry.source, key.clone(), id));
                }
            }
        }
        for var in &self.listener_env {
            if !listener_ids.iter().any(|id| var.matches(id)) {
                errors.push(unknown(
                    &var.entry.source,
                    var.key(),
                    &var.id.to_ascii_lowercase(),
                ));
            }
        }
        let (settings, more) = settings::build(self, listener_ids);
        errors.extend(more);
        match ConfigError::combine(errors) {
            Some(error) => Err(error),
            None => Ok(settings),
        }
    }

    /// Resolves `${NAME}` / `${NAME:default}` placeholders in `text` against
    /// this configuration and the environment it was loaded with, e.g. a
    /// listener attribute `"${ORDERS_TOPIC:orders}"`. `origin` says where
    /// `text` came from in errors, e.g. `#[kafka_listener] on_order topics`.
    ///
    /// # Errors
    ///
    /// An unresolvable placeholder, a cycle, or a malformed placeholder.
    pub fn resolve_placeholders(&self, text: &str, origin: &str) -> Result<String, ConfigError> {
        placeholder::resolve(text, origin, &Names { config: self })
    }

    /// Every effective `kafka.*` value as `key = value   # source` lines,
    /// sorted by key, secrets masked. Meant for a `--dump-config` flag.
    pub fn dump(&self) -> String {
        let mut effective: BTreeMap<String, &Entry> =
            self.entries.iter().map(|(k, e)| (k.clone(), e)).collect();
        for var in &self.listener_env {
            let key = var.key();
            let replace = effective
                .get(&key)
                .is_none_or(|existing| var.entry.source.rank() > existing.source.rank());
            if replace {
                effective.insert(key, &var.entry);
            }
        }
        let lines: Vec<(String, String)> = effective
            .iter()
            .map(|(key, entry)| {
                let value = if must_mask(key, &entry.raw) || self.reaches_secret(&entry.raw, 0) {
                    MASK
                } else {
                    entry.value.as_str()
                };
                (format!("{key} = {value}"), entry.source.to_string())
            })
            .collect();
        let width = lines
            .iter()
            .map(|(kv, _)| kv.chars().count())
            .max()
            .unwrap_or(0);
        lines
            .iter()
            .map(|(kv, source)| format!("{kv:<width$}   # {source}\n"))
            .collect()
    }
}

impl settings::Values for Config {
    fn value(&self, key: &str) -> Option<(&str, &Source)> {
        self.entries.get(key).map(|e| (e.value.as_str(), &e.source))
    }

    fn passthrough(&self, prefix: &str) -> Vec<Passthrough> {
        self.entries
            .range(prefix.to_owned()..)
            .map_while(|(key, entry)| {
                let name = key.strip_prefix(prefix)?;
                Some(Passthrough {
                    key: name.to_owned(),
                    value: entry.value.clone(),
                    source: entry.source.clone(),
                })
            })
            .collect()
    }

    fn listener_values(&self, id: &str) -> Vec<(&'static KeyDef, &str, &Source)> {
        schema::listener_keys()
            .filter_map(|def| {
                let entry = self.effective_listener_entry(
                    id,
                    def,
                    self.entries.get(&listener_key(id, def)),
                )?;
                Some((def, entry.value.as_str(), &entry.source))
            })
            .collect()
    }
}

// The placeholder resolver's view of a `Config`.
struct Names<'c> {
    config: &'c Config,
}

impl placeholder::Lookup for Names<'_> {
    fn key(&self, name: &str) -> Option<(&str, String)> {
        let (key, entry) = match normalize(name) {
            Some(key) => {
                let (key, entry) = self.config.entries.get_key_value(&key)?;
                (key.as_str(), entry)
            }
            None => {
                let (key, entry) = self.config.others.get_key_value(name)?;
                (key.as_str(), entry)
            }
        };
        Some((entry.raw.as_str(), format!("{}: {key}", entry.source)))
    }

    fn env(&self, name: &str) -> Option<&str> {
        self.config.env.get(name).map(String::as_str)
    }
}

/// Accumulates layers and errors.
struct Builder {
    config: Config,
    /// Errors with their position in the layers, so they can be reported in
    /// the order a person reads the configuration rather than the order in
    /// which the checks happen to run.
    errors: Vec<(Order, ConfigError)>,
    /// Files in load order, for [`Order`].
    files: Vec<PathBuf>,
}

/// (layer, file index, line).
type Order = (u8, usize, usize);

impl Builder {
    /// [`Config::load`], with the default config file as a parameter so tests
    /// do not depend on the working directory.
    fn load_with_default(
        options: &LoadOptions,
        default_file: &Path,
    ) -> Result<Config, ConfigError> {
        let mut builder = Builder::new(&options.env);
        let (main, explicit) = match &options.config_file {
            Some(path) => (path.as_path(), true),
            None => (default_file, false),
        };
        builder.file(main, !explicit);
        if let Some(profile) = &options.profile {
            builder.file(&profile_file(main, profile), false);
        }
        builder.environment(&options.env);
        for arg in &options.overrides {
            builder.flag(arg);
        }
        builder.finish()
    }

    fn new(env: &[(String, String)]) -> Self {
        let entries = schema::KEYS
            .iter()
            .filter_map(|def| {
                Some((
                    def.key.to_owned(),
                    Entry::new(def.default?, Source::Default),
                ))
            })
            .collect();
        Builder {
            config: Config {
                entries,
                others: BTreeMap::new(),
                env: env.iter().cloned().collect(),
                listener_env: Vec::new(),
            },
            errors: Vec::new(),
            files: Vec::new(),
        }
    }

    fn order(&self, source: &Source) -> Order {
        match source {
            Source::File { path, line } => self.file_order(path, *line),
            other => (other.rank(), 0, 0),
        }
    }

    fn file_order(&self, path: &Path, line: usize) -> Order {
        let index = self.files.iter().position(|f| f == path);
        (FILE_RANK, index.unwrap_or(self.files.len()), line)
    }

    /// Records an error that carries its own location.
    fn push(&mut self, error: ConfigError) {
        let order = match &error {
            ConfigError::UnknownKey { origin, .. }
            | ConfigError::Unsupported { origin, .. }
            | ConfigError::InvalidValue { origin, .. }
            | ConfigError::UnknownListener { origin, .. } => self.order(origin),
            ConfigError::Io { path, .. } => self.file_order(path, 0),
            ConfigError::Parse { path, line, .. } => self.file_order(path, *line),
            // `--set` syntax errors; placeholder errors are ordered by their caller.
            _ => (FLAG_RANK, 0, 0),
        };
        self.errors.push((order, error));
    }

    /// Reads one file; `optional` makes a missing file fine.
    fn file(&mut self, path: &Path, optional: bool) {
        self.files.push(path.to_path_buf());
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if optional && e.kind() == io::ErrorKind::NotFound => return,
            Err(error) => {
                self.push(ConfigError::Io {
                    path: path.to_path_buf(),
                    error,
                });
                return;
            }
        };
        match properties::parse(&bytes, path) {
            Ok(entries) => {
                for entry in entries {
                    let source = Source::File {
                        path: path.to_path_buf(),
                        line: entry.line,
                    };
                    self.insert(&entry.key, &entry.value, source);
                }
            }
            Err(error) => self.push(error),
        }
    }

    /// Adds a key/value from a file, flag or code; checks that `kafka.*` keys are known.
    fn insert(&mut self, key: &str, value: &str, source: Source) {
        let Some(normalized) = normalize(key) else {
            self.config
                .others
                .insert(key.to_owned(), Entry::new(value, source));
            return;
        };
        match schema::classify(&normalized) {
            KeyClass::Known(_) | KeyClass::Passthrough { .. } | KeyClass::PerListener { .. } => {
                self.config
                    .entries
                    .insert(normalized, Entry::new(value, source));
            }
            KeyClass::Unsupported(reason) => self.push(ConfigError::Unsupported {
                origin: source,
                key: key.to_owned(),
                reason,
            }),
            KeyClass::Unknown => self.push(ConfigError::UnknownKey {
                origin: source,
                key: key.to_owned(),
                suggestion: schema::suggest_key(&normalized).map(|suggestion| {
                    // Answer in the user's own spelling of the prefix.
                    if key.starts_with(schema::SPRING_PREFIX) {
                        format!("spring.{suggestion}")
                    } else {
                        suggestion
                    }
                }),
            }),
        }
    }

    fn flag(&mut self, arg: &str) {
        let Some((key, value)) = arg
            .split_once('=')
            .filter(|(key, _)| !key.trim().is_empty())
        else {
            self.push(ConfigError::BadOverride {
                arg: arg.to_owned(),
            });
            return;
        };
        let key = key.trim();
        let source = Source::Flag { arg: mask_arg(arg) };
        // `--set bootstrap-servers=...` would otherwise be accepted as a
        // non-Kafka key and silently do nothing.
        if normalize(key).is_none() {
            let prefixed = format!("{}{key}", schema::PREFIX);
            if !matches!(schema::classify(&prefixed), KeyClass::Unknown) {
                self.push(ConfigError::UnknownKey {
                    origin: source,
                    key: key.to_owned(),
                    suggestion: Some(prefixed),
                });
                return;
            }
        }
        self.insert(key, value, source);
    }

    /// Applies the environment layer (see the module docs for the naming rules).
    fn environment(&mut self, env: &[(String, String)]) {
        let known: HashMap<String, &'static KeyDef> = schema::KEYS
            .iter()
            .map(|def| (schema::env_name(def.key), def))
            .collect();
        // Sorted, and with `SPRING_KAFKA_` before `KAFKA_`, so the result does
        // not depend on the order of the environment and `KAFKA_` wins.
        let vars: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for spring in [true, false] {
            for (&var, &value) in &vars {
                let name = if spring {
                    match var.strip_prefix("SPRING_") {
                        Some(name) if name.starts_with("KAFKA_") => name,
                        _ => continue,
                    }
                } else if var.starts_with("KAFKA_") {
                    var
                } else {
                    continue;
                };
                let source = Source::Env {
                    var: var.to_owned(),
                };
                if let Some(def) = known.get(name) {
                    self.insert(def.key, value, source);
                } else if let Some(key) = passthrough_from_env(name) {
                    self.insert(&key, value, source);
                } else if let Some((id, def)) = listener_from_env(name) {
                    self.config.listener_env.push(ListenerEnv {
                        id: id.to_owned(),
                        def,
                        entry: Entry::new(value, source),
                    });
                }
                // Any other KAFKA_* variable belongs to someone else.
            }
        }
    }

    /// Resolves placeholders, validates values, and returns the config or all errors.
    fn finish(mut self) -> Result<Config, ConfigError> {
        self.resolve_all();
        self.validate_values();
        // Stable, so errors at the same place keep the order they were found in.
        self.errors.sort_by_key(|(order, _)| *order);
        match ConfigError::combine(self.errors.into_iter().map(|(_, error)| error).collect()) {
            Some(error) => Err(error),
            None => Ok(self.config),
        }
    }

    fn resolve_all(&mut self) {
        // Resolve everything first, then store: `names` borrows the config
        // meanwhile, and resolution works on raw values anyway (it recurses
        // into referenced values itself).
        let names = Names {
            config: &self.config,
        };
        let mut errors = Vec::new();
        let mut keys = Vec::new();
        for (key, entry) in &self.config.entries {
            let at = format!("{}: {key}", entry.source);
            match placeholder::resolve(&entry.raw, &at, &names) {
                Ok(value) => keys.push((key.clone(), value)),
                Err(error) => errors.push((self.order(&entry.source), error)),
            }
        }
        let mut vars = Vec::new();
        for (index, var) in self.config.listener_env.iter().enumerate() {
            let at = format!("{}: {}", var.entry.source, var.key());
            match placeholder::resolve(&var.entry.raw, &at, &names) {
                Ok(value) => vars.push((index, value)),
                Err(error) => errors.push((self.order(&var.entry.source), error)),
            }
        }
        self.errors.extend(errors);
        for (key, value) in keys {
            if let Some(entry) = self.config.entries.get_mut(&key) {
                entry.value = value;
                entry.resolved = true;
            }
        }
        for (index, value) in vars {
            if let Some(var) = self.config.listener_env.get_mut(index) {
                var.entry.value = value;
                var.entry.resolved = true;
            }
        }
    }

    /// Checks every typed value whose placeholders resolved.
    fn validate_values(&mut self) {
        let mut errors = Vec::new();
        let listener_vars = self
            .config
            .listener_env
            .iter()
            .map(|var| (var.key(), var.def, &var.entry));
        let keys =
            self.config
                .entries
                .iter()
                .filter_map(|(key, entry)| match schema::classify(key) {
                    KeyClass::Known(def) | KeyClass::PerListener { def, .. } => {
                        Some((key.clone(), def, entry))
                    }
                    _ => None,
                });
        for (key, def, entry) in keys.chain(listener_vars) {
            if !entry.resolved {
                continue;
            }
            if let Err(expected) = def.kind.validate(&entry.value) {
                let mut error =
                    invalid_value(&entry.source, &key, &entry.value, &entry.raw, expected);
                if self.config.reaches_secret(&entry.raw, 0) {
                    if let ConfigError::InvalidValue { value, .. } = &mut error {
                        if value.is_some() {
                            *value = Some(MASK.to_owned());
                        }
                    }
                }
                errors.push(error);
            }
        }
        for error in errors {
            self.push(error);
        }
    }
}

/// `spring.kafka.x` -> `kafka.x`; `None` for keys that are not ours.
///
/// A prefix in the wrong case (`Kafka.`) still makes the key ours, so it is
/// reported as unknown, with a suggestion, instead of being silently ignored.
fn normalize(key: &str) -> Option<String> {
    if key.starts_with(schema::PREFIX) {
        return Some(key.to_owned());
    }
    for prefix in [schema::SPRING_PREFIX, schema::PREFIX] {
        let head = key.get(..prefix.len())?;
        if head.eq_ignore_ascii_case(prefix) {
            let rest = &key[prefix.len()..];
            return Some(if head == prefix {
                format!("{}{rest}", schema::PREFIX)
            } else {
                key.to_owned()
            });
        }
    }
    None
}

/// `dir/application.properties` + `dev` -> `dir/application-dev.properties`.
fn profile_file(main: &Path, profile: &str) -> PathBuf {
    let stem = main
        .file_stem()
        .map_or_else(|| "application".into(), |s| s.to_string_lossy());
    let name = match main.extension() {
        Some(ext) => format!("{stem}-{profile}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{profile}"),
    };
    main.with_file_name(name)
}

impl Config {
    /// Whether `raw` takes its value, through placeholders (however indirect), from a key or
    /// variable whose name looks secret: `x=${alias}` with `alias=${kafka.properties.sasl.password}`.
    fn reaches_secret(&self, raw: &str, depth: usize) -> bool {
        if depth > 8 {
            return true; // too deep to tell: hide rather than risk showing a secret
        }
        let mut rest = raw;
        while let Some(start) = rest.find("${") {
            rest = &rest[start + 2..];
            let end = rest.find(['}', ':']).unwrap_or(rest.len());
            let name = rest[..end].trim();
            if schema::is_secret(name) {
                return true;
            }
            if let Some(entry) = self.lookup_entry(name) {
                if self.reaches_secret(&entry.raw, depth + 1) {
                    return true;
                }
            }
        }
        false
    }
}

/// `key=value` with the value masked when the key is secret.
fn mask_arg(arg: &str) -> String {
    match arg.split_once('=') {
        Some((key, value)) if must_mask(key, value) => format!("{key}={MASK}"),
        _ => arg.to_owned(),
    }
}

/// Whether a value must be hidden: its key is secret, or it is built from a
/// placeholder whose name looks secret (`group-id=${DB_PASSWORD}`).
fn must_mask(key: &str, raw: &str) -> bool {
    schema::is_secret(key) || (raw.contains("${") && schema::is_secret(raw))
}

/// The error for a value that does not parse, masked as needed.
pub(crate) fn invalid_value(
    source: &Source,
    key: &str,
    value: &str,
    raw: &str,
    expected: String,
) -> ConfigError {
    // A flag already displays `key=value`; repeating it would be noise.
    let shown_by_origin =
        matches!(source, Source::Flag { .. } | Source::Code { .. }) && value == raw;
    let value = if shown_by_origin {
        None
    } else if must_mask(key, raw) {
        Some(MASK.to_owned())
    } else {
        Some(value.to_owned())
    };
    ConfigError::InvalidValue {
        origin: source.clone(),
        key: key.to_owned(),
        value,
        expected,
    }
}

/// `KAFKA_CONSUMER_PROPERTIES_FETCH_MIN_BYTES` -> `kafka.consumer.properties.fetch.min.bytes`.
fn passthrough_from_env(name: &str) -> Option<String> {
    schema::PASSTHROUGH_PREFIXES.iter().find_map(|prefix| {
        let property = name.strip_prefix(&schema::env_name(prefix))?;
        (!property.is_empty()).then(|| {
            format!(
                "{prefix}{}",
                property.to_ascii_lowercase().replace('_', ".")
            )
        })
    })
}

/// `KAFKA_LISTENER_ON_ORDER_ACK_MODE` -> (`ON_ORDER`, ack-mode), preferring
/// the longest key so `X_RETRY_ATTEMPTS` is never id `X_RETRY`.
fn listener_from_env(name: &str) -> Option<(&str, &'static KeyDef)> {
    let rest = name.strip_prefix(&schema::env_name(schema::LISTENER_PREFIX))?;
    schema::listener_keys()
        .filter_map(|def| {
            let suffix = schema::env_name(schema::listener_suffix(def));
            let id = rest.strip_suffix(&suffix)?.strip_suffix('_')?;
            (!id.is_empty()).then_some((id, def, suffix.len()))
        })
        .max_by_key(|(_, _, len)| *len)
        .map(|(id, def, _)| (id, def))
}

// Hand-written so that `{:?}` never prints a secret; shows what `dump` shows.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("effective", &format_args!("{}", self.dump().trim_end()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
