//! The NATS API's wire conventions, shared by the roles and by clients.
//!
//! A request is a NATS request on `kms.v1.<Operation>` (the AWS operation name) whose body is
//! the AWS KMS JSON request (PascalCase members, blobs base64). The reply body is the AWS JSON
//! response, or on error `{"__type": "<AWS error name>", "message": "..."}` together with the
//! NATS micro error headers (`Nats-Service-Error`, `Nats-Service-Error-Code` = the HTTP status
//! AWS would use). Keyledger's own headers:
//!
//! | header | direction | meaning |
//! |---|---|---|
//! | `Keyledger-Min-Seq` | request | the reply must reflect the control log at least up to this stream sequence (decimal); the worker waits (bounded) instead of answering from older state |
//! | `Keyledger-Log-Seq` | reply | stream sequence of the event a mutating request appended (or of the state it read) |
//! | `Keyledger-Request-Id` | reply | the request id the service assigned (UUID), as recorded in the log |

use std::time::Duration;

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use serde_json::Value;

/// Request header: minimum control-log stream sequence the answer must reflect.
pub const MIN_SEQ_HEADER: &str = "Keyledger-Min-Seq";
/// Reply header: control-log stream sequence of the appended event / the state read.
pub const LOG_SEQ_HEADER: &str = "Keyledger-Log-Seq";
/// Reply header: the request id assigned by the service.
pub const REQUEST_ID_HEADER: &str = "Keyledger-Request-Id";
/// Reply header: the stream holding the request's audit record (`KL_CONTROL_V1` for a
/// management change, else the usage period's stream). With [`AUDIT_SEQ_HEADER`] it is the
/// record's log position; `GET /v1/audit/proof/{request id}` proves it against a checkpoint.
pub const AUDIT_STREAM_HEADER: &str = "Keyledger-Audit-Stream";
/// Reply header: the stream sequence of the message holding the request's audit record
/// (decimal; the Merkle leaf index is this minus 1).
pub const AUDIT_SEQ_HEADER: &str = "Keyledger-Audit-Seq";
/// Reply header of the NATS micro protocol: error status text (we put the AWS error name).
pub const SERVICE_ERROR_HEADER: &str = "Nats-Service-Error";
/// Reply header of the NATS micro protocol: error code (we put the AWS HTTP status).
pub const SERVICE_ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";

/// An error answered by the service (AWS error name and message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ServiceError {
    /// AWS error name, e.g. `NotFoundException`.
    pub name: String,
    /// Message (may be empty, as AWS's InvalidCiphertextException is).
    pub message: String,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The service answered with an AWS error.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// No answer (no responders, timeout, connection lost).
    #[error("transport: {0}")]
    Transport(String),
    /// The answer was not JSON.
    #[error("malformed reply: {0}")]
    Malformed(String),
}

impl CallError {
    /// The AWS error name if the service answered one.
    pub fn aws_name(&self) -> Option<&str> {
        match self {
            CallError::Service(e) => Some(&e.name),
            _ => None,
        }
    }
}

/// A successful reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The AWS JSON response body (`{}` for operations without output).
    pub body: Value,
    /// `Keyledger-Log-Seq`, when present.
    pub log_seq: Option<u64>,
    /// `Keyledger-Request-Id`, when present.
    pub request_id: Option<String>,
    /// The audit record's log position (`Keyledger-Audit-Stream`, `Keyledger-Audit-Seq`),
    /// when present.
    pub audit_position: Option<(String, u64)>,
}

/// A Keyledger client over NATS that reads its own writes: it remembers the highest log
/// sequence it has seen and sends it as `Keyledger-Min-Seq` with every request.
#[derive(Clone)]
pub struct KmsClient {
    client: Client,
    timeout: Duration,
    min_seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl KmsClient {
    /// Wraps a connected NATS client (connected as a tenant user with its own inbox prefix).
    /// `timeout` bounds each call.
    pub fn new(client: Client, timeout: Duration) -> Self {
        Self { client, timeout, min_seq: Default::default() }
    }

    /// The underlying NATS client.
    pub fn nats(&self) -> &Client {
        &self.client
    }

    /// Calls `operation` (AWS name, e.g. `Encrypt`) with a JSON request.
    pub async fn call(&self, operation: &str, request: &Value) -> Result<Reply, CallError> {
        let body = serde_json::to_vec(request).map_err(|e| CallError::Malformed(e.to_string()))?;
        self.call_raw(operation, body.into()).await
    }

    /// Calls `operation` with raw body bytes (used to test malformed input).
    pub async fn call_raw(&self, operation: &str, body: Bytes) -> Result<Reply, CallError> {
        let mut headers = HeaderMap::new();
        let min = self.min_seq.load(std::sync::atomic::Ordering::Acquire);
        if min > 0 {
            headers.insert(MIN_SEQ_HEADER, min.to_string().as_str());
        }
        let subject = keyledger_events::names::api_subject(operation);
        let req = async_nats::Request::new().payload(body).headers(headers).timeout(Some(self.timeout));
        let msg = self.client.send_request(subject, req).await.map_err(|e| {
            use async_nats::RequestErrorKind;
            CallError::Transport(match e.kind() {
                RequestErrorKind::NoResponders => {
                    "no Keyledger worker answers on this NATS server (is the service, e.g. `keyledger dev`, running?)"
                        .to_owned()
                }
                RequestErrorKind::TimedOut => format!("no answer within {} s", self.timeout.as_secs_f64()),
                _ => e.to_string(),
            })
        })?;
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        let log_seq = header(LOG_SEQ_HEADER).and_then(|s| s.parse::<u64>().ok());
        if let Some(seq) = log_seq {
            self.min_seq.fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
        }
        let body: Value = if msg.payload.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&msg.payload).map_err(|e| CallError::Malformed(e.to_string()))?
        };
        if header(SERVICE_ERROR_HEADER).is_some() {
            let name = body
                .get("__type")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| header(SERVICE_ERROR_HEADER))
                .unwrap_or_default();
            let message = body.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
            return Err(ServiceError { name, message }.into());
        }
        let audit_position =
            header(AUDIT_STREAM_HEADER).zip(header(AUDIT_SEQ_HEADER).and_then(|s| s.parse::<u64>().ok()));
        Ok(Reply { body, log_seq, request_id: header(REQUEST_ID_HEADER), audit_position })
    }
}
