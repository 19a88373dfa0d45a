//! `kafka.bootstrap-servers=embedded`: librdkafka's in-process mock cluster.
//!
//! Good for the quick start and fast tests, never for evidence of a delivery guarantee: it
//! keeps only the newest ~5 MiB or 100,000 messages per partition, nothing is durable, and its
//! group coordinator is simpler than Kafka's (it also waits 3 s before the first group join).

use std::sync::mpsc;
use std::thread;

use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaApiKey;
use rdkafka::types::RDKafkaRespErr;

use crate::{Error, Result};

enum Command {
    CreateTopic(String, i32, mpsc::Sender<Result<()>>),
    RequestErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>, mpsc::Sender<()>),
    ClearRequestErrors(RDKafkaApiKey, mpsc::Sender<()>),
    Stop,
}

/// A running mock cluster. It lives on its own thread (librdkafka's handle is not `Send`);
/// dropping this stops it.
#[derive(Debug)]
pub struct EmbeddedCluster {
    bootstrap: String,
    commands: mpsc::Sender<Command>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EmbeddedCluster {
    /// Starts a one-broker mock cluster.
    pub fn start() -> Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands, rx) = mpsc::channel::<Command>();
        let thread = thread::Builder::new()
            .name("kl-embedded".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx
                            .send(Err(Error::kafka("starting the embedded mock cluster", e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(command) = rx.recv() {
                    match command {
                        Command::CreateTopic(name, partitions, reply) => {
                            let result = cluster.create_topic(&name, partitions, 1).map_err(|e| {
                                Error::kafka(
                                    format!("creating topic {name} on the embedded cluster"),
                                    e,
                                )
                            });
                            let _ = reply.send(result);
                        }
                        Command::RequestErrors(api, errors, reply) => {
                            cluster.request_errors(api, &errors);
                            let _ = reply.send(());
                        }
                        Command::ClearRequestErrors(api, reply) => {
                            cluster.clear_request_errors(api);
                            let _ = reply.send(());
                        }
                        Command::Stop => break,
                    }
                }
            })
            .map_err(|source| Error::Io {
                operation: "spawning the embedded cluster thread".into(),
                source,
            })?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| Error::Shutdown("embedded cluster thread died".into()))??;
        tracing::warn!(
            bootstrap = %bootstrap,
            "EMBEDDED KAFKA (librdkafka mock cluster): in-memory, nothing is durable, keeps only the newest ~100,000 records per partition. For trying things out only; set kafka.bootstrap-servers to a real broker for anything else."
        );
        Ok(EmbeddedCluster {
            bootstrap,
            commands,
            thread: Some(thread),
        })
    }

    /// The bootstrap servers to give clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic (the mock has no admin API). Creating an existing topic is harmless.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Command::CreateTopic(name.to_owned(), partitions, tx))
            .map_err(|_| Error::Shutdown("embedded cluster stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::Shutdown("embedded cluster stopped".into()))?
    }
}

impl EmbeddedCluster {
    /// Fault injection, for tests: the next requests of kind `api` (one per error, in order)
    /// fail with `errors`. `RD_KAFKA_RESP_ERR__TRANSPORT` makes the mock broker drop the
    /// connection instead.
    pub fn inject_request_errors(
        &self,
        api: RDKafkaApiKey,
        errors: &[RDKafkaRespErr],
    ) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Command::RequestErrors(api, errors.to_vec(), tx))
            .map_err(|_| Error::Shutdown("embedded cluster stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::Shutdown("embedded cluster stopped".into()))
    }

    /// Drops the errors still waiting for requests of kind `api` (injected with
    /// [`inject_request_errors`](Self::inject_request_errors) and not used up yet).
    pub fn clear_request_errors(&self, api: RDKafkaApiKey) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Command::ClearRequestErrors(api, tx))
            .map_err(|_| Error::Shutdown("embedded cluster stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::Shutdown("embedded cluster stopped".into()))
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
