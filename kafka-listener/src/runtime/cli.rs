//! Command line and exit codes: [`run`], [`run_with`], the subcommands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::future::Future;

use clap::Parser;
use futures::future::BoxFuture;

use super::application::Application;
use super::logging::{init_tracing, Logging};
use super::signals::Signals;
use crate::listener::registered_listeners;
use crate::{Error, ProducerTemplate};

/// Command line of a service binary built on [`run`]. The options may come before or after
/// the subcommand (`orders check --config FILE` and `orders --config FILE check` alike).
#[derive(Debug, Parser)]
#[command(about = "A Kafka listener service built with kafka-listener", long_about = None)]
pub(super) struct Cli {
    /// Properties file to load (default: application.properties in the working directory,
    /// if there; an explicit file must exist).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Profile: also loads application-{NAME}.properties beside the config file.
    #[arg(long, value_name = "NAME", global = true)]
    profile: Option<String>,
    /// Overrides one key (highest precedence); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    set: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Run the listeners until SIGTERM or SIGINT (the default).
    Run,
    /// List the listeners: id, topics, group, ack mode, concurrency and error handling, as
    /// configured.
    Listeners,
    /// Print the effective configuration, each value with where it came from (secrets
    /// masked).
    Config,
    /// Validate the configuration, reach the brokers and verify every listener's topics and
    /// group; exit code 0 when everything holds, 1 with the first problem otherwise.
    Check,
    /// Print an AsyncAPI 3.0 document (JSON) of the listeners and their payload schemas.
    Asyncapi,
}

/// Loads the configuration, starts every registered listener, and runs until SIGTERM or
/// SIGINT; then shuts down gracefully (see the crate docs) and returns the exit code.
///
/// Command line: `--config FILE` (default: `application.properties` in the working directory
/// when it is there), `--profile NAME`, `--set key=value` (repeatable), `--help`, before or
/// after the subcommand: `run` (the default), `listeners`, `config` (the effective
/// configuration with sources, secrets masked), `check` (validate, reach the brokers, verify
/// topics and groups; exit code 0 or 1).
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
pub(super) type Runner = Box<dyn FnOnce(ProducerTemplate) -> BoxFuture<'static, ()> + Send>;

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

pub(super) fn run_inner(runner: Option<Runner>) -> ExitCode {
    let cli = Cli::parse();
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

pub(super) async fn run_cli(cli: Cli, runner: Option<Runner>) -> ExitCode {
    // Listen first: a SIGTERM that arrives while the application starts is kept and handled as
    // a graceful shutdown once it is up, instead of killing the process outright.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for SIGTERM/SIGINT: {e}");
            return ExitCode::from(1);
        }
    };
    let mut builder = Application::builder()
        .profile(cli.profile)
        .overrides(cli.set);
    if let Some(file) = cli.config {
        builder = builder.config_file(file);
    }
    // Logging as configured; a configuration that does not load is reported below, with the
    // default logging.
    init_tracing(&match builder.load_config() {
        Ok((config, _)) => Logging {
            json: config.get("kafka.logging.format") == Some("json"),
            levels: config.prefixed("logging.level."),
        },
        Err(_) => Logging::default(),
    });
    match cli.command {
        Some(Command::Listeners) => return print_listeners(&builder),
        Some(Command::Config) => {
            return match builder.load_config() {
                Ok((config, _)) => {
                    print!("{}", config.dump());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    report_startup_error(&e);
                    ExitCode::from(1)
                }
            };
        }
        Some(Command::Check) => {
            return match builder.check().await {
                Ok(verified) => {
                    for line in verified {
                        println!("ok: {line}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    report_startup_error(&e);
                    ExitCode::from(1)
                }
            };
        }
        Some(Command::Asyncapi) => {
            let title = std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "kafka-listener service".into());
            return match builder.asyncapi(&title) {
                Ok(doc) => {
                    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    report_startup_error(&e);
                    ExitCode::from(1)
                }
            };
        }
        Some(Command::Run) | None => {}
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

pub(super) fn report_startup_error(e: &Error) {
    eprintln!("error: {e}");
}

/// `listeners`: a line per listener container as configured, or, when the configuration does
/// not load, as registered (with the reason).
fn print_listeners(builder: &super::builder::ApplicationBuilder) -> ExitCode {
    match builder.describe() {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            for def in registered_listeners() {
                println!(
                    "{}\ttopics={}\t{}",
                    def.id,
                    def.topics.join(","),
                    def.location
                );
            }
            eprintln!("(as registered: the configuration did not load: {e})");
            ExitCode::from(1)
        }
    }
}
