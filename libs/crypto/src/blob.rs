//! The ciphertext blob: what AWS `Encrypt` and `GenerateDataKey` return as `CiphertextBlob` and
//! `Decrypt` reads. Versioned, self-describing (it names the key and the material version, so
//! Decrypt needs no `KeyId`), and key-committing.
//!
//! # Format v1
//!
//! All integers big-endian. The normative description, with its rationale, is
//! `libs/crypto/CIPHERTEXT.md`.
//!
//! | offset | length | field |
//! |-------:|-------:|-------|
//! | 0      | 2      | magic `"KL"` (`4B 4C`) |
//! | 2      | 1      | format version `0x01` |
//! | 3      | 16     | key id (the KMS key's UUID, 16 bytes) |
//! | 19     | 4      | material version (u32) |
//! | 23     | 24     | nonce, random per blob |
//! | 47     | 32     | commitment |
//! | 79     | n      | XChaCha20-Poly1305 ciphertext of the n-byte plaintext |
//! | 79 + n | 16     | Poly1305 tag |
//!
//! Call bytes 0..47 the *header*. With `m` the 32-byte key material of that version:
//!
//! ```text
//! okm        = BLAKE3 derive_key-mode XOF, context "keyledger 2026-11-29 ciphertext v1",
//!              input m ‖ header, first 64 output bytes
//! aead key   = okm[0..32]
//! commitment = okm[32..64]
//! AAD        = header ‖ commitment ‖ canonical_context(encryption context)
//! ciphertext ‖ tag = XChaCha20-Poly1305(aead key, nonce = header nonce, AAD, plaintext)
//! ```
//!
//! Opening recomputes `okm` from the candidate material and the header, compares the
//! commitment in constant time, and only then runs the AEAD. Because the commitment is a
//! collision-resistant function of the material, no blob opens under two different materials
//! (key commitment), which plain XChaCha20-Poly1305 does not guarantee. Every failure is the
//! single, detail-free [`CryptoError::InvalidCiphertext`].
//!
//! Sizes: [`BLOB_OVERHEAD`] = 95 bytes, so the largest AWS `Encrypt` plaintext (4096 bytes,
//! enforced by callers) gives a 4191-byte blob, within the AWS `CiphertextBlob` maximum of
//! 6144 bytes ([`MAX_CIPHERTEXT_BLOB_LEN`]).

use chacha20poly1305::{AeadInOut, XNonce};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::context::{canonical_context, EncryptionContext};
use crate::secret::{KeyMaterial, Plaintext};
use crate::{fill_random, xchacha, CryptoError, Result, TAG_LEN, XNONCE_LEN};

/// The blob's magic bytes, `"KL"`.
pub const MAGIC: [u8; 2] = *b"KL";
/// The blob format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Length of the header (magic, version, key id, material version, nonce): 47 bytes.
pub const HEADER_LEN: usize = 2 + 1 + 16 + 4 + XNONCE_LEN;
/// Length of the key commitment: 32 bytes.
pub const COMMITMENT_LEN: usize = 32;
/// Bytes a blob adds to its plaintext: header 47 + commitment 32 + tag 16 = 95.
pub const BLOB_OVERHEAD: usize = HEADER_LEN + COMMITMENT_LEN + TAG_LEN;
/// Largest plaintext of AWS `Encrypt` for symmetric keys, in bytes (AWS KMS API reference,
/// Encrypt `Plaintext`). Enforced by callers, not by [`seal`].
pub const MAX_PLAINTEXT_LEN: usize = 4096;
/// Largest `CiphertextBlob` AWS accepts, in bytes (AWS KMS API reference, `CiphertextType`).
pub const MAX_CIPHERTEXT_BLOB_LEN: usize = 6144;

const _: () = assert!(MAX_PLAINTEXT_LEN + BLOB_OVERHEAD <= MAX_CIPHERTEXT_BLOB_LEN);

/// BLAKE3 `derive_key` context of the per-blob subkey and commitment.
const CTX_CIPHERTEXT: &str = "keyledger 2026-11-29 ciphertext v1";

/// What a blob's header names: enough to find the material that opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobHeader {
    /// The KMS key id (16 bytes of its UUID).
    pub key_id: [u8; 16],
    /// The material version of that key that sealed the blob.
    pub material_version: u32,
}

/// Reads the header of a blob without opening it (to pick the key and material version).
///
/// # Errors
/// [`CryptoError::InvalidCiphertext`] if the blob is shorter than [`BLOB_OVERHEAD`], has the
/// wrong magic, or an unknown version.
pub fn parse_header(blob: &[u8]) -> Result<BlobHeader> {
    if blob.len() < BLOB_OVERHEAD || blob[0..2] != MAGIC || blob[2] != VERSION {
        return Err(CryptoError::InvalidCiphertext);
    }
    Ok(BlobHeader {
        key_id: blob[3..19].try_into().expect("slice of 16"),
        material_version: u32::from_be_bytes(blob[19..23].try_into().expect("slice of 4")),
    })
}

/// Seals `plaintext` under `material` (version `material_version` of key `key_id`), bound to
/// the encryption context `ec`, with a fresh random nonce. Output: `plaintext.len() +`
/// [`BLOB_OVERHEAD`] bytes in format v1 (see the [module documentation](self)).
///
/// # Panics
/// If the OS random number generator fails.
#[must_use]
pub fn seal(
    material: &KeyMaterial,
    key_id: [u8; 16],
    material_version: u32,
    ec: &EncryptionContext,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut nonce = [0u8; XNONCE_LEN];
    fill_random(&mut nonce);
    seal_with_nonce(material, key_id, material_version, ec, plaintext, nonce)
}

/// [`seal`] with a caller-chosen nonce, for golden test vectors and benchmarks only. A nonce
/// must never repeat under the same material.
#[doc(hidden)]
#[must_use]
pub fn seal_with_nonce(
    material: &KeyMaterial,
    key_id: [u8; 16],
    material_version: u32,
    ec: &EncryptionContext,
    plaintext: &[u8],
    nonce: [u8; XNONCE_LEN],
) -> Vec<u8> {
    let mut blob = Vec::with_capacity(plaintext.len() + BLOB_OVERHEAD);
    blob.extend_from_slice(&MAGIC);
    blob.push(VERSION);
    blob.extend_from_slice(&key_id);
    blob.extend_from_slice(&material_version.to_be_bytes());
    blob.extend_from_slice(&nonce);
    debug_assert_eq!(blob.len(), HEADER_LEN);

    let okm = derive(material, &blob);
    blob.extend_from_slice(&okm[32..64]);
    let mut aad = blob.clone();
    aad.extend_from_slice(&canonical_context(ec));

    let key: &[u8; 32] = okm[0..32].try_into().expect("slice of 32");
    // The body holds plaintext until encrypted in place: zeroizing, and sized for the tag so
    // it never reallocates (which would leave an unzeroed copy behind).
    let mut body = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    body.extend_from_slice(plaintext);
    xchacha(key)
        .encrypt_in_place(&XNonce::from(nonce), &aad, &mut *body)
        .expect("XChaCha20-Poly1305 accepts messages far larger than a blob");
    blob.extend_from_slice(&body);
    blob
}

/// Opens a blob sealed by [`seal`] with `material` and the same encryption context (the same
/// pairs in any order).
///
/// # Errors
/// [`CryptoError::InvalidCiphertext`], with no detail, if the blob is malformed or truncated,
/// has an unknown version, was sealed under other material, was tampered with, or `ec`
/// differs from the sealing context by any pair (missing, extra or altered).
pub fn open(material: &KeyMaterial, blob: &[u8], ec: &EncryptionContext) -> Result<Plaintext> {
    parse_header(blob)?;
    let header = &blob[..HEADER_LEN];
    let okm = derive(material, header);
    let commitment = &blob[HEADER_LEN..HEADER_LEN + COMMITMENT_LEN];
    if !bool::from(okm[32..64].ct_eq(commitment)) {
        return Err(CryptoError::InvalidCiphertext);
    }
    let prefix_len = HEADER_LEN + COMMITMENT_LEN;
    let mut aad = Vec::with_capacity(prefix_len + 4 + 64 * ec.len());
    aad.extend_from_slice(&blob[..prefix_len]);
    aad.extend_from_slice(&canonical_context(ec));

    let nonce: [u8; XNONCE_LEN] = blob[HEADER_LEN - XNONCE_LEN..HEADER_LEN].try_into().expect("slice of 24");
    let key: &[u8; 32] = okm[0..32].try_into().expect("slice of 32");
    let mut body = Zeroizing::new(blob[prefix_len..].to_vec());
    xchacha(key)
        .decrypt_in_place(&XNonce::from(nonce), &aad, &mut *body)
        .map_err(|_| CryptoError::InvalidCiphertext)?;
    Ok(Plaintext::from_zeroizing(body))
}

/// The 64 output bytes of the blob's key schedule: AEAD key ‖ commitment.
fn derive(material: &KeyMaterial, header: &[u8]) -> Zeroizing<[u8; 64]> {
    let mut hasher = blake3::Hasher::new_derive_key(CTX_CIPHERTEXT);
    hasher.update(material.as_bytes());
    hasher.update(header);
    let mut okm = Zeroizing::new([0u8; 64]);
    hasher.finalize_xof().fill(okm.as_mut());
    okm
}
