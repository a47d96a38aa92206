//! The key-state projection, kept current by following the control stream.
//!
//! Every role holds one: it reads the control stream from sequence 1 with an ordered consumer,
//! decodes each record (byte-exact), checks its chain link and folds it into a
//! [`Projection`]. Nothing else writes the projection, so state = fold(events) (invariant 1).
//! A record that fails to decode or to link stops the follower: the role then answers
//! `KMSInternalException` rather than serve state it cannot vouch for.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use futures::StreamExt;
use keyledger_events::Event;
use keyledger_kms::{ErrorKind, KmsError, Projection};
use keyledger_log::ControlLog;
use tokio::sync::{broadcast, watch};

/// One record the projection applied, for roles that react to events (material erasure,
/// cache eviction).
#[derive(Debug, Clone)]
pub struct Applied {
    /// Stream sequence.
    pub seq: u64,
    /// The decoded record.
    pub event: Arc<Event>,
}

/// Health of the follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerHealth {
    /// Following normally.
    Following,
    /// Stopped on a record it could not decode or link; the reason has no record contents.
    Failed(String),
}

/// A projection that follows the control stream.
#[derive(Clone)]
pub struct Follower {
    projection: Arc<RwLock<Projection>>,
    applied: watch::Receiver<u64>,
    health: watch::Receiver<FollowerHealth>,
    events: broadcast::Sender<Applied>,
    log: ControlLog,
    started_from: u64,
}

/// Capacity of the applied-events broadcast (a slow listener skips, it never blocks the follower).
const APPLIED_CHANNEL_CAPACITY: usize = 4096;

impl Follower {
    /// Starts following `log` from its first record in a background task.
    pub fn start(log: ControlLog) -> Self {
        Self::start_lagging(log, Duration::ZERO)
    }

    /// Like [`Follower::start`], but waits `delay_per_record` before applying each record:
    /// fault injection for tests that need a worker behind the log (a production
    /// configuration never sets it).
    pub fn start_lagging(log: ControlLog, delay_per_record: Duration) -> Self {
        Self::start_from(log, Projection::default(), delay_per_record, crate::snapshot::SnapshotConfig::default())
    }

    /// Starts from `projection` (a verified snapshot, or empty) and follows `log` from the
    /// record after it; writes a snapshot file every `snapshots.every` control records when
    /// `snapshots.dir` is set (see [`crate::snapshot`]). `delay_per_record` as
    /// [`Follower::start_lagging`].
    pub fn start_from(
        log: ControlLog,
        projection: Projection,
        delay_per_record: Duration,
        snapshots: crate::snapshot::SnapshotConfig,
    ) -> Self {
        let started_from = projection.last_applied_seq();
        let projection = Arc::new(RwLock::new(projection));
        let (applied_tx, applied) = watch::channel(started_from);
        let (health_tx, health) = watch::channel(FollowerHealth::Following);
        let (events, _) = broadcast::channel(APPLIED_CHANNEL_CAPACITY);
        let follower = Self {
            projection: projection.clone(),
            applied,
            health,
            events: events.clone(),
            log: log.clone(),
            started_from,
        };
        tokio::spawn(async move {
            let reason = follow_loop(log, projection, applied_tx, events, delay_per_record, snapshots).await;
            tracing::error!(%reason, "control log follower stopped");
            let _ = health_tx.send(FollowerHealth::Failed(reason));
        });
        follower
    }

    /// Read access to the projection (hold it briefly; never across an `.await`).
    pub fn read(&self) -> RwLockReadGuard<'_, Projection> {
        self.projection.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The control sequence of the snapshot this follower started from (0: the log from its
    /// first record).
    pub fn started_from(&self) -> u64 {
        self.started_from
    }

    /// The last stream sequence applied.
    pub fn applied_seq(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Subscribes to applied records.
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.events.subscribe()
    }

    /// Current health.
    pub fn health(&self) -> FollowerHealth {
        self.health.borrow().clone()
    }

    /// The control log this follower reads.
    pub fn log(&self) -> &ControlLog {
        &self.log
    }

    /// Waits until the projection has applied `seq`, at most `wait`.
    ///
    /// Errors: `KMSInternalException` if the follower has failed; `DependencyTimeoutException`
    /// (retryable) if `seq` was not reached in time.
    pub async fn wait_for(&self, seq: u64, wait: Duration) -> Result<(), KmsError> {
        self.check_health()?;
        let mut rx = self.applied.clone();
        let reached = tokio::time::timeout(wait, rx.wait_for(|applied| *applied >= seq)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => {
                self.check_health()?;
                Err(KmsError::new(
                    ErrorKind::DependencyTimeout,
                    "The key state did not catch up with the log in time; retry the request.",
                ))
            }
        }
    }

    /// Honours a request's minimum sequence: waits until the projection has applied
    /// `min(min_seq, head)` — the cap at the stream's head keeps a crafted or stale minimum from
    /// stalling a worker (the head is only read when the projection is behind `min_seq`).
    pub async fn wait_min_seq(&self, min_seq: u64, wait: Duration) -> Result<(), KmsError> {
        if min_seq == 0 || self.applied_seq() >= min_seq {
            return self.check_health();
        }
        let head = self.head().await?;
        self.wait_for(min_seq.min(head), wait).await
    }

    /// Catches up to the stream's head as of now (used before answering NotFound and after an
    /// append conflict). Returns the head.
    pub async fn catch_up(&self, wait: Duration) -> Result<u64, KmsError> {
        let head = self.head().await?;
        self.wait_for(head, wait).await?;
        Ok(head)
    }

    async fn head(&self) -> Result<u64, KmsError> {
        self.log.head_seq().await.map_err(|e| {
            tracing::warn!(error = %e, "cannot read the control log head");
            KmsError::new(ErrorKind::DependencyTimeout, "The key log is not reachable; retry the request.")
        })
    }

    fn check_health(&self) -> Result<(), KmsError> {
        match &*self.health.borrow() {
            FollowerHealth::Following => Ok(()),
            FollowerHealth::Failed(_) => Err(KmsError::new(
                ErrorKind::KMSInternal,
                "The key state cannot be verified against the log; the service refuses to answer.",
            )),
        }
    }
}

/// Applies records until one fails; returns why it stopped.
/// Applies one stored control record to `p` exactly as every role does: byte-exact decoding,
/// the record must sit on its aggregate's subject, then [`Projection::apply`] (chain check and
/// evolve). Replay (`keyledger replay`) uses the same function, so the state it rebuilds is the
/// state the roles serve from.
///
/// Errors: a description naming the stream sequence (no record contents).
pub fn apply_record(
    p: &mut keyledger_kms::Projection,
    record: &keyledger_log::StoredRecord,
) -> Result<keyledger_events::Event, String> {
    let event = keyledger_events::decode(&record.payload)
        .map_err(|e| format!("record at stream sequence {} does not decode: {e}", record.stream_seq))?;
    let expected_subject = keyledger_events::names::control_subject(
        &event.record.account,
        event.aggregate_kind(),
        &event.record.aggregate_id,
    );
    if expected_subject != record.subject {
        return Err(format!(
            "record at stream sequence {} is stored on a subject that is not its aggregate's",
            record.stream_seq
        ));
    }
    p.apply(record.stream_seq, record.server_time_unix_ms, &event)
        .map_err(|e| format!("record at stream sequence {} does not apply: {e}", record.stream_seq))?;
    Ok(event)
}

async fn follow_loop(
    log: ControlLog,
    projection: Arc<RwLock<Projection>>,
    applied_tx: watch::Sender<u64>,
    events: broadcast::Sender<Applied>,
    delay_per_record: Duration,
    snapshots: crate::snapshot::SnapshotConfig,
) -> String {
    let mut from = projection.read().unwrap_or_else(|p| p.into_inner()).last_applied_seq() + 1;
    loop {
        let stream = log.follow(from);
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let record = match item {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "control log read error; resuming");
                    break;
                }
            };
            if record.stream_seq < from {
                continue;
            }
            if !delay_per_record.is_zero() {
                tokio::time::sleep(delay_per_record).await;
            }
            let event = {
                let mut p = projection.write().unwrap_or_else(|p| p.into_inner());
                match apply_record(&mut p, &record) {
                    Ok(e) => e,
                    Err(reason) => return reason,
                }
            };
            from = record.stream_seq + 1;
            if let Some(dir) =
                snapshots.dir.as_ref().filter(|_| record.stream_seq.is_multiple_of(snapshots.every.max(1)))
            {
                let bytes = projection.read().unwrap_or_else(|p| p.into_inner()).snapshot();
                let (dir, seq) = (dir.clone(), record.stream_seq);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = crate::snapshot::write_file(&dir, seq, &bytes) {
                        tracing::warn!(error = %e, seq, "cannot write a projection snapshot");
                    }
                });
            }
            let _ = applied_tx.send(record.stream_seq);
            let _ = events.send(Applied { seq: record.stream_seq, event: Arc::new(event) });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
