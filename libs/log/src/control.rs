//! The control stream: append with optimistic concurrency, read, follow.

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use keyledger_events::{names, MAX_RECORD_BYTES};
use std::time::Duration;

use crate::streams::{ensure_control_stream, StreamSetupError};
use crate::{unix_ms, LogError, RetryPolicy, StoredRecord};

/// Why an append did not store the event.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Optimistic-concurrency conflict (JetStream err_code 10071, wrong last sequence): the
    /// subject's last message is not the expected one, and it is not our own event.
    /// `current_last_seq` is the subject's actual last stream sequence (None: subject empty).
    /// Callers re-read the aggregate and re-decide.
    #[error("append conflict: the subject's last stream sequence is {current_last_seq:?}")]
    Conflict {
        /// Stream sequence of the subject's last message, None if the subject is empty.
        current_last_seq: Option<u64>,
    },
    /// The outcome stayed unknown after every attempt (timeouts, no responders, disconnects).
    /// The event **may have been stored** (nats-tantivy.md §6); callers answer with a
    /// retryable error, and a later append of the same event (same bytes and id) resolves it.
    #[error("JetStream unavailable after {attempts} attempt(s): {last_error}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure, as text.
        last_error: String,
    },
    /// The record exceeds `keyledger_events::MAX_RECORD_BYTES`.
    #[error("record of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Record length in bytes.
        bytes: usize,
        /// Limit in bytes.
        max: usize,
    },
    /// JetStream refused the publish for another reason (wrong stream, permissions, payload
    /// limit, ...). Not retryable as is.
    #[error("append rejected: {0}")]
    Rejected(String),
}

/// The control stream (`names::CONTROL_STREAM`): the immutable, hash-chained event log.
///
/// Cheap to clone (the JetStream context and stream handle are shared).
#[derive(Clone, Debug)]
pub struct ControlLog {
    js: Context,
    stream: Stream,
    retry: RetryPolicy,
}

impl ControlLog {
    /// Ensures the control stream ([`ensure_control_stream`]: create if missing, else verify,
    /// never update) and wraps it, with the default [`RetryPolicy`].
    ///
    /// # Errors
    /// As [`ensure_control_stream`].
    pub async fn open(js: Context, replicas: usize) -> Result<Self, StreamSetupError> {
        let stream = ensure_control_stream(&js, replicas).await?;
        Ok(Self { js, stream, retry: RetryPolicy::default() })
    }

    /// Replaces the retry policy of [`ControlLog::append`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The JetStream context.
    pub fn context(&self) -> &Context {
        &self.js
    }

    /// Appends one encoded event record to `subject`.
    ///
    /// Publishes `bytes` with headers `Nats-Msg-Id: hex(event_id)` (32 lowercase hex chars),
    /// `Nats-Expected-Stream: KL_CONTROL_V1` and `Nats-Expected-Last-Subject-Sequence:
    /// expected_last_subject_seq` (the **stream** sequence of the subject's last message; 0 =
    /// the subject must be empty), and awaits the ack. Returns the stream sequence of the stored
    /// event.
    ///
    /// **Unknown outcomes.** A publish whose ack times out may still have been stored (observed:
    /// nats-tantivy.md §6). On timeout, no responders or a broken connection the *same* bytes,
    /// id and headers are sent again, up to [`RetryPolicy::max_attempts`]. Observed on
    /// nats-server 2.15.1: the server checks `Nats-Expected-Last-Subject-Sequence` *before* the
    /// `Nats-Msg-Id` duplicate window, so a retry of an event that was in fact stored is answered
    /// with wrong-last-sequence (10071), not with `duplicate: true` (the duplicate answer only
    /// comes when the expected sequence still matches). Hence every 10071 is **reconciled**:
    /// if our event was stored, it is the first message on `subject` after
    /// `expected_last_subject_seq` (it could only be stored while that was the head), so we read
    /// that message from the stream leader and, if its payload equals `bytes` exactly, return
    /// its sequence — even if other events were appended after it. Otherwise it is a real
    /// [`AppendError::Conflict`]. The same holds when a caller re-appends an event after
    /// [`AppendError::Unavailable`], with no time limit (payload equality, not the duplicate
    /// window, decides). Event bytes embed the random event id, so equal bytes mean the same
    /// event.
    ///
    /// # Errors
    /// [`AppendError::Conflict`] (someone else's event is the head), [`AppendError::Unavailable`]
    /// (outcome unknown after all attempts), [`AppendError::TooLarge`],
    /// [`AppendError::Rejected`].
    pub async fn append(
        &self,
        subject: &str,
        expected_last_subject_seq: u64,
        event_id: [u8; 16],
        bytes: Vec<u8>,
    ) -> Result<u64, AppendError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(AppendError::TooLarge { bytes: bytes.len(), max: MAX_RECORD_BYTES });
        }
        if !subject.strip_prefix(names::CONTROL_SUBJECT_PREFIX).is_some_and(|rest| rest.starts_with('.')) {
            return Err(AppendError::Rejected(format!("subject {subject:?} is not a control subject")));
        }
        let target =
            AppendTarget { js: &self.js, stream: &self.stream, stream_name: names::CONTROL_STREAM, retry: &self.retry };
        append_chained(target, subject, expected_last_subject_seq, &hex::encode(event_id), Bytes::from(bytes)).await
    }

    /// The last record on `subject` (direct get; any replica may answer, so it can lag the
    /// leader slightly — a stale head only causes a [`AppendError::Conflict`] later).
    /// None if the subject has no message.
    ///
    /// # Errors
    /// [`LogError::Unavailable`] / [`LogError::Nats`].
    pub async fn subject_head(&self, subject: &str) -> Result<Option<StoredRecord>, LogError> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(m) => Ok(Some(StoredRecord {
                stream_seq: m.sequence,
                subject: m.subject.to_string(),
                server_time_unix_ms: unix_ms(m.time),
                payload: m.payload,
            })),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(direct_get_error(e)),
        }
    }

    /// The stream's last sequence (0 when empty), from stream info answered by the leader.
    ///
    /// # Errors
    /// [`LogError::Unavailable`] / [`LogError::Nats`].
    pub async fn head_seq(&self) -> Result<u64, LogError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| LogError::Unavailable(format!("stream info of {}: {e}", names::CONTROL_STREAM)))?;
        Ok(info.state.last_sequence)
    }

    /// The NATS server's own clock, in milliseconds since the Unix epoch: the `ts` of a stream
    /// info response (the server stamps every JetStream API response with its time). Used to
    /// check that an irreversible, time-driven step is due by the server's clock before it is
    /// even proposed; the projection enforces the same rule on the stored message's timestamp.
    ///
    /// # Errors
    /// [`LogError::Unavailable`] when the server does not answer; [`LogError::Nats`] when the
    /// answer has no readable `ts`.
    pub async fn server_time_unix_ms(&self) -> Result<u64, LogError> {
        let subject = format!("STREAM.INFO.{}", names::CONTROL_STREAM);
        let reply: serde_json::Value = self
            .js
            .request(subject, &())
            .await
            .map_err(|e| LogError::Unavailable(format!("stream info of {}: {e}", names::CONTROL_STREAM)))?;
        let ts = reply
            .get("ts")
            .and_then(|v| v.as_str())
            .ok_or_else(|| LogError::Nats("stream info response without ts".to_owned()))?;
        let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
            .map_err(|e| LogError::Nats(format!("unreadable server time {ts:?}: {e}")))?;
        Ok(u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
    }

    /// The record at stream sequence `seq` (direct get). None if there is none.
    ///
    /// # Errors
    /// [`LogError::Unavailable`] / [`LogError::Nats`].
    pub async fn get(&self, seq: u64) -> Result<Option<StoredRecord>, LogError> {
        if seq == 0 {
            return Ok(None);
        }
        match self.stream.direct_get(seq).await {
            Ok(m) => Ok(Some(StoredRecord {
                stream_seq: m.sequence,
                subject: m.subject.to_string(),
                server_time_unix_ms: unix_ms(m.time),
                payload: m.payload,
            })),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(direct_get_error(e)),
        }
    }

    /// Every record from stream sequence `from_seq` on (0 and 1 both mean from the beginning),
    /// in order, then new records as they are appended; the stream never ends by itself.
    ///
    /// Uses an ordered consumer (ephemeral, no acks, `DeliverPolicy::ByStartSequence`), which the
    /// client recreates after gaps or missed heartbeats. Because the control stream denies
    /// deletes, its sequences are contiguous; a record whose sequence is not the next expected
    /// one yields [`LogError::Gap`] and ends the stream. Other errors are yielded and end it
    /// too; callers resume with `follow(last_seen + 1)`.
    pub fn follow(
        &self,
        from_seq: u64,
    ) -> impl futures::Stream<Item = Result<StoredRecord, LogError>> + Send + 'static {
        follow_stream(self.stream.clone(), from_seq.max(1))
    }

    /// The records with sequences `from..=to`, clamped to the head at the time of the call;
    /// ends after the last one (empty if `from > to` or the stream is shorter). For replay:
    /// `read_range(1, log.head_seq().await?)`.
    ///
    /// # Errors
    /// As [`ControlLog::head_seq`]; errors while reading are yielded as items.
    pub async fn read_range(
        &self,
        from: u64,
        to: u64,
    ) -> Result<BoxStream<'static, Result<StoredRecord, LogError>>, LogError> {
        let from = from.max(1);
        let end = to.min(self.head_seq().await?);
        if from > end {
            return Ok(stream::empty().boxed());
        }
        let inner = follow_stream(self.stream.clone(), from).boxed();
        Ok(stream::unfold(Some(inner), move |state| async move {
            let mut inner = state?;
            let item = inner.next().await?;
            let finished = match &item {
                Ok(r) => r.stream_seq >= end,
                Err(_) => true,
            };
            Some((item, if finished { None } else { Some(inner) }))
        })
        .boxed())
    }
}

enum Follow {
    Start(Box<Stream>, u64),
    Running(Box<async_nats::jetstream::consumer::pull::Ordered>, u64, Box<Stream>),
}

/// How long a follower waits for the next message before it asks the stream whether it is
/// behind: an ordered consumer left on a server that went away can stall without an error.
pub const FOLLOW_IDLE_CHECK: Duration = Duration::from_secs(3);

/// Every message of `stream` from stream sequence `from` (≥ 1) on, in order, then new ones as
/// they are stored; never ends by itself. As [`ControlLog::follow`], for any stream (the
/// checkpointer follows the usage streams with it): a sequence that is not the next expected
/// one yields [`LogError::Gap`] and ends it; other errors are yielded and end it too.
pub fn follow_stream(
    stream: Stream,
    from: u64,
) -> impl futures::Stream<Item = Result<StoredRecord, LogError>> + Send + 'static {
    stream::unfold(Some(Follow::Start(Box::new(stream), from)), |state| async move {
        let (mut messages, expected, stream) = match state? {
            Follow::Start(stream, from) => {
                let consumer = stream
                    .create_consumer(OrderedConfig {
                        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
                        ..Default::default()
                    })
                    .await;
                let consumer = match consumer {
                    Ok(c) => c,
                    Err(e) => {
                        return Some((Err(LogError::Unavailable(format!("cannot create ordered consumer: {e}"))), None))
                    }
                };
                match consumer.messages().await {
                    Ok(m) => (Box::new(m), from, stream),
                    Err(e) => {
                        return Some((Err(LogError::Unavailable(format!("cannot start ordered consumer: {e}"))), None))
                    }
                }
            }
            Follow::Running(m, expected, stream) => (m, expected, stream),
        };
        let next = loop {
            match tokio::time::timeout(FOLLOW_IDLE_CHECK, messages.next()).await {
                Ok(item) => break item?,
                Err(_) => {
                    // Idle: fine if nothing new was stored; a stalled consumer otherwise.
                    if let Ok(info) = stream.get_info().await {
                        if info.state.last_sequence >= expected {
                            return Some((
                                Err(LogError::Unavailable(format!(
                                    "the ordered consumer stalled before sequence {expected}"
                                ))),
                                None,
                            ));
                        }
                    }
                }
            }
        };
        match next {
            Ok(message) => {
                let info = match message.info() {
                    Ok(i) => i,
                    Err(e) => return Some((Err(LogError::Nats(format!("bad message metadata: {e}"))), None)),
                };
                let seq = info.stream_sequence;
                if seq != expected {
                    return Some((Err(LogError::Gap { expected, found: seq }), None));
                }
                let record = StoredRecord {
                    stream_seq: seq,
                    subject: message.subject.to_string(),
                    server_time_unix_ms: unix_ms(info.published),
                    payload: message.payload.clone(),
                };
                Some((Ok(record), Some(Follow::Running(messages, expected + 1, stream))))
            }
            Err(e) => Some((Err(LogError::Unavailable(format!("ordered consumer: {e}"))), None)),
        }
    })
}

fn direct_get_error(e: async_nats::jetstream::stream::DirectGetError) -> LogError {
    match e.kind() {
        DirectGetErrorKind::TimedOut | DirectGetErrorKind::Request => LogError::Unavailable(e.to_string()),
        DirectGetErrorKind::ErrorResponse(status, _) if status.as_u16() == 503 => LogError::Unavailable(e.to_string()),
        _ => LogError::Nats(e.to_string()),
    }
}

/// The error and its sources as one line (server descriptions, no payload data).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Where [`append_chained`] writes.
#[derive(Clone, Copy)]
pub(crate) struct AppendTarget<'a> {
    pub(crate) js: &'a Context,
    pub(crate) stream: &'a Stream,
    pub(crate) stream_name: &'a str,
    pub(crate) retry: &'a RetryPolicy,
}

/// Publishes `payload` on `subject` with `Nats-Msg-Id`, `Nats-Expected-Stream` and
/// `Nats-Expected-Last-Subject-Sequence`, retrying the same bytes on unknown outcomes and
/// reconciling wrong-last-sequence answers (see [`ControlLog::append`] for the full rule).
pub(crate) async fn append_chained(
    target: AppendTarget<'_>,
    subject: &str,
    expected_last_subject_seq: u64,
    msg_id: &str,
    payload: Bytes,
) -> Result<u64, AppendError> {
    let attempts = target.retry.max_attempts.max(1);
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(msg_id)
            .expected_stream(target.stream_name)
            .expected_last_subject_sequence(expected_last_subject_seq);
        let result = match target.js.send_publish(subject.to_owned(), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ack) => {
                if ack.duplicate {
                    tracing::debug!(subject, seq = ack.sequence, "append acknowledged as duplicate");
                }
                return Ok(ack.sequence);
            }
            Err(e) => match e.kind() {
                PublishErrorKind::WrongLastSequence => {
                    return reconcile(target.stream, subject, expected_last_subject_seq, &payload).await;
                }
                PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::StreamNotFound
                | PublishErrorKind::MaxAckPending => {
                    last_error = e.to_string();
                    tracing::warn!(subject, attempt, error = %e, "append outcome unknown; retrying with the same message id");
                    if attempt < attempts {
                        tokio::time::sleep(target.retry.backoff(attempt)).await;
                    }
                }
                PublishErrorKind::MaxPayloadExceeded
                | PublishErrorKind::WrongLastMessageId
                | PublishErrorKind::Other => {
                    return Err(AppendError::Rejected(error_chain(&e)));
                }
            },
        }
    }
    Err(AppendError::Unavailable { attempts, last_error })
}

/// After a wrong-last-sequence answer: was our message stored earlier (by an attempt whose
/// ack was lost)? If so it is the first message on `subject` after `expected`.
async fn reconcile(stream: &Stream, subject: &str, expected: u64, payload: &Bytes) -> Result<u64, AppendError> {
    let unknown = |e: &dyn std::fmt::Display| AppendError::Unavailable {
        attempts: 1,
        last_error: format!("conflict, and reading the subject failed: {e}"),
    };
    let first_after = stream
        .raw_message_builder()
        .next_by_subject(subject.to_owned())
        .sequence(expected.saturating_add(1))
        .send()
        .await;
    match first_after {
        Ok(m) if m.payload == *payload => {
            tracing::debug!(subject, seq = m.sequence, "conflict was our own earlier append");
            return Ok(m.sequence);
        }
        Ok(_) => {}
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
        // We know it conflicted but cannot tell whether our message is there: unknown outcome.
        Err(e) => return Err(unknown(&e)),
    }
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(head) => Err(AppendError::Conflict { current_last_seq: Some(head.sequence) }),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
            Err(AppendError::Conflict { current_last_seq: None })
        }
        Err(e) => Err(unknown(&e)),
    }
}
