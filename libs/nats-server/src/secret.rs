//! [`Password`]: a NATS user password that is zeroized on drop and never printed by `Debug`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Number of random bytes in a generated password (rendered as 64 lowercase hex characters).
pub const GENERATED_PASSWORD_BYTES: usize = 32;

/// A NATS user password.
///
/// The text is held in a [`Zeroizing`] buffer (wiped on drop). `Debug` prints `Password(***)`;
/// the only ways to read it are [`Password::expose`] and serialization (which `connection.json`
/// needs; those files are written with mode 0600).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps an existing password.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Zeroizing::new(text.into()))
    }

    /// A fresh password: [`GENERATED_PASSWORD_BYTES`] bytes from the OS CSPRNG as lowercase hex,
    /// so it needs no quoting in a server config.
    ///
    /// # Panics
    /// If the operating system's random source fails (`getrandom`), which leaves no safe way on.
    pub fn generate() -> Self {
        let mut raw = Zeroizing::new([0u8; GENERATED_PASSWORD_BYTES]);
        getrandom::getrandom(raw.as_mut()).expect("the OS random source failed");
        Self(Zeroizing::new(hex::encode(raw.as_ref())))
    }

    /// The password text. Do not log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Serialize for Password {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let p = Password::new("hunter2-secret");
        assert_eq!(format!("{p:?}"), "Password(***)");
    }

    #[test]
    fn generated_passwords_are_64_hex_chars_and_differ() {
        let a = Password::generate();
        let b = Password::generate();
        assert_eq!(a.expose().len(), 2 * GENERATED_PASSWORD_BYTES);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
