//! Witness cosignatures, `cosignature/v1` (`c2sp.org/tlog-cosignature`, Ed25519 type).
//!
//! - Key id: first 4 bytes of `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)`.
//! - Signed message: `"cosignature/v1\n" ‖ "time " ‖ decimal timestamp ‖ "\n" ‖ checkpoint note
//!   text` (the whole body with its final newline and any extension lines, no signature lines).
//! - Signature line payload: `key id (4) ‖ timestamp (8, big-endian u64 POSIX seconds) ‖
//!   Ed25519 signature (64)`, 76 bytes in all. The timestamp must not exceed `2^63 − 1`.

use std::fmt;

use zeroize::Zeroizing;

use crate::note::{PrivateKey, PublicKey, SIG_TYPE_COSIGNATURE_V1};
use crate::{NoteError, NoteSignature, Verifier};

/// The first line of the cosigned message (domain separation).
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1";
/// Largest timestamp a cosignature may carry: `2^63 − 1` seconds.
pub const MAX_COSIGNATURE_TIMESTAMP: u64 = i64::MAX as u64;
/// Bytes of a cosignature after the key id: 8-byte timestamp and 64-byte signature.
pub const COSIGNATURE_BYTES: usize = 72;

/// The exact bytes a `cosignature/v1` signs: `"cosignature/v1\ntime <timestamp>\n"` followed by
/// the checkpoint note text `body` (which ends in a newline).
pub fn cosignature_message(timestamp_unix_s: u64, body: &str) -> String {
    format!("{COSIGNATURE_V1_HEADER}\ntime {timestamp_unix_s}\n{body}")
}

/// A witness's cosigning key: Ed25519 with signature type 0x04, and its name.
///
/// Text form, by analogy with note signer keys (tlog-cosignature defines only the verifier
/// form): `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x04 ‖ 32-byte seed)>`. The seed is
/// zeroized on drop and `Debug` prints only the name and key id.
pub struct WitnessSigner(PrivateKey);

impl WitnessSigner {
    /// The cosigner for the 32-byte RFC 8032 `seed`, named `name` (a schema-less URL is
    /// recommended). The caller brings the randomness.
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if the name is invalid.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        PrivateKey::from_seed(name, SIG_TYPE_COSIGNATURE_V1, seed).map(Self)
    }

    /// Parses the text form.
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if the shape, the type byte (must be 0x04) or the key id is
    /// wrong.
    pub fn parse(skey: &str) -> Result<Self, NoteError> {
        PrivateKey::parse(skey, SIG_TYPE_COSIGNATURE_V1).map(Self)
    }

    /// The text form (secret; zeroized when dropped).
    pub fn to_text(&self) -> Zeroizing<String> {
        self.0.encode()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> WitnessVerifier {
        WitnessVerifier(self.0.public.clone())
    }

    /// The witness (key) name.
    pub fn name(&self) -> &str {
        &self.0.public.name
    }

    /// Cosigns the checkpoint note text `body` at `timestamp_unix_s`, returning the signature
    /// line (76-byte payload, see the module docs).
    ///
    /// # Errors
    /// [`NoteError::TimestampTooLarge`] above [`MAX_COSIGNATURE_TIMESTAMP`];
    /// [`NoteError::Malformed`] if `body` does not end in a newline or holds a control
    /// character.
    pub fn cosign(&self, body: &str, timestamp_unix_s: u64) -> Result<NoteSignature, NoteError> {
        if timestamp_unix_s > MAX_COSIGNATURE_TIMESTAMP {
            return Err(NoteError::TimestampTooLarge);
        }
        crate::Note::new(body)?;
        let sig = self.0.sign_raw(cosignature_message(timestamp_unix_s, body).as_bytes());
        let mut payload = Vec::with_capacity(COSIGNATURE_BYTES);
        payload.extend_from_slice(&timestamp_unix_s.to_be_bytes());
        payload.extend_from_slice(&sig);
        NoteSignature::new(&self.0.public.name, self.0.public.key_id, payload)
    }
}

impl fmt::Debug for WitnessSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WitnessSigner({}+{:08x}, secret elided)", self.0.public.name, self.0.public.key_id)
    }
}

/// A witness's cosignature verifier key. Text form (tlog-cosignature, "vkeys with signature
/// type 0x04"): `<name>+<8 hex key id>+<base64(0x04 ‖ 32-byte public key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct WitnessVerifier(PublicKey);

impl WitnessVerifier {
    /// The verifier for `public_key` (32 bytes) named `name`.
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if the name is invalid or the bytes are not a point.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        PublicKey::new(name, SIG_TYPE_COSIGNATURE_V1, public_key).map(Self)
    }

    /// Parses the text form.
    ///
    /// # Errors
    /// [`NoteError::InvalidKey`] if the shape, type byte (must be 0x04) or key id is wrong.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        PublicKey::parse(vkey, SIG_TYPE_COSIGNATURE_V1).map(Self)
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.key.to_bytes()
    }

    /// Verifies one cosignature line over the checkpoint note text `body` and returns its
    /// timestamp (POSIX seconds). Whether a timestamp in the future is acceptable is the
    /// caller's policy (the spec says verifiers MAY reject it).
    ///
    /// # Errors
    /// [`NoteError::KeyMismatch`] if the line is not by this key (name and key id);
    /// [`NoteError::InvalidSignature`] if the payload is not 72 bytes, the timestamp exceeds
    /// `2^63 − 1` or the signature fails `verify_strict`.
    pub fn verify_cosignature(&self, body: &str, sig: &NoteSignature) -> Result<u64, NoteError> {
        if sig.name() != self.0.name || sig.key_id() != self.0.key_id {
            return Err(NoteError::KeyMismatch);
        }
        self.check(body, sig.signature())
            .ok_or_else(|| NoteError::InvalidSignature { name: sig.name().to_owned(), key_id: sig.key_id() })
    }

    fn check(&self, body: &str, payload: &[u8]) -> Option<u64> {
        if payload.len() != COSIGNATURE_BYTES {
            return None;
        }
        let timestamp = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
        if timestamp > MAX_COSIGNATURE_TIMESTAMP {
            return None;
        }
        let msg = cosignature_message(timestamp, body);
        self.0.verify_ed25519(msg.as_bytes(), &payload[8..]).then_some(timestamp)
    }
}

impl Verifier for WitnessVerifier {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn key_id(&self) -> u32 {
        self.0.key_id
    }
    fn verify(&self, text: &str, signature: &[u8]) -> bool {
        self.check(text, signature).is_some()
    }
}

impl fmt::Display for WitnessVerifier {
    /// The text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.encode())
    }
}

impl fmt::Debug for WitnessVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WitnessVerifier({})", self.0.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checkpoint, NoteSigner, SignedCheckpoint};

    #[test]
    fn the_spec_example_cosignature_line_has_the_spec_timestamp() {
        // c2sp.org/tlog-cosignature example: the line's payload is key id, then the timestamp
        // of the example message ("time 1679315147"), then 64 signature bytes.
        let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let sig = NoteSignature::parse_line(line).unwrap();
        assert_eq!(sig.signature().len(), COSIGNATURE_BYTES);
        assert_eq!(u64::from_be_bytes(sig.signature()[..8].try_into().unwrap()), 1679315147);
        assert_eq!(
            cosignature_message(1679315147, "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn cosignatures_verify_with_their_timestamp_and_refuse_changes() {
        let log = NoteSigner::from_seed("example.com/log", &[1; 32]).unwrap();
        let w = WitnessSigner::from_seed("witness.example/w1", &[4; 32]).unwrap();
        let v = w.verifier();
        assert_eq!(v.key_id(), crate::key_id("witness.example/w1", 0x04, &v.public_key()));
        assert_eq!(WitnessVerifier::parse(&v.to_string()).unwrap(), v);
        assert_eq!(WitnessSigner::parse(&w.to_text()).unwrap().verifier(), v);
        // A witness key is not a note key (type byte 0x04, not 0x01), and the reverse.
        assert!(crate::NoteVerifier::parse(&v.to_string()).is_err());
        assert!(WitnessVerifier::parse(&log.verifier().to_string()).is_err());

        let mut signed = SignedCheckpoint::sign(Checkpoint::new("example.com/log", 9, [7; 32]), &log).unwrap();
        let sig = w.cosign(signed.body(), 1_700_000_123).unwrap();
        assert_eq!(v.verify_cosignature(signed.body(), &sig), Ok(1_700_000_123));
        assert!(v
            .verify_cosignature("example.com/log\n9\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\next\n", &sig)
            .is_err());
        let mut later = sig.signature().to_vec();
        later[7] ^= 1; // another timestamp
        let later = NoteSignature::new(sig.name(), sig.key_id(), later).unwrap();
        assert!(matches!(v.verify_cosignature(signed.body(), &later), Err(NoteError::InvalidSignature { .. })));
        let other = WitnessSigner::from_seed("witness.example/w2", &[5; 32]).unwrap().verifier();
        assert_eq!(other.verify_cosignature(signed.body(), &sig), Err(NoteError::KeyMismatch));
        assert_eq!(w.cosign(signed.body(), MAX_COSIGNATURE_TIMESTAMP + 1), Err(NoteError::TimestampTooLarge));

        signed.add_signature(sig).unwrap();
        let reopened = SignedCheckpoint::open(signed.to_text().as_bytes(), &log.verifier()).unwrap();
        let cosigs = reopened.verify_cosignatures(&[other.clone(), v.clone()]).unwrap();
        assert_eq!(cosigs.len(), 1);
        assert_eq!((cosigs[0].name.as_str(), cosigs[0].timestamp_unix_s), ("witness.example/w1", 1_700_000_123));
        signed.add_signature(later).unwrap(); // replaces the good line by a bad one
        assert!(signed.verify_cosignatures(&[v]).is_err());
        assert!(format!("{w:?}").contains("secret elided"));
    }
}
