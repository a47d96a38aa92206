//! Projection snapshots: a cold start reads a snapshot and the tail of the control stream
//! instead of the whole log (`audit-integrity.md` §2.12).
//!
//! - **Where.** Every role process with a snapshot directory writes the snapshot of its
//!   projection when it has applied control sequence N with N a multiple of
//!   [`SnapshotConfig::every`] (`control-<N, 20 digits>.snap`, the bytes of
//!   [`Projection::snapshot`], written through a temporary file, fsynced, the newest
//!   [`KEEP_FILES`] kept). The bytes are a function of the first N records only, so every
//!   process writes the same file for the same N.
//! - **Committed in the log.** The checkpointer folds the control stream too and, for the same
//!   N, signs a *snapshot note* with the log key: a checkpoint of the control stream at size N
//!   (origin `<log key name>/KL_CONTROL_V1`, the RFC 6962 root at N) with one extension line
//!   `keyledger-snapshot/v1 <snapshot hash hex> <state digest hex>`, stored on
//!   `kl.v1.ckpt.KL_CONTROL_V1.snapshot` (fenced appends, deny delete).
//! - **Verified before use.** At start, a role takes the newest snapshot note, verifies it under
//!   the log's verifier key, and uses the file for that N only if its hash is the one the note
//!   signs, it decodes canonically, and its state digest is the note's. Anything else — no
//!   note, no file, another hash, a bad signature, undecodable bytes — is refused with a
//!   warning naming the reason, and the log is replayed from sequence 1 instead. The tail from
//!   N + 1 is then applied with the usual chain checks against the snapshot's aggregate heads.
//!
//! What a verified snapshot proves: the log key holder signed that the control stream's first
//! N records have this root and fold to this state. It does not re-read those N records (that
//! is what `keyledger verify` and `keyledger replay` are for).

use std::path::{Path, PathBuf};

use keyledger_events::names;
use keyledger_kms::Projection;
use keyledger_log::CheckpointLog;
use keyledger_transparency::{Checkpoint, NoteVerifier, SignedCheckpoint};

/// The first word of a snapshot note's extension line.
pub const SNAPSHOT_NOTE_TAG: &str = "keyledger-snapshot/v1";
/// Default interval between snapshots, in control records.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
/// Snapshot files kept per directory (older ones are removed).
pub const KEEP_FILES: usize = 2;
/// BLAKE3 derive-key context of a snapshot's hash.
pub const SNAPSHOT_HASH_CONTEXT: &str = "keyledger 2026-12-07 projection snapshot v1";

/// Snapshot settings of a role process.
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// Where this process writes and reads snapshot files; None: no snapshots (the log is
    /// always replayed from sequence 1).
    pub dir: Option<PathBuf>,
    /// Interval in control records (≥ 1); the checkpointer commits snapshots at the same
    /// positions.
    pub every: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self { dir: None, every: DEFAULT_SNAPSHOT_EVERY }
    }
}

/// The hash a snapshot note commits to: BLAKE3 derive-key ([`SNAPSHOT_HASH_CONTEXT`]) of the
/// snapshot bytes (32 bytes).
pub fn snapshot_hash(bytes: &[u8]) -> [u8; 32] {
    blake3::derive_key(SNAPSHOT_HASH_CONTEXT, bytes)
}

/// The file name of the snapshot at control sequence `seq`.
pub fn file_name(seq: u64) -> String {
    format!("control-{seq:020}.snap")
}

/// Writes a snapshot file durably (temporary file, fsync, rename, directory fsync), then removes
/// all but the newest [`KEEP_FILES`].
///
/// # Errors
/// I/O errors.
pub fn write_file(dir: &Path, seq: u64, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join(file_name(seq))).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    let mut files = list_files(dir)?;
    files.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    for (_, path) in files.into_iter().skip(KEEP_FILES) {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The snapshot files in `dir`, by control sequence.
fn list_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("control-"))
            .and_then(|n| n.strip_suffix(".snap"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    Ok(out)
}

/// What a snapshot note claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotClaim {
    /// Control sequence (= tree size) of the snapshot.
    pub seq: u64,
    /// The control stream's root at that size.
    pub root: [u8; 32],
    /// [`snapshot_hash`] of the snapshot bytes.
    pub hash: [u8; 32],
    /// The projection's state digest.
    pub state_digest: [u8; 32],
}

impl SnapshotClaim {
    /// The unsigned note: a checkpoint of the control stream at `seq` under `origin` with the
    /// snapshot extension line.
    pub fn checkpoint(&self, origin: &str) -> Checkpoint {
        let mut c = Checkpoint::new(origin, self.seq, self.root);
        c.extensions.push(format!("{SNAPSHOT_NOTE_TAG} {} {}", hex::encode(self.hash), hex::encode(self.state_digest)));
        c
    }

    /// The claim of a (verified) snapshot note; None unless it has exactly one valid snapshot
    /// line (other extension lines may be the chain's `keyledger-prev` line only).
    pub fn from_checkpoint(c: &Checkpoint) -> Option<Self> {
        let mut lines = c.extensions.iter().filter(|l| !l.starts_with(crate::checkpointer::PREV_LINE_TAG));
        let (Some(line), None) = (lines.next(), lines.next()) else { return None };
        let mut words = line.split(' ');
        let (Some(SNAPSHOT_NOTE_TAG), Some(h), Some(d), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return None;
        };
        let hex32 = |s: &str| -> Option<[u8; 32]> { hex::decode(s).ok()?.try_into().ok() };
        Some(Self { seq: c.size, root: c.root, hash: hex32(h)?, state_digest: hex32(d)? })
    }
}

/// The newest snapshot committed in the log, verified, with its file from `dir`.
///
/// `Ok(None)`: nothing to use (no snapshot note yet, or no file for it: not an error).
///
/// # Errors
/// Why a snapshot that exists was refused (the caller replays the log instead): the note does
/// not verify under `log_key`, the file's hash or state digest differs from the note's, or
/// the file does not decode canonically. The message holds no state.
pub async fn load_verified(
    dir: &Path,
    checkpoints: &CheckpointLog,
    log_key: &NoteVerifier,
) -> Result<Option<Projection>, String> {
    let stored = checkpoints
        .latest_snapshot(names::CONTROL_STREAM)
        .await
        .map_err(|e| format!("cannot read the snapshot notes: {e}"))?;
    let Some(stored) = stored else { return Ok(None) };
    let verifier = crate::checkpointer::verifier_for(log_key, names::CONTROL_STREAM).map_err(|e| e.to_string())?;
    let signed = SignedCheckpoint::open(&stored.payload, &verifier)
        .map_err(|e| format!("the newest snapshot note does not verify under the log key: {e}"))?;
    let claim =
        SnapshotClaim::from_checkpoint(signed.checkpoint()).ok_or("the newest snapshot note has no snapshot line")?;
    let path = dir.join(file_name(claim.seq));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if snapshot_hash(&bytes) != claim.hash {
        return Err(format!("{} is not the snapshot the log committed to at {}", path.display(), claim.seq));
    }
    let projection = Projection::from_snapshot(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if projection.last_applied_seq() != claim.seq || projection.state_digest() != claim.state_digest {
        return Err(format!("{} does not hold the state the log committed to", path.display()));
    }
    Ok(Some(projection))
}
