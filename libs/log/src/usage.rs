//! The usage streams: one per period (UTC month), holding group-committed blocks of usage
//! records, one chain per writer lane (`kl.v1.use.<period>.<lane>`).

use async_nats::jetstream::context::Context;
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use keyledger_events::{names, MAX_USAGE_RECORD_BYTES};

use crate::control::{append_chained, AppendError, AppendTarget};
use crate::streams::{ensure_usage_stream, StreamSetupError};
use crate::{check_token, LogError, RetryPolicy, StoredRecord};

/// One period's usage stream. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UsageLog {
    js: Context,
    stream: Stream,
    period: String,
    retry: RetryPolicy,
}

impl UsageLog {
    /// Ensures the usage stream of `period` (`YYYYMM`; create if missing, else verify, never
    /// update) with an optional byte cap (`max_bytes`; the stream then refuses new blocks when
    /// full, so writers fail closed).
    ///
    /// # Errors
    /// As [`crate::ensure_control_stream`].
    pub async fn open(
        js: Context,
        period: &str,
        replicas: usize,
        max_bytes: Option<i64>,
    ) -> Result<Self, StreamSetupError> {
        let stream = ensure_usage_stream(&js, period, replicas, max_bytes).await?;
        Ok(Self { js, stream, period: period.to_owned(), retry: RetryPolicy::default() })
    }

    /// Replaces the retry policy of [`UsageLog::append`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The period (`YYYYMM`).
    pub fn period(&self) -> &str {
        &self.period
    }

    /// Appends one encoded block record to `lane`'s subject, with `Nats-Msg-Id` = hex(block
    /// hash) (so a retry after an ambiguous timeout cannot store it twice) and the lane
    /// subject's expected last sequence (so two writers on one lane are caught). Unknown
    /// outcomes are retried with the same bytes and wrong-last-sequence answers reconciled
    /// exactly as [`crate::ControlLog::append`] does.
    ///
    /// # Errors
    /// [`AppendError::Conflict`] (another writer's block is the lane head),
    /// [`AppendError::Unavailable`], [`AppendError::TooLarge`], [`AppendError::Rejected`]
    /// (e.g. the stream is full and refuses new messages).
    pub async fn append(
        &self,
        lane: &str,
        expected_last_subject_seq: u64,
        block_hash: &[u8; 32],
        bytes: Vec<u8>,
    ) -> Result<u64, AppendError> {
        if bytes.len() > MAX_USAGE_RECORD_BYTES {
            return Err(AppendError::TooLarge { bytes: bytes.len(), max: MAX_USAGE_RECORD_BYTES });
        }
        if !keyledger_events::names::is_subject_token(lane) {
            return Err(AppendError::Rejected(format!("lane {lane:?} is not a subject token")));
        }
        let subject = names::usage_subject(&self.period, lane);
        let stream_name = names::usage_stream(&self.period);
        let target = AppendTarget { js: &self.js, stream: &self.stream, stream_name: &stream_name, retry: &self.retry };
        append_chained(target, &subject, expected_last_subject_seq, &hex::encode(block_hash), Bytes::from(bytes)).await
    }

    /// The lane's last block, read from the stream leader (consistent), or None.
    ///
    /// # Errors
    /// [`LogError::InvalidToken`], [`LogError::Unavailable`].
    pub async fn lane_head(&self, lane: &str) -> Result<Option<StoredRecord>, LogError> {
        check_token(lane)?;
        crate::last_on_subject(&self.stream, &names::usage_subject(&self.period, lane)).await
    }
}
