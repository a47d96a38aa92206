//! SigV4 access keys: who they belong to, and their secrets wrapped under the root key.
//!
//! **The file** (`access_keys_file`, JSON, written mode 0600; holds no plaintext secret):
//!
//! ```json
//! {"version": 1, "access_keys": [
//!   {"access_key_id": "KLAK2VQ7M4XH3P6TNRWE", "account": "111122223333", "user": "alice",
//!    "wrapped_secret": "<178 hex characters>"}]}
//! ```
//!
//! **Secrets.** A secret access key is 40 characters: the standard base64 of the first 30 of
//! 32 random bytes from the OS CSPRNG. The 32 bytes are stored wrapped with the root key's
//! material wrapping ([`RootKey::wrap`]: XChaCha20-Poly1305 under a key derived from the root
//! key, 89 bytes) with the AAD account field set to
//! `"sigv4-access-key\n<access key id>\n<account>\n<user>"`. That string is length-prefixed in
//! the AAD and can never equal a tenant account (12 digits), so a wrapped secret never unwraps
//! as key material or the other way round, and a wrapped secret moved to another access key,
//! account or user fails to unwrap. SigV4 verification needs the secret itself (the signing
//! key is an HMAC chain over it), so the gateway holds unwrapped secrets in memory in
//! zeroizing buffers; nothing prints them ([`SecretAccessKey`]'s `Debug` is redacted).
//! Only [`AccessKeyRecord::generate`] ever returns a secret to a caller, once, for the person
//! creating the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use keyledger_crypto::{KeyMaterial, MaterialAad, Plaintext, RootKey};
use zeroize::Zeroizing;

/// Format version of the access keys file.
pub const ACCESS_KEYS_FILE_VERSION: u32 = 1;
/// Prefix of generated access key ids (20 characters in all, like AWS's).
pub const ACCESS_KEY_ID_PREFIX: &str = "KLAK";
/// Length of a generated secret access key, in characters.
pub const SECRET_ACCESS_KEY_LEN: usize = 40;
/// Most access keys one file may hold.
pub const MAX_ACCESS_KEYS: usize = 10_000;

/// A secret access key (40 characters). Zeroized on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct SecretAccessKey(Zeroizing<String>);

impl SecretAccessKey {
    /// The secret text. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretAccessKey(<redacted>)")
    }
}

/// One entry of the access keys file (no secret in clear).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyRecord {
    /// Access key id: 16..=128 characters of `[A-Z0-9]`.
    pub access_key_id: String,
    /// Keyledger account (12 digits) the key acts in.
    pub account: String,
    /// IAM-style user name: 1..=64 characters of `[A-Za-z0-9+=,.@_-]`; the principal ARN is
    /// `arn:<partition>:iam::<account>:user/<user>`.
    pub user: String,
    /// The wrapped 32-byte secret seed, lowercase hex (89 bytes → 178 characters).
    pub wrapped_secret: String,
}

/// An access key with its secret unwrapped (in memory only).
#[derive(Debug)]
pub struct AccessKey {
    /// Access key id.
    pub access_key_id: String,
    /// Keyledger account.
    pub account: String,
    /// User name.
    pub user: String,
    /// The secret.
    pub secret: SecretAccessKey,
}

fn aad_account(id: &str, account: &str, user: &str) -> String {
    format!("sigv4-access-key\n{id}\n{account}\n{user}")
}

fn aad(domain: &str) -> MaterialAad<'_> {
    MaterialAad { account: domain, key_id: [0; 16], version: 1 }
}

fn secret_from_seed(seed: &KeyMaterial) -> SecretAccessKey {
    let mut s = Zeroizing::new(String::with_capacity(SECRET_ACCESS_KEY_LEN));
    base64::engine::general_purpose::STANDARD.encode_string(&seed.as_bytes()[..30], &mut s);
    debug_assert_eq!(s.len(), SECRET_ACCESS_KEY_LEN);
    SecretAccessKey(s)
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh access key id: `KLAK` + 16 base32 characters (80 random bits).
pub fn generate_access_key_id() -> String {
    let random = Plaintext::random(10);
    let bits = random.as_bytes().iter().fold(0u128, |acc, b| acc << 8 | u128::from(*b));
    let mut id = String::from(ACCESS_KEY_ID_PREFIX);
    for i in (0..16).rev() {
        id.push(BASE32[((bits >> (i * 5)) & 31) as usize] as char);
    }
    id
}

/// Checks an access key id (16..=128 of `[A-Z0-9]`).
pub fn valid_access_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Checks a user name (1..=64 of `[A-Za-z0-9+=,.@_-]`, IAM's user name alphabet).
pub fn valid_user_name(user: &str) -> bool {
    (1..=64).contains(&user.len()) && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Checks a Keyledger account id (12 digits).
pub fn valid_account(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

impl AccessKeyRecord {
    /// Creates an access key for `user` in `account`: a fresh id and secret, the secret
    /// wrapped under `root`. Returns the record (to store) and the secret (to hand to the
    /// user once).
    ///
    /// # Errors
    /// If the account or user name is not valid.
    pub fn generate(root: &RootKey, account: &str, user: &str) -> anyhow::Result<(AccessKeyRecord, SecretAccessKey)> {
        anyhow::ensure!(valid_account(account), "account must be 12 digits");
        anyhow::ensure!(valid_user_name(user), "user name must be 1-64 characters of [A-Za-z0-9+=,.@_-]");
        let id = generate_access_key_id();
        let seed = KeyMaterial::generate();
        let domain = aad_account(&id, account, user);
        let wrapped = root.wrap(&aad(&domain), &seed);
        let record = AccessKeyRecord {
            access_key_id: id,
            account: account.to_owned(),
            user: user.to_owned(),
            wrapped_secret: hex::encode(wrapped.as_bytes()),
        };
        Ok((record, secret_from_seed(&seed)))
    }

    /// Unwraps the secret.
    ///
    /// # Errors
    /// If a field is invalid, or the wrapped secret does not unwrap under `root` for exactly
    /// this id, account and user (another root key, or a record edited by hand).
    pub fn unwrap(&self, root: &RootKey) -> anyhow::Result<AccessKey> {
        anyhow::ensure!(
            valid_access_key_id(&self.access_key_id),
            "access key id {:?} is not valid",
            self.access_key_id
        );
        anyhow::ensure!(valid_account(&self.account), "access key {}: account must be 12 digits", self.access_key_id);
        anyhow::ensure!(valid_user_name(&self.user), "access key {}: user name is not valid", self.access_key_id);
        let wrapped = hex::decode(&self.wrapped_secret)
            .map_err(|_| anyhow::anyhow!("access key {}: wrapped_secret is not hex", self.access_key_id))?;
        let domain = aad_account(&self.access_key_id, &self.account, &self.user);
        let seed = root
            .unwrap(&aad(&domain), &wrapped)
            .map_err(|e| anyhow::anyhow!("access key {}: the secret does not unwrap ({e})", self.access_key_id))?;
        Ok(AccessKey {
            access_key_id: self.access_key_id.clone(),
            account: self.account.clone(),
            user: self.user.clone(),
            secret: secret_from_seed(&seed),
        })
    }
}

/// The access keys file (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeysFile {
    /// [`ACCESS_KEYS_FILE_VERSION`].
    pub version: u32,
    /// The keys.
    pub access_keys: Vec<AccessKeyRecord>,
}

impl Default for AccessKeysFile {
    fn default() -> Self {
        Self { version: ACCESS_KEYS_FILE_VERSION, access_keys: Vec::new() }
    }
}

impl AccessKeysFile {
    /// Reads a file.
    ///
    /// # Errors
    /// If unreadable, not this format, or of another version.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: AccessKeysFile =
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not an access keys file", path.display()))?;
        anyhow::ensure!(
            file.version == ACCESS_KEYS_FILE_VERSION,
            "{}: unsupported version {}",
            path.display(),
            file.version
        );
        Ok(file)
    }

    /// Writes the file atomically with mode 0600.
    ///
    /// # Errors
    /// If it cannot be written.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_private(path, &serde_json::to_vec_pretty(self)?)
    }

    /// Unwraps every key.
    ///
    /// # Errors
    /// On the first key that does not unwrap, on a duplicate id, or over [`MAX_ACCESS_KEYS`].
    pub fn unwrap_all(&self, root: &RootKey) -> anyhow::Result<AccessKeys> {
        anyhow::ensure!(self.access_keys.len() <= MAX_ACCESS_KEYS, "more than {MAX_ACCESS_KEYS} access keys");
        let mut keys = BTreeMap::new();
        for record in &self.access_keys {
            let key = record.unwrap(root)?;
            anyhow::ensure!(!keys.contains_key(&key.access_key_id), "access key {} is listed twice", key.access_key_id);
            keys.insert(key.access_key_id.clone(), Arc::new(key));
        }
        Ok(AccessKeys { keys })
    }
}

/// The unwrapped access keys the gateway verifies against.
#[derive(Debug, Clone, Default)]
pub struct AccessKeys {
    keys: BTreeMap<String, Arc<AccessKey>>,
}

impl AccessKeys {
    /// The key with this id.
    pub fn get(&self, access_key_id: &str) -> Option<Arc<AccessKey>> {
        self.keys.get(access_key_id).cloned()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds (or replaces) a key.
    pub fn insert(&mut self, key: AccessKey) {
        self.keys.insert(key.access_key_id.clone(), Arc::new(key));
    }
}

pub(crate) use crate::private_file::write_private;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_unwraps_to_the_same_40_character_secret() {
        let root = RootKey::generate();
        let (record, secret) = AccessKeyRecord::generate(&root, "111122223333", "alice").unwrap();
        assert_eq!(secret.expose().len(), SECRET_ACCESS_KEY_LEN);
        assert!(record.access_key_id.starts_with(ACCESS_KEY_ID_PREFIX) && record.access_key_id.len() == 20);
        assert!(valid_access_key_id(&record.access_key_id));
        assert_eq!(record.wrapped_secret.len(), 178);
        assert!(!record.wrapped_secret.contains(&hex::encode(secret.expose())));
        let key = record.unwrap(&root).unwrap();
        assert_eq!(key.secret.expose(), secret.expose());
        assert_eq!(format!("{key:?}").matches(secret.expose()).count(), 0, "Debug never shows the secret");
        let (other, other_secret) = AccessKeyRecord::generate(&root, "111122223333", "alice").unwrap();
        assert_ne!(other.access_key_id, record.access_key_id);
        assert_ne!(other_secret.expose(), secret.expose());
    }

    #[test]
    fn a_record_moved_to_another_account_user_id_or_root_key_does_not_unwrap() {
        let root = RootKey::generate();
        let (record, _) = AccessKeyRecord::generate(&root, "111122223333", "alice").unwrap();
        let mut account = record.clone();
        account.account = "444455556666".into();
        let mut user = record.clone();
        user.user = "mallory".into();
        let mut id = record.clone();
        id.access_key_id = generate_access_key_id();
        for r in [account, user, id] {
            assert!(r.unwrap(&root).is_err(), "{r:?}");
        }
        assert!(record.unwrap(&RootKey::generate()).is_err());
    }

    #[test]
    fn a_wrapped_secret_is_not_key_material_of_any_tenant() {
        let root = RootKey::generate();
        let (record, _) = AccessKeyRecord::generate(&root, "111122223333", "alice").unwrap();
        let wrapped = hex::decode(&record.wrapped_secret).unwrap();
        let as_material = MaterialAad { account: "111122223333", key_id: [0; 16], version: 1 };
        assert!(root.unwrap(&as_material, &wrapped).is_err());
    }

    #[test]
    fn the_file_round_trips_privately_and_rejects_duplicates() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let root = RootKey::generate();
        let (a, _) = AccessKeyRecord::generate(&root, "111122223333", "alice").unwrap();
        let (b, _) = AccessKeyRecord::generate(&root, "444455556666", "bob").unwrap();
        let file = AccessKeysFile { version: ACCESS_KEYS_FILE_VERSION, access_keys: vec![a.clone(), b] };
        file.write(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let read = AccessKeysFile::read(&path).unwrap();
        assert_eq!(read, file);
        let keys = read.unwrap_all(&root).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get(&a.access_key_id).unwrap().user, "alice");
        let dup = AccessKeysFile { version: 1, access_keys: vec![a.clone(), a] };
        assert!(dup.unwrap_all(&root).is_err());
    }

    #[test]
    fn invalid_accounts_and_user_names_are_refused() {
        let root = RootKey::generate();
        assert!(AccessKeyRecord::generate(&root, "1234", "alice").is_err());
        assert!(AccessKeyRecord::generate(&root, "111122223333", "a b").is_err());
        assert!(AccessKeyRecord::generate(&root, "111122223333", "").is_err());
    }
}
