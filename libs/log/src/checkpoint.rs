//! The checkpoint stream: the log's signed tree heads, one subject per record stream
//! (`kl.v1.ckpt.<stream>`), each subject a fenced sequence of C2SP signed checkpoint notes.

use async_nats::jetstream::context::Context;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use keyledger_events::names;

use crate::control::{append_chained, AppendError, AppendTarget};
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

    /// Appends one signed checkpoint note (its exact text, UTF-8) for `record_stream`, with
    /// `Nats-Msg-Id` = hex(BLAKE3(note)) and the subject's expected last sequence
    /// (`expected_last_subject_seq`, 0 for the first): a second signer working from the same
    /// previous checkpoint is refused, so checkpoints of one stream cannot fork in the log.
    /// Retries and reconciliation as [`crate::ControlLog::append`].
    ///
    /// # Errors
    /// [`AppendError::Conflict`] (another checkpoint is the subject's head),
    /// [`AppendError::Unavailable`], [`AppendError::TooLarge`] (over
    /// [`MAX_CHECKPOINT_NOTE_BYTES`]), [`AppendError::Rejected`] (stream name not a subject
    /// token, or the server refused).
    pub async fn append(
        &self,
        record_stream: &str,
        expected_last_subject_seq: u64,
        note: &str,
    ) -> Result<u64, AppendError> {
        self.append_on(record_stream, Subject::Checkpoint, expected_last_subject_seq, note).await
    }

    /// Appends one snapshot note for `record_stream` on `names::snapshot_subject`, fenced and
    /// retried as [`CheckpointLog::append`].
    ///
    /// # Errors
    /// As [`CheckpointLog::append`].
    pub async fn append_snapshot(
        &self,
        record_stream: &str,
        expected_last_subject_seq: u64,
        note: &str,
    ) -> Result<u64, AppendError> {
        self.append_on(record_stream, Subject::Snapshot, expected_last_subject_seq, note).await
    }

    async fn append_on(
        &self,
        record_stream: &str,
        kind: Subject,
        expected_last_subject_seq: u64,
        note: &str,
    ) -> Result<u64, AppendError> {
        if note.len() > MAX_CHECKPOINT_NOTE_BYTES {
            return Err(AppendError::TooLarge { bytes: note.len(), max: MAX_CHECKPOINT_NOTE_BYTES });
        }
        if !names::is_subject_token(record_stream) {
            return Err(AppendError::Rejected(format!("stream {record_stream:?} is not a subject token")));
        }
        let subject = kind.subject(record_stream);
        let msg_id = blake3::hash(note.as_bytes()).to_hex().to_string();
        let target = AppendTarget {
            js: &self.js,
            stream: &self.stream,
            stream_name: names::CHECKPOINT_STREAM,
            retry: &self.retry,
        };
        append_chained(target, &subject, expected_last_subject_seq, &msg_id, Bytes::copy_from_slice(note.as_bytes()))
            .await
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
        let subject = kind.subject(record_stream);
        match self.stream.get_last_raw_message_by_subject(&subject).await {
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
