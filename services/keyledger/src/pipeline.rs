//! The path of one request: identity → rate limit → parse → wait for the minimum sequence →
//! decide and compute → **record** → re-check → answer.
//!
//! Audit first (invariant 3): every request that reaches a role gets exactly one audit record
//! — success, failure or denial — stored before the request is answered. A management request
//! that appended an event is recorded by that event (its header names the request); every
//! other request is recorded as a [`UsageRecordV1`] through the role's [`AuditWriter`]. If the
//! record cannot be stored the caller gets a retryable error and nothing else.
//!
//! Never a stale yes (invariant 6): after a crypto result's record is stored, the projection
//! is brought up to the control head read right after the block was acknowledged, and the
//! decision is checked again; a result whose key changed meanwhile (disabled, scheduled for
//! deletion, …) is withheld, answered with the current error, and recorded as withheld.

use std::time::Duration;

use keyledger_events::{codes, SourceV1, UsageRecordV1};
use keyledger_kms::{Caller, ErrorKind, KeyRef, KeyState, KmsError, Operation, Projection, Request, Role as OpRole};

use crate::protocol::MIN_SEQ_HEADER;
use crate::roles::{RoleCtx, Success};

/// What the audit record of a request says, filled in as the request goes.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The record being built.
    pub record: UsageRecordV1,
    /// True when the request needs no usage record: it appended a control event (that event
    /// is its record), or the rate limiter dropped it (it is counted in a summary instead).
    pub recorded_elsewhere: bool,
    /// Where the control event that records the request was stored (set with
    /// `recorded_elsewhere` by keyd).
    pub recorded_at: Option<AuditPosition>,
}

/// Where a request's audit record is stored: the message holding it (a control event, or the
/// usage block with the usage record). Answered in the `Keyledger-Audit-Stream` and
/// `Keyledger-Audit-Seq` headers; `GET /v1/audit/proof/{request id}` proves it is in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPosition {
    /// Stream name (`KL_CONTROL_V1` or `KL_USAGE_V1_<YYYYMM>`).
    pub stream: String,
    /// Stream sequence (1-based) = Merkle leaf index + 1.
    pub seq: u64,
}

impl Facts {
    fn new(op_name: &str, request_id: uuid::Uuid, now_ms: u64, source: SourceV1) -> Self {
        Self {
            record: UsageRecordV1 {
                request_id: *request_id.as_bytes(),
                time_unix_ms: now_ms,
                operation: op_name.to_owned(),
                principal: keyledger_events::PrincipalV1 {
                    kind: keyledger_events::principal_kind::NATS_USER,
                    account: String::new(),
                    arn: String::new(),
                    nats_account: String::new(),
                    user: String::new(),
                },
                source,
                key_id_supplied: String::new(),
                key_arn: String::new(),
                material_version: 0,
                encryption_context: Vec::new(),
                authorized_by: String::new(),
                outcome: codes::outcome::OK,
                error_name: String::new(),
                decided_at_seq: 0,
                ciphertext_digest: None,
                pending_deletion_alarm: false,
            },
            recorded_elsewhere: false,
            recorded_at: None,
        }
    }

    /// Notes the key a crypto or read operation used.
    pub fn used_key(&mut self, arn: &str, material_version: u32, decided_at_seq: u64) {
        self.record.key_arn = arn.to_owned();
        self.record.material_version = material_version;
        self.record.decided_at_seq = decided_at_seq;
    }

    /// Notes the ciphertext produced or consumed (its BLAKE3 digest only).
    pub fn ciphertext(&mut self, blob: &[u8]) {
        self.record.ciphertext_digest = Some(*blake3::hash(blob).as_bytes());
    }
}

/// Longest client name / address copied from the request info, in bytes.
const MAX_SOURCE_BYTES: usize = 256;

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Where a NATS request came from, per the server-stamped request info (name and host of the
/// client connection).
fn nats_source(msg: &async_nats::Message) -> SourceV1 {
    let info = request_info(msg);
    SourceV1 {
        transport: codes::transport::NATS,
        client_name: truncate(info.name, MAX_SOURCE_BYTES),
        client_addr: truncate(info.host, 64),
    }
}

#[derive(serde::Deserialize, Default)]
struct Info {
    #[serde(default)]
    name: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    acc: String,
    #[serde(default)]
    user: String,
}

/// The server-stamped request info, as far as it is readable (empty fields otherwise).
fn request_info(msg: &async_nats::Message) -> Info {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(crate::identity::REQUEST_INFO_HEADER))
        .and_then(|v| serde_json::from_str(v.as_str()).ok())
        .unwrap_or_default()
}

fn error_outcome(e: &KmsError) -> u16 {
    if e.kind == ErrorKind::AccessDenied {
        codes::outcome::DENIED
    } else {
        codes::outcome::ERROR
    }
}

/// Handles one request end to end and returns the answer to send.
pub async fn handle(
    ctx: &RoleCtx,
    op: Operation,
    msg: &async_nats::Message,
    request_id: uuid::Uuid,
) -> (Result<Success, KmsError>, Option<AuditPosition>) {
    let now = ctx.config.clock.now_unix_ms();
    let mut facts = Facts::new(op.name(), request_id, now, nats_source(msg));
    if let Ok((_, source)) = ctx.identities.caller_and_source(msg.headers.as_ref()) {
        facts.record.source = source;
    }
    // Until the caller is resolved, the record names who the server says sent the request
    // (so a refused identity is still attributable).
    let info = request_info(msg);
    facts.record.principal.nats_account = truncate(info.acc, MAX_SOURCE_BYTES);
    facts.record.principal.user = truncate(info.user, MAX_SOURCE_BYTES);
    let result = run(ctx, op, msg, request_id, &mut facts).await;
    if let Err(e) = &result {
        facts.record.outcome = error_outcome(e);
        facts.record.error_name = e.kind.aws_name().to_owned();
        if let Some(by) = &e.decided_by {
            facts.record.authorized_by = by.clone();
        }
    }
    finish(ctx, facts, result).await
}

/// Records the request (unless its event did) and releases the answer only after that; returns
/// the answer and where its record is.
async fn finish(
    ctx: &RoleCtx,
    facts: Facts,
    result: Result<(Success, Option<Recheck>), KmsError>,
) -> (Result<Success, KmsError>, Option<AuditPosition>) {
    if facts.recorded_elsewhere || ctx.config.benchmark_only_skip_audit {
        return (result.map(|(s, _)| s), facts.recorded_at);
    }
    let receipt = match ctx.audit.write(facts.record.clone()).await {
        Ok(r) => r,
        Err(e) => return (Err(e), None),
    };
    let position = AuditPosition { stream: receipt.stream.clone(), seq: receipt.stream_seq };
    match recheck_after_record(ctx, facts, result, receipt).await {
        (answer, Some(withheld_at)) => (answer, Some(withheld_at)),
        (answer, None) => (answer, Some(position)),
    }
}

/// The post-record re-check of a crypto result; a withheld result's second record position.
async fn recheck_after_record(
    ctx: &RoleCtx,
    facts: Facts,
    result: Result<(Success, Option<Recheck>), KmsError>,
    receipt: crate::audit::Receipt,
) -> (Result<Success, KmsError>, Option<AuditPosition>) {
    let (success, recheck) = match result {
        Ok(v) => v,
        Err(e) => return (Err(e), None),
    };
    let Some(recheck) = recheck else { return (Ok(success), None) };
    let wait = ctx.follower.wait_for(receipt.control_head, ctx.config.projection_wait).await;
    if let Err(e) = wait {
        return (Err(e), None);
    }
    // Never a stale yes: the projection must hold every control event up to the head as of
    // the block's acknowledgement (awaited above), and the decision must still hold.
    let still = {
        let p = ctx.follower.read();
        recheck.run(&p, ctx)
    };
    match still {
        Ok(()) => (Ok(success), None),
        Err(e) => {
            drop(success); // the result is withheld (and its secret buffer wiped)
            let mut withheld = facts.record;
            withheld.outcome = codes::outcome::WITHHELD;
            withheld.error_name = e.kind.aws_name().to_owned();
            withheld.decided_at_seq = receipt.control_head;
            match ctx.audit.write(withheld).await {
                Ok(r) => (Err(e), Some(AuditPosition { stream: r.stream, seq: r.stream_seq })),
                Err(unstored) => (Err(unstored), None),
            }
        }
    }
}

/// A decision to check again after the record is stored: the same caller, policy action and
/// encryption context, against the projection at the control head (a key policy or grant
/// changed meanwhile withholds the result too).
pub enum Recheck {
    /// The key resolved from this input must still allow `op` and still be the same key.
    Key {
        caller: Caller,
        input: String,
        op: Operation,
        action: &'static str,
        ec: keyledger_kms::EncryptionContext,
        key_arn: String,
    },
    /// The key a ciphertext names must still allow decryption with this material version.
    Blob {
        caller: Caller,
        key_id: [u8; 16],
        material_version: u32,
        supplied: Option<String>,
        action: &'static str,
        ec: keyledger_kms::EncryptionContext,
        key_arn: String,
    },
    /// Both (ReEncrypt).
    Both(Box<Recheck>, Box<Recheck>),
}

impl Recheck {
    fn run(&self, p: &Projection, ctx: &RoleCtx) -> Result<(), KmsError> {
        let realm = &ctx.config.realm;
        // The clock after the record is stored: material that expired meanwhile is withheld.
        let now = ctx.config.clock.now_unix_ms();
        let changed = || {
            KmsError::new(
                ErrorKind::KMSInvalidState,
                "The key changed while the request was processed; retry the request.",
            )
        };
        match self {
            Recheck::Key { caller, input, op, action, ec, key_arn } => {
                let access = keyledger_kms::Access::new(caller, action, now).with_context(Some(ec));
                let key = keyledger_kms::resolve_for_crypto(p, realm, &access, input, *op, now)?;
                if key.arn != *key_arn {
                    return Err(changed());
                }
                Ok(())
            }
            Recheck::Blob { caller, key_id, material_version, supplied, action, ec, key_arn } => {
                let access = keyledger_kms::Access::new(caller, action, now).with_context(Some(ec));
                let key = keyledger_kms::resolve_for_decrypt(
                    p,
                    realm,
                    &access,
                    *key_id,
                    *material_version,
                    supplied.as_deref(),
                    now,
                )?;
                if key.arn != *key_arn {
                    return Err(changed());
                }
                Ok(())
            }
            Recheck::Both(a, b) => {
                a.run(p, ctx)?;
                b.run(p, ctx)
            }
        }
    }
}

async fn run(
    ctx: &RoleCtx,
    op: Operation,
    msg: &async_nats::Message,
    request_id: uuid::Uuid,
    facts: &mut Facts,
) -> Result<(Success, Option<Recheck>), KmsError> {
    let caller = ctx.identities.caller(msg.headers.as_ref())?;
    facts.record.principal = caller.principal.clone();
    tracing::Span::current().record("account", caller.account.as_str());
    if !ctx.limiter.allow(&caller.principal, ctx.config.clock.now_unix_ms()) {
        // Dropped before any work: counted into a SuppressedRequests summary, not recorded one
        // by one (that is what a flood must not be able to force).
        facts.recorded_elsewhere = true;
        return Err(KmsError::new(
            ErrorKind::Throttling,
            "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.",
        ));
    }
    let min_seq = match msg.headers.as_ref().and_then(|h| h.get(MIN_SEQ_HEADER)) {
        None => 0,
        Some(v) => v.as_str().parse::<u64>().map_err(|_| {
            KmsError::new(ErrorKind::Validation, format!("{MIN_SEQ_HEADER} must be a decimal stream sequence"))
        })?,
    };
    let request = keyledger_kms::parse_request(op, &msg.payload)?;
    note_request(facts, &request);
    let min_seq = min_seq.max(grant_token_seq(ctx, &request)?);
    ctx.follower.wait_min_seq(min_seq, ctx.config.projection_wait).await?;
    let named = {
        let p = ctx.follower.read();
        named_key(&p, ctx, &caller, &request)
    };
    let result = match op.role() {
        OpRole::Management => crate::keyd::handle(ctx, &caller, request, request_id, facts).await.map(|s| (s, None)),
        OpRole::Read => crate::cryptod::handle_read(ctx, &caller, &request, facts).await.map(|s| (s, None)),
        OpRole::Crypto => crate::cryptod::handle_crypto(ctx, &caller, &request, facts).await,
    };
    if let Some((arn, state)) = named {
        alarm_if_pending_deletion(ctx, &caller, &arn, state, facts).await;
    }
    result
}

/// The highest log position the request's grant tokens name (0 if none). A grant token
/// authorizes nothing: it only makes the worker wait (bounded, capped at the stream's head)
/// until its projection holds the grant, so a grant works at once from any worker.
///
/// Errors: `InvalidGrantTokenException` for a token this service did not make.
fn grant_token_seq(ctx: &RoleCtx, request: &Request) -> Result<u64, KmsError> {
    let retire = match request {
        Request::RetireGrant(r) => r.grant_token.as_slice(),
        _ => &[],
    };
    let mut seq = 0;
    for token in request.grant_tokens().iter().chain(retire) {
        let fields = ctx.root.verify_grant_token(token).map_err(|_| invalid_grant_token())?;
        seq = seq.max(fields.log_seq);
    }
    Ok(seq)
}

/// `InvalidGrantTokenException` (AWS API reference: "The request was rejected because the
/// specified grant token is not valid.").
pub fn invalid_grant_token() -> KmsError {
    KmsError::new(
        ErrorKind::InvalidGrantToken,
        "The request was rejected because the specified grant token is not valid.",
    )
}

/// Copies what the request says about keys and context into the record (never a secret).
fn note_request(facts: &mut Facts, request: &Request) {
    if let Some(k) = request.key_id() {
        facts.record.key_id_supplied = truncate(k.to_owned(), 2048);
    }
    let ec = match request {
        Request::Encrypt(r) => Some(&r.encryption_context),
        Request::Decrypt(r) => Some(&r.encryption_context),
        Request::ReEncrypt(r) => Some(&r.source_encryption_context),
        Request::GenerateDataKey(r) | Request::GenerateDataKeyWithoutPlaintext(r) => Some(&r.encryption_context),
        _ => None,
    };
    if let Some(ec) = ec {
        facts.record.encryption_context = ec.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    if let Request::Decrypt(r) = request {
        if let Some(blob) = &r.ciphertext_blob {
            facts.ciphertext(blob);
        }
    }
}

/// The key a request names, if it exists in the projection: its ARN and state.
fn named_key(p: &Projection, ctx: &RoleCtx, caller: &Caller, request: &Request) -> Option<(String, KeyState)> {
    let realm = &ctx.config.realm;
    let from_blob = |blob: &Option<Vec<u8>>| {
        let header = keyledger_crypto::parse_header(blob.as_deref()?).ok()?;
        let key = p.key(&caller.account, &keyledger_kms::KeyId::from_bytes(header.key_id))?;
        Some((key.arn(realm), key.state))
    };
    match request {
        Request::Decrypt(r) if r.key_id.is_none() => return from_blob(&r.ciphertext_blob),
        Request::ReEncrypt(r) if r.source_key_id.is_none() => {
            if let Some(found) = from_blob(&r.ciphertext_blob) {
                return Some(found);
            }
        }
        _ => {}
    }
    let input = request.key_id()?;
    let key = match keyledger_kms::parse_key_ref(input, realm, &caller.account, true).ok()? {
        KeyRef::Key { account, key_id } => p.key(&account, &key_id)?,
        KeyRef::Alias { account, alias_name } => {
            let alias = p.alias(&account, &alias_name)?;
            p.key(&account, &alias.target)?
        }
    };
    Some((key.arn(realm), key.state))
}

/// Fills in the key a request named (if it did not get as far as using it), and raises the
/// deletion alarm when that key is pending deletion (aws-kms-api.md §10: a request against a
/// key pending deletion means someone still needs it).
async fn alarm_if_pending_deletion(ctx: &RoleCtx, caller: &Caller, arn: &str, state: KeyState, facts: &mut Facts) {
    if facts.record.key_arn.is_empty() {
        facts.record.key_arn = arn.to_owned();
    }
    if state != KeyState::PendingDeletion {
        return;
    }
    facts.record.pending_deletion_alarm = true;
    let alarm = serde_json::json!({
        "account": caller.account,
        "key_arn": arn,
        "operation": facts.record.operation,
        "request_id": uuid::Uuid::from_bytes(facts.record.request_id).to_string(),
        "principal": caller.principal.arn,
        "time_unix_ms": facts.record.time_unix_ms,
    });
    let subject = keyledger_events::names::pending_deletion_alarm_subject(&caller.account);
    if let Err(e) = ctx.nats.publish(subject, serde_json::to_vec(&alarm).unwrap_or_default().into()).await {
        tracing::warn!(error = %e, "cannot publish the pending-deletion alarm");
    }
    tracing::warn!(key_arn = %arn, operation = %facts.record.operation, "ALARM: request against a key pending deletion");
}

/// A request shed because the role is at its in-flight limit: counted in its caller's
/// SuppressedRequests summary (the caller as identified, else as the server stamped it) and
/// answered with ThrottlingException. Does no other work.
pub fn shed(ctx: &RoleCtx, msg: &async_nats::Message) -> KmsError {
    let principal = match ctx.identities.caller(msg.headers.as_ref()) {
        Ok(caller) => caller.principal,
        Err(_) => {
            let info = request_info(msg);
            keyledger_events::PrincipalV1 {
                kind: keyledger_events::principal_kind::NATS_USER,
                account: String::new(),
                arn: format!(
                    "nats:{}/{}",
                    truncate(info.acc.clone(), MAX_SOURCE_BYTES),
                    truncate(info.user.clone(), MAX_SOURCE_BYTES)
                ),
                nats_account: truncate(info.acc, MAX_SOURCE_BYTES),
                user: truncate(info.user, MAX_SOURCE_BYTES),
            }
        }
    };
    ctx.limiter.count_dropped(&principal, ctx.config.clock.now_unix_ms());
    KmsError::new(ErrorKind::Throttling, "The service is at capacity; retry the request with backoff.")
}

/// How often the rate limiter's suppressed counts are written.
pub const SUPPRESSED_FLUSH: Duration = crate::audit::RateLimiter::FLUSH_EVERY;

/// Records a request for an operation no endpoint serves under `request_id` (answered in
/// the reply's `Keyledger-Request-Id`, so the gateway's `x-amzn-RequestId` names this
/// record); returns the error to answer and where the record is, or a retryable error if it
/// could not be recorded.
pub async fn record_unknown(
    ctx: &RoleCtx,
    msg: &async_nats::Message,
    name: &str,
    request_id: uuid::Uuid,
    error: KmsError,
) -> Result<(KmsError, AuditPosition), KmsError> {
    let mut facts =
        Facts::new(&truncate(name.to_owned(), 64), request_id, ctx.config.clock.now_unix_ms(), nats_source(msg));
    if let Ok((caller, source)) = ctx.identities.caller_and_source(msg.headers.as_ref()) {
        facts.record.principal = caller.principal;
        facts.record.source = source;
    }
    facts.record.outcome = error_outcome(&error);
    facts.record.error_name = error.kind.aws_name().to_owned();
    let receipt = ctx.audit.write(facts.record).await?;
    Ok((error, AuditPosition { stream: receipt.stream, seq: receipt.stream_seq }))
}

/// Records a refusal report of the gateway ([`crate::gateway::audit`]): one usage record for
/// a refusal (its request id is the gateway's, the one the client was given), or a
/// suppressed-requests summary. The caller has checked that the gateway sent it
/// ([`crate::identity::Identities::is_the_gateway_itself`]).
///
/// # Errors
/// ValidationException for a report that does not parse or breaks a documented shape;
/// a retryable error if the record could not be stored.
pub async fn record_refusal(
    ctx: &RoleCtx,
    msg: &async_nats::Message,
) -> Result<(uuid::Uuid, Option<AuditPosition>), KmsError> {
    use crate::gateway::audit::{RefusalReport, CLIENT_PRINCIPAL_PREFIX};
    let invalid = |why: &str| KmsError::new(ErrorKind::Validation, format!("Invalid gateway refusal report: {why}."));
    let report: RefusalReport = serde_json::from_slice(&msg.payload).map_err(|_| invalid("not a report"))?;
    let gateway_account = truncate(request_info(msg).acc, MAX_SOURCE_BYTES);
    match report {
        RefusalReport::Refused(r) => {
            r.validate().map_err(invalid)?;
            let principal = match &r.authenticated {
                Some(p) => keyledger_events::PrincipalV1 {
                    kind: keyledger_events::principal_kind::SIGV4,
                    account: p.account.clone(),
                    arn: p.principal_arn.clone(),
                    nats_account: gateway_account,
                    user: p.access_key_id.clone(),
                },
                None => keyledger_events::PrincipalV1 {
                    kind: keyledger_events::principal_kind::SIGV4,
                    account: String::new(),
                    arn: String::new(),
                    nats_account: gateway_account,
                    user: r.access_key_id.clone().unwrap_or_default(),
                },
            };
            let source = SourceV1 {
                transport: codes::transport::HTTP,
                client_name: r.user_agent.clone(),
                client_addr: r.source_addr.clone(),
            };
            let mut facts = Facts::new(
                r.operation.as_deref().unwrap_or_default(),
                r.request_id,
                ctx.config.clock.now_unix_ms(),
                source,
            );
            facts.record.principal = principal;
            // `sigv4:<reason>` for a failed authentication, `gateway:<reason>` for the rest.
            let by = if r.outcome() == codes::outcome::DENIED { "sigv4" } else { "gateway" };
            facts.record.authorized_by = format!("{by}:{}", r.reason);
            facts.record.outcome = r.outcome();
            facts.record.error_name = r.error_name.clone();
            let receipt = ctx.audit.write(facts.record).await?;
            Ok((r.request_id, Some(AuditPosition { stream: receipt.stream, seq: receipt.stream_seq })))
        }
        RefusalReport::Suppressed(mut s) => {
            let network = s.principal.arn.strip_prefix(CLIENT_PRINCIPAL_PREFIX).unwrap_or_default().to_owned();
            if network.is_empty()
                || network.len() > 64
                || !network.bytes().all(|b| b.is_ascii_hexdigit() || b".:/".contains(&b))
                || s.count == 0
                || s.window_start_unix_ms > s.window_end_unix_ms
            {
                return Err(invalid("bad summary"));
            }
            s.principal = crate::gateway::audit::network_principal(&network);
            s.principal.nats_account = gateway_account;
            ctx.audit.write_suppressed(s);
            Ok((uuid::Uuid::new_v4(), None))
        }
    }
}
