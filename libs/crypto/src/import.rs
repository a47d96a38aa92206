//! Imported key material: the RSA wrapping keys of AWS `GetParametersForImport`, unwrapping of
//! `ImportKeyMaterial`'s `EncryptedKeyMaterial`, the customer-side wrapping, and the types the
//! root key uses to store wrapping keys and to make and check import tokens.
//!
//! The flow (AWS KMS Developer Guide, "Importing key material"; AWS KMS API reference,
//! GetParametersForImport and ImportKeyMaterial):
//!
//! 1. The service makes an [`ImportWrappingKey`] of the requested [`WrappingKeySpec`], stores
//!    it wrapped under the root key ([`RootKey::wrap_import_key`]), and answers with its public
//!    key ([`ImportWrappingKey::public_key_der`], AWS `PublicKey`) and an import token
//!    ([`RootKey::import_token`], AWS `ImportToken`), both valid for 24 hours.
//! 2. The customer wraps the material with the public key and the chosen
//!    [`WrappingAlgorithm`] ([`wrap_for_import`] does what the AWS documentation shows them
//!    doing with OpenSSL).
//! 3. `ImportKeyMaterial` checks the token ([`RootKey::verify_import_token`]), the caller checks
//!    its expiry, unwraps the stored wrapping key ([`RootKey::unwrap_import_key`]) and the
//!    material ([`ImportWrappingKey::unwrap_material`]).
//!
//! # Wrapping algorithms
//!
//! - `RSAES_OAEP_SHA_1`, `RSAES_OAEP_SHA_256`: `EncryptedKeyMaterial` is RSAES-OAEP (RFC 8017
//!   §7.1) of the material, with SHA-1 or SHA-256 both as the OAEP hash and as the MGF1 hash,
//!   and the empty label. Exactly one modulus length (256, 384 or 512 bytes) long.
//! - `RSA_AES_KEY_WRAP_SHA_1`, `RSA_AES_KEY_WRAP_SHA_256` (PKCS#11 v2.40 `CKM_RSA_AES_KEY_WRAP`,
//!   as the AWS documentation describes it): the customer draws an ephemeral 256-bit AES key;
//!   `EncryptedKeyMaterial` is `RSAES-OAEP(hash, AES key)` (one modulus length) followed by
//!   `AES-KWP(AES key, material)`, AES Key Wrap with Padding (RFC 5649; NIST SP 800-38F §6.3
//!   KWP), which is 8 bytes plus the material rounded up to a multiple of 8 bytes.
//!
//! # RUSTSEC-2023-0071 (Marvin attack) and what the caller must do
//!
//! The `rsa` crate 0.9 decrypts with big-integer arithmetic that does not run in constant time
//! (advisory RUSTSEC-2023-0071, "Marvin Attack: potential key recovery through timing
//! sidechannels"; no fixed release of the 0.9 line exists). Someone who can make the service
//! decrypt many chosen ciphertexts with one wrapping key and time the answers precisely may, over
//! a very large number of attempts (the published attacks need from many thousands to millions of
//! oracle queries), learn enough to decrypt one RSA ciphertext of their choice under that key,
//! here: an `EncryptedKeyMaterial` captured in transit for the same wrapping key, and so the
//! customer's key material. Decryption here is blinded (random blinding from the OS generator),
//! which removes the classic timing leak of the private exponent but does not make the code
//! constant time; every failure returns the same [`CryptoError::ImportUnwrap`], so there is no
//! padding oracle in the answer itself, only possibly in its timing.
//!
//! Mitigation the caller applies, which bounds the oracle to a handful of queries per key:
//! - count failed [`ImportWrappingKey::unwrap_material`] calls per import token / wrapping key
//!   and, after a few (say 3), burn the token: delete the wrapped wrapping key so that no
//!   further ciphertext is ever decrypted with it, and make the customer call
//!   `GetParametersForImport` again (a fresh key pair);
//! - delete the wrapped wrapping key when the token expires (24 hours), and do not reuse a
//!   wrapping key across KMS keys (each token is bound to one key id);
//! - keep ordinary request rate limits on `ImportKeyMaterial`, and do not log or return timing
//!   detail of the unwrap.
//!
//! A wrapping key only ever protects material in transit for one import, so bounding the number
//! of decryptions per key leaves an attacker far below what the attack needs.

use std::fmt;

use aes_kw::{KeyInit, KwpAes256};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::Digest;
use zeroize::Zeroizing;

#[cfg(doc)]
use crate::RootKey;
use crate::{fill_random, CryptoError, Result};

/// Fixed label that starts the canonical AAD of a wrapped import wrapping key.
pub const IMPORT_KEY_AAD_LABEL: &str = "keyledger import key aad v1";
/// Purpose string that ends the canonical AAD of a wrapped import wrapping key.
pub const IMPORT_KEY_PURPOSE: &str = "import-wrapping-key";
/// Format version byte of a wrapped import wrapping key ([`RootKey::wrap_import_key`]).
pub const WRAPPED_IMPORT_KEY_VERSION: u8 = 1;
/// Fixed label that starts the input of an import token's tag.
pub const IMPORT_TOKEN_LABEL: &str = "keyledger import token v1";
/// Format version byte of an import token.
pub const IMPORT_TOKEN_VERSION: u8 = 1;
/// Length of an import token's tag in bytes (a BLAKE3 keyed hash).
pub const IMPORT_TOKEN_TAG_LEN: usize = 32;
/// Length in bytes of the part of an import token the tag covers directly:
/// 1 + 16 + 8 + 2 + 2 + 32 = 61.
pub const IMPORT_TOKEN_BODY_LEN: usize = 1 + 16 + 8 + 2 + 2 + 32;
/// Length in bytes of an import token, format v1: 61 + 32 = 93.
pub const IMPORT_TOKEN_LEN: usize = IMPORT_TOKEN_BODY_LEN + IMPORT_TOKEN_TAG_LEN;
/// Length in bytes of the ephemeral AES key of `RSA_AES_KEY_WRAP_*` (AES-256; AWS KMS Developer
/// Guide, "Encrypt key material": "a 256-bit AES symmetric encryption key").
pub const IMPORT_AES_KEY_LEN: usize = 32;

/// AWS `WrappingKeySpec`: the size of the RSA wrapping key (AWS KMS API reference,
/// GetParametersForImport). The SM2 spec (China Regions only) is not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrappingKeySpec {
    /// `RSA_2048`: 2048-bit modulus (256 bytes).
    Rsa2048,
    /// `RSA_3072`: 3072-bit modulus (384 bytes).
    Rsa3072,
    /// `RSA_4096`: 4096-bit modulus (512 bytes).
    Rsa4096,
}

impl WrappingKeySpec {
    /// Every spec, in declaration (and code) order.
    pub const ALL: [WrappingKeySpec; 3] =
        [WrappingKeySpec::Rsa2048, WrappingKeySpec::Rsa3072, WrappingKeySpec::Rsa4096];

    /// The AWS wire name: `"RSA_2048"`, `"RSA_3072"` or `"RSA_4096"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            WrappingKeySpec::Rsa2048 => "RSA_2048",
            WrappingKeySpec::Rsa3072 => "RSA_3072",
            WrappingKeySpec::Rsa4096 => "RSA_4096",
        }
    }

    /// The spec with AWS wire name `name` (exact, case-sensitive match), or `None`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Stable nonzero code stored in events and import tokens: `RSA_2048` = 1, `RSA_3072` = 2,
    /// `RSA_4096` = 3. Never renumbered.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            WrappingKeySpec::Rsa2048 => 1,
            WrappingKeySpec::Rsa3072 => 2,
            WrappingKeySpec::Rsa4096 => 3,
        }
    }

    /// The spec with [`code`](Self::code) `code`, or `None` (0 and unknown codes).
    #[must_use]
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Modulus size in bits: 2048, 3072 or 4096.
    #[must_use]
    pub fn modulus_bits(self) -> usize {
        match self {
            WrappingKeySpec::Rsa2048 => 2048,
            WrappingKeySpec::Rsa3072 => 3072,
            WrappingKeySpec::Rsa4096 => 4096,
        }
    }

    /// Modulus size in bytes, which is also the length of one RSA ciphertext: 256, 384 or 512.
    #[must_use]
    pub fn modulus_len(self) -> usize {
        self.modulus_bits() / 8
    }

    /// The spec whose modulus is `len` bytes long, or `None`.
    fn from_modulus_len(len: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.modulus_len() == len)
    }
}

/// AWS `WrappingAlgorithm` (AWS KMS API reference, GetParametersForImport). `RSAES_PKCS1_V1_5`
/// (refused by AWS since 2023-10-10) and `SM2PKE` (China Regions) are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrappingAlgorithm {
    /// `RSAES_OAEP_SHA_1`: RSA-OAEP, SHA-1 for OAEP and MGF1, empty label.
    RsaesOaepSha1,
    /// `RSAES_OAEP_SHA_256`: RSA-OAEP, SHA-256 for OAEP and MGF1, empty label.
    RsaesOaepSha256,
    /// `RSA_AES_KEY_WRAP_SHA_1`: RSA-OAEP (SHA-1) of an AES-256 key, then AES-KWP of the material.
    RsaAesKeyWrapSha1,
    /// `RSA_AES_KEY_WRAP_SHA_256`: RSA-OAEP (SHA-256) of an AES-256 key, then AES-KWP of the
    /// material.
    RsaAesKeyWrapSha256,
}

/// The hash of RSA-OAEP (used for both the label hash and MGF1).
#[derive(Clone, Copy)]
enum OaepHash {
    Sha1,
    Sha256,
}

impl OaepHash {
    fn padding(self) -> Oaep {
        match self {
            OaepHash::Sha1 => Oaep::new::<sha1::Sha1>(),
            OaepHash::Sha256 => Oaep::new::<sha2::Sha256>(),
        }
    }

    /// Digest output length in bytes (hLen of RFC 8017).
    fn len(self) -> usize {
        match self {
            OaepHash::Sha1 => 20,
            OaepHash::Sha256 => 32,
        }
    }
}

impl WrappingAlgorithm {
    /// Every algorithm, in declaration (and code) order.
    pub const ALL: [WrappingAlgorithm; 4] = [
        WrappingAlgorithm::RsaesOaepSha1,
        WrappingAlgorithm::RsaesOaepSha256,
        WrappingAlgorithm::RsaAesKeyWrapSha1,
        WrappingAlgorithm::RsaAesKeyWrapSha256,
    ];

    /// The AWS wire name: `"RSAES_OAEP_SHA_1"`, `"RSAES_OAEP_SHA_256"`,
    /// `"RSA_AES_KEY_WRAP_SHA_1"` or `"RSA_AES_KEY_WRAP_SHA_256"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            WrappingAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::RsaAesKeyWrapSha1 => "RSA_AES_KEY_WRAP_SHA_1",
            WrappingAlgorithm::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
        }
    }

    /// The algorithm with AWS wire name `name` (exact, case-sensitive match), or `None`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Stable nonzero code stored in events and import tokens: `RSAES_OAEP_SHA_1` = 1,
    /// `RSAES_OAEP_SHA_256` = 2, `RSA_AES_KEY_WRAP_SHA_1` = 3, `RSA_AES_KEY_WRAP_SHA_256` = 4.
    /// Never renumbered.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 => 1,
            WrappingAlgorithm::RsaesOaepSha256 => 2,
            WrappingAlgorithm::RsaAesKeyWrapSha1 => 3,
            WrappingAlgorithm::RsaAesKeyWrapSha256 => 4,
        }
    }

    /// The algorithm with [`code`](Self::code) `code`, or `None` (0 and unknown codes).
    #[must_use]
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == code)
    }

    /// Whether this is one of the `RSA_AES_KEY_WRAP_*` algorithms (ephemeral AES key + KWP).
    #[must_use]
    pub fn uses_aes_key_wrap(self) -> bool {
        matches!(self, WrappingAlgorithm::RsaAesKeyWrapSha1 | WrappingAlgorithm::RsaAesKeyWrapSha256)
    }

    fn oaep_hash(self) -> OaepHash {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => OaepHash::Sha1,
            WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => OaepHash::Sha256,
        }
    }
}

/// The SHA-256 digest (32 bytes) of DER bytes: the public-key fingerprint of this module.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// An RSA wrapping key pair of AWS `GetParametersForImport`: the customer encrypts key material
/// to its public key, the service decrypts with its private key.
///
/// The private key is zeroized on drop (the `rsa` crate zeroizes its big integers). `Debug`
/// prints only the spec and the public key's SHA-256 fingerprint ([`Self::public_key_digest`]).
pub struct ImportWrappingKey {
    key: RsaPrivateKey,
    spec: WrappingKeySpec,
    public_key_der: Vec<u8>,
}

impl ImportWrappingKey {
    /// A fresh key pair of `spec`, public exponent 65537, primes drawn from the operating
    /// system's CSPRNG (`rand` 0.8 `OsRng`). Slow: tens of milliseconds for `RSA_2048`, up to
    /// several seconds for `RSA_4096`; run it off the async executor.
    ///
    /// # Panics
    /// If the OS random number generator fails.
    #[must_use]
    pub fn generate(spec: WrappingKeySpec) -> Self {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, spec.modulus_bits())
            .expect("RSA key generation fails only if the OS random number generator does");
        Self::from_key(key).expect("a generated key has the requested modulus size")
    }

    fn from_key(key: RsaPrivateKey) -> Result<Self> {
        let spec = WrappingKeySpec::from_modulus_len(key.size()).ok_or_else(|| {
            CryptoError::ImportParameters(format!(
                "an RSA key of {} bits is not a supported wrapping key size (2048, 3072 or 4096)",
                key.n().bits()
            ))
        })?;
        let public_key_der = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|_| CryptoError::ImportParameters("the RSA public key cannot be DER-encoded".to_owned()))?
            .into_vec();
        Ok(ImportWrappingKey { key, spec, public_key_der })
    }

    /// The key's spec, from its modulus size.
    #[must_use]
    pub fn spec(&self) -> WrappingKeySpec {
        self.spec
    }

    /// The public key as a DER-encoded X.509 `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7, RSA
    /// algorithm identifier `rsaEncryption` of RFC 8017 Appendix C): what AWS returns as
    /// GetParametersForImport `PublicKey` (base64 on the wire). About 294, 422 or 550 bytes.
    #[must_use]
    pub fn public_key_der(&self) -> Vec<u8> {
        self.public_key_der.clone()
    }

    /// SHA-256 (FIPS 180-4) of [`Self::public_key_der`], 32 bytes: the fingerprint recorded in
    /// import tokens ([`ImportTokenFields::public_key_digest`]) and printed by `Debug`.
    #[must_use]
    pub fn public_key_digest(&self) -> [u8; 32] {
        sha256(&self.public_key_der)
    }

    /// The private key as DER PKCS#8 `PrivateKeyInfo` (RFC 5208 §5, RSA key of RFC 8017
    /// Appendix A.1.2), in a zeroizing buffer. For storage wrapped under the root key
    /// ([`RootKey::wrap_import_key`] does this) and for tests; never store it in the clear.
    ///
    /// # Panics
    /// Never for a key of this type (two-prime RSA keys always encode).
    #[must_use]
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let doc = self.key.to_pkcs8_der().expect("a two-prime RSA key always encodes as PKCS#8");
        Zeroizing::new(doc.as_bytes().to_vec())
    }

    /// A key from DER PKCS#8 `PrivateKeyInfo` bytes (as [`Self::to_pkcs8_der`] writes them). The
    /// key is checked for consistency (`rsa` crate validation of n, e, d and the primes).
    ///
    /// # Errors
    /// [`CryptoError::ImportParameters`] if the bytes are not a two-prime RSA PKCS#8 private
    /// key, or its modulus is not 2048, 3072 or 4096 bits. The message never holds key bytes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|_| CryptoError::ImportParameters("not a DER PKCS#8 RSA private key".to_owned()))?;
        Self::from_key(key)
    }

    /// Unwraps AWS ImportKeyMaterial `EncryptedKeyMaterial` made with `algorithm` (see the
    /// module documentation for both layouts) and returns the key material, of whatever length
    /// was wrapped, in a zeroizing buffer. The caller checks the length the key spec requires
    /// (for symmetric keys, [`KeyMaterial::from_slice`](crate::KeyMaterial::from_slice)).
    ///
    /// RSA decryption is blinded with randomness from the OS generator; read the module
    /// documentation on RUSTSEC-2023-0071 for the limit the caller must put on failed calls.
    ///
    /// # Errors
    /// [`CryptoError::ImportUnwrap`], always the same, if `encrypted` has the wrong length
    /// (`RSAES_OAEP_*`: exactly one modulus length; `RSA_AES_KEY_WRAP_*`: one modulus length
    /// plus at least 16 bytes, a multiple of 8), OAEP decoding fails (wrong key, wrong hash,
    /// altered bytes), the OAEP-decrypted AES key is not 32 bytes, the RFC 5649 integrity check
    /// fails, or the result is empty.
    ///
    /// # Panics
    /// If the OS random number generator fails.
    pub fn unwrap_material(&self, algorithm: WrappingAlgorithm, encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let k = self.spec.modulus_len();
        let hash = algorithm.oaep_hash();
        let material = if algorithm.uses_aes_key_wrap() {
            if encrypted.len() < k + 16 || !(encrypted.len() - k).is_multiple_of(8) {
                return Err(CryptoError::ImportUnwrap);
            }
            let (rsa_part, kwp_part) = encrypted.split_at(k);
            let aes_key = self.oaep_decrypt(hash, rsa_part)?;
            if aes_key.len() != IMPORT_AES_KEY_LEN {
                return Err(CryptoError::ImportUnwrap);
            }
            let kwp = KwpAes256::new_from_slice(&aes_key).map_err(|_| CryptoError::ImportUnwrap)?;
            let mut out = Zeroizing::new(vec![0u8; kwp_part.len() - 8]);
            let len = kwp.unwrap_key(kwp_part, &mut out).map_err(|_| CryptoError::ImportUnwrap)?.len();
            out.truncate(len);
            out
        } else {
            if encrypted.len() != k {
                return Err(CryptoError::ImportUnwrap);
            }
            self.oaep_decrypt(hash, encrypted)?
        };
        if material.is_empty() {
            return Err(CryptoError::ImportUnwrap);
        }
        Ok(material)
    }

    fn oaep_decrypt(&self, hash: OaepHash, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        self.key
            .decrypt_blinded(&mut rand::rngs::OsRng, hash.padding(), ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::ImportUnwrap)
    }
}

impl fmt::Debug for ImportWrappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ImportWrappingKey(spec={}, public_key_sha256={}, <private key redacted>)",
            self.spec.as_str(),
            hex::encode(self.public_key_digest())
        )
    }
}

/// The customer's side of an import (AWS KMS Developer Guide, "Encrypt key material"), for
/// users, the CLI and tests: wraps `material` for the public key `public_key_der` (DER X.509
/// `SubjectPublicKeyInfo`, GetParametersForImport `PublicKey`) with `algorithm`, giving the
/// bytes to send as ImportKeyMaterial `EncryptedKeyMaterial`.
///
/// - `RSAES_OAEP_*`: RSA-OAEP of the material (RFC 8017 §7.1.1, empty label, one hash for OAEP
///   and MGF1). The material is at most `k − 2·hLen − 2` bytes (k = modulus bytes, hLen = 20
///   for SHA-1, 32 for SHA-256): 214 / 190 bytes for `RSA_2048`.
/// - `RSA_AES_KEY_WRAP_*`: a fresh 32-byte AES key from the OS generator; output is
///   `RSA-OAEP(AES key) ‖ AES-KWP(AES key, material)` (RFC 5649), the equivalent of AWS's
///   `openssl enc -id-aes256-wrap-pad -iv A65959A6` then `openssl pkeyutl -encrypt` commands.
///   The AES key is zeroized after use.
///
/// # Errors
/// [`CryptoError::ImportParameters`] if the public key is not an RSA `SubjectPublicKeyInfo` of
/// 2048, 3072 or 4096 bits, or the material is empty or too long for `algorithm`.
///
/// # Panics
/// If the OS random number generator fails.
pub fn wrap_for_import(public_key_der: &[u8], algorithm: WrappingAlgorithm, material: &[u8]) -> Result<Vec<u8>> {
    let public = RsaPublicKey::from_public_key_der(public_key_der).map_err(|_| {
        CryptoError::ImportParameters("the public key is not a DER SubjectPublicKeyInfo RSA key".to_owned())
    })?;
    let k = public.size();
    if WrappingKeySpec::from_modulus_len(k).is_none() {
        return Err(CryptoError::ImportParameters(format!(
            "an RSA key of {} bits is not a supported wrapping key size (2048, 3072 or 4096)",
            public.n().bits()
        )));
    }
    if material.is_empty() {
        return Err(CryptoError::ImportParameters("the key material is empty".to_owned()));
    }
    let hash = algorithm.oaep_hash();
    let oaep_max = k - 2 * hash.len() - 2;
    let oaep = |plaintext: &[u8]| {
        public
            .encrypt(&mut rand::rngs::OsRng, hash.padding(), plaintext)
            .map_err(|e| CryptoError::ImportParameters(format!("RSA-OAEP encryption failed: {e}")))
    };
    if !algorithm.uses_aes_key_wrap() {
        if material.len() > oaep_max {
            return Err(CryptoError::ImportParameters(format!(
                "{} bytes of key material are too long for {} with a {}-bit key (at most {oaep_max} bytes)",
                material.len(),
                algorithm.as_str(),
                k * 8
            )));
        }
        return oaep(material);
    }
    // RFC 5649 carries the length in 32 bits.
    if u32::try_from(material.len()).is_err() {
        return Err(CryptoError::ImportParameters("the key material is longer than 2^32 - 1 bytes".to_owned()));
    }
    let mut aes_key = Zeroizing::new([0u8; IMPORT_AES_KEY_LEN]);
    fill_random(aes_key.as_mut());
    let kwp = KwpAes256::new_from_slice(aes_key.as_ref()).expect("a 32-byte key is an AES-256 key");
    let mut out = oaep(aes_key.as_ref())?;
    let rsa_len = out.len();
    out.resize(rsa_len + material.len().div_ceil(8) * 8 + 8, 0);
    kwp.wrap_key(material, &mut out[rsa_len..]).expect("the output buffer has the RFC 5649 length");
    Ok(out)
}

/// What a wrapped import wrapping key is bound to: the AAD of [`RootKey::wrap_import_key`] and
/// [`RootKey::unwrap_import_key`]. Wrapped bytes copied to another account, key or token fail to
/// unwrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportKeyAad<'a> {
    /// The owning account (tenant), as named in the event subjects.
    pub account: &'a str,
    /// The KMS key id (16 bytes, the UUID's bytes) the import parameters were made for.
    pub key_id: [u8; 16],
    /// The import token's id ([`ImportTokenFields::token_id`]).
    pub token_id: [u8; 16],
}

impl ImportKeyAad<'_> {
    /// The canonical AAD bytes (all integers big-endian), built like
    /// [`MaterialAad::canonical_bytes`](crate::MaterialAad::canonical_bytes):
    ///
    /// ```text
    /// "keyledger import key aad v1"   27 bytes, fixed label
    /// root key id                     16 bytes
    /// u32 account length ‖ account    UTF-8
    /// key id                          16 bytes
    /// token id                        16 bytes
    /// u32 purpose length ‖ "import-wrapping-key"
    /// ```
    ///
    /// # Panics
    /// If the account name is longer than 4 GiB − 1 bytes.
    #[must_use]
    pub fn canonical_bytes(&self, root_key_id: &[u8; 16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            IMPORT_KEY_AAD_LABEL.len() + 16 + 4 + self.account.len() + 16 + 16 + 4 + IMPORT_KEY_PURPOSE.len(),
        );
        out.extend_from_slice(IMPORT_KEY_AAD_LABEL.as_bytes());
        out.extend_from_slice(root_key_id);
        let account_len = u32::try_from(self.account.len()).expect("account name too long");
        out.extend_from_slice(&account_len.to_be_bytes());
        out.extend_from_slice(self.account.as_bytes());
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.token_id);
        #[allow(clippy::cast_possible_truncation)] // a 19-byte constant
        out.extend_from_slice(&(IMPORT_KEY_PURPOSE.len() as u32).to_be_bytes());
        out.extend_from_slice(IMPORT_KEY_PURPOSE.as_bytes());
        out
    }
}

/// The contents of an AWS `ImportToken` ([`RootKey::import_token`]). Not secret: the token is
/// authenticated, not encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportTokenFields {
    /// The owning account. Bound by the tag, not carried in the token.
    pub account: String,
    /// The KMS key id (16 bytes) the parameters are for. Bound by the tag, not carried.
    pub key_id: [u8; 16],
    /// Random id of this token (16 bytes), also the [`ImportKeyAad::token_id`] under which its
    /// wrapping key is stored, so the caller can find that key.
    pub token_id: [u8; 16],
    /// Spec of the wrapping key the token belongs to.
    pub wrapping_key_spec: WrappingKeySpec,
    /// The wrapping algorithm the customer chose in GetParametersForImport.
    pub wrapping_algorithm: WrappingAlgorithm,
    /// SHA-256 of the wrapping key's DER `SubjectPublicKeyInfo`
    /// ([`ImportWrappingKey::public_key_digest`]), so the caller can check that the wrapping
    /// key it loaded is the token's.
    pub public_key_digest: [u8; 32],
    /// End of validity, milliseconds since the Unix epoch (AWS `ParametersValidTo`, 24 hours
    /// after issue).
    pub valid_to_unix_ms: u64,
}

impl ImportTokenFields {
    /// The 61 token bytes the tag follows: version ‖ token id ‖ valid_to (u64 BE) ‖ spec code
    /// (u16 BE) ‖ algorithm code (u16 BE) ‖ public key digest.
    pub(crate) fn body(&self) -> [u8; IMPORT_TOKEN_BODY_LEN] {
        let mut out = [0u8; IMPORT_TOKEN_BODY_LEN];
        out[0] = IMPORT_TOKEN_VERSION;
        out[1..17].copy_from_slice(&self.token_id);
        out[17..25].copy_from_slice(&self.valid_to_unix_ms.to_be_bytes());
        out[25..27].copy_from_slice(&self.wrapping_key_spec.code().to_be_bytes());
        out[27..29].copy_from_slice(&self.wrapping_algorithm.code().to_be_bytes());
        out[29..61].copy_from_slice(&self.public_key_digest);
        out
    }

    /// The input of the token's tag: every field, the ones not carried in the token too.
    ///
    /// ```text
    /// "keyledger import token v1"     25 bytes, fixed label
    /// u32 account length ‖ account    UTF-8
    /// key id                          16 bytes
    /// body                            61 bytes (see RootKey::import_token)
    /// ```
    pub(crate) fn mac_input(account: &str, key_id: &[u8; 16], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(IMPORT_TOKEN_LABEL.len() + 4 + account.len() + 16 + body.len());
        out.extend_from_slice(IMPORT_TOKEN_LABEL.as_bytes());
        let account_len = u32::try_from(account.len()).expect("account name too long");
        out.extend_from_slice(&account_len.to_be_bytes());
        out.extend_from_slice(account.as_bytes());
        out.extend_from_slice(key_id);
        out.extend_from_slice(body);
        out
    }

    /// Decodes a 61-byte body whose tag has been verified. `None` for an unknown version or code.
    pub(crate) fn from_body(account: &str, key_id: [u8; 16], body: &[u8]) -> Option<Self> {
        if body.len() != IMPORT_TOKEN_BODY_LEN || body[0] != IMPORT_TOKEN_VERSION {
            return None;
        }
        let spec = WrappingKeySpec::from_code(u16::from_be_bytes([body[25], body[26]]))?;
        let algorithm = WrappingAlgorithm::from_code(u16::from_be_bytes([body[27], body[28]]))?;
        Some(ImportTokenFields {
            account: account.to_owned(),
            key_id,
            token_id: body[1..17].try_into().ok()?,
            wrapping_key_spec: spec,
            wrapping_algorithm: algorithm,
            public_key_digest: body[29..61].try_into().ok()?,
            valid_to_unix_ms: u64::from_be_bytes(body[17..25].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5649 §6 test vectors (192-bit KEK): the `aes-kw` KWP matches the RFC byte for byte.
    #[test]
    fn kwp_matches_rfc_5649_section_6() {
        let kek = hex::decode("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8").unwrap();
        let kwp = aes_kw::KwpAes192::new_from_slice(&kek).unwrap();
        for (key, wrapped) in [
            (
                "c37b7e6492584340bed12207808941155068f738",
                "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a",
            ),
            ("466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"),
        ] {
            let key = hex::decode(key).unwrap();
            let mut out = vec![0u8; key.len().div_ceil(8) * 8 + 8];
            assert_eq!(hex::encode(kwp.wrap_key(&key, &mut out).unwrap()), wrapped);
            let wrapped = hex::decode(wrapped).unwrap();
            let mut back = vec![0u8; wrapped.len() - 8];
            assert_eq!(kwp.unwrap_key(&wrapped, &mut back).unwrap(), &key[..]);
        }
    }

    #[test]
    fn codes_and_names_round_trip() {
        for (i, s) in WrappingKeySpec::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(s.code()), i + 1);
            assert_eq!(WrappingKeySpec::from_code(s.code()), Some(s));
            assert_eq!(WrappingKeySpec::parse(s.as_str()), Some(s));
        }
        for (i, a) in WrappingAlgorithm::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(a.code()), i + 1);
            assert_eq!(WrappingAlgorithm::from_code(a.code()), Some(a));
            assert_eq!(WrappingAlgorithm::parse(a.as_str()), Some(a));
        }
        assert_eq!(WrappingKeySpec::from_code(0), None);
        assert_eq!(WrappingAlgorithm::from_code(5), None);
        assert_eq!(WrappingKeySpec::parse("rsa_2048"), None);
        assert_eq!(WrappingAlgorithm::parse("RSAES_PKCS1_V1_5"), None);
    }
}
