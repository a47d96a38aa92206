//! `keyledger witness`: a `c2sp.org/tlog-witness` service that cosigns Keyledger's checkpoints,
//! with its own key and its own state on local disk, outside NATS (`audit-integrity.md` §2.7,
//! "Internal witness").
//!
//! The decision itself is the pure [`WitnessState::add_checkpoint`] of `keyledger-transparency`;
//! this module adds what the pure crate leaves out:
//!
//! - **The origin rule** ([`log_verifiers_for`]): Keyledger signs one checkpoint per log stream
//!   with one Ed25519 log key; a stream's origin is `<log key name>/<STREAM NAME>`.
//! - **Storage** ([`Witness`]): a directory holding `witness.key` (the cosigning key, mode 0600),
//!   `state.json` (what was cosigned per origin, written atomically and durably *before* a
//!   cosignature is answered), `evidence/` (one JSON file per refused fork: two checkpoints of
//!   one size, both signed by the log key) and `lock` (one witness process per directory).
//! - **HTTP** ([`router`], [`start`]): `POST /add-checkpoint` as tlog-witness defines it. Plain
//!   HTTP only: there is no TLS here. Run it on loopback or behind a TLS-terminating proxy; a
//!   non-loopback listen address is accepted with a warning.
//! - **A client** ([`add_checkpoint`]) for the checkpointer.
//!
//! What the witness guarantees: it never cosigns two checkpoints of one origin that are not
//! consistent (same size with another root, or a larger size without a valid RFC 6962
//! consistency proof from the size it last cosigned), across restarts and crashes, because the
//! new state is on disk (file and directory fsynced) before the cosignature leaves the process,
//! and requests are decided one at a time.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keyledger_transparency::{
    AddCheckpointRequest, Checkpoint, LogHead, Note, NoteSignature, NoteVerifier, Verifier as _, WitnessRefusal,
    WitnessSigner, WitnessState, WitnessVerifier, MAX_ADD_CHECKPOINT_BYTES,
};
use zeroize::Zeroizing;

/// The witness's cosigning key in its directory: [`WitnessSigner`]'s text form and a newline,
/// mode 0600.
pub const KEY_FILE: &str = "witness.key";
/// The witness's state in its directory: [`WitnessState::to_json`].
pub const STATE_FILE: &str = "state.json";
/// The evidence folder in the witness's directory: one [`EvidenceRecord`] JSON file per fork.
pub const EVIDENCE_DIR: &str = "evidence";
/// The lock file in the witness's directory, held (`flock`, exclusive) while a [`Witness`] is
/// open, so that two processes never decide on one state.
pub const LOCK_FILE: &str = "lock";
/// The tlog-witness endpoint, below the witness's submission URL.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";
/// Longest stream name in an origin (`<log key name>/<STREAM NAME>`), in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 64;
/// Content type of a 409 answer carrying the witness's latest size (tlog-witness).
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
/// Time [`add_checkpoint`] allows a whole request (connect, send, read the answer).
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of a refusal's body kept in [`WitnessClientError::Refused`].
pub const MAX_REFUSAL_BODY_BYTES: usize = 512;
/// Largest 200 answer the client reads, in bytes (cosignature lines are about 130 bytes each).
pub const MAX_COSIGNATURE_RESPONSE_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// The origin rule

/// Whether `name` is a Keyledger stream name as it ends an origin: 1 to
/// [`MAX_STREAM_NAME_BYTES`] characters of `[A-Z0-9_]` (e.g. `KL_CONTROL_V1`,
/// `KL_USAGE_V1_202612`).
pub fn is_stream_name(name: &str) -> bool {
    (1..=MAX_STREAM_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The note verifiers that may sign a checkpoint of `origin`, given the configured log keys
/// `bases`.
///
/// The rule (Keyledger's; the checkpointer, the witness and `keyledger verify` share it): the
/// log signs one checkpoint per log stream with one Ed25519 key, and a stream's origin is
/// `<log key name>/<STREAM NAME>` (e.g. `keyledger.local/log-ab12/KL_CONTROL_V1`). So for an
/// origin `<base>/<suffix>`, split at its last `/`, where `<suffix>` is a stream name
/// ([`is_stream_name`]), the answer holds one verifier named `origin` with the public key of
/// each base key named `<base>` (several during a key rotation; identical keys once). Any other
/// origin, including a base key's own name, gets an empty list: the witness answers
/// `UnknownOrigin` (404, `c2sp.org/tlog-witness`). The verifiers' key ids are computed from
/// the full origin (`c2sp.org/signed-note`), which is what a checkpoint signed by
/// `NoteSigner::from_seed(origin, seed)` carries.
pub fn log_verifiers_for(origin: &str, bases: &[NoteVerifier]) -> Vec<NoteVerifier> {
    let mut out: Vec<NoteVerifier> = Vec::new();
    for key in bases {
        let Some(stream) = crate::checkpointer::stream_of_origin(key.name(), origin) else { continue };
        let Ok(v) = crate::checkpointer::verifier_for(key, stream) else { continue };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Reads a `--log-key` argument: a note verifier key text (`<name>+<8 hex id>+<base64>`, as
/// [`NoteVerifier::parse`] reads it), or `@FILE` for a file holding one (surrounding white space
/// ignored).
///
/// # Errors
/// An unreadable file, or text that is not a note verifier key (type 0x01, matching key id).
pub fn parse_log_key_arg(arg: &str) -> anyhow::Result<NoteVerifier> {
    let (text, from) = match arg.strip_prefix('@') {
        Some(path) => {
            (std::fs::read_to_string(path).with_context(|| format!("cannot read the log key file {path}"))?, path)
        }
        None => (arg.to_owned(), "--log-key"),
    };
    NoteVerifier::parse(text.trim()).with_context(|| format!("{from} is not a note verifier key"))
}

// ---------------------------------------------------------------------------------------------
// Storage and the decision

/// An open witness: its directory (locked), its cosigning key and the log keys it trusts.
///
/// Every [`add_checkpoint`](Self::add_checkpoint) reads `state.json`, decides, and writes the
/// new state under one mutex, so the check of the old size and the store of the new one are
/// one atomic step (the race tlog-witness warns about).
pub struct Witness {
    dir: PathBuf,
    signer: WitnessSigner,
    log_keys: Vec<NoteVerifier>,
    serial: Mutex<()>,
    _lock: File,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("dir", &self.dir).field("signer", &self.signer).finish_non_exhaustive()
    }
}

/// Why [`Witness::add_checkpoint`] did not cosign.
#[derive(Debug, thiserror::Error)]
pub enum AddCheckpointError {
    /// The tlog-witness refusal (400, 403, 404, 409 or 422; see
    /// [`WitnessRefusal::http_status`]).
    #[error(transparent)]
    Refused(WitnessRefusal),
    /// The state could not be read or written (HTTP 500); nothing was cosigned.
    #[error("witness storage: {0:#}")]
    Storage(anyhow::Error),
}

/// The result of a cosigned `add-checkpoint`.
#[derive(Debug, Clone)]
pub struct Cosigned {
    /// The cosignature; its [`NoteSignature::to_line`] is the 200 answer.
    pub cosignature: NoteSignature,
    /// The checkpoint's origin.
    pub origin: String,
    /// The request's old size.
    pub old_size: u64,
    /// The checkpoint's size.
    pub size: u64,
}

impl Witness {
    /// Opens (or, the first time, creates) a witness directory.
    ///
    /// `dir` is created with mode 0700 if missing. The first run writes an empty `state.json`,
    /// then `witness.key` (mode 0600) with a key made from 32 bytes of OS randomness and named
    /// `name`, by default `keyledger-witness/<8 random hex>`. Later runs read the key; `name`, if
    /// given, must be its name. `log_keys` are the log keys whose streams it witnesses (see
    /// [`log_verifiers_for`]).
    ///
    /// # Errors
    /// Another process holds the directory's lock; the key file is unreadable, malformed, or
    /// readable by group or others; `name` differs from the key's name or is not a valid key
    /// name; `state.json` is missing while the key exists (the witness would forget what it
    /// cosigned), or is malformed; file system errors.
    pub fn open(dir: &Path, name: Option<&str>, log_keys: Vec<NoteVerifier>) -> anyhow::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .with_context(|| format!("cannot open {}", dir.join(LOCK_FILE).display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                anyhow::bail!("another keyledger witness is using {}", dir.display())
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", dir.join(LOCK_FILE).display()))
            }
        }
        // Temporary files a crash left between write and rename (never the live files).
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if [KEY_FILE, STATE_FILE].iter().any(|f| name.starts_with(&format!(".{f}.tmp-"))) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let key_path = dir.join(KEY_FILE);
        let state_path = dir.join(STATE_FILE);
        let signer = if key_path.exists() {
            let signer = read_signer(dir)?;
            if let Some(name) = name {
                anyhow::ensure!(
                    name == signer.name(),
                    "{} holds the key of witness {:?}, not {name:?} (omit --name, or give the same name)",
                    key_path.display(),
                    signer.name()
                );
            }
            anyhow::ensure!(
                state_path.exists(),
                "{} is missing while the witness key exists: starting afresh would forget what this witness \
                 cosigned (restore it from a backup)",
                state_path.display()
            );
            signer
        } else {
            let name = match name {
                Some(n) => n.to_owned(),
                None => {
                    let mut id = [0u8; 4];
                    getrandom::getrandom(&mut id).context("no OS randomness for the witness name")?;
                    format!("keyledger-witness/{}", hex::encode(id))
                }
            };
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::getrandom(&mut *seed).context("no OS randomness for the witness key")?;
            let signer = WitnessSigner::from_seed(&name, &seed)
                .map_err(|e| anyhow::anyhow!("{name:?} cannot name a witness key: {e}"))?;
            if !state_path.exists() {
                write_durable(dir, STATE_FILE, WitnessState::new().to_json().as_bytes(), 0o600)?;
            }
            let mut text = Zeroizing::new(signer.to_text().as_str().to_owned());
            text.push('\n');
            write_durable(dir, KEY_FILE, text.as_bytes(), 0o600)?;
            signer
        };
        let mut unique: Vec<NoteVerifier> = Vec::new();
        for k in log_keys {
            if !unique.contains(&k) {
                unique.push(k);
            }
        }
        let witness = Self { dir: dir.to_path_buf(), signer, log_keys: unique, serial: Mutex::new(()), _lock: lock };
        witness.load_state()?;
        Ok(witness)
    }

    /// The witness's cosignature verifier key (`c2sp.org/tlog-cosignature`, type 0x04); its
    /// `Display` is the vkey text.
    pub fn verifier(&self) -> WitnessVerifier {
        self.signer.verifier()
    }

    /// The witness's key name.
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state as persisted in `state.json`.
    ///
    /// # Errors
    /// The file is unreadable or malformed.
    pub fn load_state(&self) -> anyhow::Result<WitnessState> {
        let path = self.dir.join(STATE_FILE);
        let json = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        WitnessState::from_json(&json).with_context(|| format!("malformed witness state {}", path.display()))
    }

    /// One tlog-witness `add-checkpoint` request body, decided at `now_unix_s` (POSIX seconds,
    /// the cosignature's timestamp): parse, read the state, decide with
    /// [`WitnessState::add_checkpoint`] and the verifiers of [`log_verifiers_for`], persist the
    /// new state (temporary file, fsync, rename, fsync of the directory), and only then return
    /// the cosignature. A refusal leaves `state.json` untouched; a fork (a correctly signed
    /// checkpoint of a cosigned size with another root) is also written to `evidence/` (a failure to write it is
    /// logged, the refusal stands). Logs origin and sizes, never key material.
    ///
    /// # Errors
    /// [`AddCheckpointError::Refused`] with the refusal; [`AddCheckpointError::Storage`] if the
    /// state cannot be read or the new state cannot be persisted (nothing is cosigned).
    pub fn add_checkpoint(&self, body: &[u8], now_unix_s: u64) -> Result<Cosigned, AddCheckpointError> {
        let request = AddCheckpointRequest::parse(body).map_err(|r| self.refused(r, "", 0, 0))?;
        let (origin, size) = checkpoint_origin_and_size(&request.checkpoint).unwrap_or_default();
        let verifiers = log_verifiers_for(&origin, &self.log_keys);
        let _serial = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
        let state = self.load_state().map_err(AddCheckpointError::Storage)?;
        match state.add_checkpoint(&request, &verifiers, &self.signer, now_unix_s) {
            Ok(update) => {
                let json = update.state.to_json();
                if let Err(e) = write_durable(&self.dir, STATE_FILE, json.as_bytes(), 0o600) {
                    let error = format!("{e:#}");
                    tracing::error!(origin = ?origin, size, error, "witness: cannot persist the state; not cosigning");
                    return Err(AddCheckpointError::Storage(e));
                }
                tracing::info!(origin = ?origin, old_size = request.old_size, size, "witness: cosigned");
                Ok(Cosigned { cosignature: update.cosignature, origin, old_size: request.old_size, size })
            }
            Err(refusal) => {
                if let Some(record) = EvidenceRecord::from_refusal(&refusal, now_unix_s) {
                    match self.write_evidence(&record) {
                        Ok(path) => {
                            tracing::warn!(origin = ?origin, evidence = %path.display(), "witness: evidence kept")
                        }
                        Err(e) => {
                            let error = format!("{e:#}");
                            tracing::error!(origin = ?origin, error, "witness: cannot write evidence")
                        }
                    }
                }
                Err(self.refused(refusal, &origin, request.old_size, size))
            }
        }
    }

    fn refused(&self, refusal: WitnessRefusal, origin: &str, old_size: u64, size: u64) -> AddCheckpointError {
        tracing::warn!(
            origin = ?origin,
            old_size,
            size,
            status = refusal.http_status(),
            refusal = refusal_kind(&refusal),
            "witness: refused"
        );
        AddCheckpointError::Refused(refusal)
    }

    fn write_evidence(&self, record: &EvidenceRecord) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(EVIDENCE_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // Named by what it proves, so the same fork presented again is kept once.
        let mut hasher = blake3::Hasher::new();
        hasher.update(record.presented_checkpoint.as_bytes());
        hasher.update(record.recorded.as_ref().map_or(&b""[..], |r| r.checkpoint.as_bytes()));
        let name = format!("{}-{}.json", record.kind, &hasher.finalize().to_hex()[..16]);
        if dir.join(&name).exists() {
            return Ok(dir.join(name));
        }
        let json = serde_json::to_string_pretty(record).context("evidence serializes")?;
        write_durable(&dir, &name, json.as_bytes(), 0o600)?;
        Ok(dir.join(name))
    }
}

/// Reads the witness key of `dir` (`witness.key`).
///
/// # Errors
/// No key file (the witness never ran there), a file readable by group or others, or a
/// malformed key.
pub fn read_signer(dir: &Path) -> anyhow::Result<WitnessSigner> {
    let path = dir.join(KEY_FILE);
    let file = File::open(&path).with_context(|| {
        format!("cannot read {} (no witness key: `keyledger witness serve --dir` creates it)", path.display())
    })?;
    let mode = file.metadata()?.permissions().mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} is readable by others (mode {:o}); make it 0600",
        path.display(),
        mode & 0o777
    );
    let mut text = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut &file, &mut text).with_context(|| format!("cannot read {}", path.display()))?;
    WitnessSigner::parse(text.trim()).map_err(|e| anyhow::anyhow!("{} is not a witness key: {e}", path.display()))
}

/// The witness verifier key of the witness in `dir` (what `keyledger witness key` prints).
///
/// # Errors
/// As [`read_signer`].
pub fn read_verifier(dir: &Path) -> anyhow::Result<WitnessVerifier> {
    read_signer(dir).map(|s| s.verifier())
}

/// Writes `bytes` to `dir/name` atomically and durably: a temporary file in `dir` (created with
/// `mode`), fsynced, renamed over `dir/name`, then `dir` fsynced.
fn write_durable(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let target = dir.join(name);
    let result = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &target)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {} durably", target.display()))
}

/// Origin and size of a checkpoint note, if it parses.
fn checkpoint_origin_and_size(note: &str) -> Option<(String, u64)> {
    let note = Note::parse(note.as_bytes()).ok()?;
    let checkpoint = Checkpoint::parse(note.text()).ok()?;
    Some((checkpoint.origin, checkpoint.size))
}

/// A short fixed name of a refusal, for logs and evidence file names.
fn refusal_kind(refusal: &WitnessRefusal) -> &'static str {
    match refusal {
        WitnessRefusal::BadRequest(_) => "bad_request",
        WitnessRefusal::UnknownOrigin { .. } => "unknown_origin",
        WitnessRefusal::BadLogSignature(_) => "bad_log_signature",
        WitnessRefusal::OldSizeTooLarge { .. } => "old_size_too_large",
        WitnessRefusal::SizeConflict { .. } => "size_conflict",
        WitnessRefusal::Fork(_) => "fork",
        WitnessRefusal::InvalidProof { .. } => "invalid_proof",
    }
}

/// The JSON form of one piece of evidence (`evidence/fork-<16 hex>.json`, named by the two
/// checkpoints it holds): a correctly signed checkpoint the witness refused because it forks
/// from what the witness had cosigned (same size, another root). Together with the recorded
/// checkpoint (signed by the same log key) it proves that the log equivocated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvidenceRecord {
    /// `fork` (same size, another root) or `invalid_proof` (the consistency proof fails).
    pub kind: String,
    /// The refusal, in words (for `invalid_proof`, which proof check failed).
    pub reason: String,
    /// The log origin.
    pub origin: String,
    /// What the witness had cosigned for the origin: size, root (base64), the signed
    /// checkpoint note as received. Absent for a first checkpoint.
    pub recorded: Option<LogHead>,
    /// The presented signed checkpoint note, verbatim (its log signature verified).
    pub presented_checkpoint: String,
    /// The request's old size.
    pub old_size: u64,
    /// The request's consistency proof, one padded standard base64 hash each.
    pub proof: Vec<String>,
    /// When the witness refused it, POSIX seconds (the witness's clock).
    pub observed_unix_s: u64,
}

impl EvidenceRecord {
    /// The evidence of a refusal: forks only. A fork is two checkpoints of one size with
    /// different roots, both signed by the log key — proof that the log equivocated. A failed
    /// consistency proof is not kept: the proof is unsigned, so anyone holding one genuine
    /// checkpoint could make the witness store such files without end.
    pub fn from_refusal(refusal: &WitnessRefusal, observed_unix_s: u64) -> Option<Self> {
        if !matches!(refusal, WitnessRefusal::Fork(_)) {
            return None;
        }
        let e = refusal.evidence()?;
        Some(Self {
            kind: refusal_kind(refusal).to_owned(),
            reason: refusal.to_string(),
            origin: e.origin.clone(),
            recorded: e.recorded.clone(),
            presented_checkpoint: e.presented_checkpoint.clone(),
            old_size: e.old_size,
            proof: e.proof.iter().map(|h| STANDARD.encode(h)).collect(),
            observed_unix_s,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The witness's HTTP API: `POST /add-checkpoint` (`c2sp.org/tlog-witness`), body at most
/// [`MAX_ADD_CHECKPOINT_BYTES`] (larger: 413).
///
/// Answers: 200 `text/plain` with the cosignature line (`— <witness name> <base64>\n`); a
/// refusal's [`WitnessRefusal::http_status`] with a one-line `text/plain` reason, except the
/// 409 for a stale old size, whose body is the witness's latest size for the origin in decimal
/// and a newline, `Content-Type: text/x.tlog.size`; 500 if the state cannot be persisted.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(ADD_CHECKPOINT_PATH, post(add_checkpoint_handler))
        .layer(DefaultBodyLimit::max(MAX_ADD_CHECKPOINT_BYTES))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "no such route\n".into()) })
        .with_state(witness)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn unix_now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn add_checkpoint_handler(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let now = unix_now_s();
    let decided = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
    match decided {
        Ok(Ok(cosigned)) => text(StatusCode::OK, "text/plain; charset=utf-8", cosigned.cosignature.to_line()),
        Ok(Err(AddCheckpointError::Refused(refusal))) => {
            let status = StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            match refusal {
                WitnessRefusal::SizeConflict { recorded_size } => {
                    text(status, TLOG_SIZE_CONTENT_TYPE, format!("{recorded_size}\n"))
                }
                other => text(status, "text/plain; charset=utf-8", format!("{other}\n")),
            }
        }
        Ok(Err(AddCheckpointError::Storage(_))) | Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "the witness cannot persist its state; nothing was cosigned\n".into(),
        ),
    }
}

/// A running witness HTTP server.
#[derive(Debug)]
pub struct RunningWitness {
    /// The address it listens on (the submission URL is `http://<addr>`).
    pub addr: SocketAddr,
    server: crate::http_server::HttpServer,
}

/// Serves [`router`] on `listen` (port 0: any free port, see [`RunningWitness::addr`]).
///
/// Plain HTTP: there is no TLS. A listen address that is not loopback is accepted with a
/// warning (put a TLS-terminating proxy in front of it).
///
/// # Errors
/// The address cannot be bound.
pub async fn start(witness: Arc<Witness>, listen: SocketAddr) -> anyhow::Result<RunningWitness> {
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "witness: listening off loopback over plain HTTP (no TLS): use a TLS proxy");
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let server = crate::http_server::HttpServer::spawn(listener, router(witness), "witness");
    tracing::info!(%addr, "witness listening");
    Ok(RunningWitness { addr, server })
}

impl RunningWitness {
    /// Stops accepting connections and waits for requests in flight.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// Why [`add_checkpoint`] got no cosignature.
#[derive(Debug, thiserror::Error)]
pub enum WitnessClientError {
    /// The URL is not an `http://host[:port][/prefix]` URL.
    #[error("invalid witness URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No connection, or the connection failed before a whole answer was read.
    #[error("cannot reach the witness: {0}")]
    Transport(String),
    /// The whole request took longer than the timeout.
    #[error("the witness did not answer within {0:?}")]
    Timeout(Duration),
    /// The witness answered with a status other than 200 (tlog-witness: 400, 403, 404, 409,
    /// 422; or 413, 500).
    #[error("the witness refused with HTTP {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The answer's body, lossily decoded as UTF-8 and cut to at most
        /// [`MAX_REFUSAL_BODY_BYTES`] bytes.
        body: String,
    },
    /// A 200 answer that is not one or more cosignature lines.
    #[error("malformed witness answer: {0}")]
    Malformed(String),
}

impl WitnessClientError {
    /// For a 409 whose body is a size (`text/x.tlog.size`: decimal and a newline), the
    /// witness's latest cosigned size for the origin: the old size to send next.
    pub fn latest_size(&self) -> Option<u64> {
        match self {
            Self::Refused { status: 409, body } => {
                let digits = body.strip_suffix('\n')?;
                if digits.is_empty()
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || (digits.len() > 1 && digits.starts_with('0'))
                {
                    return None;
                }
                digits.parse().ok()
            }
            _ => None,
        }
    }
}

/// Sends one `add-checkpoint` request to the witness whose submission URL is `url`
/// (`http://host:port` or `http://host:port/prefix`; the request goes to
/// `<url>/add-checkpoint`), with [`DEFAULT_CLIENT_TIMEOUT`]. Only `http://` URLs: this client has
/// no TLS (use a loopback or otherwise protected path to the witness).
///
/// Returns the cosignature lines of the 200 answer, parsed but **not verified**: check them with
/// the witness's [`WitnessVerifier`] (e.g. [`keyledger_transparency::SignedCheckpoint::verify_cosignatures`]).
///
/// # Errors
/// See [`WitnessClientError`]; a 409 with the witness's latest size gives it through
/// [`WitnessClientError::latest_size`].
pub async fn add_checkpoint(
    url: &str,
    request: &AddCheckpointRequest,
) -> Result<Vec<NoteSignature>, WitnessClientError> {
    add_checkpoint_with_timeout(url, request, DEFAULT_CLIENT_TIMEOUT).await
}

/// [`add_checkpoint`] with a timeout for the whole request (connect, send, read the answer).
///
/// # Errors
/// As [`add_checkpoint`].
pub async fn add_checkpoint_with_timeout(
    url: &str,
    request: &AddCheckpointRequest,
    timeout: Duration,
) -> Result<Vec<NoteSignature>, WitnessClientError> {
    let endpoint = Endpoint::parse(url)?;
    let body = request.to_text();
    match tokio::time::timeout(timeout, post_add_checkpoint(&endpoint, body)).await {
        Ok(result) => result,
        Err(_) => Err(WitnessClientError::Timeout(timeout)),
    }
}

/// Where an `add-checkpoint` request goes.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, WitnessClientError> {
        let bad = |reason| WitnessClientError::InvalidUrl { url: url.to_owned(), reason };
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// URLs (this client has no TLS)"));
        }
        if uri.query().is_some() {
            return Err(bad("a submission URL has no query"));
        }
        let authority = uri.authority().ok_or(bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("no user information in a witness URL"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let path = format!("{}{ADD_CHECKPOINT_PATH}", uri.path().trim_end_matches('/'));
        Ok(Self { host, port, authority: authority.as_str().to_owned(), path })
    }
}

async fn post_add_checkpoint(endpoint: &Endpoint, body: String) -> Result<Vec<NoteSignature>, WitnessClientError> {
    let transport = |what: &str, e: &dyn std::fmt::Display| WitnessClientError::Transport(format!("{what}: {e}"));
    let stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| transport(&format!("connect to {}", endpoint.authority), &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| transport("HTTP handshake", &e))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::post(endpoint.path.as_str())
        .header(hyper::header::HOST, endpoint.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| transport("request", &e))?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| transport("send", &e))?;
        let status = response.status().as_u16();
        let cap = if status == 200 { MAX_COSIGNATURE_RESPONSE_BYTES } else { MAX_REFUSAL_BODY_BYTES * 4 };
        let (bytes, truncated) =
            read_capped(response.into_body(), cap).await.map_err(|e| transport("read the answer", &e))?;
        if status != 200 {
            return Err(WitnessClientError::Refused {
                status,
                body: truncate_utf8(&String::from_utf8_lossy(&bytes), MAX_REFUSAL_BODY_BYTES),
            });
        }
        if truncated {
            return Err(WitnessClientError::Malformed(format!(
                "answer larger than {MAX_COSIGNATURE_RESPONSE_BYTES} bytes"
            )));
        }
        parse_cosignatures(&bytes)
    }
    .await;
    driver.abort();
    result
}

/// Reads a body up to `cap` bytes; `true` if it was longer (the rest is not read).
async fn read_capped(mut body: hyper::body::Incoming, cap: usize) -> Result<(Vec<u8>, bool), hyper::Error> {
    use http_body_util::BodyExt as _;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = cap - out.len();
            if data.len() > room {
                out.extend_from_slice(&data[..room]);
                return Ok((out, true));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok((out, false))
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate_utf8(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The cosignature lines of a 200 answer: one or more signature lines, each ending in a newline.
fn parse_cosignatures(body: &[u8]) -> Result<Vec<NoteSignature>, WitnessClientError> {
    let malformed = |why: String| WitnessClientError::Malformed(why);
    let text = std::str::from_utf8(body).map_err(|_| malformed("not UTF-8".into()))?;
    let lines = text.strip_suffix('\n').ok_or_else(|| malformed("no final newline".into()))?;
    if lines.is_empty() {
        return Err(malformed("no cosignature line".into()));
    }
    lines
        .split('\n')
        .map(|line| NoteSignature::parse_line(line).map_err(|e| malformed(format!("not a signature line: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use keyledger_transparency::{key_id, open, MerkleTree, NoteSigner, SignedCheckpoint, Verifier};

    use super::*;

    const SEED: [u8; 32] = [7; 32];

    fn base(name: &str, seed: &[u8; 32]) -> NoteVerifier {
        NoteSigner::from_seed(name, seed).unwrap().verifier()
    }

    #[test]
    fn a_stream_origin_gets_a_verifier_named_after_it_with_the_base_key() {
        let bases = [base("keyledger.local/log-ab12", &SEED), base("other.example/log", &[8; 32])];
        for stream in ["KL_CONTROL_V1", "KL_USAGE_V1_202612", "A", &"Z".repeat(MAX_STREAM_NAME_BYTES)] {
            let origin = format!("keyledger.local/log-ab12/{stream}");
            let vs = log_verifiers_for(&origin, &bases);
            assert_eq!(vs.len(), 1, "{origin}");
            assert_eq!(vs[0].name(), origin);
            assert_eq!(vs[0].public_key(), bases[0].public_key());
            assert_eq!(vs[0].key_id(), key_id(&origin, 0x01, &bases[0].public_key()));
            // What the log signs a stream's checkpoint with opens with it.
            let signer = NoteSigner::from_seed(&origin, &SEED).unwrap();
            let signed = SignedCheckpoint::sign(Checkpoint::new(origin.as_str(), 3, [1; 32]), &signer).unwrap();
            assert!(open(signed.to_text().as_bytes(), &[&vs[0] as &dyn Verifier]).is_ok());
        }
    }

    #[test]
    fn any_other_origin_gets_no_verifier() {
        let bases = [base("test.log/abc", &SEED)];
        for origin in [
            "test.log/abc",                 // the base key's own name
            "test.log/abc/",                // empty stream name
            "test.log/abc/kl_control_v1",   // lower case
            "test.log/abc/x.y",             // not [A-Z0-9_]
            "test.log/abc/KL-CONTROL",      // hyphen
            "test.log/abc/KL CONTROL",      // space
            "test.log/abc/KL_CONTROL_V1/X", // nested: base "test.log/abc/KL_CONTROL_V1" is unknown
            "test.log/KL_CONTROL_V1",       // another base
            "other.log/KL_CONTROL_V1",
            "test.log/abcd/KL_CONTROL_V1",
            "KL_CONTROL_V1", // no base
            "",
        ] {
            assert!(log_verifiers_for(origin, &bases).is_empty(), "{origin:?}");
        }
        let long = format!("test.log/abc/{}", "A".repeat(MAX_STREAM_NAME_BYTES + 1));
        assert!(log_verifiers_for(&long, &bases).is_empty(), "a stream name longer than 64 bytes");
        assert!(log_verifiers_for("test.log/abc/KL_CONTROL_V1", &[]).is_empty(), "no configured key");
    }

    #[test]
    fn a_rotated_base_key_gives_one_verifier_per_distinct_key() {
        let old = base("test.log/abc", &SEED);
        let new = base("test.log/abc", &[9; 32]);
        let vs = log_verifiers_for("test.log/abc/KL_CONTROL_V1", &[old.clone(), new.clone(), old.clone()]);
        assert_eq!(vs.iter().map(|v| v.public_key()).collect::<Vec<_>>(), vec![old.public_key(), new.public_key()]);
        assert!(vs.iter().all(|v| v.name() == "test.log/abc/KL_CONTROL_V1"));
    }

    #[test]
    fn log_key_arguments_are_key_text_or_a_file() {
        let v = base("test.log/abc", &SEED);
        assert_eq!(parse_log_key_arg(&v.to_string()).unwrap(), v);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log.vkey");
        std::fs::write(&file, format!("{v}\n")).unwrap();
        assert_eq!(parse_log_key_arg(&format!("@{}", file.display())).unwrap(), v);
        assert!(parse_log_key_arg("@/nonexistent/log.vkey").is_err());
        assert!(parse_log_key_arg("test.log/abc").is_err());
        let witness_key = WitnessSigner::from_seed("w", &SEED).unwrap().verifier().to_string();
        assert!(parse_log_key_arg(&witness_key).is_err(), "a witness key (type 0x04) is not a log key");
    }

    fn request(tree: &MerkleTree, old: u64, origin: &str, seed: &[u8; 32]) -> Vec<u8> {
        let signer = NoteSigner::from_seed(origin, seed).unwrap();
        let signed = SignedCheckpoint::sign(Checkpoint::new(origin, tree.size(), tree.root()), &signer).unwrap();
        let proof = tree.consistency_proof(old, tree.size()).unwrap();
        AddCheckpointRequest { old_size: old, proof, checkpoint: signed.to_text() }.to_text().into_bytes()
    }

    #[test]
    fn the_directory_keeps_key_and_state_and_a_refusal_changes_nothing_but_evidence() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("w");
        let origin = "test.log/abc/KL_CONTROL_V1";
        let keys = vec![base("test.log/abc", &SEED)];
        let w = Witness::open(&dir, Some("witness.test/w1"), keys.clone()).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_verifier(&dir).unwrap(), w.verifier());
        let e = Witness::open(&dir, None, keys.clone()).unwrap_err().to_string();
        assert!(e.contains("another keyledger witness"), "{e}");

        let mut tree = MerkleTree::new();
        for i in 0..4u8 {
            tree.append(&[i; 32]);
        }
        let first = w.add_checkpoint(&request(&tree, 0, origin, &SEED), 1_800_000_000).unwrap();
        assert_eq!((first.origin.as_str(), first.old_size, first.size), (origin, 0, 4));
        assert_eq!(w.load_state().unwrap().head(origin).unwrap().size, 4);
        let state = std::fs::read(dir.join(STATE_FILE)).unwrap();

        let mut forked = MerkleTree::new();
        for i in 10..14u8 {
            forked.append(&[i; 32]);
        }
        let e = w.add_checkpoint(&request(&forked, 4, origin, &SEED), 1_800_000_001).unwrap_err();
        assert!(matches!(e, AddCheckpointError::Refused(WitnessRefusal::Fork(_))), "{e:?}");
        assert_eq!(std::fs::read(dir.join(STATE_FILE)).unwrap(), state, "a refusal leaves the state");
        let evidence: Vec<_> = std::fs::read_dir(dir.join(EVIDENCE_DIR)).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(evidence.len(), 1);
        let record: EvidenceRecord = serde_json::from_slice(&std::fs::read(&evidence[0]).unwrap()).unwrap();
        assert_eq!((record.kind.as_str(), record.origin.as_str(), record.old_size), ("fork", origin, 4));
        assert_eq!(record.recorded.unwrap().root, tree.root());
        assert!(record.presented_checkpoint.starts_with(&format!("{origin}\n4\n")));
        drop(w);

        let e = Witness::open(&dir, Some("witness.test/w2"), keys.clone()).unwrap_err().to_string();
        assert!(e.contains("not \"witness.test/w2\""), "{e}");
        std::fs::write(dir.join(".state.json.tmp-1"), b"{half").unwrap();
        let again = Witness::open(&dir, None, keys.clone()).unwrap();
        assert!(!dir.join(".state.json.tmp-1").exists(), "a crash's temporary file is removed");
        assert_eq!(again.name(), "witness.test/w1");
        assert_eq!(again.load_state().unwrap().head(origin).unwrap().size, 4);
        drop(again);

        std::fs::remove_file(dir.join(STATE_FILE)).unwrap();
        let e = Witness::open(&dir, None, keys.clone()).unwrap_err().to_string();
        assert!(e.contains("would forget"), "{e}");
        std::fs::write(dir.join(STATE_FILE), &state).unwrap();
        std::fs::set_permissions(dir.join(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Witness::open(&dir, None, keys).unwrap_err().to_string();
        assert!(e.contains("readable by others"), "{e}");
    }

    #[test]
    fn a_fresh_witness_gets_a_random_default_name() {
        let tmp = tempfile::tempdir().unwrap();
        let w = Witness::open(tmp.path(), None, Vec::new()).unwrap();
        let id = w.name().strip_prefix("keyledger-witness/").unwrap();
        assert!(id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{}", w.name());
        assert!(Witness::open(&tmp.path().join("x"), Some("bad name"), Vec::new()).is_err());
    }

    #[test]
    fn client_urls_are_http_submission_prefixes() {
        let e = Endpoint::parse("http://127.0.0.1:4290").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str(), e.path.as_str()),
            ("127.0.0.1", 4290, "127.0.0.1:4290", "/add-checkpoint")
        );
        assert_eq!(Endpoint::parse("http://[::1]:8/w/").unwrap().host, "::1");
        assert_eq!(Endpoint::parse("http://[::1]:8/w/").unwrap().path, "/w/add-checkpoint");
        assert_eq!(Endpoint::parse("http://witness.internal").unwrap().port, 80);
        for bad in ["https://127.0.0.1:4290", "127.0.0.1:4290", "http://u:p@127.0.0.1/", "http://h/?x=1", "not a url"] {
            assert!(matches!(Endpoint::parse(bad), Err(WitnessClientError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn client_answers_are_cosignature_lines_and_refusals_carry_the_latest_size() {
        let w = WitnessSigner::from_seed("witness.test/w1", &SEED).unwrap();
        let sig = w.cosign("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 5).unwrap();
        let two = format!("{}{}", sig.to_line(), sig.to_line());
        assert_eq!(parse_cosignatures(two.as_bytes()).unwrap(), vec![sig.clone(), sig.clone()]);
        for bad in ["", "\n", "no newline", "\u{2014} w AAAA\n", "text\n"] {
            assert!(matches!(parse_cosignatures(bad.as_bytes()), Err(WitnessClientError::Malformed(_))), "{bad:?}");
        }
        let refused = |status, body: &str| WitnessClientError::Refused { status, body: body.to_owned() };
        assert_eq!(refused(409, "12\n").latest_size(), Some(12));
        assert_eq!(refused(409, "0\n").latest_size(), Some(0));
        for (status, body) in [(409, "fork: same size, different root\n"), (409, "012\n"), (409, "12"), (422, "12\n")] {
            assert_eq!(refused(status, body).latest_size(), None, "{status} {body:?}");
        }
        assert_eq!(truncate_utf8("ab\u{e9}", 3), "ab");
        assert_eq!(truncate_utf8("abc", 512), "abc");
    }
}
