//! keyd: decides management commands against the projection and appends their events.
//!
//! The imperative shell around the pure rulebook (`keyledger_kms::decide`):
//! 1. prepare what the rulebook may not make itself (fresh key id, fresh wrapped material
//!    stored in the material stream, the clock reading);
//! 2. decide against the projection; 3. encode the one event, append it with the aggregate's
//!    expected last subject sequence (optimistic concurrency decided by JetStream);
//! 4. on a conflict, catch the projection up and decide again (bounded); 5. wait until the
//!    projection has applied the event, answer from it, with the event's stream sequence.
//!
//! Time-driven actions (rotation due, deletion due) run the same path on a timer, as the
//! service principal. Two keyd instances racing on one due action are decided by the subject
//! sequence; the loser discards the material it prepared. When a deletion has taken effect,
//! the key's material is erased from the material stream (the event is appended first).

use std::sync::Arc;

use keyledger_events::{names, AggregateKind, Body, Draft, PrincipalV1};
use keyledger_kms::{Caller, Command, Ctx, Decision, ErrorKind, KeyId, KmsError, Request};
use keyledger_log::AppendError;
use tokio::task::JoinHandle;

use crate::pipeline::Facts;
use crate::roles::{RoleCtx, Success};

/// Handles one management request.
///
/// A request that appends an event is recorded by that event; `facts` is told so. A request
/// that changes nothing (or fails) is recorded by the caller as a usage record.
pub async fn handle(
    ctx: &RoleCtx,
    caller: &Caller,
    request: Request,
    request_id: uuid::Uuid,
    facts: &mut Facts,
) -> Result<Success, KmsError> {
    let command = Command::Request(request);
    let (seq, decision) = execute(ctx, caller, &command, *request_id.as_bytes()).await?;
    facts.record.decided_at_seq = seq;
    facts.recorded_elsewhere = decision.is_some();
    let Command::Request(request) = &command else { unreachable!("built above") };
    let projection = ctx.follower.read();
    let body = keyledger_kms::management_response(&projection, &ctx.config.realm, caller, request, decision.as_ref())?;
    Ok(Success::json(body, Some(seq)))
}

/// Decides and appends `command`. Returns the log sequence that reflects it (the appended
/// event's, or the projection's when nothing had to change) and the decision, if any.
pub async fn execute(
    ctx: &RoleCtx,
    caller: &Caller,
    command: &Command,
    request_id: [u8; 16],
) -> Result<(u64, Option<Decision>), KmsError> {
    let new_key_id = KeyId::from_uuid(uuid::Uuid::new_v4());
    let mut prepared: Option<(String, String, keyledger_events::MaterialRefV1)> = None;
    let mut last_conflict = None;
    for _attempt in 0..ctx.config.max_append_attempts {
        let now = ctx.config.clock.now_unix_ms();
        // Which material (if any) this command needs, given the state now.
        let need = {
            let projection = ctx.follower.read();
            keyledger_kms::material_needed(&projection, &ctx.config.realm, caller, command, &new_key_id)?
        };
        let material = match need {
            None => None,
            Some(target) => {
                let key_text = target.key_id.to_string();
                let reuse = matches!(&prepared, Some((acct, key, m)) if *acct == target.account && *key == key_text && m.version == target.version);
                if !reuse {
                    if let Some((acct, key, m)) = prepared.take() {
                        ctx.cache.discard(&acct, &key, &m).await;
                    }
                    let m =
                        ctx.cache.prepare(&target.account, target.key_id.as_bytes(), &key_text, target.version).await?;
                    prepared = Some((target.account.clone(), key_text, m));
                }
                prepared.as_ref().map(|(_, _, m)| m.clone())
            }
        };
        // Decide under the same view that still needs exactly the prepared material: if the
        // projection moved on meanwhile (a concurrent rotation applied), prepare again.
        let decided = {
            let projection = ctx.follower.read();
            let still = keyledger_kms::material_needed(&projection, &ctx.config.realm, caller, command, &new_key_id)?;
            let same = match (&still, &material) {
                (None, None) => true,
                (Some(t), Some(m)) => t.version == m.version,
                _ => false,
            };
            if !same {
                None
            } else {
                let decide_ctx = Ctx { now_unix_ms: now, new_key_id, new_material: material.clone() };
                Some(
                    keyledger_kms::decide(
                        &projection,
                        &ctx.config.realm,
                        caller,
                        command,
                        &decide_ctx,
                        &ctx.config.limits,
                    )
                    .map(|d| (d, projection.last_applied_seq())),
                )
            }
        };
        let Some(decided) = decided else { continue };
        let (decision, applied) = match decided {
            Ok(v) => v,
            Err(e) => {
                discard(ctx, prepared.take()).await;
                return Err(e);
            }
        };
        let Some(decision) = decision else {
            discard(ctx, prepared.take()).await;
            return Ok((applied, None));
        };
        let event_id = *uuid::Uuid::now_v7().as_bytes();
        let draft = Draft {
            event_id,
            account: decision.account.clone(),
            aggregate_kind: decision.aggregate_kind,
            aggregate_id: decision.aggregate_id.clone(),
            aggregate_seq: decision.head.next_aggregate_seq,
            time_unix_ms: now,
            principal: caller.principal.clone(),
            request_id,
            prev_hash: decision.head.last_hash,
        };
        let (bytes, _hash) = keyledger_events::encode(&draft, &decision.body).map_err(|e| {
            tracing::error!(error = %e, "cannot encode event");
            KmsError::new(ErrorKind::KMSInternal, "The event could not be encoded.")
        })?;
        let subject = names::control_subject(&decision.account, decision.aggregate_kind, &decision.aggregate_id);
        match ctx.log.append(&subject, decision.head.last_stream_seq, event_id, bytes).await {
            Ok(seq) => {
                // The material (if any) is now committed by the event.
                ctx.follower.wait_for(seq, ctx.config.projection_wait).await?;
                return Ok((seq, Some(decision)));
            }
            Err(AppendError::Conflict { .. }) => {
                tracing::debug!(subject = %subject, "append conflict; re-deciding");
                last_conflict = Some(subject);
                ctx.follower.catch_up(ctx.config.projection_wait).await?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot append event");
                // The event may still have been stored (a timed-out publish is not a failure
                // to store): keep the prepared material, it is erased with the key if unused.
                return Err(KmsError::new(
                    ErrorKind::DependencyTimeout,
                    "The key log did not acknowledge the change in time; retry the request.",
                ));
            }
        }
    }
    discard(ctx, prepared.take()).await;
    tracing::warn!(subject = ?last_conflict, "giving up after repeated append conflicts");
    Err(KmsError::new(ErrorKind::Conflict, "The resource was changed concurrently too many times; retry the request."))
}

async fn discard(ctx: &RoleCtx, prepared: Option<(String, String, keyledger_events::MaterialRefV1)>) {
    if let Some((acct, key, m)) = prepared {
        ctx.cache.discard(&acct, &key, &m).await;
    }
}

/// Most due actions started per scheduler tick.
const MAX_DUE_ACTIONS_PER_TICK: usize = 64;

/// keyd's background tasks: the scheduler of time-driven actions and the material eraser.
pub fn background(ctx: Arc<RoleCtx>) -> Vec<JoinHandle<()>> {
    let scheduler = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = Caller { account: String::new(), principal: PrincipalV1::service() };
            loop {
                tokio::time::sleep(ctx.config.scheduler_tick).await;
                let due = {
                    let projection = ctx.follower.read();
                    keyledger_kms::due_actions(&projection, ctx.config.clock.now_unix_ms(), MAX_DUE_ACTIONS_PER_TICK)
                };
                // Deletion is irreversible: propose it only when the server's clock agrees it is
                // due (the projection ignores a deletion stamped earlier anyway; this keeps a fast
                // local clock from appending such ignored events every tick).
                let mut server_now: Option<u64> = None;
                for command in due {
                    if let Command::DeletionDue { due_unix_ms, .. } = &command {
                        if server_now.is_none() {
                            match ctx.log.server_time_unix_ms().await {
                                Ok(t) => server_now = Some(t),
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot read the server's clock; deletions wait");
                                    continue;
                                }
                            }
                        }
                        if server_now.unwrap_or(0) < *due_unix_ms {
                            tracing::debug!("deletion due by the local clock but not yet by the server's");
                            continue;
                        }
                    }
                    match execute(&ctx, &service, &command, [0; 16]).await {
                        Ok(_) => {}
                        Err(e) => tracing::info!(error = %e, "time-driven action not applied"),
                    }
                }
            }
        })
    };
    let eraser = {
        let ctx = ctx.clone();
        let mut events = ctx.follower.subscribe();
        tokio::spawn(async move {
            // Keys deleted before this instance started (or whose erase was interrupted).
            let tombstones = ctx.follower.read().deleted_keys();
            for (account, key_id) in tombstones {
                erase(&ctx, &account, &key_id).await;
            }
            loop {
                match events.recv().await {
                    Ok(applied) => {
                        if applied.event.aggregate_kind() != AggregateKind::Key {
                            continue;
                        }
                        if !matches!(applied.event.body, Body::KeyDeleted(_)) {
                            continue;
                        }
                        let Ok(key_id) = applied.event.record.aggregate_id.parse::<KeyId>() else { continue };
                        let deleted = ctx.follower.read().is_deleted(&applied.event.record.account, &key_id);
                        if deleted {
                            erase(&ctx, &applied.event.record.account, &key_id).await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let tombstones = ctx.follower.read().deleted_keys();
                        for (account, key_id) in tombstones {
                            erase(&ctx, &account, &key_id).await;
                        }
                    }
                    Err(_) => return,
                }
            }
        })
    };
    vec![scheduler, eraser]
}

async fn erase(ctx: &RoleCtx, account: &str, key_id: &KeyId) {
    match ctx.cache.erase_key(account, key_id.as_bytes(), &key_id.to_string()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(key_id = %key_id, erased = n, "key material erased"),
        Err(e) => tracing::warn!(key_id = %key_id, error = %e, "key material not erased yet"),
    }
}
