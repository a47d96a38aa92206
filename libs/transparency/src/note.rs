//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 keys, and the key text formats of
//! `golang.org/x/mod/sumdb/note`.
//!
//! A signed note is `text ‖ "\n" ‖ signature lines`, where `text` ends in a newline and each
//! signature line is `"— " ‖ key name ‖ " " ‖ base64(4-byte big-endian key id ‖ signature) ‖
//! "\n"` (the em dash is U+2014). Key id = the first 4 bytes of `SHA-256(key name ‖ 0x0A ‖
//! signature type ‖ public key)`, signature type 0x01 for note signatures and 0x04 for
//! tlog-cosignature witness cosignatures ([`crate::cosignature`]).

use std::collections::BTreeSet;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::NoteError;

/// Largest signed note accepted, in bytes (text and signature lines). The spec asks verifiers
/// to bound notes and to accept at least 16 signatures of up to ~5 kB (post-quantum); 256 KiB
/// holds that with room for the text. Keyledger's checkpoints are under 1 KiB.
pub const MAX_NOTE_BYTES: usize = 256 * 1024;
/// Most signature lines accepted in one note (the spec's floor is 16; Go's note package uses
/// 100, and so do we).
pub const MAX_NOTE_SIGNATURES: usize = 100;
/// Signature type byte of Ed25519 note signatures (`c2sp.org/signed-note`, "Signature types").
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of timestamped Ed25519 witness cosignatures (`c2sp.org/tlog-cosignature`).
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;
/// The line prefix of a signature line: U+2014 EM DASH and a space.
pub const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// The 4-byte key id of a key, as a big-endian `u32`: the first 4 bytes of
/// `SHA-256(name ‖ 0x0A ‖ sig_type ‖ public_key)` (`c2sp.org/signed-note`, "Signatures").
pub fn key_id(name: &str, sig_type: u8, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, sig_type]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Whether `name` is a valid key name: non-empty, no Unicode white space, no `+`
/// (`c2sp.org/signed-note`, "Format").
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Checks the character rules of a note: valid UTF-8 (given by `&str`), no ASCII control
/// character other than newline (`c2sp.org/signed-note`, "Format").
pub(crate) fn check_note_chars(s: &str) -> Result<(), NoteError> {
    if s.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::Malformed("control character"));
    }
    Ok(())
}

/// One signature line of a note, decoded: key name, key id and the signature bytes that follow
/// the key id (64 bytes for type 0x01, 72 for type 0x04, anything ≥ 1 byte for unknown keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    name: String,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    /// A signature by key `(name, key_id)`. `signature` excludes the 4-byte key id.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] if the name is not a valid key name or `signature` is empty.
    pub fn new(name: &str, key_id: u32, signature: Vec<u8>) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::Malformed("invalid key name"));
        }
        if signature.is_empty() {
            return Err(NoteError::Malformed("empty signature"));
        }
        Ok(Self { name: name.to_owned(), key_id, signature })
    }

    /// Parses one line `"— <name> <base64(key id ‖ signature)>"`, with or without its final
    /// newline. The base64 is standard with canonical padding (RFC 4648 §4) and must decode to
    /// at least 5 bytes.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] for any other shape, or a control character.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        check_note_chars(line)?;
        if line.contains('\n') {
            return Err(NoteError::Malformed("signature line holds a newline"));
        }
        let rest = line.strip_prefix(SIGNATURE_LINE_PREFIX).ok_or(NoteError::Malformed("signature line prefix"))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed("signature line has no signature"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::Malformed("invalid key name"));
        }
        let raw = STANDARD.decode(b64).map_err(|_| NoteError::Malformed("signature base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        Ok(Self { name: name.to_owned(), key_id, signature: raw[4..].to_vec() })
    }

    /// The line, ending in `"\n"`.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIGNATURE_LINE_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id (big-endian on the wire).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature bytes after the key id.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// A key that can check note signatures: a [`NoteVerifier`] or a
/// [`WitnessVerifier`](crate::WitnessVerifier).
pub trait Verifier {
    /// The key name of the signature lines it checks.
    fn name(&self) -> &str;
    /// The key id of the signature lines it checks.
    fn key_id(&self) -> u32;
    /// Whether `signature` (the bytes after the key id) is valid over the note `text`.
    fn verify(&self, text: &str, signature: &[u8]) -> bool;
}

/// A note: its text (ending in a newline) and its signature lines, in order.
///
/// [`Note::parse`] checks the syntax only and trusts nothing; [`open`] verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// An unsigned note with this text.
    ///
    /// # Errors
    /// [`NoteError::Malformed`] if the text does not end in a newline or holds a control
    /// character other than newline; [`NoteError::TooLarge`] beyond [`MAX_NOTE_BYTES`].
    pub fn new(text: &str) -> Result<Self, NoteError> {
        if text.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("text does not end in a newline"));
        }
        check_note_chars(text)?;
        Ok(Self { text: text.to_owned(), signatures: Vec::new() })
    }

    /// Parses a signed note without verifying it: valid UTF-8, no control characters other than
    /// newline, at most [`MAX_NOTE_BYTES`], the text separated from one or more signature lines
    /// by the *last* blank line, at most [`MAX_NOTE_SIGNATURES`] lines, each as
    /// [`NoteSignature::parse_line`], the last ending in a newline.
    ///
    /// # Errors
    /// [`NoteError::TooLarge`], [`NoteError::TooManySignatures`] or [`NoteError::Malformed`].
    pub fn parse(msg: &[u8]) -> Result<Self, NoteError> {
        if msg.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        check_note_chars(msg)?;
        let split = msg.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("signature block empty or not newline-terminated"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(Self { text: text.to_owned(), signatures })
    }

    /// The note text, ending in a newline (the signed bytes).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line, replacing any line by the same key `(name, key id)`.
    ///
    /// # Errors
    /// [`NoteError::TooManySignatures`] past [`MAX_NOTE_SIGNATURES`]; [`NoteError::TooLarge`]
    /// if the encoded note would exceed [`MAX_NOTE_BYTES`].
    pub fn add_signature(&mut self, sig: NoteSignature) -> Result<(), NoteError> {
        let mut next = self.clone();
        next.signatures.retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
        next.signatures.push(sig);
        if next.signatures.len() > MAX_NOTE_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        if next.encode().len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        *self = next;
        Ok(())
    }

    /// Signs the text with `signer` (deterministic Ed25519, RFC 8032) and adds the line as
    /// [`add_signature`](Self::add_signature) does.
    ///
    /// # Errors
    /// As [`add_signature`](Self::add_signature).
    pub fn sign(&mut self, signer: &NoteSigner) -> Result<(), NoteError> {
        let sig = signer.sign_text(&self.text);
        self.add_signature(sig)
    }

    /// The encoded note: text, a blank line, the signature lines. An unsigned note encodes as
    /// its text followed by a blank line (which [`Note::parse`] refuses: a note needs a
    /// signature).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 110 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// A note whose signatures were checked by [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The note as parsed, every signature line kept in order.
    pub note: Note,
    /// The signatures by known keys, all verified; one per key.
    pub verified: Vec<NoteSignature>,
    /// The signatures by unknown keys, not checked; identical lines once.
    pub unverified: Vec<NoteSignature>,
}

/// Parses and verifies a signed note against the known keys (`c2sp.org/signed-note`,
/// "Signatures"):
/// - a line whose `(name, key id)` matches no known key is ignored (kept in
///   [`OpenedNote::unverified`]), even if it shares the name or the id with one;
/// - every line by a known key is verified, repeated lines too, and one failure rejects the
///   whole note (the spec's SHOULD, taken as a MUST);
/// - at least one line by a known key must be present.
///
/// Ed25519 signatures are checked with `verify_strict` (no small-order keys or `R`, canonical
/// `S`).
///
/// # Errors
/// As [`Note::parse`]; [`NoteError::AmbiguousKey`] if two known keys share name and key id;
/// [`NoteError::InvalidSignature`] if a known key's signature fails;
/// [`NoteError::NoVerifiedSignature`] if no known key signed.
pub fn open(msg: &[u8], known: &[&dyn Verifier]) -> Result<OpenedNote, NoteError> {
    let note = Note::parse(msg)?;
    let mut keys = BTreeSet::new();
    for k in known {
        if !keys.insert((k.name(), k.key_id())) {
            return Err(NoteError::AmbiguousKey { name: k.name().to_owned(), key_id: k.key_id() });
        }
    }
    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    for sig in &note.signatures {
        match known.iter().find(|k| k.name() == sig.name && k.key_id() == sig.key_id) {
            Some(k) => {
                if !k.verify(&note.text, &sig.signature) {
                    return Err(NoteError::InvalidSignature { name: sig.name.clone(), key_id: sig.key_id });
                }
                if !verified.iter().any(|v| v.name == sig.name && v.key_id == sig.key_id) {
                    verified.push(sig.clone());
                }
            }
            None => {
                if !unverified.contains(sig) {
                    unverified.push(sig.clone());
                }
            }
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoVerifiedSignature);
    }
    Ok(OpenedNote { note, verified, unverified })
}

/// An Ed25519 public key with its name and key id, for one signature type.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub(crate) name: String,
    pub(crate) key_id: u32,
    pub(crate) key: VerifyingKey,
    pub(crate) sig_type: u8,
}

impl PublicKey {
    pub(crate) fn new(name: &str, sig_type: u8, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKey("invalid key name"));
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| NoteError::InvalidKey("not an Ed25519 point"))?;
        Ok(Self { name: name.to_owned(), key_id: key_id(name, sig_type, public_key), key, sig_type })
    }

    /// Parses `<name>+<8 lowercase hex key id>+<base64(sig_type ‖ 32-byte key)>`.
    pub(crate) fn parse(vkey: &str, sig_type: u8) -> Result<Self, NoteError> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::InvalidKey("verifier key needs name+id+key"));
        };
        let id = parse_key_id(id_hex)?;
        let raw = STANDARD.decode(b64).map_err(|_| NoteError::InvalidKey("key base64"))?;
        if raw.len() != 33 {
            return Err(NoteError::InvalidKey("key is not type byte + 32 bytes"));
        }
        if raw[0] != sig_type {
            return Err(NoteError::InvalidKey("unexpected signature type"));
        }
        let pk: [u8; 32] = raw[1..].try_into().expect("33 - 1 bytes");
        let key = Self::new(name, sig_type, &pk)?;
        if key.key_id != id {
            return Err(NoteError::InvalidKey("key id does not match name and key"));
        }
        Ok(key)
    }

    pub(crate) fn encode(&self) -> String {
        let mut raw = vec![self.sig_type];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(raw))
    }

    pub(crate) fn verify_ed25519(&self, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.key.verify_strict(msg, &Signature::from_bytes(&sig)).is_ok()
    }
}

fn parse_key_id(id_hex: &str) -> Result<u32, NoteError> {
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(NoteError::InvalidKey("key id is not 8 lowercase hex digits"));
    }
    u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::InvalidKey("key id hex"))
}

/// An Ed25519 private key with its name and key id, for one signature type. The seed is
/// zeroized on drop (ed25519-dalek's `SigningKey` with the `zeroize` feature).
pub(crate) struct PrivateKey {
    pub(crate) public: PublicKey,
    pub(crate) key: SigningKey,
}

impl PrivateKey {
    pub(crate) fn from_seed(name: &str, sig_type: u8, seed: &[u8; 32]) -> Result<Self, NoteError> {
        let key = SigningKey::from_bytes(seed);
        let public = PublicKey::new(name, sig_type, key.verifying_key().as_bytes())?;
        Ok(Self { public, key })
    }

    /// Parses `PRIVATE+KEY+<name>+<8 hex key id>+<base64(sig_type ‖ 32-byte seed)>`.
    pub(crate) fn parse(skey: &str, sig_type: u8) -> Result<Self, NoteError> {
        let mut parts = skey.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id_hex), Some(b64)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::InvalidKey("signer key needs PRIVATE+KEY+name+id+key"));
        };
        let id = parse_key_id(id_hex)?;
        let raw = Zeroizing::new(STANDARD.decode(b64).map_err(|_| NoteError::InvalidKey("key base64"))?);
        if raw.len() != 33 {
            return Err(NoteError::InvalidKey("key is not type byte + 32 bytes"));
        }
        if raw[0] != sig_type {
            return Err(NoteError::InvalidKey("unexpected signature type"));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&raw[1..]);
        let key = Self::from_seed(name, sig_type, &seed)?;
        if key.public.key_id != id {
            return Err(NoteError::InvalidKey("key id does not match name and key"));
        }
        Ok(key)
    }

    pub(crate) fn encode(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(vec![self.public.sig_type]);
        raw.extend_from_slice(self.key.as_bytes());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.public.name,
            self.public.key_id,
            Zeroizing::new(STANDARD.encode(&*raw)).as_str()
        ))
    }

    pub(crate) fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// A log's note verifier key: an Ed25519 public key (signature type 0x01) with its key name.
///
/// Text form (`golang.org/x/mod/sumdb/note` "verifier key"):
/// `<name>+<8 lowercase hex key id>+<base64(0x01 ‖ 32-byte public key)>`, e.g.
/// `PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW`.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier(pub(crate) PublicKey);

impl NoteVerifier {
    /// The verifier for `public_key` (32 bytes, RFC 8032 encoding) named `name`.
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if the name is invalid (empty, white space or `+`) or the bytes
    /// are not a point.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        PublicKey::new(name, SIG_TYPE_ED25519, public_key).map(Self)
    }

    /// Parses the text form.
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if the shape, the type byte (must be 0x01), the key or the key
    /// id (must match name and key) is wrong.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        PublicKey::parse(vkey, SIG_TYPE_ED25519).map(Self)
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.key.to_bytes()
    }

    /// The same public key under another name (a log that signs one checkpoint per origin
    /// with one Ed25519 key has one verifier per origin; the key id changes with the name).
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if `name` is not a valid key name.
    pub fn renamed(&self, name: &str) -> Result<Self, NoteError> {
        Self::new(name, &self.public_key())
    }
}

impl fmt::Display for NoteVerifier {
    /// The text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.encode())
    }
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteVerifier({})", self.0.encode())
    }
}

impl Verifier for NoteVerifier {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn key_id(&self) -> u32 {
        self.0.key_id
    }
    fn verify(&self, text: &str, signature: &[u8]) -> bool {
        self.0.verify_ed25519(text.as_bytes(), signature)
    }
}

/// A log's note signer key: an Ed25519 private key (signature type 0x01) with its key name.
///
/// Text form (`golang.org/x/mod/sumdb/note` "signer key"):
/// `PRIVATE+KEY+<name>+<8 lowercase hex key id>+<base64(0x01 ‖ 32-byte seed)>`. The seed is
/// zeroized on drop and `Debug` prints only the name and key id.
pub struct NoteSigner(pub(crate) PrivateKey);

impl NoteSigner {
    /// The signer for the 32-byte RFC 8032 seed `seed`, named `name`. The caller brings the
    /// randomness (this crate has none): 32 bytes from a CSPRNG.
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if the name is invalid.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        PrivateKey::from_seed(name, SIG_TYPE_ED25519, seed).map(Self)
    }

    /// Parses the text form.
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if the shape, the type byte (must be 0x01) or the key id (must
    /// match the name and the derived public key) is wrong.
    pub fn parse(skey: &str) -> Result<Self, NoteError> {
        PrivateKey::parse(skey, SIG_TYPE_ED25519).map(Self)
    }

    /// The text form (secret; zeroized when dropped).
    pub fn to_text(&self) -> Zeroizing<String> {
        self.0.encode()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier(self.0.public.clone())
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.0.public.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.0.public.key_id
    }

    /// The same private key under another name (see [`NoteVerifier::renamed`]).
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if `name` is not a valid key name.
    pub fn renamed(&self, name: &str) -> Result<Self, NoteError> {
        let seed = Zeroizing::new(self.0.key.to_bytes());
        Self::from_seed(name, &seed)
    }

    /// The signature line over `text` (the note text, ending in a newline): 64-byte
    /// deterministic Ed25519 signature (RFC 8032 §5.1.6) over the text's bytes.
    pub fn sign_text(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.0.public.name.clone(),
            key_id: self.0.public.key_id,
            signature: self.0.sign_raw(text.as_bytes()).to_vec(),
        }
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}+{:08x}, secret elided)", self.0.public.name, self.0.public.key_id)
    }
}

/// Signs `text` with every signer and returns the encoded note (text, blank line, one line per
/// signer in order).
///
/// # Errors
/// As [`Note::new`] and [`Note::add_signature`].
pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    let mut note = Note::new(text)?;
    for s in signers {
        note.sign(s)?;
    }
    Ok(note.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example key pair and note of the Go reference implementation's package documentation
    // (golang.org/x/mod/sumdb/note, doc.go "Example"; also in note_test.go). Ed25519 is
    // deterministic, so signing the text must give the published line byte for byte.
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const SIG_LINE: &str =
        "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    // The same documentation re-signs the note with `GenerateKey(zeroReader, "EnochRoot")`:
    // a 32-byte all-zero seed.
    const ENOCH_LINE: &str =
        "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn peter_note() -> String {
        format!("{TEXT}\n{SIG_LINE}")
    }

    #[test]
    fn go_example_keys_parse_and_round_trip() {
        let v = NoteVerifier::parse(VKEY).unwrap();
        assert_eq!(v.name(), "PeterNeumann");
        assert_eq!(v.key_id(), 0xc74f20a3);
        assert_eq!(v.to_string(), VKEY);
        let s = NoteSigner::parse(SKEY).unwrap();
        assert_eq!(s.verifier(), v);
        assert_eq!(s.to_text().as_str(), SKEY);
    }

    #[test]
    fn a_renamed_key_is_the_same_ed25519_key_under_a_new_key_id() {
        let s = NoteSigner::parse(SKEY).unwrap();
        let r = s.renamed("PeterNeumann/KL_CONTROL_V1").unwrap();
        assert_eq!(r.verifier().public_key(), s.verifier().public_key());
        assert_ne!(r.key_id(), s.key_id());
        assert_eq!(r.verifier(), s.verifier().renamed("PeterNeumann/KL_CONTROL_V1").unwrap());
        let line = r.sign_text(TEXT);
        let note = format!("{TEXT}\n{}", line.to_line());
        assert!(open(note.as_bytes(), &[&r.verifier()]).is_ok());
        assert!(open(note.as_bytes(), &[&s.verifier()]).is_err(), "the base name does not verify it");
        assert!(s.renamed("bad name").is_err());
    }

    #[test]
    fn signing_the_go_example_text_gives_the_published_note() {
        let s = NoteSigner::parse(SKEY).unwrap();
        assert_eq!(sign(TEXT, &[&s]).unwrap(), peter_note());
        let enoch = NoteSigner::from_seed("EnochRoot", &[0; 32]).unwrap();
        assert_eq!(sign(TEXT, &[&s, &enoch]).unwrap(), format!("{TEXT}\n{SIG_LINE}{ENOCH_LINE}"));
    }

    #[test]
    fn opening_the_go_example_note_verifies_it() {
        let v = NoteVerifier::parse(VKEY).unwrap();
        let opened = open(peter_note().as_bytes(), &[&v]).unwrap();
        assert_eq!(opened.note.text(), TEXT);
        assert_eq!(opened.verified.len(), 1);
        assert_eq!(opened.verified[0].key_id(), 0xc74f20a3);
        assert!(opened.unverified.is_empty());
        assert_eq!(opened.note.encode(), peter_note());
    }

    #[test]
    fn unknown_keys_are_kept_unverified_and_a_known_key_must_sign() {
        let v = NoteVerifier::parse(VKEY).unwrap();
        let msg = format!("{TEXT}\n{SIG_LINE}{ENOCH_LINE}");
        let opened = open(msg.as_bytes(), &[&v]).unwrap();
        assert_eq!(opened.unverified.len(), 1);
        assert_eq!(opened.unverified[0].name(), "EnochRoot");
        // Only the unknown key signed.
        let enoch_only = format!("{TEXT}\n{ENOCH_LINE}");
        assert_eq!(open(enoch_only.as_bytes(), &[&v]), Err(NoteError::NoVerifiedSignature));
        // Same name, other id: ignored, not failed.
        let other = NoteSigner::from_seed("PeterNeumann", &[1; 32]).unwrap();
        let msg = sign(TEXT, &[&NoteSigner::parse(SKEY).unwrap(), &other]).unwrap();
        assert_eq!(open(msg.as_bytes(), &[&v]).unwrap().unverified.len(), 1);
    }

    #[test]
    fn a_bad_signature_by_a_known_key_rejects_the_note() {
        let v = NoteVerifier::parse(VKEY).unwrap();
        let tampered = peter_note().replace("problem is", "problem was");
        assert_eq!(
            open(tampered.as_bytes(), &[&v]),
            Err(NoteError::InvalidSignature { name: "PeterNeumann".into(), key_id: 0xc74f20a3 })
        );
        // A second, bad line by the same key is verified too.
        let mut note = Note::parse(peter_note().as_bytes()).unwrap();
        let mut bad = note.signatures()[0].clone();
        bad.signature[0] ^= 1;
        note.signatures.push(bad);
        assert!(matches!(open(note.encode().as_bytes(), &[&v]), Err(NoteError::InvalidSignature { .. })));
        // Two known keys with one name and id are a configuration error.
        assert!(matches!(open(peter_note().as_bytes(), &[&v, &v]), Err(NoteError::AmbiguousKey { .. })));
    }

    #[test]
    fn malformed_notes_are_refused() {
        let v = NoteVerifier::parse(VKEY).unwrap();
        let good = peter_note();
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            TEXT.as_bytes().to_vec(),                                     // no signatures
            format!("{TEXT}\n").into_bytes(),                             // empty signature block
            good.trim_end_matches('\n').as_bytes().to_vec(),              // last line unterminated
            good.replace('\u{2014}', "-").into_bytes(),                   // not an em dash
            good.replace("PeterNeumann ", "Peter+Neumann ").into_bytes(), // '+' in name
            good.replace("x08go", "x08g").into_bytes(),                   // bad base64
            good.replace("If you", "If\tyou").into_bytes(),               // control character
            good.replace("If you", "If\ryou").into_bytes(),
            [b"\xff".as_slice(), good.as_bytes()].concat(), // not UTF-8
            format!("{TEXT}\n{SIG_LINE}\n").into_bytes(),   // blank line after signatures
            format!("{TEXT}\n\u{2014} PeterNeumann AAAAAA==\n").into_bytes(), // 4 bytes only
            format!("{TEXT}\n\u{2014} PeterNeumann\n").into_bytes(),
            format!("{TEXT}\n\u{2014}  x08go/ZJ\n").into_bytes(), // empty name
        ];
        for (i, msg) in cases.iter().enumerate() {
            let err = open(msg, &[&v]).unwrap_err();
            assert!(matches!(err, NoteError::Malformed(_)), "case {i}: {err:?}");
        }
        let mut many = format!("{TEXT}\n");
        for _ in 0..=MAX_NOTE_SIGNATURES {
            many.push_str(SIG_LINE);
        }
        assert_eq!(open(many.as_bytes(), &[&v]), Err(NoteError::TooManySignatures));
        let huge = format!("{}\n{SIG_LINE}", "a\n".repeat(MAX_NOTE_BYTES / 2));
        assert_eq!(open(huge.as_bytes(), &[&v]), Err(NoteError::TooLarge));
        assert!(Note::new("no newline").is_err());
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(NoteVerifier::parse(VKEY).is_ok());
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            // Wrong length and unknown algorithm, each with a matching key id (Go note_test.go).
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(matches!(NoteVerifier::parse(bad), Err(NoteError::InvalidKey(_))), "{bad}");
        }
        for i in 0..SKEY.len() {
            let _ = NoteSigner::parse(&SKEY[..i]).map(|_| panic!("prefix {i} parsed"));
        }
        assert!(NoteSigner::parse(&SKEY.replace("c74f20a3", "c74f20a4")).is_err());
        assert!(NoteSigner::parse(&SKEY.replace("PRIVATE", "private")).is_err());
        // A verifier key is not a signer key and the reverse.
        assert!(NoteSigner::parse(VKEY).is_err());
        assert!(NoteVerifier::parse(SKEY).is_err());
    }

    #[test]
    fn signer_debug_prints_no_secret() {
        let s = NoteSigner::parse(SKEY).unwrap();
        let dbg = format!("{s:?}");
        assert!(dbg.contains("PeterNeumann") && dbg.contains("c74f20a3"));
        assert!(!dbg.contains("AYEKFALV") && !dbg.contains("810a14"), "{dbg}");
    }
}
