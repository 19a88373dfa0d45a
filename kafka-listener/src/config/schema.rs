//! The known keys, how each is typed, and "did you mean" suggestions.

use strsim::osa_distance;

use super::settings;

/// The prefix of every key this crate owns.
pub(crate) const PREFIX: &str = "kafka.";
/// Spring Boot's prefix, accepted as a synonym of [`PREFIX`].
pub(crate) const SPRING_PREFIX: &str = "spring.kafka.";
/// Global listener keys live under this prefix; per-listener ones under
/// `kafka.listener.<id>.`.
pub(crate) const LISTENER_PREFIX: &str = "kafka.listener.";

/// How a value is parsed. Validation at load time and building
/// [`Settings`](super::Settings) both go through the parsers in
/// `settings`, so they can never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Servers,
    Text,
    Bool,
    PositiveU32,
    PositiveU64,
    PositiveUsize,
    U32,
    Size,
    Duration,
    PositiveDuration,
    AckMode,
    AutoOffsetReset,
    IsolationLevel,
    Acks,
    Compression,
    /// A factor of at least 1 (`2`, `1.5`).
    Multiplier,
    /// A share above 0 and below 1 (`0.5`).
    Ratio,
    /// `single-topic` or `multiple-topics`.
    TopicReuse,
    /// A TCP port, 0 to 65535 (0: any free port).
    Port,
    /// `text` or `json`.
    LogFormat,
}

impl Kind {
    /// Checks a (trimmed, placeholder-resolved) value; the error is the
    /// "expected ..." part of the message.
    pub(crate) fn validate(self, value: &str) -> Result<(), String> {
        match self {
            Kind::Servers => settings::parse_servers(value).map(drop),
            Kind::Text => Ok(()),
            Kind::Bool => settings::parse_bool(value).map(drop),
            Kind::PositiveU32 => settings::parse_uint::<u32>(value, true).map(drop),
            Kind::PositiveU64 => settings::parse_uint::<u64>(value, true).map(drop),
            Kind::PositiveUsize => settings::parse_uint::<usize>(value, true).map(drop),
            Kind::U32 => settings::parse_uint::<u32>(value, false).map(drop),
            Kind::Size => settings::parse_size(value).map(drop),
            Kind::Duration => settings::parse_duration(value).map(drop),
            Kind::PositiveDuration => settings::parse_positive_duration(value).map(drop),
            Kind::AckMode => value
                .parse::<settings::AckMode>()
                .map(drop)
                .map_err(|e| e.to_string()),
            Kind::AutoOffsetReset => value
                .parse::<settings::AutoOffsetReset>()
                .map(drop)
                .map_err(|e| e.to_string()),
            Kind::IsolationLevel => value
                .parse::<settings::IsolationLevel>()
                .map(drop)
                .map_err(|e| e.to_string()),
            Kind::Acks => value
                .parse::<settings::Acks>()
                .map(drop)
                .map_err(|e| e.to_string()),
            Kind::Compression => settings::parse_compression(value).map(drop),
            Kind::Multiplier => settings::parse_multiplier(value).map(drop),
            Kind::Ratio => settings::parse_ratio(value).map(drop),
            Kind::TopicReuse => settings::parse_topic_reuse(value).map(drop),
            Kind::Port => settings::parse_port(value).map(drop),
            Kind::LogFormat => match value.trim() {
                "text" | "json" => Ok(()),
                _ => Err("expected text or json".to_owned()),
            },
        }
    }
}

/// One known key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyDef {
    pub(crate) key: &'static str,
    pub(crate) kind: Kind,
    /// Built-in default; `None` means "not set" (the `Option` field is `None`).
    pub(crate) default: Option<&'static str>,
}

const fn def(key: &'static str, kind: Kind, default: Option<&'static str>) -> KeyDef {
    KeyDef { key, kind, default }
}

/// Every known key. The module documentation's table must list each of them
/// (a test checks), and `settings` must read each of them.
pub(crate) const KEYS: &[KeyDef] = &[
    def(
        "kafka.bootstrap-servers",
        Kind::Servers,
        Some("localhost:9092"),
    ),
    def("kafka.client-id", Kind::Text, None),
    def("kafka.consumer.group-id", Kind::Text, None),
    def("kafka.consumer.client-id", Kind::Text, None),
    def(
        "kafka.consumer.auto-offset-reset",
        Kind::AutoOffsetReset,
        Some("earliest"),
    ),
    def("kafka.consumer.enable-auto-commit", Kind::Bool, None),
    def(
        "kafka.consumer.max-poll-records",
        Kind::PositiveUsize,
        Some("500"),
    ),
    def("kafka.consumer.fetch-min-size", Kind::Size, None),
    def("kafka.consumer.fetch-max-wait", Kind::Duration, None),
    def("kafka.consumer.heartbeat-interval", Kind::Duration, None),
    def("kafka.consumer.isolation-level", Kind::IsolationLevel, None),
    def("kafka.producer.client-id", Kind::Text, None),
    def("kafka.producer.acks", Kind::Acks, Some("all")),
    def("kafka.producer.batch-size", Kind::Size, None),
    def("kafka.producer.buffer-memory", Kind::Size, None),
    def("kafka.producer.compression-type", Kind::Compression, None),
    def("kafka.producer.retries", Kind::U32, None),
    def("kafka.producer.transaction-id-prefix", Kind::Text, None),
    def("kafka.producer.linger", Kind::Duration, None),
    def("kafka.template.default-topic", Kind::Text, None),
    def("kafka.template.close-timeout", Kind::Duration, None),
    def("kafka.admin.operation-timeout", Kind::Duration, Some("10s")),
    def("kafka.admin.auto-create", Kind::Bool, Some("false")),
    def("kafka.logging.format", Kind::LogFormat, Some("text")),
    def("kafka.management.port", Kind::Port, None),
    def("kafka.management.address", Kind::Text, Some("127.0.0.1")),
    def(
        "kafka.management.lag-interval",
        Kind::PositiveDuration,
        Some("5s"),
    ),
    def("kafka.management.token", Kind::Text, None),
    def("kafka.listener.ack-mode", Kind::AckMode, Some("batch")),
    def("kafka.listener.ack-count", Kind::PositiveU64, Some("1")),
    def("kafka.listener.ack-time", Kind::Duration, Some("5s")),
    def("kafka.listener.concurrency", Kind::PositiveU32, None),
    def(
        "kafka.listener.concurrency-per-partition",
        Kind::PositiveU32,
        None,
    ),
    def(
        "kafka.listener.poll-timeout",
        Kind::PositiveDuration,
        Some("100ms"),
    ),
    def(
        "kafka.listener.shutdown-timeout",
        Kind::Duration,
        Some("30s"),
    ),
    def("kafka.listener.revoke-timeout", Kind::Duration, Some("15s")),
    def(
        "kafka.listener.missing-topics-fatal",
        Kind::Bool,
        Some("true"),
    ),
    def("kafka.listener.auto-startup", Kind::Bool, None),
    def("kafka.listener.group-id", Kind::Text, None),
    def(
        "kafka.listener.retry.attempts",
        Kind::PositiveU32,
        Some("10"),
    ),
    def(
        "kafka.listener.retry.backoff.delay",
        Kind::Duration,
        Some("1s"),
    ),
    def(
        "kafka.listener.retry.backoff.multiplier",
        Kind::Multiplier,
        Some("1"),
    ),
    def(
        "kafka.listener.retry.backoff.max-delay",
        Kind::Duration,
        Some("30s"),
    ),
    def(
        "kafka.listener.retry.backoff.random",
        Kind::Bool,
        Some("false"),
    ),
    def(
        "kafka.listener.delivery-attempt-header",
        Kind::Bool,
        Some("false"),
    ),
    def(
        "kafka.listener.retry-topic.enabled",
        Kind::Bool,
        Some("false"),
    ),
    def(
        "kafka.listener.retry-topic.attempts",
        Kind::PositiveU32,
        Some("3"),
    ),
    def(
        "kafka.listener.retry-topic.backoff.delay",
        Kind::Duration,
        Some("1s"),
    ),
    def(
        "kafka.listener.retry-topic.backoff.multiplier",
        Kind::Multiplier,
        Some("1"),
    ),
    def(
        "kafka.listener.retry-topic.backoff.max-delay",
        Kind::Duration,
        Some("30s"),
    ),
    def(
        "kafka.listener.retry-topic.same-interval-topic-reuse",
        Kind::TopicReuse,
        Some("multiple-topics"),
    ),
    def(
        "kafka.listener.dead-letter.enabled",
        Kind::Bool,
        Some("false"),
    ),
    def("kafka.listener.dead-letter.topic", Kind::Text, None),
    def(
        "kafka.listener.circuit-breaker.consecutive",
        Kind::PositiveU32,
        None,
    ),
    def("kafka.listener.circuit-breaker.ratio", Kind::Ratio, None),
    def(
        "kafka.listener.circuit-breaker.window",
        Kind::PositiveU32,
        Some("100"),
    ),
    def(
        "kafka.listener.circuit-breaker.reset-after",
        Kind::PositiveDuration,
        None,
    ),
    def(
        "kafka.listener.new-topic.partitions",
        Kind::PositiveU32,
        None,
    ),
    def("kafka.listener.new-topic.replicas", Kind::PositiveU32, None),
    def("kafka.listener.new-topic.configs", Kind::Text, None),
    def(
        "kafka.listener.max-buffered-bytes",
        Kind::Size,
        Some("64MB"),
    ),
    def("kafka.security.protocol", Kind::Text, None),
    def("kafka.ssl.trust-store-location", Kind::Text, None),
    def("kafka.ssl.trust-store-type", Kind::Text, None),
    def("kafka.ssl.trust-store-password", Kind::Text, None),
    def("kafka.ssl.trust-store-certificates", Kind::Text, None),
    def("kafka.ssl.key-store-location", Kind::Text, None),
    def("kafka.ssl.key-store-type", Kind::Text, None),
    def("kafka.ssl.key-store-password", Kind::Text, None),
    def("kafka.ssl.key-store-certificate-chain", Kind::Text, None),
    def("kafka.ssl.key-store-key", Kind::Text, None),
    def("kafka.ssl.key-password", Kind::Text, None),
    def("kafka.jaas.enabled", Kind::Bool, None),
    def("kafka.jaas.login-module", Kind::Text, None),
    def("kafka.jaas.control-flag", Kind::Text, None),
];

/// Sections whose `<section>.properties.*` keys go to librdkafka unchanged.
pub(crate) const PASSTHROUGH_PREFIXES: &[&str] = &[
    "kafka.properties.",
    "kafka.consumer.properties.",
    "kafka.producer.properties.",
    "kafka.admin.properties.",
    "kafka.jaas.options.",
];

const SERDE_REASON: &str = "payload types are chosen by the handler's extractor arguments \
     (Json<T>, String, Vec<u8>), not by configuration";

/// Spring Boot keys that exist there but deliberately not here.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "kafka.ssl.protocol",
        "librdkafka negotiates the TLS version (1.2 or 1.3) with the broker itself; remove the key",
    ),
    (
        "kafka.ssl.bundle",
        "SSL bundles are a Spring Boot feature; set kafka.ssl.trust-store-location (and key-store-location) instead",
    ),
    ("kafka.consumer.key-deserializer", SERDE_REASON),
    ("kafka.consumer.value-deserializer", SERDE_REASON),
    ("kafka.producer.key-serializer", SERDE_REASON),
    ("kafka.producer.value-serializer", SERDE_REASON),
];

/// The same settings spelled as raw Kafka client properties, which would be
/// passed through to librdkafka and rejected there with a less helpful message.
const UNSUPPORTED_PASSTHROUGH: &[&str] = &[
    "key.deserializer",
    "value.deserializer",
    "key.serializer",
    "value.serializer",
];

/// What a (prefix-normalized) `kafka.*` key is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyClass<'k> {
    Known(&'static KeyDef),
    /// `<section>.properties.<name>`: `prefix` is e.g. `kafka.consumer.properties.`.
    Passthrough {
        prefix: &'static str,
        name: &'k str,
    },
    /// `kafka.listener.<id>.<key>`; `def` is the global `kafka.listener.<key>`.
    PerListener {
        id: &'k str,
        def: &'static KeyDef,
    },
    Unsupported(&'static str),
    Unknown,
}

/// Classifies a key that already starts with exactly [`PREFIX`].
pub(crate) fn classify(key: &str) -> KeyClass<'_> {
    if let Some(def) = KEYS.iter().find(|d| d.key == key) {
        return KeyClass::Known(def);
    }
    if let Some((_, reason)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        return KeyClass::Unsupported(reason);
    }
    for prefix in PASSTHROUGH_PREFIXES {
        if let Some(name) = key.strip_prefix(prefix) {
            if UNSUPPORTED_PASSTHROUGH.contains(&name) {
                return KeyClass::Unsupported(SERDE_REASON);
            }
            // An empty name is no property at all; let it be an unknown key.
            if !name.is_empty() {
                return KeyClass::Passthrough { prefix, name };
            }
        }
    }
    if let Some(rest) = key.strip_prefix(LISTENER_PREFIX) {
        // The longest matching listener key wins, so `<id>.retry.attempts`
        // is never read as id `<id>.retry` with key `attempts`.
        let mut best: Option<(&str, &'static KeyDef)> = None;
        for def in listener_keys() {
            let suffix = listener_suffix(def);
            if let Some(id) = rest.strip_suffix(suffix).and_then(|r| r.strip_suffix('.')) {
                if !id.is_empty()
                    && best.is_none_or(|(_, b)| suffix.len() > listener_suffix(b).len())
                {
                    best = Some((id, def));
                }
            }
        }
        if let Some((id, def)) = best {
            return KeyClass::PerListener { id, def };
        }
    }
    KeyClass::Unknown
}

/// The keys that can also be set per listener (all of `kafka.listener.*`).
pub(crate) fn listener_keys() -> impl Iterator<Item = &'static KeyDef> {
    KEYS.iter().filter(|d| d.key.starts_with(LISTENER_PREFIX))
}

/// `kafka.listener.ack-mode` -> `ack-mode`.
pub(crate) fn listener_suffix(def: &KeyDef) -> &'static str {
    // Every listener key starts with the prefix (that is how they are selected).
    def.key.get(LISTENER_PREFIX.len()..).unwrap_or(def.key)
}

/// Spring Boot's relaxed-binding environment name of a key:
/// `kafka.bootstrap-servers` -> `KAFKA_BOOTSTRAP_SERVERS`.
pub(crate) fn env_name(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Whether a key holds a secret whose value must never be shown.
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "sasl.", "ssl.key", "token"]
        .iter()
        .any(|marker| key.contains(marker))
}

/// Collapses the spellings Spring's relaxed binding treats as equal
/// (`groupId`, `group_id`, `group.id`, `GROUP-ID`) into one form.
fn canonical(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '.' | '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The best "did you mean" for an unknown (prefix-normalized) key.
pub(crate) fn suggest_key(key: &str) -> Option<String> {
    let mut candidates: Vec<String> = KEYS.iter().map(|d| d.key.to_owned()).collect();
    // For `kafka.listener.<id>.<typo>` also offer `kafka.listener.<id>.<key>`,
    // so a typo in a per-listener key is corrected without losing the id.
    if let Some(rest) = key.strip_prefix(LISTENER_PREFIX) {
        if let Some((id, _)) = rest.split_once('.') {
            candidates.extend(
                listener_keys().map(|d| format!("{LISTENER_PREFIX}{id}.{}", listener_suffix(d))),
            );
        }
    }
    suggest(key, candidates.iter().map(String::as_str)).map(str::to_owned)
}

/// The candidate closest to `input`, if any is close enough to be a typo.
///
/// Ranking: same key up to case and `.`/`-`/`_`/camelCase (exact intent);
/// then the smallest edit distance (with transpositions) within a budget that
/// grows with length; then the same last segment in another section
/// (`kafka.group-id` -> `kafka.consumer.group-id`).
pub(crate) fn suggest<'c>(
    input: &str,
    candidates: impl Iterator<Item = &'c str> + Clone,
) -> Option<&'c str> {
    let canon = canonical(input);
    if let Some(found) = candidates.clone().find(|c| canonical(c) == canon) {
        return Some(found);
    }
    let length = input.chars().count();
    // Anything is one or two edits away from a very short input ("2" from
    // "1"), so such suggestions would be noise.
    if length < 3 {
        return None;
    }
    let budget = (length / 6).clamp(1, 4);
    let closest = candidates
        .clone()
        .map(|c| (osa_distance(input, c), c))
        .filter(|(distance, _)| *distance <= budget)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c);
    closest.or_else(|| {
        let leaf = input.rsplit('.').next().filter(|leaf| leaf.len() >= 4)?;
        candidates.clone().find(|c| {
            c.rsplit('.')
                .next()
                .is_some_and(|l| canonical(l) == canonical(leaf))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid_for_its_kind() {
        for def in KEYS {
            if let Some(default) = def.default {
                assert_eq!(def.kind.validate(default), Ok(()), "{}", def.key);
            }
        }
    }

    #[test]
    fn classify_known_passthrough_listener_unsupported_unknown() {
        assert!(matches!(
            classify("kafka.listener.retry.attempts"),
            KeyClass::Known(_)
        ));
        assert_eq!(
            classify("kafka.consumer.properties.fetch.min.bytes"),
            KeyClass::Passthrough {
                prefix: "kafka.consumer.properties.",
                name: "fetch.min.bytes"
            }
        );
        match classify("kafka.listener.on.order.retry.backoff.delay") {
            KeyClass::PerListener { id, def } => {
                assert_eq!(
                    (id, def.key),
                    ("on.order", "kafka.listener.retry.backoff.delay")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify("kafka.consumer.value-deserializer"),
            KeyClass::Unsupported(SERDE_REASON)
        );
        assert_eq!(
            classify("kafka.properties.key.serializer"),
            KeyClass::Unsupported(SERDE_REASON)
        );
        assert_eq!(classify("kafka.properties."), KeyClass::Unknown);
        assert_eq!(classify("kafka.listener.concurrency.x"), KeyClass::Unknown);
    }

    #[test]
    fn env_names() {
        assert_eq!(
            env_name("kafka.bootstrap-servers"),
            "KAFKA_BOOTSTRAP_SERVERS"
        );
        assert_eq!(
            env_name("kafka.listener.retry.backoff.delay"),
            "KAFKA_LISTENER_RETRY_BACKOFF_DELAY"
        );
    }

    #[test]
    fn secrets() {
        for key in [
            "kafka.properties.sasl.password",
            "kafka.properties.ssl.key.password",
            "kafka.properties.sasl.jaas.config",
            "kafka.properties.ssl.keystore.location",
            "kafka.consumer.properties.oauth.TOKEN",
            "kafka.properties.client.secret",
        ] {
            assert!(is_secret(key), "{key}");
        }
        assert!(!is_secret("kafka.bootstrap-servers"));
        assert!(!is_secret("kafka.properties.ssl.ca.location"));
    }

    #[test]
    fn suggestions() {
        let cases = [
            ("kafka.consumer.grup-id", Some("kafka.consumer.group-id")),
            ("kafka.bootstrap-server", Some("kafka.bootstrap-servers")),
            ("kafka.bootstrap.servers", Some("kafka.bootstrap-servers")),
            ("kafka.consumer.groupId", Some("kafka.consumer.group-id")),
            ("kafka.consumer.group_id", Some("kafka.consumer.group-id")),
            ("kafka.listener.ackMode", Some("kafka.listener.ack-mode")),
            ("kafka.listener.ack-mdoe", Some("kafka.listener.ack-mode")),
            ("kafka.concurrency", Some("kafka.listener.concurrency")),
            (
                "kafka.listener.on_order.concurrncy",
                Some("kafka.listener.on_order.concurrency"),
            ),
            (
                "kafka.listener.retry.max-attempts",
                Some("kafka.listener.retry.attempts"),
            ),
            ("kafka.something-else-entirely", None),
        ];
        for (input, expected) in cases {
            assert_eq!(suggest_key(input).as_deref(), expected, "{input}");
        }
    }
}
