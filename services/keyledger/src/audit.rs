//! Audit first: one usage record per request, durably stored before the request is answered.
//!
//! Each role process owns one writer *lane* (`<role>-<random>`; one process per lane, a new
//! lane per start). The lane is a single task: it takes every record that waited while its
//! previous block was in flight (up to [`AuditConfig::max_batch_records`]), encodes them as
//! one [`UsageBlockV1`] record chained to the lane's previous block (BLAKE3), and publishes it
//! on `kl.v1.use.<YYYYMM>.<lane>` with `Nats-Msg-Id` = the block hash and the lane subject's
//! expected last sequence. When JetStream acknowledges the block, every waiter gets a
//! [`Receipt`] — and only then may its result leave the service. So latency stays near one
//! round trip at low load and each round trip carries more records as load grows (group
//! commit).
//!
//! With each receipt comes the control stream's head as read right after the block was
//! acknowledged: the caller makes its projection reach it and re-checks its decision (see
//! `roles.rs`), so no result decided on a key that was disabled meanwhile is released.
//!
//! Failures are closed: a block that is refused (stream full, no quorum) or whose outcome is
//! unknown fails every waiter with a retryable error and no result; the lane re-reads its head
//! before the next block. Another writer's block at our lane head is an integrity alarm.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::Context;
use keyledger_events::{
    names, AggregateKind, Body, Draft, PrincipalV1, SuppressedRequestsV1, UsageBlockV1, UsageRecordV1,
};
use keyledger_kms::{ErrorKind, KmsError};
use keyledger_log::{AppendError, ControlLog, UsageLog};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;

/// Limits of the audit writer. Units are in the names.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Most records in one block.
    pub max_batch_records: usize,
    /// Most records waiting for the lane; a request that finds the queue full is refused with
    /// ThrottlingException.
    pub max_queued_records: usize,
    /// How long a request waits for its record to be stored before it is refused with a
    /// retryable error (its result withheld).
    pub audit_wait: Duration,
    /// Replicas of the usage streams.
    pub replicas: usize,
    /// Byte cap of each period's usage stream (None = no cap; with a cap the stream refuses new
    /// blocks when full and the service fails closed).
    pub usage_stream_max_bytes: Option<i64>,
    /// A fixed lane name (`[A-Za-z0-9_-]+`): a deployment that limits each role user to its
    /// own usage subject names the lane here (and in the user's permissions); a restarted
    /// process continues the lane's chain from its head. None: `<role>-<random>` per start.
    pub lane: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 256,
            max_queued_records: 16_384,
            audit_wait: Duration::from_secs(5),
            replicas: 1,
            usage_stream_max_bytes: None,
            lane: None,
        }
    }
}

/// Where a stored record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Usage stream name.
    pub stream: String,
    /// Stream sequence of the block.
    pub stream_seq: u64,
    /// Index of the record in the block.
    pub index: u32,
    /// The control stream's head, read right after the block was acknowledged.
    pub control_head: u64,
}

/// Health of the writer lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditHealth {
    /// Blocks are being stored.
    Writing,
    /// The last block could not be stored; requests fail closed until one is.
    Failing(String),
}

enum Item {
    Record(Box<UsageRecordV1>, oneshot::Sender<Result<Receipt, KmsError>>),
    Suppressed(SuppressedRequestsV1),
    /// Open the lane's chain on the current period's stream (and read its head) now.
    Ready(oneshot::Sender<Result<(), KmsError>>),
}

/// Counters of a lane, for metrics.
#[derive(Debug, Default)]
pub struct AuditCounters {
    /// Records acknowledged by JetStream.
    pub records_stored: std::sync::atomic::AtomicU64,
    /// Blocks acknowledged by JetStream.
    pub blocks_stored: std::sync::atomic::AtomicU64,
    /// Blocks that could not be stored (each failed all its waiters).
    pub blocks_failed: std::sync::atomic::AtomicU64,
}

/// The process's audit writer (one lane).
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Item>,
    health: watch::Receiver<AuditHealth>,
    lane: String,
    wait: Duration,
    counters: std::sync::Arc<AuditCounters>,
}

fn unavailable() -> KmsError {
    KmsError::new(
        ErrorKind::DependencyTimeout,
        "The request could not be recorded in the audit log in time; nothing was done. Retry the request.",
    )
}

fn refused(reason: &str) -> KmsError {
    tracing::warn!(reason, "audit log refused a block");
    KmsError::new(
        ErrorKind::KMSInternal,
        "The audit log is not accepting records; nothing was done. Retry the request later.",
    )
}

impl AuditWriter {
    /// Starts the lane `config.lane`, or one named `<role>-<random>`.
    pub fn start(
        js: Context,
        control: ControlLog,
        role: &str,
        clock: Clock,
        config: AuditConfig,
    ) -> (Self, JoinHandle<()>) {
        let lane = config
            .lane
            .clone()
            .unwrap_or_else(|| format!("{role}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
        let (tx, rx) = mpsc::channel(config.max_queued_records.max(1));
        let (health_tx, health) = watch::channel(AuditHealth::Writing);
        let wait = config.audit_wait;
        let counters = std::sync::Arc::new(AuditCounters::default());
        let task =
            tokio::spawn(Lane::new(js, control, lane.clone(), clock, config, health_tx, counters.clone()).run(rx));
        (Self { tx, health, lane, wait, counters }, task)
    }

    /// The lane's counters.
    pub fn counters(&self) -> &AuditCounters {
        &self.counters
    }

    /// The lane id.
    pub fn lane(&self) -> &str {
        &self.lane
    }

    /// Current health.
    pub fn health(&self) -> AuditHealth {
        self.health.borrow().clone()
    }

    /// Stores `record` (bounded by [`AuditConfig::audit_wait`]) and returns where it is.
    ///
    /// Errors (all retryable, and the request must release no result): ThrottlingException if
    /// the queue is full, DependencyTimeoutException if the block was not acknowledged in time
    /// or its outcome is unknown, KMSInternalException if the log refuses blocks.
    pub async fn write(&self, record: UsageRecordV1) -> Result<Receipt, KmsError> {
        let (done, receipt) = oneshot::channel();
        match self.tx.try_send(Item::Record(Box::new(record), done)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(KmsError::new(
                    ErrorKind::Throttling,
                    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.",
                ));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(refused("writer stopped")),
        }
        match tokio::time::timeout(self.wait, receipt).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(refused("writer dropped the record")),
            Err(_) => Err(unavailable()),
        }
    }

    /// Opens the lane on the current period's usage stream and reads the lane's head, so that
    /// the first request does not pay for it (or find the stream without a leader right after
    /// a cluster restart). Errors as [`AuditWriter::write`]: DependencyTimeoutException while
    /// the stream does not answer, KMSInternalException if it cannot be opened.
    pub async fn ready(&self) -> Result<(), KmsError> {
        let (done, opened) = oneshot::channel();
        self.tx.send(Item::Ready(done)).await.map_err(|_| refused("writer stopped"))?;
        match tokio::time::timeout(self.wait, opened).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(refused("writer stopped")),
            Err(_) => Err(unavailable()),
        }
    }

    /// Queues a rate-limiter summary; it goes out with the next block.
    pub fn write_suppressed(&self, summary: SuppressedRequestsV1) {
        if self.tx.try_send(Item::Suppressed(summary)).is_err() {
            tracing::warn!("cannot queue a suppressed-requests summary; the audit queue is full");
        }
    }
}

struct Chain {
    log: UsageLog,
    next_seq: u64,
    prev_hash: [u8; 32],
    last_stream_seq: u64,
}

struct Lane {
    js: Context,
    control: ControlLog,
    lane: String,
    clock: Clock,
    config: AuditConfig,
    health: watch::Sender<AuditHealth>,
    chain: Option<Chain>,
    needs_resync: bool,
    counters: std::sync::Arc<AuditCounters>,
}

impl Lane {
    fn new(
        js: Context,
        control: ControlLog,
        lane: String,
        clock: Clock,
        config: AuditConfig,
        health: watch::Sender<AuditHealth>,
        counters: std::sync::Arc<AuditCounters>,
    ) -> Self {
        Self { js, control, lane, clock, config, health, chain: None, needs_resync: false, counters }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Item>) {
        let mut suppressed = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut records = Vec::new();
            let mut waiters = Vec::new();
            let mut probes = Vec::new();
            let mut take = |item: Item, records: &mut Vec<UsageRecordV1>, waiters: &mut Vec<_>| match item {
                Item::Record(r, w) => {
                    records.push(*r);
                    waiters.push(w);
                }
                Item::Suppressed(s) => suppressed.push(s),
                Item::Ready(done) => probes.push(done),
            };
            take(first, &mut records, &mut waiters);
            while records.len() < self.config.max_batch_records {
                match rx.try_recv() {
                    Ok(item) => take(item, &mut records, &mut waiters),
                    Err(_) => break,
                }
            }
            for probe in probes {
                let opened = self.chain().await.map(|_| ());
                let _ = probe.send(opened);
            }
            if records.is_empty() && suppressed.is_empty() {
                continue;
            }
            let summaries = std::mem::take(&mut suppressed);
            let result = self.commit(records, summaries.clone()).await;
            use std::sync::atomic::Ordering::Relaxed;
            match &result {
                Ok(receipts) => {
                    self.counters.blocks_stored.fetch_add(1, Relaxed);
                    self.counters.records_stored.fetch_add(receipts.len() as u64, Relaxed);
                }
                Err(_) => {
                    self.counters.blocks_failed.fetch_add(1, Relaxed);
                }
            }
            match result {
                Ok(receipts) => {
                    for (waiter, receipt) in waiters.into_iter().zip(receipts) {
                        let _ = waiter.send(Ok(receipt));
                    }
                }
                Err(e) => {
                    // Summaries are counts, not requests: keep them for the next block.
                    suppressed.extend(summaries);
                    for waiter in waiters {
                        let _ = waiter.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Makes sure the lane's chain is open on the current period and in sync with the stream.
    async fn chain(&mut self) -> Result<&mut Chain, KmsError> {
        let period = names::usage_period(self.clock.now_unix_ms());
        let reopen = match &self.chain {
            None => true,
            Some(c) => c.log.period() != period,
        };
        if reopen {
            let log =
                UsageLog::open(self.js.clone(), &period, self.config.replicas, self.config.usage_stream_max_bytes)
                    .await
                    .map_err(|e| refused(&e.to_string()))?;
            self.chain = Some(Chain {
                log,
                next_seq: 0,
                prev_hash: keyledger_events::genesis_hash(AggregateKind::UsageLane, "", &self.lane),
                last_stream_seq: 0,
            });
            self.needs_resync = true;
        }
        let chain = self.chain.as_mut().expect("opened above");
        if self.needs_resync {
            match chain.log.lane_head(&self.lane).await {
                Ok(None) => {}
                Ok(Some(head)) => {
                    let event = keyledger_events::decode(&head.payload)
                        .map_err(|e| refused(&format!("lane head does not decode: {e}")))?;
                    chain.next_seq = event.record.aggregate_seq + 1;
                    chain.prev_hash = event.hash;
                    chain.last_stream_seq = head.stream_seq;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the lane head");
                    return Err(unavailable());
                }
            }
            self.needs_resync = false;
        }
        Ok(chain)
    }

    /// Stores the records (one block, or several if they do not fit in one message).
    async fn commit(
        &mut self,
        records: Vec<UsageRecordV1>,
        suppressed: Vec<SuppressedRequestsV1>,
    ) -> Result<Vec<Receipt>, KmsError> {
        let mut receipts = Vec::with_capacity(records.len());
        let mut pending: Vec<(Vec<UsageRecordV1>, Vec<SuppressedRequestsV1>)> = vec![(records, suppressed)];
        while let Some((records, suppressed)) = pending.pop() {
            let lane = self.lane.clone();
            let now = self.clock.now_unix_ms();
            let chain = self.chain().await?;
            let count = records.len();
            let body = Body::UsageBlock(UsageBlockV1 { records, suppressed });
            let draft = Draft {
                event_id: *uuid::Uuid::now_v7().as_bytes(),
                account: String::new(),
                aggregate_kind: AggregateKind::UsageLane,
                aggregate_id: lane.clone(),
                aggregate_seq: chain.next_seq,
                time_unix_ms: now,
                principal: PrincipalV1::service(),
                request_id: [0; 16],
                prev_hash: chain.prev_hash,
            };
            let (bytes, hash) = match keyledger_events::encode(&draft, &body) {
                Ok(v) => v,
                Err(keyledger_events::EventError::TooLarge(_)) if count > 1 => {
                    // Split in two and store the halves in order.
                    let Body::UsageBlock(block) = body else { unreachable!() };
                    let mut first = block.records;
                    let second = first.split_off(count / 2);
                    pending.push((second, Vec::new()));
                    pending.push((first, block.suppressed));
                    continue;
                }
                Err(e) => return Err(refused(&format!("cannot encode a usage block: {e}"))),
            };
            match chain.log.append(&lane, chain.last_stream_seq, &hash, bytes).await {
                Ok(seq) => {
                    chain.last_stream_seq = seq;
                    chain.prev_hash = hash;
                    chain.next_seq += 1;
                    let stream = names::usage_stream(chain.log.period());
                    let control_head = self.control.head_seq().await.map_err(|e| {
                        tracing::warn!(error = %e, "cannot read the control log head after a block");
                        unavailable()
                    })?;
                    self.health.send_replace(AuditHealth::Writing);
                    receipts.extend((0..count).map(|i| Receipt {
                        stream: stream.clone(),
                        stream_seq: seq,
                        index: i as u32,
                        control_head,
                    }));
                }
                Err(AppendError::Conflict { current_last_seq }) => {
                    self.needs_resync = true;
                    tracing::error!(lane = %lane, ?current_last_seq, "INTEGRITY: another writer appended to this lane");
                    self.health.send_replace(AuditHealth::Failing("another writer appended to this lane".into()));
                    return Err(refused("lane conflict"));
                }
                Err(AppendError::Unavailable { last_error, .. }) => {
                    self.needs_resync = true;
                    self.health.send_replace(AuditHealth::Failing(format!("usage stream unavailable: {last_error}")));
                    return Err(unavailable());
                }
                Err(e) => {
                    self.needs_resync = true;
                    let reason = e.to_string();
                    self.health.send_replace(AuditHealth::Failing(format!("usage stream refuses blocks: {reason}")));
                    return Err(refused(&reason));
                }
            }
        }
        Ok(receipts)
    }
}

/// A request-rate quota: a token bucket refilled at `per_sec` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per second (refill rate).
    pub per_sec: f64,
    /// Requests allowed at once above the rate (bucket size).
    pub burst: f64,
}

/// Token-bucket rate limiter that runs before any work: a bucket per principal, optionally one
/// per account and one for the whole process (each role instance enforces its own; with N
/// instances the service allows N times the figures). A request passes only when every bucket
/// it belongs to has a token; then one is taken from each. Dropped requests are answered with
/// ThrottlingException and counted per principal; the counts are written as
/// [`SuppressedRequestsV1`] summaries every [`RateLimiter::FLUSH_EVERY`], never lost. Requests
/// shed because the role is at its in-flight limit are counted the same way
/// ([`RateLimiter::count_dropped`]).
pub struct RateLimiter {
    per_principal: Quota,
    per_account: Option<Quota>,
    global: Option<Quota>,
    state: Mutex<LimiterState>,
}

struct LimiterState {
    principals: HashMap<String, Bucket>,
    accounts: HashMap<String, Tokens>,
    global: Tokens,
}

#[derive(Clone, Copy)]
struct Tokens {
    tokens: f64,
    last_ms: u64,
}

impl Tokens {
    fn full(q: Quota, now_ms: u64) -> Self {
        Self { tokens: q.burst, last_ms: now_ms }
    }
    fn refill(&mut self, q: Quota, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * q.per_sec).min(q.burst);
        self.last_ms = now_ms.max(self.last_ms);
    }
}

struct Bucket {
    tokens: Tokens,
    principal: PrincipalV1,
    suppressed: u64,
    window_start_ms: u64,
}

/// Most principals (and accounts) tracked at once; beyond it idle buckets are dropped.
const MAX_TRACKED_PRINCIPALS: usize = 100_000;

impl RateLimiter {
    /// How often suppressed counts are flushed.
    pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

    /// A limiter allowing `rate_per_sec` requests per second per principal with bursts of
    /// `burst`, and no account or global quota.
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        Self::with_quotas(Quota { per_sec: rate_per_sec, burst }, None, None)
    }

    /// A limiter with a per-principal quota and optional per-account and global quotas.
    pub fn with_quotas(per_principal: Quota, per_account: Option<Quota>, global: Option<Quota>) -> Self {
        let state = LimiterState {
            principals: HashMap::new(),
            accounts: HashMap::new(),
            global: Tokens { tokens: global.map_or(0.0, |g| g.burst), last_ms: 0 },
        };
        Self { per_principal, per_account, global, state: Mutex::new(state) }
    }

    /// Takes a token for `principal` (and its account, and the process) at `now_ms`; false if
    /// the request must be dropped (it is then counted).
    pub fn allow(&self, principal: &PrincipalV1, now_ms: u64) -> bool {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let bucket = Self::bucket(&mut state.principals, self.per_principal, principal, now_ms);
        bucket.tokens.refill(self.per_principal, now_ms);
        let mut ok = bucket.tokens.tokens >= 1.0;
        if let Some(q) = self.global {
            state.global.refill(q, now_ms);
            ok &= state.global.tokens >= 1.0;
        }
        if let Some(q) = self.per_account {
            if state.accounts.len() >= MAX_TRACKED_PRINCIPALS && !state.accounts.contains_key(&principal.account) {
                state.accounts.retain(|_, t| t.tokens < q.burst);
            }
            let account = state.accounts.entry(principal.account.clone()).or_insert_with(|| Tokens::full(q, now_ms));
            account.refill(q, now_ms);
            ok &= account.tokens >= 1.0;
            if ok {
                account.tokens -= 1.0;
            }
        }
        let bucket = state.principals.get_mut(&principal.arn).expect("inserted above");
        if ok {
            bucket.tokens.tokens -= 1.0;
            if self.global.is_some() {
                state.global.tokens -= 1.0;
            }
        } else {
            Self::count(bucket, now_ms);
        }
        ok
    }

    /// Counts one request of `principal` dropped without taking a token (shed at the
    /// in-flight limit).
    pub fn count_dropped(&self, principal: &PrincipalV1, now_ms: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = Self::bucket(&mut state.principals, self.per_principal, principal, now_ms);
        Self::count(bucket, now_ms);
    }

    fn bucket<'a>(
        principals: &'a mut HashMap<String, Bucket>,
        q: Quota,
        principal: &PrincipalV1,
        now_ms: u64,
    ) -> &'a mut Bucket {
        if principals.len() >= MAX_TRACKED_PRINCIPALS && !principals.contains_key(&principal.arn) {
            principals.retain(|_, b| b.suppressed > 0);
        }
        principals.entry(principal.arn.clone()).or_insert_with(|| Bucket {
            tokens: Tokens::full(q, now_ms),
            principal: principal.clone(),
            suppressed: 0,
            window_start_ms: now_ms,
        })
    }

    fn count(bucket: &mut Bucket, now_ms: u64) {
        if bucket.suppressed == 0 {
            bucket.window_start_ms = now_ms;
        }
        bucket.suppressed += 1;
    }

    /// Takes the suppressed counts accumulated so far.
    pub fn drain(&self, now_ms: u64) -> Vec<SuppressedRequestsV1> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for b in state.principals.values_mut() {
            if b.suppressed > 0 {
                out.push(SuppressedRequestsV1 {
                    principal: b.principal.clone(),
                    count: b.suppressed,
                    window_start_unix_ms: b.window_start_ms,
                    window_end_unix_ms: now_ms,
                });
                b.suppressed = 0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> PrincipalV1 {
        PrincipalV1 {
            kind: 1,
            account: "111122223333".into(),
            arn: name.into(),
            nats_account: "DEV".into(),
            user: name.into(),
        }
    }

    #[test]
    fn account_and_global_quotas_hold_across_principals_and_a_drop_takes_no_token() {
        let q = |per_sec, burst| Quota { per_sec, burst };
        let rl = RateLimiter::with_quotas(q(100.0, 100.0), Some(q(1.0, 3.0)), None);
        let (a, b) = (p("a"), p("b"));
        let mut other = p("c");
        other.account = "444455556666".into();
        assert!(rl.allow(&a, 1_000) && rl.allow(&b, 1_000) && rl.allow(&a, 1_000));
        assert!(!rl.allow(&b, 1_000), "the account's burst of 3 is spent by two principals");
        assert!(rl.allow(&other, 1_000), "another account has its own bucket");
        assert!(rl.allow(&b, 2_000), "one token a second comes back");
        let g = RateLimiter::with_quotas(q(100.0, 100.0), None, Some(q(0.0, 2.0)));
        assert!(g.allow(&a, 1_000) && g.allow(&other, 1_000));
        assert!(!g.allow(&b, 1_000), "the process-wide burst is shared by every account");
        // A drop at the global level takes nothing from the principal: with a global refill it
        // would still have its own tokens.
        g.count_dropped(&a, 1_000);
        let drained = g.drain(3_000);
        let count = |arn: &str| drained.iter().find(|d| d.principal.arn == arn).map_or(0, |d| d.count);
        assert_eq!((count("a"), count("b"), count("c")), (1, 1, 0));
    }

    #[test]
    fn the_rate_limiter_drops_past_the_burst_and_counts_what_it_dropped() {
        let rl = RateLimiter::new(10.0, 5.0);
        let a = p("a");
        let allowed = (0..8).filter(|_| rl.allow(&a, 1_000)).count();
        assert_eq!(allowed, 5);
        assert!(rl.allow(&p("b"), 1_000), "principals have their own buckets");
        // 100 ms later one token has come back.
        assert!(rl.allow(&a, 1_100));
        assert!(!rl.allow(&a, 1_100));
        let drained = rl.drain(2_000);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].count, 4);
        assert_eq!(drained[0].principal.arn, "a");
        assert_eq!((drained[0].window_start_unix_ms, drained[0].window_end_unix_ms), (1_000, 2_000));
        assert!(rl.drain(3_000).is_empty(), "counts are taken once");
    }
}
