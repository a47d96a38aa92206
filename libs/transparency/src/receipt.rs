//! Offline-verifiable inclusion proofs for client receipts, in the `c2sp.org/tlog-proof@v1`
//! text format, and their verification.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::checkpoint::{decode_hash, encode_hash, parse_decimal};
use crate::merkle::{leaf_hash, verify_inclusion, MAX_PROOF_HASHES};
use crate::note::MAX_NOTE_BYTES;
use crate::{Hash, NoteVerifier, ReceiptError, SignedCheckpoint};

/// The first line of a tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Largest tlog-proof accepted, in bytes: a note of [`MAX_NOTE_BYTES`] plus header, index,
/// extra data and path lines.
pub const MAX_PROOF_BUNDLE_BYTES: usize = MAX_NOTE_BYTES + 16 * 1024;

/// An inclusion proof bundle (`c2sp.org/tlog-proof@v1`):
///
/// ```text
/// c2sp.org/tlog-proof@v1
/// [extra <base64 opaque data>]
/// index <decimal leaf index>
/// <base64 hash>            zero or more: the RFC 6962 audit path, leaf's sibling first
///                          (empty line)
/// <signed checkpoint note, verbatim, with any cosignatures>
/// ```
///
/// The tree size is the checkpoint's; the spec has no separate size line. Numbers are decimal
/// without sign or leading zeros, hashes 44 characters of padded standard base64, at most
/// [`MAX_PROOF_HASHES`] of them. Keyledger puts no `extra` line (an `extra` line, if present,
/// must carry at least one byte; it is not authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProofBundle {
    /// Opaque unauthenticated extra data (the `extra` line), if any.
    pub extra: Option<Vec<u8>>,
    /// Zero-based leaf index of the entry.
    pub index: u64,
    /// The audit path to the checkpoint's root.
    pub path: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl InclusionProofBundle {
    /// A bundle for leaf `index` with `path` (from
    /// [`MerkleTree::inclusion_proof`](crate::MerkleTree::inclusion_proof) at the checkpoint's
    /// size) and the signed checkpoint.
    pub fn new(index: u64, path: Vec<Hash>, checkpoint: &SignedCheckpoint) -> Self {
        Self { extra: None, index, path, checkpoint: checkpoint.to_text() }
    }

    /// The text form.
    pub fn encode(&self) -> String {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.path {
            out.push_str(&encode_hash(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses the text form strictly. The checkpoint part is only split off here; it is checked
    /// by [`verify_receipt`].
    ///
    /// # Errors
    /// [`ReceiptError::Malformed`] naming the rule broken (size over
    /// [`MAX_PROOF_BUNDLE_BYTES`], not UTF-8, header, extra, index or path line, more than
    /// [`MAX_PROOF_HASHES`] hashes, no empty line before the checkpoint).
    pub fn parse(text: &[u8]) -> Result<Self, ReceiptError> {
        let bad = ReceiptError::Malformed;
        if text.len() > MAX_PROOF_BUNDLE_BYTES {
            return Err(bad("proof too large"));
        }
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
        let mut rest = text;
        let mut next_line = || -> Result<&str, ReceiptError> {
            let (line, after) = rest.split_once('\n').ok_or(bad("missing line"))?;
            rest = after;
            Ok(line)
        };
        if next_line()? != TLOG_PROOF_HEADER {
            return Err(bad("header line"));
        }
        let mut line = next_line()?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            let data = STANDARD.decode(b64).map_err(|_| bad("extra base64"))?;
            if data.is_empty() {
                return Err(bad("empty extra data"));
            }
            extra = Some(data);
            line = next_line()?;
        }
        let index = line.strip_prefix("index ").and_then(parse_decimal).ok_or(bad("index line"))?;
        let mut path = Vec::new();
        loop {
            let line = next_line()?;
            if line.is_empty() {
                break;
            }
            if path.len() == MAX_PROOF_HASHES {
                return Err(bad("too many path hashes"));
            }
            path.push(decode_hash(line).ok_or(bad("path line is not a base64 hash"))?);
        }
        Ok(Self { extra, index, path, checkpoint: rest.to_owned() })
    }
}

/// What a verified receipt proves: the entry is leaf `index` of the log `origin`'s tree of
/// `size` leaves with root `root`, as signed by the log key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The log origin.
    pub origin: String,
    /// The leaf index of the entry.
    pub index: u64,
    /// The checkpoint's tree size.
    pub size: u64,
    /// The checkpoint's root.
    pub root: Hash,
    /// The checkpoint, for witness policy ([`SignedCheckpoint::verify_cosignatures`]) and for
    /// client-side consistency checks against the largest checkpoint seen.
    pub checkpoint: SignedCheckpoint,
}

/// Verifies a receipt: the checkpoint note carries a valid signature by `log_verifier` and its
/// origin is that key's name ([`SignedCheckpoint::open`]); `index < size`; and the audit path
/// leads from `SHA-256(0x00 ‖ entry)` to the checkpoint root ([`verify_inclusion`], RFC 9162
/// §2.1.3.2). `entry` is the 32-byte BLAKE3 event hash the client recomputed from the record
/// (`audit-integrity.md` §2.8). Witness cosignatures are checked separately, on the returned
/// checkpoint.
///
/// # Errors
/// [`ReceiptError::Checkpoint`] for the signature or checkpoint rules;
/// [`ReceiptError::Proof`] for the index, size and path rules.
pub fn verify_receipt(
    bundle: &InclusionProofBundle,
    entry: &[u8; 32],
    log_verifier: &NoteVerifier,
) -> Result<VerifiedReceipt, ReceiptError> {
    let checkpoint = SignedCheckpoint::open(bundle.checkpoint.as_bytes(), log_verifier)?;
    let c = checkpoint.checkpoint();
    verify_inclusion(&leaf_hash(entry), bundle.index, c.size, &bundle.path, &c.root)?;
    Ok(VerifiedReceipt { origin: c.origin.clone(), index: bundle.index, size: c.size, root: c.root, checkpoint })
}
