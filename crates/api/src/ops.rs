//! Probes, metrics and the fallbacks.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{ApiError, AppState};

/// Latency buckets (seconds) for every `*_seconds` histogram: from a cached
/// style hit (~1 ms) to a 100 MP render (~10 s).
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide Prometheus recorder, installed on first use. The
/// `metrics` facade has one global recorder, so several apps in one process
/// (the tests) share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then our
            // handle renders an empty page rather than breaking the app.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    operation_id = "healthz",
    responses((status = 200, description = "Alive", body = crate::schema::Health)),
)]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database and the blob store both take a write: a
/// full disk or a lock held too long turns it red, not only an outage.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    operation_id = "readyz",
    responses(
        (status = 200, description = "The database and the blob store take writes", body = crate::schema::Ready),
        crate::error::Unavailable,
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Whatever the cause (full, down, locked), a probe answers 503: what a
    // load balancer acts on. The cause goes to the log.
    let not_ready = |what: &str, e: &dyn std::fmt::Display| {
        ApiError::Unavailable(format!("readyz: the {what} cannot take writes: {e}"))
    };
    state
        .catalog
        .probe_write(easel_catalog::now_ms())
        .await
        .map_err(|e| not_ready("database", &e))?;
    state
        .store
        .probe_write()
        .await
        .map_err(|e| not_ready("object store", &e))?;
    Ok(
        Json(serde_json::json!({ "status": "ready", "database": "ok", "store": "ok" }))
            .into_response(),
    )
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let handle = metrics_handle();
    // The queue lives in the database, shared by every worker process, so
    // its depth is read at scrape time rather than counted in memory.
    match state.catalog.queue_depth().await {
        Ok(depth) => metrics::gauge!("easel_queue_depth").set(depth as f64),
        Err(e) => tracing::warn!(error = %e, "could not read queue depth"),
    }
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_string())
}

pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
