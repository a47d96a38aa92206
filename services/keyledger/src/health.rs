//! The roles' own health and metrics over HTTP (`GET /healthz`, `GET /metrics`, and
//! `GET /digest`: the key state's digest at its control sequence), so an operator
//! sees at once when the service fails closed (the audit log refuses records) or cannot vouch
//! for its key state (the follower stopped on a record it cannot verify).
//!
//! `keyledger dev` serves it on 127.0.0.1:4281 (`$KEYLEDGER_HEALTH_ADDR`). No secret and no
//! record data is exposed: only states, reasons and counters.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::audit::AuditHealth;
use crate::follower::FollowerHealth;
use crate::roles::RoleCtx;

/// Default listen address in dev.
pub const DEV_LISTEN: &str = "127.0.0.1:4281";

/// A running health server.
pub struct HealthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Serves `/healthz` and `/metrics` for `ctx` on `listen` (port 0: any free port).
pub async fn serve(ctx: Arc<RoleCtx>, listen: SocketAddr) -> anyhow::Result<HealthServer> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/digest", get(digest))
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "health server stopped");
        }
    });
    Ok(HealthServer { addr, task })
}

async fn healthz(State(ctx): State<Arc<RoleCtx>>) -> impl IntoResponse {
    let follower = ctx.follower.health();
    let audit = ctx.audit.health();
    let (follower_state, follower_reason) = match &follower {
        FollowerHealth::Following => ("following", String::new()),
        FollowerHealth::Failed(r) => ("failed", r.clone()),
    };
    let (audit_state, audit_reason) = match &audit {
        AuditHealth::Writing => ("writing", String::new()),
        AuditHealth::Failing(r) => ("failing", r.clone()),
    };
    let ok = matches!(follower, FollowerHealth::Following) && matches!(audit, AuditHealth::Writing);
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "failing" },
        "projection": {"state": follower_state, "reason": follower_reason, "applied_seq": ctx.follower.applied_seq()},
        "audit": {"lane": ctx.audit.lane(), "state": audit_state, "reason": audit_reason},
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body))
}

/// `GET /digest`: `{"control_seq": N, "state_digest": "<64 hex>"}`, read under one lock, so
/// the digest is the projection's state after exactly control sequence N. `keyledger replay
/// --to-seq N` rebuilds the same digest from the log alone (issue #4). Not secret: a hash of
/// key metadata and material commitments.
async fn digest(State(ctx): State<Arc<RoleCtx>>) -> impl IntoResponse {
    let (seq, digest) = {
        let p = ctx.follower.read();
        (p.last_applied_seq(), p.state_digest())
    };
    axum::Json(serde_json::json!({"control_seq": seq, "state_digest": hex::encode(digest)}))
}

async fn metrics(State(ctx): State<Arc<RoleCtx>>) -> impl IntoResponse {
    let c = ctx.audit.counters();
    let lane = ctx.audit.lane();
    let writing = u8::from(matches!(ctx.audit.health(), AuditHealth::Writing));
    let following = u8::from(matches!(ctx.follower.health(), FollowerHealth::Following));
    let text = format!(
        "# HELP keyledger_audit_writing 1 while the audit lane stores records; 0 while requests fail closed.\n\
         # TYPE keyledger_audit_writing gauge\n\
         keyledger_audit_writing{{lane=\"{lane}\"}} {writing}\n\
         # HELP keyledger_audit_records_stored_total Usage records acknowledged by JetStream.\n\
         # TYPE keyledger_audit_records_stored_total counter\n\
         keyledger_audit_records_stored_total{{lane=\"{lane}\"}} {}\n\
         # HELP keyledger_audit_blocks_stored_total Usage blocks acknowledged by JetStream.\n\
         # TYPE keyledger_audit_blocks_stored_total counter\n\
         keyledger_audit_blocks_stored_total{{lane=\"{lane}\"}} {}\n\
         # HELP keyledger_audit_blocks_failed_total Usage blocks that could not be stored.\n\
         # TYPE keyledger_audit_blocks_failed_total counter\n\
         keyledger_audit_blocks_failed_total{{lane=\"{lane}\"}} {}\n\
         # HELP keyledger_projection_following 1 while the projection follows the control log.\n\
         # TYPE keyledger_projection_following gauge\n\
         keyledger_projection_following {following}\n\
         # HELP keyledger_projection_applied_sequence Last control-log sequence applied.\n\
         # TYPE keyledger_projection_applied_sequence gauge\n\
         keyledger_projection_applied_sequence {}\n",
        c.records_stored.load(Relaxed),
        c.blocks_stored.load(Relaxed),
        c.blocks_failed.load(Relaxed),
        ctx.follower.applied_seq(),
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
