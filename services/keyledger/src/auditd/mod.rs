//! auditd: follows the control stream and every usage stream into the tantivy audit index
//! (`keyledger-audit-index`) and serves it over HTTP.
//!
//! * [`runner`]: stream discovery, ordered-consumer followers resuming from the index's
//!   committed checkpoint, lag tracking.
//! * [`http`]: the axum API (`/v1/audit/search`, `/v1/audit/records/{id}`,
//!   `/v1/keys/{id}/usage`, `/healthz`, `/metrics`).
//! * [`auth`]: bearer tokens → account scope or auditor role; the [`auth::Authenticator`]
//!   trait is where SigV4 plugs in with the gateway.
//!
//! auditd only reads the log: it never creates, updates or deletes a stream.

pub mod auth;
pub mod http;
pub mod runner;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use keyledger_audit_index::{AuditIndex, AuditWriter, Realm, WriterOptions};
use tokio::sync::Semaphore;

pub use auth::{Authenticator, BearerTokens, TokenEntry, TokenFile};
pub use runner::{FollowState, RunnerState, RunnerTimings, StreamStatus};

/// Default listen address of `keyledger dev`'s audit API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4280";
/// Name of the index directory under a data directory.
pub const INDEX_DIR: &str = "audit-index";
/// Name of the token file under a data directory.
pub const TOKENS_FILE: &str = "audit-tokens.json";

/// How to run auditd.
pub struct AuditdConfig {
    /// Index directory (created if missing).
    pub index_dir: PathBuf,
    /// HTTP listen address (port 0 = any free port; see [`RunningAuditd::addr`]).
    pub listen: SocketAddr,
    /// Who may read, and what they see.
    pub authenticator: Arc<dyn Authenticator>,
    /// Partition and region for key ARNs of control events (must match the roles').
    pub realm: Realm,
    /// Writer tuning (commit cadence, memory).
    pub writer: WriterOptions,
    /// Discovery and lag timings.
    pub timings: RunnerTimings,
}

/// A running auditd.
pub struct RunningAuditd {
    /// The address the HTTP API listens on.
    pub addr: SocketAddr,
    /// The index (shares the reader the writer reloads).
    pub index: AuditIndex,
    /// The writer (status, flush).
    pub writer: Arc<AuditWriter>,
    /// Follower state.
    pub runner: Arc<RunnerState>,
    runner_task: tokio::task::JoinHandle<()>,
    server: crate::http_server::HttpServer,
}

/// Starts auditd on a NATS connection of the service account.
///
/// # Errors
/// The index cannot be opened (another writer holds it, other schema), or the address cannot
/// be bound.
pub async fn start(nats: async_nats::Client, config: AuditdConfig) -> anyhow::Result<RunningAuditd> {
    let index_dir = config.index_dir.clone();
    let (index, writer) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let index = AuditIndex::open(&index_dir)
            .with_context(|| format!("cannot open the audit index {}", index_dir.display()))?;
        let writer = index.writer(config.writer).context("cannot start the audit index writer")?;
        Ok((index, writer))
    })
    .await??;
    let writer = Arc::new(writer);
    let runner = Arc::new(RunnerState::default());
    let alive = Arc::new(AtomicBool::new(true));
    let js = keyledger_log::jetstream(nats.clone());
    let runner_task = {
        let (writer, runner, alive) = (writer.clone(), runner.clone(), alive.clone());
        tokio::spawn(async move {
            runner::run(js, writer, runner, config.realm, config.timings).await;
            alive.store(false, Ordering::SeqCst);
        })
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let state = http::ApiState {
        index: index.clone(),
        auth: config.authenticator,
        writer: writer.clone(),
        runner: runner.clone(),
        runner_alive: alive,
        searches: Arc::new(Semaphore::new(http::MAX_CONCURRENT_SEARCHES)),
        nats,
    };
    let server = crate::http_server::HttpServer::spawn(listener, http::router(state), "auditd");
    tracing::info!(%addr, "auditd listening");
    Ok(RunningAuditd { addr, index, writer, runner, runner_task, server })
}

impl RunningAuditd {
    /// Stops following, commits what was indexed, and stops the HTTP server.
    pub async fn stop(self) {
        self.runner_task.abort();
        let _ = self.runner_task.await;
        if let Err(e) = self.writer.close().await {
            tracing::warn!(error = %e, "audit index: final commit failed");
        }
        self.server.stop().await;
    }

    /// Stops without the final commit (what a crash does); tests use it.
    pub async fn abort(self) {
        self.runner_task.abort();
        let _ = self.runner_task.await;
        self.server.abort();
        let writer = self.writer.clone();
        let _ = tokio::task::spawn_blocking(move || writer.abort()).await;
    }
}

/// The token file of a data directory, created on first use with an auditor token and one
/// token per `(name, account)`; the URL is updated to `url`.
///
/// # Errors
/// Unreadable or unwritable file.
pub fn ensure_token_file(data_dir: &Path, url: &str, accounts: &[(&str, &str)]) -> anyhow::Result<TokenFile> {
    let path = data_dir.join(TOKENS_FILE);
    let mut file = if path.exists() { TokenFile::read_from(&path)? } else { TokenFile::generate(url, accounts) };
    file.url = url.to_owned();
    file.write_to(&path)?;
    Ok(file)
}

/// `keyledger dev`'s auditd: index under `<data_dir>/audit-index`, tokens in
/// `<data_dir>/audit-tokens.json` (an `auditor` token and a `dev` token for `dev_account`),
/// HTTP on `listen`.
///
/// # Errors
/// As [`start`] and [`ensure_token_file`].
pub async fn start_dev(
    service: &keyledger_nats_server::ServiceProfile,
    data_dir: &Path,
    listen: SocketAddr,
    dev_account: &str,
) -> anyhow::Result<RunningAuditd> {
    let nats = crate::cli::connect_service(service).await?;
    let url = format!("http://{listen}");
    let tokens = ensure_token_file(data_dir, &url, &[("dev", dev_account)])?;
    let config = AuditdConfig {
        index_dir: data_dir.join(INDEX_DIR),
        listen,
        authenticator: Arc::new(BearerTokens::new(&tokens)?),
        realm: Realm::default(),
        writer: WriterOptions::default(),
        timings: RunnerTimings::default(),
    };
    let running = start(nats, config).await?;
    if running.addr != listen {
        ensure_token_file(data_dir, &format!("http://{}", running.addr), &[])?;
    }
    Ok(running)
}

/// The audit API address of `keyledger dev`: `$KEYLEDGER_AUDIT_ADDR`, else [`DEFAULT_LISTEN`].
///
/// # Errors
/// An unparsable `$KEYLEDGER_AUDIT_ADDR`.
pub fn dev_listen() -> anyhow::Result<SocketAddr> {
    let text = std::env::var("KEYLEDGER_AUDIT_ADDR").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    text.parse().with_context(|| format!("KEYLEDGER_AUDIT_ADDR {text:?} is not an address like 127.0.0.1:4280"))
}
