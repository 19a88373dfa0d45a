//! The error type of configuration loading.
//!
//! Every message starts with *where* the offending value came from (a file and
//! line, an environment variable, a `--set` flag, ...), because the person
//! reading it has to go and fix it there. Values of secret keys never appear
//! in a message.

use std::io;
use std::path::PathBuf;

use super::Source;

/// Everything that can go wrong while loading configuration or deriving
/// [`Settings`](super::Settings) from it.
///
/// Loading reports *all* problems it finds at once, as [`ConfigError::Many`],
/// so a user fixes a broken file in one round trip instead of one error per
/// restart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configuration file could not be read.
    // The io::Error is part of the message rather than `source()`: it is the
    // whole explanation ("No such file or directory"), and exposing it both
    // ways would make error reporters print it twice.
    #[error("config file {}: {error}", path.display())]
    Io {
        /// The file as it was named (not canonicalized, so it matches what the user typed).
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },

    /// A configuration file is not valid `.properties` syntax or not UTF-8.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },

    /// A `--set` item without `=`.
    #[error("--set {arg}: expected key=value (e.g. --set kafka.listener.concurrency=4)")]
    BadOverride {
        /// The item as given.
        arg: String,
    },

    /// A `kafka.*` key that is not part of the schema.
    #[error("{origin}: unknown key {key}{}", did_you_mean(suggestion.as_deref()))]
    UnknownKey {
        /// Where the key was written.
        origin: Source,
        /// The key, as written.
        key: String,
        /// The closest known key, if any is close enough to be a plausible typo.
        suggestion: Option<String>,
    },

    /// A Spring Boot key that this crate deliberately does not support.
    #[error("{origin}: {key} is not supported: {reason}")]
    Unsupported {
        /// Where the key was written.
        origin: Source,
        /// The key, as written.
        key: String,
        /// Why it is not supported and what to do instead.
        reason: &'static str,
    },

    /// A known key whose value does not parse as the key's type.
    #[error("{}", invalid_value(origin, key, value.as_deref(), expected))]
    InvalidValue {
        /// Where the value was written.
        origin: Source,
        /// The key (normalized to the `kafka.` prefix).
        key: String,
        /// The offending value, already masked for secret keys; `None` when
        /// `origin` displays it already (a `--set key=value` flag).
        value: Option<String>,
        /// What was expected instead, e.g. `expected a positive integer (1, 2, ...)`.
        expected: String,
    },

    /// A `${NAME}` placeholder with no key, no environment variable and no default.
    #[error(
        "{at}: unresolved placeholder ${{{name}}} \
         (no key or environment variable {name}, and no default)"
    )]
    UnresolvedPlaceholder {
        /// Where the value containing the placeholder came from, e.g.
        /// `application.properties:4: kafka.consumer.group-id`.
        at: String,
        /// The placeholder name.
        name: String,
    },

    /// Placeholders that refer to each other in a loop.
    #[error("{at}: placeholder cycle {}", cycle_chain(chain))]
    PlaceholderCycle {
        /// Where the value that started the loop came from.
        at: String,
        /// The names in the loop, first repeated at the end.
        chain: Vec<String>,
    },

    /// A placeholder that is syntactically broken (e.g. `${` without `}`).
    #[error("{at}: {problem}")]
    MalformedPlaceholder {
        /// Where the value came from.
        at: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A per-listener key (`kafka.listener.<id>.<key>` or
    /// `KAFKA_LISTENER_<ID>_<KEY>`) whose id matches no listener.
    #[error(
        "{origin}: {key}: no listener with id {id}{}{}",
        did_you_mean(suggestion.as_deref()),
        listener_list(known)
    )]
    UnknownListener {
        /// Where the key was written.
        origin: Source,
        /// The full key, e.g. `kafka.listener.on_ordr.concurrency`.
        key: String,
        /// The id part of the key.
        id: String,
        /// The closest listener id, if any.
        suggestion: Option<String>,
        /// All listener ids that exist. (A boxed slice keeps `ConfigError`
        /// small enough to return by value everywhere.)
        known: Box<[String]>,
    },

    /// Several errors, displayed one per line.
    #[error("{}", many(.0))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// The individual errors: the contents of [`ConfigError::Many`], or just
    /// `self` for any other variant.
    pub fn errors(&self) -> &[ConfigError] {
        match self {
            ConfigError::Many(errors) => errors,
            other => std::slice::from_ref(other),
        }
    }

    /// Combines collected errors: `None` when there are none, the error
    /// itself when there is one, [`ConfigError::Many`] otherwise.
    pub(crate) fn combine(errors: Vec<ConfigError>) -> Option<ConfigError> {
        // Flatten and drop exact duplicates: the same broken placeholder is
        // reached from every key that refers to it, and repeating it only
        // buries the other errors.
        let mut flat: Vec<ConfigError> = Vec::with_capacity(errors.len());
        let mut seen = std::collections::HashSet::new();
        for error in errors {
            let parts = match error {
                ConfigError::Many(inner) => inner,
                single => vec![single],
            };
            for part in parts {
                if seen.insert(part.to_string()) {
                    flat.push(part);
                }
            }
        }
        match flat.len() {
            0 => None,
            1 => flat.pop(),
            _ => Some(ConfigError::Many(flat)),
        }
    }
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!("; did you mean {s}?"))
}

fn invalid_value(origin: &Source, key: &str, value: Option<&str>, expected: &str) -> String {
    match value {
        Some(value) => format!("{origin}: {key} = {value:?}: {expected}"),
        None => format!("{origin}: {expected}"),
    }
}

fn cycle_chain(chain: &[String]) -> String {
    let links: Vec<String> = chain.iter().map(|name| format!("${{{name}}}")).collect();
    links.join(" -> ")
}

fn listener_list(known: &[String]) -> String {
    if known.is_empty() {
        " (no listeners are registered)".to_owned()
    } else {
        format!(" (listeners: {})", known.join(", "))
    }
}

fn many(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}
