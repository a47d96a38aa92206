//! Secret byte containers: zeroized on drop, never printed.

use std::fmt;

use zeroize::Zeroizing;

use crate::{fill_random, CryptoError, Result};

/// Length of a symmetric key material version in bytes (AWS `SYMMETRIC_DEFAULT` keys are
/// 256-bit; AWS KMS API reference, ImportKeyMaterial: "symmetric = 32 raw bytes").
pub const KEY_MATERIAL_LEN: usize = 32;

/// One version of a KMS key's symmetric key material: 32 secret bytes.
///
/// Zeroized on drop; `Debug` prints `KeyMaterial(<redacted>)`. Cloning copies the secret into a
/// second zeroizing buffer.
#[derive(Clone)]
pub struct KeyMaterial(Zeroizing<[u8; KEY_MATERIAL_LEN]>);

impl KeyMaterial {
    /// Fresh material: 32 bytes from the operating system's CSPRNG.
    ///
    /// # Panics
    /// If the OS random number generator fails (see the crate documentation).
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_MATERIAL_LEN]);
        fill_random(bytes.as_mut());
        KeyMaterial(bytes)
    }

    /// Material from 32 given bytes (imported material, or material just unwrapped). The
    /// argument is moved into a zeroizing buffer; the caller should zeroize its own copies.
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_MATERIAL_LEN]) -> Self {
        KeyMaterial(Zeroizing::new(bytes))
    }

    /// Material from a slice that must be exactly [`KEY_MATERIAL_LEN`] (32) bytes long, such as
    /// the result of [`ImportWrappingKey::unwrap_material`](crate::ImportWrappingKey::unwrap_material)
    /// for a symmetric key (AWS KMS API reference, ImportKeyMaterial: symmetric key material is
    /// 256 bits). The bytes are copied into a zeroizing buffer; the caller should zeroize its own.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKeyMaterialLength`] if `bytes` is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != KEY_MATERIAL_LEN {
            return Err(CryptoError::InvalidKeyMaterialLength { expected: KEY_MATERIAL_LEN, actual: bytes.len() });
        }
        let mut material = Zeroizing::new([0u8; KEY_MATERIAL_LEN]);
        material.copy_from_slice(bytes);
        Ok(KeyMaterial(material))
    }

    /// The 32 secret bytes. Do not copy them out of zeroizing memory.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEY_MATERIAL_LEN] {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

/// Secret bytes of any length: a Decrypt result, a GenerateRandom result, the plaintext of an
/// Encrypt request.
///
/// Zeroized on drop; `Debug` prints only the length, as `Plaintext(<redacted, N bytes>)`.
#[derive(Clone, Default)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// Wraps bytes that are already secret. The vector is moved, not copied.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(bytes))
    }

    /// Takes over a zeroizing buffer without copying it.
    #[must_use]
    pub fn from_zeroizing(bytes: Zeroizing<Vec<u8>>) -> Self {
        Plaintext(bytes)
    }

    /// `len` bytes from the operating system's CSPRNG (AWS GenerateRandom, 1–1024 bytes; the
    /// bound is the caller's to enforce).
    ///
    /// # Panics
    /// If the OS random number generator fails.
    #[must_use]
    pub fn random(len: usize) -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        fill_random(&mut bytes);
        Plaintext(bytes)
    }

    /// The secret bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret: the ciphertext reveals it).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The zeroizing buffer, for callers that hand the bytes on (e.g. to base64-encode them into
    /// a zeroizing response buffer).
    #[must_use]
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl From<Vec<u8>> for Plaintext {
    fn from(bytes: Vec<u8>) -> Self {
        Plaintext::new(bytes)
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext(<redacted, {} bytes>)", self.0.len())
    }
}

/// A data key: the secret half of AWS GenerateDataKey (`Plaintext`, 1–1024 bytes; 16 for
/// `AES_128`, 32 for `AES_256`), and the key of an [`envelope`](crate::envelope) file.
///
/// Zeroized on drop; `Debug` prints only the length, as `DataKey(<redacted, N bytes>)`.
#[derive(Clone)]
pub struct DataKey(Zeroizing<Vec<u8>>);

impl DataKey {
    /// `len` fresh bytes from the operating system's CSPRNG (AWS GenerateDataKey
    /// `NumberOfBytes` 1–1024; the bound is the caller's to enforce).
    ///
    /// # Panics
    /// If the OS random number generator fails.
    #[must_use]
    pub fn generate(len: usize) -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        fill_random(&mut bytes);
        DataKey(bytes)
    }

    /// Wraps bytes that are already secret (e.g. a Decrypt result). The vector is moved.
    #[must_use]
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key has no bytes (never valid for use).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Plaintext> for DataKey {
    fn from(p: Plaintext) -> Self {
        DataKey(p.0)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(<redacted, {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_secret_bytes() {
        let m = KeyMaterial::from_bytes([0xAB; 32]);
        let p = Plaintext::new(b"canary-secret".to_vec());
        let d = DataKey::from_vec(vec![0xCD; 32]);
        for s in [format!("{m:?}"), format!("{p:?}"), format!("{d:?}")] {
            assert!(!s.to_lowercase().contains("abab"), "{s}");
            assert!(!s.to_lowercase().contains("cdcd"), "{s}");
            assert!(!s.contains("canary"), "{s}");
            assert!(s.contains("redacted"), "{s}");
        }
    }

    #[test]
    fn material_from_slice_takes_exactly_32_bytes() {
        let m = KeyMaterial::from_slice(&[9; 32]).unwrap();
        assert_eq!(m.as_bytes(), &[9; 32]);
        for len in [0, 16, 31, 33, 64] {
            match KeyMaterial::from_slice(&vec![1; len]) {
                Err(CryptoError::InvalidKeyMaterialLength { expected: 32, actual }) => assert_eq!(actual, len),
                other => panic!("{len} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn generated_material_is_fresh_each_time() {
        let a = KeyMaterial::generate();
        let b = KeyMaterial::generate();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), &[0u8; 32]);
        let d = DataKey::generate(1024);
        assert_eq!(d.len(), 1024);
        assert!(d.as_bytes().iter().any(|&b| b != 0));
        assert_eq!(Plaintext::random(7).len(), 7);
    }
}
