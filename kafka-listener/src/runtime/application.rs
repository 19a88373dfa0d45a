//! A running [`Application`] and its graceful shutdown.

use std::time::{Duration, Instant};

use super::builder::ApplicationBuilder;
use crate::container::{ContainerReport, ListenerContainer};
use crate::embedded::EmbeddedCluster;
use crate::registry::ListenerRegistry;
use crate::ProducerTemplate;

/// A running application: its containers, producer and (if configured) embedded cluster.
#[derive(Debug)]
pub struct Application {
    pub(super) registry: ListenerRegistry,
    pub(super) containers: Vec<ListenerContainer>,
    pub(super) producer: ProducerTemplate,
    pub(super) embedded: Option<EmbeddedCluster>,
    pub(super) bootstrap: String,
    pub(super) shutdown_timeout: Duration,
    /// `kafka.template.close-timeout`.
    pub(super) close_timeout: Option<Duration>,
    /// The management endpoint, when `kafka.management.port` is set.
    pub(super) management: Option<crate::management::Management>,
}

/// The outcome of a graceful shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Totals over every listener.
    pub listeners: ContainerReport,
    /// Records the producer could not deliver before the flush deadline.
    pub unflushed: i32,
    /// How long shutdown took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Nothing failed to commit or flush, and every consumer made its final commit (one that
    /// committed but was still leaving the group at the deadline does not count against it).
    pub fn is_clean(&self) -> bool {
        self.listeners.commit_failures == 0
            && self.listeners.consumers_not_closed == 0
            && self.listeners.consumers_died == 0
            && self.unflushed == 0
    }
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.listeners;
        write!(
            f,
            "shutdown in {:.1?}: {} records finished ({} skipped by the recoverer), {} partitions committed, {} records redeliverable, {} commit failures, {} handlers cut off, {} unflushed sends",
            self.elapsed, l.finished, l.recovered, l.committed_partitions, l.redeliverable, l.commit_failures, l.handlers_cut_off, self.unflushed
        )?;
        if l.consumers_not_closed > 0 {
            write!(
                f,
                ", {} consumers without a final commit by the deadline",
                l.consumers_not_closed
            )?;
        }
        if l.consumers_still_closing > 0 {
            write!(
                f,
                ", {} consumers still leaving the group",
                l.consumers_still_closing
            )?;
        }
        if l.consumers_died > 0 {
            write!(f, ", {} consumers died", l.consumers_died)?;
        }
        Ok(())
    }
}

impl Application {
    /// A builder.
    pub fn builder() -> ApplicationBuilder {
        ApplicationBuilder::default()
    }

    /// The shared producer.
    pub fn producer(&self) -> &ProducerTemplate {
        &self.producer
    }

    /// Where the management endpoint listens (`kafka.management.port`; with port `0`, the port
    /// the system chose).
    pub fn management_address(&self) -> Option<std::net::SocketAddr> {
        self.management.as_ref().map(|m| m.address())
    }

    /// The bootstrap servers in use (the embedded cluster's when `embedded`).
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The embedded cluster, when `kafka.bootstrap-servers=embedded`.
    pub fn embedded(&self) -> Option<&EmbeddedCluster> {
        self.embedded.as_ref()
    }

    /// A listener's container, by id.
    pub fn container(&self, id: &str) -> Option<&ListenerContainer> {
        self.containers.iter().find(|c| c.listener_id() == id)
    }

    /// The registry of this application's containers.
    pub fn registry(&self) -> &ListenerRegistry {
        &self.registry
    }

    /// Records finished so far by every listener.
    pub fn finished(&self) -> u64 {
        self.containers
            .iter()
            .map(ListenerContainer::finished)
            .sum()
    }

    /// Graceful shutdown: stop fetching, finish in-flight records within each listener's
    /// shutdown timeout, commit what finished, flush the producer, close the consumers.
    pub async fn shutdown(self) -> ShutdownReport {
        let started = Instant::now();
        let Application {
            containers,
            producer,
            embedded,
            shutdown_timeout,
            close_timeout,
            registry,
            management,
            ..
        } = self;
        if let Some(m) = &management {
            m.shutting_down();
        }
        let deadlines: Vec<Instant> = containers
            .iter()
            .map(|c| started + c.properties().shutdown_timeout)
            .collect();
        for (c, d) in containers.iter().zip(&deadlines) {
            c.stop(*d);
        }
        let flush_budget = shutdown_timeout.max(Duration::from_secs(5));
        let (listeners, unflushed) = tokio::task::spawn_blocking(move || {
            let mut total = ContainerReport::default();
            for (c, d) in containers.iter().zip(deadlines) {
                total.merge(&c.wait(d));
            }
            // Handlers may take a `ListenerRegistry` until their containers stopped; after
            // that its clones of the containers (and their producer handles) must go before
            // the embedded cluster does.
            drop(registry);
            drop(containers);
            // Sends that handlers awaited are delivered already; this catches fire-and-forget ones.
            let left = (started + flush_budget).saturating_duration_since(Instant::now());
            let budget = close_timeout.unwrap_or(left.max(Duration::from_secs(1)));
            let unflushed = match producer.flush(budget) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "producer flush incomplete");
                    producer.in_flight().max(1)
                }
            };
            // The cluster goes last: clients still connected to it would log it as lost. Give
            // the tasks that still hold a producer handle (workers winding down, an aborted
            // runner) a moment to drop it.
            if embedded.is_some() {
                let until = Instant::now() + Duration::from_secs(1);
                while producer.handles() > 1 && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            drop(producer);
            drop(embedded);
            (total, unflushed)
        })
        .await
        .unwrap_or_default();
        let report = ShutdownReport {
            listeners,
            unflushed,
            elapsed: started.elapsed(),
        };
        if report.is_clean() {
            tracing::info!("{report}");
        } else {
            tracing::error!("{report}");
        }
        if let Some(m) = management {
            m.stop().await;
        }
        report
    }
}
