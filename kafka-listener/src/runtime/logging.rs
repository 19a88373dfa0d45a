//! Tracing set-up for service binaries.

pub(super) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,librdkafka=warn"));
    // An application that installed its own subscriber keeps it.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
