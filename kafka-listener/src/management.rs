//! The management endpoint (`kafka.management.port`, off by default): health for Kubernetes
//! probes and metrics for Prometheus, bound to `127.0.0.1` unless `kafka.management.address`
//! says otherwise.
//!
//! | path | answers |
//! |---|---|
//! | `/health/live` (also `/actuator/health/liveness`) | 200 while no consumer died; 503 once one did (the process then exits with code 4) |
//! | `/health/ready` (also `/actuator/health/readiness`) | 200 once every running listener's consumers are in their group (an empty assignment counts: more consumers than partitions is legitimately idle) and no circuit breaker is open; 503 before that, while a breaker is open, after a consumer died, and from the start of shutdown |
//! | `/metrics` (also `/actuator/prometheus`) | the Prometheus text format (see [`telemetry`](crate::telemetry)) |
//!
//! A listener stopped or paused on purpose keeps both up: readiness looks at running
//! containers only, and a pause is not a failure. Health bodies are JSON in Spring Boot
//! Actuator's shape (`{"status":"UP","components":{...}}`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::container::supervision;
use crate::registry::WeakRegistry;
use crate::{Error, Result};

/// What the endpoint reads.
struct Shared {
    registry: WeakRegistry,
    prometheus: Option<PrometheusHandle>,
    shutting_down: AtomicBool,
}

/// A running management endpoint; stopped with [`Management::stop`].
#[derive(Debug)]
pub(crate) struct Management {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl Management {
    /// Binds `address:port` and serves until stopped.
    pub(crate) async fn start(
        address: &str,
        port: u16,
        registry: WeakRegistry,
        prometheus: Option<PrometheusHandle>,
    ) -> Result<Management> {
        let bind = format!("{address}:{port}");
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|source| Error::Io {
                operation: format!(
                    "binding the management endpoint to {bind} (kafka.management.address / kafka.management.port)"
                ),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| Error::Io {
            operation: "reading the management endpoint's address".into(),
            source,
        })?;
        let shared = Arc::new(Shared {
            registry,
            prometheus,
            shutting_down: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/health/live", get(live))
            .route("/actuator/health/liveness", get(live))
            .route("/health/ready", get(ready))
            .route("/actuator/health/readiness", get(ready))
            .route("/metrics", get(metrics))
            .route("/actuator/prometheus", get(metrics))
            .with_state(Arc::clone(&shared));
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the management endpoint stopped");
            }
        });
        tracing::info!(%address, "management endpoint: /health/live, /health/ready, /metrics");
        Ok(Management {
            address,
            shared,
            stop,
            task,
        })
    }

    /// Where it listens.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Shutdown began: readiness goes down, liveness stays up.
    pub(crate) fn shutting_down(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
    }

    /// Stops serving (requests in progress finish).
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn health(up: bool, body: Value) -> Response {
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn live() -> Response {
    match supervision::death() {
        None => health(true, json!({ "status": "UP" })),
        Some(cause) => health(
            false,
            json!({ "status": "DOWN", "details": { "error": cause } }),
        ),
    }
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(cause) = supervision::death() {
        return health(
            false,
            json!({ "status": "DOWN", "details": { "error": cause } }),
        );
    }
    let registry = match shared.registry.upgrade() {
        Some(r) if !shared.shutting_down.load(Ordering::Acquire) => r,
        _ => {
            return health(
                false,
                json!({ "status": "OUT_OF_SERVICE", "details": { "reason": "shutting down" } }),
            )
        }
    };
    let mut up = true;
    let mut components = serde_json::Map::new();
    for c in registry.containers.get().into_iter().flatten() {
        let running = c.is_running();
        let joined = c.has_joined();
        let breaker = c.is_circuit_breaker_open();
        // Stopped on purpose (or never started: auto-startup off) is not a failure.
        let (status, reason) = if !running {
            ("UP", "stopped")
        } else if breaker {
            ("DOWN", "circuit breaker open")
        } else if !joined {
            ("DOWN", "not in its group yet")
        } else if c.is_paused() {
            ("UP", "paused")
        } else {
            ("UP", "running")
        };
        up &= status == "UP";
        components.insert(
            c.listener_id().to_owned(),
            json!({
                "status": status,
                "details": {
                    "state": reason,
                    "assignedPartitions": c.assigned_partitions().len(),
                    "pausedPartitions": c.paused_partitions(),
                },
            }),
        );
    }
    health(
        up,
        json!({ "status": if up { "UP" } else { "DOWN" }, "components": components }),
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let Some(handle) = &shared.prometheus else {
        return (
            StatusCode::NOT_FOUND,
            "metrics go to the application's own recorder (one was installed before kafka-listener's)\n",
        )
            .into_response();
    };
    if let Some(registry) = shared.registry.upgrade() {
        for c in registry.containers.get().into_iter().flatten() {
            c.refresh_gauges();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
