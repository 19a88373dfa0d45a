//! Running the application: configuration, producer, containers, signals, shutdown.
//!
//! One file per job: [`cli`] (command line, exit codes), [`signals`], [`logging`] (tracing
//! set-up), [`builder`] ([`ApplicationBuilder`]), [`plan`] (listener planning), [`clients`]
//! (librdkafka client configuration, the producer), [`check`] (the start-up check) and
//! [`application`] (a running [`Application`], shutdown).

mod application;
mod asyncapi;
mod builder;
mod check;
mod cli;
mod clients;
mod logging;
mod plan;
mod signals;
mod topics;

pub use application::{Application, ShutdownReport};
pub use builder::ApplicationBuilder;
pub use cli::{run, run_with};
