//! The checkpoint stream: the log's signed tree heads, one subject per record stream
//! (`kl.v1.ckpt.<stream>`), each subject a fenced sequence of C2SP signed checkpoint notes.

use async_nats::jetstream::context::Context;
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use keyledger_events::names;

use crate::control::AppendError;
use crate::streams::{ensure_checkpoint_stream, StreamSetupError, MAX_CHECKPOINT_NOTE_BYTES};
use crate::{check_token, unix_ms, LogError, RetryPolicy, StoredRecord};

/// The checkpoint stream (`names::CHECKPOINT_STREAM`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct CheckpointLog {
    js: Context,
    stream: Stream,
    retry: RetryPolicy,
}

impl CheckpointLog {
    /// Ensures the checkpoint stream (create if missing, else verify, never update).
    ///
    /// # Errors
    /// As [`crate::ensure_control_stream`].
    pub async fn open(js: Context, replicas: usize) -> Result<Self, StreamSetupError> {
        let stream = ensure_checkpoint_stream(&js, replicas).await?;
        Ok(Self { js, stream, retry: RetryPolicy::default() })
    }

    /// Appends one signed checkpoint note (its exact text, UTF-8) for `record_stream` on
    /// `names::checkpoint_subject`, with `Nats-Msg-Id` = hex(BLAKE3(note)) and the **stream's**
    /// expected last sequence (`expected_last_seq`: the checkpoint stream's last message, 0
    /// when empty): the note names that message's hash, so the checkpoint stream is one chain,
    /// and a signer working from a stale view is refused. Unknown outcomes are retried with the
    /// same bytes; a wrong-last-sequence answer is our own earlier attempt when the message
    /// after `expected_last_seq` has our bytes.
    ///
    /// # Errors
    /// [`AppendError::Conflict`] (another message is the stream's last),
    /// [`AppendError::Unavailable`], [`AppendError::TooLarge`] (over
    /// [`MAX_CHECKPOINT_NOTE_BYTES`]), [`AppendError::Rejected`] (stream name not a subject
    /// token, or the server refused).
    pub async fn append(&self, record_stream: &str, expected_last_seq: u64, note: &str) -> Result<u64, AppendError> {
        self.append_on(record_stream, Subject::Checkpoint, expected_last_seq, note).await
    }

    /// Appends one snapshot note for `record_stream` on `names::snapshot_subject`, fenced and
    /// retried as [`CheckpointLog::append`].
    ///
    /// # Errors
    /// As [`CheckpointLog::append`].
    pub async fn append_snapshot(
        &self,
        record_stream: &str,
        expected_last_seq: u64,
        note: &str,
    ) -> Result<u64, AppendError> {
        self.append_on(record_stream, Subject::Snapshot, expected_last_seq, note).await
    }

    async fn append_on(
        &self,
        record_stream: &str,
        kind: Subject,
        expected_last_seq: u64,
        note: &str,
    ) -> Result<u64, AppendError> {
        use async_nats::jetstream::context::PublishErrorKind;
        if note.len() > MAX_CHECKPOINT_NOTE_BYTES {
            return Err(AppendError::TooLarge { bytes: note.len(), max: MAX_CHECKPOINT_NOTE_BYTES });
        }
        if !names::is_subject_token(record_stream) {
            return Err(AppendError::Rejected(format!("stream {record_stream:?} is not a subject token")));
        }
        let subject = kind.subject(record_stream);
        let msg_id = blake3::hash(note.as_bytes()).to_hex().to_string();
        let payload = Bytes::copy_from_slice(note.as_bytes());
        let attempts = self.retry.max_attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            let message = async_nats::jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(&msg_id)
                .expected_stream(names::CHECKPOINT_STREAM)
                .expected_last_sequence(expected_last_seq);
            let result = match self.js.send_publish(subject.clone(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => return Ok(ack.sequence),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    // Ours, stored by an attempt whose ack was lost?
                    return match self.stream.direct_get(expected_last_seq + 1).await {
                        Ok(m) if m.payload == payload => Ok(m.sequence),
                        _ => Err(AppendError::Conflict { current_last_seq: None }),
                    };
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::StreamNotFound
                    ) =>
                {
                    last_error = e.to_string();
                    if attempt < attempts {
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                    }
                }
                Err(e) => return Err(AppendError::Rejected(e.to_string())),
            }
        }
        Err(AppendError::Unavailable { attempts, last_error })
    }

    /// The checkpoint stream's last message (any subject), or None when it is empty.
    ///
    /// # Errors
    /// [`LogError::Unavailable`].
    pub async fn last(&self) -> Result<Option<StoredRecord>, LogError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| LogError::Unavailable(format!("stream info of {}: {e}", names::CHECKPOINT_STREAM)))?;
        let seq = info.state.last_sequence;
        if seq == 0 {
            return Ok(None);
        }
        let m = self
            .stream
            .direct_get(seq)
            .await
            .map_err(|e| LogError::Unavailable(format!("reading {}#{seq}: {e}", names::CHECKPOINT_STREAM)))?;
        Ok(Some(StoredRecord {
            stream_seq: m.sequence,
            subject: m.subject.to_string(),
            server_time_unix_ms: unix_ms(m.time),
            payload: m.payload,
        }))
    }

    /// The newest checkpoint stored for `record_stream`, read from the stream leader, or None.
    ///
    /// # Errors
    /// [`LogError::InvalidToken`], [`LogError::Unavailable`].
    pub async fn latest(&self, record_stream: &str) -> Result<Option<StoredRecord>, LogError> {
        self.latest_on(record_stream, Subject::Checkpoint).await
    }

    /// The newest snapshot note stored for `record_stream`, or None.
    ///
    /// # Errors
    /// As [`CheckpointLog::latest`].
    pub async fn latest_snapshot(&self, record_stream: &str) -> Result<Option<StoredRecord>, LogError> {
        self.latest_on(record_stream, Subject::Snapshot).await
    }

    async fn latest_on(&self, record_stream: &str, kind: Subject) -> Result<Option<StoredRecord>, LogError> {
        check_token(record_stream)?;
        crate::last_on_subject(&self.stream, &kind.subject(record_stream)).await
    }
}

/// Which of a record stream's two subjects on the checkpoint stream.
#[derive(Clone, Copy)]
enum Subject {
    Checkpoint,
    Snapshot,
}

impl Subject {
    fn subject(self, record_stream: &str) -> String {
        match self {
            Subject::Checkpoint => names::checkpoint_subject(record_stream),
            Subject::Snapshot => names::snapshot_subject(record_stream),
        }
    }
}
