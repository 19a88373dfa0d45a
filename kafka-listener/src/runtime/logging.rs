//! Tracing set-up for service binaries: text or JSON (`kafka.logging.format`), levels from
//! `RUST_LOG` or, when it is not set, from Spring Boot's `logging.level.<target>` keys in the
//! configuration (`logging.level.root=warn`, `logging.level.kafka_listener=debug`).

use tracing_subscriber::EnvFilter;

/// What the subscriber is built from.
#[derive(Debug, Default)]
pub(super) struct Logging {
    /// `kafka.logging.format=json`: one JSON object a line.
    pub(super) json: bool,
    /// `logging.level.<target>` pairs as configured (`root` for the default level).
    pub(super) levels: Vec<(String, String)>,
}

/// The filter directives: `RUST_LOG` if set, else ours with the configured levels on top.
pub(super) fn directives(levels: &[(String, String)], rust_log: Option<&str>) -> String {
    if let Some(env) = rust_log.filter(|s| !s.trim().is_empty()) {
        return env.to_owned();
    }
    let level = |value: &str| match value.trim().to_ascii_lowercase().as_str() {
        "fatal" => "error".to_owned(),
        "warning" => "warn".to_owned(),
        other => other.to_owned(),
    };
    let mut root = "info".to_owned();
    let mut targets = vec!["librdkafka=warn".to_owned()];
    for (target, value) in levels {
        if target == "root" {
            root = level(value);
        } else {
            // Spring's dotted logger names, Rust's module paths.
            targets.retain(|d| !d.starts_with(&format!("{target}=")));
            targets.push(format!("{}={}", target.replace('.', "::"), level(value)));
        }
    }
    std::iter::once(root)
        .chain(targets)
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn init_tracing(logging: &Logging) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let spec = directives(&logging.levels, rust_log.as_deref());
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("warning: log levels {spec:?}: {e}; using info");
        EnvFilter::new("info,librdkafka=warn")
    });
    // An application that installed its own subscriber keeps it.
    if logging.json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_then_spring_levels_then_ours() {
        let levels = vec![
            ("root".to_owned(), "WARN".to_owned()),
            ("kafka_listener.container".to_owned(), "debug".to_owned()),
            ("librdkafka".to_owned(), "error".to_owned()),
        ];
        assert_eq!(directives(&levels, Some("trace")), "trace");
        assert_eq!(
            directives(&levels, None),
            "warn,kafka_listener::container=debug,librdkafka=error"
        );
        assert_eq!(directives(&[], Some(" ")), "info,librdkafka=warn");
    }
}
