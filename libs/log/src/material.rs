//! The material stream: wrapped key material, one message per material version.

use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::{DeleteStatus, DirectGetErrorKind, LastRawMessageErrorKind, Stream};
use async_nats::jetstream::ErrorCode;
use bytes::Bytes;
use keyledger_events::names;
use serde::Serialize;

use crate::control::error_chain;
use crate::streams::{ensure_material_stream, StreamSetupError, MAX_MATERIAL_BYTES};
use crate::{check_token, LogError, RetryPolicy};

/// Body of `$JS.API.STREAM.MSG.DELETE.<stream>`. `no_erase: false` makes the server overwrite
/// the message's bytes with random data before removing it (secure erase), rather than only
/// unlinking it from the index.
#[derive(Serialize)]
struct EraseRequest {
    seq: u64,
    no_erase: bool,
}

/// The material stream (`names::MATERIAL_STREAM`): subject
/// `kl.v1.mat.<account>.<key_id>.<version>.<material_id hex>` holds the wrapped material of one
/// prepared material of a key version (`names::material_subject`). The material id is the
/// 32-byte commitment the control event carries, so the event names exactly one message.
///
/// Wrapped material is ciphertext (XChaCha20-Poly1305 under a key derived from the root key);
/// it is still treated as sensitive: it never appears in errors or logs.
#[derive(Clone, Debug)]
pub struct MaterialStore {
    js: Context,
    stream: Stream,
    retry: RetryPolicy,
}

impl MaterialStore {
    /// Ensures the material stream ([`ensure_material_stream`]: create if missing, else verify,
    /// never update) and wraps it.
    ///
    /// # Errors
    /// As [`ensure_material_stream`].
    pub async fn open(js: Context, replicas: usize) -> Result<Self, StreamSetupError> {
        let stream = ensure_material_stream(&js, replicas).await?;
        Ok(Self { js, stream, retry: RetryPolicy::default() })
    }

    /// Replaces the retry policy of [`MaterialStore::put`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Stores the wrapped material of one prepared material (key, version, material id), once. Publishes with
    /// `Nats-Expected-Last-Subject-Sequence: 0` (the subject must be empty) and
    /// `Nats-Expected-Stream`. If the subject already holds exactly these bytes (our own earlier
    /// put, e.g. one whose ack timed out), returns that message's sequence. Outcomes left
    /// unknown by timeouts are retried with the same bytes (no `Nats-Msg-Id`: a re-put after an
    /// erase must not be swallowed as a duplicate of the erased message).
    ///
    /// # Errors
    /// [`LogError::MaterialConflict`] if the version holds different bytes,
    /// [`LogError::TooLarge`] above [`MAX_MATERIAL_BYTES`], [`LogError::InvalidToken`],
    /// [`LogError::Unavailable`] after all attempts, [`LogError::Nats`] for other refusals.
    pub async fn put(
        &self,
        account: &str,
        key_id: &str,
        version: u32,
        material_id: &[u8; 32],
        wrapped: &[u8],
    ) -> Result<u64, LogError> {
        check_token(account)?;
        check_token(key_id)?;
        self.put_once(names::material_subject(account, key_id, version, material_id), wrapped).await
    }

    /// Stores the root-wrapped private half of an import wrapping key (GetParametersForImport)
    /// under [`names::import_key_subject`], once, with the same guarantees as
    /// [`MaterialStore::put`].
    ///
    /// # Errors
    /// As [`MaterialStore::put`].
    pub async fn put_import_key(
        &self,
        account: &str,
        key_id: &str,
        token_id: &[u8; 16],
        wrapped: &[u8],
    ) -> Result<u64, LogError> {
        check_token(account)?;
        check_token(key_id)?;
        self.put_once(names::import_key_subject(account, key_id, token_id), wrapped).await
    }

    /// The wrapped import wrapping key of `token_id`; `None` if never stored or erased.
    ///
    /// # Errors
    /// As [`MaterialStore::get`].
    pub async fn get_import_key(
        &self,
        account: &str,
        key_id: &str,
        token_id: &[u8; 16],
    ) -> Result<Option<Vec<u8>>, LogError> {
        check_token(account)?;
        check_token(key_id)?;
        self.get_subject(names::import_key_subject(account, key_id, token_id)).await
    }

    /// Securely erases the wrapped import wrapping key of `token_id`; false if already gone.
    ///
    /// # Errors
    /// As [`MaterialStore::erase_key`].
    pub async fn erase_import_key(&self, account: &str, key_id: &str, token_id: &[u8; 16]) -> Result<bool, LogError> {
        check_token(account)?;
        check_token(key_id)?;
        self.erase_last(names::import_key_subject(account, key_id, token_id), None).await
    }

    /// Securely erases one material only if the stored bytes still hash (BLAKE3) to
    /// `wrapped_digest`: the erase that follows a KeyMaterialDeleted event, which must never
    /// remove a later reimport of the same material (stored under the same subject with a
    /// fresh nonce, so other bytes). Returns whether a message was erased; idempotent.
    ///
    /// # Errors
    /// As [`MaterialStore::erase_key`].
    pub async fn erase_if_digest(
        &self,
        account: &str,
        key_id: &str,
        version: u32,
        material_id: &[u8; 32],
        wrapped_digest: &[u8; 32],
    ) -> Result<bool, LogError> {
        check_token(account)?;
        check_token(key_id)?;
        self.erase_last(names::material_subject(account, key_id, version, material_id), Some(wrapped_digest)).await
    }

    /// Erases the last message of `subject`, if its payload hashes to `digest` (when given).
    async fn erase_last(&self, subject: String, digest: Option<&[u8; 32]>) -> Result<bool, LogError> {
        let found = self.stream.raw_message_builder().last_by_subject(subject.clone()).send().await;
        let message = match found {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(false),
            Err(e) => return Err(LogError::Unavailable(format!("looking up {subject}: {e}"))),
        };
        if digest.is_some_and(|d| blake3::hash(&message.payload).as_bytes() != d) {
            return Ok(false);
        }
        self.erase_message(message.sequence).await
    }

    async fn get_subject(&self, subject: String) -> Result<Option<Vec<u8>>, LogError> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(m) => Ok(Some(m.payload.to_vec())),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => match e.kind() {
                DirectGetErrorKind::TimedOut | DirectGetErrorKind::Request => Err(LogError::Unavailable(e.to_string())),
                _ => Err(LogError::Nats(e.to_string())),
            },
        }
    }

    /// Publishes `wrapped` to an empty `subject` (see [`MaterialStore::put`]).
    async fn put_once(&self, subject: String, wrapped: &[u8]) -> Result<u64, LogError> {
        if wrapped.len() > MAX_MATERIAL_BYTES {
            return Err(LogError::TooLarge { bytes: wrapped.len(), max: MAX_MATERIAL_BYTES });
        }
        let payload = Bytes::copy_from_slice(wrapped);
        let attempts = self.retry.max_attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            let message = PublishMessage::build()
                .payload(payload.clone())
                .expected_stream(names::MATERIAL_STREAM)
                .expected_last_subject_sequence(0);
            let result = match self.js.send_publish(subject.clone(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => return Ok(ack.sequence),
                Err(e) => match e.kind() {
                    PublishErrorKind::WrongLastSequence => {
                        return self.reconcile(&subject, &payload).await;
                    }
                    PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::StreamNotFound
                    | PublishErrorKind::MaxAckPending => {
                        last_error = e.to_string();
                        tracing::warn!(subject, attempt, error = %e, "material put outcome unknown; retrying");
                        if attempt < attempts {
                            tokio::time::sleep(self.retry.backoff(attempt)).await;
                        }
                    }
                    _ => return Err(LogError::Nats(error_chain(&e))),
                },
            }
        }
        Err(LogError::Unavailable(format!("material put: {attempts} attempt(s), last: {last_error}")))
    }

    async fn reconcile(&self, subject: &str, payload: &Bytes) -> Result<u64, LogError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) if m.payload == *payload => Ok(m.sequence),
            Ok(m) => Err(LogError::MaterialConflict { subject: subject.to_owned(), seq: m.sequence }),
            // Erased between the refusal and this read: report unknown, the caller retries.
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                Err(LogError::Unavailable(format!("material subject {subject} changed during put")))
            }
            Err(e) => Err(LogError::Unavailable(format!("reading {subject}: {e}"))),
        }
    }

    /// The wrapped material of one prepared material (direct get of the subject's last message). None if
    /// it was never stored or has been erased.
    ///
    /// # Errors
    /// [`LogError::InvalidToken`], [`LogError::Unavailable`], [`LogError::Nats`].
    pub async fn get(
        &self,
        account: &str,
        key_id: &str,
        version: u32,
        material_id: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, LogError> {
        check_token(account)?;
        check_token(key_id)?;
        self.get_subject(names::material_subject(account, key_id, version, material_id)).await
    }

    /// Securely erases one prepared material (a version that no event will commit: the decision
    /// failed or another writer won the race). Returns whether a message was erased; idempotent.
    ///
    /// # Errors
    /// As [`MaterialStore::erase_key`].
    pub async fn erase(
        &self,
        account: &str,
        key_id: &str,
        version: u32,
        material_id: &[u8; 32],
    ) -> Result<bool, LogError> {
        check_token(account)?;
        check_token(key_id)?;
        self.erase_last(names::material_subject(account, key_id, version, material_id), None).await
    }

    /// Securely erases every material of a key (every version, committed or not): finds each message on
    /// `names::material_filter(account, key_id)` (leader reads, in sequence order) and deletes it
    /// with `$JS.API.STREAM.MSG.DELETE` and `no_erase: false`, so the server overwrites the
    /// stored bytes with random data. Returns how many messages this call erased; idempotent
    /// (a second call returns 0, and a message erased concurrently by another caller is skipped).
    ///
    /// Caveat: on a file store the overwrite happens in the message block; copies that the OS,
    /// the filesystem, backups or replicas' snapshots hold are outside JetStream's reach.
    ///
    /// # Errors
    /// [`LogError::InvalidToken`], [`LogError::Unavailable`], [`LogError::Nats`] (e.g. the
    /// stream denies deletes or the user lacks the permission).
    pub async fn erase_key(&self, account: &str, key_id: &str) -> Result<usize, LogError> {
        check_token(account)?;
        check_token(key_id)?;
        let filter = names::material_filter(account, key_id);
        let mut from = 1u64;
        let mut erased = 0usize;
        loop {
            let found = self.stream.raw_message_builder().next_by_subject(filter.clone()).sequence(from).send().await;
            let message = match found {
                Ok(m) => m,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(LogError::Unavailable(format!("scanning {filter}: {e}"))),
            };
            if self.erase_message(message.sequence).await? {
                erased += 1;
            }
            from = message.sequence + 1;
        }
        Ok(erased)
    }

    /// Erases one message; false if it was already gone.
    async fn erase_message(&self, seq: u64) -> Result<bool, LogError> {
        let subject = format!("STREAM.MSG.DELETE.{}", names::MATERIAL_STREAM);
        let request = EraseRequest { seq, no_erase: false };
        let response: Response<DeleteStatus> = self
            .js
            .request(subject, &request)
            .await
            .map_err(|e| LogError::Unavailable(format!("erasing stream sequence {seq}: {e}")))?;
        match response {
            Response::Ok(status) if status.success => Ok(true),
            Response::Ok(_) => {
                Err(LogError::Nats(format!("erasing stream sequence {seq}: server reported no success")))
            }
            Response::Err { error } if error.error_code() == ErrorCode::NO_MESSAGE_FOUND => Ok(false),
            Response::Err { error } => Err(LogError::Nats(format!("erasing stream sequence {seq}: {error}"))),
        }
    }
}
