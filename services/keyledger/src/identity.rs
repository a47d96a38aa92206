//! Who is calling: the identity the NATS server stamps, never one the caller claims.
//!
//! Tenants are NATS accounts that import `kms.v1.>` from the service account with
//! `share: true`; the server then writes a `Nats-Request-Info` header (JSON with `acc`, `user`,
//! `name`, `host`, …) on every request that crosses the import, replacing any header the client
//! forged (nats-tantivy.md §3.4, observed on nats-server 2.15.1). A request without that header
//! did not cross an import — it came from inside the service account — and is refused.
//!
//! **The gateway.** The AWS HTTP endpoint verifies SigV4 and forwards each request over NATS
//! from its own account (`GATEWAY` by default, `keyledger_nats_server::GATEWAY_ACCOUNT`) with
//! the header [`FORWARDED_PRINCIPAL_HEADER`] naming the verified principal
//! ([`ForwardedPrincipal`]). That header is believed **only** when the server-stamped
//! `Nats-Request-Info.acc` is the configured gateway account. The rules, in order:
//!
//! | stamped `acc` | forwarded header | result |
//! |---|---|---|
//! | none (no `Nats-Request-Info`) | any | AccessDenied |
//! | the gateway account | absent, repeated or invalid | AccessDenied (the gateway is no tenant) |
//! | the gateway account | one valid header | the forwarded SigV4 principal, transport HTTP |
//! | any other account | present (any letter case) | **AccessDenied**: a tenant claiming a SigV4 identity is refused outright, not silently served as itself, so the attempt is visible in the audit log |
//! | a mapped tenant account | absent | the NATS user of that account, transport NATS |
//! | an unmapped account | absent | AccessDenied |

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use keyledger_events::codes::transport;
use keyledger_events::{principal_kind, PrincipalV1, SourceV1};
use keyledger_kms::{Caller, ErrorKind, KmsError};

/// The server-stamped request-info header.
pub const REQUEST_INFO_HEADER: &str = "Nats-Request-Info";

/// Request header set by the gateway only: the SigV4 principal it verified, as the JSON of a
/// [`ForwardedPrincipal`]. Believed only on requests stamped with the gateway account.
pub const FORWARDED_PRINCIPAL_HEADER: &str = "Keyledger-Forwarded-Principal";

/// Longest NATS account or user name we record, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// Longest client name (NATS connection name, HTTP User-Agent) recorded, in bytes
/// (`SourceV1::client_name`).
pub const MAX_CLIENT_NAME_BYTES: usize = 256;
/// Longest client address recorded, in bytes (`SourceV1::client_addr`).
pub const MAX_CLIENT_ADDR_BYTES: usize = 64;
/// Longest principal ARN accepted from the gateway, in bytes (IAM ARNs are at most 2048).
const MAX_PRINCIPAL_ARN_BYTES: usize = 2048;
/// Longest access key id accepted from the gateway, in bytes (IAM: 16..=128 characters).
const MAX_ACCESS_KEY_ID_BYTES: usize = 128;

/// The principal the gateway verified (SigV4) and forwards in [`FORWARDED_PRINCIPAL_HEADER`].
///
/// JSON object with exactly these members (unknown members are refused):
/// `{"account": "111122223333", "principal_arn": "arn:aws:iam::111122223333:user/alice",
///   "access_key_id": "KLAK…", "source_addr": "127.0.0.1:50412", "user_agent": "Boto3/…"}`.
/// Never carries the secret or the signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedPrincipal {
    /// Keyledger account of the access key: exactly 12 ASCII digits.
    pub account: String,
    /// Principal ARN, `arn:<partition>:iam::<account>:user/<user name>` (≤ 2048 bytes; the
    /// account inside must equal `account`).
    pub principal_arn: String,
    /// The access key id the request was signed with (`[A-Z0-9]`, 16..=128 characters).
    pub access_key_id: String,
    /// The HTTP client's address `ip:port` as the gateway saw it (≤ 64 bytes).
    pub source_addr: String,
    /// The HTTP `User-Agent`, printable ASCII, ≤ 256 bytes (may be empty).
    pub user_agent: String,
}

impl ForwardedPrincipal {
    /// Checks the shapes documented on the fields.
    ///
    /// # Errors
    /// A static description of the first violated rule (safe to log).
    pub fn validate(&self) -> Result<(), &'static str> {
        if !is_account_id(&self.account) {
            return Err("account must be 12 digits");
        }
        if self.principal_arn.len() > MAX_PRINCIPAL_ARN_BYTES {
            return Err("principal ARN too long");
        }
        let mut parts = self.principal_arn.splitn(6, ':');
        let ok = parts.next() == Some("arn")
            && parts.next().is_some_and(|p| !p.is_empty())
            && parts.next() == Some("iam")
            && parts.next() == Some("")
            && parts.next() == Some(self.account.as_str())
            && parts.next().is_some_and(|r| r.starts_with("user/") && r.len() > 5);
        if !ok {
            return Err("principal ARN must be arn:<partition>:iam::<account>:user/<name>");
        }
        let id = &self.access_key_id;
        if id.len() < 16
            || id.len() > MAX_ACCESS_KEY_ID_BYTES
            || !id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err("access key id must be 16..=128 characters of [A-Z0-9]");
        }
        if self.source_addr.len() > MAX_CLIENT_ADDR_BYTES {
            return Err("source address too long");
        }
        if self.user_agent.len() > MAX_CLIENT_NAME_BYTES || !self.user_agent.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err("user agent must be at most 256 bytes of printable ASCII");
        }
        Ok(())
    }

    /// The header value (compact JSON; never contains CR or LF).
    pub fn to_header_value(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings serializes")
    }
}

/// Resolves callers from request headers using the configured NATS-account → Keyledger-account
/// map (Keyledger accounts are 12-digit AWS-style ids used in ARNs) and the gateway account.
#[derive(Debug, Clone)]
pub struct Identities {
    accounts: BTreeMap<String, String>,
    gateway_account: Option<String>,
}

#[derive(serde::Deserialize)]
struct RequestInfo {
    #[serde(default)]
    acc: String,
    #[serde(default)]
    user: String,
    /// Client connection name (`ConnectOptions::name`).
    #[serde(default)]
    name: String,
    /// Client IP address as the server saw it.
    #[serde(default)]
    host: String,
}

impl Identities {
    /// `accounts` maps NATS account names to Keyledger account ids. The gateway account is
    /// `keyledger_nats_server::GATEWAY_ACCOUNT` (`GATEWAY`); change it with
    /// [`Identities::with_gateway_account`].
    pub fn new(accounts: BTreeMap<String, String>) -> Self {
        Self { accounts, gateway_account: Some(keyledger_nats_server::GATEWAY_ACCOUNT.to_owned()) }
    }

    /// Sets the NATS account whose requests may forward a SigV4 principal (`None`: no account
    /// may; every forwarded principal is then refused).
    pub fn with_gateway_account(mut self, account: Option<String>) -> Self {
        self.gateway_account = account;
        self
    }

    /// The gateway account, if any.
    pub fn gateway_account(&self) -> Option<&str> {
        self.gateway_account.as_deref()
    }

    /// True when the server stamped the request with the gateway account and it forwards no
    /// principal: the gateway speaking for itself (its refusal reports,
    /// [`crate::gateway::audit::RefusalReport`]).
    pub fn is_the_gateway_itself(&self, headers: Option<&HeaderMap>) -> bool {
        let Some(headers) = headers else { return false };
        let stamped = headers
            .get(REQUEST_INFO_HEADER)
            .and_then(|v| serde_json::from_str::<RequestInfo>(v.as_str()).ok())
            .map(|info| info.acc);
        forwarded_values(Some(headers)).is_empty()
            && stamped.is_some()
            && stamped.as_deref() == self.gateway_account.as_deref()
    }

    /// The caller of a request (see the module docs for the rules), or AccessDeniedException.
    pub fn caller(&self, headers: Option<&HeaderMap>) -> Result<Caller, KmsError> {
        self.caller_and_source(headers).map(|(caller, _)| caller)
    }

    /// The caller of a request and where it came from (for the audit record): for NATS
    /// callers transport [`transport::NATS`] with the stamped connection name and host; for
    /// gateway-forwarded callers transport [`transport::HTTP`] with the HTTP User-Agent and
    /// client address.
    ///
    /// # Errors
    /// AccessDeniedException for every refusal in the module docs' table.
    pub fn caller_and_source(&self, headers: Option<&HeaderMap>) -> Result<(Caller, SourceV1), KmsError> {
        let raw = headers
            .and_then(|h| h.get(REQUEST_INFO_HEADER))
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| denied("The request carries no server-stamped caller identity."))?;
        let info: RequestInfo =
            serde_json::from_str(&raw).map_err(|_| denied("The request carries an unreadable caller identity."))?;
        if info.acc.is_empty() || info.acc.len() > MAX_NAME_BYTES || info.user.len() > MAX_NAME_BYTES {
            return Err(denied("The request carries no usable caller identity."));
        }
        let forwarded = forwarded_values(headers);
        if self.gateway_account.as_deref() == Some(info.acc.as_str()) {
            return self.forwarded_caller(&info, headers, &forwarded);
        }
        if !forwarded.is_empty() {
            return Err(denied("Only the gateway may forward a principal."));
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
        let source = SourceV1 {
            transport: transport::NATS,
            client_name: truncate(&info.name, MAX_CLIENT_NAME_BYTES),
            client_addr: truncate(&info.host, MAX_CLIENT_ADDR_BYTES),
        };
        let caller = Caller {
            account: account.clone(),
            principal: PrincipalV1 {
                kind: principal_kind::NATS_USER,
                account,
                arn,
                nats_account: info.acc,
                user: info.user,
            },
        };
        Ok((caller, source))
    }

    fn forwarded_caller(
        &self,
        info: &RequestInfo,
        headers: Option<&HeaderMap>,
        forwarded: &[&str],
    ) -> Result<(Caller, SourceV1), KmsError> {
        // Exactly one value, under the exact header name the gateway writes.
        let exact = headers.map(|h| h.get_all(FORWARDED_PRINCIPAL_HEADER).count()).unwrap_or(0);
        if forwarded.len() != 1 || exact != 1 {
            return Err(denied("The gateway must forward exactly one principal."));
        }
        let principal: ForwardedPrincipal =
            serde_json::from_str(forwarded[0]).map_err(|_| denied("The forwarded principal is unreadable."))?;
        principal.validate().map_err(|_| denied("The forwarded principal is not valid."))?;
        let source = SourceV1 {
            transport: transport::HTTP,
            client_name: principal.user_agent.clone(),
            client_addr: principal.source_addr.clone(),
        };
        let caller = Caller {
            account: principal.account.clone(),
            principal: PrincipalV1 {
                kind: principal_kind::SIGV4,
                account: principal.account,
                arn: principal.principal_arn,
                nats_account: info.acc.clone(),
                user: principal.access_key_id,
            },
        };
        Ok((caller, source))
    }
}

/// Every value of [`FORWARDED_PRINCIPAL_HEADER`], under any letter case of its name.
fn forwarded_values(headers: Option<&HeaderMap>) -> Vec<&str> {
    headers
        .map(|h| {
            h.iter()
                .filter(|(name, _)| AsRef::<str>::as_ref(*name).eq_ignore_ascii_case(FORWARDED_PRINCIPAL_HEADER))
                .flat_map(|(_, values)| values.iter().map(|v| v.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn denied(message: &str) -> KmsError {
    KmsError::new(ErrorKind::AccessDenied, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identities() -> Identities {
        Identities::new(BTreeMap::from([("DEV".to_owned(), "111122223333".to_owned())]))
    }

    fn principal() -> ForwardedPrincipal {
        ForwardedPrincipal {
            account: "444455556666".into(),
            principal_arn: "arn:aws:iam::444455556666:user/alice".into(),
            access_key_id: "KLAKABCDEFGHIJKLMNOP".into(),
            source_addr: "127.0.0.1:50000".into(),
            user_agent: "Boto3/1.44.8".into(),
        }
    }

    fn headers(info: &str, forwarded: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_INFO_HEADER, info);
        for (name, value) in forwarded {
            h.append(*name, value.as_str());
        }
        h
    }

    #[test]
    fn a_tenant_request_is_its_nats_user_with_nats_transport() {
        let h = headers(r#"{"acc":"DEV","user":"dev","name":"my-app","host":"10.0.0.7"}"#, &[]);
        let (caller, source) = identities().caller_and_source(Some(&h)).unwrap();
        assert_eq!(caller.account, "111122223333");
        assert_eq!(caller.principal.kind, principal_kind::NATS_USER);
        assert_eq!(caller.principal.arn, "arn:aws:iam::111122223333:user/dev");
        assert_eq!(
            source,
            SourceV1 { transport: transport::NATS, client_name: "my-app".into(), client_addr: "10.0.0.7".into() }
        );
    }

    #[test]
    fn the_gateway_account_forwards_a_sigv4_principal_with_http_transport() {
        let h = headers(
            r#"{"acc":"GATEWAY","user":"gateway"}"#,
            &[(FORWARDED_PRINCIPAL_HEADER, principal().to_header_value())],
        );
        let (caller, source) = identities().caller_and_source(Some(&h)).unwrap();
        assert_eq!(caller.account, "444455556666");
        assert_eq!(caller.principal.kind, principal_kind::SIGV4);
        assert_eq!(caller.principal.arn, "arn:aws:iam::444455556666:user/alice");
        assert_eq!(caller.principal.user, "KLAKABCDEFGHIJKLMNOP");
        assert_eq!(caller.principal.nats_account, "GATEWAY");
        assert_eq!(source.transport, transport::HTTP);
        assert_eq!(source.client_name, "Boto3/1.44.8");
        assert_eq!(source.client_addr, "127.0.0.1:50000");
        assert_eq!(identities().caller(Some(&h)).unwrap(), caller);
    }

    #[test]
    fn a_tenant_sending_a_forwarded_principal_is_refused_in_any_letter_case() {
        for name in [FORWARDED_PRINCIPAL_HEADER, "keyledger-forwarded-principal"] {
            let h = headers(r#"{"acc":"DEV","user":"dev"}"#, &[(name, principal().to_header_value())]);
            let e = identities().caller(Some(&h)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::AccessDenied, "{name}");
        }
    }

    #[test]
    fn the_gateway_without_or_with_two_or_bad_principals_is_refused() {
        let gw = r#"{"acc":"GATEWAY","user":"gateway"}"#;
        let none = headers(gw, &[]);
        assert_eq!(identities().caller(Some(&none)).unwrap_err().kind, ErrorKind::AccessDenied);
        let two = headers(
            gw,
            &[
                (FORWARDED_PRINCIPAL_HEADER, principal().to_header_value()),
                (FORWARDED_PRINCIPAL_HEADER, principal().to_header_value()),
            ],
        );
        assert_eq!(identities().caller(Some(&two)).unwrap_err().kind, ErrorKind::AccessDenied);
        let mut other_account = principal();
        other_account.principal_arn = "arn:aws:iam::111122223333:user/alice".into();
        let mut short_account = principal();
        short_account.account = "4444".into();
        let mut bad_ua = principal();
        bad_ua.user_agent = "x\u{7}".into();
        for p in [other_account, short_account, bad_ua] {
            let h = headers(gw, &[(FORWARDED_PRINCIPAL_HEADER, p.to_header_value())]);
            assert_eq!(identities().caller(Some(&h)).unwrap_err().kind, ErrorKind::AccessDenied, "{p:?}");
        }
        let extra = headers(
            gw,
            &[(FORWARDED_PRINCIPAL_HEADER, principal().to_header_value().replacen('{', r#"{"admin":true,"#, 1))],
        );
        assert_eq!(identities().caller(Some(&extra)).unwrap_err().kind, ErrorKind::AccessDenied);
    }

    #[test]
    fn with_no_gateway_account_nobody_may_forward() {
        let ids = identities().with_gateway_account(None);
        let h = headers(
            r#"{"acc":"GATEWAY","user":"gateway"}"#,
            &[(FORWARDED_PRINCIPAL_HEADER, principal().to_header_value())],
        );
        assert_eq!(ids.caller(Some(&h)).unwrap_err().kind, ErrorKind::AccessDenied);
    }

    #[test]
    fn requests_without_stamped_identity_are_refused() {
        assert_eq!(identities().caller(None).unwrap_err().kind, ErrorKind::AccessDenied);
        let h = headers("not json", &[]);
        assert_eq!(identities().caller(Some(&h)).unwrap_err().kind, ErrorKind::AccessDenied);
    }

    #[test]
    fn long_client_names_are_cut_at_a_character_boundary() {
        let name = "é".repeat(200);
        let h = headers(&format!(r#"{{"acc":"DEV","user":"dev","name":"{name}"}}"#), &[]);
        let (_, source) = identities().caller_and_source(Some(&h)).unwrap();
        assert!(source.client_name.len() <= MAX_CLIENT_NAME_BYTES);
        assert!(name.starts_with(&source.client_name));
    }
}
