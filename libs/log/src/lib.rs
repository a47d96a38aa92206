//! `keyledger-log`: Keyledger's event log on NATS JetStream (thin, async).
//!
//! * [`ensure_control_stream`] / [`ensure_material_stream`]: create the streams if missing,
//!   otherwise verify them and refuse a weaker config — never update, purge or delete them
//!   (BRIEF invariant 8).
//! * [`ControlLog`]: append with optimistic concurrency per subject
//!   (`Nats-Expected-Last-Subject-Sequence`) and idempotent retries (`Nats-Msg-Id`), read the
//!   head of a subject, read one record, follow the stream in order from any sequence.
//! * [`MaterialStore`]: one message per material version of a key; erasing a key overwrites
//!   its messages (crypto-shredding) while the control log stays immutable.
//! * [`connect`] / [`jetstream`]: client and JetStream context with the options we rely on.
//!
//! Subjects and stream names come from `keyledger_events::names`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::Duration;

use async_nats::jetstream::{self as js, context::Context};
use bytes::Bytes;

mod checkpoint;
mod control;
mod material;
mod streams;
mod usage;

pub use checkpoint::CheckpointLog;
pub use control::{follow_stream, AppendError, ControlLog, FOLLOW_IDLE_CHECK};
pub use material::MaterialStore;
pub use streams::{
    checkpoint_stream_config, control_stream_config, ensure_checkpoint_stream, ensure_control_stream,
    ensure_material_stream, ensure_usage_stream, material_stream_config, usage_stream_config, verify_config,
    StreamSetupError, DUPLICATE_WINDOW, HEADER_ALLOWANCE_BYTES, MAX_CHECKPOINT_NOTE_BYTES, MAX_MATERIAL_BYTES,
};
pub use usage::UsageLog;

/// Bound of every JetStream API call and awaited publish ack made through [`jetstream`]: 5 s.
pub const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Core request timeout set by [`connect`]: 5 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect timeout (per attempt) set by [`connect`]: 5 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One message as stored in a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Stream sequence (1-based, assigned by the server).
    pub stream_seq: u64,
    /// Subject the message was stored under.
    pub subject: String,
    /// The server's storage timestamp of the message, Unix milliseconds (UTC).
    pub server_time_unix_ms: u64,
    /// The stored bytes, unchanged.
    pub payload: Bytes,
}

/// Errors of reads and of material operations.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// JetStream did not answer in time, had no responders, or the connection is down.
    /// Retryable.
    #[error("JetStream unavailable: {0}")]
    Unavailable(String),
    /// JetStream answered with an error (description from the server; never payload data).
    #[error("JetStream error: {0}")]
    Nats(String),
    /// A subject token (account, key id) is not a valid single NATS token.
    #[error("invalid subject token {0:?}")]
    InvalidToken(String),
    /// The control stream delivered a sequence other than the next expected one (a gap means
    /// the log was damaged or truncated; the stream denies deletes).
    #[error("log gap: expected stream sequence {expected}, got {found}")]
    Gap {
        /// The sequence that should have come next.
        expected: u64,
        /// The sequence that came.
        found: u64,
    },
    /// A material version subject already holds different bytes (a version is written once).
    #[error("material subject {subject} already holds different bytes (stream sequence {seq})")]
    MaterialConflict {
        /// The material subject.
        subject: String,
        /// Sequence of the message already there.
        seq: u64,
    },
    /// The bytes exceed the stream's limit.
    #[error("payload of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload length in bytes.
        bytes: usize,
        /// Limit in bytes.
        max: usize,
    },
}

/// How many times a publish whose outcome is unknown (timeout, no responders, disconnect) is
/// sent again with the same bytes and headers, and how long to wait between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first (≥ 1). Default 3.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one. Default 200 ms.
    pub initial_backoff: Duration,
    /// Upper bound of one wait. Default 2 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, initial_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(2) }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.checked_mul(factor).unwrap_or(self.max_backoff).min(self.max_backoff)
    }
}

/// Connects to NATS with user/password and the options every Keyledger process uses:
/// connection `name` (shows in `Nats-Request-Info` and monitoring), `custom_inbox_prefix`
/// (permissions allow only `<inbox_prefix>.>`), request timeout [`REQUEST_TIMEOUT`], connect
/// timeout [`CONNECT_TIMEOUT`], unlimited reconnects, and `retry_on_initial_connect`: the
/// client is returned at once and connects in the background, so a server that starts a little
/// later is fine — but wrong credentials show up as failing requests and logged events, not as
/// an error here. Connection events are logged with `tracing` (no credentials).
///
/// # Errors
/// `async_nats::ConnectError` for invalid options or URL.
pub async fn connect(
    url: &str,
    user: &str,
    password: &str,
    inbox_prefix: &str,
    name: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    connect_verified(url, user, password, inbox_prefix, name, None).await
}

/// [`connect`], verifying a `tls://` server against the PEM CA certificate in `ca_file` (and
/// requiring TLS) when given.
///
/// # Errors
/// As [`connect`].
pub async fn connect_verified(
    url: &str,
    user: &str,
    password: &str,
    inbox_prefix: &str,
    name: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut options = async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned());
    if let Some(ca) = ca_file {
        options = options.add_root_certificates(ca.to_path_buf()).require_tls(true);
    }
    options
        .name(name)
        .custom_inbox_prefix(inbox_prefix)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("nats connected"),
                // Our own drain or close at shutdown: nothing to warn about.
                async_nats::Event::Closed | async_nats::Event::Draining => {
                    tracing::debug!(event = %event, "nats connection event")
                }
                other => tracing::warn!(event = %other, "nats connection event"),
            }
        })
        .connect(server_list(url))
        .await
}

/// The last message stored on `subject` of `stream`, read from the stream leader, or None.
///
/// # Errors
/// [`LogError::Unavailable`].
pub(crate) async fn last_on_subject(
    stream: &async_nats::jetstream::stream::Stream,
    subject: &str,
) -> Result<Option<StoredRecord>, LogError> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some(StoredRecord {
            stream_seq: m.sequence,
            subject: m.subject.to_string(),
            server_time_unix_ms: unix_ms(m.time),
            payload: m.payload,
        })),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(LogError::Unavailable(format!("reading the head of {subject}: {e}"))),
    }
}

/// The server URLs of a profile's `url`: one URL, or several separated by commas (every
/// member of a cluster; the client moves to another when its server goes away).
pub fn server_list(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// A JetStream context with [`JETSTREAM_TIMEOUT`] bounding API calls and awaited acks, and
/// back-pressure on the in-flight ack window (wait for a slot instead of failing).
pub fn jetstream(client: async_nats::Client) -> Context {
    js::ContextBuilder::new().timeout(JETSTREAM_TIMEOUT).backpressure_on_inflight(true).build(client)
}

/// Converts a server timestamp to Unix milliseconds (0 for times before 1970).
pub(crate) fn unix_ms(t: async_nats::datetime::DateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// True if `s` is a single valid subject token.
pub(crate) fn check_token(s: &str) -> Result<(), LogError> {
    if keyledger_events::names::is_subject_token(s) {
        Ok(())
    } else {
        Err(LogError::InvalidToken(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_bound() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(5), Duration::from_secs(2));
        assert_eq!(p.backoff(40), Duration::from_secs(2));
    }
}
