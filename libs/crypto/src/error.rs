//! The crate's error type.

/// Result alias for this crate.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;

/// Errors of `keyledger-crypto`. No message ever contains secret bytes (key material, data
/// keys, plaintext or the root key); root key ids, which reveal nothing, may appear.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A ciphertext blob is malformed, truncated, of an unknown version, was tampered with, or
    /// was presented with the wrong encryption context or material. Deliberately carries no
    /// detail (no decryption oracle); maps to AWS `InvalidCiphertextException` with an empty
    /// message (AWS KMS API reference, Decrypt).
    #[error("invalid ciphertext")]
    InvalidCiphertext,

    /// Wrapped key material names a root key other than the one loaded.
    #[error(
        "key material was wrapped by root key {} but the loaded root key is {}",
        hex::encode(wrapped_by),
        hex::encode(loaded)
    )]
    WrongRootKey {
        /// Root key id (16 bytes) recorded in the wrapped bytes.
        wrapped_by: [u8; 16],
        /// Id of the root key that tried to unwrap.
        loaded: [u8; 16],
    },

    /// Wrapped key material is malformed, was tampered with, or was presented with AAD (account,
    /// key id or version) other than the one it was wrapped with. No further detail.
    #[error("wrapped key material failed to unwrap (malformed, tampered or wrong binding)")]
    UnwrapFailed,

    /// Key material unwrapped correctly but its commitment differs from the one the log holds.
    #[error("unwrapped key material does not match its logged material id")]
    MaterialIdMismatch,

    /// The root key file or descriptor could not be used (path, mode or format problem). The
    /// message names the problem, never the file's contents.
    #[error("root key: {0}")]
    RootKeyFile(String),

    /// An envelope file is malformed, truncated, tampered with, or its parameters are out of
    /// bounds. The message names the problem, never plaintext or key bytes.
    #[error("envelope: {0}")]
    Envelope(String),

    /// Encrypted key material (AWS ImportKeyMaterial `EncryptedKeyMaterial`) could not be
    /// unwrapped with the import wrapping key: wrong length, RSA-OAEP decoding failure, AES key
    /// wrap integrity failure, empty result, or the wrong wrapping algorithm or key. One variant
    /// with a fixed message for every cause, so a failed import reveals nothing about which step
    /// failed (no padding oracle). Maps to AWS `InvalidCiphertextException` (AWS KMS API
    /// reference, ImportKeyMaterial).
    #[error("the encrypted key material could not be unwrapped with the wrapping key")]
    ImportUnwrap,

    /// An import token (AWS GetParametersForImport `ImportToken`) is malformed, of an unknown
    /// version, forged or altered, made under another root key, or made for another account or
    /// KMS key. No further detail. Maps to AWS `InvalidImportTokenException`. Expiry is not
    /// checked here (see [`RootKey::verify_import_token`](crate::RootKey::verify_import_token)).
    #[error("invalid import token")]
    InvalidImportToken,

    /// A grant token (AWS `GrantToken`) is malformed, of an unknown version, altered, forged or
    /// made under another root key. No further detail. Maps to AWS
    /// `InvalidGrantTokenException`.
    #[error("invalid grant token")]
    InvalidGrantToken,

    /// Import parameters could not be used: a public key that is not an RSA
    /// SubjectPublicKeyInfo of a supported size, a private key that is not an RSA PKCS#8 key of a
    /// supported size, or key material that is empty or too long for the wrapping algorithm. The
    /// message names the problem, never key or material bytes.
    #[error("import parameters: {0}")]
    ImportParameters(String),

    /// Key material of the wrong length (symmetric key material is exactly
    /// [`KEY_MATERIAL_LEN`](crate::KEY_MATERIAL_LEN) bytes). Lengths are not secret.
    #[error("key material must be {expected} bytes, got {actual}")]
    InvalidKeyMaterialLength {
        /// The required length in bytes.
        expected: usize,
        /// The length given.
        actual: usize,
    },

    /// Process hardening (`prctl`, `setrlimit`) failed.
    #[error("process hardening failed: {0}")]
    Harden(String),

    /// An I/O error from a caller-supplied reader or writer, or from the root key file.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
