//! The gateway role: the AWS KMS JSON 1.1 protocol over HTTP, in front of the NATS API, so
//! boto3, the aws CLI and the AWS Encryption SDK work unchanged with `--endpoint-url`.
//!
//! **Wire** (aws-kms-api.md §1): `POST /` with `X-Amz-Target: TrentService.<Operation>` and an
//! AWS JSON body. The gateway verifies SigV4 ([`sigv4`]) against the configured access keys
//! ([`credentials`]), then forwards the body unchanged to `kms.v1.<Operation>` over NATS from
//! its own account, with the verified principal in `Keyledger-Forwarded-Principal` and the
//! credential's last log position in `Keyledger-Min-Seq` ([`seqs`]). It adds no rule of its
//! own: validation, key resolution, state checks, error messages and full key ARNs all come
//! from the roles. It answers:
//!
//! * success: HTTP 200, `Content-Type: application/x-amz-json-1.1`, the role's JSON; an empty
//!   body for the operations AWS defines without output ([`NO_OUTPUT_OPERATIONS`]);
//! * errors: `{"__type", "message"}` with HTTP 400 for every client error, 500 for
//!   `KMSInternalException`/`KeyUnavailableException`, 503 for `DependencyTimeoutException`
//!   (`ErrorKind::http_status`), plus `x-amzn-ErrorType`;
//! * every response carries `x-amzn-RequestId` — the role's request id (the one in the audit
//!   record) when the request reached a role, else the gateway's own.
//!
//! **Order.** (1) SigV4 checks that need neither body nor secret (header form, date, scope,
//! clock skew, a known access key id), before any body byte is read; (2) the body, within
//! [`GatewayLimits::max_body_bytes`] and `body_read_timeout`, after reserving its announced
//! size from the body budget if it is over `unbudgeted_body_bytes` (64 KiB, more than any real
//! KMS request): `max_buffered_body_bytes` in all, at most `max_buffered_body_bytes_per_client`
//! per client network; no room → `ThrottlingException`;
//! (3) the signature; (4) `POST /` and the target; (5) forwarding, the only step that takes
//! one of the `max_in_flight` slots — so a client that sends its body slowly holds no slot
//! another request needs. Connections are bounded in all and per client network
//! (`max_connections_per_client`); headers must arrive within `header_read_timeout` (10 s).
//! What one client network can hold is bounded; many networks at once (a distributed flood)
//! are beyond what one process can refuse and belong to the network in front of it.
//!
//! Gateway-made answers, each reported ([`audit`]: in the audit log before the client is
//! answered, rate limited per client network) before it is sent: SigV4 failures (400, see
//! [`sigv4`]); a target that is not `TrentService.<Name>`, a repeated `X-Amz-Target`, or any
//! method/path but `POST /` → `UnknownOperationException`; a body over
//! [`GatewayLimits::max_body_bytes`] → HTTP **413** with
//! `{"__type": "RequestEntityTooLargeException"}` (AWS's front end answers oversized requests
//! with 413 before any service logic; no KMS request comes near 1 MiB); a body not received in
//! time → `SerializationException`; no room for the body → `ThrottlingException`. Not
//! reported: no answer from NATS in time → 503 `DependencyTimeoutException`; no responder →
//! 503 `DependencyTimeoutException` too (both are retryable for every AWS SDK); any other
//! transport failure → 500 `KMSInternalException`.
//!
//! Replies carrying plaintext (Decrypt, GenerateDataKey) pass through as the NATS payload's
//! bytes, never parsed or copied into a string; nothing logs a body, a secret or a signature.

pub mod audit;
pub mod credentials;
pub mod seqs;
pub mod sigv4;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use keyledger_kms::{ErrorKind, Realm};
use keyledger_nats_server::ServiceProfile;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::identity::{ForwardedPrincipal, FORWARDED_PRINCIPAL_HEADER};
use crate::protocol::{
    AUDIT_SEQ_HEADER, AUDIT_STREAM_HEADER, LOG_SEQ_HEADER, MIN_SEQ_HEADER, REQUEST_ID_HEADER, SERVICE_ERROR_HEADER,
};

use self::audit::{Rejection, RejectionSink};
use self::credentials::AccessKeys;
use self::seqs::SeqMemory;

pub use self::tls::TlsFiles;

/// Longest wait for a role to confirm a refusal report is stored (then it is logged instead
/// and the client answered): a refusal is answered within this even while NATS is down.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The loopback port `keyledger dev` serves the endpoint on.
pub const DEV_PORT: u16 = 4599;
/// The `X-Amz-Target` prefix of AWS KMS (`TrentService.<Operation>`).
pub const TARGET_PREFIX: &str = "TrentService.";
/// The SigV4 signing name of AWS KMS.
pub const SIGNING_NAME: &str = "kms";
/// Content type of requests and responses (AWS JSON 1.1).
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// AWS KMS operations whose output shape is empty: HTTP 200 with an empty body
/// (aws-kms-api.md §1.2).
pub const NO_OUTPUT_OPERATIONS: &[&str] = &[
    "CreateAlias",
    "DeleteAlias",
    "DisableKey",
    "DisableKeyRotation",
    "EnableKey",
    "EnableKeyRotation",
    "PutKeyPolicy",
    "RetireGrant",
    "RevokeGrant",
    "TagResource",
    "UntagResource",
    "UpdateAlias",
    "UpdateKeyDescription",
    "UpdatePrimaryRegion",
];

/// Bounds of the endpoint. Units are in the names.
#[derive(Debug, Clone)]
pub struct GatewayLimits {
    /// Largest request body accepted (bytes); larger → 413.
    pub max_body_bytes: usize,
    /// How long to wait for the roles' answer over NATS.
    pub nats_timeout: Duration,
    /// How long a client may take to send the request headers.
    pub header_read_timeout: Duration,
    /// How long a client may take to send the body.
    pub body_read_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// Requests handled at once; more wait.
    pub max_in_flight: usize,
    /// Open connections at once; more are closed on accept.
    pub max_connections: usize,
    /// Access keys whose last log position is remembered (read-your-writes).
    pub max_remembered_credentials: usize,
    /// Open connections at once from one client network (an IPv4 address, an IPv6 /64); more
    /// are closed on accept.
    pub max_connections_per_client: usize,
    /// Large request bodies held at once, in bytes, summed over every connection: each request
    /// announcing more than `unbudgeted_body_bytes` reserves its `Content-Length` (or
    /// `max_body_bytes` when it sends none) from the moment its headers are checked until its
    /// answer is sent. A request that cannot reserve its share within `body_budget_wait` is
    /// answered ThrottlingException (retryable).
    pub max_buffered_body_bytes: usize,
    /// The part of `max_buffered_body_bytes` one client network may hold; past it its next
    /// request is answered ThrottlingException at once. Without it, 64 connections announcing
    /// 1 MiB bodies they never send would hold the whole budget.
    pub max_buffered_body_bytes_per_client: usize,
    /// How long a request waits for room in the body budget.
    pub body_budget_wait: Duration,
    /// Requests announcing at most this many body bytes take nothing from the body budget:
    /// every real KMS request is that small (the largest, a 32 KiB key policy, fits), so a
    /// flood of large announced bodies cannot keep them out. Their memory is bounded by the
    /// connections instead (`max_connections` × this, 256 MiB by default).
    pub unbudgeted_body_bytes: usize,
    /// Refusals recorded one by one per client network: the refill rate (per second) and the
    /// burst of its token bucket. Refusals over it are counted into summaries ([`audit`]).
    pub refusal_records_per_client: crate::audit::Quota,
    /// Refusals recorded one by one over all clients (same form).
    pub refusal_records_total: crate::audit::Quota,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            nats_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            max_in_flight: 1024,
            max_connections: 4096,
            max_remembered_credentials: 65_536,
            max_connections_per_client: 512,
            max_buffered_body_bytes: 64 * 1024 * 1024,
            max_buffered_body_bytes_per_client: 8 * 1024 * 1024,
            body_budget_wait: Duration::from_secs(1),
            unbudgeted_body_bytes: 64 * 1024,
            refusal_records_per_client: crate::audit::Quota { per_sec: 10.0, burst: 50.0 },
            refusal_records_total: crate::audit::Quota { per_sec: 200.0, burst: 1000.0 },
        }
    }
}

/// What the gateway needs to run.
pub struct GatewayConfig {
    /// Listen address (`127.0.0.1:4599` in dev; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Optional TLS (PEM certificate chain and private key files).
    pub tls: Option<TlsFiles>,
    /// Partition and region: the SigV4 scope must name this region; principal ARNs use the
    /// partition.
    pub realm: Realm,
    /// The access keys, unwrapped.
    pub access_keys: AccessKeys,
    /// The clock SigV4 time checks read.
    pub clock: Clock,
    /// Bounds.
    pub limits: GatewayLimits,
    /// Where refusals are reported: `None` sends them to the roles over the gateway's NATS
    /// connection ([`audit::ReportToRoles`]: they are in the audit log before the client is
    /// answered), as `keyledger dev` and `keyledger serve` do; tests may collect them.
    pub rejections: Option<Arc<dyn RejectionSink>>,
}

/// A running gateway; [`RunningGateway::stop`] ends it.
pub struct RunningGateway {
    local_addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    task: JoinHandle<()>,
    flusher: JoinHandle<()>,
}

impl RunningGateway {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint URL for `--endpoint-url` (`http://127.0.0.1:4599`, or `https://…`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The minimum log sequence the gateway will send for `access_key_id` (read-your-writes).
    pub fn remembered_seq(&self, access_key_id: &str) -> u64 {
        self.state.seqs.min_seq(access_key_id)
    }

    /// Stops accepting, closes every connection, reports the refusal counts not yet reported
    /// and flushes the NATS connection. Returns within about 5 s even when NATS is down.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        self.flusher.abort();
        let _ = self.flusher.await;
        let state = self.state;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            report_suppressed(&state).await;
            let _ = state.nats.flush().await;
        })
        .await;
    }
}

/// Reports the refusal counts over the rate limit (see [`audit`]).
async fn report_suppressed(state: &State) {
    for summary in state.refusal_limiter.drain(state.clock.now_unix_ms()) {
        state.rejections.record_suppressed(summary).await;
    }
}

struct State {
    nats: async_nats::Client,
    realm: Realm,
    access_keys: AccessKeys,
    clock: Clock,
    limits: GatewayLimits,
    rejections: Arc<dyn RejectionSink>,
    refusal_limiter: crate::audit::RateLimiter,
    seqs: SeqMemory,
    in_flight: Arc<Semaphore>,
    body_budget: Arc<Semaphore>,
    per_client: std::sync::Mutex<std::collections::HashMap<String, ClientUse>>,
    connection_warnings: WarnEvery,
}

/// What one client network holds.
#[derive(Debug, Default)]
struct ClientUse {
    connections: usize,
    body_bytes: usize,
}

/// A warning logged at most once a second, with the count of those not logged.
#[derive(Default)]
struct WarnEvery {
    last_ms: std::sync::atomic::AtomicU64,
    skipped: std::sync::atomic::AtomicU64,
}

impl WarnEvery {
    /// `Some(skipped since the last one)` when this one may be logged.
    fn may_log(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_ms.load(Relaxed);
        if now_ms.saturating_sub(last) >= 1000 && self.last_ms.compare_exchange(last, now_ms, Relaxed, Relaxed).is_ok()
        {
            Some(self.skipped.swap(0, Relaxed))
        } else {
            self.skipped.fetch_add(1, Relaxed);
            None
        }
    }
}

/// Starts the gateway: connects to NATS as the gateway user of `nats_profile` (the gateway
/// account), binds `config.listen`, and serves until stopped.
///
/// # Errors
/// If NATS is unreachable, the address cannot be bound, or the TLS files are unusable.
pub async fn start(config: GatewayConfig, nats_profile: &ServiceProfile) -> anyhow::Result<RunningGateway> {
    keyledger_nats_server::require_tls_off_loopback(&nats_profile.url).map_err(anyhow::Error::msg)?;
    let nats = crate::cli::tls_options(
        async_nats::ConnectOptions::with_user_and_password(
            nats_profile.user.clone(),
            nats_profile.password.expose().to_owned(),
        ),
        nats_profile.ca_file.as_deref(),
    )
    .custom_inbox_prefix(nats_profile.inbox_prefix.clone())
    .name("keyledger-gateway")
    .connect(keyledger_log::server_list(nats_profile.url.as_str()))
    .await
    .map_err(|e| anyhow::anyhow!("the gateway cannot connect to {}: {e}", nats_profile.url))?;
    let acceptor = match &config.tls {
        Some(files) => Some(tls::acceptor(files)?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("the gateway cannot listen on {}: {e}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let rejections = config.rejections.unwrap_or_else(|| {
        Arc::new(audit::ReportToRoles { nats: nats.clone(), timeout: config.limits.nats_timeout.min(REPORT_TIMEOUT) })
    });
    let state = Arc::new(State {
        nats,
        realm: config.realm,
        access_keys: config.access_keys,
        clock: config.clock,
        seqs: SeqMemory::new(config.limits.max_remembered_credentials),
        in_flight: Arc::new(Semaphore::new(config.limits.max_in_flight)),
        body_budget: Arc::new(Semaphore::new(config.limits.max_buffered_body_bytes.clamp(1, u32::MAX as usize))),
        per_client: Default::default(),
        connection_warnings: WarnEvery::default(),
        refusal_limiter: crate::audit::RateLimiter::with_quotas(
            config.limits.refusal_records_per_client,
            None,
            Some(config.limits.refusal_records_total),
        ),
        limits: config.limits,
        rejections,
    });
    let tls = acceptor.is_some();
    let task = tokio::spawn(accept_loop(listener, acceptor, state.clone()));
    let flusher = tokio::spawn({
        let state = state.clone();
        async move {
            loop {
                tokio::time::sleep(crate::audit::RateLimiter::FLUSH_EVERY).await;
                report_suppressed(&state).await;
            }
        }
    });
    tracing::info!(address = %local_addr, tls, "AWS KMS endpoint listening");
    Ok(RunningGateway { local_addr, tls, state, task, flusher })
}

/// Connections or body bytes a client network holds; dropping it gives them back.
struct ClientHold {
    state: Arc<State>,
    network: String,
    connections: usize,
    body_bytes: usize,
}

impl ClientHold {
    /// One connection, if the network is under `max_connections_per_client`.
    fn connection(state: &Arc<State>, peer: SocketAddr) -> Option<Self> {
        Self::take(state, peer, 1, 0)
    }

    /// `bytes` of body budget, if the network stays within
    /// `max_buffered_body_bytes_per_client`.
    fn body(state: &Arc<State>, peer: SocketAddr, bytes: usize) -> Option<Self> {
        Self::take(state, peer, 0, bytes)
    }

    fn take(state: &Arc<State>, peer: SocketAddr, connections: usize, body_bytes: usize) -> Option<Self> {
        let network = audit::client_principal(peer.ip()).arn;
        let mut all = state.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let used = all.entry(network.clone()).or_default();
        let limits = &state.limits;
        if used.connections + connections > limits.max_connections_per_client
            || used.body_bytes + body_bytes > limits.max_buffered_body_bytes_per_client
        {
            if used.connections == 0 && used.body_bytes == 0 {
                all.remove(&network);
            }
            return None;
        }
        used.connections += connections;
        used.body_bytes += body_bytes;
        Some(Self { state: state.clone(), network, connections, body_bytes })
    }
}

impl Drop for ClientHold {
    fn drop(&mut self) {
        let mut all = self.state.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(used) = all.get_mut(&self.network) {
            used.connections -= self.connections;
            used.body_bytes -= self.body_bytes;
            if used.connections == 0 && used.body_bytes == 0 {
                all.remove(&self.network);
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, acceptor: Option<tokio_rustls::TlsAcceptor>, state: Arc<State>) {
    let connections = Arc::new(Semaphore::new(state.limits.max_connections));
    // Dropping the set (when this task is aborted) aborts every connection task.
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Some(skipped) = state.connection_warnings.may_log(state.clock.now_unix_ms()) {
                tracing::warn!(peer = %peer, skipped, "too many connections; closing a new one");
            }
            continue;
        };
        let Some(slot) = ClientHold::connection(&state, peer) else {
            if let Some(skipped) = state.connection_warnings.may_log(state.clock.now_unix_ms()) {
                tracing::warn!(peer = %peer, skipped, "too many connections from this client; closing a new one");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let acceptor = acceptor.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let _slot = slot;
            match acceptor {
                None => serve_connection(stream, peer, state).await,
                Some(acceptor) => {
                    match tokio::time::timeout(state.limits.tls_handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_connection(tls, peer, state).await,
                        Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<I>(io: I, peer: SocketAddr, state: Arc<State>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let for_service = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = for_service.clone();
        async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
    });
    let header_timeout = state.limits.header_read_timeout;
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = conn.await {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// A response the gateway makes itself.
fn error_response(status: u16, request_id: &str, aws_name: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&serde_json::json!({"__type": aws_name, "message": message})).unwrap_or_default();
    response(status, request_id, Bytes::from(body), Some(aws_name))
}

fn response(status: u16, request_id: &str, body: Bytes, error_type: Option<&str>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", CONTENT_TYPE)
        .header("x-amzn-requestid", request_id);
    if let Some(t) = error_type {
        builder = builder.header("x-amzn-errortype", t);
    }
    builder.body(Full::new(body)).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// `TrentService.<Name>` → `Name` when it is 1..=64 ASCII letters and digits (so it is a safe
/// NATS subject token).
fn operation_from_target(target: Option<&str>) -> Option<&str> {
    let name = target?.strip_prefix(TARGET_PREFIX)?;
    ((1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(name)
}

/// Printable ASCII, at most `max` bytes (other characters become `?`).
fn printable_ascii(bytes: &[u8], max: usize) -> String {
    bytes.iter().take(max).map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '?' }).collect()
}

async fn handle(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let request_id = uuid::Uuid::new_v4();
    let span = tracing::info_span!("http", request_id = %request_id, peer = %peer, operation = tracing::field::Empty, access_key_id = tracing::field::Empty);
    handle_inner(state, peer, req, request_id).instrument(span).await
}

/// What the gateway knows of a request it refuses itself.
struct Refusal<'a> {
    status: u16,
    error_name: &'static str,
    reason: &'static str,
    message: String,
    access_key_id: Option<&'a str>,
    authenticated: Option<ForwardedPrincipal>,
}

/// The request facts every refusal record carries.
struct Asked<'a> {
    request_id: uuid::Uuid,
    peer: SocketAddr,
    operation: Option<&'a str>,
    user_agent: &'a str,
}

/// Reports a refusal ([`audit`]: recorded, or counted when the client network is over its
/// rate) and then answers it.
async fn refuse(state: &State, asked: &Asked<'_>, r: Refusal<'_>) -> Response<Full<Bytes>> {
    let now = state.clock.now_unix_ms();
    let recorded = state.refusal_limiter.allow(&audit::client_principal(asked.peer.ip()), now);
    if recorded {
        state
            .rejections
            .record_rejection(Rejection {
                request_id: asked.request_id,
                time_unix_ms: now,
                error_name: r.error_name.to_owned(),
                reason: r.reason.to_owned(),
                access_key_id: r.access_key_id.map(|s| printable_ascii(s.as_bytes(), 128)),
                authenticated: r.authenticated,
                operation: asked.operation.map(str::to_owned),
                source_addr: asked.peer.to_string(),
                user_agent: asked.user_agent.to_owned(),
            })
            .await;
    }
    // Past the rate, the process log is spared too: only counted refusals' lines are debug.
    if recorded {
        tracing::info!(status = r.status, error = r.error_name, reason = r.reason, "refused");
    } else {
        tracing::debug!(status = r.status, error = r.error_name, reason = r.reason, "refused (counted)");
    }
    error_response(r.status, &asked.request_id.to_string(), r.error_name, &r.message)
}

impl<'a> Refusal<'a> {
    /// A refusal of a request not (yet) authenticated.
    fn new(
        status: u16,
        error_name: &'static str,
        reason: &'static str,
        message: String,
        access_key_id: Option<&'a str>,
    ) -> Self {
        Self { status, error_name, reason, message, access_key_id, authenticated: None }
    }

    fn sigv4(r: &'a sigv4::Rejection) -> Self {
        Self::new(400, r.aws_name, r.reason, r.message.clone(), r.access_key_id.as_deref())
    }
}

async fn handle_inner(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
    request_id: uuid::Uuid,
) -> Response<Full<Bytes>> {
    let rid = request_id.to_string();
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, Vec<u8>)> =
        parts.headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec())).collect();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let user_agent =
        printable_ascii(parts.headers.get(hyper::header::USER_AGENT).map(|v| v.as_bytes()).unwrap_or_default(), 256);
    // A repeated X-Amz-Target names no operation.
    let target = if parts.headers.get_all("x-amz-target").iter().count() == 1 { header("x-amz-target") } else { None };
    let operation = operation_from_target(target);
    if let Some(op) = operation {
        tracing::Span::current().record("operation", op);
    }
    let asked = Asked { request_id, peer, operation, user_agent: &user_agent };

    // 1. Who is asking (SigV4): every check that needs neither the body nor the secret runs
    //    before the body is read, so a request that cannot be authenticated holds no buffer.
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let now_unix_s = (state.clock.now_unix_ms() / 1000) as i64;
    let expect = sigv4::Expectations { region: &state.realm.region, service: SIGNING_NAME, now_unix_s };
    let head_only = sigv4::RequestParts { method: parts.method.as_str(), path, query, headers: &headers, body: &[] };
    let claimed = match sigv4::check_headers(&head_only, &expect, |akid| state.access_keys.get(akid).is_some()) {
        Ok(v) => v.access_key_id,
        Err(r) => return refuse(&state, &asked, Refusal::sigv4(&r)).await,
    };

    // 2. The body: bounded in size, in time and, over all connections, in bytes held.
    let declared_len = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.limits.max_body_bytes;
    let claimed = Some(claimed.as_str());
    let too_large = || {
        let message = format!("Request body is larger than {limit} bytes.");
        Refusal::new(413, "RequestEntityTooLargeException", "body_too_large", message, claimed)
    };
    if declared_len.is_some_and(|n| n > limit as u64) {
        return refuse(&state, &asked, too_large()).await;
    }
    // Never more than the whole budget or a network's share, or the request could never start.
    let budget_total = state.limits.max_buffered_body_bytes.clamp(1, u32::MAX as usize);
    let share = state.limits.max_buffered_body_bytes_per_client.max(1);
    let reserve = declared_len.map_or(limit, |n| n as usize).clamp(1, limit.max(1)).min(budget_total).min(share);
    let busy = |why: &str| Refusal::new(400, "ThrottlingException", "busy", format!("{why}; retry."), claimed);
    // Held until the answer is sent: they bound the bytes of every large body in memory, per
    // client network and in all. Small ones (every real KMS request) are bounded by the
    // connections and never wait.
    let mut _held = None;
    if declared_len.is_none_or(|n| n > state.limits.unbudgeted_body_bytes as u64) {
        let Some(share) = ClientHold::body(&state, peer, reserve) else {
            return refuse(&state, &asked, busy("This client is sending too many request bodies at once")).await;
        };
        let wait = state.body_budget.clone().acquire_many_owned(reserve as u32);
        match tokio::time::timeout(state.limits.body_budget_wait, wait).await {
            Ok(Ok(permit)) => _held = Some((share, permit)),
            Ok(Err(_)) => return error_response(503, &rid, "ServiceUnavailable", "The gateway is shutting down."),
            Err(_) => {
                return refuse(&state, &asked, busy("Too many request bodies are being received at once")).await;
            }
        }
    }
    let deadline = tokio::time::Instant::now() + state.limits.body_read_timeout;
    let body = match tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return refuse(&state, &asked, too_large()).await;
        }
        Ok(Err(_)) | Err(_) => {
            let message = "The request body could not be read.".to_owned();
            let unreadable = Refusal::new(400, "SerializationException", "body_unreadable", message, claimed);
            return refuse(&state, &asked, unreadable).await;
        }
    };

    // 3. The signature.
    let request_parts =
        sigv4::RequestParts { method: parts.method.as_str(), path, query, headers: &headers, body: &body };
    let mut matched = None;
    let verified = sigv4::verify(&request_parts, &expect, |akid| {
        let key = state.access_keys.get(akid)?;
        let secret = Zeroizing::new(key.secret.expose().to_owned());
        matched = Some(key);
        Some(secret)
    });
    let key = match (verified, matched) {
        (Ok(_), Some(key)) => key,
        (Err(r), _) => return refuse(&state, &asked, Refusal::sigv4(&r)).await,
        (Ok(_), None) => return error_response(500, &rid, "KMSInternalException", ""),
    };
    tracing::Span::current().record("access_key_id", key.access_key_id.as_str());
    let principal = ForwardedPrincipal {
        account: key.account.clone(),
        principal_arn: format!("arn:{}:iam::{}:user/{}", state.realm.partition, key.account, key.user),
        access_key_id: key.access_key_id.clone(),
        source_addr: peer.to_string(),
        user_agent: user_agent.clone(),
    };

    // 4. What is asked.
    let unknown = |reason, message: &str| Refusal {
        authenticated: Some(principal.clone()),
        ..Refusal::new(400, "UnknownOperationException", reason, message.to_owned(), Some(&key.access_key_id))
    };
    if parts.method != hyper::Method::POST || path != "/" {
        let r = unknown("not_post_root", "Keyledger's AWS KMS endpoint answers POST / only.");
        return refuse(&state, &asked, r).await;
    }
    let Some(operation) = operation else {
        return refuse(&state, &asked, unknown("no_target", "")).await;
    };

    // 5. Forward to the roles; only this step counts against `max_in_flight`.
    let Ok(_permit) = state.in_flight.clone().acquire_owned().await else {
        return error_response(503, &rid, "ServiceUnavailable", "The gateway is shutting down.");
    };
    let mut nats_headers = async_nats::HeaderMap::new();
    nats_headers.insert(FORWARDED_PRINCIPAL_HEADER, principal.to_header_value().as_str());
    let min_seq = state.seqs.min_seq(&key.access_key_id);
    if min_seq > 0 {
        nats_headers.insert(MIN_SEQ_HEADER, min_seq.to_string().as_str());
    }
    let subject = keyledger_events::names::api_subject(operation);
    let nats_request =
        async_nats::Request::new().payload(body).headers(nats_headers).timeout(Some(state.limits.nats_timeout));
    let reply = match state.nats.send_request(subject, nats_request).await {
        Ok(m) => m,
        Err(e) => {
            use async_nats::RequestErrorKind;
            let (status, name, message) = match e.kind() {
                RequestErrorKind::TimedOut => (503, "DependencyTimeoutException", "Keyledger did not answer in time."),
                RequestErrorKind::NoResponders => {
                    (503, "DependencyTimeoutException", "No Keyledger worker is available.")
                }
                _ => (500, "KMSInternalException", "The request could not be forwarded."),
            };
            tracing::warn!(error = %e, status, "forwarding failed");
            return error_response(status, &rid, name, message);
        }
    };
    let reply_header = |name: &str| reply.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
    if let Some(seq) = reply_header(LOG_SEQ_HEADER).and_then(|s| s.parse::<u64>().ok()) {
        state.seqs.observe(&key.access_key_id, seq);
    }
    let role_request_id = reply_header(REQUEST_ID_HEADER).unwrap_or_else(|| rid.clone());
    // The audit record's log position, passed through as-is (the roles set both or neither).
    let position = reply_header(AUDIT_STREAM_HEADER)
        .zip(reply_header(AUDIT_SEQ_HEADER))
        .filter(|(stream, seq)| crate::export::is_record_stream(stream) && seq.parse::<u64>().is_ok());
    with_position(answer_reply(operation, &role_request_id, &reply, reply_header(SERVICE_ERROR_HEADER)), position)
}

/// Adds `x-keyledger-audit-stream` / `x-keyledger-audit-seq` (the audit record's log position)
/// to a response.
fn with_position(mut response: Response<Full<Bytes>>, position: Option<(String, String)>) -> Response<Full<Bytes>> {
    if let Some((stream, seq)) = position {
        if let (Ok(stream), Ok(seq)) = (stream.parse(), seq.parse()) {
            response.headers_mut().insert("x-keyledger-audit-stream", stream);
            response.headers_mut().insert("x-keyledger-audit-seq", seq);
        }
    }
    response
}

/// The HTTP response for a role's reply.
fn answer_reply(
    operation: &str,
    role_request_id: &str,
    reply: &async_nats::Message,
    service_error: Option<String>,
) -> Response<Full<Bytes>> {
    if let Some(header_name) = service_error {
        // An AWS error from the roles: pass the body through, status from the error name.
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&reply.payload).ok();
        let name = parsed
            .as_ref()
            .and_then(|v| v.get("__type"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or(header_name);
        let status = ErrorKind::from_aws_name(&name).map_or(400, ErrorKind::http_status);
        // The audit record's id is the role's request id (also `x-amzn-requestid`).
        tracing::info!(status, error = %name, request_id = %role_request_id, "answered");
        return match parsed {
            Some(v) if v.get("__type").is_some() => {
                response(status, role_request_id, reply.payload.clone(), Some(&name))
            }
            _ => error_response(status, role_request_id, &name, ""),
        };
    }
    tracing::info!(status = 200, request_id = %role_request_id, "answered");
    let body = if NO_OUTPUT_OPERATIONS.contains(&operation) && is_empty_object(&reply.payload) {
        Bytes::new()
    } else {
        reply.payload.clone()
    };
    response(200, role_request_id, body, None)
}

fn is_empty_object(payload: &[u8]) -> bool {
    payload.iter().filter(|b| !b.is_ascii_whitespace()).eq(b"{}".iter()) || payload.is_empty()
}

/// The `[gateway]` section of `keyledger serve`'s configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Listen address, e.g. `127.0.0.1:4599` or `0.0.0.0:443`.
    pub listen: SocketAddr,
    /// Service profile (JSON, mode 0600) of the gateway user in the gateway account.
    pub nats_profile: PathBuf,
    /// The access keys file (see [`credentials`]).
    pub access_keys_file: PathBuf,
    /// PEM certificate chain; set together with `tls_key_file` to serve HTTPS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

/// Starts the gateway of a `keyledger serve` process from its `[gateway]` section: reads the
/// gateway's NATS profile and the access keys file (unwrapping every secret with `root`),
/// loads the TLS files if configured. Realm and clock come from the role settings.
///
/// # Errors
/// As [`start`], or when a file is unreadable or a secret does not unwrap.
pub async fn start_from_section(
    section: &GatewaySection,
    root: &keyledger_crypto::RootKey,
    roles: &crate::roles::RoleConfig,
) -> anyhow::Result<RunningGateway> {
    let profile = ServiceProfile::read_from(&section.nats_profile)?;
    let access_keys = credentials::AccessKeysFile::read(&section.access_keys_file)?.unwrap_all(root)?;
    let config = GatewayConfig {
        listen: section.listen,
        tls: section.tls()?,
        realm: roles.realm.clone(),
        access_keys,
        clock: roles.clock.clone(),
        limits: GatewayLimits::default(),
        rejections: None,
    };
    start(config, &profile).await
}

/// Creates an access key for `user` in `account` and appends it to the access keys file at
/// `path` (created if absent, written mode 0600). Returns the record and its secret (shown
/// once to the operator, stored nowhere in clear).
///
/// # Errors
/// If the names are invalid or the file cannot be read or written.
pub fn create_access_key(
    root: &keyledger_crypto::RootKey,
    path: &std::path::Path,
    account: &str,
    user: &str,
) -> anyhow::Result<(credentials::AccessKeyRecord, credentials::SecretAccessKey)> {
    let mut file =
        if path.exists() { credentials::AccessKeysFile::read(path)? } else { credentials::AccessKeysFile::default() };
    // Every existing key must still unwrap with this root key: refuse to extend a file of
    // another deployment.
    file.unwrap_all(root)?;
    let (record, secret) = credentials::AccessKeyRecord::generate(root, account, user)?;
    file.access_keys.push(record.clone());
    file.write(path)?;
    Ok((record, secret))
}

impl GatewaySection {
    /// The TLS files, if both are set.
    ///
    /// # Errors
    /// If only one of the two is set.
    pub fn tls(&self) -> anyhow::Result<Option<TlsFiles>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert_chain: cert.clone(), private_key: key.clone() })),
            (None, None) => Ok(None),
            _ => anyhow::bail!("[gateway] needs both tls_cert_file and tls_key_file, or neither"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_trent_service_targets_name_an_operation() {
        assert_eq!(operation_from_target(Some("TrentService.ListKeys")), Some("ListKeys"));
        for bad in [
            "TrentService.",
            "TrentService.List.Keys",
            "TrentService.>",
            "TrentService.a b",
            "Other.ListKeys",
            "ListKeys",
        ] {
            assert_eq!(operation_from_target(Some(bad)), None, "{bad}");
        }
        assert_eq!(operation_from_target(None), None);
    }

    #[test]
    fn empty_objects_are_recognised() {
        assert!(is_empty_object(b"{}"));
        assert!(is_empty_object(b" { } "));
        assert!(is_empty_object(b""));
        assert!(!is_empty_object(br#"{"a":1}"#));
    }
}
