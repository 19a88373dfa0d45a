//! Temporary stand-in until the configuration module lands.
/// Configuration error.
#[derive(Debug, thiserror::Error)]
#[error("config")]
pub struct ConfigError;
