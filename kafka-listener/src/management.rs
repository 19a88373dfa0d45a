//! The management endpoint (`kafka.management.port`, off by default): health for Kubernetes
//! probes and metrics for Prometheus, bound to `127.0.0.1` unless `kafka.management.address`
//! says otherwise.
//!
//! | path | answers |
//! |---|---|
//! | `/health/live` (also `/actuator/health/liveness`) | 200 while no consumer died; 503 once one did (the process then exits with code 4) |
//! | `/health/ready` (also `/actuator/health/readiness`) | 200 once every running listener's consumers are in their group (an empty assignment counts: more consumers than partitions is legitimately idle) and no circuit breaker is open; 503 while the application starts, before that, while a breaker is open, after a consumer died, and from the start of shutdown |
//! | `/metrics` (also `/actuator/prometheus`) | the Prometheus text format (see [`telemetry`](crate::telemetry)) |
//! | `/` | the status page: listeners, groups, partitions with their committed lag and a chart of its last minutes, paused / stopped / circuit-breaker state, recent failures and dead letters (served from the binary; no CDN) |
//! | `/status` | what the page shows, as JSON |
//! | `POST /actions/<listener>/<action>` | `pause`, `resume`, `stop`, `start`, `reset-breaker`: only with `Authorization: Bearer <kafka.management.token>`; 403 without a configured token, 401 with a wrong or missing one, 409 once shutdown began |
//!
//! A listener stopped or paused on purpose keeps both up: readiness looks at running
//! containers only, and a pause is not a failure. Health bodies are JSON in Spring Boot
//! Actuator's shape (`{"status":"UP","components":{...}}`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
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
    /// The listeners were started (before: not ready).
    started: AtomicBool,
    /// `kafka.management.token`: actions need it.
    token: Option<String>,
    /// Each partition's committed lag over the last minutes: (listener, topic, partition) to
    /// (seconds since the epoch, lag) samples, one per `lag-interval`.
    history: Mutex<HashMap<PartitionKey, VecDeque<(i64, i64)>>>,
}

/// (listener, topic, partition).
type PartitionKey = (String, String, i32);

/// Samples kept per partition for the status page's chart.
const HISTORY: usize = 120;

/// A running management endpoint; stopped with [`Management::stop`].
#[derive(Debug)]
pub(crate) struct Management {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Management {
    /// Dropped without [`Management::stop`] (a start that failed later, an application dropped
    /// without shutdown): the server and the sampler stop anyway.
    fn drop(&mut self) {
        self.stop.cancel();
    }
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
        token: Option<String>,
        lag_interval: Duration,
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
            started: AtomicBool::new(false),
            token: token.filter(|t| !t.is_empty()),
            history: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/health/live", get(live))
            .route("/actuator/health/liveness", get(live))
            .route("/health/ready", get(ready))
            .route("/actuator/health/readiness", get(ready))
            .route("/metrics", get(metrics))
            .route("/actuator/prometheus", get(metrics))
            .route("/", get(page))
            .route("/status", get(status))
            .route("/actions/{listener}/{action}", post(action))
            .with_state(Arc::clone(&shared));
        let stop = CancellationToken::new();
        // The lag chart's samples.
        let (sampler, until) = (Arc::clone(&shared), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lag_interval);
            loop {
                tokio::select! {
                    () = until.cancelled() => break,
                    _ = tick.tick() => sample(&sampler),
                }
            }
        });
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the management endpoint stopped");
            }
        });
        tracing::info!(%address, "management endpoint: / (status page), /health/live, /health/ready, /metrics");
        Ok(Management {
            address,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// Where it listens.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// The listeners were started: readiness may go up.
    pub(crate) fn started(&self) {
        self.shared.started.store(true, Ordering::Release);
    }

    /// Shutdown began: readiness goes down, liveness stays up, actions are refused.
    pub(crate) fn shutting_down(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
    }

    /// Stops serving (requests in progress finish).
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
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
    if !shared.started.load(Ordering::Acquire) {
        return health(
            false,
            json!({ "status": "DOWN", "details": { "reason": "starting" } }),
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

/// One sample of every partition's lag into the history.
fn sample(shared: &Shared) {
    let Some(registry) = shared.registry.upgrade() else {
        return;
    };
    let now = crate::retry_topic::now_ms() / 1000;
    let mut history = shared.history.lock().unwrap_or_else(|p| p.into_inner());
    let mut current = std::collections::HashSet::new();
    for c in registry.containers.get().into_iter().flatten() {
        for (topic, partition, lag, _) in c.partition_status() {
            let Some(lag) = lag else { continue };
            let key = (c.listener_id().to_owned(), topic, partition);
            current.insert(key.clone());
            let series = history.entry(key).or_default();
            if series.len() == HISTORY {
                series.pop_front();
            }
            series.push_back((now, lag));
        }
    }
    // Partitions that moved away start a new chart if they come back.
    history.retain(|k, _| current.contains(k));
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let Some(registry) = shared.registry.upgrade() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    };
    let history = shared
        .history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let listeners: Vec<Value> = registry
        .containers
        .get()
        .into_iter()
        .flatten()
        .map(|c| {
            let id = c.listener_id();
            let p = c.properties();
            let partitions: Vec<Value> = c
                .partition_status()
                .into_iter()
                .map(|(topic, partition, lag, paused)| {
                    let chart: Vec<(i64, i64)> = history
                        .get(&(id.to_owned(), topic.clone(), partition))
                        .map(|s| s.iter().copied().collect())
                        .unwrap_or_default();
                    json!({
                        "topic": topic, "partition": partition, "lag": lag,
                        "paused": paused, "history": chart,
                    })
                })
                .collect();
            json!({
                "id": id,
                "group": p.group_id,
                "topics": p.topics,
                "pattern": p.topic_pattern,
                "ackMode": p.ack_mode.to_string(),
                "concurrency": p.concurrency,
                "running": c.is_running(),
                "paused": c.is_paused(),
                "joined": c.has_joined(),
                "circuitBreakerOpen": c.is_circuit_breaker_open(),
                "circuitBreakerTrips": c.circuit_breaker_trips(),
                "finished": c.finished(),
                "partitions": partitions,
                "recent": c.recent_events(),
            })
        })
        .collect();
    axum::Json(json!({
        "died": supervision::death(),
        "shuttingDown": shared.shutting_down.load(Ordering::Acquire),
        "actions": shared.token.is_some(),
        "listeners": listeners,
    }))
    .into_response()
}

async fn action(
    State(shared): State<Arc<Shared>>,
    Path((listener, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = &shared.token else {
        return (
            StatusCode::FORBIDDEN,
            "actions are off: set kafka.management.token to allow them\n",
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        // Nothing from the request is logged before it is authenticated.
        tracing::warn!("status page action refused: missing or wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            "a valid Authorization: Bearer token is needed\n",
        )
            .into_response();
    }
    if shared.shutting_down.load(Ordering::Acquire) {
        return (StatusCode::CONFLICT, "shutting down: no actions\n").into_response();
    }
    let Some(container) = shared
        .registry
        .upgrade()
        .and_then(|r| r.container(&listener))
    else {
        return (StatusCode::NOT_FOUND, format!("no listener {listener}\n")).into_response();
    };
    tracing::warn!(%listener, %action, "status page action");
    let done = match action.as_str() {
        "pause" => {
            container.pause();
            Ok(())
        }
        "resume" => {
            container.resume();
            Ok(())
        }
        "reset-breaker" => {
            container.reset_circuit_breaker();
            Ok(())
        }
        "start" => container.start().map_err(|e| e.to_string()),
        "stop" => {
            let timeout = container.properties().shutdown_timeout;
            let report = container.stop_gracefully(timeout).await;
            if report.commit_failures == 0 {
                Ok(())
            } else {
                Err(format!(
                    "stopped, with {} commit failures",
                    report.commit_failures
                ))
            }
        }
        other => {
            return (
                StatusCode::NOT_FOUND,
                format!("no action {other}: pause, resume, stop, start or reset-breaker\n"),
            )
                .into_response()
        }
    };
    match done {
        Ok(()) => (StatusCode::OK, format!("{action}: done\n")).into_response(),
        Err(e) => (StatusCode::CONFLICT, format!("{action}: {e}\n")).into_response(),
    }
}

/// Compares without stopping at the first difference (a token's prefix cannot be timed).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn page() -> Html<&'static str> {
    Html(include_str!("management/status.html"))
}
