//! The crate's error type.

use std::fmt;

/// A boxed error, what handlers return: `Result<(), BoxError>` accepts any
/// `std::error::Error + Send + Sync` through `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while starting or running listeners.
///
/// Variants name the operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be loaded or is invalid.
    #[error("configuration: {0}")]
    Config(Box<crate::config::ConfigError>),
    /// A `#[kafka_listener]` declaration is inconsistent (duplicate id, bad value after placeholders).
    #[error("listener {id}: {message}")]
    Listener {
        /// The listener id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// librdkafka refused to create a client, usually because of a bad passthrough property.
    #[error("creating the {client} client: {source}{}", origin_suffix(.origin))]
    ClientCreation {
        /// Which client ("consumer for on_order", "producer", ...).
        client: String,
        /// Where the offending setting came from, if known.
        origin: Option<String>,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The brokers could not be reached within the start-up deadline.
    #[error("broker unreachable: could not fetch metadata from {bootstrap} within {timeout:?}: {source}")]
    BrokerUnreachable {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// The deadline.
        timeout: std::time::Duration,
        /// The last error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The brokers refused the client's SASL credentials.
    #[error("authentication failed at {bootstrap}: {detail} (check the SASL mechanism, username and password: kafka.properties.sasl.* or kafka.jaas.*)")]
    Authentication {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// librdkafka's description (never contains the password).
        detail: String,
    },
    /// The TLS handshake with the brokers failed (certificate not trusted, wrong protocol).
    #[error("TLS with {bootstrap} failed: {detail} (is the broker's certificate signed by the CA in kafka.ssl.trust-store-location, and does the broker speak TLS on that port?)")]
    Tls {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// librdkafka's description.
        detail: String,
    },
    /// The principal lacks an ACL a listener needs.
    #[error("listener {id}: not authorized for {what} {name:?}: {detail} (the principal needs READ and DESCRIBE on {what} {name})")]
    NotAuthorized {
        /// The listener id.
        id: String,
        /// `"group"` or `"topic"`.
        what: &'static str,
        /// The group or topic.
        name: String,
        /// librdkafka's description.
        detail: String,
    },
    /// A subscribed topic does not exist (and `kafka.listener.missing-topics-fatal` is true).
    #[error("listener {id}: topic {topic:?} does not exist on {bootstrap} (topics are never auto-created; create it, or set kafka.listener.missing-topics-fatal=false to wait for it)")]
    MissingTopic {
        /// The listener id.
        id: String,
        /// The missing topic.
        topic: String,
        /// The bootstrap servers asked.
        bootstrap: String,
    },
    /// A Kafka operation failed.
    #[error("{operation}: {source}")]
    Kafka {
        /// What was being done.
        operation: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A send was reported delivered without the offset it was written at (under `acks=1` or
    /// `all`); it is not counted as delivered.
    #[error("sending to {topic}: the delivery report has no offset, so the record is not known to be written; treated as not delivered")]
    Unconfirmed {
        /// The topic.
        topic: String,
    },
    /// The producer's buffer stayed full for `max.block.ms`: the broker does not keep up (or
    /// is unreachable) and the send gave up instead of queueing without bound.
    #[error("sending to {topic}: the producer's buffer (kafka.producer.buffer-memory) stayed full for {waited:?} (kafka.producer.properties.max.block.ms); the broker does not take records as fast as they are sent")]
    ProducerBufferFull {
        /// The topic.
        topic: String,
        /// How long the send waited.
        waited: std::time::Duration,
    },
    /// `send_default` without `kafka.template.default-topic`.
    #[error("send_default: no default topic is configured (kafka.template.default-topic)")]
    NoDefaultTopic,
    /// Serializing a value to send failed.
    #[error("serializing a record value: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Shutdown could not commit or flush everything it should have.
    #[error("shutdown incomplete: {0}")]
    Shutdown(String),
    /// A task the runtime ran on a blocking thread panicked.
    #[error("{what} panicked: {message}")]
    Panicked {
        /// What the task was doing.
        what: String,
        /// The panic's message.
        message: String,
    },
    /// An I/O error (signal handlers, runtime start).
    #[error("{operation}: {source}")]
    Io {
        /// What was being done.
        operation: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn origin_suffix(origin: &Option<String>) -> OriginSuffix<'_> {
    OriginSuffix(origin.as_deref())
}

struct OriginSuffix<'a>(Option<&'a str>);

impl fmt::Display for OriginSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(origin) => write!(f, " (set at {origin})"),
            None => Ok(()),
        }
    }
}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::Config(Box::new(e))
    }
}

impl Error {
    pub(crate) fn kafka(operation: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            operation: operation.into(),
            source,
        }
    }
}
