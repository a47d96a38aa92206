//! The single writer: a dedicated thread that adds documents and commits them together with
//! a checkpoint (the last indexed sequence of every stream).
//!
//! Resume rule: a commit makes its documents and its checkpoint visible atomically (the
//! checkpoint is the commit payload in `meta.json`; nats-tantivy.md §5.2). After a crash
//! (kill -9), uncommitted documents are gone and the checkpoint names the last message whose
//! records *are* in the index, so reading each stream again from checkpoint + 1 indexes every
//! record exactly once. The writer also drops any message at or below the sequence it has
//! already taken for that stream, so a follower that re-delivers cannot create duplicates.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tantivy::indexer::IndexWriterOptions;
use tantivy::{IndexReader, IndexWriter, TantivyDocument};
use tokio::sync::{oneshot, Semaphore};

use crate::document::to_document;
use crate::record::{stream_rank, AuditRecord};
use crate::schema::Fields;
use crate::{IndexError, SCHEMA_VERSION};

/// Format tag of the commit payload.
pub const CHECKPOINT_FORMAT: &str = "keyledger-audit-checkpoint";

/// The last stream sequence whose records are all in the index, per stream name. A stream
/// that is absent has nothing indexed (resume from sequence 1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Stream name → last indexed stream sequence.
    pub streams: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    format: String,
    schema_version: u32,
    streams: BTreeMap<String, u64>,
}

impl Checkpoint {
    /// The sequence to read `stream` from next (last indexed + 1).
    pub fn resume_from(&self, stream: &str) -> u64 {
        self.streams.get(stream).copied().unwrap_or(0) + 1
    }

    /// The last indexed sequence of `stream` (0 if none).
    pub fn last(&self, stream: &str) -> u64 {
        self.streams.get(stream).copied().unwrap_or(0)
    }

    /// The commit payload: JSON `{"format":"keyledger-audit-checkpoint","schema_version":1,
    /// "streams":{"KL_CONTROL_V1":12,…}}`.
    pub fn to_payload(&self) -> String {
        serde_json::to_string(&Payload {
            format: CHECKPOINT_FORMAT.to_owned(),
            schema_version: SCHEMA_VERSION,
            streams: self.streams.clone(),
        })
        .unwrap_or_default()
    }

    /// Reads a commit payload (`None` payload = empty index).
    ///
    /// # Errors
    /// [`IndexError::Checkpoint`] when the payload is not ours or names another schema version.
    pub fn from_payload(payload: Option<&str>) -> Result<Self, IndexError> {
        let Some(text) = payload else { return Ok(Self::default()) };
        let p: Payload = serde_json::from_str(text)
            .map_err(|e| IndexError::Checkpoint(format!("unreadable commit payload: {e}")))?;
        if p.format != CHECKPOINT_FORMAT || p.schema_version != SCHEMA_VERSION {
            return Err(IndexError::Checkpoint(format!(
                "commit payload {} v{} is not {CHECKPOINT_FORMAT} v{SCHEMA_VERSION}",
                p.format, p.schema_version
            )));
        }
        Ok(Self { streams: p.streams })
    }
}

/// The records of one stored stream message. Sent even when `records` is empty, so the
/// checkpoint moves past messages that hold no record.
#[derive(Clone, Debug)]
pub struct IndexedMessage {
    /// Stream name.
    pub stream: String,
    /// Stream sequence.
    pub seq: u64,
    /// The records (from [`crate::records_from_message`]).
    pub records: Vec<AuditRecord>,
}

/// Writer tuning. Defaults: commit every 0.3 s or 20,000 documents, 50 MB indexing budget,
/// 20 000 documents queued at most.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Commit when this many documents wait (≥ 1).
    pub commit_every_docs: usize,
    /// Commit when the oldest uncommitted message is this old.
    pub commit_every: Duration,
    /// tantivy memory budget of the one indexing thread, bytes (≥ 15 MB).
    pub memory_budget_bytes: usize,
    /// Most documents queued between senders and the writer thread (back-pressure bound).
    pub queue_docs: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            // Freshness comes from the time bound; the document bound only caps memory. At
            // 1000 documents a commit (~30 ms, plus a reader reload) every 0.1 s at 10k
            // records/s took a third of a core and let the index fall seconds behind
            // (BENCHMARKS.md); 20,000 keeps commits at the time bound at that load. The time
            // bound serves the "≤ 1 s behind" target: a record waits at most 0.3 s for its
            // commit, leaving the rest for delivery and the commit itself (at 1 s the index was
            // up to 1.4 s behind at full load, at 0.5 s 1.2–1.4 s, at 0.3 s 0.9–1.1 s).
            commit_every_docs: 20_000,
            commit_every: Duration::from_millis(300),
            memory_budget_bytes: 50_000_000,
            queue_docs: 20_000,
        }
    }
}

/// What the writer has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WriterStatus {
    /// Last sequences that are committed (searchable and durable).
    pub committed: Checkpoint,
    /// Last sequences taken (committed or waiting for the next commit).
    pub received: Checkpoint,
    /// Documents in the index after the last commit.
    pub docs_committed: u64,
    /// Documents added since the writer started.
    pub docs_added: u64,
    /// Commits since the writer started.
    pub commits: u64,
    /// Wall-clock time of the last commit, ms since the epoch.
    pub last_commit_unix_ms: Option<u64>,
    /// Messages dropped because their sequence was already indexed.
    pub duplicates_dropped: u64,
    /// Messages whose sequence skipped ahead of the previous one of their stream.
    pub gaps: u64,
    /// True until the writer thread ends.
    pub running: bool,
    /// Why the writer stopped, if it failed (tantivy error text; no record contents).
    pub failure: Option<String>,
}

enum Msg {
    Message(IndexedMessage, u32),
    Flush(oneshot::Sender<Result<Checkpoint, String>>),
    Close(oneshot::Sender<Result<Checkpoint, String>>),
    Abort,
}

/// Handle of the writer thread. Cheap to share behind an `Arc`; `send` is async and waits
/// (bounded queue) when the writer is behind.
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    permits: Arc<Semaphore>,
    queue_docs: u32,
    status: Arc<Mutex<WriterStatus>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

struct Worker {
    writer: IndexWriter<TantivyDocument>,
    reader: IndexReader,
    fields: Fields,
    status: Arc<Mutex<WriterStatus>>,
    received: Checkpoint,
    pending_docs: usize,
    pending_messages: usize,
    oldest_pending: Option<Instant>,
}

impl Worker {
    fn take(&mut self, m: IndexedMessage) -> Result<(), IndexError> {
        let last = self.received.last(&m.stream);
        if m.seq <= last {
            self.status.lock().expect("status").duplicates_dropped += 1;
            return Ok(());
        }
        if last > 0 && m.seq != last + 1 {
            self.status.lock().expect("status").gaps += 1;
            tracing::warn!(stream = %m.stream, expected = last + 1, found = m.seq, "audit writer: sequence gap");
        }
        for r in &m.records {
            if r.stream != m.stream || r.seq != m.seq {
                return Err(IndexError::UnexpectedRecord("a record does not belong to its message".to_owned()));
            }
            self.writer.add_document(to_document(&self.fields, r)?)?;
        }
        let n = m.records.len();
        self.received.streams.insert(m.stream, m.seq);
        self.pending_docs += n;
        self.pending_messages += 1;
        self.oldest_pending.get_or_insert_with(Instant::now);
        let mut s = self.status.lock().expect("status");
        s.docs_added += n as u64;
        s.received = self.received.clone();
        Ok(())
    }

    fn commit(&mut self) -> Result<Checkpoint, IndexError> {
        if self.pending_messages == 0 {
            return Ok(self.status.lock().expect("status").committed.clone());
        }
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&self.received.to_payload());
        prepared.commit()?;
        self.reader.reload()?;
        let docs = self.reader.searcher().num_docs();
        self.pending_docs = 0;
        self.pending_messages = 0;
        self.oldest_pending = None;
        let mut s = self.status.lock().expect("status");
        s.committed = self.received.clone();
        s.docs_committed = docs;
        s.commits += 1;
        s.last_commit_unix_ms = Some(now_ms());
        Ok(s.committed.clone())
    }
}

impl AuditWriter {
    /// Starts the writer thread on `index` (the only writer: a second one fails with tantivy's
    /// `LockBusy`). `reader` is reloaded after every commit.
    pub(crate) fn start(
        index: &tantivy::Index,
        reader: IndexReader,
        fields: Fields,
        committed: Checkpoint,
        options: WriterOptions,
    ) -> Result<Self, IndexError> {
        let writer = index.writer_with_options::<TantivyDocument>(
            IndexWriterOptions::builder()
                .memory_budget_per_thread(options.memory_budget_bytes.max(15_000_000))
                .num_worker_threads(1)
                .num_merge_threads(1)
                .build(),
        )?;
        let docs = reader.searcher().num_docs();
        let status = Arc::new(Mutex::new(WriterStatus {
            committed: committed.clone(),
            received: committed.clone(),
            docs_committed: docs,
            running: true,
            ..WriterStatus::default()
        }));
        let queue_docs = u32::try_from(options.queue_docs.clamp(1, 1 << 24)).unwrap_or(1 << 24);
        let permits = Arc::new(Semaphore::new(queue_docs as usize));
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut worker = Worker {
            writer,
            reader,
            fields,
            status: status.clone(),
            received: committed,
            pending_docs: 0,
            pending_messages: 0,
            oldest_pending: None,
        };
        let thread_permits = permits.clone();
        let commit_docs = options.commit_every_docs.max(1);
        let commit_every = options.commit_every;
        let thread = std::thread::Builder::new()
            .name("audit-index-writer".to_owned())
            .spawn(move || {
                let result = run(&mut worker, &rx, &thread_permits, commit_docs, commit_every);
                let mut s = worker.status.lock().expect("status");
                s.running = false;
                if let Err(e) = result {
                    tracing::error!(error = %e, "audit index writer failed");
                    s.failure = Some(e.to_string());
                }
                drop(s);
                thread_permits.close();
            })
            .map_err(|e| IndexError::Io(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { tx, permits, queue_docs, status, thread: Mutex::new(Some(thread)) })
    }

    /// Queues one message's records. Waits while the queue holds [`WriterOptions::queue_docs`]
    /// documents.
    ///
    /// # Errors
    /// [`IndexError::WriterStopped`] if the writer thread has ended (failed, closed or
    /// aborted); [`IndexError::UnexpectedRecord`] for a stream the index does not read.
    pub async fn send(&self, message: IndexedMessage) -> Result<(), IndexError> {
        if stream_rank(&message.stream).is_none() {
            return Err(IndexError::UnexpectedRecord(format!("stream {} is not indexed", message.stream)));
        }
        let n = u32::try_from(message.records.len().max(1)).unwrap_or(u32::MAX).min(self.queue_docs);
        let permit = self.permits.acquire_many(n).await.map_err(|_| IndexError::WriterStopped)?;
        permit.forget();
        self.tx.send(Msg::Message(message, n)).map_err(|_| IndexError::WriterStopped)
    }

    /// Commits whatever is waiting now; returns the committed checkpoint.
    ///
    /// # Errors
    /// [`IndexError::WriterStopped`] / the commit's error.
    pub async fn flush(&self) -> Result<Checkpoint, IndexError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).map_err(|_| IndexError::WriterStopped)?;
        rx.await.map_err(|_| IndexError::WriterStopped)?.map_err(IndexError::Commit)
    }

    /// Commits what is waiting, waits for merges, and ends the thread.
    ///
    /// # Errors
    /// As [`AuditWriter::flush`].
    pub async fn close(&self) -> Result<Checkpoint, IndexError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Close(tx)).map_err(|_| IndexError::WriterStopped)?;
        let result = rx.await.map_err(|_| IndexError::WriterStopped)?.map_err(IndexError::Commit);
        let thread = self.thread.lock().expect("thread").take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        result
    }

    /// Ends the thread at once **without** committing: what a crash does (tests use it to
    /// show that resume loses and duplicates nothing). Blocks until the thread has ended.
    pub fn abort(&self) {
        let _ = self.tx.send(Msg::Abort);
        if let Some(t) = self.thread.lock().expect("thread").take() {
            let _ = t.join();
        }
    }

    /// A snapshot of the writer's status.
    pub fn status(&self) -> WriterStatus {
        self.status.lock().expect("status").clone()
    }
}

fn run(
    w: &mut Worker,
    rx: &mpsc::Receiver<Msg>,
    permits: &Semaphore,
    commit_docs: usize,
    commit_every: Duration,
) -> Result<(), IndexError> {
    loop {
        let wait = match w.oldest_pending {
            Some(t) => commit_every.saturating_sub(t.elapsed()),
            None => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Message(m, n)) => {
                let taken = w.take(m);
                permits.add_permits(n as usize);
                taken?;
                let due = w.oldest_pending.is_some_and(|t| t.elapsed() >= commit_every);
                if w.pending_docs >= commit_docs || due {
                    w.commit()?;
                }
            }
            Ok(Msg::Flush(reply)) => {
                let r = w.commit();
                let failed = r.as_ref().err().map(ToString::to_string);
                let _ = reply.send(r.map_err(|e| e.to_string()));
                if let Some(e) = failed {
                    return Err(IndexError::Commit(e));
                }
            }
            Ok(Msg::Close(reply)) => {
                let r = w.commit();
                let _ = reply.send(r.as_ref().map(Clone::clone).map_err(|e| e.to_string()));
                r?;
                return Ok(());
            }
            Ok(Msg::Abort) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                w.commit()?;
            }
            Err(RecvTimeoutError::Disconnected) => {
                w.commit()?;
                return Ok(());
            }
        }
    }
}
