//! The root key, the keys derived from it, and key-material wrapping.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use chacha20poly1305::{AeadInOut, XNonce};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::import::{
    ImportKeyAad, ImportTokenFields, ImportWrappingKey, IMPORT_TOKEN_BODY_LEN, IMPORT_TOKEN_LEN, IMPORT_TOKEN_VERSION,
    WRAPPED_IMPORT_KEY_VERSION,
};
use crate::secret::{KeyMaterial, KEY_MATERIAL_LEN};
use crate::{fill_random, xchacha, CryptoError, Result, TAG_LEN, XNONCE_LEN};

/// BLAKE3 `derive_key` context for the root key id.
const CTX_ROOT_KEY_ID: &str = "keyledger 2026-11-29 root key id v1";
/// BLAKE3 `derive_key` context for the key-material wrapping key.
const CTX_WRAPPING: &str = "keyledger 2026-11-29 key material wrapping v1";
/// BLAKE3 `derive_key` context for the key-material commitment (material id) key.
const CTX_COMMITMENT: &str = "keyledger 2026-11-29 key material commitment v1";
/// BLAKE3 `derive_key` context for the key that wraps import wrapping keys (RSA private keys).
const CTX_IMPORT_KEY_WRAPPING: &str = "keyledger 2026-11-29 import wrapping key wrapping v1";
/// BLAKE3 `derive_key` context for the import token tag key.
const CTX_IMPORT_TOKEN: &str = "keyledger 2026-11-29 import token v1";

/// Fixed label that starts the canonical AAD of wrapped key material.
pub const MATERIAL_AAD_LABEL: &str = "keyledger material aad v1";
/// Purpose string that ends the canonical AAD of wrapped key material.
pub const MATERIAL_PURPOSE: &str = "key-material";
/// Format version byte of [`WrappedMaterial`].
pub const WRAPPED_MATERIAL_VERSION: u8 = 1;
/// Length in bytes of wrapped key material, format v1: 1 + 16 + 24 + 32 + 16 = 89.
pub const WRAPPED_MATERIAL_LEN: usize = 1 + 16 + XNONCE_LEN + KEY_MATERIAL_LEN + TAG_LEN;

/// Length of the root key file's content: 64 hex characters and a newline.
const ROOT_FILE_LEN: usize = 65;

/// The service's root key: 32 secret bytes from which every key-wrapping key is derived.
///
/// Zeroized on drop (with every key derived from it); `Debug` shows only the public
/// [`id`](RootKey::id).
///
/// **Where it comes from.** A file of mode 0600 ([`RootKey::load`]) or, in production, a
/// descriptor inherited from the service manager ([`RootKey::load_from_fd`]). Never from an
/// environment variable: the environment is copied into every child process (the local
/// `nats-server` that `keyledger dev` starts, any helper), is readable through
/// `/proc/<pid>/environ` by the same user, and tends to end up in crash reports and
/// process listings.
///
/// **Derived keys.** Each purpose has its own key, `BLAKE3 derive_key(context, root)`:
/// - id: first 16 bytes of `derive_key("keyledger 2026-11-29 root key id v1", root)`;
/// - wrapping key: `derive_key("keyledger 2026-11-29 key material wrapping v1", root)`;
/// - commitment key: `derive_key("keyledger 2026-11-29 key material commitment v1", root)`;
/// - import wrapping key wrapping key:
///   `derive_key("keyledger 2026-11-29 import wrapping key wrapping v1", root)`;
/// - import token key: `derive_key("keyledger 2026-11-29 import token v1", root)`.
pub struct RootKey {
    id: [u8; 16],
    wrapping_key: Zeroizing<[u8; 32]>,
    commitment_key: Zeroizing<[u8; 32]>,
    import_key_wrapping_key: Zeroizing<[u8; 32]>,
    import_token_key: Zeroizing<[u8; 32]>,
    grant_token_key: Zeroizing<[u8; 32]>,
}

impl RootKey {
    /// A root key from 32 given bytes. The bytes themselves are not kept, only the keys
    /// derived from them; the caller should zeroize its copy.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = Zeroizing::new(bytes);
        let mut id_full = blake3::derive_key(CTX_ROOT_KEY_ID, bytes.as_ref());
        let mut id = [0u8; 16];
        id.copy_from_slice(&id_full[..16]);
        id_full.zeroize();
        let key = RootKey {
            id,
            wrapping_key: Zeroizing::new(blake3::derive_key(CTX_WRAPPING, bytes.as_ref())),
            commitment_key: Zeroizing::new(blake3::derive_key(CTX_COMMITMENT, bytes.as_ref())),
            import_key_wrapping_key: Zeroizing::new(blake3::derive_key(CTX_IMPORT_KEY_WRAPPING, bytes.as_ref())),
            import_token_key: Zeroizing::new(blake3::derive_key(CTX_IMPORT_TOKEN, bytes.as_ref())),
            grant_token_key: Zeroizing::new(blake3::derive_key(crate::grant_token::CTX_GRANT_TOKEN, bytes.as_ref())),
        };
        bytes.zeroize();
        key
    }

    /// A fresh root key: 32 bytes from the operating system's CSPRNG.
    ///
    /// # Panics
    /// If the OS random number generator fails.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        Self::from_bytes(*bytes)
    }

    /// Generates a root key and writes it to a **new** file at `path`: mode 0600, content
    /// 64 lowercase hex characters and `'\n'` (65 bytes), flushed to disk with `fsync`.
    ///
    /// # Errors
    /// [`CryptoError::RootKeyFile`] if the file already exists (it is never overwritten:
    /// `O_CREAT|O_EXCL`) or cannot be created or written; a partly written file is removed.
    pub fn create_file(path: &Path) -> Result<RootKey> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        let mut content = Zeroizing::new(hex::encode(bytes.as_ref()).into_bytes());
        content.push(b'\n');

        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| CryptoError::RootKeyFile(format!("cannot create {}: {e}", path.display())))?;
        let written = file.write_all(&content).and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(CryptoError::RootKeyFile(format!("cannot write {}: {e}", path.display())));
        }
        Ok(Self::from_bytes(*bytes))
    }

    /// Loads a root key file written by [`RootKey::create_file`]: exactly 64 hex characters,
    /// optionally followed by one `'\n'`.
    ///
    /// # Errors
    /// [`CryptoError::RootKeyFile`] if the file cannot be opened or read, is not a regular
    /// file, is readable or writable by group or others (`mode & 0o077 != 0`; fix with
    /// `chmod 600`), or its content has the wrong length or is not hex. Messages name the
    /// path and the problem, never the content.
    pub fn load(path: &Path) -> Result<RootKey> {
        let file =
            File::open(path).map_err(|e| CryptoError::RootKeyFile(format!("cannot open {}: {e}", path.display())))?;
        Self::read_from(file, &path.display().to_string(), true)
    }

    /// Loads the root key from an inherited file descriptor (the production way: the
    /// service manager or a wrapper opens the key and passes descriptor `fd`), reading it
    /// through `/proc/self/fd/<fd>`. The content format is the one of [`RootKey::load`]. If
    /// the descriptor is a regular file, the same mode check applies; a pipe or socket is
    /// accepted as is. Descriptors 1 and 2 (stdout, stderr) are refused.
    ///
    /// The descriptor is **closed** after reading, so that no child process (such as a local
    /// `nats-server`) inherits it. Reading works after [`harden_process`](crate::harden_process)
    /// too: a process may always open its own `/proc/self/fd` entries. Linux only.
    ///
    /// # Errors
    /// [`CryptoError::RootKeyFile`] as for [`RootKey::load`], or if `fd` is negative, 1 or 2,
    /// or not open.
    pub fn load_from_fd(fd: i32) -> Result<RootKey> {
        #[cfg(target_os = "linux")]
        {
            if fd < 0 || fd == 1 || fd == 2 {
                return Err(CryptoError::RootKeyFile(format!("descriptor {fd} cannot carry the root key")));
            }
            let name = format!("descriptor {fd}");
            let file = File::open(format!("/proc/self/fd/{fd}"))
                .map_err(|e| CryptoError::RootKeyFile(format!("cannot open {name}: {e}")))?;
            let key = Self::read_from(file, &name, false);
            // Close the inherited descriptor whatever the outcome, so no child inherits it.
            let closed = nix::unistd::close(fd);
            let key = key?;
            closed.map_err(|e| CryptoError::RootKeyFile(format!("cannot close {name}: {e}")))?;
            Ok(key)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = fd;
            Err(CryptoError::RootKeyFile("loading the root key from a descriptor needs Linux".to_owned()))
        }
    }

    fn read_from(file: File, name: &str, must_be_regular: bool) -> Result<RootKey> {
        let meta = file.metadata().map_err(|e| CryptoError::RootKeyFile(format!("cannot stat {name}: {e}")))?;
        if must_be_regular && !meta.is_file() {
            return Err(CryptoError::RootKeyFile(format!("{name} is not a regular file")));
        }
        #[cfg(unix)]
        if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(CryptoError::RootKeyFile(format!(
                    "{name} has mode {mode:04o}, which lets group or others access it; \
                     it must be 0600 or stricter (chmod 600)"
                )));
            }
        }
        // Read at most one byte more than a valid file holds, so a huge file or an endless
        // pipe cannot exhaust memory.
        let mut content = Zeroizing::new(Vec::with_capacity(ROOT_FILE_LEN + 1));
        file.take(ROOT_FILE_LEN as u64 + 1)
            .read_to_end(&mut content)
            .map_err(|e| CryptoError::RootKeyFile(format!("cannot read {name}: {e}")))?;
        let hex_part = content.strip_suffix(b"\n").unwrap_or(&content);
        if hex_part.len() != 64 {
            return Err(CryptoError::RootKeyFile(format!(
                "{name} must hold exactly 64 hex characters and an optional newline"
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_part, bytes.as_mut())
            .map_err(|_| CryptoError::RootKeyFile(format!("{name} does not hold hex characters only")))?;
        Ok(Self::from_bytes(*bytes))
    }

    /// The root key's public id: the first 16 bytes of
    /// `BLAKE3 derive_key("keyledger 2026-11-29 root key id v1", root)`. Recorded in every
    /// wrapped material and event so a reader knows which root key it needs; reveals nothing
    /// about the key.
    #[must_use]
    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    /// The commitment to a key material version: `BLAKE3 keyed_hash(commitment key, material)`,
    /// 32 bytes. Its lowercase hex (64 characters) is the AWS `KeyMaterialId` (AWS KMS API
    /// reference, `KeyMaterialIdType`). Keyed, so the log does not let anyone test guesses of
    /// material without the root key. Deterministic, so reimported material can be checked
    /// to be byte-identical (AWS ImportKeyMaterial, `IncorrectKeyMaterialException`).
    #[must_use]
    pub fn material_id(&self, material: &KeyMaterial) -> [u8; 32] {
        *blake3::keyed_hash(&self.commitment_key, material.as_bytes()).as_bytes()
    }

    /// Wraps key material for storage in the material stream.
    ///
    /// XChaCha20-Poly1305 under the wrapping key, with a fresh random 24-byte nonce and AAD
    /// [`MaterialAad::canonical_bytes`]. The output layout (format v1) is documented on
    /// [`WrappedMaterial`].
    ///
    /// # Panics
    /// If the OS random number generator fails.
    #[must_use]
    pub fn wrap(&self, aad: &MaterialAad<'_>, material: &KeyMaterial) -> WrappedMaterial {
        let mut nonce = [0u8; XNONCE_LEN];
        fill_random(&mut nonce);
        self.wrap_with_nonce(aad, material, nonce)
    }

    /// [`RootKey::wrap`] with a caller-chosen nonce, for golden test vectors only. Reusing a
    /// nonce under the same root key breaks confidentiality and authenticity.
    #[doc(hidden)]
    #[must_use]
    pub fn wrap_with_nonce(
        &self,
        aad: &MaterialAad<'_>,
        material: &KeyMaterial,
        nonce: [u8; XNONCE_LEN],
    ) -> WrappedMaterial {
        let cipher = xchacha(&self.wrapping_key);
        let mut buf = Zeroizing::new(Vec::with_capacity(KEY_MATERIAL_LEN + TAG_LEN));
        buf.extend_from_slice(material.as_bytes());
        cipher
            .encrypt_in_place(&XNonce::from(nonce), &aad.canonical_bytes(&self.id), &mut *buf)
            .expect("XChaCha20-Poly1305 accepts 32-byte messages");
        let mut out = Vec::with_capacity(WRAPPED_MATERIAL_LEN);
        out.push(WRAPPED_MATERIAL_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        debug_assert_eq!(out.len(), WRAPPED_MATERIAL_LEN);
        WrappedMaterial(out)
    }

    /// Unwraps bytes produced by [`RootKey::wrap`] with the same AAD.
    ///
    /// This proves the bytes were wrapped by this root key for exactly this account, key id
    /// and version. It does not prove they are the material the log committed to; use
    /// [`RootKey::unwrap_verified`] for that.
    ///
    /// # Errors
    /// - [`CryptoError::WrongRootKey`] if the bytes name another root key id;
    /// - [`CryptoError::UnwrapFailed`] if the length or version byte is wrong, the tag does
    ///   not verify, or the AAD differs from the one used to wrap.
    pub fn unwrap(&self, aad: &MaterialAad<'_>, wrapped: &[u8]) -> Result<KeyMaterial> {
        if wrapped.len() != WRAPPED_MATERIAL_LEN || wrapped[0] != WRAPPED_MATERIAL_VERSION {
            return Err(CryptoError::UnwrapFailed);
        }
        let root_id = WrappedMaterial::root_key_id_of(wrapped)?;
        if root_id != self.id {
            return Err(CryptoError::WrongRootKey { wrapped_by: root_id, loaded: self.id });
        }
        let nonce_bytes: [u8; XNONCE_LEN] = wrapped[17..17 + XNONCE_LEN].try_into().expect("length checked above");
        let cipher = xchacha(&self.wrapping_key);
        let mut buf = Zeroizing::new(Vec::with_capacity(KEY_MATERIAL_LEN + TAG_LEN));
        buf.extend_from_slice(&wrapped[17 + XNONCE_LEN..]);
        cipher
            .decrypt_in_place(&XNonce::from(nonce_bytes), &aad.canonical_bytes(&self.id), &mut *buf)
            .map_err(|_| CryptoError::UnwrapFailed)?;
        let mut material = Zeroizing::new([0u8; KEY_MATERIAL_LEN]);
        material.copy_from_slice(&buf);
        Ok(KeyMaterial::from_bytes(*material))
    }

    /// [`RootKey::unwrap`], then checks in constant time that the material's
    /// [`material_id`](RootKey::material_id) equals `expected_material_id` (the commitment in
    /// the log's `MaterialRefV1`).
    ///
    /// # Errors
    /// Those of [`RootKey::unwrap`], and [`CryptoError::MaterialIdMismatch`] if the
    /// commitment differs.
    pub fn unwrap_verified(
        &self,
        aad: &MaterialAad<'_>,
        wrapped: &[u8],
        expected_material_id: &[u8; 32],
    ) -> Result<KeyMaterial> {
        let material = self.unwrap(aad, wrapped)?;
        let actual = self.material_id(&material);
        if bool::from(actual.ct_eq(expected_material_id)) {
            Ok(material)
        } else {
            Err(CryptoError::MaterialIdMismatch)
        }
    }

    /// Wraps an import wrapping key's private key for storage until ImportKeyMaterial (at
    /// most the token's 24-hour validity).
    ///
    /// XChaCha20-Poly1305 under the import-key wrapping key
    /// (`derive_key("keyledger 2026-11-29 import wrapping key wrapping v1", root)`) of the
    /// key's DER PKCS#8 ([`ImportWrappingKey::to_pkcs8_der`]), with a fresh random 24-byte nonce
    /// and AAD [`ImportKeyAad::canonical_bytes`]. Layout (format v1), byte by byte:
    ///
    /// | offset | length | field |
    /// |-------:|-------:|-------|
    /// | 0      | 1      | format version, `0x01` |
    /// | 1      | 16     | root key id ([`RootKey::id`]) |
    /// | 17     | 24     | XChaCha20-Poly1305 nonce, random per wrap |
    /// | 41     | n      | ciphertext of the PKCS#8 DER (n ≈ 1.2 KB for RSA_2048, 2.4 KB for RSA_4096) |
    /// | 41 + n | 16     | Poly1305 tag |
    ///
    /// # Panics
    /// If the OS random number generator fails.
    #[must_use]
    pub fn wrap_import_key(&self, aad: &ImportKeyAad<'_>, key: &ImportWrappingKey) -> Vec<u8> {
        let mut nonce = [0u8; XNONCE_LEN];
        fill_random(&mut nonce);
        let cipher = xchacha(&self.import_key_wrapping_key);
        let mut buf = key.to_pkcs8_der();
        cipher
            .encrypt_in_place(&XNonce::from(nonce), &aad.canonical_bytes(&self.id), &mut *buf)
            .expect("XChaCha20-Poly1305 accepts messages of a few kilobytes");
        let mut out = Vec::with_capacity(1 + 16 + XNONCE_LEN + buf.len());
        out.push(WRAPPED_IMPORT_KEY_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    /// Unwraps bytes produced by [`RootKey::wrap_import_key`] with the same AAD.
    ///
    /// # Errors
    /// - [`CryptoError::WrongRootKey`] if the bytes name another root key id;
    /// - [`CryptoError::UnwrapFailed`] if the bytes are too short or of another version, the
    ///   tag does not verify (tampered bytes, or another account, key id or token id than at
    ///   wrapping), or the decrypted bytes are not a supported RSA PKCS#8 key.
    pub fn unwrap_import_key(&self, aad: &ImportKeyAad<'_>, wrapped: &[u8]) -> Result<ImportWrappingKey> {
        const HEADER: usize = 1 + 16 + XNONCE_LEN;
        if wrapped.len() < HEADER + TAG_LEN || wrapped[0] != WRAPPED_IMPORT_KEY_VERSION {
            return Err(CryptoError::UnwrapFailed);
        }
        let root_id: [u8; 16] = wrapped[1..17].try_into().expect("length checked above");
        if root_id != self.id {
            return Err(CryptoError::WrongRootKey { wrapped_by: root_id, loaded: self.id });
        }
        let nonce: [u8; XNONCE_LEN] = wrapped[17..HEADER].try_into().expect("length checked above");
        let cipher = xchacha(&self.import_key_wrapping_key);
        let mut buf = Zeroizing::new(wrapped[HEADER..].to_vec());
        cipher
            .decrypt_in_place(&XNonce::from(nonce), &aad.canonical_bytes(&self.id), &mut *buf)
            .map_err(|_| CryptoError::UnwrapFailed)?;
        ImportWrappingKey::from_pkcs8_der(&buf).map_err(|_| CryptoError::UnwrapFailed)
    }

    /// Makes an AWS `ImportToken` for `fields`: an authenticated (not encrypted) token of
    /// [`IMPORT_TOKEN_LEN`](crate::IMPORT_TOKEN_LEN) = 93 bytes, all integers big-endian:
    ///
    /// | offset | length | field |
    /// |-------:|-------:|-------|
    /// | 0      | 1      | format version, `0x01` |
    /// | 1      | 16     | token id |
    /// | 17     | 8      | valid to, Unix milliseconds (u64) |
    /// | 25     | 2      | wrapping key spec code ([`WrappingKeySpec::code`](crate::WrappingKeySpec::code)) |
    /// | 27     | 2      | wrapping algorithm code ([`WrappingAlgorithm::code`](crate::WrappingAlgorithm::code)) |
    /// | 29     | 32     | SHA-256 of the wrapping public key's DER SubjectPublicKeyInfo |
    /// | 61     | 32     | tag |
    ///
    /// tag = `BLAKE3 keyed_hash(derive_key("keyledger 2026-11-29 import token v1", root), m)`
    /// with `m = "keyledger import token v1" ‖ u32 account length ‖ account ‖ key id (16) ‖
    /// bytes 0..61`. Account and key id are not in the token but are covered by the tag, so a
    /// token presented for another account or key fails [`RootKey::verify_import_token`].
    ///
    /// # Panics
    /// If the account name is longer than 4 GiB − 1 bytes.
    #[must_use]
    pub fn import_token(&self, fields: &ImportTokenFields) -> Vec<u8> {
        let body = fields.body();
        let tag = self.import_token_tag(&fields.account, &fields.key_id, &body);
        let mut out = Vec::with_capacity(IMPORT_TOKEN_LEN);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        out
    }

    /// Checks an import token made by [`RootKey::import_token`] for this `account` and `key_id`
    /// and returns its fields. The tag is compared in constant time.
    ///
    /// Expiry is **not** checked: the caller compares
    /// [`valid_to_unix_ms`](ImportTokenFields::valid_to_unix_ms) with its own clock and answers
    /// AWS `ExpiredImportTokenException` when it has passed. Nor is single use: the caller
    /// tracks burnt token ids.
    ///
    /// # Errors
    /// [`CryptoError::InvalidImportToken`] if the token is not exactly 93 bytes, has another
    /// version byte, its tag does not verify (altered, forged, made under another root key, or
    /// for another account or key id), or it holds an unknown spec or algorithm code.
    pub fn verify_import_token(&self, account: &str, key_id: [u8; 16], token: &[u8]) -> Result<ImportTokenFields> {
        if token.len() != IMPORT_TOKEN_LEN || token[0] != IMPORT_TOKEN_VERSION {
            return Err(CryptoError::InvalidImportToken);
        }
        let (body, tag) = token.split_at(IMPORT_TOKEN_BODY_LEN);
        let expected = self.import_token_tag(account, &key_id, body);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(CryptoError::InvalidImportToken);
        }
        ImportTokenFields::from_body(account, key_id, body).ok_or(CryptoError::InvalidImportToken)
    }

    /// The text form of a grant token for `fields` (layout: [`crate::GrantTokenFields`] and the
    /// `grant_token` module docs), tagged with a key derived from this root key.
    ///
    /// # Errors
    /// [`CryptoError::InvalidGrantToken`] if the account is not 12 ASCII digits.
    pub fn grant_token(&self, fields: &crate::GrantTokenFields) -> Result<String> {
        crate::grant_token::seal(&self.grant_token_key, fields)
    }

    /// Checks a grant token made by [`RootKey::grant_token`] (tag compared in constant time) and
    /// returns what it says. A valid token authorizes nothing: it names a grant and the log
    /// position its holder may wait for.
    ///
    /// # Errors
    /// [`CryptoError::InvalidGrantToken`] for anything else.
    pub fn verify_grant_token(&self, token: &str) -> Result<crate::GrantTokenFields> {
        crate::grant_token::open(&self.grant_token_key, token)
    }

    fn import_token_tag(&self, account: &str, key_id: &[u8; 16], body: &[u8]) -> [u8; 32] {
        let input = ImportTokenFields::mac_input(account, key_id, body);
        *blake3::keyed_hash(&self.import_token_key, &input).as_bytes()
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootKey(id={}, <redacted>)", hex::encode(self.id))
    }
}

/// What wrapped key material is bound to: the AAD of [`RootKey::wrap`] / [`RootKey::unwrap`].
/// A wrapped blob copied to another account, key or version fails to unwrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaterialAad<'a> {
    /// The owning account (tenant), as named in the event subjects.
    pub account: &'a str,
    /// The KMS key id (16 bytes, the UUID's bytes).
    pub key_id: [u8; 16],
    /// Material version within the key: 1 for the first material, +1 per rotation.
    pub version: u32,
}

impl MaterialAad<'_> {
    /// The canonical AAD bytes (all integers big-endian):
    ///
    /// ```text
    /// "keyledger material aad v1"   25 bytes, fixed label
    /// root key id                   16 bytes
    /// u32 account length ‖ account  UTF-8
    /// key id                        16 bytes
    /// version                       u32
    /// u32 purpose length ‖ "key-material"
    /// ```
    ///
    /// # Panics
    /// If the account name is longer than 4 GiB − 1 bytes.
    #[must_use]
    pub fn canonical_bytes(&self, root_key_id: &[u8; 16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(MATERIAL_AAD_LABEL.len() + 16 + 4 + self.account.len() + 16 + 4 + 4 + 12);
        out.extend_from_slice(MATERIAL_AAD_LABEL.as_bytes());
        out.extend_from_slice(root_key_id);
        let account_len = u32::try_from(self.account.len()).expect("account name too long");
        out.extend_from_slice(&account_len.to_be_bytes());
        out.extend_from_slice(self.account.as_bytes());
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.version.to_be_bytes());
        #[allow(clippy::cast_possible_truncation)] // a 12-byte constant
        out.extend_from_slice(&(MATERIAL_PURPOSE.len() as u32).to_be_bytes());
        out.extend_from_slice(MATERIAL_PURPOSE.as_bytes());
        out
    }
}

/// Wrapped key material, format v1: what the material stream stores. Not secret.
///
/// Layout, byte by byte (89 bytes in total):
///
/// | offset | length | field |
/// |-------:|-------:|-------|
/// | 0      | 1      | format version, `0x01` |
/// | 1      | 16     | root key id ([`RootKey::id`]) |
/// | 17     | 24     | XChaCha20-Poly1305 nonce, random per wrap |
/// | 41     | 32     | ciphertext of the 32-byte material |
/// | 73     | 16     | Poly1305 tag |
///
/// Key: the root key's wrapping key. AAD: [`MaterialAad::canonical_bytes`] with the root key
/// id. Random 192-bit nonces are safe to pick at random (draft-irtf-cfrg-xchacha-03 §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedMaterial(Vec<u8>);

impl WrappedMaterial {
    /// The wrapped bytes (89 bytes).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The wrapped bytes, owned.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// `BLAKE3 hash` of the wrapped bytes (32 bytes): the `wrapped_digest` an event records so a
    /// reader can check that the bytes fetched from the material stream are the committed ones.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.0).as_bytes()
    }

    /// The root key id recorded in wrapped bytes, without unwrapping (to pick the right root
    /// key, or report which one is missing).
    ///
    /// # Errors
    /// [`CryptoError::UnwrapFailed`] if the bytes are not wrapped material format v1.
    pub fn root_key_id_of(wrapped: &[u8]) -> Result<[u8; 16]> {
        if wrapped.len() != WRAPPED_MATERIAL_LEN || wrapped[0] != WRAPPED_MATERIAL_VERSION {
            return Err(CryptoError::UnwrapFailed);
        }
        Ok(wrapped[1..17].try_into().expect("length checked above"))
    }
}

impl AsRef<[u8]> for WrappedMaterial {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
