//! Typed settings, the enums they use, and the value parsers.

use std::collections::BTreeMap;
use std::fmt;
use std::num::{IntErrorKind, ParseIntError};
use std::str::FromStr;
use std::time::Duration;

use super::schema::{self, KeyDef};
use super::Source;

/// The typed view of a loaded [`Config`](super::Config), produced by
/// [`Config::settings`](super::Config::settings).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// `kafka.bootstrap-servers`: comma-separated `host:port` list, kept as
    /// written; `embedded` selects the in-process mock cluster.
    pub bootstrap_servers: String,
    /// `kafka.client-id`: client id for all clients unless a section sets its own.
    pub client_id: Option<String>,
    /// `kafka.properties.*`: raw librdkafka properties applied to every client (the Java
    /// client's names translated, see the module docs).
    pub properties: Vec<Passthrough>,
    /// librdkafka properties from Spring's `kafka.security.protocol`, `kafka.ssl.*` and
    /// `kafka.jaas.*`, applied to every client before [`Settings::properties`].
    pub security: Vec<Passthrough>,
    /// `kafka.consumer.*`.
    pub consumer: ConsumerSettings,
    /// `kafka.producer.*`.
    pub producer: ProducerSettings,
    /// `kafka.admin.*`.
    pub admin: AdminSettings,
    /// `kafka.management.*`: the HTTP endpoint (health, metrics, status page).
    pub management: ManagementSettings,
    /// `kafka.listener.*`: defaults for every listener.
    pub listener: ListenerSettings,
    /// The effective settings of every listener id passed to
    /// [`Config::settings`](super::Config::settings): [`Settings::listener`]
    /// overridden by that listener's `kafka.listener.<id>.*` keys.
    pub listeners: BTreeMap<String, ListenerSettings>,
}

/// A raw client property passed through to librdkafka unchanged.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Passthrough {
    /// The property name without the section prefix, e.g. `fetch.min.bytes`.
    pub key: String,
    /// The value (placeholders resolved).
    pub value: String,
    /// Where it was set.
    pub source: Source,
}

// Hand-written so that `{:?}` on settings can never print a password.
impl fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if schema::is_secret(&self.key) {
            super::MASK
        } else {
            &self.value
        };
        f.debug_struct("Passthrough")
            .field("key", &self.key)
            .field("value", &value)
            .field("source", &self.source)
            .finish()
    }
}

/// `kafka.consumer.*` settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConsumerSettings {
    /// `group-id`: consumer group for listeners that set none themselves.
    pub group_id: Option<String>,
    /// `client-id`: overrides `kafka.client-id` for consumers.
    pub client_id: Option<String>,
    /// `auto-offset-reset`: where a group without committed offsets starts.
    pub auto_offset_reset: AutoOffsetReset,
    /// `enable-auto-commit`: only `false` is accepted. The container commits itself, per
    /// the ack mode, only offsets of finished records; a timer commit would pass records still
    /// in progress, so `true` is refused at start-up (also as
    /// `kafka.consumer.properties.enable.auto.commit`).
    pub enable_auto_commit: Option<bool>,
    /// `max-poll-records`: upper bound of a batch handed to a batch listener.
    pub max_poll_records: usize,
    /// `fetch-min-size`: bytes (`fetch.min.bytes`).
    pub fetch_min_size: Option<u64>,
    /// `fetch-max-wait` (`fetch.wait.max.ms`).
    pub fetch_max_wait: Option<Duration>,
    /// `heartbeat-interval` (`heartbeat.interval.ms`).
    pub heartbeat_interval: Option<Duration>,
    /// `isolation-level`.
    pub isolation_level: Option<IsolationLevel>,
    /// `kafka.consumer.properties.*`.
    pub properties: Vec<Passthrough>,
}

/// `kafka.producer.*` settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProducerSettings {
    /// `client-id`: overrides `kafka.client-id` for producers.
    pub client_id: Option<String>,
    /// `acks`.
    pub acks: Acks,
    /// `batch-size`: bytes (`batch.size`).
    pub batch_size: Option<u64>,
    /// `buffer-memory`: bytes of memory for records waiting to be sent.
    pub buffer_memory: Option<u64>,
    /// `compression-type`: one of `none`, `gzip`, `snappy`, `lz4`, `zstd`.
    pub compression_type: Option<String>,
    /// `retries` (`message.send.max.retries`).
    pub retries: Option<u32>,
    /// `transaction-id-prefix`: enables transactions when set.
    pub transaction_id_prefix: Option<String>,
    /// `linger` (`linger.ms`).
    pub linger: Option<Duration>,
    /// `kafka.template.default-topic`: the topic of `send_default`.
    pub default_topic: Option<String>,
    /// `kafka.template.close-timeout`: the flush budget at shutdown.
    pub close_timeout: Option<Duration>,
    /// `kafka.producer.properties.*`.
    pub properties: Vec<Passthrough>,
}

/// `kafka.admin.*` settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AdminSettings {
    /// `operation-timeout`: timeout of admin requests such as topic checks.
    pub operation_timeout: Duration,
    /// `auto-create`: create missing listener topics that declare `new-topic.*`, and every
    /// missing retry and dead-letter topic, at start-up.
    pub auto_create: bool,
    /// `kafka.admin.properties.*`.
    pub properties: Vec<Passthrough>,
}

/// `kafka.management.*` settings: the management endpoint, off unless a port is set.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct ManagementSettings {
    /// `port`: where `/health/live`, `/health/ready`, `/metrics` and the status page are
    /// served (`None`: no endpoint; `0`: any free port).
    pub port: Option<u16>,
    /// `address`: the address to bind, `127.0.0.1` unless set.
    pub address: String,
    /// `lag-interval`: how often each consumer refreshes its per-partition lag and timing
    /// gauges (librdkafka's `statistics.interval.ms`).
    pub lag_interval: Duration,
    /// `token`: actions on the status page (pause, resume, stop, start, reset the breaker)
    /// need it; without one they are refused. A secret: never shown.
    pub token: Option<String>,
}

// Hand-written so that `{:?}` can never print the token.
impl fmt::Debug for ManagementSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementSettings")
            .field("port", &self.port)
            .field("address", &self.address)
            .field("lag_interval", &self.lag_interval)
            .field("token", &self.token.as_ref().map(|_| super::MASK))
            .finish()
    }
}

/// Listener container settings: `kafka.listener.<key>` for all listeners,
/// `kafka.listener.<id>.<key>` for one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ListenerSettings {
    /// `ack-mode`: when offsets are committed.
    pub ack_mode: AckMode,
    /// `ack-count`: records between commits in `count`/`count_time` mode.
    pub ack_count: u64,
    /// `ack-time`: time between commits in `time`/`count_time` mode.
    pub ack_time: Duration,
    /// `concurrency`: consumers per listener; `None` when not configured,
    /// in which case the macro's value (or 1) applies.
    pub concurrency: Option<u32>,
    /// `concurrency-per-partition`: records of one partition handled at once, one per key;
    /// `None` when not configured (the macro's value, or 1, applies).
    pub concurrency_per_partition: Option<u32>,
    /// `poll-timeout`: how long one poll waits for records.
    pub poll_timeout: Duration,
    /// `shutdown-timeout`: how long shutdown waits for in-flight handlers.
    pub shutdown_timeout: Duration,
    /// `revoke-timeout`: how long a rebalance waits for in-flight handlers of
    /// revoked partitions before committing and giving them up.
    pub revoke_timeout: Duration,
    /// `missing-topics-fatal`: fail at startup if a listened-to topic does not exist.
    pub missing_topics_fatal: bool,
    /// `auto-startup`: `None` when not configured (the macro's value applies).
    pub auto_startup: Option<bool>,
    /// `group-id`: consumer group, overriding `kafka.consumer.group-id`.
    pub group_id: Option<String>,
    /// `retry.attempts`: delivery attempts per record, the first included.
    pub retry_attempts: u32,
    /// `retry.backoff.delay`: the pause after the first failed attempt.
    pub retry_backoff_delay: Duration,
    /// `retry.backoff.multiplier`: each further pause is the previous one times this.
    pub retry_backoff_multiplier: f64,
    /// `retry.backoff.max-delay`: the longest pause.
    pub retry_backoff_max_delay: Duration,
    /// `retry.backoff.random`: draw each pause between half of it and all of it.
    pub retry_backoff_random: bool,
    /// `max-buffered-bytes`: memory budget of fetched, unfinished records per assigned partition.
    pub max_buffered_bytes: u64,
    /// `dead-letter.enabled`: records the retries gave up on go to a dead-letter topic
    /// instead of being logged and skipped.
    pub dead_letter_enabled: bool,
    /// `dead-letter.topic`: the dead-letter topic, `{topic}` standing for the record's topic;
    /// `None`: `{topic}.DLT`.
    pub dead_letter_topic: Option<String>,
    /// `delivery-attempt-header`: record listeners see the delivery attempt as a
    /// `kafka_deliveryAttempt` header (Spring's, a 4-byte integer).
    pub delivery_attempt_header: bool,
    /// `retry-topic.enabled`: failed records are retried through retry topics, without
    /// blocking the main topic (see [`retry_topic`](crate::retry_topic)).
    pub retry_topic_enabled: bool,
    /// `retry-topic.attempts`: calls in all, the first on the main topic included.
    pub retry_topic_attempts: u32,
    /// `retry-topic.backoff.delay`: the delay of the first retry topic.
    pub retry_topic_backoff_delay: Duration,
    /// `retry-topic.backoff.multiplier`: each further delay is the previous one times this.
    pub retry_topic_backoff_multiplier: f64,
    /// `retry-topic.backoff.max-delay`: the longest delay.
    pub retry_topic_backoff_max_delay: Duration,
    /// `retry-topic.same-interval-topic-reuse=single-topic`: retries with the same delay as
    /// the one before them share its topic (a fixed back-off: one `<topic>-retry`).
    pub retry_topic_single_topic: bool,
    /// `circuit-breaker.consecutive`: trip after this many records in a row were given up.
    pub circuit_breaker_consecutive: Option<u32>,
    /// `circuit-breaker.ratio`: trip when more than this share of the last `window` records
    /// was given up.
    pub circuit_breaker_ratio: Option<f64>,
    /// `circuit-breaker.window`: records the ratio is taken over.
    pub circuit_breaker_window: u32,
    /// `circuit-breaker.reset-after`: close a tripped breaker after this long (`None`: by
    /// command only).
    pub circuit_breaker_reset_after: Option<Duration>,
    /// `new-topic.partitions`: partitions of the listener's topics when
    /// `kafka.admin.auto-create` creates them (Spring's `TopicBuilder.partitions`).
    pub new_topic_partitions: Option<u32>,
    /// `new-topic.replicas`: their replication factor (`None`: the broker's default).
    pub new_topic_replicas: Option<u32>,
    /// `new-topic.configs`: their topic configs, `name=value` pairs separated by commas.
    pub new_topic_configs: Vec<(String, String)>,
}

impl ListenerSettings {
    /// A starting point that is immediately overwritten: the built-in
    /// defaults are entries of every `Config`, so applying the global keys
    /// sets every field that has a default. Keeping the defaults only in the
    /// schema means they cannot drift apart (a test pins the result).
    fn blank() -> Self {
        ListenerSettings {
            ack_mode: AckMode::Batch,
            ack_count: 1,
            ack_time: Duration::ZERO,
            concurrency: None,
            concurrency_per_partition: None,
            poll_timeout: Duration::ZERO,
            shutdown_timeout: Duration::ZERO,
            revoke_timeout: Duration::ZERO,
            missing_topics_fatal: true,
            auto_startup: None,
            group_id: None,
            retry_attempts: 1,
            retry_backoff_delay: Duration::ZERO,
            retry_backoff_multiplier: 1.0,
            retry_backoff_max_delay: Duration::ZERO,
            retry_backoff_random: false,
            max_buffered_bytes: 0,
            dead_letter_enabled: false,
            dead_letter_topic: None,
            delivery_attempt_header: false,
            retry_topic_enabled: false,
            retry_topic_attempts: 1,
            retry_topic_backoff_delay: Duration::ZERO,
            retry_topic_backoff_multiplier: 1.0,
            retry_topic_backoff_max_delay: Duration::ZERO,
            retry_topic_single_topic: false,
            circuit_breaker_consecutive: None,
            circuit_breaker_ratio: None,
            circuit_breaker_window: 1,
            circuit_breaker_reset_after: None,
            new_topic_partitions: None,
            new_topic_replicas: None,
            new_topic_configs: Vec::new(),
        }
    }

    /// Sets one listener key from a `#[kafka_listener]` attribute: `suffix` is what follows
    /// `kafka.listener.`; the error is the "expected ..." text.
    pub(crate) fn apply_attribute(&mut self, suffix: &str, value: &str) -> Result<(), String> {
        let key = format!("{}{suffix}", schema::LISTENER_PREFIX);
        let def = schema::KEYS
            .iter()
            .find(|d| d.key == key)
            .ok_or_else(|| format!("{key} is not a listener key"))?;
        def.kind.validate(value)?;
        self.apply(def, value)
    }

    /// Sets the field of one listener key; the error is the "expected ..." text.
    fn apply(&mut self, def: &KeyDef, value: &str) -> Result<(), String> {
        match schema::listener_suffix(def) {
            "ack-mode" => {
                self.ack_mode = value.parse().map_err(|e: ParseEnumError| e.to_string())?
            }
            "ack-count" => self.ack_count = parse_uint(value, true)?,
            "ack-time" => self.ack_time = parse_duration(value)?,
            "concurrency" => self.concurrency = Some(parse_uint(value, true)?),
            "concurrency-per-partition" => {
                self.concurrency_per_partition = Some(parse_uint(value, true)?)
            }
            "poll-timeout" => self.poll_timeout = parse_positive_duration(value)?,
            "shutdown-timeout" => self.shutdown_timeout = parse_duration(value)?,
            "revoke-timeout" => self.revoke_timeout = parse_duration(value)?,
            "missing-topics-fatal" => self.missing_topics_fatal = parse_bool(value)?,
            "auto-startup" => self.auto_startup = Some(parse_bool(value)?),
            "group-id" => self.group_id = text(value),
            "retry.attempts" => self.retry_attempts = parse_uint(value, true)?,
            "retry.backoff.delay" => self.retry_backoff_delay = parse_duration(value)?,
            "retry.backoff.multiplier" => self.retry_backoff_multiplier = parse_multiplier(value)?,
            "retry.backoff.max-delay" => self.retry_backoff_max_delay = parse_duration(value)?,
            "retry.backoff.random" => self.retry_backoff_random = parse_bool(value)?,
            "max-buffered-bytes" => self.max_buffered_bytes = parse_size(value)?,
            "dead-letter.enabled" => self.dead_letter_enabled = parse_bool(value)?,
            "dead-letter.topic" => self.dead_letter_topic = text(value),
            "delivery-attempt-header" => self.delivery_attempt_header = parse_bool(value)?,
            "retry-topic.enabled" => self.retry_topic_enabled = parse_bool(value)?,
            "retry-topic.attempts" => self.retry_topic_attempts = parse_uint(value, true)?,
            "retry-topic.backoff.delay" => self.retry_topic_backoff_delay = parse_duration(value)?,
            "retry-topic.backoff.multiplier" => {
                self.retry_topic_backoff_multiplier = parse_multiplier(value)?
            }
            "retry-topic.backoff.max-delay" => {
                self.retry_topic_backoff_max_delay = parse_duration(value)?
            }
            "retry-topic.same-interval-topic-reuse" => {
                self.retry_topic_single_topic = parse_topic_reuse(value)?
            }
            "circuit-breaker.consecutive" => {
                self.circuit_breaker_consecutive = Some(parse_uint(value, true)?)
            }
            "circuit-breaker.ratio" => self.circuit_breaker_ratio = Some(parse_ratio(value)?),
            "circuit-breaker.window" => self.circuit_breaker_window = parse_uint(value, true)?,
            "circuit-breaker.reset-after" => {
                self.circuit_breaker_reset_after = Some(parse_positive_duration(value)?)
            }
            "new-topic.partitions" => self.new_topic_partitions = Some(parse_uint(value, true)?),
            "new-topic.replicas" => self.new_topic_replicas = Some(parse_uint(value, true)?),
            "new-topic.configs" => self.new_topic_configs = parse_topic_configs(value)?,
            // Reaching this means a key was added to the schema but not here;
            // the schema tests catch it, and failing loudly beats ignoring it.
            other => {
                return Err(format!(
                    "internal error: listener key {other} is not wired up"
                ))
            }
        }
        Ok(())
    }
}

/// The error of parsing one of this module's enums from a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEnumError {
    allowed: &'static [&'static str],
    suggestion: Option<&'static str>,
}

impl fmt::Display for ParseEnumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected one of {}", self.allowed.join(", "))?;
        if let Some(suggestion) = self.suggestion {
            write!(f, " (did you mean {suggestion}?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseEnumError {}

/// Spring writes enum values as `MANUAL_IMMEDIATE`, people write
/// `manual-immediate`; all mean the same. (Numbers such as acks' `-1` keep
/// their sign.)
fn enum_form(value: &str) -> String {
    let value = value.trim().to_ascii_lowercase();
    if value.bytes().any(|b| b.is_ascii_alphabetic()) {
        value.replace('-', "_")
    } else {
        value
    }
}

fn enum_error(value: &str, allowed: &'static [&'static str]) -> ParseEnumError {
    let form = enum_form(value);
    let suggestion = schema::suggest(&form, allowed.iter().copied());
    ParseEnumError {
        allowed,
        suggestion,
    }
}

/// Declares a config enum: its variants with their one spelling in config
/// files, `FromStr` (case- and dash-insensitive), `Display` and `ALL_VALUES`.
macro_rules! config_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)*, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in the spelling `Display` uses.
            pub const ALL_VALUES: &'static [&'static str] = &[$($text),+];

            /// Every accepted spelling (before case and `-`/`_` folding).
            const ACCEPTED: &'static [&'static str] = &[$($text,)+ $($($alias,)*)+];
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match enum_form(value).as_str() {
                    $( $text $(| $alias)* => Ok($name::$variant), )+
                    _ => Err(enum_error(value, Self::ACCEPTED)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $( $name::$variant => $text, )+
                })
            }
        }
    };
}

config_enum! {
    /// When a listener container commits offsets (Spring's `AckMode`).
    pub enum AckMode {
        /// After each record is handled.
        Record = "record",
        /// After all records of a poll are handled.
        Batch = "batch",
        /// When `ack-time` has passed since the last commit.
        Time = "time",
        /// When `ack-count` records were handled since the last commit.
        Count = "count",
        /// When either `ack-time` or `ack-count` is reached.
        CountTime = "count_time",
        /// When the handler acknowledges; committed with the next poll.
        Manual = "manual",
        /// When the handler acknowledges; committed right away.
        ManualImmediate = "manual_immediate",
    }
}

config_enum! {
    /// Where a consumer group without committed offsets starts reading.
    pub enum AutoOffsetReset {
        /// From the oldest retained record (this crate's default).
        Earliest = "earliest",
        /// Only records produced after the group joined.
        Latest = "latest",
        /// Fail instead of guessing.
        None = "none",
    }
}

impl AutoOffsetReset {
    /// The librdkafka `auto.offset.reset` value.
    pub fn as_librdkafka(&self) -> &'static str {
        match self {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
            // librdkafka's name for Kafka's "none".
            AutoOffsetReset::None => "error",
        }
    }
}

config_enum! {
    /// Which records of transactional producers a consumer sees.
    pub enum IsolationLevel {
        /// Only records of committed transactions.
        ReadCommitted = "read_committed",
        /// All records, including those of aborted or open transactions.
        ReadUncommitted = "read_uncommitted",
    }
}

impl IsolationLevel {
    /// The librdkafka `isolation.level` value.
    pub fn as_librdkafka(&self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read_committed",
            IsolationLevel::ReadUncommitted => "read_uncommitted",
        }
    }
}

config_enum! {
    /// How many replicas must confirm a produced record.
    pub enum Acks {
        /// All in-sync replicas (`all` or `-1`).
        All = "all" | "-1",
        /// The partition leader only (`1`).
        Leader = "1",
        /// None: fire and forget (`0`).
        None = "0",
    }
}

impl Acks {
    /// The librdkafka `acks` value.
    pub fn as_librdkafka(&self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

// ---------------------------------------------------------------------------
// Value parsers. Each returns the "expected ..." sentence on failure; the
// caller prefixes it with the source, key and value.

const COMPRESSION_TYPES: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];

/// Optional text: an empty value means "not set", so `kafka.client-id=` can
/// be used to clear a value set by a lower layer.
fn text(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

pub(crate) fn parse_servers(value: &str) -> Result<&str, String> {
    let value = value.trim();
    if value.split(',').any(|server| server.trim().is_empty()) {
        return Err("expected a comma-separated list of host:port (or \"embedded\")".to_owned());
    }
    Ok(value)
}

pub(crate) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// Parses an unsigned integer, optionally at least 1.
pub(crate) fn parse_uint<T>(value: &str, positive: bool) -> Result<T, String>
where
    T: FromStr<Err = ParseIntError> + Default + PartialEq + fmt::Display + Bounded,
{
    let expected = if positive {
        "expected a positive integer (1, 2, ...)"
    } else {
        "expected a non-negative integer (0, 1, 2, ...)"
    };
    let value = value.trim();
    // Rust's integer parsing accepts a leading '+', which no config format does.
    if value.starts_with('+') {
        return Err(expected.to_owned());
    }
    match value.parse::<T>() {
        Ok(n) if positive && n == T::default() => Err(expected.to_owned()),
        Ok(n) => Ok(n),
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => {
            Err(format!("{expected}, at most {}", T::MAX_VALUE))
        }
        Err(_) => Err(expected.to_owned()),
    }
}

/// The maximum of an integer type, for "at most ..." messages.
pub(crate) trait Bounded {
    const MAX_VALUE: Self;
}

impl Bounded for u32 {
    const MAX_VALUE: Self = u32::MAX;
}
impl Bounded for u64 {
    const MAX_VALUE: Self = u64::MAX;
}
impl Bounded for usize {
    const MAX_VALUE: Self = usize::MAX;
}

/// Bytes, optionally with Spring's `DataSize` units (`B`, `KB`, `MB`, `GB`,
/// powers of 1024).
pub(crate) fn parse_size(value: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a size in bytes (e.g. 16384, 64KB, 32MB)";
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return Err(EXPECTED.to_owned()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| EXPECTED.to_owned())
}

/// A share strictly between 0 and 1 (a breaker trips when *more* than it was given up, so 1
/// could never trip).
pub(crate) fn parse_ratio(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0 && *r < 1.0)
        .ok_or_else(|| "expected a share above 0 and below 1 (0.5 for half)".to_owned())
}

/// Topic configs: `name=value` pairs separated by commas (`retention.ms=86400000,
/// cleanup.policy=compact`).
pub(crate) fn parse_topic_configs(value: &str) -> Result<Vec<(String, String)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!(
                "expected name=value pairs separated by commas (retention.ms=86400000), found {pair:?}"
            )),
        })
        .collect()
}

/// A TCP port (0 asks the system for a free one).
pub(crate) fn parse_port(value: &str) -> Result<u16, String> {
    value
        .trim()
        .parse::<u16>()
        .map_err(|_| "expected a port number from 0 to 65535".to_owned())
}

/// Spring's `SameIntervalTopicReuseStrategy`: `single-topic` (true) or `multiple-topics`
/// (`SINGLE_TOPIC` and `MULTIPLE_TOPICS` are read too).
pub(crate) fn parse_topic_reuse(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "single-topic" | "true" => Ok(true),
        "multiple-topics" | "false" => Ok(false),
        _ => Err("expected single-topic or multiple-topics".to_owned()),
    }
}

/// A back-off multiplier: a finite number of at least 1.
pub(crate) fn parse_multiplier(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|m| m.is_finite() && *m >= 1.0)
        .ok_or_else(|| {
            "expected a number of at least 1 (1 for a fixed back-off, 2 to double each pause)"
                .to_owned()
        })
}

/// A humantime duration (`500ms`, `30s`, `1m 30s`); a bare integer is
/// milliseconds, as in Spring Boot.
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| {
                "expected a duration, and this number of milliseconds is too large".to_owned()
            });
    }
    humantime::parse_duration(value).map_err(|_| {
        "expected a duration like 500ms, 30s or 1m (a bare number means milliseconds)".to_owned()
    })
}

/// A duration that must not be zero (a zero poll timeout would spin a core).
pub(crate) fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        Duration::ZERO => Err("expected a duration greater than zero, like 500ms or 1s".to_owned()),
        duration => Ok(duration),
    }
}

pub(crate) fn parse_compression(value: &str) -> Result<String, String> {
    let form = enum_form(value);
    if COMPRESSION_TYPES.contains(&form.as_str()) {
        Ok(form)
    } else {
        Err(enum_error(value, COMPRESSION_TYPES).to_string())
    }
}

// ---------------------------------------------------------------------------
// Building `Settings` from a `Config`.

/// What `build` needs from a `Config`: effective values by key.
pub(crate) trait Values {
    /// The effective (resolved) value of a known or passthrough key, with its source.
    fn value(&self, key: &str) -> Option<(&str, &Source)>;
    /// All passthrough entries under `prefix`, sorted by name.
    fn passthrough(&self, prefix: &str) -> Vec<Passthrough>;
    /// The per-listener values for `id`, lowest precedence first.
    fn listener_values(&self, id: &str) -> Vec<(&'static KeyDef, &str, &Source)>;
}

/// Builds settings, with the errors of values that do not parse (their
/// fields keep the default). Values were validated at load, so such errors
/// are only possible if a layer bypassed validation; they are reported
/// rather than assumed away.
pub(crate) fn build(values: &dyn Values, ids: &[&str]) -> (Settings, Vec<super::ConfigError>) {
    let mut errors = Vec::new();
    let mut reader = Reader {
        values,
        errors: &mut errors,
    };

    let mut listener = ListenerSettings::blank();
    for def in schema::listener_keys() {
        if let Some((value, source)) = values.value(def.key) {
            reader.check(def.key, value, source, listener.apply(def, value));
        }
    }
    let mut listeners = BTreeMap::new();
    for id in ids {
        let mut settings = listener.clone();
        for (def, value, source) in values.listener_values(id) {
            let key = format!(
                "{}{id}.{}",
                schema::LISTENER_PREFIX,
                schema::listener_suffix(def)
            );
            reader.check(&key, value, source, settings.apply(def, value));
        }
        listeners.insert((*id).to_owned(), settings);
    }

    let settings = Settings {
        bootstrap_servers: reader.required("kafka.bootstrap-servers", |v| {
            parse_servers(v).map(str::to_owned)
        }),
        client_id: reader.text("kafka.client-id"),
        properties: values.passthrough("kafka.properties."),
        security: Vec::new(),
        consumer: ConsumerSettings {
            group_id: reader.text("kafka.consumer.group-id"),
            client_id: reader.text("kafka.consumer.client-id"),
            auto_offset_reset: reader.required("kafka.consumer.auto-offset-reset", |v| {
                v.parse().map_err(|e: ParseEnumError| e.to_string())
            }),
            enable_auto_commit: reader
                .optional("kafka.consumer.enable-auto-commit", parse_auto_commit),
            max_poll_records: reader
                .required("kafka.consumer.max-poll-records", |v| parse_uint(v, true)),
            fetch_min_size: reader.optional("kafka.consumer.fetch-min-size", parse_size),
            fetch_max_wait: reader.optional("kafka.consumer.fetch-max-wait", parse_duration),
            heartbeat_interval: reader
                .optional("kafka.consumer.heartbeat-interval", parse_duration),
            isolation_level: reader.optional("kafka.consumer.isolation-level", |v| {
                v.parse().map_err(|e: ParseEnumError| e.to_string())
            }),
            properties: values.passthrough("kafka.consumer.properties."),
        },
        producer: ProducerSettings {
            client_id: reader.text("kafka.producer.client-id"),
            acks: reader.required("kafka.producer.acks", |v| {
                v.parse().map_err(|e: ParseEnumError| e.to_string())
            }),
            batch_size: reader.optional("kafka.producer.batch-size", parse_size),
            buffer_memory: reader.optional("kafka.producer.buffer-memory", parse_size),
            compression_type: reader.optional("kafka.producer.compression-type", parse_compression),
            retries: reader.optional("kafka.producer.retries", |v| parse_uint(v, false)),
            transaction_id_prefix: reader.text("kafka.producer.transaction-id-prefix"),
            linger: reader.optional("kafka.producer.linger", parse_duration),
            default_topic: reader.text("kafka.template.default-topic"),
            close_timeout: reader.optional("kafka.template.close-timeout", parse_duration),
            properties: values.passthrough("kafka.producer.properties."),
        },
        admin: AdminSettings {
            operation_timeout: reader.required("kafka.admin.operation-timeout", parse_duration),
            auto_create: reader.required("kafka.admin.auto-create", parse_bool),
            properties: values.passthrough("kafka.admin.properties."),
        },
        management: ManagementSettings {
            port: reader.optional("kafka.management.port", parse_port),
            address: reader.required("kafka.management.address", |v| Ok(v.trim().to_owned())),
            lag_interval: reader.required("kafka.management.lag-interval", parse_positive_duration),
            token: reader.text("kafka.management.token"),
        },
        listener,
        listeners,
    };
    let mut settings = settings;
    settings.security = super::security::spring_keys(values, &mut errors);
    for (prefix, list) in [
        ("kafka.properties.", &mut settings.properties),
        (
            "kafka.consumer.properties.",
            &mut settings.consumer.properties,
        ),
        (
            "kafka.producer.properties.",
            &mut settings.producer.properties,
        ),
        ("kafka.admin.properties.", &mut settings.admin.properties),
    ] {
        *list = super::security::java_properties(prefix, std::mem::take(list), &mut errors);
    }
    // The container's commits are what at-least-once rests on; librdkafka's timer commit
    // would commit records that have not finished.
    for (prefix, list) in [
        ("kafka.properties.", &settings.properties),
        ("kafka.consumer.properties.", &settings.consumer.properties),
    ] {
        for p in list.iter().filter(|p| p.key == "enable.auto.commit") {
            if let Err(expected) = parse_auto_commit(&p.value) {
                let key = format!("{prefix}{}", p.key);
                errors.push(super::invalid_value(
                    &p.source, &key, &p.value, &p.value, expected,
                ));
            }
        }
    }
    (settings, errors)
}

/// `enable-auto-commit` accepts only `false`: the container commits finished records itself.
fn parse_auto_commit(value: &str) -> Result<bool, String> {
    match parse_bool(value)? {
        false => Ok(false),
        true => Err("false: the listener container commits the offsets of finished records itself, per kafka.listener.ack-mode; librdkafka's timer commit would also commit records still in progress and lose them on a crash, so it cannot be turned on (remove the setting)".to_owned()),
    }
}

/// Reads typed values, collecting errors instead of stopping at the first.
struct Reader<'a> {
    values: &'a dyn Values,
    errors: &'a mut Vec<super::ConfigError>,
}

impl Reader<'_> {
    fn check<T>(
        &mut self,
        key: &str,
        value: &str,
        source: &Source,
        result: Result<T, String>,
    ) -> Option<T> {
        result
            .map_err(|expected| {
                self.errors
                    .push(super::invalid_value(source, key, value, value, expected));
            })
            .ok()
    }

    fn optional<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let (value, source) = self.values.value(key)?;
        // An empty value clears an optional setting (see `text`).
        if value.trim().is_empty() {
            return None;
        }
        self.check(key, value, source, parse(value))
    }

    /// A key with a built-in default. The default is an entry of every
    /// `Config`, so the schema fallback only guards against a layer having
    /// removed it; an unparsable value falls back too, after recording the error.
    fn required<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> T
    where
        T: Default,
    {
        if let Some(parsed) = self.optional(key, &parse) {
            return parsed;
        }
        schema::KEYS
            .iter()
            .find(|d| d.key == key)
            .and_then(|d| d.default)
            .and_then(|default| parse(default).ok())
            .unwrap_or_default()
    }

    fn text(&mut self, key: &str) -> Option<String> {
        self.values.value(key).and_then(|(value, _)| text(value))
    }
}

impl Default for AutoOffsetReset {
    /// `earliest`: deliberately not Kafka's `latest`, so a new consumer group
    /// does not silently skip records produced before it first joined.
    fn default() -> Self {
        AutoOffsetReset::Earliest
    }
}

impl Default for AckMode {
    /// `batch`: commit after each poll's records are handled, as Spring does.
    fn default() -> Self {
        AckMode::Batch
    }
}

impl Default for Acks {
    /// `all`: the only setting that does not lose acknowledged records when a leader fails.
    fn default() -> Self {
        Acks::All
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_mode_values_round_trip_and_accept_spring_spellings() {
        let cases = [
            ("record", AckMode::Record),
            ("batch", AckMode::Batch),
            ("time", AckMode::Time),
            ("count", AckMode::Count),
            ("count_time", AckMode::CountTime),
            ("manual", AckMode::Manual),
            ("manual_immediate", AckMode::ManualImmediate),
        ];
        for (text, mode) in cases {
            assert_eq!(text.parse::<AckMode>(), Ok(mode));
            assert_eq!(mode.to_string(), text);
            assert_eq!(text.to_uppercase().parse::<AckMode>(), Ok(mode));
            assert_eq!(text.replace('_', "-").parse::<AckMode>(), Ok(mode));
        }
        assert_eq!(AckMode::ALL_VALUES.len(), cases.len());
        assert_eq!(
            " MANUAL_IMMEDIATE ".parse::<AckMode>(),
            Ok(AckMode::ManualImmediate)
        );
    }

    #[test]
    fn bad_enum_values_list_allowed_values_and_suggest() {
        let err = "recrod".parse::<AckMode>().map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                "expected one of record, batch, time, count, count_time, manual, manual_immediate \
                 (did you mean record?)"
                    .to_owned()
            )
        );
        let err = "sometimes".parse::<AckMode>().map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                "expected one of record, batch, time, count, count_time, manual, manual_immediate"
                    .to_owned()
            )
        );
        assert_eq!(
            "latst"
                .parse::<AutoOffsetReset>()
                .map_err(|e| e.to_string()),
            Err("expected one of earliest, latest, none (did you mean latest?)".to_owned())
        );
        assert_eq!(
            "2".parse::<Acks>().map_err(|e| e.to_string()),
            Err("expected one of all, 1, 0, -1".to_owned())
        );
    }

    #[test]
    fn other_enums() {
        for (text, value, rd) in [
            ("earliest", AutoOffsetReset::Earliest, "earliest"),
            ("latest", AutoOffsetReset::Latest, "latest"),
            ("none", AutoOffsetReset::None, "error"),
        ] {
            assert_eq!(text.parse::<AutoOffsetReset>(), Ok(value));
            assert_eq!(value.to_string(), text);
            assert_eq!(value.as_librdkafka(), rd);
        }
        for (text, value) in [
            ("read_committed", IsolationLevel::ReadCommitted),
            ("READ-UNCOMMITTED", IsolationLevel::ReadUncommitted),
        ] {
            assert_eq!(text.parse::<IsolationLevel>(), Ok(value));
            assert_eq!(value.as_librdkafka(), enum_form(text));
        }
        for (text, value, rd) in [
            ("all", Acks::All, "all"),
            ("-1", Acks::All, "all"),
            ("1", Acks::Leader, "1"),
            ("0", Acks::None, "0"),
        ] {
            assert_eq!(text.parse::<Acks>(), Ok(value));
            assert_eq!(value.as_librdkafka(), rd);
        }
        assert_eq!(parse_compression("ZSTD"), Ok("zstd".to_owned()));
        assert_eq!(
            parse_compression("zip"),
            Err("expected one of none, gzip, snappy, lz4, zstd (did you mean gzip?)".to_owned())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        // Spring's convention: a bare number is milliseconds.
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
        for bad in ["", "soon", "-1s", "1.5", "10 parsecs"] {
            assert_eq!(
                parse_duration(bad),
                Err(
                    "expected a duration like 500ms, 30s or 1m (a bare number means milliseconds)"
                        .to_owned()
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_positive_duration("0s"),
            Err("expected a duration greater than zero, like 500ms or 1s".to_owned())
        );
    }

    #[test]
    fn integers_bools_sizes() {
        assert_eq!(parse_uint::<u32>("4", true), Ok(4));
        assert_eq!(parse_uint::<u32>("0", false), Ok(0));
        for bad in ["0", "-1", "+1", "zero", "1.0", ""] {
            assert_eq!(
                parse_uint::<u32>(bad, true),
                Err("expected a positive integer (1, 2, ...)".to_owned()),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_uint::<u32>("4294967296", true),
            Err("expected a positive integer (1, 2, ...), at most 4294967295".to_owned())
        );
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert_eq!(parse_bool("yes"), Err("expected true or false".to_owned()));
        assert_eq!(parse_size("16384"), Ok(16384));
        assert_eq!(parse_size("64KB"), Ok(65536));
        assert_eq!(parse_size("2 mb"), Ok(2 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        for bad in ["1.5MB", "KB", "12XB", "99999999999999999999"] {
            assert_eq!(
                parse_size(bad),
                Err("expected a size in bytes (e.g. 16384, 64KB, 32MB)".to_owned()),
                "{bad:?}"
            );
        }
        assert_eq!(parse_servers("a:1, b:2"), Ok("a:1, b:2"));
        assert!(parse_servers("a:1,,b:2").is_err());
        assert!(parse_servers(" ").is_err());
    }

    #[test]
    fn enum_defaults_match_schema_defaults() {
        let default_of = |key: &str| {
            schema::KEYS
                .iter()
                .find(|d| d.key == key)
                .and_then(|d| d.default)
        };
        assert_eq!(
            Some(AckMode::default().to_string().as_str()),
            default_of("kafka.listener.ack-mode")
        );
        assert_eq!(
            Some(AutoOffsetReset::default().to_string().as_str()),
            default_of("kafka.consumer.auto-offset-reset")
        );
        assert_eq!(
            Some(Acks::default().to_string().as_str()),
            default_of("kafka.producer.acks")
        );
    }

    #[test]
    fn every_listener_key_is_wired_up() {
        for def in schema::listener_keys() {
            let mut settings = ListenerSettings::blank();
            let value = def.default.unwrap_or(match def.kind {
                schema::Kind::Bool => "true",
                schema::Kind::Ratio => "0.5",
                _ if def.key.ends_with(".configs") => "retention.ms=1000",
                _ => "7",
            });
            assert_eq!(settings.apply(def, value), Ok(()), "{}", def.key);
        }
    }
}
