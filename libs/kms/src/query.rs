//! Read operations answered from the projection (DescribeKey, ListKeys, ListAliases,
//! GetKeyRotationStatus, ListKeyRotations, ListResourceTags), and keyd's replies to
//! management operations once their event has been applied.
//!
//! Read operations work in every key state (aws-kms-api.md §3.3), except the rotation reads
//! on key types without rotation. Access follows `decide`: only the key's own account (key
//! policies come later). Pagination markers are opaque base64url strings this service issued;
//! anything else is `InvalidMarkerException`.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::access::{Access, Authorization, Grant};
use crate::api::response::{epoch_seconds, key_metadata};
use crate::api::{IncludeKeyMaterial, KeySpec, Operation, Origin, Request};
use crate::decide::{found_and_authorized, Caller, Decision};
use crate::error::KmsError;
use crate::ids::{parse_key_ref, KeyId, KeyRef, Realm};
use crate::state::{AutoRotation, Key, KeyState, MaterialSource, Projection};

const MARKER: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn encode_marker(tag: char, position: &str) -> String {
    MARKER.encode(format!("{tag}:{position}"))
}

fn decode_marker(marker: Option<&str>, tag: char) -> Result<Option<String>, KmsError> {
    let Some(marker) = marker else { return Ok(None) };
    let bytes = MARKER.decode(marker).map_err(|_| KmsError::invalid_marker())?;
    let text = String::from_utf8(bytes).map_err(|_| KmsError::invalid_marker())?;
    let (t, position) = text.split_once(':').ok_or_else(KmsError::invalid_marker)?;
    if t.len() != 1 || !t.starts_with(tag) {
        return Err(KmsError::invalid_marker());
    }
    Ok(Some(position.to_owned()))
}

/// Resolves any accepted key reference to a live key and authorizes `access` on it: alias
/// forms only when `allow_alias`; `NotFoundException` for unknown keys (`Key '<arn>' does not
/// exist`) and aliases (`Alias <arn> is not found.`) of the caller's account; for another
/// account, every failure is the same `AccessDeniedException` (see
/// [`found_and_authorized`](crate::decide)).
pub(crate) fn resolve_key<'p>(
    p: &'p Projection,
    realm: &Realm,
    input: &str,
    allow_alias: bool,
    access: &Access<'_>,
    op: Operation,
) -> Result<(&'p Key, Authorization), KmsError> {
    let caller = access.caller;
    let (account, key_id) = match parse_key_ref(input, realm, &caller.account, allow_alias)? {
        KeyRef::Key { account, key_id } => (account, key_id),
        KeyRef::Alias { account, alias_name } => {
            let arn = realm.alias_arn(&account, &alias_name);
            match p.alias(&account, &alias_name) {
                Some(alias) if account == caller.account => (account, alias.target),
                None if account == caller.account => return Err(KmsError::alias_not_found(&arn)),
                // Another account's alias ARN: every refusal names the alias ARN the caller
                // used, never the key behind it, and a missing alias looks the same.
                found => {
                    let result = match found {
                        Some(alias) => found_and_authorized(p, realm, &account, &alias.target, access, op),
                        None => Err(crate::access::access_denied(caller, access.action, &arn, None)),
                    };
                    return result.map_err(|e| {
                        let mut denied = crate::access::access_denied(caller, access.action, &arn, None);
                        denied.decided_by = e.decided_by;
                        denied
                    });
                }
            }
        }
    };
    found_and_authorized(p, realm, &account, &key_id, access, op)
}

/// The key a management reply is about (already authorized by the decision): no access check.
fn reply_key<'p>(p: &'p Projection, realm: &Realm, caller: &Caller, input: &str) -> Result<&'p Key, KmsError> {
    let KeyRef::Key { account, key_id } = parse_key_ref(input, realm, &caller.account, false)? else {
        return Err(KmsError::internal("A management reply names an alias."));
    };
    p.key(&account, &key_id).ok_or_else(|| KmsError::key_not_found(&realm.key_arn(&account, &key_id)))
}

/// What a read answers: the AWS response object and what authorized it (for the audit
/// record).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadAnswer {
    /// The AWS response object.
    pub body: Value,
    /// [`Authorization::audit_text`] of the decision.
    pub authorized_by: String,
}

/// Answers a read operation as the AWS response object. Errors: resolution and access errors
/// as in `decide`; `InvalidMarkerException`; `UnsupportedOperationException` for the rotation
/// reads on keys without automatic rotation (EXTERNAL origin, PendingImport); a management or
/// crypto request → `KMSInternalException`.
pub fn query(
    p: &Projection,
    realm: &Realm,
    caller: &Caller,
    request: &Request,
    now_unix_ms: u64,
) -> Result<ReadAnswer, KmsError> {
    let op = request.operation();
    let access = Access::new(caller, op.name(), now_unix_ms);
    let mut auth = Authorization::OwnAccount;
    let body = match request {
        Request::DescribeKey(r) => {
            let key = authorized(&mut auth, resolve_key(p, realm, &r.key_id, true, &access, op)?);
            json!({ "KeyMetadata": key_metadata(key, realm) })
        }
        Request::ListKeys(r) => {
            let after = match decode_marker(r.marker.as_deref(), 'K')? {
                Some(pos) => Some(KeyId::parse(&pos).ok_or_else(KmsError::invalid_marker)?),
                None => None,
            };
            let mut keys: Vec<&Key> = p.keys_after(&caller.account, after).take(r.limit as usize + 1).collect();
            let truncated = keys.len() > r.limit as usize;
            keys.truncate(r.limit as usize);
            let items: Vec<Value> =
                keys.iter().map(|k| json!({ "KeyId": k.id.to_string(), "KeyArn": k.arn(realm) })).collect();
            let next = keys.last().map(|k| encode_marker('K', &k.id.to_string()));
            page("Keys", items, truncated, next)
        }
        Request::ListAliases(r) => {
            let after = decode_marker(r.marker.as_deref(), 'A')?;
            let limit = r.limit as usize;
            let mut rows: Vec<(String, crate::state::Alias)> = match &r.key_id {
                Some(key_id) => {
                    let key = authorized(&mut auth, resolve_key(p, realm, key_id, false, &access, op)?);
                    let mut names: Vec<&String> =
                        key.aliases.iter().filter(|n| after.as_deref().is_none_or(|a| n.as_str() > a)).collect();
                    names.sort();
                    names
                        .into_iter()
                        .take(limit + 1)
                        .filter_map(|n| p.alias(&key.account, n).map(|a| (n.clone(), a.clone())))
                        .collect()
                }
                None => p
                    .aliases_after(&caller.account, after.as_deref())
                    .take(limit + 1)
                    .map(|(n, a)| (n.to_owned(), a.clone()))
                    .collect(),
            };
            let truncated = rows.len() > limit;
            rows.truncate(limit);
            let items = rows
                .iter()
                .map(|(name, a)| {
                    json!({
                        "AliasName": name,
                        "AliasArn": realm.alias_arn(&caller.account, name),
                        "TargetKeyId": a.target.to_string(),
                        "CreationDate": epoch_seconds(a.created_unix_ms),
                        "LastUpdatedDate": epoch_seconds(a.updated_unix_ms),
                    })
                })
                .collect();
            let next = rows.last().map(|(n, _)| encode_marker('A', n));
            page("Aliases", items, truncated, next)
        }
        Request::GetKeyRotationStatus(r) => {
            let key = authorized(&mut auth, resolve_key(p, realm, &r.key_id, false, &access, op)?);
            rotation_readable(realm, key)?;
            let mut out = Map::new();
            out.insert("KeyId".into(), json!(key.arn(realm)));
            let enabled = key.key_spec == KeySpec::SymmetricDefault && key.rotation_status_enabled();
            out.insert("KeyRotationEnabled".into(), json!(enabled));
            if let (true, AutoRotation::On { period_days, next_rotation_unix_ms }) = (enabled, key.rotation) {
                out.insert("RotationPeriodInDays".into(), json!(period_days));
                out.insert("NextRotationDate".into(), epoch_seconds(next_rotation_unix_ms));
            }
            Value::Object(out)
        }
        Request::ListKeyRotations(r) => {
            let key = authorized(&mut auth, resolve_key(p, realm, &r.key_id, false, &access, op)?);
            if key.key_spec != KeySpec::SymmetricDefault {
                return Err(KmsError::unsupported(format!(
                    "{} key spec is {} which is not valid for this operation.",
                    key.arn(realm),
                    key.key_spec
                )));
            }
            let after: u32 = match decode_marker(r.marker.as_deref(), 'R')? {
                Some(pos) => pos.parse().map_err(|_| KmsError::invalid_marker())?,
                None => 0,
            };
            let limit = r.limit as usize;
            let arn = key.arn(realm);
            let mut versions: Vec<_> = key
                .materials
                .iter()
                .filter(|m| m.material.version > after)
                .filter(|m| {
                    r.include_key_material == IncludeKeyMaterial::AllKeyMaterial
                        || !matches!(m.source, MaterialSource::Created | MaterialSource::Imported)
                })
                .take(limit + 1)
                .collect();
            let truncated = versions.len() > limit;
            versions.truncate(limit);
            let items = versions
                .iter()
                .map(|m| {
                    let mut o = Map::new();
                    o.insert("KeyId".into(), json!(arn));
                    o.insert("KeyMaterialId".into(), json!(hex::encode(m.material.material_id)));
                    let state = if m.material.version == key.current_version { "CURRENT" } else { "NON_CURRENT" };
                    o.insert("KeyMaterialState".into(), json!(state));
                    if m.source == MaterialSource::Imported {
                        o.insert("ImportState".into(), json!("IMPORTED"));
                        if !key.import().description.is_empty() {
                            o.insert("KeyMaterialDescription".into(), json!(key.import().description));
                        }
                        if let Some(model) = key.import().expiration_model {
                            o.insert("ExpirationModel".into(), json!(model.as_str()));
                        }
                        if let Some(t) = key.import().valid_to_unix_ms {
                            o.insert("ValidTo".into(), epoch_seconds(t));
                        }
                    }
                    let rotation_type = match m.source {
                        MaterialSource::Created | MaterialSource::Imported => None,
                        MaterialSource::Automatic => Some("AUTOMATIC"),
                        MaterialSource::OnDemand => Some("ON_DEMAND"),
                    };
                    if let Some(t) = rotation_type {
                        o.insert("RotationDate".into(), epoch_seconds(m.created_unix_ms));
                        o.insert("RotationType".into(), json!(t));
                    }
                    Value::Object(o)
                })
                .collect();
            let next = versions.last().map(|m| encode_marker('R', &m.material.version.to_string()));
            page("Rotations", items, truncated, next)
        }
        Request::ListResourceTags(r) => {
            let key = authorized(&mut auth, resolve_key(p, realm, &r.key_id, false, &access, op)?);
            let skip: usize = match decode_marker(r.marker.as_deref(), 'T')? {
                Some(pos) => pos.parse().map_err(|_| KmsError::invalid_marker())?,
                None => 0,
            };
            let limit = r.limit as usize;
            let tags: Vec<_> = key.tags.iter().skip(skip).take(limit + 1).collect();
            let truncated = tags.len() > limit;
            let items = tags.iter().take(limit).map(|t| json!({ "TagKey": t.key, "TagValue": t.value })).collect();
            let next = truncated.then(|| encode_marker('T', &(skip + limit).to_string()));
            page("Tags", items, truncated, next)
        }
        Request::GetKeyPolicy(r) => {
            let key = authorized(&mut auth, resolve_key(p, realm, &r.key_id, false, &access, op)?);
            json!({ "Policy": key.policy.text(realm, &key.account), "PolicyName": r.policy_name })
        }
        Request::ListKeyPolicies(r) => {
            authorized(&mut auth, resolve_key(p, realm, &r.key_id, false, &access, op)?);
            // One policy per key: a marker can only point past it.
            let done = decode_marker(r.marker.as_deref(), 'P')?.is_some();
            let names: Vec<Value> = if done { vec![] } else { vec![json!(crate::access::POLICY_NAME)] };
            let mut out = Map::new();
            out.insert("PolicyNames".into(), Value::Array(names));
            out.insert("Truncated".into(), json!(false));
            Value::Object(out)
        }
        Request::ListGrants(r) => {
            let key = authorized(&mut auth, resolve_key(p, realm, &r.key_id, false, &access, op)?);
            let filter_id = r.grant_id.as_deref().map(crate::api::parse_grant_id).transpose()?;
            let grants: Vec<&Grant> = key
                .grants
                .iter()
                .filter(|g| filter_id.is_none_or(|id| g.id == id))
                .filter(|g| r.grantee_principal.as_deref().is_none_or(|gp| g.grantee == gp))
                .collect();
            grant_page(realm, key, grants, r.limit, r.marker.as_deref())?
        }
        Request::ListRetirableGrants(r) => {
            // AWS: the retiring principal must be of the caller's account.
            let own_root = format!("arn:{}:iam::{}:root", realm.partition, caller.account);
            let own = r.retiring_principal == own_root
                || r.retiring_principal.starts_with(&format!("arn:{}:iam::{}:", realm.partition, caller.account));
            if !own {
                return Err(KmsError::access_denied(&caller.principal.arn, op.name(), &r.retiring_principal));
            }
            let after = decode_marker(r.marker.as_deref(), 'G')?;
            let mut rows: Vec<(String, &Key, &Grant)> = p
                .all_live_keys()
                .flat_map(|k| k.grants.iter().filter(|g| g.retiring == r.retiring_principal).map(move |g| (k, g)))
                .map(|(k, g)| (format!("{}/{}", k.arn(realm), g.id_hex()), k, g))
                .filter(|(pos, _, _)| after.as_deref().is_none_or(|a| pos.as_str() > a))
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let limit = r.limit as usize;
            let truncated = rows.len() > limit;
            rows.truncate(limit);
            let items = rows.iter().map(|(_, k, g)| grant_json(realm, k, g)).collect();
            let next = rows.last().map(|(pos, _, _)| encode_marker('G', pos));
            page("Grants", items, truncated, next)
        }
        other => return Err(KmsError::internal(format!("{} is not a read operation.", other.operation().name()))),
    };
    Ok(ReadAnswer { body, authorized_by: auth.audit_text() })
}

fn authorized<'k>(slot: &mut Authorization, (key, auth): (&'k Key, Authorization)) -> &'k Key {
    *slot = auth;
    key
}

/// One page of ListGrants, newest last as created; the marker is the last grant id shown.
fn grant_page(
    realm: &Realm,
    key: &Key,
    grants: Vec<&Grant>,
    limit: u32,
    marker: Option<&str>,
) -> Result<Value, KmsError> {
    let start = match decode_marker(marker, 'G')? {
        Some(id) => grants.iter().position(|g| g.id_hex() == id).ok_or_else(KmsError::invalid_marker)? + 1,
        None => 0,
    };
    let limit = limit as usize;
    let rest = &grants[start.min(grants.len())..];
    let truncated = rest.len() > limit;
    let shown = &rest[..rest.len().min(limit)];
    let items = shown.iter().map(|g| grant_json(realm, key, g)).collect();
    let next = shown.last().map(|g| encode_marker('G', &g.id_hex()));
    Ok(page("Grants", items, truncated, next))
}

/// A `GrantListEntry` (AWS API reference, ListGrants). Never a token.
fn grant_json(realm: &Realm, key: &Key, g: &Grant) -> Value {
    let mut o = Map::new();
    o.insert("KeyId".into(), json!(key.arn(realm)));
    o.insert("GrantId".into(), json!(g.id_hex()));
    if !g.name.is_empty() {
        o.insert("Name".into(), json!(g.name));
    }
    o.insert("CreationDate".into(), epoch_seconds(g.created_unix_ms));
    o.insert("GranteePrincipal".into(), json!(g.grantee));
    if !g.retiring.is_empty() {
        o.insert("RetiringPrincipal".into(), json!(g.retiring));
    }
    o.insert("IssuingAccount".into(), json!(format!("arn:{}:iam::{}:root", realm.partition, g.issuing_account)));
    o.insert("Operations".into(), json!(g.operations.iter().map(|op| op.name()).collect::<Vec<_>>()));
    if let Some(c) = &g.constraint {
        o.insert("Constraints".into(), c.to_json());
    }
    Value::Object(o)
}

/// GetKeyRotationStatus / rotation reads: UnsupportedOperationException for EXTERNAL keys,
/// PendingImport and Unavailable keys (aws-kms-api.md §3.3).
fn rotation_readable(realm: &Realm, key: &Key) -> Result<(), KmsError> {
    if key.origin != Origin::AwsKms {
        return Err(KmsError::origin_not_valid(&key.arn(realm), key.origin.as_str()));
    }
    if matches!(key.state, KeyState::PendingImport | KeyState::Unavailable) {
        return Err(KmsError::unsupported(format!(
            "{} is {} which is not valid for this operation.",
            key.arn(realm),
            key.state.as_str()
        )));
    }
    Ok(())
}

fn page(member: &str, items: Vec<Value>, truncated: bool, next: Option<String>) -> Value {
    let mut out = Map::new();
    out.insert(member.into(), Value::Array(items));
    out.insert("Truncated".into(), json!(truncated));
    if truncated {
        if let Some(n) = next {
            out.insert("NextMarker".into(), json!(n));
        }
    }
    Value::Object(out)
}

/// keyd's reply to a management request, built after its event (if any) was applied:
/// CreateKey → `{KeyMetadata}` of the key `decision` created; ScheduleKeyDeletion →
/// `{KeyId, DeletionDate, KeyState, PendingWindowInDays}`; CancelKeyDeletion and
/// RotateKeyOnDemand → `{KeyId}` (ARN); ImportKeyMaterial and DeleteImportedKeyMaterial →
/// `{KeyId, KeyMaterialId}`; CreateGrant → `{GrantId}` (keyd adds the `GrantToken`, which
/// needs the root key: [`created_grant`] says what it carries); every other management
/// operation → `{}` (GetParametersForImport's response holds the token and public key, which
/// only keyd has: keyd builds it).
///
/// Errors: `KMSInternalException` if the decision's effect is not (yet) in `p`, or for a read
/// or crypto request; resolution errors as in `decide`.
pub fn management_response(
    p: &Projection,
    realm: &Realm,
    caller: &Caller,
    request: &Request,
    decision: Option<&Decision>,
) -> Result<Value, KmsError> {
    let not_applied = || KmsError::internal("The change is not visible yet; retry the request.");
    match request {
        Request::CreateKey(_) => {
            let d = decision.ok_or_else(not_applied)?;
            let id = KeyId::parse(&d.aggregate_id).ok_or_else(not_applied)?;
            let key = p.key(&d.account, &id).ok_or_else(not_applied)?;
            Ok(json!({ "KeyMetadata": key_metadata(key, realm) }))
        }
        Request::ScheduleKeyDeletion(r) => {
            let key = reply_key(p, realm, caller, &r.key_id)?;
            let d = key.deletion.filter(|_| key.state == KeyState::PendingDeletion).ok_or_else(not_applied)?;
            Ok(json!({
                "KeyId": key.arn(realm),
                "DeletionDate": epoch_seconds(d.deletion_unix_ms),
                "KeyState": key.state.as_str(),
                "PendingWindowInDays": d.window_days,
            }))
        }
        Request::CancelKeyDeletion(r) => {
            let key = reply_key(p, realm, caller, &r.key_id)?;
            Ok(json!({ "KeyId": key.arn(realm) }))
        }
        Request::RotateKeyOnDemand(r) => {
            let key = reply_key(p, realm, caller, &r.key_id)?;
            Ok(json!({ "KeyId": key.arn(realm) }))
        }
        Request::ImportKeyMaterial(r) => {
            let key = reply_key(p, realm, caller, &r.key_id)?;
            let m = key.current_material().ok_or_else(not_applied)?;
            Ok(json!({ "KeyId": key.arn(realm), "KeyMaterialId": hex::encode(m.material_id) }))
        }
        Request::DeleteImportedKeyMaterial(r) => {
            let key = reply_key(p, realm, caller, &r.key_id)?;
            let mut out = Map::new();
            out.insert("KeyId".into(), json!(key.arn(realm)));
            let deleted = match decision.map(|d| &d.body) {
                Some(keyledger_events::Body::KeyMaterialDeleted(b)) => Some(b.material.material_id),
                _ => key.import().last_deleted.as_ref().map(|m| m.material_id),
            };
            if let Some(id) = deleted {
                out.insert("KeyMaterialId".into(), json!(hex::encode(id)));
            }
            Ok(Value::Object(out))
        }
        Request::CreateGrant(_) => {
            let (_, _, grant_id, _) = created_grant(p, realm, caller, request, decision).ok_or_else(not_applied)?;
            Ok(json!({ "GrantId": hex::encode(grant_id) }))
        }
        _ if request.operation().role() == crate::api::Role::Management => Ok(json!({})),
        other => Err(KmsError::internal(format!("{} is not a management operation.", other.operation().name()))),
    }
}

/// The grant a CreateGrant request created (or, for an idempotent retry by `Name`, the grant it
/// names), once applied: its key's account and id, the grant id and the control stream
/// sequence of its GrantCreated event — what a grant token carries.
pub fn created_grant(
    p: &Projection,
    realm: &Realm,
    caller: &Caller,
    request: &Request,
    decision: Option<&Decision>,
) -> Option<(String, KeyId, [u8; 32], u64)> {
    let Request::CreateGrant(r) = request else { return None };
    let (key, id) = match decision.map(|d| (d, &d.body)) {
        Some((d, keyledger_events::Body::GrantCreated(b))) => {
            (p.key(&d.account, &KeyId::parse(&d.aggregate_id)?)?, b.grant_id)
        }
        _ => {
            let key = reply_key(p, realm, caller, &r.key_id).ok()?;
            let grant = crate::decide::same_named_grant(key, r.name.as_deref()?, r)?;
            (key, grant.id)
        }
    };
    let grant = key.grants.iter().find(|g| g.id == id)?;
    Some((key.account.clone(), key.id, grant.id, grant.created_seq))
}
