//! Secret bytes from requests (Plaintext): zeroized on drop, never printed.

use zeroize::Zeroizing;

/// Secret request bytes (`Plaintext` of Encrypt). The buffer is zeroized when dropped;
/// `Debug` shows only the length. Deliberately not `Clone`: every copy of a secret is a copy
/// to forget.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of an already zeroizing buffer.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Do not log, format or store them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Gives the zeroizing buffer to the caller.
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<redacted {} bytes>)", self.0.len())
    }
}
