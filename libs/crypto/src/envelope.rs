//! The envelope file format: a file of any size encrypted under a data key, in constant
//! memory, tamper-evident per chunk and at the end. Used by `keyledger envelope encrypt` and
//! `keyledger envelope decrypt`. The normative description is `libs/crypto/ENVELOPE.md`.
//!
//! # Format v1
//!
//! All integers big-endian.
//!
//! ```text
//! header:
//!   magic "KLENV"                                   5 bytes
//!   version 0x01                                    1 byte
//!   u32 n ‖ key ARN (UTF-8)                         1 ≤ n ≤ 2048
//!   u32 n ‖ canonical_context(encryption context)   4 ≤ n ≤ 65536
//!   u32 n ‖ encrypted data key (a ciphertext blob)  1 ≤ n ≤ 6144
//!   u32 chunk size in bytes                         1024 ≤ c ≤ 16 MiB (default 65536)
//!   STREAM nonce prefix                             19 random bytes
//! body:
//!   zero or more full chunks: ciphertext of exactly c plaintext bytes ‖ 16-byte tag
//!   one final chunk:          ciphertext of 0 ≤ k < c plaintext bytes ‖ 16-byte tag
//! ```
//!
//! The body is the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár ("Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015) over
//! XChaCha20-Poly1305, in its "BE32" flavour: chunk *i*'s 24-byte nonce is
//! `nonce prefix ‖ u32 i ‖ last flag` (flag `0x01` on the final chunk, else `0x00`).
//! Every chunk's AAD is `BLAKE3 hash(header bytes)`, so the whole header is authenticated.
//! The payload key is `BLAKE3 derive_key("keyledger 2026-11-29 envelope payload v1",
//! data key ‖ nonce prefix)`.
//!
//! A plaintext whose length is a multiple of c ends with an empty final chunk, so the final
//! chunk is always shorter than a full one and the reader needs no look-ahead. Reordered,
//! duplicated, dropped or altered chunks fail their tag; truncation at a chunk boundary leaves
//! no final chunk; bytes after the final chunk are refused.
//!
//! # Failure mid-stream
//!
//! [`decrypt_body`] writes a chunk's plaintext only after that chunk verified, but a file
//! that is damaged in chunk *i* fails only when chunk *i* is read: chunks before it have been
//! written by then. A caller must therefore write to a temporary file and rename it into place
//! only when [`decrypt_body`] returned `Ok`, and delete it otherwise.

use std::io::{ErrorKind, Read, Write};

use aead_stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::XChaCha20Poly1305;
use zeroize::Zeroizing;

use crate::context::{canonical_context, parse_canonical_context, EncryptionContext};
use crate::secret::DataKey;
use crate::{fill_random, xchacha, CryptoError, Result, TAG_LEN};

/// Magic bytes that start an envelope file: `"KLENV"`.
pub const MAGIC: [u8; 5] = *b"KLENV";
/// The envelope format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Default plaintext bytes per chunk: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 65_536;
/// Smallest chunk size accepted, in bytes: 1 KiB.
pub const MIN_CHUNK_SIZE: u32 = 1024;
/// Largest chunk size accepted, in bytes: 16 MiB (bounds a reader's memory).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Largest key ARN, in bytes (AWS `KeyIdType` is 1–2048 characters).
pub const MAX_KEY_ARN_LEN: usize = 2048;
/// Largest canonical encryption context, in bytes.
pub const MAX_CONTEXT_LEN: usize = 65_536;
/// Largest encrypted data key, in bytes (AWS `CiphertextBlob` maximum).
pub const MAX_ENCRYPTED_DATA_KEY_LEN: usize = 6144;
/// Length of the STREAM nonce prefix: 24-byte XChaCha nonce − 4-byte counter − 1-byte flag.
pub const NONCE_PREFIX_LEN: usize = 19;
/// Smallest data key accepted, in bytes (AWS `AES_128`).
pub const MIN_DATA_KEY_LEN: usize = 16;
/// Largest data key accepted, in bytes (AWS GenerateDataKey `NumberOfBytes` maximum).
pub const MAX_DATA_KEY_LEN: usize = 1024;

/// BLAKE3 `derive_key` context of the payload key.
const CTX_PAYLOAD: &str = "keyledger 2026-11-29 envelope payload v1";

/// The public part of an envelope file's header: which KMS key and context can decrypt the
/// data key, and how the body is chunked. Not secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// Full ARN of the KMS key that encrypted the data key (1–2048 bytes of UTF-8).
    pub key_arn: String,
    /// Encryption context the data key was encrypted with; Decrypt needs the same pairs.
    pub encryption_context: EncryptionContext,
    /// The data key's `CiphertextBlob` from GenerateDataKey (1–6144 bytes).
    pub encrypted_data_key: Vec<u8>,
    /// Plaintext bytes per chunk, [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`].
    pub chunk_size: u32,
}

impl EnvelopeHeader {
    /// A header with the [`DEFAULT_CHUNK_SIZE`].
    #[must_use]
    pub fn new(key_arn: String, encryption_context: EncryptionContext, encrypted_data_key: Vec<u8>) -> Self {
        EnvelopeHeader { key_arn, encryption_context, encrypted_data_key, chunk_size: DEFAULT_CHUNK_SIZE }
    }

    /// The header bytes (format v1) with the given nonce prefix.
    fn encode(&self, nonce_prefix: &[u8; NONCE_PREFIX_LEN]) -> Result<Vec<u8>> {
        check_len("key ARN", self.key_arn.len(), 1, MAX_KEY_ARN_LEN)?;
        let ec = canonical_context(&self.encryption_context);
        check_len("encryption context", ec.len(), 4, MAX_CONTEXT_LEN)?;
        check_len("encrypted data key", self.encrypted_data_key.len(), 1, MAX_ENCRYPTED_DATA_KEY_LEN)?;
        check_chunk_size(self.chunk_size)?;

        let mut out = Vec::with_capacity(
            MAGIC.len() + 1 + 12 + self.key_arn.len() + ec.len() + self.encrypted_data_key.len() + 4 + NONCE_PREFIX_LEN,
        );
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        for field in [self.key_arn.as_bytes(), &ec, &self.encrypted_data_key] {
            // Bounded above to at most 65536 bytes.
            #[allow(clippy::cast_possible_truncation)]
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(nonce_prefix);
        Ok(out)
    }
}

/// An envelope header as read from a file by [`read_header`]: the fields, the STREAM nonce
/// prefix and the exact header bytes (whose BLAKE3 hash is every chunk's AAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEnvelopeHeader {
    header: EnvelopeHeader,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    raw: Vec<u8>,
}

impl ParsedEnvelopeHeader {
    /// The header fields.
    #[must_use]
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// The 19-byte STREAM nonce prefix.
    #[must_use]
    pub fn nonce_prefix(&self) -> &[u8; NONCE_PREFIX_LEN] {
        &self.nonce_prefix
    }

    /// The exact header bytes as read.
    #[must_use]
    pub fn raw_bytes(&self) -> &[u8] {
        &self.raw
    }
}

/// Encrypts everything `input` yields into `output` as an envelope file: the header, then the
/// chunked body. Memory use is O(chunk size), whatever the input length. Flushes `output` at
/// the end.
///
/// Returns the number of plaintext bytes read.
///
/// # Errors
/// - [`CryptoError::Envelope`] if a header field is out of bounds (ARN empty or over 2048
///   bytes, context over 65536 bytes, encrypted data key empty or over 6144 bytes, chunk size
///   outside 1 KiB..=16 MiB), the data key is not 16–1024 bytes, or the input needs more than
///   2³² − 1 chunks;
/// - [`CryptoError::Io`] if reading or writing fails.
///
/// # Panics
/// If the OS random number generator fails.
pub fn encrypt<R: Read, W: Write>(data_key: &DataKey, header: &EnvelopeHeader, input: R, output: W) -> Result<u64> {
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    fill_random(&mut nonce_prefix);
    encrypt_with_nonce_prefix(data_key, header, nonce_prefix, input, output)
}

/// [`encrypt`] with a caller-chosen nonce prefix, for test vectors only. A nonce prefix must
/// never repeat under the same data key.
#[doc(hidden)]
pub fn encrypt_with_nonce_prefix<R: Read, W: Write>(
    data_key: &DataKey,
    header: &EnvelopeHeader,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    mut input: R,
    mut output: W,
) -> Result<u64> {
    encrypt_dyn(data_key, header, nonce_prefix, &mut input, &mut output)
}

/// The body of [`encrypt`], not generic so that it is compiled (and optimised) once, here.
fn encrypt_dyn(
    data_key: &DataKey,
    header: &EnvelopeHeader,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<u64> {
    let key = payload_key(data_key, &nonce_prefix)?;
    let raw = header.encode(&nonce_prefix)?;
    let aad = blake3::hash(&raw);
    let chunk = header.chunk_size as usize;
    let mut stream = EncryptorBE32::<XChaCha20Poly1305>::from_aead(xchacha(&key), (&nonce_prefix).into());

    output.write_all(&raw)?;
    // Holds plaintext between reads: zeroizing, and sized for the tag so it never reallocates.
    let mut buf = Zeroizing::new(Vec::with_capacity(chunk + TAG_LEN));
    let mut total: u64 = 0;
    loop {
        buf.clear();
        buf.resize(chunk, 0);
        let n = read_full(input, &mut buf)?;
        buf.truncate(n);
        total += n as u64;
        if n == chunk {
            stream
                .encrypt_next_in_place(aad.as_bytes(), &mut *buf)
                .map_err(|_| CryptoError::Envelope("input too large: more than 2^32 - 1 chunks".to_owned()))?;
            output.write_all(&buf)?;
        } else {
            stream
                .encrypt_last_in_place(aad.as_bytes(), &mut *buf)
                .map_err(|_| CryptoError::Envelope("cannot seal the final chunk".to_owned()))?;
            output.write_all(&buf)?;
            break;
        }
    }
    output.flush()?;
    Ok(total)
}

/// Reads and validates an envelope header from `input`, leaving `input` positioned at the
/// first chunk. Reads exactly the header's bytes; every length is bounded before anything is
/// allocated for it.
///
/// # Errors
/// - [`CryptoError::Envelope`] if the input is not an envelope file (wrong magic), has an
///   unsupported version, ends inside the header, or a field is out of bounds or malformed
///   (ARN not UTF-8, context not canonical, chunk size outside 1 KiB..=16 MiB);
/// - [`CryptoError::Io`] for other read errors.
pub fn read_header<R: Read>(input: &mut R) -> Result<ParsedEnvelopeHeader> {
    let mut raw = Vec::new();
    let start = take(input, &mut raw, MAGIC.len() + 1)?;
    if start[..MAGIC.len()] != MAGIC {
        return Err(CryptoError::Envelope("not a Keyledger envelope file (bad magic)".to_owned()));
    }
    if start[MAGIC.len()] != VERSION {
        return Err(CryptoError::Envelope(format!(
            "unsupported envelope version {} (this build reads version {VERSION})",
            start[MAGIC.len()]
        )));
    }

    let arn = take_prefixed(input, &mut raw, "key ARN", 1, MAX_KEY_ARN_LEN)?;
    let key_arn = String::from_utf8(arn).map_err(|_| CryptoError::Envelope("key ARN is not valid UTF-8".to_owned()))?;
    let ec_bytes = take_prefixed(input, &mut raw, "encryption context", 4, MAX_CONTEXT_LEN)?;
    let encryption_context = parse_canonical_context(&ec_bytes).map_err(|e| CryptoError::Envelope(e.to_owned()))?;
    let encrypted_data_key = take_prefixed(input, &mut raw, "encrypted data key", 1, MAX_ENCRYPTED_DATA_KEY_LEN)?;
    let chunk_size = u32::from_be_bytes(take(input, &mut raw, 4)?.try_into().expect("took 4 bytes"));
    check_chunk_size(chunk_size)?;
    let nonce_prefix: [u8; NONCE_PREFIX_LEN] =
        take(input, &mut raw, NONCE_PREFIX_LEN)?.try_into().expect("took 19 bytes");

    Ok(ParsedEnvelopeHeader {
        header: EnvelopeHeader { key_arn, encryption_context, encrypted_data_key, chunk_size },
        nonce_prefix,
        raw,
    })
}

/// Decrypts the body that follows a header read by [`read_header`] from `input` into
/// `output`, chunk by chunk, in O(chunk size) memory. Flushes `output` at the end.
///
/// A chunk's plaintext is written only after its tag verified. On error, the chunks before
/// the failing one **have been written**: write to a temporary file and rename it into place
/// only on `Ok` (see the [module documentation](self)).
///
/// Returns the number of plaintext bytes written.
///
/// # Errors
/// - [`CryptoError::Envelope`] if a chunk fails authentication (corrupted, reordered,
///   truncated, header altered, or wrong data key), the final chunk is missing, bytes follow
///   the final chunk, or the data key is not 16–1024 bytes;
/// - [`CryptoError::Io`] if reading or writing fails.
pub fn decrypt_body<R: Read, W: Write>(
    data_key: &DataKey,
    parsed: &ParsedEnvelopeHeader,
    mut input: R,
    mut output: W,
) -> Result<u64> {
    decrypt_dyn(data_key, parsed, &mut input, &mut output)
}

/// The body of [`decrypt_body`], not generic so that it is compiled (and optimised) once, here.
fn decrypt_dyn(
    data_key: &DataKey,
    parsed: &ParsedEnvelopeHeader,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<u64> {
    let key = payload_key(data_key, &parsed.nonce_prefix)?;
    let aad = blake3::hash(&parsed.raw);
    let full = parsed.header.chunk_size as usize + TAG_LEN;
    let mut stream = DecryptorBE32::<XChaCha20Poly1305>::from_aead(xchacha(&key), (&parsed.nonce_prefix).into());

    let mut buf = Zeroizing::new(Vec::with_capacity(full));
    let mut total: u64 = 0;
    let mut index: u64 = 0;
    loop {
        buf.clear();
        buf.resize(full, 0);
        let n = read_full(input, &mut buf)?;
        buf.truncate(n);
        if n == full {
            stream.decrypt_next_in_place(aad.as_bytes(), &mut *buf).map_err(|_| chunk_failed(index))?;
            output.write_all(&buf)?;
            total += buf.len() as u64;
        } else if n < TAG_LEN {
            return Err(CryptoError::Envelope(format!(
                "file is truncated: chunk {index} (the final chunk) is missing or cut short"
            )));
        } else {
            stream.decrypt_last_in_place(aad.as_bytes(), &mut *buf).map_err(|_| chunk_failed(index))?;
            let mut probe = [0u8; 1];
            if read_full(input, &mut probe)? != 0 {
                return Err(CryptoError::Envelope("unexpected bytes after the final chunk".to_owned()));
            }
            output.write_all(&buf)?;
            total += buf.len() as u64;
            break;
        }
        index += 1;
    }
    output.flush()?;
    Ok(total)
}

fn chunk_failed(index: u64) -> CryptoError {
    CryptoError::Envelope(format!(
        "chunk {index} failed authentication: the file is corrupted, truncated, reordered or \
         tampered with, or the data key is wrong"
    ))
}

/// `BLAKE3 derive_key(CTX_PAYLOAD, data key ‖ nonce prefix)`.
fn payload_key(data_key: &DataKey, nonce_prefix: &[u8; NONCE_PREFIX_LEN]) -> Result<Zeroizing<[u8; 32]>> {
    let len = data_key.len();
    if !(MIN_DATA_KEY_LEN..=MAX_DATA_KEY_LEN).contains(&len) {
        return Err(CryptoError::Envelope(format!(
            "data key must be {MIN_DATA_KEY_LEN}-{MAX_DATA_KEY_LEN} bytes, got {len}"
        )));
    }
    let mut hasher = blake3::Hasher::new_derive_key(CTX_PAYLOAD);
    hasher.update(data_key.as_bytes());
    hasher.update(nonce_prefix);
    let mut key = Zeroizing::new([0u8; 32]);
    hasher.finalize_xof().fill(key.as_mut());
    Ok(key)
}

fn check_len(what: &str, len: usize, min: usize, max: usize) -> Result<()> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(CryptoError::Envelope(format!("{what} length {len} is outside {min}..={max} bytes")))
    }
}

fn check_chunk_size(chunk_size: u32) -> Result<()> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        Ok(())
    } else {
        Err(CryptoError::Envelope(format!(
            "chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes"
        )))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read + ?Sized>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads exactly `len` header bytes, appends them to `raw` and returns them.
fn take<R: Read>(input: &mut R, raw: &mut Vec<u8>, len: usize) -> Result<Vec<u8>> {
    let mut field = vec![0u8; len];
    if read_full(input, &mut field)? != len {
        return Err(CryptoError::Envelope("file is truncated inside the header".to_owned()));
    }
    raw.extend_from_slice(&field);
    Ok(field)
}

/// Reads a u32 length (checked against `min..=max`) and that many bytes.
fn take_prefixed<R: Read>(input: &mut R, raw: &mut Vec<u8>, what: &str, min: usize, max: usize) -> Result<Vec<u8>> {
    let len = u32::from_be_bytes(take(input, raw, 4)?.try_into().expect("took 4 bytes")) as usize;
    check_len(what, len, min, max)?;
    take(input, raw, len)
}
