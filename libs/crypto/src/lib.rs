//! All of Keyledger's cryptography, pure and synchronous.
//!
//! This crate does no I/O except reading and writing the root key file ([`RootKey::load`],
//! [`RootKey::create_file`], [`RootKey::load_from_fd`]), the caller-supplied readers and writers
//! of the [`envelope`] functions, and the [`harden_process`] system calls. It holds:
//!
//! - **Secrets** ([`KeyMaterial`], [`DataKey`], [`Plaintext`], [`RootKey`]): zeroized on drop,
//!   with a `Debug` that prints no byte of them.
//! - **Root key and key-material wrapping** ([`RootKey`], [`MaterialAad`], [`WrappedMaterial`]):
//!   key material at rest is XChaCha20-Poly1305-wrapped under a key derived from the root key,
//!   with AAD binding the root key id, account, key id, material version and purpose; events
//!   carry only the keyed BLAKE3 commitment [`RootKey::material_id`] (the AWS `KeyMaterialId`).
//! - **Imported key material** ([`ImportWrappingKey`], [`wrap_for_import`],
//!   [`RootKey::import_token`]): the RSA wrapping keys of AWS GetParametersForImport, the
//!   unwrapping of ImportKeyMaterial's `EncryptedKeyMaterial` (RSAES-OAEP, and RSA-OAEP + AES
//!   Key Wrap with Padding), wrapping keys stored under the root key, and authenticated import
//!   tokens. Read the [`import`] module notes on RUSTSEC-2023-0071 before exposing it.
//! - **Encryption context** ([`EncryptionContext`], [`canonical_context`]): a collision-free,
//!   order-independent encoding used as AAD.
//! - **Ciphertext blobs** ([`blob`]): the versioned, key-committing format that `Encrypt`
//!   returns and `Decrypt` reads (see `CIPHERTEXT.md`).
//! - **Envelope files** ([`envelope`]): streaming, chunked STREAM encryption of files of any size
//!   in constant memory (see `ENVELOPE.md`).
//! - **Process hardening** ([`harden_process`]).
//!
//! Every BLAKE3 `derive_key` context string starts with `"keyledger 2026-11-29 "`, so no key of
//! this crate can equal a key derived for another purpose or by another application
//! (BLAKE3 specification §6.2, "key derivation").
//!
//! ```
//! use keyledger_crypto::{open, seal, EncryptionContext, KeyMaterial, MaterialAad, RootKey};
//!
//! let root = RootKey::generate();
//! let material = KeyMaterial::generate();
//! let aad = MaterialAad { account: "111122223333", key_id: [7; 16], version: 1 };
//! let wrapped = root.wrap(&aad, &material); // stored in the material stream
//! let material_id = root.material_id(&material); // logged in the event
//! let material = root.unwrap_verified(&aad, wrapped.as_bytes(), &material_id).unwrap();
//!
//! let mut ec = EncryptionContext::new();
//! ec.insert("purpose".into(), "example".into());
//! let blob = seal(&material, [7; 16], 1, &ec, b"hello");
//! assert_eq!(open(&material, &blob, &ec).unwrap().as_bytes(), b"hello");
//! ```
//!
//! Randomness comes only from the operating system's CSPRNG (`getrandom(2)` on Linux). A
//! failure of the OS generator is treated as fatal: the functions that need randomness panic
//! rather than return weak output (documented under `# Panics` on each).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blob;
mod context;
pub mod envelope;
mod error;
mod grant_token;
mod harden;
pub mod import;
mod root;
mod secret;

pub use blob::{open, parse_header, seal, BlobHeader, BLOB_OVERHEAD};
pub use context::{canonical_context, parse_canonical_context, EncryptionContext};
pub use error::{CryptoError, Result};
pub use grant_token::{GrantTokenFields, GRANT_TOKEN_LEN, GRANT_TOKEN_PREFIX, GRANT_TOKEN_VERSION};
pub use harden::harden_process;
pub use import::{
    wrap_for_import, ImportKeyAad, ImportTokenFields, ImportWrappingKey, WrappingAlgorithm, WrappingKeySpec,
    IMPORT_AES_KEY_LEN, IMPORT_KEY_AAD_LABEL, IMPORT_KEY_PURPOSE, IMPORT_TOKEN_BODY_LEN, IMPORT_TOKEN_LABEL,
    IMPORT_TOKEN_LEN, IMPORT_TOKEN_TAG_LEN, IMPORT_TOKEN_VERSION, WRAPPED_IMPORT_KEY_VERSION,
};
pub use root::{
    MaterialAad, RootKey, WrappedMaterial, MATERIAL_AAD_LABEL, MATERIAL_PURPOSE, WRAPPED_MATERIAL_LEN,
    WRAPPED_MATERIAL_VERSION,
};
pub use secret::{DataKey, KeyMaterial, Plaintext, KEY_MATERIAL_LEN};

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// If the OS generator fails (on Linux `getrandom(2)` only fails before the kernel pool is
/// initialised on ancient kernels, or under a broken seccomp policy). Output of a failed
/// generator must never be used, so this is fatal.
pub(crate) fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::getrandom(buf) {
        panic!("the operating system's random number generator failed: {e}");
    }
}

/// Length of a XChaCha20-Poly1305 nonce in bytes (draft-irtf-cfrg-xchacha-03 §2).
pub const XNONCE_LEN: usize = 24;

/// Length of a Poly1305 authentication tag in bytes (RFC 8439 §2.5).
pub const TAG_LEN: usize = 16;

/// An XChaCha20-Poly1305 instance keyed with `key` (borrowed, not copied; the instance
/// zeroizes its own copy on drop).
pub(crate) fn xchacha(key: &[u8; 32]) -> chacha20poly1305::XChaCha20Poly1305 {
    use chacha20poly1305::KeyInit;
    chacha20poly1305::XChaCha20Poly1305::new(key.into())
}
