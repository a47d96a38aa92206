//! Where the gateway reports the requests it refuses itself, before they reach a role: SigV4
//! failures, bodies over the size limit or not received, and authenticated requests that name
//! no operation (another method or path, a missing or malformed `X-Amz-Target`).
//!
//! The roles audit every request that reaches them; a request the gateway refuses never does,
//! so the gateway reports it. By default ([`ReportToRoles`]) each refusal is sent over NATS to
//! the roles as a [`RefusalReport`] on `kms.v1.`[`REPORT_OPERATION`]; a role writes it to the
//! audit log as a usage record and answers only once the record is stored, and the gateway
//! waits for that answer before the client hears of the refusal ("audit first" holds for
//! refusals too). The roles believe a report only from the gateway's NATS account
//! (server-stamped `Nats-Request-Info`), as they believe forwarded principals. The operation
//! name starts with `_`, which no `X-Amz-Target` can name (targets are letters and digits), so
//! no HTTP client can forge a report through the gateway.
//!
//! **Bounded.** An unauthenticated client can make the gateway refuse as fast as it can send.
//! Refusals are therefore rate limited per client network (an IPv4 address, an IPv6 /64) and
//! in all ([`crate::gateway::GatewayLimits`]); a refusal over the limit is still answered, but
//! only counted, and the counts are reported every [`crate::audit::RateLimiter::FLUSH_EVERY`]
//! as [`SuppressedRequestsV1`] summaries whose principal ARN is
//! `keyledger:http-client:<network>` ([`client_principal`]). Nothing is lost; a flood costs one
//! summary per network per flush instead of one record per request.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use keyledger_events::{principal_kind, PrincipalV1, SuppressedRequestsV1};

use crate::identity::ForwardedPrincipal;
use crate::protocol::SERVICE_ERROR_HEADER;

/// The NATS operation token of a refusal report: subject `kms.v1._GatewayRefusal`. Starts with
/// `_` so no `X-Amz-Target` can name it.
pub const REPORT_OPERATION: &str = "_GatewayRefusal";

/// The AWS errors of a failed authentication (recorded with outcome DENIED; every other
/// refusal is recorded with outcome ERROR).
pub const AUTHENTICATION_ERRORS: &[&str] = &[
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
];

/// The other error names a refusal may carry (recorded with outcome ERROR); with
/// [`AUTHENTICATION_ERRORS`], every name a refusal may carry.
pub const GATEWAY_ERRORS: &[&str] =
    &["UnknownOperationException", "RequestEntityTooLargeException", "SerializationException", "ThrottlingException"];

/// The principal ARN prefix of a client network's suppressed-refusal summaries (the audit
/// index shows such summaries as HTTP, with no error name).
pub const CLIENT_PRINCIPAL_PREFIX: &str = keyledger_audit_index::HTTP_CLIENT_PRINCIPAL_PREFIX;

/// One refused request, as the audit log keeps it. Never holds a secret, a signature or a
/// body. JSON on the wire (unknown members refused).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// The gateway's request id (UUID v4), also sent to the client as `x-amzn-RequestId` and
    /// recorded as the usage record's request id.
    pub request_id: uuid::Uuid,
    /// When it was refused, gateway clock, ms since the epoch.
    pub time_unix_ms: u64,
    /// AWS error name returned, one of [`AUTHENTICATION_ERRORS`] or [`GATEWAY_ERRORS`].
    pub error_name: String,
    /// Stable reason code, ≤ 32 ASCII bytes: for SigV4 `missing`, `incomplete`, `scope`,
    /// `clock_skew`, `unknown_access_key`, `session_token`, `bad_signature`
    /// ([`crate::gateway::sigv4::Rejection::reason`]); else `body_too_large`,
    /// `body_unreadable`, `busy` (no room for the body within the body timeout),
    /// `not_post_root` (another method or path), `no_target` (a missing, malformed or repeated
    /// `X-Amz-Target`).
    pub reason: String,
    /// The access key id the request named (not secret), if any (≤ 128 printable ASCII bytes).
    pub access_key_id: Option<String>,
    /// The verified principal, for requests refused after SigV4 succeeded.
    pub authenticated: Option<ForwardedPrincipal>,
    /// The operation the request named in `X-Amz-Target`, if well-formed (≤ 64 bytes).
    pub operation: Option<String>,
    /// The client's address `ip:port` (≤ 64 bytes).
    pub source_addr: String,
    /// The client's `User-Agent`, printable ASCII, ≤ 256 bytes.
    pub user_agent: String,
}

impl Rejection {
    /// Checks the shapes documented on the fields (the roles run it on every report).
    ///
    /// # Errors
    /// A static description of the first violated rule (safe to log).
    pub fn validate(&self) -> Result<(), &'static str> {
        let printable = |s: &str, max: usize| s.len() <= max && s.bytes().all(|b| (0x20..0x7f).contains(&b));
        let name = self.error_name.as_str();
        if !AUTHENTICATION_ERRORS.contains(&name) && !GATEWAY_ERRORS.contains(&name) {
            return Err("unknown error name");
        }
        if self.reason.is_empty() || !printable(&self.reason, 32) {
            return Err("reason must be 1..=32 printable ASCII bytes");
        }
        if self.access_key_id.as_deref().is_some_and(|a| !printable(a, 128)) {
            return Err("access key id must be at most 128 printable ASCII bytes");
        }
        if self
            .operation
            .as_deref()
            .is_some_and(|o| o.is_empty() || o.len() > 64 || !o.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err("operation must be 1..=64 ASCII letters and digits");
        }
        if !printable(&self.source_addr, 64) || !printable(&self.user_agent, 256) {
            return Err("source address or user agent too long or not printable");
        }
        if let Some(p) = &self.authenticated {
            p.validate()?;
        }
        Ok(())
    }

    /// The outcome code it is recorded with: DENIED for a failed authentication, else ERROR.
    pub fn outcome(&self) -> u16 {
        if AUTHENTICATION_ERRORS.contains(&self.error_name.as_str()) {
            keyledger_events::codes::outcome::DENIED
        } else {
            keyledger_events::codes::outcome::ERROR
        }
    }
}

/// What the gateway sends on `kms.v1.`[`REPORT_OPERATION`]: JSON `{"refused": {…}}` or
/// `{"suppressed": {…}}`. For a refusal a role answers `{}` once the record is stored, with
/// the record's request id and position in the usual reply headers; for a summary once it is
/// queued for the lane's next block (as the roles' own rate-limiter summaries are); or an AWS
/// error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RefusalReport {
    /// One refusal, recorded as one usage record.
    Refused(Rejection),
    /// Refusals of one client network that were over the rate limit, recorded as one
    /// summary. Its principal is [`client_principal`] of the network.
    Suppressed(SuppressedRequestsV1),
}

/// The principal of a client network's refusal summaries: kind SIGV4, ARN
/// `keyledger:http-client:<network>` where the network is the IPv4 address or the IPv6 /64
/// prefix (`2001:db8:1:2::/64`) of `ip`; no account, no user.
pub fn client_principal(ip: IpAddr) -> PrincipalV1 {
    let network = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
    };
    network_principal(&network)
}

/// The principal of `network`'s refusal summaries (see [`client_principal`]).
pub fn network_principal(network: &str) -> PrincipalV1 {
    PrincipalV1 {
        kind: principal_kind::SIGV4,
        account: String::new(),
        arn: format!("{CLIENT_PRINCIPAL_PREFIX}{network}"),
        nats_account: String::new(),
        user: String::new(),
    }
}

/// Receives every refusal that is within the rate limit before the client is answered, and
/// the suppressed counts of the others.
pub trait RejectionSink: Send + Sync + 'static {
    /// Records `rejection`. Must not fail the request; a sink that cannot store the record
    /// logs that itself.
    fn record_rejection(&self, rejection: Rejection) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// Records a summary of refusals over the rate limit. The default logs it.
    fn record_suppressed(&self, summary: SuppressedRequestsV1) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move { log_suppressed(&summary) })
    }
}

fn log_suppressed(s: &SuppressedRequestsV1) {
    tracing::info!(
        client = %s.principal.arn,
        count = s.count,
        from_unix_ms = s.window_start_unix_ms,
        to_unix_ms = s.window_end_unix_ms,
        "gateway refusals over the rate limit (counted, not recorded one by one)"
    );
}

/// Logs each refusal at `info` (target `keyledger::gateway::audit`): request id, access key
/// id, reason, error name, operation, source address, user agent. Writes nothing to the audit
/// log; for tests and as the fallback of [`ReportToRoles`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LogRejections;

impl RejectionSink for LogRejections {
    fn record_rejection(&self, r: Rejection) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            tracing::info!(
                request_id = %r.request_id,
                access_key_id = r.access_key_id.as_deref().unwrap_or(""),
                reason = %r.reason,
                error = %r.error_name,
                operation = r.operation.as_deref().unwrap_or(""),
                source = %r.source_addr,
                user_agent = %r.user_agent,
                "gateway refused a request"
            );
        })
    }
}

/// Sends each report to the roles over the gateway's NATS connection and waits (at most
/// `timeout`) for the answer that says it is stored. If no role answers, or a role answers
/// with an error, the refusal is logged instead ([`LogRejections`], plus a warning); the
/// client is refused either way.
pub struct ReportToRoles {
    /// The gateway's NATS connection (the gateway account).
    pub nats: async_nats::Client,
    /// How long to wait for a role's answer.
    pub timeout: Duration,
}

impl ReportToRoles {
    async fn send(&self, report: &RefusalReport) -> Result<(), String> {
        let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
        let request = async_nats::Request::new().payload(body.into()).timeout(Some(self.timeout));
        let reply = self
            .nats
            .send_request(keyledger_events::names::api_subject(REPORT_OPERATION), request)
            .await
            .map_err(|e| e.to_string())?;
        match reply.headers.as_ref().and_then(|h| h.get(SERVICE_ERROR_HEADER)) {
            Some(error) => Err(error.as_str().to_owned()),
            None => Ok(()),
        }
    }
}

impl RejectionSink for ReportToRoles {
    fn record_rejection(&self, r: Rejection) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let report = RefusalReport::Refused(r);
            if let Err(e) = self.send(&report).await {
                tracing::warn!(error = %e, "cannot record a gateway refusal in the audit log; logging it instead");
                if let RefusalReport::Refused(r) = report {
                    LogRejections.record_rejection(r).await;
                }
            }
        })
    }

    fn record_suppressed(&self, summary: SuppressedRequestsV1) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let report = RefusalReport::Suppressed(summary);
            if let Err(e) = self.send(&report).await {
                tracing::warn!(error = %e, "cannot record a refusal summary in the audit log; logging it instead");
                if let RefusalReport::Suppressed(s) = &report {
                    log_suppressed(s);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection() -> Rejection {
        Rejection {
            request_id: uuid::Uuid::nil(),
            time_unix_ms: 1,
            error_name: "InvalidSignatureException".into(),
            reason: "bad_signature".into(),
            access_key_id: Some("KLAKEXAMPLEEXAMPLE12".into()),
            authenticated: None,
            operation: Some("ListKeys".into()),
            source_addr: "127.0.0.1:5000".into(),
            user_agent: "ua".into(),
        }
    }

    #[test]
    fn reports_round_trip_as_json_and_bad_shapes_are_refused() {
        let report = RefusalReport::Refused(rejection());
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.starts_with(r#"{"refused":{"#), "{json}");
        assert_eq!(serde_json::from_str::<RefusalReport>(&json).unwrap(), report);
        assert!(rejection().validate().is_ok());
        assert_eq!(rejection().outcome(), keyledger_events::codes::outcome::DENIED);
        let with = |f: fn(&mut Rejection)| {
            let mut r = rejection();
            f(&mut r);
            r.validate()
        };
        assert!(with(|r| r.error_name = "AccessDeniedException".into()).is_err(), "only the gateway's errors");
        assert!(with(|r| r.error_name = "ThrottlingException".into()).is_ok(), "no room for a body");
        assert!(with(|r| r.reason = String::new()).is_err());
        assert!(with(|r| r.operation = Some("_GatewayRefusal".into())).is_err());
        assert!(with(|r| r.user_agent = "x".repeat(257)).is_err());
        assert!(with(|r| r.access_key_id = Some("a\nb".into())).is_err());
        let mut unknown = rejection();
        unknown.error_name = "UnknownOperationException".into();
        assert_eq!(unknown.outcome(), keyledger_events::codes::outcome::ERROR);
        assert!(serde_json::from_str::<RefusalReport>(r#"{"refused":{"extra":1}}"#).is_err());
    }

    #[test]
    fn client_networks_are_ipv4_addresses_and_ipv6_64_prefixes() {
        let arn = |s: &str| client_principal(s.parse().unwrap()).arn;
        assert_eq!(arn("203.0.113.9"), "keyledger:http-client:203.0.113.9");
        assert_eq!(arn("2001:db8:1:2:3:4:5:6"), "keyledger:http-client:2001:db8:1:2::/64");
        assert_eq!(arn("2001:db8:1:2:ffff::1"), arn("2001:db8:1:2::9"), "one /64, one bucket");
        assert_eq!(arn("::ffff:192.0.2.1"), "keyledger:http-client:192.0.2.1");
    }
}
