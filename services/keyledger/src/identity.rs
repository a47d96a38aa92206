//! Who is calling: the identity the NATS server stamps, never one the caller claims.
//!
//! Tenants are NATS accounts that import `kms.v1.>` from the service account with
//! `share: true`; the server then writes a `Nats-Request-Info` header (JSON with `acc` and
//! `user`) on every request that crosses the import, replacing any header the client forged
//! (nats-tantivy.md §3.4, observed on nats-server 2.15.1). A request without that header did
//! not cross an import — it came from inside the service account — and is refused.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use keyledger_events::{principal_kind, PrincipalV1};
use keyledger_kms::{Caller, ErrorKind, KmsError};

/// The server-stamped request-info header.
pub const REQUEST_INFO_HEADER: &str = "Nats-Request-Info";

/// Longest NATS account or user name we record, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// Resolves callers from request headers using the configured NATS-account → Keyledger-account
/// map (Keyledger accounts are 12-digit AWS-style ids used in ARNs).
#[derive(Debug, Clone)]
pub struct Identities {
    accounts: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RequestInfo {
    #[serde(default)]
    acc: String,
    #[serde(default)]
    user: String,
}

impl Identities {
    /// `accounts` maps NATS account names to Keyledger account ids.
    pub fn new(accounts: BTreeMap<String, String>) -> Self {
        Self { accounts }
    }

    /// The caller of a request, or AccessDeniedException when the request did not cross a
    /// service import or came from an account that has no Keyledger account.
    pub fn caller(&self, headers: Option<&HeaderMap>) -> Result<Caller, KmsError> {
        let raw = headers
            .and_then(|h| h.get(REQUEST_INFO_HEADER))
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| denied("The request carries no server-stamped caller identity."))?;
        let info: RequestInfo = serde_json::from_str(&raw)
            .map_err(|_| denied("The request carries an unreadable caller identity."))?;
        if info.acc.is_empty() || info.acc.len() > MAX_NAME_BYTES || info.user.len() > MAX_NAME_BYTES {
            return Err(denied("The request carries no usable caller identity."));
        }
        let account = self
            .accounts
            .get(&info.acc)
            .cloned()
            .ok_or_else(|| denied("The caller's NATS account is not mapped to a Keyledger account."))?;
        let user = if info.user.is_empty() { "root".to_owned() } else { info.user.clone() };
        let arn = if info.user.is_empty() {
            format!("arn:aws:iam::{account}:root")
        } else {
            format!("arn:aws:iam::{account}:user/{user}")
        };
        Ok(Caller {
            account: account.clone(),
            principal: PrincipalV1 {
                kind: principal_kind::NATS_USER,
                account,
                arn,
                nats_account: info.acc,
                user: info.user,
            },
        })
    }
}

fn denied(message: &str) -> KmsError {
    KmsError::new(ErrorKind::AccessDenied, message)
}
