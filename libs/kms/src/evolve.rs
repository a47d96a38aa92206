//! evolve: how each event body changes the projection (the fold of the Decider).
//!
//! Pure: the only inputs are the current state, the event (its header time is the writer's
//! clock) and the server timestamp of the stored message. `decide` only emits events that
//! apply; evolve is still total and defensive, because the log may hold events decided
//! against an older state of *another* aggregate (optimistic concurrency is per aggregate).
//! An event whose body does not fit the current state is recorded in the chain head and
//! otherwise ignored:
//!
//! - state transitions happen only from their source states (EnableKey from Disabled,
//!   DisableKey from Enabled, ScheduleKeyDeletion from anything but PendingDeletion,
//!   CancelKeyDeletion from PendingDeletion);
//! - `KeyDeleted` takes effect only when the server time is at or past its due time **and**
//!   the key is PendingDeletion with exactly that DeletionDate (a fast writer clock cannot
//!   delete early); the key then becomes a tombstone, its aliases are removed and its
//!   material refs dropped;
//! - a rotation must carry the key's next material version;
//! - import parameters, imported material and its deletion apply only to EXTERNAL keys; an
//!   import must carry version 1 and, after the first, the key's bound material id; it is
//!   refused while PendingDeletion; a deletion must name the current material, and an expiry
//!   takes effect only once the server time has reached its `ValidTo` (like `KeyDeleted`);
//! - an alias is created or moved only onto a live key of its own account;
//! - a grant is added once (a second GrantCreated with the same id is ignored), and retired or
//!   revoked only while it exists; a key policy replaces the previous one in any state.

use keyledger_events::{codes, AggregateKind, Body, Event};

use crate::access::{Grant, GrantConstraint, GrantOperation, PolicySlot};

use crate::api::{ExpirationModel, KeySpec, KeyUsage, Origin, WrappingAlgorithm, WrappingKeySpec};
use crate::ids::KeyId;
use crate::state::*;

/// Rejects events that do not fit their aggregate, before anything changes.
pub(crate) fn check_fits(kind: AggregateKind, event: &Event) -> Result<(), ApplyError> {
    let r = &event.record;
    let alias_body = matches!(event.body, Body::AliasCreated(_) | Body::AliasUpdated(_) | Body::AliasDeleted(_));
    let key_body = !alias_body && !matches!(event.body, Body::UsageBlock(_));
    match kind {
        AggregateKind::Key => {
            if !key_body {
                return Err(ApplyError::Malformed(format!("{} on a key aggregate", event.body.name())));
            }
            if KeyId::parse(&r.aggregate_id).is_none() {
                return Err(ApplyError::Malformed("key aggregate id is not a key id".to_owned()));
            }
        }
        AggregateKind::Alias => {
            if !alias_body {
                return Err(ApplyError::Malformed(format!("{} on an alias aggregate", event.body.name())));
            }
            if !r.aggregate_id.starts_with("alias/") {
                return Err(ApplyError::Malformed("alias aggregate id is not an alias name".to_owned()));
            }
        }
        other => {
            return Err(ApplyError::Malformed(format!("aggregate kind {other:?} is not part of the key projection")))
        }
    }
    match &event.body {
        Body::KeyCreated(b) => check_key_codes(b.key_spec, b.key_usage, b.origin)?,
        Body::KeyCreatedV2(b) => check_key_codes(b.key_spec, b.key_usage, b.origin)?,
        Body::GrantCreated(b) => {
            for c in &b.operations {
                GrantOperation::from_code(*c).ok_or(ApplyError::UnknownCode("grant operation", *c))?;
            }
            if let Some(c) = &b.constraint {
                GrantConstraint::from_event(c).ok_or(ApplyError::UnknownCode("grant constraint", c.kind))?;
            }
        }
        Body::GrantRetired(b)
            if !matches!(b.how, codes::grant_end::RETIRED_BY_TOKEN | codes::grant_end::RETIRED_BY_ID) =>
        {
            return Err(ApplyError::UnknownCode("grant end", b.how));
        }
        Body::KeyMaterialRotated(b)
            if !matches!(b.rotation_type, codes::rotation_type::AUTOMATIC | codes::rotation_type::ON_DEMAND) =>
        {
            return Err(ApplyError::UnknownCode("rotation type", b.rotation_type));
        }
        Body::ImportParametersIssued(b) => {
            WrappingKeySpec::from_code(b.wrapping_key_spec)
                .ok_or(ApplyError::UnknownCode("wrapping key spec", b.wrapping_key_spec))?;
            WrappingAlgorithm::from_code(b.wrapping_algorithm)
                .ok_or(ApplyError::UnknownCode("wrapping algorithm", b.wrapping_algorithm))?;
        }
        Body::KeyMaterialImported(b) => {
            ExpirationModel::from_code(b.expiration_model)
                .ok_or(ApplyError::UnknownCode("expiration model", b.expiration_model))?;
        }
        Body::KeyMaterialDeleted(b)
            if !matches!(b.reason, codes::material_deletion::ON_REQUEST | codes::material_deletion::EXPIRED) =>
        {
            return Err(ApplyError::UnknownCode("material deletion reason", b.reason));
        }
        _ => {}
    }
    Ok(())
}

fn check_key_codes(key_spec: u16, key_usage: u16, origin: u16) -> Result<(), ApplyError> {
    KeySpec::from_code(key_spec).ok_or(ApplyError::UnknownCode("key spec", key_spec))?;
    KeyUsage::from_code(key_usage).ok_or(ApplyError::UnknownCode("key usage", key_usage))?;
    Origin::from_code(origin).ok_or(ApplyError::UnknownCode("origin", origin))?;
    Ok(())
}

/// Folds a checked event and moves the aggregate's head to `new_head`.
pub(crate) fn fold(
    p: &mut Projection,
    kind: AggregateKind,
    event: &Event,
    server_time_unix_ms: u64,
    new_head: AggregateHead,
) -> Result<Applied, ApplyError> {
    let r = &event.record;
    let account = p.accounts.entry(r.account.clone()).or_default();
    match kind {
        AggregateKind::Key => {
            let id = KeyId::parse(&r.aggregate_id).expect("checked by check_fits");
            let slot = account.keys.entry(id).or_insert(KeySlot { head: new_head, entry: KeyEntry::Absent });
            slot.head = new_head;
            let old_due = match &slot.entry {
                KeyEntry::Live(k) => Projection::due_entry(&r.account, k),
                _ => None,
            };
            let (applied, removed_aliases, created) =
                fold_key(slot, id, event, server_time_unix_ms, new_head.last_stream_seq);
            let new_due = match &slot.entry {
                KeyEntry::Live(k) => Projection::due_entry(&r.account, k),
                _ => None,
            };
            if created {
                account.live_keys += 1;
            }
            if let Some(names) = removed_aliases {
                account.live_keys -= 1;
                for name in names {
                    if let Some(s) = account.aliases.get_mut(&name) {
                        s.alias = None;
                    }
                }
            }
            if old_due != new_due {
                if let Some(d) = old_due {
                    p.due.remove(&d);
                }
                if let Some(d) = new_due {
                    p.due.insert(d);
                }
            }
            Ok(applied)
        }
        AggregateKind::Alias => Ok(fold_alias(account, &r.aggregate_id, event, new_head)),
        _ => unreachable!("checked by check_fits"),
    }
}

/// Returns (applied, aliases to remove if the key was deleted, whether the key was created).
fn fold_key(
    slot: &mut KeySlot,
    id: KeyId,
    event: &Event,
    server_time_unix_ms: u64,
    stream_seq: u64,
) -> (Applied, Option<Vec<String>>, bool) {
    use Applied::*;
    let r = &event.record;
    let created = match &event.body {
        Body::KeyCreated(b) => Some(b.upgrade()),
        Body::KeyCreatedV2(b) => Some(b.clone()),
        _ => None,
    };
    if let Some(b) = created {
        if !matches!(slot.entry, KeyEntry::Absent) {
            return (Ignored, None, false);
        }
        let (state, materials, current_version) = match &b.material {
            Some(m) => (
                KeyState::Enabled,
                vec![MaterialVersion {
                    material: m.clone(),
                    created_unix_ms: r.time_unix_ms,
                    source: MaterialSource::Created,
                }],
                m.version,
            ),
            None => (KeyState::PendingImport, Vec::new(), 0),
        };
        slot.entry = KeyEntry::Live(Box::new(Key {
            id,
            account: r.account.clone(),
            created_unix_ms: r.time_unix_ms,
            description: b.description.clone(),
            key_spec: KeySpec::from_code(b.key_spec).expect("checked"),
            key_usage: KeyUsage::from_code(b.key_usage).expect("checked"),
            origin: Origin::from_code(b.origin).expect("checked"),
            multi_region: b.multi_region,
            state,
            deletion: None,
            tags: b.tags.clone(),
            rotation: AutoRotation::Off,
            materials,
            current_version,
            on_demand_rotations: 0,
            aliases: Vec::new(),
            import: None,
            policy: match b.policy {
                Some(text) => PolicySlot::custom(text),
                None => PolicySlot::default_policy(),
            },
            grants: Vec::new(),
        }));
        return (Folded, None, true);
    }
    let KeyEntry::Live(key) = &mut slot.entry else { return (Ignored, None, false) };
    let applied = match &event.body {
        Body::KeyCreated(_) | Body::KeyCreatedV2(_) => unreachable!("handled above"),
        Body::KeyPolicyPut(b) => {
            key.policy = PolicySlot::custom(b.policy.clone());
            Folded
        }
        Body::GrantCreated(b) => {
            if key.grants.iter().any(|g| g.id == b.grant_id) {
                return (Ignored, None, false);
            }
            let Some(grant) = Grant::from_event(b, r.time_unix_ms, stream_seq) else {
                return (Ignored, None, false);
            };
            key.grants.push(grant);
            Folded
        }
        Body::GrantRetired(keyledger_events::GrantRetiredV1 { grant_id, .. })
        | Body::GrantRevoked(keyledger_events::GrantRevokedV1 { grant_id }) => {
            let before = key.grants.len();
            key.grants.retain(|g| g.id != *grant_id);
            if key.grants.len() == before {
                return (Ignored, None, false);
            }
            Folded
        }
        Body::KeyDescriptionUpdated(b) => {
            key.description = b.description.clone();
            Folded
        }
        Body::KeyEnabled(b) => {
            if key.state != KeyState::Disabled {
                return (Ignored, None, false);
            }
            key.state = KeyState::Enabled;
            if let (Some(due), AutoRotation::On { next_rotation_unix_ms, .. }) =
                (b.rotation_catch_up_due_unix_ms, &mut key.rotation)
            {
                *next_rotation_unix_ms = due;
            }
            Folded
        }
        Body::KeyDisabled(_) => {
            if key.state != KeyState::Enabled {
                return (Ignored, None, false);
            }
            key.state = KeyState::Disabled;
            Folded
        }
        Body::KeyRotationEnabled(b) => {
            key.rotation = AutoRotation::On {
                period_days: b.rotation_period_days,
                next_rotation_unix_ms: b.next_rotation_unix_ms,
            };
            Folded
        }
        Body::KeyRotationDisabled(_) => {
            key.rotation = AutoRotation::Off;
            Folded
        }
        Body::KeyMaterialRotated(b) => {
            if b.material.version != key.next_material_version() {
                return (Ignored, None, false);
            }
            let source = if b.rotation_type == codes::rotation_type::ON_DEMAND {
                key.on_demand_rotations += 1;
                MaterialSource::OnDemand
            } else {
                if let (Some(next), AutoRotation::On { next_rotation_unix_ms, .. }) =
                    (b.next_rotation_unix_ms, &mut key.rotation)
                {
                    *next_rotation_unix_ms = next;
                }
                MaterialSource::Automatic
            };
            key.materials.push(MaterialVersion {
                material: b.material.clone(),
                created_unix_ms: r.time_unix_ms,
                source,
            });
            key.current_version = b.material.version;
            if key.state == KeyState::PendingImport {
                key.state = KeyState::Enabled;
            }
            Folded
        }
        Body::KeyDeletionScheduled(b) => {
            if key.state == KeyState::PendingDeletion {
                return (Ignored, None, false);
            }
            key.state = KeyState::PendingDeletion;
            key.deletion = Some(Deletion { deletion_unix_ms: b.deletion_unix_ms, window_days: b.pending_window_days });
            Folded
        }
        Body::KeyDeletionCancelled(_) => {
            if key.state != KeyState::PendingDeletion {
                return (Ignored, None, false);
            }
            // An EXTERNAL key whose material is gone (never imported, expired or deleted while
            // pending deletion) has nothing to be Disabled with: it waits for an import.
            key.state = if key.origin == Origin::External && key.current_version == 0 {
                KeyState::PendingImport
            } else {
                KeyState::Disabled
            };
            key.deletion = None;
            Folded
        }
        Body::KeyDeleted(b) => {
            let due_matches = key.state == KeyState::PendingDeletion
                && key.deletion.map(|d| d.deletion_unix_ms) == Some(b.due_unix_ms);
            if !due_matches || server_time_unix_ms < b.due_unix_ms {
                return (Ignored, None, false);
            }
            let aliases = std::mem::take(&mut key.aliases);
            slot.entry = KeyEntry::Deleted { deleted_unix_ms: server_time_unix_ms };
            return (Folded, Some(aliases), false);
        }
        Body::KeyTagsAdded(b) => {
            for tag in &b.tags {
                match key.tags.iter_mut().find(|t| t.key == tag.key) {
                    Some(t) => t.value = tag.value.clone(),
                    None => key.tags.push(tag.clone()),
                }
            }
            Folded
        }
        Body::KeyTagsRemoved(b) => {
            key.tags.retain(|t| !b.tag_keys.contains(&t.key));
            Folded
        }
        Body::ImportParametersIssued(b) => {
            if key.origin != Origin::External || key.state == KeyState::PendingDeletion {
                return (Ignored, None, false);
            }
            let params = &mut key.import_mut().parameters;
            params.retain(|p| p.valid_to_unix_ms > r.time_unix_ms);
            params.push(b.clone());
            if params.len() > MAX_OPEN_IMPORT_PARAMETERS {
                params.remove(0);
            }
            Folded
        }
        Body::KeyMaterialImported(b) => {
            let bound_ok = key.import().bound_material_id.is_none_or(|id| id == b.material.material_id);
            if key.origin != Origin::External
                || key.state == KeyState::PendingDeletion
                || b.material.version != 1
                || !bound_ok
            {
                return (Ignored, None, false);
            }
            key.materials = vec![MaterialVersion {
                material: b.material.clone(),
                created_unix_ms: r.time_unix_ms,
                source: MaterialSource::Imported,
            }];
            key.current_version = b.material.version;
            key.import_mut().bound_material_id = Some(b.material.material_id);
            key.import_mut().expiration_model = ExpirationModel::from_code(b.expiration_model);
            key.import_mut().valid_to_unix_ms = b.valid_to_unix_ms;
            key.import_mut().description = b.description.clone();
            key.import_mut().imported_unix_ms = Some(r.time_unix_ms);
            if key.state == KeyState::PendingImport {
                key.state = KeyState::Enabled;
            }
            Folded
        }
        Body::KeyMaterialDeleted(b) => {
            let current = key.current_material().is_some_and(|m| *m == b.material);
            let expiry_ok = match b.reason {
                codes::material_deletion::EXPIRED => {
                    key.import().valid_to_unix_ms == b.due_unix_ms
                        && b.due_unix_ms.is_some_and(|due| server_time_unix_ms >= due)
                }
                _ => true,
            };
            if key.origin != Origin::External || !current || !expiry_ok {
                return (Ignored, None, false);
            }
            key.materials.clear();
            key.current_version = 0;
            key.import_mut().expiration_model = None;
            key.import_mut().valid_to_unix_ms = None;
            key.import_mut().imported_unix_ms = None;
            key.import_mut().last_deleted = Some(b.material.clone());
            if key.state != KeyState::PendingDeletion {
                key.state = KeyState::PendingImport;
            }
            Folded
        }
        Body::AliasCreated(_) | Body::AliasUpdated(_) | Body::AliasDeleted(_) | Body::UsageBlock(_) => {
            unreachable!("checked by check_fits")
        }
    };
    (applied, None, false)
}

fn live_key_mut<'a>(account: &'a mut AccountState, id: &KeyId) -> Option<&'a mut Key> {
    match &mut account.keys.get_mut(id)?.entry {
        KeyEntry::Live(k) => Some(k),
        _ => None,
    }
}

fn fold_alias(account: &mut AccountState, name: &str, event: &Event, new_head: AggregateHead) -> Applied {
    let time = event.record.time_unix_ms;
    let current = account.aliases.get(name).and_then(|s| s.alias.clone());
    let slot_alias: Option<Alias> = match (&event.body, current) {
        (Body::AliasCreated(b), None) => {
            let target = KeyId::from_bytes(b.target_key_id);
            match live_key_mut(account, &target) {
                Some(key) => {
                    key.aliases.push(name.to_owned());
                    Some(Alias { target, created_unix_ms: time, updated_unix_ms: time })
                }
                None => return record_only(account, name, new_head),
            }
        }
        (Body::AliasUpdated(b), Some(mut alias)) => {
            let target = KeyId::from_bytes(b.target_key_id);
            match live_key_mut(account, &target) {
                Some(key) if target != alias.target => key.aliases.push(name.to_owned()),
                _ => return record_only(account, name, new_head),
            }
            if let Some(old) = live_key_mut(account, &alias.target) {
                old.aliases.retain(|n| n != name);
            }
            alias.target = target;
            alias.updated_unix_ms = time;
            Some(alias)
        }
        (Body::AliasDeleted(_), Some(alias)) => {
            if let Some(old) = live_key_mut(account, &alias.target) {
                old.aliases.retain(|n| n != name);
            }
            None
        }
        _ => return record_only(account, name, new_head),
    };
    account.aliases.insert(name.to_owned(), AliasSlot { head: new_head, alias: slot_alias });
    Applied::Folded
}

fn record_only(account: &mut AccountState, name: &str, new_head: AggregateHead) -> Applied {
    account
        .aliases
        .entry(name.to_owned())
        .and_modify(|s| s.head = new_head)
        .or_insert(AliasSlot { head: new_head, alias: None });
    Applied::Ignored
}
