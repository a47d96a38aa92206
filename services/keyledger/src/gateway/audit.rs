//! Where the gateway reports requests it refused before they reached NATS (SigV4 failures).
//!
//! The roles audit every request that reaches them; a request the gateway refuses never does,
//! so the gateway reports it here. [`RejectionSink::record_rejection`] is awaited before the
//! client gets its error, so a sink that appends to the audit log keeps "audit first" for
//! rejections too. [`LogRejections`] (the default until the audit write path takes it over)
//! logs one `info` line per rejection.

use std::future::Future;
use std::pin::Pin;

/// One refused request, as the audit log should keep it. Never holds a secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The gateway's request id (UUID v4), also sent to the client as `x-amzn-RequestId`.
    pub request_id: uuid::Uuid,
    /// When it was refused, gateway clock, ms since the epoch.
    pub time_unix_ms: u64,
    /// AWS error name returned (`MissingAuthenticationTokenException`,
    /// `IncompleteSignatureException`, `InvalidSignatureException`,
    /// `UnrecognizedClientException`).
    pub error_name: &'static str,
    /// Stable reason code (`missing`, `incomplete`, `scope`, `clock_skew`,
    /// `unknown_access_key`, `session_token`, `bad_signature`).
    pub reason: &'static str,
    /// The access key id the request named (not secret), if any (≤ 128 bytes).
    pub access_key_id: Option<String>,
    /// The operation the request named in `X-Amz-Target`, if well-formed.
    pub operation: Option<String>,
    /// The client's address `ip:port`.
    pub source_addr: String,
    /// The client's `User-Agent`, printable ASCII, ≤ 256 bytes.
    pub user_agent: String,
}

/// Receives every SigV4 rejection before the client is answered.
pub trait RejectionSink: Send + Sync + 'static {
    /// Records `rejection`. Must not fail the request; a sink that cannot store the record
    /// logs that itself.
    fn record_rejection(&self, rejection: Rejection) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Logs each rejection at `info` (target `keyledger::gateway::audit`): request id, access
/// key id, reason, error name, operation, source address, user agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogRejections;

impl RejectionSink for LogRejections {
    fn record_rejection(&self, r: Rejection) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            tracing::info!(
                request_id = %r.request_id,
                access_key_id = r.access_key_id.as_deref().unwrap_or(""),
                reason = r.reason,
                error = r.error_name,
                operation = r.operation.as_deref().unwrap_or(""),
                source = %r.source_addr,
                user_agent = %r.user_agent,
                "gateway refused a request"
            );
        })
    }
}

/// Writes each rejection to the audit log as a usage record (outcome DENIED, transport HTTP,
/// principal = the access key id it named, if any) through this process's audit writer, and
/// waits for it to be stored before the client is answered. Falls back to a log line if the
/// record cannot be stored (the client is refused either way).
pub struct AuditRejections {
    /// The process's audit writer.
    pub audit: crate::audit::AuditWriter,
}

impl RejectionSink for AuditRejections {
    fn record_rejection(&self, r: Rejection) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let record = keyledger_events::UsageRecordV1 {
                request_id: *r.request_id.as_bytes(),
                time_unix_ms: r.time_unix_ms,
                operation: r.operation.clone().unwrap_or_default(),
                principal: keyledger_events::PrincipalV1 {
                    kind: keyledger_events::principal_kind::SIGV4,
                    account: String::new(),
                    arn: String::new(),
                    nats_account: String::new(),
                    user: r.access_key_id.clone().unwrap_or_default(),
                },
                source: keyledger_events::SourceV1 {
                    transport: keyledger_events::codes::transport::HTTP,
                    client_name: r.user_agent.clone(),
                    client_addr: r.source_addr.clone(),
                },
                key_id_supplied: String::new(),
                key_arn: String::new(),
                material_version: 0,
                encryption_context: Vec::new(),
                authorized_by: format!("sigv4:{}", r.reason),
                outcome: keyledger_events::codes::outcome::DENIED,
                error_name: r.error_name.to_owned(),
                decided_at_seq: 0,
                ciphertext_digest: None,
                pending_deletion_alarm: false,
            };
            if let Err(e) = self.audit.write(record).await {
                tracing::warn!(error = %e, "cannot record a gateway rejection in the audit log");
                LogRejections.record_rejection(r).await;
            }
        })
    }
}
