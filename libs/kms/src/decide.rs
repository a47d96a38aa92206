//! decide: management commands and time-driven actions → at most one event.
//!
//! Pure: time, the fresh key id and freshly wrapped material come in through [`Ctx`]. The
//! shell (keyd) prepares material *before* deciding, only when [`material_needed`] says so
//! (CreateKey, RotateKeyOnDemand, an automatic rotation), then appends the returned event
//! with optimistic concurrency on `Decision::head`.
//!
//! Check order for an operation on a key (aws-kms-api.md §3.3, "precedence of checks"):
//! request validation (already done by `parse_request`) → resolution of the key reference
//! (`NotFoundException`, `InvalidArnException`) → access (`AccessDeniedException`) → key type
//! (`UnsupportedOperationException`) and key state (`DisabledException`,
//! `KMSInvalidStateException`) → quotas and semantic conflicts.
//!
//! Access: every operation on a key goes through [`authorize`] (its key policy, then its
//! grants). A key of another account is reachable only by ARN, only for the operations AWS
//! allows across accounts, and every failure there is the same `AccessDeniedException`.
//!
//! "Nothing to append" is `Ok(None)`: the idempotent cases (EnableKey on an Enabled key,
//! DisableKey on a Disabled key, DisableKeyRotation when off, EnableKeyRotation with the
//! current period, UpdateKeyDescription with the same text, TagResource that changes nothing,
//! UntagResource of absent keys, UpdateAlias to the current target) and time-driven actions
//! that are not (or no longer) due.

use keyledger_events::{
    codes, AggregateKind, AliasCreatedV1, AliasDeletedV1, AliasUpdatedV1, Body, Draft, ImportParametersIssuedV1,
    KeyDeletedV1, KeyDeletionCancelledV1, KeyDeletionScheduledV1, KeyDescriptionUpdatedV1, KeyDisabledV1, KeyEnabledV1,
    KeyMaterialDeletedV1, KeyMaterialImportedV1, KeyMaterialRotatedV1, KeyRotationDisabledV1, KeyRotationEnabledV1,
    KeyTagsAddedV1, KeyTagsRemovedV1, MaterialRefV1, PrincipalV1, TagV1, MAX_BODY_BYTES,
};
use keyledger_events::{GrantCreatedV1, GrantRetiredV1, GrantRevokedV1, KeyCreatedV2, KeyPolicyPutV1};

use crate::access::{access_denied, authorize, Access, Authorization, Grant};
use crate::api::{
    GetParametersForImportRequest, ImportKeyMaterialRequest, ImportType, KeySpec, Operation, Origin, Request,
    WrappingAlgorithm, WrappingKeySpec,
};
use crate::error::{ErrorKind, KmsError};
use crate::ids::{parse_key_ref, KeyId, KeyRef, Realm};
use crate::policy::{lockout_check, KeyPolicy, RequestContext};
use crate::query::resolve_key;
use crate::state::{days_ms, AggregateHead, AutoRotation, DueKind, Key, KeyState, Projection, DAY_MS};

/// Who is asking: the authenticated account and principal (never a claimed one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's account (12 digits); bare key ids and alias names resolve in it.
    pub account: String,
    /// The principal recorded on events and named in AccessDenied messages.
    pub principal: PrincipalV1,
}

/// What the shell supplies to a decision: the clock, a fresh key id, fresh material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    /// Writer clock, ms since the epoch.
    pub now_unix_ms: u64,
    /// The id CreateKey gives the new key (a fresh UUID v4; ignored by other commands).
    pub new_key_id: KeyId,
    /// Freshly generated, wrapped and stored material, for the commands [`material_needed`]
    /// names; its version must be the one `material_needed` asked for.
    pub new_material: Option<MaterialRefV1>,
    /// GetParametersForImport: the wrapping key pair the shell generated and stored (checked
    /// first with [`import_parameters_target`]).
    pub import_parameters: Option<ImportParametersIssuedV1>,
    /// ImportKeyMaterial: the material the shell unwrapped with the token's wrapping key,
    /// re-wrapped under the root key and stored (see [`import_target`]).
    pub imported: Option<ImportedMaterial>,
    /// CreateGrant: a fresh grant id (32 random bytes from the OS CSPRNG).
    pub new_grant_id: [u8; 32],
    /// RetireGrant by `GrantToken`: what the token says, after the shell checked its tag.
    pub retire_token: Option<TokenGrant>,
}

/// The grant a verified grant token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The key's account.
    pub account: String,
    /// The key.
    pub key_id: KeyId,
    /// The grant id.
    pub grant_id: [u8; 32],
}

impl Ctx {
    /// A context with only the clock and a fresh key id (nothing prepared).
    pub fn new(now_unix_ms: u64, new_key_id: KeyId) -> Self {
        Self {
            now_unix_ms,
            new_key_id,
            new_material: None,
            import_parameters: None,
            imported: None,
            new_grant_id: [0; 32],
            retire_token: None,
        }
    }
}

/// Material that ImportKeyMaterial brought, as the shell prepared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedMaterial {
    /// The commitment to the unwrapped material, stored root-wrapped (version 1).
    pub material: MaterialRefV1,
    /// The id of the import token that carried it (authenticated by the shell).
    pub token_id: [u8; 16],
}

/// How long import parameters stay valid: 24 hours (AWS API reference
/// GetParametersForImport, `ParametersValidTo`).
pub const IMPORT_PARAMETERS_VALIDITY_MS: u64 = 24 * 60 * 60 * 1000;

/// Latest `ValidTo` ImportKeyMaterial accepts: 365 days ahead (AWS API reference
/// ImportKeyMaterial).
pub const MAX_IMPORT_VALIDITY_MS: u64 = 365 * DAY_MS;

/// Resource quotas (aws-kms-api.md §12.1). Configurable (`[limits]` of `keyledger serve`; a
/// member left out keeps its default); defaults are AWS's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Live keys (any state) per account: CreateKey beyond it → LimitExceededException.
    pub max_keys_per_account: usize,
    /// Aliases per key: CreateAlias/UpdateAlias beyond it → LimitExceededException.
    pub max_aliases_per_key: usize,
    /// Tags per key: TagResource/CreateKey beyond it → TagException "Too many tags".
    pub max_tags_per_key: usize,
    /// On-demand rotations per key: RotateKeyOnDemand beyond it → LimitExceededException.
    pub max_on_demand_rotations: u32,
    /// Grants per key: CreateGrant beyond it → LimitExceededException (AWS: 50,000).
    #[serde(default = "default_max_grants_per_key")]
    pub max_grants_per_key: usize,
    /// Aliases per account: CreateAlias beyond it → LimitExceededException (Keyledger's own
    /// quota; AWS now counts aliases per key only).
    #[serde(default = "default_max_aliases_per_account")]
    pub max_aliases_per_account: usize,
}

fn default_max_grants_per_key() -> usize {
    50_000
}

fn default_max_aliases_per_account() -> usize {
    100_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_keys_per_account: 100_000,
            max_aliases_per_key: 50,
            max_tags_per_key: 50,
            max_on_demand_rotations: 25,
            max_grants_per_key: default_max_grants_per_key(),
            max_aliases_per_account: default_max_aliases_per_account(),
        }
    }
}

/// RotateKeyOnDemand is refused (ConflictException) when an automatic rotation is due within
/// this many milliseconds (20 minutes, AWS API reference RotateKeyOnDemand).
pub const ON_DEMAND_CONFLICT_WINDOW_MS: u64 = 20 * 60 * 1000;

/// Something to decide: a management request, or a time-driven action found by
/// [`due_actions`].
#[derive(Debug)]
pub enum Command {
    /// A parsed management request (a read or crypto request is KMSInternalException here).
    Request(Request),
    /// The automatic rotation of a key came due.
    RotationDue {
        /// Owning account.
        account: String,
        /// The key.
        key_id: KeyId,
        /// The due time found (ms since the epoch).
        due_unix_ms: u64,
    },
    /// The `ValidTo` of a key's imported material passed.
    MaterialExpiryDue {
        /// Owning account.
        account: String,
        /// The key.
        key_id: KeyId,
        /// The `ValidTo` found (ms since the epoch).
        due_unix_ms: u64,
    },
    /// The deletion window of a key ended.
    DeletionDue {
        /// Owning account.
        account: String,
        /// The key.
        key_id: KeyId,
        /// The DeletionDate found (ms since the epoch).
        due_unix_ms: u64,
    },
}

/// Exactly one event to append to one aggregate, and where its chain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Aggregate kind (Key or Alias).
    pub aggregate_kind: AggregateKind,
    /// Owning account.
    pub account: String,
    /// Key id text or alias name.
    pub aggregate_id: String,
    /// The head the event extends: `aggregate_seq` = `head.next_aggregate_seq`, `prev_hash` =
    /// `head.last_hash`, expected last subject sequence = `head.last_stream_seq`.
    pub head: AggregateHead,
    /// The event body.
    pub body: Body,
}

impl Decision {
    /// The draft to encode with `keyledger_events::encode`.
    pub fn draft(&self, event_id: [u8; 16], time_unix_ms: u64, principal: PrincipalV1, request_id: [u8; 16]) -> Draft {
        Draft {
            event_id,
            account: self.account.clone(),
            aggregate_kind: self.aggregate_kind,
            aggregate_id: self.aggregate_id.clone(),
            aggregate_seq: self.head.next_aggregate_seq,
            time_unix_ms,
            principal,
            request_id,
            prev_hash: self.head.last_hash,
        }
    }
}

/// Fresh material a command needs before it can be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterialNeed {
    /// Account of the key.
    pub account: String,
    /// The key (for CreateKey: `new_key_id`).
    pub key_id: KeyId,
    /// The version the new material must carry.
    pub version: u32,
}

/// Whether deciding `command` now needs fresh material, and for which key and version:
/// CreateKey (version 1 of `new_key_id` in the caller's account), RotateKeyOnDemand of a key
/// that would pass its checks, and a due automatic rotation. `None` otherwise — including when
/// the command will fail anyway (the error then comes from [`decide`]).
pub fn material_needed(
    p: &Projection,
    realm: &Realm,
    caller: &Caller,
    command: &Command,
    new_key_id: &KeyId,
    now_unix_ms: u64,
) -> Result<Option<MaterialNeed>, KmsError> {
    Ok(match command {
        Command::Request(Request::CreateKey(r)) if r.origin != Origin::External => {
            Some(MaterialNeed { account: caller.account.clone(), key_id: *new_key_id, version: 1 })
        }
        Command::Request(Request::RotateKeyOnDemand(r)) => {
            match resolve_managed(p, realm, caller, &r.key_id, Operation::RotateKeyOnDemand, now_unix_ms) {
                Ok(key) => Some(MaterialNeed {
                    account: key.account.clone(),
                    key_id: key.id,
                    version: key.next_material_version(),
                }),
                Err(_) => None,
            }
        }
        Command::RotationDue { account, key_id, .. } => p.key(account, key_id).map(|key| MaterialNeed {
            account: account.clone(),
            key_id: *key_id,
            version: key.next_material_version(),
        }),
        _ => None,
    })
}

/// Decides `command` against the projection. `Ok(None)` means nothing to append (see the
/// module docs); `Ok(Some(d))` is the one event to append; `Err` is the AWS error to return.
pub fn decide(
    p: &Projection,
    realm: &Realm,
    caller: &Caller,
    command: &Command,
    ctx: &Ctx,
    limits: &Limits,
) -> Result<Option<Decision>, KmsError> {
    let decision = match command {
        Command::Request(request) => decide_request(p, realm, caller, request, ctx, limits)?,
        Command::RotationDue { account, key_id, due_unix_ms } => rotation_due(p, account, key_id, *due_unix_ms, ctx)?,
        Command::DeletionDue { account, key_id, due_unix_ms } => deletion_due(p, account, key_id, *due_unix_ms, ctx),
        Command::MaterialExpiryDue { account, key_id, due_unix_ms } => {
            material_expiry_due(p, account, key_id, *due_unix_ms, ctx)
        }
    };
    if let Some(d) = &decision {
        let size = d.body.encode().map_err(|_| KmsError::internal("The change could not be encoded."))?.len();
        if size > MAX_BODY_BYTES {
            return Err(KmsError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "The request is too large to record: its event would be {size} bytes (at most {MAX_BODY_BYTES})."
                ),
            ));
        }
    }
    Ok(decision)
}

/// Time-driven actions due at `now_unix_ms` (earliest first, at most `max`): rotations of
/// Enabled keys whose next rotation is due, and deletions of PendingDeletion keys whose
/// DeletionDate has passed. A deletion whose event was ignored (server clock behind) is listed
/// again until it takes effect.
pub fn due_actions(p: &Projection, now_unix_ms: u64, max: usize) -> Vec<Command> {
    p.due_before(now_unix_ms, max)
        .map(|(due, kind, account, key_id)| match kind {
            DueKind::Rotation => Command::RotationDue { account: account.clone(), key_id: *key_id, due_unix_ms: *due },
            DueKind::Deletion => Command::DeletionDue { account: account.clone(), key_id: *key_id, due_unix_ms: *due },
            DueKind::MaterialExpiry => {
                Command::MaterialExpiryDue { account: account.clone(), key_id: *key_id, due_unix_ms: *due }
            }
        })
        .collect()
}

fn key_decision(p: &Projection, key: &Key, body: Body) -> Option<Decision> {
    let id = key.id.to_string();
    Some(Decision {
        aggregate_kind: AggregateKind::Key,
        account: key.account.clone(),
        head: p.head(AggregateKind::Key, &key.account, &id),
        aggregate_id: id,
        body,
    })
}

fn alias_decision(p: &Projection, account: &str, alias_name: &str, body: Body) -> Option<Decision> {
    Some(Decision {
        aggregate_kind: AggregateKind::Alias,
        account: account.to_owned(),
        aggregate_id: alias_name.to_owned(),
        head: p.head(AggregateKind::Alias, account, alias_name),
        body,
    })
}

/// Resolves a key id / key ARN for a management operation and authorizes the caller
/// ([`authorize`]): NotFound, then AccessDenied.
pub(crate) fn resolve_managed<'p>(
    p: &'p Projection,
    realm: &Realm,
    caller: &Caller,
    key_id: &str,
    op: Operation,
    now_unix_ms: u64,
) -> Result<&'p Key, KmsError> {
    let (key, _) = resolve_key(p, realm, key_id, false, &Access::new(caller, op.name(), now_unix_ms), op)?;
    Ok(key)
}

/// Operations AWS lets a principal of another account perform on a key named by its ARN, when
/// the key policy or a grant allows it (aws-kms-api.md §2, "X-acct").
pub fn cross_account_operation(op: Operation) -> bool {
    use Operation::*;
    matches!(
        op,
        Encrypt
            | Decrypt
            | ReEncrypt
            | GenerateDataKey
            | GenerateDataKeyWithoutPlaintext
            | DescribeKey
            | GetKeyRotationStatus
            | CreateGrant
            | ListGrants
            | RetireGrant
            | RevokeGrant
    )
}

/// The live key `account`/`key_id`, if `access` may use it for `op`.
///
/// In the caller's own account an unknown key is `NotFoundException`. In another account
/// (addressed by ARN) every failure — no such key, an operation that is never cross-account,
/// a policy that does not allow it — is the same `AccessDeniedException`, so a caller learns
/// nothing about keys it may not use.
pub(crate) fn found_and_authorized<'p>(
    p: &'p Projection,
    realm: &Realm,
    account: &str,
    key_id: &KeyId,
    access: &Access<'_>,
    op: Operation,
) -> Result<(&'p Key, Authorization), KmsError> {
    let arn = realm.key_arn(account, key_id);
    if account != access.caller.account {
        let key = p.key(account, key_id).filter(|_| cross_account_operation(op));
        let Some(key) = key else { return Err(access_denied(access.caller, access.action, &arn, None)) };
        let auth = authorize(realm, key, access)?;
        return Ok((key, auth));
    }
    let key = p.key(account, key_id).ok_or_else(|| KmsError::key_not_found(&arn))?;
    let auth = authorize(realm, key, access)?;
    Ok((key, auth))
}

/// The matrix rule "PD" for operations that work in every state but PendingDeletion.
fn not_pending_deletion(realm: &Realm, key: &Key) -> Result<(), KmsError> {
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::pending_deletion(&key.arn(realm)));
    }
    Ok(())
}

/// The state error of the crypto row of the matrix (D / PD / PI / UA).
pub(crate) fn usable_state(realm: &Realm, key: &Key) -> Result<(), KmsError> {
    match key.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::disabled(&key.arn(realm))),
        KeyState::PendingDeletion => Err(KmsError::pending_deletion(&key.arn(realm))),
        KeyState::PendingImport => Err(KmsError::pending_import(&key.arn(realm))),
        KeyState::Unavailable => Err(KmsError::unavailable(&key.arn(realm))),
    }
}

/// Automatic rotation is for symmetric AWS_KMS keys only (UnsupportedOperationException).
fn rotatable_type(realm: &Realm, key: &Key) -> Result<(), KmsError> {
    if key.origin != Origin::AwsKms {
        return Err(KmsError::origin_not_valid(&key.arn(realm), key.origin.as_str()));
    }
    if key.key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::unsupported(format!(
            "{} key spec is {} which is not valid for this operation.",
            key.arn(realm),
            key.key_spec
        )));
    }
    Ok(())
}

/// TagException rules (aws-kms-api.md §2.9) for tags added to `existing`.
fn check_new_tags(existing: &[TagV1], tags: &[TagV1], limits: &Limits) -> Result<(), KmsError> {
    for (i, t) in tags.iter().enumerate() {
        if tags[..i].iter().any(|u| u.key == t.key) {
            return Err(KmsError::duplicate_tag_keys());
        }
    }
    if tags.iter().any(|t| t.key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))) {
        return Err(KmsError::reserved_tag());
    }
    let added = tags.iter().filter(|t| !existing.iter().any(|e| e.key == t.key)).count();
    if existing.len() + added > limits.max_tags_per_key {
        return Err(KmsError::too_many_tags());
    }
    Ok(())
}

fn fresh_material(ctx: &Ctx, expected_version: u32) -> Result<MaterialRefV1, KmsError> {
    match &ctx.new_material {
        Some(m) if m.version == expected_version => Ok(m.clone()),
        Some(m) => Err(KmsError::internal(format!(
            "Prepared key material has version {}, expected {expected_version}; retry the request.",
            m.version
        ))),
        None => Err(KmsError::internal("No key material was prepared for this change; retry the request.")),
    }
}

fn decide_request(
    p: &Projection,
    realm: &Realm,
    caller: &Caller,
    request: &Request,
    ctx: &Ctx,
    limits: &Limits,
) -> Result<Option<Decision>, KmsError> {
    let op = request.operation();
    match request {
        Request::CreateKey(r) => {
            let (Some(key_spec), Some(key_usage), Some(origin)) =
                (r.key_spec.code(), r.key_usage.code(), r.origin.code())
            else {
                return Err(KmsError::unsupported(format!("KeySpec {} is not supported yet.", r.key_spec)));
            };
            if !matches!(r.origin, Origin::AwsKms | Origin::External) {
                return Err(KmsError::unsupported(format!("Origin {} is not supported yet.", r.origin)));
            }
            check_new_tags(&[], &r.tags, limits)?;
            if let Some(text) = &r.policy {
                let policy = KeyPolicy::parse(text)?;
                crate::access::check_enforceable(&policy)?;
                let arn = realm.key_arn(&caller.account, &ctx.new_key_id);
                let mut request = RequestContext::for_caller(caller, "CreateKey", &arn, ctx.now_unix_ms);
                request.bypass_policy_lockout_safety_check = Some(r.bypass_policy_lockout_safety_check);
                lockout_check(&policy, &request, r.bypass_policy_lockout_safety_check)?;
            }
            if p.live_key_count(&caller.account) >= limits.max_keys_per_account {
                return Err(KmsError::new(
                    ErrorKind::LimitExceeded,
                    format!(
                        "The request was rejected because account {} already has the maximum number of KMS keys ({}).",
                        caller.account, limits.max_keys_per_account
                    ),
                ));
            }
            let id = ctx.new_key_id.to_string();
            let head = p.head(AggregateKind::Key, &caller.account, &id);
            if head.next_aggregate_seq != 0 || p.key_in_any_account(&ctx.new_key_id).is_some() {
                return Err(KmsError::internal("The generated key id is already in use; retry the request."));
            }
            // EXTERNAL keys start without material, in PendingImport.
            let material = if r.origin == Origin::External { None } else { Some(fresh_material(ctx, 1)?) };
            Ok(Some(Decision {
                aggregate_kind: AggregateKind::Key,
                account: caller.account.clone(),
                aggregate_id: id,
                head,
                body: Body::KeyCreatedV2(KeyCreatedV2 {
                    key_spec,
                    key_usage,
                    origin,
                    description: r.description.clone(),
                    tags: r.tags.clone(),
                    multi_region: false,
                    material,
                    policy: r.policy.clone(),
                    bypass_policy_lockout_safety_check: r.bypass_policy_lockout_safety_check,
                }),
            }))
        }
        Request::UpdateKeyDescription(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            not_pending_deletion(realm, key)?;
            if key.description == r.description {
                return Ok(None);
            }
            Ok(key_decision(
                p,
                key,
                Body::KeyDescriptionUpdated(KeyDescriptionUpdatedV1 { description: r.description.clone() }),
            ))
        }
        Request::EnableKey(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            match key.state {
                KeyState::Enabled | KeyState::Unavailable => Ok(None),
                KeyState::PendingDeletion => Err(KmsError::pending_deletion(&key.arn(realm))),
                KeyState::PendingImport => Err(KmsError::pending_import(&key.arn(realm))),
                KeyState::Disabled => {
                    let catch_up = match key.rotation {
                        AutoRotation::On { next_rotation_unix_ms, .. } if next_rotation_unix_ms <= ctx.now_unix_ms => {
                            Some(ctx.now_unix_ms)
                        }
                        _ => None,
                    };
                    Ok(key_decision(p, key, Body::KeyEnabled(KeyEnabledV1 { rotation_catch_up_due_unix_ms: catch_up })))
                }
            }
        }
        Request::DisableKey(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            match key.state {
                KeyState::Disabled | KeyState::Unavailable => Ok(None),
                KeyState::PendingDeletion => Err(KmsError::pending_deletion(&key.arn(realm))),
                KeyState::PendingImport => Err(KmsError::pending_import(&key.arn(realm))),
                KeyState::Enabled => Ok(key_decision(p, key, Body::KeyDisabled(KeyDisabledV1 {}))),
            }
        }
        Request::ScheduleKeyDeletion(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            not_pending_deletion(realm, key)?;
            let window = r.pending_window_in_days;
            Ok(key_decision(
                p,
                key,
                Body::KeyDeletionScheduled(KeyDeletionScheduledV1 {
                    pending_window_days: window,
                    deletion_unix_ms: ctx.now_unix_ms + days_ms(window),
                }),
            ))
        }
        Request::CancelKeyDeletion(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            if key.state != KeyState::PendingDeletion {
                return Err(KmsError::not_pending_deletion(&key.arn(realm)));
            }
            Ok(key_decision(p, key, Body::KeyDeletionCancelled(KeyDeletionCancelledV1 {})))
        }
        Request::EnableKeyRotation(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            rotatable_type(realm, key)?;
            usable_state(realm, key)?;
            let period = r.rotation_period_in_days;
            let next = match key.rotation {
                AutoRotation::On { period_days, .. } if period_days == period => return Ok(None),
                // A new period keeps the schedule's anchor (the last automatic rotation, or
                // when rotation was enabled): next = anchor + new period, at once if passed.
                AutoRotation::On { period_days, next_rotation_unix_ms } => {
                    let anchor = next_rotation_unix_ms.saturating_sub(days_ms(period_days));
                    (anchor + days_ms(period)).max(ctx.now_unix_ms)
                }
                // First rotation one period after enabling.
                AutoRotation::Off => ctx.now_unix_ms + days_ms(period),
            };
            Ok(key_decision(
                p,
                key,
                Body::KeyRotationEnabled(KeyRotationEnabledV1 {
                    rotation_period_days: period,
                    next_rotation_unix_ms: next,
                }),
            ))
        }
        Request::DisableKeyRotation(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            rotatable_type(realm, key)?;
            usable_state(realm, key)?;
            if key.rotation == AutoRotation::Off {
                return Ok(None);
            }
            Ok(key_decision(p, key, Body::KeyRotationDisabled(KeyRotationDisabledV1 {})))
        }
        Request::RotateKeyOnDemand(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            usable_state(realm, key)?;
            rotatable_type(realm, key)?;
            if key.on_demand_rotations >= limits.max_on_demand_rotations {
                return Err(KmsError::on_demand_rotation_limit(&key.arn(realm)));
            }
            if let AutoRotation::On { next_rotation_unix_ms, .. } = key.rotation {
                if next_rotation_unix_ms <= ctx.now_unix_ms + ON_DEMAND_CONFLICT_WINDOW_MS {
                    return Err(KmsError::new(
                        ErrorKind::Conflict,
                        format!(
                            "{} has an automatic rotation in progress or due within 20 minutes; retry after it completes.",
                            key.arn(realm)
                        ),
                    ));
                }
            }
            let material = fresh_material(ctx, key.next_material_version())?;
            Ok(key_decision(
                p,
                key,
                Body::KeyMaterialRotated(KeyMaterialRotatedV1 {
                    rotation_type: codes::rotation_type::ON_DEMAND,
                    material,
                    due_unix_ms: None,
                    next_rotation_unix_ms: None,
                }),
            ))
        }
        Request::GetParametersForImport(r) => {
            let key = import_parameters_target(p, realm, caller, r, ctx.now_unix_ms)?;
            let Some(params) = &ctx.import_parameters else {
                return Err(KmsError::internal("No wrapping key was prepared for this request; retry the request."));
            };
            if Some(params.wrapping_key_spec) != r.wrapping_key_spec.code()
                || Some(params.wrapping_algorithm) != r.wrapping_algorithm.code()
            {
                return Err(KmsError::internal("The prepared wrapping key does not match the request; retry."));
            }
            Ok(key_decision(p, key, Body::ImportParametersIssued(params.clone())))
        }
        Request::ImportKeyMaterial(r) => {
            check_valid_to(r, ctx.now_unix_ms)?;
            let key = import_target(p, realm, caller, r, ctx.now_unix_ms)?;
            let Some(imported) = &ctx.imported else {
                return Err(KmsError::internal(
                    "The key material was not prepared for this request; retry the request.",
                ));
            };
            let params = key.import().parameters(&imported.token_id).ok_or_else(KmsError::invalid_import_token)?;
            if params.valid_to_unix_ms <= ctx.now_unix_ms {
                return Err(KmsError::expired_import_token());
            }
            check_bound_material(realm, key, &imported.material.material_id)?;
            Ok(key_decision(
                p,
                key,
                Body::KeyMaterialImported(KeyMaterialImportedV1 {
                    material: imported.material.clone(),
                    description: r.key_material_description.clone(),
                    token_id: imported.token_id,
                    expiration_model: r.expiration_model.code(),
                    valid_to_unix_ms: r.valid_to_unix_ms,
                }),
            ))
        }
        Request::DeleteImportedKeyMaterial(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            if key.origin != Origin::External {
                return Err(KmsError::origin_not_valid(&key.arn(realm), key.origin.as_str()));
            }
            let Some(current) = key.current_material() else {
                // PendingImport: nothing to delete (AWS: "no effect").
                return match &r.key_material_id {
                    Some(id) => Err(material_id_not_found(realm, key, id)),
                    None => Ok(None),
                };
            };
            if let Some(id) = &r.key_material_id {
                if *id != hex::encode(current.material_id) {
                    return Err(material_id_not_found(realm, key, id));
                }
            }
            Ok(key_decision(
                p,
                key,
                Body::KeyMaterialDeleted(KeyMaterialDeletedV1 {
                    material: current.clone(),
                    reason: codes::material_deletion::ON_REQUEST,
                    due_unix_ms: None,
                }),
            ))
        }
        Request::TagResource(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            not_pending_deletion(realm, key)?;
            check_new_tags(&key.tags, &r.tags, limits)?;
            let changes = r.tags.iter().any(|t| !key.tags.contains(t));
            if !changes {
                return Ok(None);
            }
            Ok(key_decision(p, key, Body::KeyTagsAdded(KeyTagsAddedV1 { tags: r.tags.clone() })))
        }
        Request::UntagResource(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            not_pending_deletion(realm, key)?;
            let mut removed: Vec<String> = Vec::new();
            for k in &r.tag_keys {
                if key.tags.iter().any(|t| &t.key == k) && !removed.contains(k) {
                    removed.push(k.clone());
                }
            }
            if removed.is_empty() {
                return Ok(None);
            }
            Ok(key_decision(p, key, Body::KeyTagsRemoved(KeyTagsRemovedV1 { tag_keys: removed })))
        }
        Request::CreateAlias(r) => {
            crate::api::check_alias_name(&r.alias_name)?;
            let key = resolve_managed(p, realm, caller, &r.target_key_id, op, ctx.now_unix_ms)?;
            if p.alias(&caller.account, &r.alias_name).is_some() {
                return Err(KmsError::alias_already_exists(&realm.alias_arn(&caller.account, &r.alias_name)));
            }
            not_pending_deletion(realm, key)?;
            check_alias_quota(realm, key, limits)?;
            if p.alias_count(&caller.account) >= limits.max_aliases_per_account {
                return Err(KmsError::new(
                    ErrorKind::LimitExceeded,
                    format!(
                        "The request was rejected because account {} already has the maximum number of aliases ({}).",
                        caller.account, limits.max_aliases_per_account
                    ),
                ));
            }
            Ok(alias_decision(
                p,
                &caller.account,
                &r.alias_name,
                Body::AliasCreated(AliasCreatedV1 { target_key_id: *key.id.as_bytes() }),
            ))
        }
        Request::UpdateAlias(r) => {
            crate::api::check_alias_name(&r.alias_name)?;
            let key = resolve_managed(p, realm, caller, &r.target_key_id, op, ctx.now_unix_ms)?;
            let alias = p
                .alias(&caller.account, &r.alias_name)
                .ok_or_else(|| KmsError::alias_not_found(&realm.alias_arn(&caller.account, &r.alias_name)))?;
            not_pending_deletion(realm, key)?;
            if alias.target == key.id {
                return Ok(None);
            }
            if let Some(old) = p.key(&caller.account, &alias.target) {
                authorize(realm, old, &Access::new(caller, op.name(), ctx.now_unix_ms))?;
                if old.key_spec != key.key_spec || old.key_usage != key.key_usage {
                    return Err(KmsError::validation(format!(
                        "{} cannot be the new target of {}: it must have the same key spec and key usage as the current target.",
                        key.arn(realm),
                        r.alias_name
                    )));
                }
            }
            check_alias_quota(realm, key, limits)?;
            Ok(alias_decision(
                p,
                &caller.account,
                &r.alias_name,
                Body::AliasUpdated(AliasUpdatedV1 {
                    target_key_id: *key.id.as_bytes(),
                    previous_target_key_id: *alias.target.as_bytes(),
                }),
            ))
        }
        Request::DeleteAlias(r) => {
            crate::api::check_alias_name(&r.alias_name)?;
            let alias = p
                .alias(&caller.account, &r.alias_name)
                .ok_or_else(|| KmsError::alias_not_found(&realm.alias_arn(&caller.account, &r.alias_name)))?;
            if let Some(target) = p.key(&caller.account, &alias.target) {
                authorize(realm, target, &Access::new(caller, op.name(), ctx.now_unix_ms))?;
            }
            Ok(alias_decision(
                p,
                &caller.account,
                &r.alias_name,
                Body::AliasDeleted(AliasDeletedV1 { target_key_id: *alias.target.as_bytes() }),
            ))
        }
        Request::PutKeyPolicy(r) => {
            // The current policy decides, seeing the request's bypass flag (a policy may deny
            // kms:PutKeyPolicy with kms:BypassPolicyLockoutSafetyCheck true).
            let mut access = Access::new(caller, op.name(), ctx.now_unix_ms);
            access.bypass_policy_lockout_safety_check = Some(r.bypass_policy_lockout_safety_check);
            let (key, _) = resolve_key(p, realm, &r.key_id, false, &access, op)?;
            let policy = KeyPolicy::parse(&r.policy)?;
            crate::access::check_enforceable(&policy)?;
            let request = access.request_context(&key.arn(realm));
            lockout_check(&policy, &request, r.bypass_policy_lockout_safety_check)?;
            if key.policy.custom_policy().is_some_and(|cur| cur.text() == r.policy) {
                return Ok(None);
            }
            Ok(key_decision(
                p,
                key,
                Body::KeyPolicyPut(KeyPolicyPutV1 {
                    policy_name: r.policy_name.clone(),
                    policy: r.policy.clone(),
                    bypass_policy_lockout_safety_check: r.bypass_policy_lockout_safety_check,
                }),
            ))
        }
        Request::CreateGrant(r) => create_grant(p, realm, caller, r, ctx, limits),
        Request::RetireGrant(r) => {
            let (account, key_id, grant_id, how) = match (&r.grant_token, &ctx.retire_token) {
                (Some(_), Some(t)) => (t.account.clone(), t.key_id, t.grant_id, codes::grant_end::RETIRED_BY_TOKEN),
                (Some(_), None) => {
                    return Err(KmsError::internal("The grant token was not checked; retry the request."))
                }
                (None, _) => {
                    let (Some(k), Some(g)) = (&r.key_id, &r.grant_id) else {
                        return Err(KmsError::validation(
                            "Either GrantToken, or both KeyId and GrantId, must be specified.",
                        ));
                    };
                    let KeyRef::Key { account, key_id } = parse_key_ref(k, realm, &caller.account, false)? else {
                        unreachable!("aliases are refused by parse_key_ref");
                    };
                    (account, key_id, crate::api::parse_grant_id(g)?, codes::grant_end::RETIRED_BY_ID)
                }
            };
            let arn = realm.key_arn(&account, &key_id);
            let key = p.key(&account, &key_id).ok_or_else(|| {
                if account == caller.account {
                    KmsError::key_not_found(&arn)
                } else {
                    access_denied(caller, op.name(), &arn, None)
                }
            })?;
            // RetireGrant is authorized by the grant itself, not by the key policy (AWS API
            // reference, RetireGrant). Another account learns nothing: a missing grant and a
            // grant it may not retire are the same AccessDenied.
            match key.grants.iter().find(|g| g.id == grant_id) {
                Some(g) if g.retirable_by(realm, caller) => {}
                None if account == caller.account => return Err(grant_not_found(&grant_id)),
                _ => return Err(access_denied(caller, op.name(), &arn, None)),
            }
            if r.dry_run {
                return Err(KmsError::dry_run());
            }
            Ok(key_decision(p, key, Body::GrantRetired(GrantRetiredV1 { grant_id, how })))
        }
        Request::RevokeGrant(r) => {
            let key = resolve_managed(p, realm, caller, &r.key_id, op, ctx.now_unix_ms)?;
            let grant_id = crate::api::parse_grant_id(&r.grant_id)?;
            if !key.grants.iter().any(|g| g.id == grant_id) {
                return Err(grant_not_found(&grant_id));
            }
            if r.dry_run {
                return Err(KmsError::dry_run());
            }
            Ok(key_decision(p, key, Body::GrantRevoked(GrantRevokedV1 { grant_id })))
        }
        other => Err(KmsError::internal(format!("{} is not a management operation.", other.operation().name()))),
    }
}

/// `NotFoundException` for a grant id the key does not have.
fn grant_not_found(grant_id: &[u8; 32]) -> KmsError {
    KmsError::new(ErrorKind::NotFound, format!("Grant ID {} not found.", hex::encode(grant_id)))
}

/// CreateGrant (AWS API reference; aws-kms-api.md §7): authorization by the key policy
/// (`kms:CreateGrant` with `kms:GrantOperations`, `kms:GranteePrincipal`,
/// `kms:RetiringPrincipal`, `kms:GrantConstraintType` as condition keys) or by a grant that
/// lists CreateGrant — then the new grant may not be looser than that grant; key state (D, PD,
/// PI); operations the key type supports; idempotency by `Name`; the grants-per-key quota.
fn create_grant(
    p: &Projection,
    realm: &Realm,
    caller: &Caller,
    r: &crate::api::CreateGrantRequest,
    ctx: &Ctx,
    limits: &Limits,
) -> Result<Option<Decision>, KmsError> {
    let access = Access::create_grant(
        caller,
        ctx.now_unix_ms,
        &r.operations,
        &r.grantee_principal,
        r.retiring_principal.as_deref(),
        r.constraint.as_ref(),
    );
    let (key, auth) = resolve_key(p, realm, &r.key_id, false, &access, Operation::CreateGrant)?;
    if let Authorization::Grant(parent_id) = &auth {
        let parent = key.grants.iter().find(|g| g.id == *parent_id).expect("the authorizing grant is on the key");
        check_chained_grant(caller, &key.arn(realm), parent, r)?;
    }
    usable_state(realm, key)?;
    if let Some(bad) = r.operations.iter().find(|o| !o.valid_for_symmetric_key()) {
        return Err(KmsError::validation(format!(
            "Grant operation {} is not supported by {} of key spec {}.",
            bad.name(),
            key.arn(realm),
            key.key_spec
        )));
    }
    let operations: Vec<u16> = r.operations.iter().map(|o| o.code()).collect();
    let constraint = r.constraint.as_ref().map(|c| c.to_event());
    if let Some(name) = &r.name {
        let same = same_named_grant(key, name, r);
        if same.is_some() {
            if r.dry_run {
                return Err(KmsError::dry_run());
            }
            // An idempotent retry: nothing to append; the reply names the existing grant
            // ([`same_named_grant`]) with a fresh token for it.
            return Ok(None);
        }
    }
    if key.grants.len() >= limits.max_grants_per_key {
        return Err(KmsError::new(
            ErrorKind::LimitExceeded,
            format!(
                "The request was rejected because {} already has the maximum number of grants ({}).",
                key.arn(realm),
                limits.max_grants_per_key
            ),
        ));
    }
    if r.dry_run {
        return Err(KmsError::dry_run());
    }
    if ctx.new_grant_id == [0; 32] || key.grants.iter().any(|g| g.id == ctx.new_grant_id) {
        return Err(KmsError::internal("No fresh grant id was prepared for this request; retry the request."));
    }
    Ok(key_decision(
        p,
        key,
        Body::GrantCreated(GrantCreatedV1 {
            grant_id: ctx.new_grant_id,
            name: r.name.clone().unwrap_or_default(),
            grantee_principal: r.grantee_principal.clone(),
            retiring_principal: r.retiring_principal.clone().unwrap_or_default(),
            operations,
            constraint,
            issuing_account: caller.account.clone(),
        }),
    ))
}

/// The grant an idempotent CreateGrant retry names: same `Name` and the same grantee,
/// retiring principal, operations and constraint (AWS API reference, CreateGrant `Name`).
pub(crate) fn same_named_grant<'k>(key: &'k Key, name: &str, r: &crate::api::CreateGrantRequest) -> Option<&'k Grant> {
    key.grants.iter().find(|g| {
        g.name == name
            && g.grantee == r.grantee_principal
            && g.retiring == r.retiring_principal.clone().unwrap_or_default()
            && g.operations == r.operations
            && g.constraint == r.constraint
    })
}

/// Grant chaining (aws-kms-api.md §7): a grant created with permission from a grant may list
/// only operations of that grant, and must be at least as constrained.
fn check_chained_grant(
    caller: &Caller,
    key_arn: &str,
    parent: &Grant,
    r: &crate::api::CreateGrantRequest,
) -> Result<(), KmsError> {
    let ops_ok = r.operations.iter().all(|o| parent.operations.contains(o));
    let constraint_ok = match (&parent.constraint, &r.constraint) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(pc), Some(c)) => c.at_least_as_strict_as(pc),
    };
    if ops_ok && constraint_ok {
        Ok(())
    } else {
        Err(access_denied(caller, "CreateGrant", key_arn, None)
            .decided_by(format!("grant:{} (the new grant would be looser than it)", parent.id_hex())))
    }
}

fn material_id_not_found(realm: &Realm, key: &Key, id: &str) -> KmsError {
    KmsError::new(
        ErrorKind::NotFound,
        format!("Key material {} is not associated with KMS key {}.", crate::error::shorten(id), key.arn(realm)),
    )
}

/// GetParametersForImport's checks, everything but the wrapping key (which the shell generates
/// only when these pass): the key resolves and may be managed by the caller, its origin is
/// EXTERNAL (else `UnsupportedOperationException: <arn> origin is AWS_KMS which is not valid
/// for this operation.`), it is not pending deletion (`KMSInvalidStateException`), and the
/// algorithm and spec are ones this service offers (RSAES_PKCS1_V1_5, SM2PKE and SM2 →
/// `UnsupportedOperationException`).
pub fn import_parameters_target<'p>(
    p: &'p Projection,
    realm: &Realm,
    caller: &Caller,
    r: &GetParametersForImportRequest,
    now_unix_ms: u64,
) -> Result<&'p Key, KmsError> {
    let key = resolve_managed(p, realm, caller, &r.key_id, Operation::GetParametersForImport, now_unix_ms)?;
    if key.origin != Origin::External {
        return Err(KmsError::origin_not_valid(&key.arn(realm), key.origin.as_str()));
    }
    not_pending_deletion(realm, key)?;
    match r.wrapping_algorithm {
        WrappingAlgorithm::RsaesPkcs1V15 => {
            return Err(KmsError::unsupported(
                "RSAES_PKCS1_V1_5 is no longer accepted for importing key material; use RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256.",
            ))
        }
        WrappingAlgorithm::Sm2pke => {
            return Err(KmsError::unsupported("SM2PKE is only available in the AWS China Regions."))
        }
        _ => {}
    }
    if r.wrapping_key_spec == WrappingKeySpec::Sm2 {
        return Err(KmsError::unsupported("SM2 wrapping keys are only available in the AWS China Regions."));
    }
    Ok(key)
}

/// `ValidTo` must be in the future and at most 365 days ahead (AWS API reference
/// ImportKeyMaterial) → `ValidationException`.
fn check_valid_to(r: &ImportKeyMaterialRequest, now_unix_ms: u64) -> Result<(), KmsError> {
    if let Some(t) = r.valid_to_unix_ms {
        if t <= now_unix_ms {
            return Err(KmsError::validation("ValidTo must be in the future."));
        }
        if t > now_unix_ms + MAX_IMPORT_VALIDITY_MS {
            return Err(KmsError::validation("ValidTo must be at most 365 days in the future."));
        }
    }
    Ok(())
}

fn check_bound_material(realm: &Realm, key: &Key, material_id: &[u8; 32]) -> Result<(), KmsError> {
    match key.import().bound_material_id {
        Some(bound) if bound != *material_id => Err(KmsError::new(
            ErrorKind::IncorrectKeyMaterial,
            format!(
                "The key material does not match the key material previously imported into {}: a KMS key is permanently associated with its key material.",
                key.arn(realm)
            ),
        )),
        _ => Ok(()),
    }
}

/// ImportKeyMaterial's checks that need no cryptography, in AWS's order after validation:
/// `ValidTo` in the future and within 365 days (`ValidationException`); the key resolves and
/// may be managed (`NotFoundException`, `AccessDeniedException`); origin EXTERNAL
/// (`UnsupportedOperationException`); not pending deletion (`KMSInvalidStateException`);
/// `ImportType` NEW_KEY_MATERIAL on a key that already has material (a rotation with imported
/// material, not offered: `UnsupportedOperationException`) and EXISTING_KEY_MATERIAL or a
/// `KeyMaterialId` on a key that never had any (`ValidationException`); a `KeyMaterialId`
/// other than the bound one (`IncorrectKeyMaterialException`). The shell then checks the
/// token (against `key.import().parameters` and `now_unix_ms`), unwraps, and calls [`decide`],
/// which repeats these checks and compares the material with the bound one.
pub fn import_target<'p>(
    p: &'p Projection,
    realm: &Realm,
    caller: &Caller,
    r: &ImportKeyMaterialRequest,
    now_unix_ms: u64,
) -> Result<&'p Key, KmsError> {
    check_valid_to(r, now_unix_ms)?;
    let key = resolve_managed(p, realm, caller, &r.key_id, Operation::ImportKeyMaterial, now_unix_ms)?;
    if key.origin != Origin::External {
        return Err(KmsError::origin_not_valid(&key.arn(realm), key.origin.as_str()));
    }
    not_pending_deletion(realm, key)?;
    match (r.import_type, key.import().bound_material_id) {
        (Some(ImportType::NewKeyMaterial), Some(_)) => {
            return Err(KmsError::unsupported(format!(
                "{} already has key material: importing new key material for on-demand rotation is not supported.",
                key.arn(realm)
            )))
        }
        (Some(ImportType::ExistingKeyMaterial), None) => {
            return Err(KmsError::validation(format!(
                "ImportType EXISTING_KEY_MATERIAL needs key material previously imported into {}.",
                key.arn(realm)
            )))
        }
        _ => {}
    }
    if let Some(id) = &r.key_material_id {
        match key.import().bound_material_id {
            None => {
                return Err(KmsError::validation(format!(
                    "KeyMaterialId must not be set: no key material was imported into {} yet.",
                    key.arn(realm)
                )))
            }
            Some(bound) if *id != hex::encode(bound) => {
                return Err(KmsError::new(
                    ErrorKind::IncorrectKeyMaterial,
                    format!(
                        "Key material {} is not associated with KMS key {}.",
                        crate::error::shorten(id),
                        key.arn(realm)
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(key)
}

/// The `ValidTo` of a key's imported material passed: the material is deleted (the key goes to
/// PendingImport). Only when the key still has that material with exactly that `ValidTo`, at
/// or before both the command's due time and the writer clock (readers apply it only once the
/// server time has reached it).
fn material_expiry_due(p: &Projection, account: &str, key_id: &KeyId, due_unix_ms: u64, ctx: &Ctx) -> Option<Decision> {
    let key = p.key(account, key_id)?;
    let valid_to = key.import().valid_to_unix_ms?;
    let current = key.current_material()?;
    if valid_to > due_unix_ms || valid_to > ctx.now_unix_ms {
        return None;
    }
    key_decision(
        p,
        key,
        Body::KeyMaterialDeleted(KeyMaterialDeletedV1 {
            material: current.clone(),
            reason: codes::material_deletion::EXPIRED,
            due_unix_ms: Some(valid_to),
        }),
    )
}

fn check_alias_quota(realm: &Realm, key: &Key, limits: &Limits) -> Result<(), KmsError> {
    if key.aliases.len() >= limits.max_aliases_per_key {
        return Err(KmsError::new(
            ErrorKind::LimitExceeded,
            format!("{} already has the maximum number of aliases ({}).", key.arn(realm), limits.max_aliases_per_key),
        ));
    }
    Ok(())
}

/// An automatic rotation: only for an Enabled key with rotation on whose next rotation is at or
/// before both the command's due time and the writer clock. The event answers the key's own due
/// time (so racing instances decide the same event); the next rotation is one period later, or
/// one period from now if that has passed too.
fn rotation_due(
    p: &Projection,
    account: &str,
    key_id: &KeyId,
    due_unix_ms: u64,
    ctx: &Ctx,
) -> Result<Option<Decision>, KmsError> {
    let Some(key) = p.key(account, key_id) else { return Ok(None) };
    let AutoRotation::On { period_days, next_rotation_unix_ms: due } = key.rotation else { return Ok(None) };
    if key.state != KeyState::Enabled || due > due_unix_ms || due > ctx.now_unix_ms {
        return Ok(None);
    }
    if key.origin != Origin::AwsKms || key.key_spec != KeySpec::SymmetricDefault {
        return Ok(None);
    }
    let period = days_ms(period_days);
    let mut next = due + period;
    if next <= ctx.now_unix_ms {
        next = ctx.now_unix_ms + period;
    }
    let material = fresh_material(ctx, key.next_material_version())?;
    Ok(key_decision(
        p,
        key,
        Body::KeyMaterialRotated(KeyMaterialRotatedV1 {
            rotation_type: codes::rotation_type::AUTOMATIC,
            material,
            due_unix_ms: Some(due),
            next_rotation_unix_ms: Some(next),
        }),
    ))
}

/// A deletion: only for a PendingDeletion key whose DeletionDate is at or before both the
/// command's due time and the writer clock. (Readers still apply it only once the server's
/// timestamp has reached the DeletionDate.)
fn deletion_due(p: &Projection, account: &str, key_id: &KeyId, due_unix_ms: u64, ctx: &Ctx) -> Option<Decision> {
    let key = p.key(account, key_id)?;
    let deletion = key.deletion?;
    if key.state != KeyState::PendingDeletion
        || deletion.deletion_unix_ms > due_unix_ms
        || deletion.deletion_unix_ms > ctx.now_unix_ms
    {
        return None;
    }
    key_decision(p, key, Body::KeyDeleted(KeyDeletedV1 { due_unix_ms: deletion.deletion_unix_ms }))
}
