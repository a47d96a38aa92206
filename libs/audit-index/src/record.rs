//! Audit records: what one document holds, and how stored log messages become records.
//!
//! * A control-stream message is one management event: the audit record of a successful
//!   management request (or of a service event such as automatic rotation or the end of a
//!   deletion window). Its body names the AWS operation ([`control_operation`]).
//! * A usage-stream message is a block of many [`UsageRecordV1`] (every crypto and read
//!   request, and every failed or denied management request) plus rate-limiter summaries;
//!   each becomes one record, numbered by its index within the block.
//!
//! The mapping is a pure function of (stream, sequence, stored bytes, realm), so a rebuild of
//! the index from the log yields the same records (BRIEF invariant 1).

use std::collections::BTreeMap;

use keyledger_events::{
    codes, names, principal_kind, AggregateKind, Body, Event, PrincipalV1, SuppressedRequestsV1, UsageRecordV1,
};
use serde::{Deserialize, Serialize};

use crate::IndexError;

/// Partition and region used to build key ARNs of control events
/// (`arn:<partition>:kms:<region>:<account>:key/<key id>`); must match the roles' realm. The
/// rulebook's own type, so the index and the service can never spell ARNs differently.
pub use keyledger_kms::Realm;

/// `event_type` of a request a caller made (CloudTrail `AwsApiCall`).
pub const EVENT_API_CALL: &str = "AwsApiCall";
/// `event_type` of an action Keyledger took on its own (CloudTrail `AwsServiceEvent`).
pub const EVENT_SERVICE: &str = "AwsServiceEvent";
/// `event_type` of a rate-limiter summary (requests dropped before any work).
pub const EVENT_SUPPRESSED: &str = "KeyledgerSuppressedRequests";
/// `operation` of a rate-limiter summary record.
pub const OPERATION_SUPPRESSED: &str = "SuppressedRequests";
/// Principal ARN prefix of the AWS endpoint's summaries of the refusals it only counted
/// (`keyledger:http-client:<IPv4 address or IPv6 /64>`): their requests were refused for
/// various reasons (bad signatures, oversized bodies, …), not throttled, so such a summary
/// carries no error name, transport `http` and the network as its source address.
pub const HTTP_CLIENT_PRINCIPAL_PREFIX: &str = "keyledger:http-client:";

/// Outcome names stored in `outcome`.
pub mod outcome {
    /// Succeeded, result released.
    pub const OK: &str = "ok";
    /// Failed with an AWS error.
    pub const ERROR: &str = "error";
    /// AccessDenied.
    pub const DENIED: &str = "denied";
    /// Result computed but withheld after the post-audit re-check.
    pub const WITHHELD: &str = "withheld";
    /// Requests dropped by a rate limiter (summary records).
    pub const SUPPRESSED: &str = "suppressed";
    /// Every outcome name a query may filter on.
    pub const ALL: [&str; 5] = [OK, ERROR, DENIED, WITHHELD, SUPPRESSED];
}

/// One audit record: exactly one index document. Field names are the index's field names and
/// the HTTP API's JSON member names. Empty strings / zero mean "not applicable". Holds no
/// secret: the log records hold none (no plaintext, data key, ciphertext body, grant token or
/// credential), only identifiers, names, the encryption context and digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique id: the request id (32 lowercase hex) for usage records (`<hex>-withheld` for
    /// the second record of a request whose result was withheld), the event id (32 hex) for
    /// control events, `<block event id hex>-s<index>` for rate-limiter summaries.
    pub record_id: String,
    /// The request id as the API returned it (`Keyledger-Request-Id`, hyphenated UUID);
    /// empty for service events.
    pub request_id: String,
    /// Stream the record was read from (`KL_CONTROL_V1` or `KL_USAGE_V1_<YYYYMM>`).
    pub stream: String,
    /// Stream sequence of the message holding the record.
    pub seq: u64,
    /// Position of the record in its message (usage blocks; 0 for control events).
    pub index: u32,
    /// When the request was decided, µs since the Unix epoch (writer clock; ms precision).
    pub time_unix_us: i64,
    /// The same time as RFC 3339 (UTC).
    pub time: String,
    /// [`EVENT_API_CALL`], [`EVENT_SERVICE`] or [`EVENT_SUPPRESSED`].
    pub event_type: String,
    /// Every account the record belongs to: the key owner's and the caller's (once each, in
    /// that order). Account-scoped readers see a record if their account is listed.
    pub accounts: Vec<String>,
    /// Principal ARN (`arn:aws:iam::<account>:user/<name>`, or `keyledger:service`).
    pub principal_arn: String,
    /// `service`, `nats_user` or `sigv4`.
    pub principal_type: String,
    /// NATS account the request came from (as the server stamped it).
    pub nats_account: String,
    /// NATS user name (or SigV4 access key id).
    pub nats_user: String,
    /// `nats`, `http` or `service`.
    pub source_transport: String,
    /// Client name reported by the transport (NATS connection name, User-Agent).
    pub source_client: String,
    /// Client address when known.
    pub source_addr: String,
    /// AWS operation name (`Encrypt`, `CreateKey`, …) or service event name (`RotateKey`,
    /// `DeleteKey`), or [`OPERATION_SUPPRESSED`].
    pub operation: String,
    /// Key id exactly as the caller supplied it (id, ARN, alias name or alias ARN).
    pub key_id_supplied: String,
    /// The key ARN it resolved to.
    pub key_arn: String,
    /// The key id it resolved to (UUID).
    pub key_id: String,
    /// The alias name (`alias/…`) when the caller named the key by alias, or the alias an
    /// alias event is about.
    pub alias: String,
    /// Material version used or created (0 if none).
    pub material_version: u32,
    /// The encryption context (AWS logs it in clear; it holds no secrets by contract).
    pub encryption_context: BTreeMap<String, String>,
    /// What allowed it (key policy statement or grant id); empty under the account rule.
    pub authorized_by: String,
    /// One of [`outcome::ALL`].
    pub outcome: String,
    /// AWS error name when not ok.
    pub error_name: String,
    /// Control-log sequence of the key state the decision was made on (0 if none).
    pub decided_at_seq: u64,
    /// BLAKE3 of the ciphertext blob produced or consumed, 64 lowercase hex (empty if none).
    pub ciphertext_digest: String,
    /// True when the key was pending deletion (the deletion alarm fired).
    pub pending_deletion_alarm: bool,
    /// Requests counted by a rate-limiter summary (0 otherwise).
    pub suppressed_count: u64,
    /// Human-readable details (event body summary); the free-text field.
    pub text: String,
}

/// Ordering rank of a stream among records with the same time: 0 for the control stream,
/// `YYYYMM` for a usage stream. `None` for a stream the index does not read.
pub fn stream_rank(stream: &str) -> Option<u64> {
    if stream == names::CONTROL_STREAM {
        return Some(0);
    }
    let period = stream.strip_prefix(names::USAGE_STREAM_PREFIX)?;
    if period.len() == 6 && period.bytes().all(|b| b.is_ascii_digit()) {
        period.parse().ok()
    } else {
        None
    }
}

/// RFC 3339 text of a time in µs since the epoch (UTC).
pub fn format_time_us(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Parses a time bound as RFC 3339 (`2026-11-29T10:00:00Z`, offsets allowed) or epoch
/// seconds (`1764410400`, optionally with up to 6 decimals). Returns µs since the epoch.
///
/// # Errors
/// [`IndexError::InvalidQuery`] for anything else.
pub fn parse_time(text: &str) -> Result<i64, IndexError> {
    let bad = || IndexError::InvalidQuery(format!("time {text:?} is neither RFC 3339 nor epoch seconds"));
    if text.is_empty() || text.len() > 64 {
        return Err(bad());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
        if secs.is_empty() || secs.len() > 12 || frac.len() > 6 || frac.contains('.') {
            return Err(bad());
        }
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let mut micros: i64 = 0;
        if !frac.is_empty() {
            let padded = format!("{frac:0<6}");
            micros = padded.parse().map_err(|_| bad())?;
        }
        return Ok(secs * 1_000_000 + micros);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|_| bad())?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| bad())
}

fn hex16(b: &[u8; 16]) -> String {
    hex::encode(b)
}

fn uuid_text(b: &[u8; 16]) -> String {
    if b.iter().all(|x| *x == 0) {
        String::new()
    } else {
        uuid::Uuid::from_bytes(*b).hyphenated().to_string()
    }
}

fn principal_type(kind: u16) -> &'static str {
    match kind {
        principal_kind::SERVICE => "service",
        principal_kind::NATS_USER => "nats_user",
        principal_kind::SIGV4 => "sigv4",
        _ => "unknown",
    }
}

fn transport_name(code: u16) -> &'static str {
    match code {
        codes::transport::NATS => "nats",
        codes::transport::HTTP => "http",
        codes::transport::SERVICE => "service",
        _ => "unknown",
    }
}

fn outcome_name(code: u16) -> String {
    match code {
        codes::outcome::OK => outcome::OK.to_owned(),
        codes::outcome::ERROR => outcome::ERROR.to_owned(),
        codes::outcome::DENIED => outcome::DENIED.to_owned(),
        codes::outcome::WITHHELD => outcome::WITHHELD.to_owned(),
        other => format!("unknown-{other}"),
    }
}

/// The account field of an ARN (`arn:<p>:<service>:<region>:<account>:<resource>`).
fn arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let account = parts.nth(3)?;
    parts.next()?;
    (!account.is_empty()).then_some(account)
}

/// The key id of a key ARN (`…:key/<id>`).
pub fn key_id_of_arn(arn: &str) -> Option<&str> {
    if !arn.starts_with("arn:") {
        return None;
    }
    arn.rsplit_once(":key/").map(|(_, id)| id).filter(|id| !id.is_empty())
}

/// The alias name (`alias/…`) of a supplied key id that names an alias (name or alias ARN).
pub fn alias_of(supplied: &str) -> Option<&str> {
    if supplied.starts_with("alias/") {
        return Some(supplied);
    }
    if supplied.starts_with("arn:") {
        if let Some(pos) = supplied.find(":alias/") {
            return Some(&supplied[pos + 1..]);
        }
    }
    None
}

fn push_account(accounts: &mut Vec<String>, account: &str) {
    if !account.is_empty() && !accounts.iter().any(|a| a == account) {
        accounts.push(account.to_owned());
    }
}

/// Which AWS operation (or service event) a control event records, and whether it is a
/// service event. `None` for bodies that do not belong on the control stream.
///
/// Source: aws-kms-api.md §11.1 (service events `RotateKey`, `DeleteKey`).
pub fn control_operation(body: &Body, principal: &PrincipalV1) -> Option<(&'static str, bool)> {
    let by_service = principal.kind == principal_kind::SERVICE;
    let op = match body {
        Body::KeyCreated(_) | Body::KeyCreatedV2(_) => "CreateKey",
        Body::KeyPolicyPut(_) => "PutKeyPolicy",
        Body::GrantCreated(_) => "CreateGrant",
        Body::GrantRetired(_) => "RetireGrant",
        Body::GrantRevoked(_) => "RevokeGrant",
        Body::KeyDescriptionUpdated(_) => "UpdateKeyDescription",
        Body::KeyEnabled(_) => "EnableKey",
        Body::KeyDisabled(_) => "DisableKey",
        Body::KeyRotationEnabled(_) => "EnableKeyRotation",
        Body::KeyRotationDisabled(_) => "DisableKeyRotation",
        Body::KeyMaterialRotated(r) => {
            if r.rotation_type == codes::rotation_type::AUTOMATIC {
                return Some(("RotateKey", true));
            }
            "RotateKeyOnDemand"
        }
        Body::KeyDeletionScheduled(_) => "ScheduleKeyDeletion",
        Body::KeyDeletionCancelled(_) => "CancelKeyDeletion",
        Body::KeyDeleted(_) => return Some(("DeleteKey", true)),
        Body::KeyTagsAdded(_) => "TagResource",
        Body::KeyTagsRemoved(_) => "UntagResource",
        Body::ImportParametersIssued(_) => "GetParametersForImport",
        Body::KeyMaterialImported(_) => "ImportKeyMaterial",
        Body::KeyMaterialDeleted(d) => {
            if d.reason == codes::material_deletion::EXPIRED {
                return Some(("DeleteExpiredKeyMaterial", true));
            }
            "DeleteImportedKeyMaterial"
        }
        Body::AliasCreated(_) => "CreateAlias",
        Body::AliasUpdated(_) => "UpdateAlias",
        Body::AliasDeleted(_) => "DeleteAlias",
        Body::UsageBlock(_) => return None,
    };
    Some((op, by_service))
}

fn key_spec_name(code: u16) -> String {
    match code {
        codes::key_spec::SYMMETRIC_DEFAULT => "SYMMETRIC_DEFAULT".to_owned(),
        other => format!("key_spec_{other}"),
    }
}

fn wrapping_key_spec_name(code: u16) -> String {
    match code {
        codes::wrapping_key_spec::RSA_2048 => "RSA_2048".to_owned(),
        codes::wrapping_key_spec::RSA_3072 => "RSA_3072".to_owned(),
        codes::wrapping_key_spec::RSA_4096 => "RSA_4096".to_owned(),
        other => format!("wrapping_key_spec_{other}"),
    }
}

fn wrapping_algorithm_name(code: u16) -> String {
    match code {
        codes::wrapping_algorithm::RSAES_OAEP_SHA_1 => "RSAES_OAEP_SHA_1".to_owned(),
        codes::wrapping_algorithm::RSAES_OAEP_SHA_256 => "RSAES_OAEP_SHA_256".to_owned(),
        codes::wrapping_algorithm::RSA_AES_KEY_WRAP_SHA_1 => "RSA_AES_KEY_WRAP_SHA_1".to_owned(),
        codes::wrapping_algorithm::RSA_AES_KEY_WRAP_SHA_256 => "RSA_AES_KEY_WRAP_SHA_256".to_owned(),
        other => format!("wrapping_algorithm_{other}"),
    }
}

fn origin_name(code: u16) -> String {
    match code {
        codes::origin::AWS_KMS => "AWS_KMS".to_owned(),
        codes::origin::EXTERNAL => "EXTERNAL".to_owned(),
        other => format!("origin_{other}"),
    }
}

fn ms_text(ms: u64) -> String {
    format_time_us(i64::try_from(ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000))
}

/// Body details for the free-text field (no secrets: bodies hold none).
fn control_details(op: &str, body: &Body) -> (String, u32) {
    let mut text = String::from(op);
    let mut version = 0;
    let mut add = |s: String| {
        text.push(' ');
        text.push_str(&s);
    };
    // A version 1 KeyCreated reads as version 2 with the default key policy.
    let upgraded;
    let body = match body {
        Body::KeyCreated(c) => {
            upgraded = Body::KeyCreatedV2(c.upgrade());
            &upgraded
        }
        other => other,
    };
    match body {
        Body::KeyCreatedV2(c) => {
            add(format!("KeySpec={} Origin={}", key_spec_name(c.key_spec), origin_name(c.origin)));
            if !c.description.is_empty() {
                add(format!("Description={}", c.description));
            }
            for t in &c.tags {
                add(format!("Tag {}={}", t.key, t.value));
            }
            if let Some(m) = &c.material {
                version = m.version;
                add(format!("KeyMaterialId={}", hex::encode(m.material_id)));
            }
            match &c.policy {
                Some(p) => add(format!("Policy={p}")),
                None => add("Policy=default".to_owned()),
            }
            if c.bypass_policy_lockout_safety_check {
                add("BypassPolicyLockoutSafetyCheck=true".to_owned());
            }
        }
        Body::KeyPolicyPut(k) => {
            add(format!("PolicyName={} Policy={}", k.policy_name, k.policy));
            if k.bypass_policy_lockout_safety_check {
                add("BypassPolicyLockoutSafetyCheck=true".to_owned());
            }
        }
        Body::GrantCreated(g) => {
            add(format!("GrantId={} GranteePrincipal={}", hex::encode(g.grant_id), g.grantee_principal));
            if !g.retiring_principal.is_empty() {
                add(format!("RetiringPrincipal={}", g.retiring_principal));
            }
            if !g.name.is_empty() {
                add(format!("Name={}", g.name));
            }
            let ops: Vec<&str> = g
                .operations
                .iter()
                .map(|c| keyledger_kms::GrantOperation::from_code(*c).map_or("unknown", |o| o.name()))
                .collect();
            add(format!("Operations={}", ops.join(",")));
            if let Some(c) = &g.constraint {
                for p in &c.pairs {
                    add(format!("Constraint {}={}", p.key, p.value));
                }
            }
        }
        Body::GrantRetired(g) => add(format!("GrantId={}", hex::encode(g.grant_id))),
        Body::GrantRevoked(g) => add(format!("GrantId={}", hex::encode(g.grant_id))),
        Body::KeyDescriptionUpdated(d) => add(format!("Description={}", d.description)),
        Body::KeyEnabled(e) => {
            if let Some(due) = e.rotation_catch_up_due_unix_ms {
                add(format!("RotationCatchUpDue={}", ms_text(due)));
            }
        }
        Body::KeyRotationEnabled(r) => add(format!(
            "RotationPeriodInDays={} NextRotationDate={}",
            r.rotation_period_days,
            ms_text(r.next_rotation_unix_ms)
        )),
        Body::KeyMaterialRotated(r) => {
            version = r.material.version;
            let kind = if r.rotation_type == codes::rotation_type::AUTOMATIC { "AUTOMATIC" } else { "ON_DEMAND" };
            add(format!("RotationType={kind} KeyMaterialId={}", hex::encode(r.material.material_id)));
        }
        Body::KeyDeletionScheduled(s) => {
            add(format!("PendingWindowInDays={} DeletionDate={}", s.pending_window_days, ms_text(s.deletion_unix_ms)))
        }
        Body::KeyDeleted(d) => add(format!("DeletionDate={}", ms_text(d.due_unix_ms))),
        Body::KeyTagsAdded(t) => {
            for tag in &t.tags {
                add(format!("Tag {}={}", tag.key, tag.value));
            }
        }
        Body::KeyTagsRemoved(t) => {
            for k in &t.tag_keys {
                add(format!("TagKey {k}"));
            }
        }
        Body::ImportParametersIssued(i) => add(format!(
            "WrappingKeySpec={} WrappingAlgorithm={} ParametersValidTo={} ImportTokenId={}",
            wrapping_key_spec_name(i.wrapping_key_spec),
            wrapping_algorithm_name(i.wrapping_algorithm),
            ms_text(i.valid_to_unix_ms),
            hex::encode(i.token_id)
        )),
        Body::KeyMaterialImported(i) => {
            version = i.material.version;
            let model = if i.expiration_model == codes::expiration_model::KEY_MATERIAL_DOES_NOT_EXPIRE {
                "KEY_MATERIAL_DOES_NOT_EXPIRE"
            } else {
                "KEY_MATERIAL_EXPIRES"
            };
            add(format!("ExpirationModel={model} KeyMaterialId={}", hex::encode(i.material.material_id)));
            if let Some(t) = i.valid_to_unix_ms {
                add(format!("ValidTo={}", ms_text(t)));
            }
            add(format!("ImportTokenId={}", hex::encode(i.token_id)));
        }
        Body::KeyMaterialDeleted(d) => {
            version = d.material.version;
            if let Some(t) = d.due_unix_ms {
                add(format!("ValidTo={}", ms_text(t)));
            }
        }
        Body::AliasCreated(a) => add(format!("TargetKeyId={}", uuid_text(&a.target_key_id))),
        Body::AliasUpdated(a) => add(format!(
            "TargetKeyId={} PreviousTargetKeyId={}",
            uuid_text(&a.target_key_id),
            uuid_text(&a.previous_target_key_id)
        )),
        Body::AliasDeleted(a) => add(format!("TargetKeyId={}", uuid_text(&a.target_key_id))),
        Body::KeyDisabled(_)
        | Body::KeyRotationDisabled(_)
        | Body::KeyDeletionCancelled(_)
        | Body::UsageBlock(_)
        | Body::KeyCreated(_) => {}
    }
    (text, version)
}

/// The audit records held by one stored message of `stream` at sequence `seq`.
///
/// # Errors
/// [`IndexError::Decode`] when the bytes are not a canonical Keyledger record (the log is
/// damaged: nothing is indexed for it, the caller must stop and report);
/// [`IndexError::UnexpectedRecord`] when the record does not belong on that stream (a usage
/// block on the control stream or the reverse, or an unknown stream).
pub fn records_from_message(
    stream: &str,
    seq: u64,
    stored: &[u8],
    realm: &Realm,
) -> Result<Vec<AuditRecord>, IndexError> {
    if stream_rank(stream).is_none() {
        return Err(IndexError::UnexpectedRecord(format!("stream {stream} is not indexed")));
    }
    let event =
        keyledger_events::decode(stored).map_err(|e| IndexError::Decode(format!("{stream} sequence {seq}: {e}")))?;
    if stream == names::CONTROL_STREAM {
        control_record(stream, seq, &event, realm).map(|r| vec![r])
    } else {
        usage_records(stream, seq, &event)
    }
}

fn control_record(stream: &str, seq: u64, event: &Event, realm: &Realm) -> Result<AuditRecord, IndexError> {
    let r = &event.record;
    let (op, service) = control_operation(&event.body, &r.principal).ok_or_else(|| {
        IndexError::UnexpectedRecord(format!(
            "{stream} sequence {seq}: {} does not belong on the control stream",
            event.body.name()
        ))
    })?;
    let (text, material_version) = control_details(op, &event.body);
    let (key_id, alias) = match (&event.aggregate_kind(), &event.body) {
        (AggregateKind::Key, _) => (r.aggregate_id.clone(), String::new()),
        (AggregateKind::Alias, Body::AliasCreated(a)) => (uuid_text(&a.target_key_id), r.aggregate_id.clone()),
        (AggregateKind::Alias, Body::AliasUpdated(a)) => (uuid_text(&a.target_key_id), r.aggregate_id.clone()),
        (AggregateKind::Alias, Body::AliasDeleted(a)) => (uuid_text(&a.target_key_id), r.aggregate_id.clone()),
        _ => (String::new(), String::new()),
    };
    let key_arn = match key_id.parse::<keyledger_kms::KeyId>() {
        Ok(k) => realm.key_arn(&r.account, &k),
        Err(_) => String::new(),
    };
    let mut accounts = Vec::new();
    push_account(&mut accounts, &r.account);
    push_account(&mut accounts, &r.principal.account);
    let time_unix_us = i64::try_from(r.time_unix_ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
    let transport = match r.principal.kind {
        principal_kind::NATS_USER => "nats",
        principal_kind::SIGV4 => "http",
        principal_kind::SERVICE => "service",
        _ => "unknown",
    };
    Ok(AuditRecord {
        record_id: hex16(&r.event_id),
        request_id: uuid_text(&r.request_id),
        stream: stream.to_owned(),
        seq,
        index: 0,
        time_unix_us,
        time: format_time_us(time_unix_us),
        event_type: if service { EVENT_SERVICE } else { EVENT_API_CALL }.to_owned(),
        accounts,
        principal_arn: r.principal.arn.clone(),
        principal_type: principal_type(r.principal.kind).to_owned(),
        nats_account: r.principal.nats_account.clone(),
        nats_user: r.principal.user.clone(),
        source_transport: transport.to_owned(),
        source_client: String::new(),
        source_addr: String::new(),
        operation: op.to_owned(),
        key_id_supplied: String::new(),
        key_arn,
        key_id,
        alias,
        material_version,
        encryption_context: BTreeMap::new(),
        authorized_by: String::new(),
        outcome: outcome::OK.to_owned(),
        error_name: String::new(),
        decided_at_seq: 0,
        ciphertext_digest: String::new(),
        pending_deletion_alarm: false,
        suppressed_count: 0,
        text,
    })
}

fn usage_records(stream: &str, seq: u64, event: &Event) -> Result<Vec<AuditRecord>, IndexError> {
    let block = match (&event.aggregate_kind(), &event.body) {
        (AggregateKind::UsageLane, Body::UsageBlock(b)) => b,
        _ => {
            return Err(IndexError::UnexpectedRecord(format!(
                "{stream} sequence {seq}: {} is not a usage block",
                event.body.name()
            )))
        }
    };
    let mut out = Vec::with_capacity(block.records.len() + block.suppressed.len());
    for (i, u) in block.records.iter().enumerate() {
        out.push(usage_record(stream, seq, i, u));
    }
    let block_id = hex16(&event.record.event_id);
    for (j, s) in block.suppressed.iter().enumerate() {
        out.push(suppressed_record(stream, seq, block.records.len() + j, &block_id, s));
    }
    Ok(out)
}

fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn usage_record(stream: &str, seq: u64, i: usize, u: &UsageRecordV1) -> AuditRecord {
    let key_id = key_id_of_arn(&u.key_arn).unwrap_or_default().to_owned();
    let alias = alias_of(&u.key_id_supplied).unwrap_or_default().to_owned();
    let mut accounts = Vec::new();
    if let Some(owner) = arn_account(&u.key_arn) {
        push_account(&mut accounts, owner);
    }
    push_account(&mut accounts, &u.principal.account);
    let time_unix_us = i64::try_from(u.time_unix_ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
    let outcome = outcome_name(u.outcome);
    let mut text = u.operation.clone();
    for part in [&u.error_name, &u.key_id_supplied, &u.source.client_name, &u.authorized_by, &u.principal.user] {
        if !part.is_empty() {
            text.push(' ');
            text.push_str(part);
        }
    }
    let service = u.principal.kind == principal_kind::SERVICE;
    // A withheld result has a second record for the same request (the first said ok).
    let record_id = if u.outcome == codes::outcome::WITHHELD {
        format!("{}-withheld", hex16(&u.request_id))
    } else {
        hex16(&u.request_id)
    };
    AuditRecord {
        record_id,
        request_id: uuid_text(&u.request_id),
        stream: stream.to_owned(),
        seq,
        index: index_u32(i),
        time_unix_us,
        time: format_time_us(time_unix_us),
        event_type: if service { EVENT_SERVICE } else { EVENT_API_CALL }.to_owned(),
        accounts,
        principal_arn: u.principal.arn.clone(),
        principal_type: principal_type(u.principal.kind).to_owned(),
        nats_account: u.principal.nats_account.clone(),
        nats_user: u.principal.user.clone(),
        source_transport: transport_name(u.source.transport).to_owned(),
        source_client: u.source.client_name.clone(),
        source_addr: u.source.client_addr.clone(),
        operation: u.operation.clone(),
        key_id_supplied: u.key_id_supplied.clone(),
        key_arn: u.key_arn.clone(),
        key_id,
        alias,
        material_version: u.material_version,
        encryption_context: u.encryption_context.iter().cloned().collect(),
        authorized_by: u.authorized_by.clone(),
        outcome,
        error_name: u.error_name.clone(),
        decided_at_seq: u.decided_at_seq,
        ciphertext_digest: u.ciphertext_digest.map(hex::encode).unwrap_or_default(),
        pending_deletion_alarm: u.pending_deletion_alarm,
        suppressed_count: 0,
        text,
    }
}

fn suppressed_record(stream: &str, seq: u64, i: usize, block_id: &str, s: &SuppressedRequestsV1) -> AuditRecord {
    let mut accounts = Vec::new();
    push_account(&mut accounts, &s.principal.account);
    let time_unix_us = i64::try_from(s.window_end_unix_ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
    let http_network = s.principal.arn.strip_prefix(HTTP_CLIENT_PRINCIPAL_PREFIX);
    AuditRecord {
        record_id: format!("{block_id}-s{i}"),
        request_id: String::new(),
        stream: stream.to_owned(),
        seq,
        index: index_u32(i),
        time_unix_us,
        time: format_time_us(time_unix_us),
        event_type: EVENT_SUPPRESSED.to_owned(),
        accounts,
        principal_arn: s.principal.arn.clone(),
        principal_type: principal_type(s.principal.kind).to_owned(),
        nats_account: s.principal.nats_account.clone(),
        nats_user: s.principal.user.clone(),
        source_transport: if http_network.is_some() { "http" } else { "service" }.to_owned(),
        source_client: String::new(),
        source_addr: http_network.unwrap_or_default().to_owned(),
        operation: OPERATION_SUPPRESSED.to_owned(),
        key_id_supplied: String::new(),
        key_arn: String::new(),
        key_id: String::new(),
        alias: String::new(),
        material_version: 0,
        encryption_context: BTreeMap::new(),
        authorized_by: String::new(),
        outcome: outcome::SUPPRESSED.to_owned(),
        error_name: if http_network.is_some() { "" } else { "ThrottlingException" }.to_owned(),
        decided_at_seq: 0,
        ciphertext_digest: String::new(),
        pending_deletion_alarm: false,
        suppressed_count: s.count,
        text: format!(
            "{OPERATION_SUPPRESSED} {} requests from {} between {} and {}",
            s.count,
            s.principal.arn,
            ms_text(s.window_start_unix_ms),
            ms_text(s.window_end_unix_ms)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_refusal_summary_is_http_from_its_network_with_no_error_name() {
        let summary = |arn: &str| SuppressedRequestsV1 {
            principal: keyledger_events::PrincipalV1 {
                kind: keyledger_events::principal_kind::SIGV4,
                account: String::new(),
                arn: arn.to_owned(),
                nats_account: "GATEWAY".to_owned(),
                user: String::new(),
            },
            count: 250,
            window_start_unix_ms: 1_000,
            window_end_unix_ms: 6_000,
        };
        let r = suppressed_record("KL_USAGE_V1_202612", 7, 0, "b", &summary("keyledger:http-client:203.0.113.9"));
        assert_eq!((r.source_transport.as_str(), r.source_addr.as_str()), ("http", "203.0.113.9"));
        assert_eq!((r.error_name.as_str(), r.suppressed_count), ("", 250));
        let throttled =
            suppressed_record("KL_USAGE_V1_202612", 7, 0, "b", &summary("arn:aws:iam::111122223333:user/a"));
        assert_eq!(
            (throttled.source_transport.as_str(), throttled.error_name.as_str()),
            ("service", "ThrottlingException")
        );
    }

    #[test]
    fn arns_and_aliases_are_split_as_aws_spells_them() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(arn_account(arn), Some("111122223333"));
        assert_eq!(key_id_of_arn(arn), Some("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert_eq!(key_id_of_arn("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
        assert_eq!(alias_of("alias/app"), Some("alias/app"));
        assert_eq!(alias_of("arn:aws:kms:us-east-1:111122223333:alias/app"), Some("alias/app"));
        assert_eq!(alias_of(arn), None);
        assert_eq!(arn_account("arn:aws:iam::111122223333:user/dev"), Some("111122223333"));
    }

    #[test]
    fn times_parse_from_rfc3339_and_epoch_seconds() {
        assert_eq!(parse_time("1764410400").unwrap(), 1_764_410_400_000_000);
        assert_eq!(parse_time("1764410400.25").unwrap(), 1_764_410_400_250_000);
        assert_eq!(parse_time("2025-11-29T10:00:00Z").unwrap(), 1_764_410_400_000_000);
        assert_eq!(parse_time("2025-11-29T11:00:00+01:00").unwrap(), 1_764_410_400_000_000);
        for bad in ["", "yesterday", "1.2.3", "12345678901234", "2025-11-29", "1.1234567"] {
            assert!(parse_time(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(format_time_us(1_764_410_400_250_000), "2025-11-29T10:00:00.25Z");
    }

    #[test]
    fn only_control_and_usage_streams_have_a_rank() {
        assert_eq!(stream_rank("KL_CONTROL_V1"), Some(0));
        assert_eq!(stream_rank("KL_USAGE_V1_202611"), Some(202_611));
        assert_eq!(stream_rank("KL_USAGE_V1_2026"), None);
        assert_eq!(stream_rank("KL_MATERIAL_V1"), None);
    }
}
