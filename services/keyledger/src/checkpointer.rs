//! The checkpointer: commits every record stream to an RFC 6962 Merkle tree and signs its head
//! as a C2SP checkpoint (`audit-integrity.md` §2.7).
//!
//! - **One tree per record stream** (`KL_CONTROL_V1`, each `KL_USAGE_V1_<YYYYMM>`). Leaf *i* is
//!   the 32-byte BLAKE3 record hash (`keyledger_events::record_hash`) of the message at stream
//!   sequence *i + 1*, so a receipt's leaf index is its stream position and anyone holding the
//!   stream recomputes the tree without any ordering record. The streams deny deletes; a gap
//!   halts that stream's tree (an integrity alarm in the service log) instead of renumbering.
//!   The tree commits to the bytes as stored; `keyledger verify` judges them.
//! - **Origin** of a stream's checkpoints: `<log key name>/<stream>`, all signed by the one
//!   Ed25519 log key ([`LogKey`]); the note key name equals the origin (c2sp.org/tlog-checkpoint
//!   SHOULD), so each stream has its own key id under the same public key.
//! - **Cadence:** every [`CheckpointConfig::interval`] (1 s) a stream whose tree grew gets a new
//!   checkpoint. No heartbeat on an idle stream: its last checkpoint already covers all of it.
//! - **Stored on the log:** the signed note text on `kl.v1.ckpt.<stream>` of `KL_CHECKPOINT_V1`,
//!   appended with the subject's expected last sequence, so two signers cannot both extend the
//!   same checkpoint; before signing, the stored head must verify under the log key and its root
//!   must equal this tree's root at its size — otherwise the stream is halted (the checkpointer
//!   never signs a successor of a checkpoint it cannot reproduce: that would be equivocation).
//! - **One signer at a time:** a lease in the key-value bucket `KL_CHECKPOINT_LEASE` (key
//!   `signer`, value JSON `{"holder", "expires_unix_ms"}`), taken with compare-and-swap and
//!   renewed every tick; other instances keep their trees and answer proofs.
//! - **Witness:** when configured, each new checkpoint is sent to a `keyledger witness` with a
//!   consistency proof from the size the witness last cosigned; its cosignature is added to the
//!   note before it is stored. An unreachable witness does not stop checkpointing (warned).
//! - **Proofs:** every instance answers `kl.v1.sys.proof` (service account only), request JSON
//!   `{"stream", "seq"}`, with a `c2sp.org/tlog-proof@v1` inclusion proof against the newest
//!   stored checkpoint that covers the record ([`ProofAnswer`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::context::Context;
use futures::StreamExt;
use keyledger_events::names;
use keyledger_log::{AppendError, CheckpointLog};
use keyledger_transparency::{
    AddCheckpointRequest, Checkpoint, InclusionProofBundle, MerkleTree, NoteSigner, NoteVerifier, SignedCheckpoint,
    WitnessVerifier,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::clock::Clock;

/// The log's checkpoint signing key: one Ed25519 key whose note key name is the log's base
/// name; stream `S` is signed under the name `<base>/<S>` ([`origin`]).
///
/// File form: the `golang.org/x/mod/sumdb/note` signer key text
/// `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 ‖ 32-byte seed)>`, one line, mode 0600.
pub struct LogKey {
    base: NoteSigner,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogKey({}, secret elided)", self.base.name())
    }
}

impl LogKey {
    /// A new key named `name` from 32 bytes of OS randomness.
    ///
    /// # Errors
    /// An invalid key name (empty, white space or `+`), or no OS randomness.
    pub fn generate(name: &str) -> anyhow::Result<Self> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut *seed).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let base = NoteSigner::from_seed(name, &seed).map_err(|e| anyhow::anyhow!("invalid log key name: {e}"))?;
        Ok(Self { base })
    }

    /// Reads a key file (see the type docs).
    ///
    /// # Errors
    /// Unreadable file, or not a signer key text.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("cannot read the log key {}", path.display()))?,
        );
        let base = NoteSigner::parse(text.trim())
            .map_err(|e| anyhow::anyhow!("{} is not a log signer key: {e}", path.display()))?;
        Ok(Self { base })
    }

    /// Generates a key named `<name>` and writes it to `path` (mode 0600, refusing to replace
    /// an existing file).
    ///
    /// # Errors
    /// As [`LogKey::generate`], or the file exists / cannot be written.
    pub fn create_file(path: &Path, name: &str) -> anyhow::Result<Self> {
        if path.exists() {
            anyhow::bail!("{} exists; refusing to replace a log key", path.display());
        }
        let key = Self::generate(name)?;
        crate::private_file::write_private(path, format!("{}\n", key.base.to_text().as_str()).as_bytes())?;
        Ok(key)
    }

    /// Loads `path`, or creates it with a fresh name `keyledger.local/log-<16 random hex>`
    /// (dev mode).
    ///
    /// # Errors
    /// As [`LogKey::load`] / [`LogKey::create_file`].
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            return Self::load(path);
        }
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        Self::create_file(path, &format!("keyledger.local/log-{}", hex::encode(id)))
    }

    /// The base key name.
    pub fn name(&self) -> &str {
        self.base.name()
    }

    /// The base verifier key (`<name>+<id>+<base64>`): what `keyledger checkpoint key` prints
    /// and `keyledger verify --log-key` takes.
    pub fn verifier(&self) -> NoteVerifier {
        self.base.verifier()
    }

    /// The signer of `stream`'s checkpoints (named [`origin`]).
    ///
    /// # Errors
    /// A stream name that makes an invalid key name.
    pub fn signer_for(&self, stream: &str) -> anyhow::Result<NoteSigner> {
        self.base.renamed(&origin(self.base.name(), stream)).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The checkpoint origin of `stream` under the log key named `base`: `<base>/<stream>`.
pub fn origin(base: &str, stream: &str) -> String {
    format!("{base}/{stream}")
}

/// The record stream an origin names under `base`, if it is `<base>/<S>` with `S` a stream name
/// ([`crate::witness::is_stream_name`]: `[A-Z0-9_]`, 1–64 bytes).
pub fn stream_of_origin<'a>(base: &str, origin: &'a str) -> Option<&'a str> {
    let s = origin.strip_prefix(base)?.strip_prefix('/')?;
    crate::witness::is_stream_name(s).then_some(s)
}

/// The verifier of `stream`'s checkpoints given the base verifier key.
///
/// # Errors
/// A stream name that makes an invalid key name.
pub fn verifier_for(base: &NoteVerifier, stream: &str) -> anyhow::Result<NoteVerifier> {
    use keyledger_transparency::note::Verifier as _;
    base.renamed(&origin(base.name(), stream)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// First word of the extension line every note on the checkpoint stream carries:
/// `keyledger-prev <64 hex>`, the [`chain_hash`] of the checkpoint stream's previous message
/// (64 zeros for the first). Signed with the note, so the checkpoint stream is one chain: a
/// checkpoint removed, reordered or inserted anywhere but at the end breaks it.
pub const PREV_LINE_TAG: &str = "keyledger-prev";
/// BLAKE3 derive-key context of [`chain_hash`].
pub const CHAIN_HASH_CONTEXT: &str = "keyledger 2026-12-07 checkpoint chain v1";

/// The chain hash of one stored checkpoint-stream message: BLAKE3 derive-key
/// ([`CHAIN_HASH_CONTEXT`]) of its exact payload (32 bytes).
pub fn chain_hash(payload: &[u8]) -> [u8; 32] {
    blake3::derive_key(CHAIN_HASH_CONTEXT, payload)
}

/// The extension line naming `prev`.
pub fn prev_line(prev: &[u8; 32]) -> String {
    format!("{PREV_LINE_TAG} {}", hex::encode(prev))
}

/// The `prev` a note names, if it has exactly one well-formed prev line.
pub fn prev_of(c: &Checkpoint) -> Option<[u8; 32]> {
    let mut found = c.extensions.iter().filter_map(|l| l.strip_prefix(PREV_LINE_TAG)?.strip_prefix(' '));
    let hex_text = found.next()?;
    if found.next().is_some() {
        return None;
    }
    hex::decode(hex_text).ok()?.try_into().ok()
}

/// A witness the checkpointer asks for cosignatures.
#[derive(Clone, Debug)]
pub struct WitnessTarget {
    /// `http://host:port` of `keyledger witness serve` (its `/add-checkpoint`).
    pub url: String,
    /// The witness's verifier key (its cosignature is checked before it is stored).
    pub key: WitnessVerifier,
}

/// The checkpointer's settings.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// The log signing key.
    pub key: Arc<LogKey>,
    /// How often a grown tree is signed (1 s).
    pub interval: Duration,
    /// How long a lease lasts without renewal (10 s).
    pub lease_ttl: Duration,
    /// The witness, if any.
    pub witness: Option<WitnessTarget>,
    /// Commit a projection snapshot every this many control records (0: never); the roles
    /// write their snapshot files at the same positions ([`crate::snapshot`]).
    pub snapshot_every: u64,
}

impl CheckpointConfig {
    /// The defaults with `key`: 1 s interval, 10 s lease, no witness.
    pub fn new(key: Arc<LogKey>) -> Self {
        Self {
            key,
            interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
            witness: None,
            snapshot_every: crate::snapshot::DEFAULT_SNAPSHOT_EVERY,
        }
    }
}

/// The newest stored checkpoint of a stream.
#[derive(Clone, Debug)]
struct Stored {
    /// Its sequence on the checkpoint stream.
    subject_seq: u64,
    signed: SignedCheckpoint,
}

#[derive(Default)]
struct Tree {
    tree: MerkleTree,
    /// Why this stream's tree stopped (a gap, an unreproducible stored checkpoint).
    halted: Option<String>,
    latest: Option<Stored>,
    /// The size the witness last cosigned (as far as this instance knows).
    witness_size: Option<u64>,
    /// True while a follower task reads the stream.
    following: bool,
    /// Control stream: the newest snapshot position folded here, not yet committed.
    pending_snapshot: Option<crate::snapshot::SnapshotClaim>,
    /// Control stream: the size of the newest stored snapshot note.
    snapshot_committed: u64,
}

type Trees = Arc<Mutex<HashMap<String, Tree>>>;

/// An inclusion proof answered on `kl.v1.sys.proof`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProofAnswer {
    /// Record stream.
    pub stream: String,
    /// Stream sequence of the record (1-based).
    pub seq: u64,
    /// Leaf index (`seq − 1`).
    pub index: u64,
    /// Tree size of the checkpoint the proof is against.
    pub size: u64,
    /// The checkpoint origin (`<log key name>/<stream>`).
    pub origin: String,
    /// The leaf entry: the record's BLAKE3 hash, lowercase hex (64 characters).
    pub event_hash: String,
    /// The `c2sp.org/tlog-proof@v1` text (index, path, signed checkpoint).
    pub proof: String,
}

/// A request on `kl.v1.sys.proof`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofRequest {
    /// Record stream.
    pub stream: String,
    /// Stream sequence (1-based).
    pub seq: u64,
}

/// Why no proof: `{"error": "<code>", "message"}` on `kl.v1.sys.proof`. Codes: `BadRequest`,
/// `NotCheckpointed` (the record is newer than the newest checkpoint, or not yet read: retry
/// in a second), `NotFound` (no such stream).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProofRefusal {
    /// The code.
    pub error: String,
    /// One sentence.
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct Lease {
    holder: String,
    expires_unix_ms: u64,
}

const LEASE_KEY: &str = "signer";

/// Starts the checkpointer's tasks: stream followers, the signing loop, the proof responder.
///
/// # Errors
/// The checkpoint stream or the lease bucket cannot be opened or created, or the proof
/// subscription fails.
pub async fn start(
    nats: async_nats::Client,
    js: Context,
    config: CheckpointConfig,
    replicas: usize,
    clock: Clock,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let log = CheckpointLog::open(js.clone(), replicas).await?;
    let lease = match js.get_key_value(names::CHECKPOINT_LEASE_BUCKET).await {
        Ok(kv) => kv,
        Err(_) => js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: names::CHECKPOINT_LEASE_BUCKET.to_owned(),
                description: "Keyledger checkpointer lease (one signer at a time)".to_owned(),
                history: 1,
                num_replicas: replicas,
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the lease bucket: {e}"))?,
    };
    let trees: Trees = Arc::new(Mutex::new(HashMap::new()));
    let sub = nats
        .queue_subscribe(names::PROOF_SUBJECT, "keyledger-checkpointer".to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {}: {e}", names::PROOF_SUBJECT))?;
    nats.flush().await.map_err(|e| anyhow::anyhow!("cannot flush: {e}"))?;
    let mut holder = [0u8; 8];
    getrandom::getrandom(&mut holder).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let signer = Signer {
        js,
        log,
        lease,
        holder: hex::encode(holder),
        trees: trees.clone(),
        config: config.clone(),
        clock,
        followers: Vec::new(),
        head: Mutex::new(None),
    };
    let proof_js = signer.js.clone();
    Ok(vec![tokio::spawn(signer.run()), tokio::spawn(answer_proofs(nats, proof_js, sub, trees))])
}

struct Signer {
    js: Context,
    log: CheckpointLog,
    lease: async_nats::jetstream::kv::Store,
    holder: String,
    trees: Trees,
    config: CheckpointConfig,
    clock: Clock,
    followers: Vec<JoinHandle<()>>,
    /// The checkpoint stream's last message as this signer last saw it (sequence, chain hash).
    head: Mutex<Option<(u64, [u8; 32])>>,
}

impl Drop for Signer {
    fn drop(&mut self) {
        for f in &self.followers {
            f.abort();
        }
    }
}

impl Signer {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.discover().await {
                tracing::warn!(error = %e, "checkpointer: cannot list the record streams");
                continue;
            }
            let streams: Vec<String> = self.trees.lock().expect("trees lock").keys().cloned().collect();
            for stream in &streams {
                if let Err(e) = self.refresh_latest(stream).await {
                    tracing::warn!(stream, error = %e, "checkpointer: cannot read the latest checkpoint");
                }
            }
            match self.hold_lease().await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "checkpointer: lease unavailable");
                    continue;
                }
            }
            for stream in &streams {
                if let Err(e) = self.checkpoint(stream).await {
                    tracing::warn!(stream, error = %e, "checkpointer: no checkpoint this tick");
                }
            }
            if let Err(e) = self.commit_snapshot().await {
                tracing::warn!(error = %e, "checkpointer: no snapshot note this tick");
            }
        }
    }

    /// Starts a follower for every record stream not yet followed.
    async fn discover(&mut self) -> anyhow::Result<()> {
        for name in crate::export::list_streams(&self.js).await? {
            let start = {
                let mut trees = self.trees.lock().expect("trees lock");
                let t = trees.entry(name.clone()).or_default();
                if t.following || t.halted.is_some() {
                    None
                } else {
                    t.following = true;
                    Some(t.tree.size() + 1)
                }
            };
            if let Some(from) = start {
                let stream = match self.js.get_stream(&name).await {
                    Ok(s) => s,
                    Err(e) => {
                        // Not followed after all: the next tick tries again.
                        if let Some(t) = self.trees.lock().expect("trees lock").get_mut(&name) {
                            t.following = false;
                        }
                        anyhow::bail!("cannot open stream {name}: {e}");
                    }
                };
                let every = if name == names::CONTROL_STREAM { self.config.snapshot_every } else { 0 };
                self.followers.push(tokio::spawn(follow(stream, name, from, self.trees.clone(), every)));
            }
        }
        Ok(())
    }

    /// Reads the newest stored checkpoint of `stream` and checks it against this tree.
    async fn refresh_latest(&self, stream: &str) -> anyhow::Result<()> {
        if stream == names::CONTROL_STREAM {
            if let Some(record) = self.log.latest_snapshot(stream).await? {
                let verifier = verifier_for(&self.config.key.verifier(), stream)?;
                let size = SignedCheckpoint::open(&record.payload, &verifier).map(|s| s.checkpoint().size).unwrap_or(0);
                let mut trees = self.trees.lock().expect("trees lock");
                let t = trees.entry(stream.to_owned()).or_default();
                t.snapshot_committed = t.snapshot_committed.max(size);
            }
        }
        let Some(record) = self.log.latest(stream).await? else { return Ok(()) };
        let mut trees = self.trees.lock().expect("trees lock");
        let t = trees.entry(stream.to_owned()).or_default();
        if t.latest.as_ref().is_some_and(|l| l.subject_seq == record.stream_seq) {
            return Ok(());
        }
        let verifier = verifier_for(&self.config.key.verifier(), stream)?;
        let signed = match SignedCheckpoint::open(&record.payload, &verifier) {
            Ok(s) => s,
            Err(e) => {
                let why = format!("stored checkpoint #{} does not verify under the log key: {e}", record.stream_seq);
                tracing::error!(stream, alarm = "integrity", "{why}; this stream is no longer checkpointed");
                t.halted = Some(why);
                return Ok(());
            }
        };
        t.latest = Some(Stored { subject_seq: record.stream_seq, signed });
        Ok(())
    }

    /// Takes or renews the lease. True while this instance holds it.
    async fn hold_lease(&self) -> anyhow::Result<bool> {
        let now = self.clock.now_unix_ms();
        let ttl = u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let mine =
            serde_json::to_vec(&Lease { holder: self.holder.clone(), expires_unix_ms: now.saturating_add(ttl) })?;
        let entry = self.lease.entry(LEASE_KEY).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let current = entry.filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put);
        let Some(current) = current else {
            return Ok(self.lease.create(LEASE_KEY, mine.into()).await.is_ok());
        };
        let held: Option<Lease> = serde_json::from_slice(&current.value).ok();
        let ours = held.as_ref().is_some_and(|l| l.holder == self.holder);
        let expired = held.as_ref().is_none_or(|l| l.expires_unix_ms < now);
        if !ours && !expired {
            return Ok(false);
        }
        Ok(self.lease.update(LEASE_KEY, mine.into(), current.revision).await.is_ok())
    }

    /// Signs and stores a checkpoint of `stream` if its tree grew past the stored one.
    async fn checkpoint(&mut self, stream: &str) -> anyhow::Result<()> {
        let prepared = {
            let mut trees = self.trees.lock().expect("trees lock");
            let Some(t) = trees.get_mut(stream) else { return Ok(()) };
            if t.halted.is_some() {
                return Ok(());
            }
            let size = t.tree.size();
            let old_size = t.latest.as_ref().map_or(0, |l| l.signed.checkpoint().size);
            if size <= old_size {
                if let Some(l) = &t.latest {
                    // Not yet read up to the stored checkpoint (a restart): nothing to sign.
                    if size == old_size && t.tree.root() != l.signed.checkpoint().root {
                        let why = format!("the stored checkpoint of size {size} has another root than the stream");
                        tracing::error!(stream, alarm = "integrity", "{why}; this stream is no longer checkpointed");
                        t.halted = Some(why);
                    }
                }
                return Ok(());
            }
            if let Some(l) = &t.latest {
                let root = t.tree.root_at(old_size).map_err(|e| anyhow::anyhow!("{e}"))?;
                if root != l.signed.checkpoint().root {
                    let why = format!("the stored checkpoint of size {old_size} has another root than the stream");
                    tracing::error!(stream, alarm = "integrity", "{why}; this stream is no longer checkpointed");
                    t.halted = Some(why);
                    return Ok(());
                }
            }
            let witness = self.config.witness.as_ref().map(|_| {
                let from = t.witness_size.unwrap_or(old_size).min(size);
                (from, t.tree.consistency_proof(from, size).unwrap_or_default())
            });
            (size, t.tree.root(), witness)
        };
        let (size, root, witness) = prepared;
        let (fence, prev) = self.chain_head().await?;
        let signer = self.config.key.signer_for(stream)?;
        let mut checkpoint = Checkpoint::new(signer.name(), size, root);
        checkpoint.extensions.push(prev_line(&prev));
        let mut signed =
            SignedCheckpoint::sign(checkpoint, &signer).map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
        if let (Some(target), Some((old_size, proof))) = (&self.config.witness, witness) {
            self.cosign(stream, target, &mut signed, old_size, proof).await;
        }
        let text = signed.to_text();
        match self.log.append(stream, fence, &text).await {
            Ok(seq) => {
                tracing::debug!(stream, size, seq, "checkpoint stored");
                *self.head.lock().expect("head lock") = Some((seq, chain_hash(text.as_bytes())));
                let mut trees = self.trees.lock().expect("trees lock");
                if let Some(t) = trees.get_mut(stream) {
                    t.latest = Some(Stored { subject_seq: seq, signed });
                }
                Ok(())
            }
            Err(AppendError::Conflict { .. }) => {
                tracing::info!(stream, "another signer stored a checkpoint first; re-reading");
                *self.head.lock().expect("head lock") = None;
                Ok(())
            }
            Err(e) => {
                *self.head.lock().expect("head lock") = None;
                Err(anyhow::anyhow!("cannot store the checkpoint: {e}"))
            }
        }
    }

    /// Signs and stores the snapshot note of the newest folded snapshot position, once.
    async fn commit_snapshot(&self) -> anyhow::Result<()> {
        let stream = names::CONTROL_STREAM;
        let claim = {
            let trees = self.trees.lock().expect("trees lock");
            let Some(t) = trees.get(stream) else { return Ok(()) };
            match &t.pending_snapshot {
                Some(c) if c.seq > t.snapshot_committed && t.halted.is_none() => c.clone(),
                _ => return Ok(()),
            }
        };
        let (fence, prev) = self.chain_head().await?;
        let signer = self.config.key.signer_for(stream)?;
        let mut checkpoint = claim.checkpoint(signer.name());
        checkpoint.extensions.push(prev_line(&prev));
        let note = SignedCheckpoint::sign(checkpoint, &signer).map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
        let text = note.to_text();
        match self.log.append_snapshot(stream, fence, &text).await {
            Ok(seq) => {
                tracing::info!(snapshot_seq = claim.seq, "snapshot note stored");
                *self.head.lock().expect("head lock") = Some((seq, chain_hash(text.as_bytes())));
                let mut trees = self.trees.lock().expect("trees lock");
                if let Some(t) = trees.get_mut(stream) {
                    t.snapshot_committed = t.snapshot_committed.max(claim.seq);
                }
                Ok(())
            }
            Err(e) => {
                *self.head.lock().expect("head lock") = None;
                match e {
                    AppendError::Conflict { .. } => Ok(()),
                    e => Err(anyhow::anyhow!("cannot store the snapshot note: {e}")),
                }
            }
        }
    }

    /// The checkpoint stream's last message: (its sequence, its chain hash), both 0 when the
    /// stream is empty. Cached after each append; read again after a conflict or an error.
    async fn chain_head(&self) -> anyhow::Result<(u64, [u8; 32])> {
        if let Some(h) = *self.head.lock().expect("head lock") {
            return Ok(h);
        }
        let head = match self.log.last().await? {
            Some(r) => (r.stream_seq, chain_hash(&r.payload)),
            None => (0, [0; 32]),
        };
        *self.head.lock().expect("head lock") = Some(head);
        Ok(head)
    }

    /// Asks the witness to cosign; adds its cosignature when it verifies.
    async fn cosign(
        &self,
        stream: &str,
        target: &WitnessTarget,
        signed: &mut SignedCheckpoint,
        old_size: u64,
        proof: Vec<keyledger_transparency::Hash>,
    ) {
        let size = signed.checkpoint().size;
        let mut request = AddCheckpointRequest { old_size, proof, checkpoint: signed.to_text() };
        let mut result = crate::witness::add_checkpoint(&target.url, &request).await;
        // tlog-witness: a 409 names the size the witness last cosigned; retry once from there.
        if let Err(e @ crate::witness::WitnessClientError::Refused { status: 409, .. }) = &result {
            let retry_from = e.latest_size().filter(|s| *s <= size && *s != old_size);
            let proof = retry_from.and_then(|from| {
                let trees = self.trees.lock().expect("trees lock");
                trees.get(stream).and_then(|t| t.tree.consistency_proof(from, size).ok()).map(|p| (from, p))
            });
            if let Some((from, proof)) = proof {
                request.old_size = from;
                request.proof = proof;
                result = crate::witness::add_checkpoint(&target.url, &request).await;
            }
        }
        match result {
            Ok(signatures) => {
                for sig in signatures {
                    if target.key.verify_cosignature(signed.body(), &sig).is_ok() {
                        let _ = signed.add_signature(sig);
                    } else {
                        tracing::warn!(stream, "the witness returned a cosignature that does not verify; not stored");
                    }
                }
                self.set_witness_size(stream, size);
            }
            Err(e @ crate::witness::WitnessClientError::Refused { status: 409, .. }) => {
                // tlog-witness: the body is the witness's latest cosigned size.
                let recorded = e.latest_size();
                tracing::warn!(stream, status = 409, ?recorded, "the witness has another size; retrying next tick");
                if let Some(s) = recorded {
                    self.set_witness_size(stream, s);
                }
            }
            Err(e) => tracing::warn!(stream, error = %e, "the witness did not cosign; checkpoint stored without it"),
        }
    }

    fn set_witness_size(&self, stream: &str, size: u64) {
        if let Some(t) = self.trees.lock().expect("trees lock").get_mut(stream) {
            t.witness_size = Some(size);
        }
    }
}

/// Appends every stored message of `stream` from `from` on to its tree; a gap halts the tree.
/// With `snapshot_every` > 0 (the control stream) it also folds the records into a projection
/// and, at every multiple of it, records the snapshot claim the signer commits.
async fn follow(
    stream: async_nats::jetstream::stream::Stream,
    name: String,
    from: u64,
    trees: Trees,
    snapshot_every: u64,
) {
    let mut next = from;
    let mut fold = (snapshot_every > 0 && from == 1).then(keyledger_kms::Projection::default);
    loop {
        let mut messages = Box::pin(keyledger_log::follow_stream(stream.clone(), next));
        while let Some(item) = messages.next().await {
            match item {
                Ok(record) => {
                    let hash = keyledger_events::record_hash(&record.payload);
                    let claim = fold_for_snapshot(&mut fold, &record, snapshot_every);
                    let mut trees = trees.lock().expect("trees lock");
                    let t = trees.entry(name.clone()).or_default();
                    t.tree.append(&hash);
                    if let Some((hash, state_digest)) = claim {
                        let claim = crate::snapshot::SnapshotClaim {
                            seq: record.stream_seq,
                            root: t.tree.root(),
                            hash,
                            state_digest,
                        };
                        t.pending_snapshot = Some(claim);
                    }
                    next = record.stream_seq + 1;
                }
                Err(keyledger_log::LogError::Gap { expected, found })
                    if found < expected || sequence_exists(&stream, expected).await =>
                {
                    // A redelivery, or a consumer that skipped ahead after a server failed
                    // over: read again from the next sequence.
                    tracing::info!(stream = %name, expected, found, "checkpointer: consumer out of step; resuming");
                    break;
                }
                Err(keyledger_log::LogError::Gap { expected, found }) => {
                    let why = format!("stream sequences {expected}..{found} are missing");
                    tracing::error!(stream = %name, alarm = "integrity", "{why}; this stream is no longer checkpointed");
                    let mut trees = trees.lock().expect("trees lock");
                    let t = trees.entry(name.clone()).or_default();
                    t.halted = Some(why);
                    t.following = false;
                    return;
                }
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, "checkpointer: reading the stream failed; resuming");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// True unless the server says the message at `seq` does not exist (deleted): only then is a
/// skipped sequence a real gap. Read errors count as "exists" (try again).
async fn sequence_exists(stream: &async_nats::jetstream::stream::Stream, seq: u64) -> bool {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    !matches!(stream.direct_get(seq).await, Err(e) if e.kind() == DirectGetErrorKind::NotFound)
}

/// Folds one control record; at a snapshot position, the snapshot's hash and state digest. A
/// record that does not apply stops the folding (logged): no more snapshots are committed.
fn fold_for_snapshot(
    fold: &mut Option<keyledger_kms::Projection>,
    record: &keyledger_log::StoredRecord,
    every: u64,
) -> Option<([u8; 32], [u8; 32])> {
    let p = fold.as_mut()?;
    if let Err(reason) = crate::follower::apply_record(p, record) {
        tracing::error!(%reason, "checkpointer: the control stream does not fold; no more snapshots are committed");
        *fold = None;
        return None;
    }
    record.stream_seq.is_multiple_of(every).then(|| (crate::snapshot::snapshot_hash(&p.snapshot()), p.state_digest()))
}

/// The proof for `request` from `trees`, and the leaf hash it proves (`SHA-256(0x00 ‖ entry)`).
fn prove(trees: &Trees, request: &ProofRequest) -> Result<(ProofAnswer, keyledger_transparency::Hash), ProofRefusal> {
    let refuse = |error: &str, message: String| ProofRefusal { error: error.to_owned(), message };
    if request.seq == 0 {
        return Err(refuse("BadRequest", "stream sequences start at 1".to_owned()));
    }
    let trees = trees.lock().expect("trees lock");
    let Some(t) = trees.get(&request.stream) else {
        if crate::export::is_record_stream(&request.stream) {
            return Err(refuse("NotCheckpointed", "this stream is not followed yet; retry".to_owned()));
        }
        return Err(refuse("NotFound", format!("no record stream {:?}", request.stream)));
    };
    let index = request.seq - 1;
    let Some(latest) = t.latest.as_ref().filter(|l| l.signed.checkpoint().size > index) else {
        return Err(refuse("NotCheckpointed", "the record is not covered by a checkpoint yet; retry".to_owned()));
    };
    let size = latest.signed.checkpoint().size;
    let (Ok(path), Some(leaf)) = (t.tree.inclusion_proof(index, size), t.tree.leaf_hash_at(index)) else {
        return Err(refuse("NotCheckpointed", "this instance has not read the stream that far; retry".to_owned()));
    };
    let answer = ProofAnswer {
        stream: request.stream.clone(),
        seq: request.seq,
        index,
        size,
        origin: latest.signed.checkpoint().origin.clone(),
        event_hash: String::new(),
        proof: InclusionProofBundle::new(index, path, &latest.signed).encode(),
    };
    Ok((answer, leaf))
}

/// Answers `kl.v1.sys.proof`: the proof from the trees, with the record's BLAKE3 hash read
/// back from the stream (and checked against the tree's leaf).
async fn answer_proofs(nats: async_nats::Client, js: Context, mut sub: async_nats::Subscriber, trees: Trees) {
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else { continue };
        let answer = match serde_json::from_slice::<ProofRequest>(&msg.payload) {
            Ok(request) => match prove(&trees, &request) {
                Ok((mut answer, leaf)) => match entry_at(&js, &request).await {
                    Ok(entry) if keyledger_transparency::leaf_hash(&entry) == leaf => {
                        answer.event_hash = hex::encode(entry);
                        serde_json::to_vec(&answer)
                    }
                    Ok(_) => serde_json::to_vec(&ProofRefusal {
                        error: "IntegrityAlarm".to_owned(),
                        message: "the stored record no longer hashes to the committed leaf".to_owned(),
                    }),
                    Err(e) => serde_json::to_vec(&ProofRefusal {
                        error: "NotCheckpointed".to_owned(),
                        message: format!("cannot read the record: {e}"),
                    }),
                },
                Err(r) => serde_json::to_vec(&r),
            },
            Err(e) => serde_json::to_vec(&ProofRefusal { error: "BadRequest".to_owned(), message: e.to_string() }),
        };
        if let Ok(body) = answer {
            let _ = nats.publish(reply, body.into()).await;
        }
    }
}

/// The BLAKE3 record hash of the message at `request.seq`.
async fn entry_at(js: &Context, request: &ProofRequest) -> anyhow::Result<[u8; 32]> {
    let stream = js.get_stream(&request.stream).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let message = stream.direct_get(request.seq).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(keyledger_events::record_hash(&message.payload))
}
