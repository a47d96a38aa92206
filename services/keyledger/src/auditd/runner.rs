//! Follows the control stream and every usage stream into the index writer.
//!
//! * Discovery: every `discover_every`, list the account's streams and start a follower for
//!   `KL_CONTROL_V1` and each `KL_USAGE_V1_<YYYYMM>` not followed yet (new periods appear
//!   monthly). auditd never creates, updates or deletes a stream.
//! * Follower: an ordered consumer from the writer's resume point (last sequence taken + 1;
//!   after a restart, the committed checkpoint + 1). Sequences must be contiguous (the streams
//!   deny deletes): a gap or an undecodable record stops that stream's follower and marks it
//!   failed (health 503) — the index never skips a record silently. Connection errors restart
//!   the follower with back-off.
//! * Lag: every `lag_every`, each stream's head sequence against its committed sequence, and the
//!   age of the oldest message not yet searchable (now − its JetStream store time; 0 when the
//!   stream is fully indexed). The age is what "≤ 1 s behind" means: how long a stored record
//!   waits before a search can find it. Both clocks are the same machine's in one-node setups;
//!   across machines the figure includes their clock skew.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::Context;
use futures::{StreamExt, TryStreamExt};
use keyledger_audit_index::{records_from_message, stream_rank, AuditWriter, Authorities, IndexedMessage, Realm};
use serde::Serialize;
use tokio::task::JoinSet;

/// State of one stream's follower.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowState {
    /// Reading.
    Following,
    /// Waiting to reconnect after a transient error.
    Retrying,
    /// Stopped on a gap or an undecodable record; needs an operator.
    Failed,
}

/// One stream as auditd sees it.
#[derive(Clone, Debug, Serialize)]
pub struct StreamStatus {
    /// Stream name.
    pub stream: String,
    /// Last sequence in the stream at the last check.
    pub head: u64,
    /// Last committed (searchable) sequence.
    pub indexed: u64,
    /// `head - indexed` (messages not yet searchable).
    pub lag: u64,
    /// Age in seconds of the oldest message not yet searchable (now − its JetStream store
    /// time), as of the last check; 0.0 when `indexed == head`.
    pub lag_seconds: f64,
    /// Follower state.
    pub state: FollowState,
    /// Last error (JetStream / decode description, no record contents).
    pub error: Option<String>,
}

/// Shared runner state.
#[derive(Default)]
pub struct RunnerState {
    pub(crate) streams: Mutex<BTreeMap<String, StreamStatus>>,
    pub(crate) discovery_error: Mutex<Option<String>>,
}

impl RunnerState {
    /// A snapshot of every followed stream.
    pub fn streams(&self) -> Vec<StreamStatus> {
        self.streams.lock().expect("streams").values().cloned().collect()
    }

    fn set(&self, stream: &str, state: FollowState, error: Option<String>) {
        if let Some(s) = self.streams.lock().expect("streams").get_mut(stream) {
            s.state = state;
            s.error = error;
        }
    }
}

/// Timings of the runner.
#[derive(Clone, Debug)]
pub struct RunnerTimings {
    /// How often to look for new streams.
    pub discover_every: Duration,
    /// How often to read stream heads for the lag.
    pub lag_every: Duration,
    /// Longest wait between follower restarts.
    pub max_backoff: Duration,
}

impl Default for RunnerTimings {
    fn default() -> Self {
        Self {
            // A new usage stream (first start, each month) waits at most this long to be
            // followed: its records are that much behind, so it is well under a second.
            discover_every: Duration::from_millis(250),
            lag_every: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Runs discovery, followers and lag checks until the task is aborted.
pub(crate) async fn run(
    js: Context,
    writer: Arc<AuditWriter>,
    state: Arc<RunnerState>,
    realm: Realm,
    timings: RunnerTimings,
) {
    let mut followers = JoinSet::new();
    let mut discover = tokio::time::interval(timings.discover_every);
    let mut lag = tokio::time::interval(timings.lag_every);
    discover.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    lag.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = discover.tick() => {
                match discover_streams(&js).await {
                    Ok(found) => {
                        *state.discovery_error.lock().expect("discovery") = None;
                        let mut any_new = false;
                        for stream in found {
                            let new = {
                                let mut streams = state.streams.lock().expect("streams");
                                if streams.contains_key(&stream) {
                                    false
                                } else {
                                    let indexed = writer.status().committed.last(&stream);
                                    streams.insert(stream.clone(), StreamStatus {
                                        stream: stream.clone(), head: indexed, indexed, lag: 0, lag_seconds: 0.0,
                                        state: FollowState::Following, error: None,
                                    });
                                    true
                                }
                            };
                            if new {
                                any_new = true;
                                tracing::info!(%stream, "auditd: following stream");
                                followers.spawn(follow(js.clone(), stream, writer.clone(), state.clone(), realm.clone(), timings.max_backoff));
                            }
                        }
                        // A new stream's backlog shows in the lag at once, not at the next check.
                        if any_new {
                            update_lag(&js, &writer, &state).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "auditd: cannot list streams");
                        *state.discovery_error.lock().expect("discovery") = Some(e);
                    }
                }
            }
            _ = lag.tick() => update_lag(&js, &writer, &state).await,
            Some(done) = followers.join_next(), if !followers.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!("auditd: a stream follower panicked");
                    }
                }
            }
        }
    }
}

/// Names of the streams auditd indexes: the control stream and every usage period.
async fn discover_streams(js: &Context) -> Result<Vec<String>, String> {
    let names: Vec<String> = js.stream_names().try_collect().await.map_err(|e| format!("stream names: {e}"))?;
    let mut found: Vec<String> = names.into_iter().filter(|n| stream_rank(n).is_some()).collect();
    found.sort();
    Ok(found)
}

async fn update_lag(js: &Context, writer: &AuditWriter, state: &RunnerState) {
    let names: Vec<String> = state.streams.lock().expect("streams").keys().cloned().collect();
    let committed = writer.status().committed;
    for name in names {
        let indexed = committed.last(&name);
        let mut head = None;
        let mut oldest_unindexed = None;
        if let Ok(mut stream) = js.get_stream(&name).await {
            if let Ok(info) = stream.info().await {
                head = Some(info.state.last_sequence);
                if info.state.last_sequence > indexed {
                    // One message per stream per check; its store time dates the lag.
                    if let Ok(m) = stream.get_raw_message(indexed + 1).await {
                        oldest_unindexed = Some(m.time);
                    }
                }
            }
        }
        let now = time::OffsetDateTime::now_utc();
        let mut streams = state.streams.lock().expect("streams");
        if let Some(s) = streams.get_mut(&name) {
            if let Some(h) = head {
                s.head = h;
            }
            s.indexed = indexed;
            s.lag = s.head.saturating_sub(s.indexed);
            s.lag_seconds = match oldest_unindexed {
                _ if s.lag == 0 => 0.0,
                Some(t) => (now - t).as_seconds_f64().max(0.0),
                // Head known to be ahead but the message could not be read: keep the last figure.
                None => s.lag_seconds,
            };
        }
    }
}

enum Stop {
    /// Transient (connection, consumer): retry.
    Retry(String),
    /// The log is not what it must be, or the writer stopped: do not retry.
    Fatal(String),
}

async fn follow(
    js: Context,
    stream: String,
    writer: Arc<AuditWriter>,
    state: Arc<RunnerState>,
    realm: Realm,
    max_backoff: Duration,
) {
    let mut backoff = Duration::from_millis(200);
    // The control stream is folded from its first record to name what authorized each event
    // (keyledger_audit_index::Authorities); the fold survives follower restarts.
    let mut authorities = (stream == keyledger_events::names::CONTROL_STREAM).then(|| Authorities::new(realm.clone()));
    loop {
        let from = writer.status().received.last(&stream) + 1;
        match follow_from(&js, &stream, from, &writer, &state, &realm, authorities.as_mut()).await {
            Stop::Fatal(e) => {
                tracing::error!(%stream, error = %e, "auditd: stopped following stream");
                state.set(&stream, FollowState::Failed, Some(e));
                return;
            }
            Stop::Retry(e) => {
                tracing::warn!(%stream, error = %e, "auditd: follower restarts");
                state.set(&stream, FollowState::Retrying, Some(e));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

async fn follow_from(
    js: &Context,
    stream: &str,
    from: u64,
    writer: &AuditWriter,
    state: &RunnerState,
    realm: &Realm,
    mut authorities: Option<&mut Authorities>,
) -> Stop {
    // With a control-stream fold, start where the fold is (it must see every record once).
    let start = match &authorities {
        Some(a) => from.min(a.last_seq() + 1),
        None => from,
    };
    let handle = match js.get_stream(stream).await {
        Ok(s) => s,
        Err(e) => return Stop::Retry(format!("get stream: {e}")),
    };
    let consumer = match handle
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
            ..Default::default()
        })
        .await
    {
        Ok(c) => c,
        Err(e) => return Stop::Retry(format!("create ordered consumer: {e}")),
    };
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => return Stop::Retry(format!("start ordered consumer: {e}")),
    };
    state.set(stream, FollowState::Following, None);
    let mut expected = start;
    while let Some(item) = messages.next().await {
        let message = match item {
            Ok(m) => m,
            Err(e) => return Stop::Retry(format!("ordered consumer: {e}")),
        };
        let seq = match message.info() {
            Ok(i) => i.stream_sequence,
            Err(e) => return Stop::Retry(format!("message metadata: {e}")),
        };
        if seq != expected {
            return Stop::Fatal(format!("sequence gap: expected {expected}, got {seq}"));
        }
        let mut authorized_by = None;
        if let Some(a) = authorities.as_deref_mut() {
            if seq <= a.last_seq() {
                expected = seq + 1;
                continue;
            }
            let event = match keyledger_events::decode(&message.payload) {
                Ok(e) => e,
                Err(e) => return Stop::Fatal(format!("{stream} sequence {seq}: {e}")),
            };
            let published = message.info().map(|i| i.published).ok();
            let server_ms = published.map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as u64);
            match a.note(seq, server_ms, &event) {
                Ok(by) => authorized_by = Some(by),
                Err(e) => return Stop::Fatal(e),
            }
            if seq < from {
                expected = seq + 1;
                continue;
            }
        }
        let mut records = match records_from_message(stream, seq, &message.payload, realm) {
            Ok(r) => r,
            Err(e) => return Stop::Fatal(e.to_string()),
        };
        if let Some(by) = authorized_by {
            for r in &mut records {
                r.authorized_by = by.clone();
            }
        }
        if let Err(e) = writer.send(IndexedMessage { stream: stream.to_owned(), seq, records }).await {
            return Stop::Fatal(e.to_string());
        }
        expected = seq + 1;
    }
    Stop::Retry("ordered consumer ended".to_owned())
}
