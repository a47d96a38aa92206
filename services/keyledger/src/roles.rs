//! Starting the roles and serving the NATS micro service `keyledger`.
//!
//! Each role registers the endpoints it owns (`kms.v1.<Operation>`) under the service name
//! `keyledger`, in its own queue group, so any number of instances share the load. Every
//! request gets a request id, a `tracing` span (request id, operation, account — never
//! payloads), and a reply that is either the AWS JSON response or the AWS error body plus the
//! micro error headers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::service::ServiceExt;
use async_nats::{Client, HeaderMap};
use futures::StreamExt;
use keyledger_crypto::RootKey;
use keyledger_kms::{ErrorKind, KmsError, Limits, Operation, Realm, Role as OpRole};
use keyledger_log::{ControlLog, MaterialStore};
use keyledger_nats_server::ServiceProfile;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::audit::{AuditConfig, AuditWriter, RateLimiter};
use crate::clock::Clock;
use crate::follower::Follower;
use crate::identity::Identities;
use crate::materials::MaterialCache;
use crate::protocol::{
    AUDIT_SEQ_HEADER, AUDIT_STREAM_HEADER, LOG_SEQ_HEADER, REQUEST_ID_HEADER, SERVICE_ERROR_CODE_HEADER,
    SERVICE_ERROR_HEADER,
};
use anyhow::Context as _;

/// A role of the `keyledger` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Decides management commands and appends their events; runs time-driven actions.
    Keyd,
    /// Answers cryptographic and read operations from its projection.
    Cryptod,
    /// Commits the record streams to Merkle trees and signs their checkpoints
    /// ([`crate::checkpointer`]); needs [`RoleConfig::checkpoint`].
    Checkpointer,
}

/// Settings shared by the roles. Units are in the names.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// Partition and region used in ARNs.
    pub realm: Realm,
    /// NATS account name → Keyledger account id (12 digits).
    pub accounts: BTreeMap<String, String>,
    /// Per-account quotas.
    pub limits: Limits,
    /// Stream replicas (1 for a single server, 3 for a cluster).
    pub replicas: usize,
    /// How long a request may wait for the projection to reach its minimum sequence.
    pub projection_wait: Duration,
    /// How often keyd looks for due rotations and deletions.
    pub scheduler_tick: Duration,
    /// Requests handled concurrently per role instance. A request arriving while this many are
    /// in progress is shed at once with ThrottlingException (counted per principal in the
    /// SuppressedRequests summaries) instead of waiting in an unbounded queue.
    pub max_in_flight: usize,
    /// Times keyd re-decides a command after an append conflict before giving up.
    pub max_append_attempts: u32,
    /// The clock every time-driven rule reads.
    pub clock: Clock,
    /// The audit writer's limits.
    pub audit: AuditConfig,
    /// Requests per second each principal may make (token bucket refill rate).
    pub rate_limit_per_principal_per_sec: f64,
    /// Burst each principal may make above the rate.
    pub rate_limit_burst: f64,
    /// Requests per second (and burst) each account may make to this role instance; None: no
    /// account quota.
    pub rate_limit_per_account: Option<crate::audit::Quota>,
    /// Requests per second (and burst) this role instance takes from all callers together;
    /// None: no global quota.
    pub rate_limit_global: Option<crate::audit::Quota>,
    /// Answer without writing usage records. **Only for measuring what audit-first costs**
    /// (the audit benchmark sets it); no configuration file or flag can set it, and the
    /// service never runs with it.
    #[doc(hidden)]
    pub benchmark_only_skip_audit: bool,
    /// Delay before the follower applies each control record. **Only for tests** that need a
    /// worker behind the log (grant tokens); no configuration file or flag can set it.
    #[doc(hidden)]
    pub test_follower_delay: Duration,
    /// The checkpointer's key and settings (required by [`Role::Checkpointer`]).
    pub checkpoint: Option<crate::checkpointer::CheckpointConfig>,
    /// Projection snapshots: where this process keeps them and how often (control records).
    pub snapshot: crate::snapshot::SnapshotConfig,
    /// The log's verifier key, to check snapshot notes at start when this process has no
    /// checkpoint signing key ([`RoleConfig::checkpoint`] gives it otherwise).
    pub log_key: Option<keyledger_transparency::NoteVerifier>,
}

impl Default for RoleConfig {
    fn default() -> Self {
        Self {
            realm: Realm::default(),
            accounts: BTreeMap::new(),
            limits: Limits::default(),
            replicas: 1,
            projection_wait: Duration::from_secs(2),
            scheduler_tick: Duration::from_secs(1),
            max_in_flight: 1024,
            max_append_attempts: 8,
            clock: Clock::system(),
            audit: AuditConfig::default(),
            // AWS's default shared quota for symmetric cryptographic operations is 10,000
            // requests per second (aws-kms-api.md §12.2); here it is per principal.
            rate_limit_per_principal_per_sec: 10_000.0,
            rate_limit_burst: 20_000.0,
            rate_limit_per_account: None,
            rate_limit_global: None,
            benchmark_only_skip_audit: false,
            test_follower_delay: Duration::ZERO,
            checkpoint: None,
            snapshot: crate::snapshot::SnapshotConfig::default(),
            log_key: None,
        }
    }
}

/// What every handler needs.
pub struct RoleCtx {
    /// NATS connection (service account).
    pub nats: Client,
    /// The control log.
    pub log: ControlLog,
    /// The material store.
    pub materials: MaterialStore,
    /// Unwrapped material cache (cryptod) and wrapping (keyd).
    pub cache: MaterialCache,
    /// The projection.
    pub follower: Follower,
    /// Root key (wraps material).
    pub root: Arc<RootKey>,
    /// Caller resolution.
    pub identities: Identities,
    /// The audit writer (this process's lane).
    pub audit: AuditWriter,
    /// Per-principal rate limiter.
    pub limiter: RateLimiter,
    /// Settings.
    pub config: RoleConfig,
}

/// A successful handler result.
pub struct Success {
    /// AWS JSON response body.
    pub body: Body,
    /// Log sequence to report (`Keyledger-Log-Seq`).
    pub log_seq: Option<u64>,
}

/// A reply body: plain JSON, or JSON that holds a secret (plaintext, data key) in a buffer that
/// is wiped when dropped.
pub enum Body {
    /// No secret inside.
    Json(Value),
    /// Serialized JSON with a secret inside.
    Secret(zeroize::Zeroizing<Vec<u8>>),
}

/// A zeroizing buffer that `bytes::Bytes` can own.
struct SecretBuf(zeroize::Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for SecretBuf {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl Success {
    /// A JSON reply.
    pub fn json(body: Value, log_seq: Option<u64>) -> Self {
        Self { body: Body::Json(body), log_seq }
    }
    /// A reply whose serialized JSON holds a secret.
    pub fn secret(body: zeroize::Zeroizing<Vec<u8>>, log_seq: Option<u64>) -> Self {
        Self { body: Body::Secret(body), log_seq }
    }
}

/// Running roles; [`RunningRoles::stop`] shuts them down.
pub struct RunningRoles {
    services: Vec<async_nats::service::Service>,
    tasks: Vec<JoinHandle<()>>,
    /// The shared context (tests inspect the projection through it).
    pub ctx: Arc<RoleCtx>,
}

impl RunningRoles {
    /// Stops accepting requests, lets in-flight ones finish (bounded), stops background tasks.
    pub async fn stop(self) {
        for s in self.services {
            let _ = s.stop().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for t in self.tasks {
            t.abort();
        }
        // The log connection: closed here rather than left to lose its server when dev stops
        // it (which logged reconnect errors at every clean Ctrl-C).
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ctx.nats.drain()).await;
    }
}

/// Starts `roles` as the service user of `profile`.
///
/// Connections: one for the log (JetStream appends, the follower, material), one per role for
/// its endpoints, and one for the unknown-operation responder. They are separate because the
/// server grants a response permission per delivery: two subscriptions of one connection that
/// both receive a request (an endpoint and the catch-all) would leave the endpoint unable to
/// reply across the account import.
///
/// Creates the streams if they do not exist, and refuses to start on streams whose
/// configuration is weaker than expected (invariant 8).
pub async fn start(
    roles: &[Role],
    profile: &ServiceProfile,
    root: Arc<RootKey>,
    config: RoleConfig,
) -> anyhow::Result<RunningRoles> {
    keyledger_nats_server::require_tls_off_loopback(&profile.url).map_err(anyhow::Error::msg)?;
    let connect = |name: &'static str| async move {
        keyledger_log::connect_verified(
            &profile.url,
            &profile.user,
            profile.password.expose(),
            &profile.inbox_prefix,
            name,
            profile.ca_file.as_deref(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", profile.url))
    };
    let nats = connect("keyledger-log").await?;
    let js = keyledger_log::jetstream(nats.clone());
    let log = ControlLog::open(js.clone(), config.replicas).await?;
    let materials = MaterialStore::open(js.clone(), config.replicas).await?;
    let initial = initial_projection(&js, &config).await;
    let follower = Follower::start_from(log.clone(), initial, config.test_follower_delay, config.snapshot.clone());
    check_root_key(&follower, &root).await?;
    let lane_role = roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect::<Vec<_>>().join("-");
    let audit_config = AuditConfig { replicas: config.replicas, ..config.audit.clone() };
    let (audit, audit_task) =
        AuditWriter::start(js.clone(), log.clone(), &lane_role, config.clock.clone(), audit_config);
    let limiter = RateLimiter::with_quotas(
        crate::audit::Quota { per_sec: config.rate_limit_per_principal_per_sec, burst: config.rate_limit_burst },
        config.rate_limit_per_account,
        config.rate_limit_global,
    );
    let ctx = Arc::new(RoleCtx {
        nats: nats.clone(),
        log,
        materials: materials.clone(),
        cache: MaterialCache::new(materials, root.clone()),
        follower,
        root,
        identities: Identities::new(config.accounts.clone()),
        audit,
        limiter,
        config,
    });
    if roles.iter().any(|r| matches!(r, Role::Keyd | Role::Cryptod)) {
        check_lane_permission(profile, ctx.audit.lane()).await?;
        wait_for_the_audit_lane(&ctx.audit).await;
    }
    let mut services = Vec::new();
    let mut tasks = vec![audit_task, tokio::spawn(flush_suppressed(ctx.clone()))];
    let audit_health_source = ctx.audit.clone();
    for role in roles {
        let queue = match role {
            Role::Keyd => "keyledger-keyd",
            Role::Cryptod => "keyledger-cryptod",
            Role::Checkpointer => {
                let mut checkpoint =
                    ctx.config.checkpoint.clone().context("the checkpointer needs a log signing key")?;
                checkpoint.snapshot_every = ctx.config.snapshot.every;
                let own = connect("keyledger-checkpointer").await?;
                let own_js = keyledger_log::jetstream(own.clone());
                let clock = ctx.config.clock.clone();
                tasks.extend(crate::checkpointer::start(own, own_js, checkpoint, ctx.config.replicas, clock).await?);
                continue;
            }
        };
        let role_nats = connect(queue).await?;
        let health_ctx_audit = audit_health_source.clone();
        let service = role_nats
            .service_builder()
            .stats_handler(move |_endpoint, _stats| {
                // Shown in `$SRV.STATS.keyledger` next to each endpoint's counters: whether the
                // audit log takes records (if not, every request fails closed).
                match health_ctx_audit.health() {
                    crate::audit::AuditHealth::Writing => serde_json::json!({"audit": "writing"}),
                    crate::audit::AuditHealth::Failing(reason) => {
                        serde_json::json!({"audit": "failing", "reason": reason})
                    }
                }
            })
            .description(format!("Keyledger {role:?}"))
            .queue_group(queue)
            .start(keyledger_events::names::SERVICE_NAME, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the NATS service: {e}"))?;
        let limiter = Arc::new(Semaphore::new(ctx.config.max_in_flight));
        for op in Operation::all() {
            let mine = match op.role() {
                OpRole::Management => *role == Role::Keyd,
                OpRole::Read | OpRole::Crypto => *role == Role::Cryptod,
            };
            if !mine {
                continue;
            }
            let endpoint = service
                .endpoint_builder()
                .name(op.name())
                .add(keyledger_events::names::api_subject(op.name()))
                .await
                .map_err(|e| anyhow::anyhow!("cannot add endpoint {}: {e}", op.name()))?;
            tasks.push(tokio::spawn(serve_endpoint(ctx.clone(), op, endpoint, limiter.clone())));
        }
        if *role == Role::Keyd {
            tasks.extend(crate::keyd::background(ctx.clone()));
        }
        if *role == Role::Cryptod {
            tasks.extend(crate::cryptod::background(ctx.clone()));
        }
        // Make sure the server has every subscription before anyone is told we are up.
        role_nats.flush().await.map_err(|e| anyhow::anyhow!("cannot flush the NATS connection: {e}"))?;
        services.push(service);
    }
    if !roles.iter().any(|r| matches!(r, Role::Keyd | Role::Cryptod)) {
        // A checkpointer alone answers no API requests (and its user may not subscribe to them).
        return Ok(RunningRoles { services, tasks, ctx });
    }
    let unknown = connect("keyledger-unknown-operations").await?;
    let subject = format!("{}.*", keyledger_events::names::API_PREFIX);
    let sub = unknown
        .queue_subscribe(subject, "keyledger-unknown-operations".to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe for unknown operations: {e}"))?;
    unknown.flush().await.map_err(|e| anyhow::anyhow!("cannot flush the NATS connection: {e}"))?;
    tasks.push(tokio::spawn(answer_unknown_operations(ctx.clone(), unknown, sub)));
    Ok(RunningRoles { services, tasks, ctx })
}

/// A usage period no usage stream captures (`kl.v1.use.<YYYYMM>.>` streams exist only for real
/// months): publishing there stores nothing, but the server checks the publisher's permission.
const PROBE_PERIOD: &str = "000000";

/// Refuses to start a keyd or cryptod whose NATS user may not write its usage lane: such a
/// process would start, then fail every request (retryably, for ever) because no usage
/// record can be stored. The probe publishes an empty message on the lane's subject in
/// [`PROBE_PERIOD`] ([`publish_is_denied`], 200 ms). A probe that misses the refusal only
/// leaves the old behaviour: requests fail closed and the server's log says why.
async fn check_lane_permission(profile: &ServiceProfile, lane: &str) -> anyhow::Result<()> {
    let subject = keyledger_events::names::usage_subject(PROBE_PERIOD, lane);
    let denied = publish_is_denied(profile, &subject, Duration::from_millis(200))
        .await
        .map_err(|e| anyhow::anyhow!("cannot probe the usage lane: {e:#}"))?;
    anyhow::ensure!(
        !denied,
        "NATS user {:?} may not write the usage lane {lane:?} (subject {}): no request could be recorded. \
         Set `lane` in this process's serve configuration to the lane its user may write \
         (deploy/nats/accounts.conf: user keyd writes lane \"keyd-1\", user cryptod-N lane \"cryptod-N\")",
        profile.user,
        keyledger_events::names::usage_subject("<YYYYMM>", lane)
    );
    Ok(())
}

/// Publishes an empty message on `subject` as `profile`'s user and says whether the server
/// refused it: a permissions violation naming `subject`, received within `wait` after the
/// flush (the server sends it before the flush's PONG; the client hands it to its event
/// callback on another task, hence the wait). Publish only where nothing stores or acts on an
/// empty message.
///
/// # Errors
/// The connection, publish or flush failed.
pub async fn publish_is_denied(profile: &ServiceProfile, subject: &str, wait: Duration) -> anyhow::Result<bool> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let options = crate::cli::tls_options(
        async_nats::ConnectOptions::with_user_and_password(profile.user.clone(), profile.password.expose().to_owned()),
        profile.ca_file.as_deref(),
    )
    .name("keyledger-permission-probe")
    .custom_inbox_prefix(profile.inbox_prefix.clone())
    .event_callback(move |event| {
        let tx = tx.clone();
        async move {
            if let async_nats::Event::ServerError(e) = event {
                let _ = tx.send(e.to_string());
            }
        }
    });
    let client = options
        .connect(keyledger_log::server_list(&profile.url))
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", profile.url))?;
    client.publish(subject.to_owned(), bytes::Bytes::new()).await?;
    client.flush().await?;
    let denied = tokio::time::timeout(wait, async {
        while let Some(error) = rx.recv().await {
            if error.to_lowercase().contains("permissions violation") && error.contains(subject) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    Ok(denied)
}

/// How long a starting role waits for its audit lane's usage stream to answer before it
/// serves anyway (its requests then fail closed, retryably, until the stream answers).
pub const AUDIT_READY_WAIT: Duration = Duration::from_secs(30);

/// Waits (up to [`AUDIT_READY_WAIT`]) until the audit lane has opened the period's usage
/// stream and read its head: right after a cluster restart the stream has no leader for a few
/// seconds, and a role that served at once would answer its first requests with
/// DependencyTimeoutException.
async fn wait_for_the_audit_lane(audit: &AuditWriter) {
    let deadline = tokio::time::Instant::now() + AUDIT_READY_WAIT;
    loop {
        match audit.ready().await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e.message, "waiting for the usage stream before serving");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "the usage stream does not answer; serving anyway (requests fail closed until it does)");
                return;
            }
        }
    }
}

/// AWS KMS operations Keyledger does not offer yet: answered with UnsupportedOperationException
/// rather than UnknownOperationException, so a client can tell "not yet" from "no such thing".
const AWS_OPERATIONS_NOT_YET: &[&str] = &[
    "ConnectCustomKeyStore",
    "CreateCustomKeyStore",
    "Decapsulate",
    "DeleteCustomKeyStore",
    "DeriveSharedSecret",
    "DescribeCustomKeyStores",
    "DisconnectCustomKeyStore",
    "Encapsulate",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "GetKeyLastUsage",
    "GetPublicKey",
    "ReplicateKey",
    "Sign",
    "UpdateCustomKeyStore",
    "UpdatePrimaryRegion",
    "Verify",
    "VerifyMac",
];

/// Answers requests for operations no endpoint serves, and the gateway's refusal reports
/// (`kms.v1._GatewayRefusal`, believed only from the gateway itself). This subscription sees
/// every request (its own queue group, so one instance per request) and stays silent for
/// known operations. At most 64 are handled at once; more wait in the subscription.
async fn answer_unknown_operations(ctx: Arc<RoleCtx>, nats: Client, mut sub: async_nats::Subscriber) {
    let at_once = Arc::new(Semaphore::new(64));
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else { continue };
        let name = msg.subject.as_str().rsplit('.').next().unwrap_or_default().to_owned();
        if Operation::from_name(&name).is_some() {
            continue;
        }
        let Ok(permit) = at_once.clone().acquire_owned().await else { return };
        let (ctx, nats) = (ctx.clone(), nats.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let request_id = uuid::Uuid::new_v4();
            let mut headers = HeaderMap::new();
            let from_gateway = ctx.identities.is_the_gateway_itself(msg.headers.as_ref());
            let outcome = if name == crate::gateway::audit::REPORT_OPERATION && from_gateway {
                crate::pipeline::record_refusal(&ctx, &msg).await.map(|(id, position)| (None, id, position))
            } else {
                let error = if AWS_OPERATIONS_NOT_YET.contains(&name.as_str()) {
                    KmsError::new(ErrorKind::UnsupportedOperation, format!("Keyledger does not support {name} yet."))
                } else {
                    KmsError::new(ErrorKind::UnknownOperation, "")
                };
                // Recorded like every request (the operation name is bounded: a subject token).
                crate::pipeline::record_unknown(&ctx, &msg, &name, request_id, error)
                    .await
                    .map(|(e, position)| (Some(e), request_id, Some(position)))
            };
            let (error, request_id) = match outcome {
                Ok((error, id, position)) => {
                    if let Some(p) = position {
                        headers.insert(AUDIT_STREAM_HEADER, p.stream.as_str());
                        headers.insert(AUDIT_SEQ_HEADER, p.seq.to_string().as_str());
                    }
                    (error, id)
                }
                Err(e) => (Some(e), request_id),
            };
            headers.insert(REQUEST_ID_HEADER, request_id.to_string().as_str());
            let body = match error {
                Some(error) => {
                    headers.insert(SERVICE_ERROR_HEADER, error.kind.aws_name());
                    headers.insert(SERVICE_ERROR_CODE_HEADER, error.kind.http_status().to_string().as_str());
                    serde_json::to_vec(&error.to_json()).unwrap_or_default()
                }
                None => b"{}".to_vec(),
            };
            let _ = nats.publish_with_headers(reply, headers, body.into()).await;
        });
    }
}

async fn serve_endpoint(
    ctx: Arc<RoleCtx>,
    op: Operation,
    mut endpoint: async_nats::service::endpoint::Endpoint,
    limiter: Arc<Semaphore>,
) {
    while let Some(request) = endpoint.next().await {
        let permit = match limiter.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Overloaded: shed now rather than queue without bound (AWS clients retry
                // ThrottlingException with backoff).
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let error = crate::pipeline::shed(&ctx, &request.message);
                    let mut headers = HeaderMap::new();
                    headers.insert(SERVICE_ERROR_HEADER, error.kind.aws_name());
                    headers.insert(SERVICE_ERROR_CODE_HEADER, error.kind.http_status().to_string().as_str());
                    let body = bytes::Bytes::from(serde_json::to_vec(&error.to_json()).unwrap_or_default());
                    let _ = request.respond_with_headers(Ok(body), headers).await;
                });
                continue;
            }
        };
        let ctx = ctx.clone();
        let request_id = uuid::Uuid::new_v4();
        let span = tracing::info_span!("request", request_id = %request_id, operation = op.name());
        tokio::spawn(
            async move {
                let _permit = permit;
                let (result, position) = crate::pipeline::handle(&ctx, op, &request.message, request_id).await;
                let mut headers = HeaderMap::new();
                headers.insert(REQUEST_ID_HEADER, request_id.to_string().as_str());
                if let Some(p) = position {
                    headers.insert(AUDIT_STREAM_HEADER, p.stream.as_str());
                    headers.insert(AUDIT_SEQ_HEADER, p.seq.to_string().as_str());
                }
                let body = match result {
                    Ok(success) => {
                        if let Some(seq) = success.log_seq {
                            headers.insert(LOG_SEQ_HEADER, seq.to_string().as_str());
                        }
                        tracing::info!(outcome = "ok");
                        match success.body {
                            Body::Json(v) => bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
                            // Handed to the connection without a copy; the zeroizing owner
                            // wipes the buffer when the last reference is dropped (the
                            // connection's own write buffer is outside our reach).
                            Body::Secret(z) => bytes::Bytes::from_owner(SecretBuf(z)),
                        }
                    }
                    Err(e) => {
                        tracing::info!(outcome = "error", error = e.kind.aws_name());
                        headers.insert(SERVICE_ERROR_HEADER, e.kind.aws_name());
                        headers.insert(SERVICE_ERROR_CODE_HEADER, e.kind.http_status().to_string().as_str());
                        bytes::Bytes::from(serde_json::to_vec(&e.to_json()).unwrap_or_default())
                    }
                };
                if let Err(e) = request.respond_with_headers(Ok(body), headers).await {
                    tracing::warn!(error = %e, "cannot send reply");
                }
            }
            .instrument(span),
        );
    }
}

/// Refuses to start when the log holds key material wrapped under another root key: serving
/// would answer every request on those keys with an integrity failure, and keys created now
/// would be unusable once the right root key is back. Replays the whole control log first.
/// The verified snapshot to start from, or the empty projection (replay from sequence 1) when
/// snapshots are off, no log key is known, nothing was committed yet, or the snapshot was
/// refused (warned, with the reason).
async fn initial_projection(js: &async_nats::jetstream::Context, config: &RoleConfig) -> keyledger_kms::Projection {
    let key = config.checkpoint.as_ref().map(|c| c.key.verifier()).or_else(|| config.log_key.clone());
    let (Some(dir), Some(key)) = (&config.snapshot.dir, key) else { return Default::default() };
    let checkpoints = match keyledger_log::CheckpointLog::open(js.clone(), config.replicas).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the checkpoint stream; replaying the log from the start");
            return Default::default();
        }
    };
    match crate::snapshot::load_verified(dir, &checkpoints, &key).await {
        Ok(Some(p)) => {
            tracing::info!(seq = p.last_applied_seq(), "starting from a verified projection snapshot");
            p
        }
        Ok(None) => Default::default(),
        Err(reason) => {
            tracing::warn!(%reason, "projection snapshot refused; replaying the log from the start");
            Default::default()
        }
    }
}

async fn check_root_key(follower: &Follower, root: &RootKey) -> anyhow::Result<()> {
    follower
        .catch_up(Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("cannot replay the control log before starting: {e}"))?;
    let ours = root.id();
    let foreign = {
        let p = follower.read();
        let found = p
            .all_keys()
            .flat_map(|k| k.materials.iter())
            .find(|m| m.material.root_key_id != ours)
            .map(|m| m.material.root_key_id);
        found
    };
    if let Some(theirs) = foreign {
        anyhow::bail!(
            "the key log holds key material wrapped by root key {} but the configured root key is {}; \
             refusing to start (restore the right root key file)",
            hex::encode(theirs),
            hex::encode(ours)
        );
    }
    Ok(())
}

/// Writes the rate limiter's suppressed counts every [`RateLimiter::FLUSH_EVERY`].
async fn flush_suppressed(ctx: Arc<RoleCtx>) {
    loop {
        tokio::time::sleep(RateLimiter::FLUSH_EVERY).await;
        for summary in ctx.limiter.drain(ctx.config.clock.now_unix_ms()) {
            tracing::warn!(principal = %summary.principal.arn, count = summary.count, "requests dropped by the rate limiter");
            ctx.audit.write_suppressed(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_operation_keyledger_serves_is_listed_as_not_yet() {
        for name in AWS_OPERATIONS_NOT_YET {
            assert!(Operation::from_name(name).is_none(), "{name} is served, not \"not yet\"");
        }
        assert!(Operation::from_name(crate::gateway::audit::REPORT_OPERATION).is_none());
    }
}
