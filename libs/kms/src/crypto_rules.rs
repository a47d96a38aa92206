//! The rules cryptod applies before any cryptography (no cryptography here): which key a
//! request may use, in which state, and which material version a ciphertext may name
//! (aws-kms-api.md §3.3, §4.1–4.4).
//!
//! Results are copied out of the projection ([`CryptoKey`]) so the caller can release its
//! read lock before doing I/O.
//!
//! Check order: key reference syntax → resolution (NotFound) → access (AccessDenied) → key
//! state (Disabled / KMSInvalidState: the "is pending deletion." text that AWS's deletion
//! alarm matches is thus reported for any use of a pending key) → key usage
//! (InvalidKeyUsage) → material.

use keyledger_events::MaterialRefV1;

use crate::access::{authorize, Access, Authorization};
use crate::api::{EncryptionAlgorithm, KeySpec, KeyUsage, Operation};
use crate::decide::usable_state;
use crate::error::KmsError;
use crate::ids::{parse_key_ref, KeyId, KeyRef, Realm};
use crate::query::resolve_key;
use crate::state::{Key, Projection};

/// What cryptod needs of a key, copied out of the projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoKey {
    /// Owning account.
    pub account: String,
    /// Key id.
    pub key_id: KeyId,
    /// Full key ARN (every response `KeyId` is this).
    pub arn: String,
    /// `KeySpec`.
    pub key_spec: KeySpec,
    /// Current material version (encryptions use it).
    pub current_version: u32,
    /// The material versions this request may use: the current one, and for a decryption
    /// the version the ciphertext names.
    pub materials: Vec<MaterialRefV1>,
    /// What authorized the request ([`crate::Authorization::audit_text`]), for its audit record.
    pub authorized_by: String,
}

impl CryptoKey {
    /// The material of `version`, if this view holds it.
    pub fn material(&self, version: u32) -> Option<&MaterialRefV1> {
        self.materials.iter().find(|m| m.version == version)
    }

    /// The current material.
    pub fn current_material(&self) -> Option<&MaterialRefV1> {
        self.material(self.current_version)
    }

    fn of(key: &Key, realm: &Realm, extra_version: Option<u32>, auth: &Authorization) -> Self {
        let mut materials: Vec<MaterialRefV1> = key.current_material().into_iter().cloned().collect();
        if let Some(v) = extra_version.filter(|v| *v != key.current_version) {
            materials.extend(key.material(v).cloned());
        }
        Self {
            account: key.account.clone(),
            key_id: key.id,
            arn: key.arn(realm),
            key_spec: key.key_spec,
            current_version: key.current_version,
            materials,
            authorized_by: auth.audit_text(),
        }
    }
}

/// Imported material past its `ValidTo` (by the worker's own clock) → `KMSInvalidStateException:
/// <arn> is pending import.`, as once the expiry event is applied.
fn not_expired(realm: &Realm, key: &Key, now_unix_ms: u64) -> Result<(), KmsError> {
    if key.material_expired_at(now_unix_ms) {
        return Err(KmsError::pending_import(&key.arn(realm)));
    }
    Ok(())
}

fn usage_ok(realm: &Realm, key: &Key, op: Operation) -> Result<(), KmsError> {
    if key.key_usage != KeyUsage::EncryptDecrypt {
        return Err(KmsError::invalid_key_usage(&key.arn(realm), key.key_usage.as_str(), op.name()));
    }
    Ok(())
}

/// The key for Encrypt, GenerateDataKey(+WithoutPlaintext) or ReEncrypt's destination:
/// `key_id_input` in any form (key id, key ARN, alias name, alias ARN).
///
/// `access` says who asks, for which policy action (`Encrypt`, `GenerateDataKey…`,
/// `ReEncryptTo`) and with which encryption context (policy conditions, grant constraints).
///
/// Errors: `NotFoundException` (invalid id, unknown key or alias, wrong-region ARN),
/// `InvalidArnException`, `AccessDeniedException` (neither the key policy nor a grant allows
/// it),
/// `DisabledException: <arn> is disabled.`, `KMSInvalidStateException: <arn> is pending
/// deletion.` / `is pending import.` / `is unavailable.`, `InvalidKeyUsageException` for a key
/// that does not encrypt, `KMSInternalException` if an Enabled key has no material.
///
/// `now_unix_ms` is the worker's clock: imported material whose `ValidTo` it has reached is
/// treated as gone (`is pending import.`) even before the expiry event is in the log.
pub fn resolve_for_crypto(
    p: &Projection,
    realm: &Realm,
    access: &Access<'_>,
    key_id_input: &str,
    op: Operation,
    now_unix_ms: u64,
) -> Result<CryptoKey, KmsError> {
    let (key, auth) = resolve_key(p, realm, key_id_input, true, access, op)?;
    usable_state(realm, key)?;
    not_expired(realm, key, now_unix_ms)?;
    usage_ok(realm, key, op)?;
    if key.current_material().is_none() {
        return Err(KmsError::internal("The key has no current material."));
    }
    Ok(CryptoKey::of(key, realm, None, &auth))
}

/// The key for Decrypt (or ReEncrypt's source) of a symmetric ciphertext whose header names
/// key `blob_key_id` and material `material_version` (aws-kms-api.md §4.2).
///
/// Order: a supplied `KeyId` must parse (its syntax errors as usual); the blob's key must be a
/// live key the caller may decrypt with (`access`: action `Decrypt` or `ReEncryptFrom`, with
/// the request's encryption context), else the deliberately vague `AccessDeniedException: The
/// ciphertext refers to a customer master key that does not exist, does not exist in this
/// region, or you are not allowed to access.`; a supplied `KeyId` (any form) must name that
/// same key, else `IncorrectKeyException` (an unknown alias: `NotFoundException`); then the key
/// state (Disabled / pending deletion / pending import / unavailable); then a material version
/// the key does not have → `InvalidCiphertextException` with an empty message.
pub fn resolve_for_decrypt(
    p: &Projection,
    realm: &Realm,
    access: &Access<'_>,
    blob_key_id: [u8; 16],
    material_version: u32,
    supplied_key_id: Option<&str>,
    now_unix_ms: u64,
) -> Result<CryptoKey, KmsError> {
    let caller = access.caller;
    let supplied = supplied_key_id.map(|s| parse_key_ref(s, realm, &caller.account, true)).transpose()?;
    let blob_key = KeyId::from_bytes(blob_key_id);
    // Key ids are random UUIDs, unique across accounts: the blob names the key, the key names
    // its account. Another account's key is usable only if its policy or a grant allows it.
    let key = match p.key(&caller.account, &blob_key) {
        Some(k) => k,
        None => p.key_in_any_account(&blob_key).ok_or_else(KmsError::ciphertext_key_access_denied)?,
    };
    let auth = match authorize(realm, key, access) {
        Ok(a) => a,
        Err(e) if key.account == caller.account => return Err(e),
        Err(e) => {
            let mut vague = KmsError::ciphertext_key_access_denied();
            vague.decided_by = e.decided_by;
            return Err(vague);
        }
    };
    if let Some(r) = supplied {
        let named = match r {
            KeyRef::Key { account, key_id } => (account, key_id),
            KeyRef::Alias { account, alias_name } => {
                let alias = p
                    .alias(&account, &alias_name)
                    .ok_or_else(|| KmsError::alias_not_found(&realm.alias_arn(&account, &alias_name)))?;
                (account, alias.target)
            }
        };
        if named != (key.account.clone(), key.id) {
            return Err(KmsError::incorrect_key());
        }
    }
    usable_state(realm, key)?;
    not_expired(realm, key, now_unix_ms)?;
    usage_ok(realm, key, Operation::Decrypt)?;
    if key.material(material_version).is_none() {
        return Err(KmsError::invalid_ciphertext());
    }
    Ok(CryptoKey::of(key, realm, Some(material_version), &auth))
}

/// `EncryptionAlgorithm` (or Source/DestinationEncryptionAlgorithm) against a key: a symmetric
/// key accepts only SYMMETRIC_DEFAULT or none; anything else →
/// `InvalidKeyUsageException: Algorithm <ALG> is incompatible with key spec <SPEC>.`
pub fn check_encryption_algorithm(key: &CryptoKey, algorithm: Option<EncryptionAlgorithm>) -> Result<(), KmsError> {
    match algorithm {
        None | Some(EncryptionAlgorithm::SymmetricDefault) if key.key_spec == KeySpec::SymmetricDefault => Ok(()),
        Some(alg) => Err(KmsError::new(
            crate::ErrorKind::InvalidKeyUsage,
            format!("Algorithm {alg} is incompatible with key spec {}.", key.key_spec),
        )),
        None => Ok(()),
    }
}
