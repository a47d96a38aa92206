//! What authorized each management event: the key policy statement or grant, recomputed from
//! the log itself (issue #6: "every authorization decision is audited").
//!
//! A management request that changed a key is recorded by its control event, whose frozen
//! header has no room for the deciding statement. The decision is deterministic, though: keyd
//! decided it with [`keyledger_kms::authorize`] against the key's state just before the event
//! (optimistic concurrency on the key's chain guarantees no other event of that key came in
//! between), as the event's principal, at the event's writer time. [`Authorities`] folds the
//! control stream in order, and before applying each event evaluates the same decision on the
//! state before it. Replaying the log gives the same answers.
//!
//! The answer is the text of [`keyledger_kms::Authorization::audit_text`] (`key-policy:<Sid>`,
//! `grant:<id>`, `account` for CreateKey), `service` for the service's own events (rotation,
//! deletion, expiry), and `not-allowed` when the state before the event would *not* have allowed
//! it — which a correct keyd never writes, so it flags an event to investigate (a semantic
//! finding in the sense of audit-integrity.md §2.9, L5).

use keyledger_events::{principal_kind, AggregateKind, Body, Event};
use keyledger_kms::{authorize, Access, Caller, GrantConstraint, GrantOperation, KeyId, Projection, Realm};

use crate::record::control_operation;

/// The control-stream fold that names what authorized each event.
#[derive(Default)]
pub struct Authorities {
    projection: Projection,
    realm: Realm,
}

impl Authorities {
    /// An empty fold for a deployment with `realm`.
    pub fn new(realm: Realm) -> Self {
        Self { projection: Projection::new(), realm }
    }

    /// The control sequence folded so far.
    pub fn last_seq(&self) -> u64 {
        self.projection.last_applied_seq()
    }

    /// What authorized `event` (stored at control sequence `seq`, server time
    /// `server_time_unix_ms`), then folds it.
    ///
    /// Errors: the event does not apply (a broken chain): the caller stops, as the roles do.
    pub fn note(&mut self, seq: u64, server_time_unix_ms: u64, event: &Event) -> Result<String, String> {
        let by = self.decide(event);
        self.projection.apply(seq, server_time_unix_ms, event).map_err(|e| format!("control sequence {seq}: {e}"))?;
        Ok(by)
    }

    fn decide(&self, event: &Event) -> String {
        let r = &event.record;
        if r.principal.kind == principal_kind::SERVICE || r.request_id == [0; 16] {
            return "service".to_owned();
        }
        let Some((op, _)) = control_operation(&event.body, &r.principal) else { return String::new() };
        let caller = Caller { account: r.principal.account.clone(), principal: r.principal.clone() };
        let action: &'static str = match op {
            "CreateKey" => return keyledger_kms::Authorization::OwnAccount.audit_text(),
            "RetireGrant" => {
                // RetireGrant is authorized by the grant itself (AWS API reference).
                if let Body::GrantRetired(g) = &event.body {
                    return format!("grant:{}", hex::encode(g.grant_id));
                }
                return String::new();
            }
            other => match keyledger_kms::Operation::from_name(other) {
                Some(o) => o.name(),
                None => return String::new(),
            },
        };
        let key_id = match (&event.aggregate_kind(), &event.body) {
            (AggregateKind::Key, _) => KeyId::parse(&r.aggregate_id),
            (AggregateKind::Alias, Body::AliasCreated(a)) => Some(KeyId::from_bytes(a.target_key_id)),
            (AggregateKind::Alias, Body::AliasUpdated(a)) => Some(KeyId::from_bytes(a.target_key_id)),
            (AggregateKind::Alias, Body::AliasDeleted(a)) => Some(KeyId::from_bytes(a.target_key_id)),
            _ => None,
        };
        let Some(key) = key_id.and_then(|id| self.projection.key(&r.account, &id)) else {
            return "not-allowed".to_owned();
        };
        let access = match &event.body {
            Body::GrantCreated(g) => {
                let operations: Vec<GrantOperation> =
                    g.operations.iter().filter_map(|c| GrantOperation::from_code(*c)).collect();
                let constraint = g.constraint.as_ref().and_then(GrantConstraint::from_event);
                Access::create_grant(
                    &caller,
                    r.time_unix_ms,
                    &operations,
                    &g.grantee_principal,
                    Some(&g.retiring_principal),
                    constraint.as_ref(),
                )
            }
            _ => Access::new(&caller, action, r.time_unix_ms),
        };
        match authorize(&self.realm, key, &access) {
            Ok(a) => a.audit_text(),
            Err(_) => "not-allowed".to_owned(),
        }
    }
}
