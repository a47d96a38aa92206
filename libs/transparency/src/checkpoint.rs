//! Checkpoints (`c2sp.org/tlog-checkpoint`): the signed tree head as note text, and the signed
//! form with the log's signature and witness cosignatures.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::note::{check_note_chars, open, Verifier};
use crate::{CheckpointError, Hash, Note, NoteError, NoteSignature, NoteSigner, NoteVerifier, WitnessVerifier};

/// Parses a decimal `u64` the strict way: ASCII digits only, no sign, no leading zero (except
/// `"0"` itself), no overflow.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Decodes a hash written as standard base64 with canonical padding (44 characters).
pub(crate) fn decode_hash(s: &str) -> Option<Hash> {
    if s.len() != 44 {
        return None;
    }
    STANDARD.decode(s).ok()?.try_into().ok()
}

/// Encodes a hash as standard base64 with padding (44 characters).
pub(crate) fn encode_hash(h: &Hash) -> String {
    STANDARD.encode(h)
}

/// A checkpoint: the note text `origin\nsize\nbase64(root)\n[extension\n]…`
/// (`c2sp.org/tlog-checkpoint`, "Note text").
///
/// - `origin`: the log's unique identity, non-empty, no newline or control character
///   (Keyledger uses `<our-domain>/kms-audit/<log_id-hex>`, `audit-integrity.md` §2.7);
/// - `size`: the number of leaves, written in decimal without sign or leading zeros;
/// - `root`: the RFC 6962 root at that size, written as 44 characters of standard padded
///   base64;
/// - `extensions`: optional opaque non-empty lines (NOT RECOMMENDED by the spec; Keyledger
///   writes none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log origin line.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The 32-byte root hash.
    pub root: Hash,
    /// Extension lines, without their newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self { origin: origin.into(), size, root, extensions: Vec::new() }
    }

    /// The note text (ending in a newline).
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] if the origin or an extension line is empty or holds a
    /// newline or another control character.
    pub fn format(&self) -> Result<String, CheckpointError> {
        for line in std::iter::once(&self.origin).chain(&self.extensions) {
            if line.is_empty() {
                return Err(CheckpointError::Malformed("empty origin or extension line"));
            }
            if line.contains('\n') || check_note_chars(line).is_err() {
                return Err(CheckpointError::Malformed("newline or control character in a line"));
            }
        }
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, encode_hash(&self.root));
        for e in &self.extensions {
            text.push_str(e);
            text.push('\n');
        }
        Ok(text)
    }

    /// Parses note text strictly: at least three lines, each ending in a newline; origin
    /// non-empty; size as [`Checkpoint`] says; root exactly 32 bytes of canonical padded
    /// base64; extension lines non-empty; no control characters. Every accepted text equals
    /// [`format`](Self::format) of the result.
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] naming the first rule broken.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed("text does not end in a newline"))?;
        check_note_chars(body).map_err(|_| CheckpointError::Malformed("control character"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|l| !l.is_empty()).ok_or(CheckpointError::Malformed("empty origin"))?;
        let size = lines.next().and_then(parse_decimal).ok_or(CheckpointError::Malformed("tree size"))?;
        let root = lines.next().and_then(decode_hash).ok_or(CheckpointError::Malformed("root hash"))?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(CheckpointError::Malformed("empty extension line"));
            }
            extensions.push(line.to_owned());
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }
}

/// A witness cosignature that verified: who, and when (POSIX seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCosignature {
    /// The witness key name.
    pub name: String,
    /// The witness key id.
    pub key_id: u32,
    /// The cosignature timestamp, seconds since the epoch.
    pub timestamp_unix_s: u64,
}

/// A checkpoint with its signed note: the log's signature and any further lines (witness
/// cosignatures, signatures by other or rotated keys), kept in order.
///
/// Keyledger requires the checkpoint origin to equal the log key's name (the spec says it
/// SHOULD); so a log key vouches for one origin only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl SignedCheckpoint {
    /// Formats and signs a checkpoint with the log key (deterministic Ed25519).
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] as [`Checkpoint::format`];
    /// [`CheckpointError::OriginMismatch`] if the origin is not the signer's key name.
    pub fn sign(checkpoint: Checkpoint, log_signer: &NoteSigner) -> Result<Self, CheckpointError> {
        if checkpoint.origin != log_signer.name() {
            return Err(CheckpointError::OriginMismatch {
                origin: checkpoint.origin.clone(),
                key_name: log_signer.name().to_owned(),
            });
        }
        let mut note = Note::new(&checkpoint.format()?)?;
        note.sign(log_signer)?;
        Ok(Self { checkpoint, note })
    }

    /// Opens a signed checkpoint: the note must carry a valid signature by `log_verifier`
    /// ([`crate::open`] rules: lines by other keys are ignored and kept), its text must parse
    /// as a [`Checkpoint`], and its origin must be the key's name.
    ///
    /// # Errors
    /// [`CheckpointError::Note`] for the note rules; [`CheckpointError::Malformed`];
    /// [`CheckpointError::OriginMismatch`].
    pub fn open(msg: &[u8], log_verifier: &NoteVerifier) -> Result<Self, CheckpointError> {
        let opened = open(msg, &[log_verifier as &dyn Verifier])?;
        let checkpoint = Checkpoint::parse(opened.note.text())?;
        if checkpoint.origin != log_verifier.name() {
            return Err(CheckpointError::OriginMismatch {
                origin: checkpoint.origin,
                key_name: log_verifier.name().to_owned(),
            });
        }
        Ok(Self { checkpoint, note: opened.note })
    }

    /// Opens with any of several log keys (key rotation: sign with old and new keys during a
    /// transition). Every line by one of them must verify, and at least one must be present.
    ///
    /// # Errors
    /// As [`open`](Self::open); the origin must be the name of a key that signed.
    pub fn open_any(msg: &[u8], log_verifiers: &[NoteVerifier]) -> Result<Self, CheckpointError> {
        let known: Vec<&dyn Verifier> = log_verifiers.iter().map(|v| v as &dyn Verifier).collect();
        let opened = open(msg, &known)?;
        let checkpoint = Checkpoint::parse(opened.note.text())?;
        if !opened.verified.iter().any(|s| s.name() == checkpoint.origin) {
            return Err(CheckpointError::OriginMismatch {
                origin: checkpoint.origin,
                key_name: opened.verified[0].name().to_owned(),
            });
        }
        Ok(Self { checkpoint, note: opened.note })
    }

    /// A checkpoint whose note was verified by the caller.
    pub(crate) fn from_verified(checkpoint: Checkpoint, note: Note) -> Self {
        Self { checkpoint, note }
    }

    /// The parsed checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The note text that was signed (the checkpoint body, ending in a newline).
    pub fn body(&self) -> &str {
        self.note.text()
    }

    /// The signed note.
    pub fn note(&self) -> &Note {
        &self.note
    }

    /// The encoded signed note (body, blank line, every signature line).
    pub fn to_text(&self) -> String {
        self.note.encode()
    }

    /// Adds a signature line (typically a witness cosignature from
    /// [`crate::WitnessSigner::cosign`] or a tlog-witness response), replacing a line by the
    /// same key. It is not verified here; see
    /// [`verify_cosignatures`](Self::verify_cosignatures).
    ///
    /// # Errors
    /// As [`Note::add_signature`].
    pub fn add_signature(&mut self, sig: NoteSignature) -> Result<(), NoteError> {
        self.note.add_signature(sig)
    }

    /// Verifies the cosignatures by the given witnesses: every line by one of them must verify
    /// (a failure rejects, as for any known key); lines by other keys are ignored. Returns the
    /// witnesses that cosigned, in line order, once each. A quorum policy (k of n) is the
    /// caller's: count the result.
    ///
    /// # Errors
    /// [`NoteError::InvalidSignature`] if a witness's line fails; [`NoteError::AmbiguousKey`]
    /// if two witnesses share name and key id.
    pub fn verify_cosignatures(&self, witnesses: &[WitnessVerifier]) -> Result<Vec<VerifiedCosignature>, NoteError> {
        let mut out: Vec<VerifiedCosignature> = Vec::new();
        for (i, w) in witnesses.iter().enumerate() {
            if witnesses[..i].iter().any(|o| o.name() == w.name() && o.key_id() == w.key_id()) {
                return Err(NoteError::AmbiguousKey { name: w.name().to_owned(), key_id: w.key_id() });
            }
        }
        for sig in self.note.signatures() {
            let Some(w) = witnesses.iter().find(|w| w.name() == sig.name() && w.key_id() == sig.key_id()) else {
                continue;
            };
            let timestamp_unix_s = w.verify_cosignature(self.note.text(), sig)?;
            if !out.iter().any(|c| c.name == sig.name() && c.key_id == sig.key_id()) {
                out.push(VerifiedCosignature { name: sig.name().to_owned(), key_id: sig.key_id(), timestamp_unix_s });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example checkpoint body of c2sp.org/tlog-checkpoint.
    const SPEC_BODY: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn the_spec_example_parses_and_formats_back() {
        let c = Checkpoint::parse(SPEC_BODY).unwrap();
        assert_eq!(c.origin, "example.com/behind-the-sofa");
        assert_eq!(c.size, 20852163);
        assert_eq!(encode_hash(&c.root), "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
        assert!(c.extensions.is_empty());
        assert_eq!(c.format().unwrap(), SPEC_BODY);
        let with_ext = format!("{SPEC_BODY}ext one\nx\n");
        let c = Checkpoint::parse(&with_ext).unwrap();
        assert_eq!(c.extensions, ["ext one", "x"]);
        assert_eq!(c.format().unwrap(), with_ext);
        assert_eq!(Checkpoint::parse("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n").unwrap().size, 0);
    }

    #[test]
    fn non_canonical_checkpoints_are_refused() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for bad in [
            "".to_string(),
            "o\n1\n".to_string(),
            format!("o\n1\n{root}"),    // no final newline
            format!("\n1\n{root}\n"),   // empty origin
            format!("o\n01\n{root}\n"), // leading zero
            format!("o\n+1\n{root}\n"), // sign
            format!("o\n-1\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n1 \n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"), // u64 overflow
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".to_string(), // no padding
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".to_string(), // non-canonical bits
            "o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n".to_string(), // URL alphabet
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n".to_string(), // 29 bytes
            "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n".to_string(), // 34 bytes
            format!("o\n1\n{root}\n\n"),                  // empty extension line
            format!("o\n1\n{root}\nx\n\ny\n"),
            format!("o\t\n1\n{root}\n"), // control character
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(
            Checkpoint::parse("o\n18446744073709551615\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n").unwrap().size,
            u64::MAX
        );
        let mut c = Checkpoint::new("o", 1, [0; 32]);
        c.extensions.push(String::new());
        assert!(c.format().is_err());
        assert!(Checkpoint::new("", 1, [0; 32]).format().is_err());
        assert!(Checkpoint::new("a\nb", 1, [0; 32]).format().is_err());
    }

    #[test]
    fn signed_checkpoints_open_only_with_the_log_key_and_matching_origin() {
        let log = NoteSigner::from_seed("example.com/log", &[1; 32]).unwrap();
        let other = NoteSigner::from_seed("example.com/other", &[2; 32]).unwrap();
        let cp = Checkpoint::new("example.com/log", 3, [5; 32]);
        let signed = SignedCheckpoint::sign(cp.clone(), &log).unwrap();
        let text = signed.to_text();
        let opened = SignedCheckpoint::open(text.as_bytes(), &log.verifier()).unwrap();
        assert_eq!(opened, signed);
        assert_eq!(opened.checkpoint(), &cp);
        assert_eq!(opened.body(), cp.format().unwrap());
        assert!(matches!(
            SignedCheckpoint::open(text.as_bytes(), &other.verifier()),
            Err(CheckpointError::Note(NoteError::NoVerifiedSignature))
        ));
        assert!(matches!(SignedCheckpoint::sign(cp.clone(), &other), Err(CheckpointError::OriginMismatch { .. })));
        // A log key that signs a checkpoint of another origin vouches for nothing.
        let foreign = crate::sign(&cp.format().unwrap(), &[&other]).unwrap();
        assert!(matches!(
            SignedCheckpoint::open(foreign.as_bytes(), &other.verifier()),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        // Key rotation: old and new keys of one name both sign during the transition.
        let new_key = NoteSigner::from_seed("example.com/log", &[3; 32]).unwrap();
        let both = crate::sign(&cp.format().unwrap(), &[&log, &new_key]).unwrap();
        SignedCheckpoint::open(both.as_bytes(), &new_key.verifier()).unwrap();
        SignedCheckpoint::open_any(both.as_bytes(), &[log.verifier(), new_key.verifier()]).unwrap();
    }
}
