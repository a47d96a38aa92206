//! Keyledger's transparency-log primitives: pure, synchronous, no I/O, no clock and no
//! randomness (times and key seeds are parameters).
//!
//! Keyledger's audit log is a BLAKE3 hash-chained event log; this crate commits to it the way
//! Certificate Transparency and the C2SP ecosystem do, so that witnesses, monitors and
//! third-party verifiers can check it (`audit-integrity.md` §2.3, §2.7–2.9):
//!
//! - **Merkle tree** ([`MerkleTree`], [`verify_inclusion`], [`verify_consistency`]): RFC 6962
//!   over SHA-256. Leaf = `SHA-256(0x00 ‖ entry)` where an entry is the 32-byte BLAKE3 event
//!   hash of one record; node = `SHA-256(0x01 ‖ left ‖ right)`; empty root = `SHA-256("")`.
//!   Proofs are generated as RFC 6962 §2.1.1–2.1.2 define them and verified with the RFC 9162
//!   §2.1.3.2 / §2.1.4.2 algorithms, with a typed [`ProofError`] for every way a proof fails.
//! - **Signed notes** ([`Note`], [`open`], [`NoteSigner`], [`NoteVerifier`]):
//!   `c2sp.org/signed-note` with Ed25519 (type 0x01), keys in the `golang.org/x/mod/sumdb/note`
//!   text forms. Signing is deterministic (RFC 8032); verification uses `verify_strict`.
//! - **Checkpoints** ([`Checkpoint`], [`SignedCheckpoint`]): `c2sp.org/tlog-checkpoint`,
//!   `origin\nsize\nbase64(root)\n`, parsed strictly.
//! - **Witness cosignatures** ([`WitnessSigner`], [`WitnessVerifier`]):
//!   `c2sp.org/tlog-cosignature` `cosignature/v1` (Ed25519, type 0x04, timestamped).
//! - **A witness** ([`WitnessState`], [`AddCheckpointRequest`], [`WitnessRefusal`]): the
//!   `c2sp.org/tlog-witness` `add-checkpoint` decision as a pure state transition.
//! - **Receipts** ([`InclusionProofBundle`], [`verify_receipt`]): `c2sp.org/tlog-proof@v1`.
//!
//! ```
//! use keyledger_transparency::*;
//!
//! let log_key = NoteSigner::from_seed("example.com/kms-audit/01", &[7; 32]).unwrap();
//! let mut tree = MerkleTree::new();
//! for i in 0..5u8 {
//!     tree.append(&[i; 32]); // the BLAKE3 event hash of record i
//! }
//! let checkpoint = Checkpoint::new(log_key.name(), tree.size(), tree.root());
//! let signed = SignedCheckpoint::sign(checkpoint, &log_key).unwrap();
//!
//! // A receipt for record 3, checked by a client that knows only the log's verifier key.
//! let bundle = InclusionProofBundle::new(3, tree.inclusion_proof(3, 5).unwrap(), &signed);
//! let text = bundle.encode();
//! let parsed = InclusionProofBundle::parse(text.as_bytes()).unwrap();
//! let receipt = verify_receipt(&parsed, &[3; 32], &log_key.verifier()).unwrap();
//! assert_eq!((receipt.index, receipt.size), (3, 5));
//!
//! // The witness cosigns the first checkpoint it sees of this log.
//! let witness_key = WitnessSigner::from_seed("witness.example/w1", &[9; 32]).unwrap();
//! let request = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: signed.to_text() };
//! let update = WitnessState::new()
//!     .add_checkpoint(&request, &[log_key.verifier()], &witness_key, 1_700_000_000)
//!     .unwrap();
//! let mut cosigned = signed.clone();
//! cosigned.add_signature(update.cosignature).unwrap();
//! let cosigs = cosigned.verify_cosignatures(&[witness_key.verifier()]).unwrap();
//! assert_eq!(cosigs[0].timestamp_unix_s, 1_700_000_000);
//! ```
//!
//! # Choices where the specifications leave room
//!
//! - **Consistency from size 0.** [`verify_consistency`] refuses `old_size = 0`
//!   ([`ProofError::OldSizeZero`]): RFC 9162 §2.1.4 defines proofs for `0 < m`. The witness
//!   treats `old 0` itself, as tlog-witness says (the proof must be empty; a size-0 checkpoint
//!   must carry the empty root). [`MerkleTree::consistency_proof`] returns an empty proof for
//!   `old_size` 0 so a log can build that request.
//! - **Equal sizes** are consistent only with an empty proof and equal roots.
//! - **Every signature by a known key is verified**, repeated lines too, and any failure rejects
//!   the note (the signed-note spec says SHOULD reject; Go's package skips repeats).
//! - **Limits:** notes at most [`MAX_NOTE_BYTES`] (256 KiB) and [`MAX_NOTE_SIGNATURES`] (100)
//!   lines; proofs at most [`MAX_PROOF_HASHES`] (64) hashes, witness requests at most
//!   [`MAX_WITNESS_PROOF_LINES`] (63) proof lines.
//! - **Key ids in key text** must be 8 *lowercase* hex digits (what Go writes; Go also reads
//!   uppercase).
//! - **Checkpoint origin = log key name** (the spec says SHOULD): [`SignedCheckpoint`] and the
//!   witness refuse a checkpoint whose origin is not the name of the log key that signed it.
//! - **Witness signer key text** is `PRIVATE+KEY+<name>+<id>+base64(0x04 ‖ seed)`, by analogy
//!   with note signer keys (tlog-cosignature defines only the verifier form).
//! - **Size regression** (`old_size > size`) is HTTP 400 as tlog-witness prescribes
//!   ([`WitnessRefusal::OldSizeTooLarge`]); a fork at equal size is 409
//!   ([`WitnessRefusal::Fork`]); a failed proof 422.
//! - **tlog-proof** carries no size line: the tree size is the checkpoint's. An `extra` line,
//!   if present, must decode to at least one byte.
//!
//! Not here: ML-DSA-44 cosignatures, tlog-tiles, the witness's HTTP service and persistence,
//! and witness quorum policies beyond counting [`SignedCheckpoint::verify_cosignatures`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod cosignature;
pub mod merkle;
pub mod note;
pub mod receipt;
pub mod witness;

pub use checkpoint::{Checkpoint, SignedCheckpoint, VerifiedCosignature};
pub use cosignature::{
    cosignature_message, WitnessSigner, WitnessVerifier, COSIGNATURE_BYTES, COSIGNATURE_V1_HEADER,
    MAX_COSIGNATURE_TIMESTAMP,
};
pub use merkle::{
    empty_root, leaf_hash, node_hash, root_from_inclusion, verify_consistency, verify_inclusion, Hash, MerkleTree,
    TreeError, HASH_BYTES, MAX_PROOF_HASHES,
};
pub use note::{
    is_valid_key_name, key_id, open, sign, Note, NoteSignature, NoteSigner, NoteVerifier, OpenedNote, Verifier,
    MAX_NOTE_BYTES, MAX_NOTE_SIGNATURES, SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ED25519,
};
pub use receipt::{verify_receipt, InclusionProofBundle, VerifiedReceipt, MAX_PROOF_BUNDLE_BYTES, TLOG_PROOF_HEADER};
pub use witness::{
    AddCheckpointRequest, Evidence, LogHead, WitnessRefusal, WitnessState, WitnessUpdate, MAX_ADD_CHECKPOINT_BYTES,
    MAX_WITNESS_PROOF_LINES, WITNESS_STATE_VERSION,
};

/// Why an inclusion or consistency proof was refused (RFC 9162 §2.1.3.2, §2.1.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Inclusion in a tree of size 0: the empty tree holds no leaf.
    #[error("the empty tree holds no leaf")]
    EmptyTree,
    /// Inclusion of a leaf index that is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The path ended before reaching the root (the size was not fully consumed), or a
    /// consistency proof between different sizes was empty.
    #[error("proof path too short")]
    PathTooShort,
    /// The path has hashes left after reaching the root.
    #[error("proof path too long")]
    PathTooLong,
    /// The path leads to another root.
    #[error("proof leads to another root")]
    RootMismatch,
    /// A consistency proof from the empty tree (see the crate docs).
    #[error("consistency proofs start from a non-empty tree")]
    OldSizeZero,
    /// A consistency proof from a larger tree to a smaller one.
    #[error("old size {old_size} is larger than new size {new_size}")]
    OldSizeGreater {
        /// The first size.
        old_size: u64,
        /// The second size.
        new_size: u64,
    },
    /// Equal sizes with a non-empty consistency proof.
    #[error("equal sizes need an empty consistency proof")]
    SameSizeNonEmptyPath,
    /// Equal sizes with different roots.
    #[error("equal sizes with different roots")]
    SameSizeRootsDiffer,
    /// The consistency proof does not lead to the old root.
    #[error("consistency proof does not lead to the old root")]
    OldRootMismatch,
    /// The consistency proof does not lead to the new root.
    #[error("consistency proof does not lead to the new root")]
    NewRootMismatch,
}

/// Why a signed note, a key or a signature was refused (`c2sp.org/signed-note`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note or a line breaks a syntax rule (named).
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// The note exceeds [`MAX_NOTE_BYTES`].
    #[error("note larger than {MAX_NOTE_BYTES} bytes")]
    TooLarge,
    /// The note has more than [`MAX_NOTE_SIGNATURES`] signature lines.
    #[error("more than {MAX_NOTE_SIGNATURES} signatures")]
    TooManySignatures,
    /// A signature by a known key failed to verify.
    #[error("invalid signature by known key {name}+{key_id:08x}")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key id.
        key_id: u32,
    },
    /// No signature by a known key.
    #[error("no signature by a known key")]
    NoVerifiedSignature,
    /// Two known keys share name and key id.
    #[error("two known keys are {name}+{key_id:08x}")]
    AmbiguousKey {
        /// The key name.
        name: String,
        /// The key id.
        key_id: u32,
    },
    /// A signature line checked against a key of another name or id.
    #[error("signature is not by this key")]
    KeyMismatch,
    /// A key's text form or bytes are invalid (named).
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A cosignature timestamp above `2^63 − 1`.
    #[error("timestamp above 2^63 - 1")]
    TimestampTooLarge,
}

/// Why a checkpoint was refused (`c2sp.org/tlog-checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note text breaks a checkpoint rule (named).
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The signed note was refused.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The origin is not the log key's name.
    #[error("checkpoint origin {origin:?} is not the log key name {key_name:?}")]
    OriginMismatch {
        /// The checkpoint origin.
        origin: String,
        /// The key name.
        key_name: String,
    },
}

/// Why a receipt (tlog-proof) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The proof text breaks a tlog-proof rule (named).
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The checkpoint or its log signature was refused.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The index, size or path was refused.
    #[error(transparent)]
    Proof(#[from] ProofError),
}
