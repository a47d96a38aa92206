//! Typed requests for every operation in scope, parsed from AWS JSON 1.1 bodies.
//!
//! Parsing order (aws-kms-api.md §1.1, §1.3, §2): malformed JSON, a body that is not an
//! object, a member of the wrong JSON type or bad base64 → `SerializationException`; then every
//! model constraint (required, lengths, ranges, enums, patterns) is checked and all violations
//! are reported together in one `ValidationException`
//! (`N validation error(s) detected: …`); then semantic checks (`ValidationException` with
//! AWS's texts); then valid AWS values this build does not support →
//! `UnsupportedOperationException`. Unknown members are ignored. Nothing here looks at key
//! state; that is `decide`, `query` and `crypto_rules`.

use std::collections::BTreeMap;

use keyledger_events::TagV1;

use super::enums::*;
use super::json::{Checks, Members};
use super::Operation;
use crate::error::{violation, KmsError, Shown};
use crate::secret::Secret;

/// Limits enforced by request validation. Units are in the names; sources in the docs.
pub mod limits {
    /// `KeyIdT`: 1..2048 characters (API model).
    pub const MAX_KEY_ID_CHARS: usize = 2048;
    /// `PlaintextT`: 1..4096 bytes (API model).
    pub const MAX_PLAINTEXT_BYTES: usize = 4096;
    /// `CiphertextT`: 1..6144 bytes (API model).
    pub const MAX_CIPHERTEXT_BYTES: usize = 6144;
    /// `NumberOfBytes` of GenerateDataKey / GenerateRandom: 1..1024 (API model).
    pub const MAX_NUMBER_OF_BYTES: i64 = 1024;
    /// `GrantTokens`: at most 10 per request (API model).
    pub const MAX_GRANT_TOKENS: usize = 10;
    /// Each grant token: 1..8192 characters (API model).
    pub const MAX_GRANT_TOKEN_CHARS: usize = 8192;
    /// `Description`: 0..8192 characters (API model).
    pub const MAX_DESCRIPTION_CHARS: usize = 8192;
    /// `Policy`: 1..131072 characters (API model; the service caps it at 32 KB).
    pub const MAX_POLICY_CHARS: usize = 131_072;
    /// `TagKey`: 1..128 characters (API model).
    pub const MAX_TAG_KEY_CHARS: usize = 128;
    /// `TagValue`: 0..256 characters (API model).
    pub const MAX_TAG_VALUE_CHARS: usize = 256;
    /// `RotationPeriodInDays`: 90..2560 days, default 365 (API model).
    pub const MIN_ROTATION_PERIOD_DAYS: i64 = 90;
    /// See [`MIN_ROTATION_PERIOD_DAYS`].
    pub const MAX_ROTATION_PERIOD_DAYS: i64 = 2560;
    /// See [`MIN_ROTATION_PERIOD_DAYS`].
    pub const DEFAULT_ROTATION_PERIOD_DAYS: u16 = 365;
    /// `PendingWindowInDays`: the model says 1..365, the service enforces 7..30, default 30
    /// (AWS docs; aws-kms-api.md §10).
    pub const MIN_PENDING_WINDOW_DAYS: i64 = 7;
    /// See [`MIN_PENDING_WINDOW_DAYS`].
    pub const MAX_PENDING_WINDOW_DAYS: i64 = 30;
    /// See [`MIN_PENDING_WINDOW_DAYS`].
    pub const DEFAULT_PENDING_WINDOW_DAYS: u16 = 30;
    /// `KeyMaterialDescription`: 0..256 characters of `[a-zA-Z0-9:/_\s.-]` (API model).
    pub const MAX_KEY_MATERIAL_DESCRIPTION_CHARS: usize = 256;
    /// `KeyMaterialId`: 64 lowercase hex characters (API model `KeyMaterialIdType`).
    pub const KEY_MATERIAL_ID_CHARS: usize = 64;
    /// `AliasName`: 1..256 characters (API model).
    pub const MAX_ALIAS_NAME_CHARS: usize = 256;
    /// `Marker`: 1..1024 characters of U+0020..U+00FF (API model).
    pub const MAX_MARKER_CHARS: usize = 1024;
    /// `CustomKeyStoreId`: 1..64 characters (API model).
    pub const MAX_CUSTOM_KEY_STORE_ID_CHARS: usize = 64;
    /// Keyledger's own encryption-context cap (AWS sets none; aws-kms-api.md §4.1): at most
    /// 64 pairs.
    pub const MAX_ENCRYPTION_CONTEXT_PAIRS: usize = 64;
    /// Each encryption-context key: 1..2048 bytes of UTF-8 (Keyledger's cap).
    pub const MAX_ENCRYPTION_CONTEXT_KEY_BYTES: usize = 2048;
    /// Each encryption-context value: 0..2048 bytes of UTF-8 (Keyledger's cap).
    pub const MAX_ENCRYPTION_CONTEXT_VALUE_BYTES: usize = 2048;
    /// All keys and values of one encryption context together: at most 8192 bytes
    /// (Keyledger's cap).
    pub const MAX_ENCRYPTION_CONTEXT_TOTAL_BYTES: usize = 8192;
    /// `Limit` of ListKeys and ListKeyRotations: 1..1000, default 100.
    pub const LIST_KEYS_LIMIT: (i64, i64, u32) = (1, 1000, 100);
    /// `Limit` of ListAliases: 1..100, default 50.
    pub const LIST_ALIASES_LIMIT: (i64, i64, u32) = (1, 100, 50);
    /// `Limit` of ListResourceTags: 1..50, default 50.
    pub const LIST_TAGS_LIMIT: (i64, i64, u32) = (1, 50, 50);
}

/// An encryption context: string → string, sorted by key (UTF-8 byte order), the form the
/// AAD canonicalisation expects. Not secret (AWS logs it), but bounded (see [`limits`]).
pub type EncryptionContext = BTreeMap<String, String>;

/// CreateKey. Only symmetric `AWS_KMS` keys pass parsing so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKeyRequest {
    /// `Description`, 0..8192 characters, default "".
    pub description: String,
    /// `KeySpec` (or `CustomerMasterKeySpec`), default SYMMETRIC_DEFAULT.
    pub key_spec: KeySpec,
    /// `KeyUsage`, default ENCRYPT_DECRYPT.
    pub key_usage: KeyUsage,
    /// `Origin`, default AWS_KMS.
    pub origin: Origin,
    /// `Tags` (TagException rules are applied by `decide`).
    pub tags: Vec<TagV1>,
    /// `Policy`: the key policy document (checked by `decide`); `None` installs the default
    /// key policy.
    pub policy: Option<String>,
    /// `BypassPolicyLockoutSafetyCheck`.
    pub bypass_policy_lockout_safety_check: bool,
}

/// UpdateKeyDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateKeyDescriptionRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `Description`, 0..8192 characters.
    pub description: String,
}

macro_rules! key_only_request {
    ($($(#[$m:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// `KeyId` (key id or key ARN; 1..2048 characters).
            pub key_id: String,
        }
    )+};
}

key_only_request!(
    /// EnableKey.
    EnableKeyRequest,
    /// DisableKey.
    DisableKeyRequest,
    /// CancelKeyDeletion.
    CancelKeyDeletionRequest,
    /// DisableKeyRotation.
    DisableKeyRotationRequest,
    /// RotateKeyOnDemand.
    RotateKeyOnDemandRequest,
    /// GetKeyRotationStatus.
    GetKeyRotationStatusRequest,
);

/// GetParametersForImport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetParametersForImportRequest {
    /// `KeyId` (key id or key ARN) of an EXTERNAL key.
    pub key_id: String,
    /// `WrappingAlgorithm`.
    pub wrapping_algorithm: WrappingAlgorithm,
    /// `WrappingKeySpec`.
    pub wrapping_key_spec: WrappingKeySpec,
}

/// ImportKeyMaterial. The two blobs are not secret (the material inside is wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportKeyMaterialRequest {
    /// `KeyId` (key id or key ARN) of an EXTERNAL key.
    pub key_id: String,
    /// `ImportToken` from GetParametersForImport, 1..6144 bytes.
    pub import_token: Vec<u8>,
    /// `EncryptedKeyMaterial`, 1..6144 bytes, wrapped with the public key of that response.
    pub encrypted_key_material: Vec<u8>,
    /// `ExpirationModel`, default KEY_MATERIAL_EXPIRES.
    pub expiration_model: ExpirationModel,
    /// `ValidTo` in ms since the epoch; present exactly when the model is KEY_MATERIAL_EXPIRES
    /// (checked here); that it is in the future and at most 365 days ahead is checked when
    /// deciding, against the clock.
    pub valid_to_unix_ms: Option<u64>,
    /// `ImportType`, if given (the default depends on the key: see `decide`).
    pub import_type: Option<ImportType>,
    /// `KeyMaterialDescription`, 0..256 characters.
    pub key_material_description: String,
    /// `KeyMaterialId` (64 lowercase hex), if given.
    pub key_material_id: Option<String>,
}

/// DeleteImportedKeyMaterial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteImportedKeyMaterialRequest {
    /// `KeyId` (key id or key ARN) of an EXTERNAL key.
    pub key_id: String,
    /// `KeyMaterialId` (64 lowercase hex); default: the current material.
    pub key_material_id: Option<String>,
}

/// ScheduleKeyDeletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleKeyDeletionRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `PendingWindowInDays`, 7..30 days, default 30 already applied.
    pub pending_window_in_days: u16,
}

/// EnableKeyRotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnableKeyRotationRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `RotationPeriodInDays`, 90..2560 days, default 365 already applied.
    pub rotation_period_in_days: u16,
}

/// TagResource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagResourceRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `Tags` to set or replace, in request order.
    pub tags: Vec<TagV1>,
}

/// UntagResource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntagResourceRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `TagKeys` to remove (missing keys are ignored).
    pub tag_keys: Vec<String>,
}

/// CreateAlias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAliasRequest {
    /// `AliasName`, `alias/…`, 1..256 characters, not `alias/aws/…`.
    pub alias_name: String,
    /// `TargetKeyId` (key id or key ARN).
    pub target_key_id: String,
}

/// UpdateAlias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateAliasRequest {
    /// `AliasName`.
    pub alias_name: String,
    /// `TargetKeyId` (key id or key ARN) of the new target.
    pub target_key_id: String,
}

/// DeleteAlias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteAliasRequest {
    /// `AliasName`.
    pub alias_name: String,
}

/// DescribeKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeKeyRequest {
    /// `KeyId` (key id, key ARN, alias name or alias ARN).
    pub key_id: String,
    /// `GrantTokens` (0..10).
    pub grant_tokens: Vec<String>,
}

/// ListKeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKeysRequest {
    /// `Limit`, 1..1000, default 100 applied.
    pub limit: u32,
    /// `Marker` from a previous `NextMarker`.
    pub marker: Option<String>,
}

/// ListAliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAliasesRequest {
    /// `KeyId` filter (key id or key ARN).
    pub key_id: Option<String>,
    /// `Limit`, 1..100, default 50 applied.
    pub limit: u32,
    /// `Marker`.
    pub marker: Option<String>,
}

/// ListKeyRotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKeyRotationsRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `IncludeKeyMaterial`, default ROTATIONS_ONLY applied.
    pub include_key_material: IncludeKeyMaterial,
    /// `Limit`, 1..1000, default 100 applied.
    pub limit: u32,
    /// `Marker`.
    pub marker: Option<String>,
}

/// ListResourceTags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResourceTagsRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `Limit`, 1..50, default 50 applied.
    pub limit: u32,
    /// `Marker`.
    pub marker: Option<String>,
}

/// Encrypt.
#[derive(Debug)]
pub struct EncryptRequest {
    /// `KeyId` (any form).
    pub key_id: String,
    /// `Plaintext`, 1..4096 bytes, zeroized on drop.
    pub plaintext: Secret,
    /// `EncryptionContext`.
    pub encryption_context: EncryptionContext,
    /// `GrantTokens` (0..10).
    pub grant_tokens: Vec<String>,
    /// `EncryptionAlgorithm` as sent (a symmetric key needs SYMMETRIC_DEFAULT or none; see
    /// `crypto_rules::check_encryption_algorithm`).
    pub encryption_algorithm: Option<EncryptionAlgorithm>,
    /// `DryRun`.
    pub dry_run: bool,
}

/// Decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptRequest {
    /// `CiphertextBlob`, 1..6144 bytes; `None` only for DryRun with IGNORE_CIPHERTEXT.
    pub ciphertext_blob: Option<Vec<u8>>,
    /// `EncryptionContext`.
    pub encryption_context: EncryptionContext,
    /// `GrantTokens`.
    pub grant_tokens: Vec<String>,
    /// `KeyId` (any form), optional for symmetric ciphertexts.
    pub key_id: Option<String>,
    /// `EncryptionAlgorithm` as sent.
    pub encryption_algorithm: Option<EncryptionAlgorithm>,
    /// `DryRun`.
    pub dry_run: bool,
    /// `DryRunModifiers`.
    pub dry_run_modifiers: Vec<DryRunModifier>,
}

/// ReEncrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReEncryptRequest {
    /// `CiphertextBlob`, 1..6144 bytes; `None` only for DryRun with IGNORE_CIPHERTEXT.
    pub ciphertext_blob: Option<Vec<u8>>,
    /// `SourceEncryptionContext`.
    pub source_encryption_context: EncryptionContext,
    /// `SourceKeyId` (any form), optional.
    pub source_key_id: Option<String>,
    /// `DestinationKeyId` (any form).
    pub destination_key_id: String,
    /// `DestinationEncryptionContext`.
    pub destination_encryption_context: EncryptionContext,
    /// `SourceEncryptionAlgorithm` as sent.
    pub source_encryption_algorithm: Option<EncryptionAlgorithm>,
    /// `DestinationEncryptionAlgorithm` as sent.
    pub destination_encryption_algorithm: Option<EncryptionAlgorithm>,
    /// `GrantTokens`.
    pub grant_tokens: Vec<String>,
    /// `DryRun`.
    pub dry_run: bool,
    /// `DryRunModifiers`.
    pub dry_run_modifiers: Vec<DryRunModifier>,
}

/// GenerateDataKey and GenerateDataKeyWithoutPlaintext: exactly one of `key_spec` and
/// `number_of_bytes` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateDataKeyRequest {
    /// `KeyId` (any form).
    pub key_id: String,
    /// `EncryptionContext`.
    pub encryption_context: EncryptionContext,
    /// `KeySpec` (AES_128 / AES_256).
    pub key_spec: Option<DataKeySpec>,
    /// `NumberOfBytes`, 1..1024.
    pub number_of_bytes: Option<u32>,
    /// `GrantTokens`.
    pub grant_tokens: Vec<String>,
    /// `DryRun`.
    pub dry_run: bool,
}

impl GenerateDataKeyRequest {
    /// Length of the data key to generate, in bytes (1..1024).
    pub fn data_key_len(&self) -> usize {
        match (self.key_spec, self.number_of_bytes) {
            (Some(spec), _) => spec.len_bytes(),
            (None, Some(n)) => n as usize,
            (None, None) => unreachable!("parse_request guarantees KeySpec xor NumberOfBytes"),
        }
    }
}

/// GenerateDataKeyWithoutPlaintext has GenerateDataKey's members minus `Recipient`.
pub type GenerateDataKeyWithoutPlaintextRequest = GenerateDataKeyRequest;

/// GenerateRandom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateRandomRequest {
    /// `NumberOfBytes`, 1..1024 (required).
    pub number_of_bytes: u32,
}

impl DecryptRequest {
    /// Whether `DryRunModifiers` contains IGNORE_CIPHERTEXT.
    pub fn ignore_ciphertext(&self) -> bool {
        self.dry_run_modifiers.contains(&DryRunModifier::IgnoreCiphertext)
    }
}

impl ReEncryptRequest {
    /// Whether `DryRunModifiers` contains IGNORE_CIPHERTEXT.
    pub fn ignore_ciphertext(&self) -> bool {
        self.dry_run_modifiers.contains(&DryRunModifier::IgnoreCiphertext)
    }
}

/// PutKeyPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutKeyPolicyRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `PolicyName`: only `default` exists (absent means `default`).
    pub policy_name: String,
    /// `Policy`: the document (checked by `decide`).
    pub policy: String,
    /// `BypassPolicyLockoutSafetyCheck`, default false.
    pub bypass_policy_lockout_safety_check: bool,
}

/// GetKeyPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetKeyPolicyRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `PolicyName` (absent means `default`).
    pub policy_name: String,
}

/// ListKeyPolicies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKeyPoliciesRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `Limit`, 1..1000, default 100.
    pub limit: u32,
    /// `Marker`.
    pub marker: Option<String>,
}

/// CreateGrant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateGrantRequest {
    /// `KeyId` (key id or key ARN; another account's key by ARN).
    pub key_id: String,
    /// `GranteePrincipal`, 1..256 characters of `[\w+=,.@:/-]`.
    pub grantee_principal: String,
    /// `RetiringPrincipal`, same rules.
    pub retiring_principal: Option<String>,
    /// `Operations`, non-empty, de-duplicated, ascending.
    pub operations: Vec<crate::access::GrantOperation>,
    /// `Constraints` (at most one of the two members).
    pub constraint: Option<crate::access::GrantConstraint>,
    /// `GrantTokens` (0..10).
    pub grant_tokens: Vec<String>,
    /// `Name`, 1..256 characters of `[a-zA-Z0-9:/_-]`.
    pub name: Option<String>,
    /// `DryRun`.
    pub dry_run: bool,
}

/// ListGrants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListGrantsRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `GrantId` filter (64 hex characters).
    pub grant_id: Option<String>,
    /// `GranteePrincipal` filter.
    pub grantee_principal: Option<String>,
    /// `Limit`, 1..100, default 50.
    pub limit: u32,
    /// `Marker`.
    pub marker: Option<String>,
    /// `GrantTokens` (0..10).
    pub grant_tokens: Vec<String>,
}

/// ListRetirableGrants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRetirableGrantsRequest {
    /// `RetiringPrincipal` (must be of the caller's account).
    pub retiring_principal: String,
    /// `Limit`, 1..100, default 50.
    pub limit: u32,
    /// `Marker`.
    pub marker: Option<String>,
}

/// RetireGrant: by `GrantToken`, or by `KeyId` (ARN) and `GrantId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetireGrantRequest {
    /// `GrantToken`.
    pub grant_token: Option<String>,
    /// `KeyId`: the key ARN (with `GrantId`).
    pub key_id: Option<String>,
    /// `GrantId` (64 hex characters).
    pub grant_id: Option<String>,
    /// `DryRun`.
    pub dry_run: bool,
}

/// RevokeGrant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeGrantRequest {
    /// `KeyId` (key id or key ARN).
    pub key_id: String,
    /// `GrantId` (64 hex characters).
    pub grant_id: String,
    /// `DryRun`.
    pub dry_run: bool,
}

/// A parsed request of any operation in scope.
#[derive(Debug)]
#[allow(missing_docs)] // each variant is the request of the operation of the same name
pub enum Request {
    CreateKey(CreateKeyRequest),
    UpdateKeyDescription(UpdateKeyDescriptionRequest),
    EnableKey(EnableKeyRequest),
    DisableKey(DisableKeyRequest),
    ScheduleKeyDeletion(ScheduleKeyDeletionRequest),
    CancelKeyDeletion(CancelKeyDeletionRequest),
    EnableKeyRotation(EnableKeyRotationRequest),
    DisableKeyRotation(DisableKeyRotationRequest),
    RotateKeyOnDemand(RotateKeyOnDemandRequest),
    GetParametersForImport(GetParametersForImportRequest),
    ImportKeyMaterial(ImportKeyMaterialRequest),
    DeleteImportedKeyMaterial(DeleteImportedKeyMaterialRequest),
    TagResource(TagResourceRequest),
    UntagResource(UntagResourceRequest),
    CreateAlias(CreateAliasRequest),
    UpdateAlias(UpdateAliasRequest),
    DeleteAlias(DeleteAliasRequest),
    DescribeKey(DescribeKeyRequest),
    ListKeys(ListKeysRequest),
    ListAliases(ListAliasesRequest),
    GetKeyRotationStatus(GetKeyRotationStatusRequest),
    ListKeyRotations(ListKeyRotationsRequest),
    ListResourceTags(ListResourceTagsRequest),
    Encrypt(EncryptRequest),
    Decrypt(DecryptRequest),
    ReEncrypt(ReEncryptRequest),
    GenerateDataKey(GenerateDataKeyRequest),
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyWithoutPlaintextRequest),
    GenerateRandom(GenerateRandomRequest),
    PutKeyPolicy(PutKeyPolicyRequest),
    GetKeyPolicy(GetKeyPolicyRequest),
    ListKeyPolicies(ListKeyPoliciesRequest),
    CreateGrant(CreateGrantRequest),
    ListGrants(ListGrantsRequest),
    ListRetirableGrants(ListRetirableGrantsRequest),
    RetireGrant(RetireGrantRequest),
    RevokeGrant(RevokeGrantRequest),
}

impl Request {
    /// The operation of this request.
    pub fn operation(&self) -> Operation {
        match self {
            Request::CreateKey(_) => Operation::CreateKey,
            Request::UpdateKeyDescription(_) => Operation::UpdateKeyDescription,
            Request::EnableKey(_) => Operation::EnableKey,
            Request::DisableKey(_) => Operation::DisableKey,
            Request::ScheduleKeyDeletion(_) => Operation::ScheduleKeyDeletion,
            Request::CancelKeyDeletion(_) => Operation::CancelKeyDeletion,
            Request::EnableKeyRotation(_) => Operation::EnableKeyRotation,
            Request::DisableKeyRotation(_) => Operation::DisableKeyRotation,
            Request::RotateKeyOnDemand(_) => Operation::RotateKeyOnDemand,
            Request::GetParametersForImport(_) => Operation::GetParametersForImport,
            Request::ImportKeyMaterial(_) => Operation::ImportKeyMaterial,
            Request::DeleteImportedKeyMaterial(_) => Operation::DeleteImportedKeyMaterial,
            Request::TagResource(_) => Operation::TagResource,
            Request::UntagResource(_) => Operation::UntagResource,
            Request::CreateAlias(_) => Operation::CreateAlias,
            Request::UpdateAlias(_) => Operation::UpdateAlias,
            Request::DeleteAlias(_) => Operation::DeleteAlias,
            Request::DescribeKey(_) => Operation::DescribeKey,
            Request::ListKeys(_) => Operation::ListKeys,
            Request::ListAliases(_) => Operation::ListAliases,
            Request::GetKeyRotationStatus(_) => Operation::GetKeyRotationStatus,
            Request::ListKeyRotations(_) => Operation::ListKeyRotations,
            Request::ListResourceTags(_) => Operation::ListResourceTags,
            Request::Encrypt(_) => Operation::Encrypt,
            Request::Decrypt(_) => Operation::Decrypt,
            Request::ReEncrypt(_) => Operation::ReEncrypt,
            Request::GenerateDataKey(_) => Operation::GenerateDataKey,
            Request::GenerateDataKeyWithoutPlaintext(_) => Operation::GenerateDataKeyWithoutPlaintext,
            Request::GenerateRandom(_) => Operation::GenerateRandom,
            Request::PutKeyPolicy(_) => Operation::PutKeyPolicy,
            Request::GetKeyPolicy(_) => Operation::GetKeyPolicy,
            Request::ListKeyPolicies(_) => Operation::ListKeyPolicies,
            Request::CreateGrant(_) => Operation::CreateGrant,
            Request::ListGrants(_) => Operation::ListGrants,
            Request::ListRetirableGrants(_) => Operation::ListRetirableGrants,
            Request::RetireGrant(_) => Operation::RetireGrant,
            Request::RevokeGrant(_) => Operation::RevokeGrant,
        }
    }

    /// The `KeyId`-style member naming the key the request is about, as sent (`TargetKeyId`
    /// for aliases, `DestinationKeyId` for ReEncrypt); `None` when there is none. For audit
    /// records ("key id as supplied").
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Request::CreateKey(_) | Request::ListKeys(_) | Request::GenerateRandom(_) | Request::DeleteAlias(_) => None,
            Request::UpdateKeyDescription(r) => Some(&r.key_id),
            Request::EnableKey(r) => Some(&r.key_id),
            Request::DisableKey(r) => Some(&r.key_id),
            Request::ScheduleKeyDeletion(r) => Some(&r.key_id),
            Request::CancelKeyDeletion(r) => Some(&r.key_id),
            Request::EnableKeyRotation(r) => Some(&r.key_id),
            Request::DisableKeyRotation(r) => Some(&r.key_id),
            Request::RotateKeyOnDemand(r) => Some(&r.key_id),
            Request::GetParametersForImport(r) => Some(&r.key_id),
            Request::ImportKeyMaterial(r) => Some(&r.key_id),
            Request::DeleteImportedKeyMaterial(r) => Some(&r.key_id),
            Request::TagResource(r) => Some(&r.key_id),
            Request::UntagResource(r) => Some(&r.key_id),
            Request::CreateAlias(r) => Some(&r.target_key_id),
            Request::UpdateAlias(r) => Some(&r.target_key_id),
            Request::DescribeKey(r) => Some(&r.key_id),
            Request::ListAliases(r) => r.key_id.as_deref(),
            Request::GetKeyRotationStatus(r) => Some(&r.key_id),
            Request::ListKeyRotations(r) => Some(&r.key_id),
            Request::ListResourceTags(r) => Some(&r.key_id),
            Request::Encrypt(r) => Some(&r.key_id),
            Request::Decrypt(r) => r.key_id.as_deref(),
            Request::ReEncrypt(r) => Some(&r.destination_key_id),
            Request::GenerateDataKey(r) | Request::GenerateDataKeyWithoutPlaintext(r) => Some(&r.key_id),
            Request::PutKeyPolicy(r) => Some(&r.key_id),
            Request::GetKeyPolicy(r) => Some(&r.key_id),
            Request::ListKeyPolicies(r) => Some(&r.key_id),
            Request::CreateGrant(r) => Some(&r.key_id),
            Request::ListGrants(r) => Some(&r.key_id),
            Request::RevokeGrant(r) => Some(&r.key_id),
            Request::RetireGrant(r) => r.key_id.as_deref(),
            Request::ListRetirableGrants(_) => None,
        }
    }
}

/// Parses and validates the AWS JSON body of `op` (see the module docs for the order of
/// checks and the errors). The caller should zeroize `body` afterwards if it may hold a
/// plaintext.
pub fn parse_request(op: Operation, body: &[u8]) -> Result<Request, KmsError> {
    let mut m = Members::parse(body)?;
    let mut c = Checks::default();
    let req = match op {
        Operation::CreateKey => Request::CreateKey(create_key(&mut m, &mut c)?),
        Operation::UpdateKeyDescription => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let description = m.string("Description")?;
            let description = c.required(description, "description");
            if let Some(d) = &description {
                c.str_len(d, "description", 0, limits::MAX_DESCRIPTION_CHARS);
            }
            c.finish()?;
            Request::UpdateKeyDescription(UpdateKeyDescriptionRequest {
                key_id: key_id.unwrap(),
                description: description.unwrap(),
            })
        }
        Operation::EnableKey => Request::EnableKey(EnableKeyRequest { key_id: only_key_id(&mut m, c)? }),
        Operation::DisableKey => Request::DisableKey(DisableKeyRequest { key_id: only_key_id(&mut m, c)? }),
        Operation::CancelKeyDeletion => {
            Request::CancelKeyDeletion(CancelKeyDeletionRequest { key_id: only_key_id(&mut m, c)? })
        }
        Operation::DisableKeyRotation => {
            Request::DisableKeyRotation(DisableKeyRotationRequest { key_id: only_key_id(&mut m, c)? })
        }
        Operation::RotateKeyOnDemand => {
            Request::RotateKeyOnDemand(RotateKeyOnDemandRequest { key_id: only_key_id(&mut m, c)? })
        }
        Operation::GetParametersForImport => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let alg = m.string("WrappingAlgorithm")?;
            let alg = c.required(alg, "wrappingAlgorithm");
            let alg = c.enum_value(alg, "wrappingAlgorithm", WrappingAlgorithm::parse, WrappingAlgorithm::value_set());
            let spec = m.string("WrappingKeySpec")?;
            let spec = c.required(spec, "wrappingKeySpec");
            let spec = c.enum_value(spec, "wrappingKeySpec", WrappingKeySpec::parse, WrappingKeySpec::value_set());
            c.finish()?;
            Request::GetParametersForImport(GetParametersForImportRequest {
                key_id: key_id.unwrap(),
                wrapping_algorithm: alg.unwrap(),
                wrapping_key_spec: spec.unwrap(),
            })
        }
        Operation::ImportKeyMaterial => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let token = m.blob("ImportToken")?;
            let token = c.required(token, "importToken");
            if let Some(t) = &token {
                c.hidden_len(t.len(), "importToken", 1, limits::MAX_CIPHERTEXT_BYTES);
            }
            let material = m.blob("EncryptedKeyMaterial")?;
            let material = c.required(material, "encryptedKeyMaterial");
            if let Some(b) = &material {
                c.hidden_len(b.len(), "encryptedKeyMaterial", 1, limits::MAX_CIPHERTEXT_BYTES);
            }
            let valid_to = m.timestamp_ms("ValidTo")?;
            let model = m.string("ExpirationModel")?;
            let model = c.enum_value(model, "expirationModel", ExpirationModel::parse, ExpirationModel::value_set());
            let import_type = m.string("ImportType")?;
            let import_type = c.enum_value(import_type, "importType", ImportType::parse, ImportType::value_set());
            let description = m.string("KeyMaterialDescription")?.unwrap_or_default();
            c.str_len(&description, "keyMaterialDescription", 0, limits::MAX_KEY_MATERIAL_DESCRIPTION_CHARS);
            let ok = description.chars().all(|ch| {
                ch.is_ascii_alphanumeric() || ch.is_whitespace() || matches!(ch, ':' | '/' | '_' | '.' | '-')
            });
            c.pattern(&description, "keyMaterialDescription", ok, "^[a-zA-Z0-9:/_\\s.-]+$");
            let material_id = key_material_id(&mut m, &mut c)?;
            c.finish()?;
            let expiration_model = model.unwrap_or(ExpirationModel::KeyMaterialExpires);
            match (expiration_model, valid_to) {
                (ExpirationModel::KeyMaterialExpires, None) => {
                    return Err(KmsError::validation(
                        "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES",
                    ))
                }
                (ExpirationModel::KeyMaterialDoesNotExpire, Some(_)) => {
                    return Err(KmsError::validation(
                        "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE",
                    ))
                }
                _ => {}
            }
            if import_type == Some(ImportType::NewKeyMaterial) && material_id.is_some() {
                return Err(KmsError::validation("KeyMaterialId must not be set when ImportType is NEW_KEY_MATERIAL"));
            }
            Request::ImportKeyMaterial(ImportKeyMaterialRequest {
                key_id: key_id.unwrap(),
                import_token: token.unwrap(),
                encrypted_key_material: material.unwrap(),
                expiration_model,
                valid_to_unix_ms: valid_to,
                import_type,
                key_material_description: description,
                key_material_id: material_id,
            })
        }
        Operation::DeleteImportedKeyMaterial => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let material_id = key_material_id(&mut m, &mut c)?;
            c.finish()?;
            Request::DeleteImportedKeyMaterial(DeleteImportedKeyMaterialRequest {
                key_id: key_id.unwrap(),
                key_material_id: material_id,
            })
        }
        Operation::GetKeyRotationStatus => {
            Request::GetKeyRotationStatus(GetKeyRotationStatusRequest { key_id: only_key_id(&mut m, c)? })
        }
        Operation::ScheduleKeyDeletion => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let window = m.integer("PendingWindowInDays")?;
            if let Some(w) = window {
                c.range(w, "pendingWindowInDays", limits::MIN_PENDING_WINDOW_DAYS, limits::MAX_PENDING_WINDOW_DAYS);
            }
            c.finish()?;
            Request::ScheduleKeyDeletion(ScheduleKeyDeletionRequest {
                key_id: key_id.unwrap(),
                pending_window_in_days: window.map_or(limits::DEFAULT_PENDING_WINDOW_DAYS, |w| w as u16),
            })
        }
        Operation::EnableKeyRotation => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let period = m.integer("RotationPeriodInDays")?;
            if let Some(p) = period {
                c.range(p, "rotationPeriodInDays", limits::MIN_ROTATION_PERIOD_DAYS, limits::MAX_ROTATION_PERIOD_DAYS);
            }
            c.finish()?;
            Request::EnableKeyRotation(EnableKeyRotationRequest {
                key_id: key_id.unwrap(),
                rotation_period_in_days: period.map_or(limits::DEFAULT_ROTATION_PERIOD_DAYS, |p| p as u16),
            })
        }
        Operation::TagResource => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let tags = m.tags("Tags")?;
            let tags = c.required(tags, "tags").map(|t| check_tags(t, &mut c));
            c.finish()?;
            Request::TagResource(TagResourceRequest { key_id: key_id.unwrap(), tags: tags.unwrap() })
        }
        Operation::UntagResource => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let keys = m.string_list("TagKeys")?;
            let keys = c.required(keys, "tagKeys");
            if let Some(keys) = &keys {
                for (i, k) in keys.iter().enumerate() {
                    c.str_len(k, &format!("tagKeys.{}.member", i + 1), 1, limits::MAX_TAG_KEY_CHARS);
                }
            }
            c.finish()?;
            Request::UntagResource(UntagResourceRequest { key_id: key_id.unwrap(), tag_keys: keys.unwrap() })
        }
        Operation::CreateAlias | Operation::UpdateAlias => {
            let alias_name = alias_name(&mut m, &mut c)?;
            let target = key_id(&mut m, &mut c, "TargetKeyId")?;
            c.finish()?;
            let alias_name = alias_name.unwrap();
            check_alias_name(&alias_name)?;
            let target_key_id = target.unwrap();
            if op == Operation::CreateAlias {
                Request::CreateAlias(CreateAliasRequest { alias_name, target_key_id })
            } else {
                Request::UpdateAlias(UpdateAliasRequest { alias_name, target_key_id })
            }
        }
        Operation::DeleteAlias => {
            let alias_name = alias_name(&mut m, &mut c)?;
            c.finish()?;
            let alias_name = alias_name.unwrap();
            check_alias_name(&alias_name)?;
            Request::DeleteAlias(DeleteAliasRequest { alias_name })
        }
        Operation::DescribeKey => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let grant_tokens = grant_tokens(&mut m, &mut c)?;
            c.finish()?;
            Request::DescribeKey(DescribeKeyRequest { key_id: key_id.unwrap(), grant_tokens })
        }
        Operation::PutKeyPolicy => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let policy_name = policy_name(&mut m, &mut c)?;
            let policy = m.string("Policy")?;
            let policy = c.required(policy, "policy");
            if let Some(p) = &policy {
                c.str_len(p, "policy", 1, limits::MAX_POLICY_CHARS);
            }
            let bypass = m.boolean("BypassPolicyLockoutSafetyCheck")?.unwrap_or(false);
            c.finish()?;
            check_policy_name(&policy_name)?;
            Request::PutKeyPolicy(PutKeyPolicyRequest {
                key_id: key_id.unwrap(),
                policy_name,
                policy: policy.unwrap(),
                bypass_policy_lockout_safety_check: bypass,
            })
        }
        Operation::GetKeyPolicy => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let policy_name = policy_name(&mut m, &mut c)?;
            c.finish()?;
            check_policy_name(&policy_name)?;
            Request::GetKeyPolicy(GetKeyPolicyRequest { key_id: key_id.unwrap(), policy_name })
        }
        Operation::ListKeyPolicies => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let (limit, marker) = paging(&mut m, &mut c, limits::LIST_KEYS_LIMIT)?;
            c.finish()?;
            Request::ListKeyPolicies(ListKeyPoliciesRequest { key_id: key_id.unwrap(), limit, marker })
        }
        Operation::CreateGrant => Request::CreateGrant(create_grant(&mut m, &mut c)?),
        Operation::ListGrants => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let grant_id = m.string("GrantId")?;
            if let Some(g) = &grant_id {
                c.str_len(g, "grantId", 1, 128);
            }
            let grantee = principal_member(&mut m, &mut c, "GranteePrincipal", false)?;
            let (limit, marker) = paging(&mut m, &mut c, limits::LIST_ALIASES_LIMIT)?;
            let grant_tokens = grant_tokens(&mut m, &mut c)?;
            c.finish()?;
            if let Some(g) = &grant_id {
                parse_grant_id(g)?;
            }
            Request::ListGrants(ListGrantsRequest {
                key_id: key_id.unwrap(),
                grant_id,
                grantee_principal: grantee,
                limit,
                marker,
                grant_tokens,
            })
        }
        Operation::ListRetirableGrants => {
            let retiring = principal_member(&mut m, &mut c, "RetiringPrincipal", true)?;
            let (limit, marker) = paging(&mut m, &mut c, limits::LIST_ALIASES_LIMIT)?;
            c.finish()?;
            Request::ListRetirableGrants(ListRetirableGrantsRequest {
                retiring_principal: retiring.unwrap(),
                limit,
                marker,
            })
        }
        Operation::RetireGrant => {
            let token = m.string("GrantToken")?;
            if let Some(t) = &token {
                c.hidden_len(t.chars().count(), "grantToken", 1, limits::MAX_GRANT_TOKEN_CHARS);
            }
            let key_id = optional_key_id(&mut m, &mut c, "KeyId")?;
            let grant_id = m.string("GrantId")?;
            if let Some(g) = &grant_id {
                c.str_len(g, "grantId", 1, 128);
            }
            let dry_run = m.boolean("DryRun")?.unwrap_or(false);
            c.finish()?;
            if let Some(g) = &grant_id {
                parse_grant_id(g)?;
            }
            if token.is_none() && (key_id.is_none() || grant_id.is_none()) {
                return Err(KmsError::validation("Either GrantToken, or both KeyId and GrantId, must be specified."));
            }
            Request::RetireGrant(RetireGrantRequest { grant_token: token, key_id, grant_id, dry_run })
        }
        Operation::RevokeGrant => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let grant_id = m.string("GrantId")?;
            let grant_id = c.required(grant_id, "grantId");
            if let Some(g) = &grant_id {
                c.str_len(g, "grantId", 1, 128);
            }
            let dry_run = m.boolean("DryRun")?.unwrap_or(false);
            c.finish()?;
            let grant_id = grant_id.unwrap();
            parse_grant_id(&grant_id)?;
            Request::RevokeGrant(RevokeGrantRequest { key_id: key_id.unwrap(), grant_id, dry_run })
        }
        Operation::ListKeys => {
            let (limit, marker) = paging(&mut m, &mut c, limits::LIST_KEYS_LIMIT)?;
            c.finish()?;
            Request::ListKeys(ListKeysRequest { limit, marker })
        }
        Operation::ListAliases => {
            let key_id = optional_key_id(&mut m, &mut c, "KeyId")?;
            let (limit, marker) = paging(&mut m, &mut c, limits::LIST_ALIASES_LIMIT)?;
            c.finish()?;
            Request::ListAliases(ListAliasesRequest { key_id, limit, marker })
        }
        Operation::ListKeyRotations => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let include = m.string("IncludeKeyMaterial")?;
            let include =
                c.enum_value(include, "includeKeyMaterial", IncludeKeyMaterial::parse, IncludeKeyMaterial::value_set());
            let (limit, marker) = paging(&mut m, &mut c, limits::LIST_KEYS_LIMIT)?;
            c.finish()?;
            Request::ListKeyRotations(ListKeyRotationsRequest {
                key_id: key_id.unwrap(),
                include_key_material: include.unwrap_or(IncludeKeyMaterial::RotationsOnly),
                limit,
                marker,
            })
        }
        Operation::ListResourceTags => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let (limit, marker) = paging(&mut m, &mut c, limits::LIST_TAGS_LIMIT)?;
            c.finish()?;
            Request::ListResourceTags(ListResourceTagsRequest { key_id: key_id.unwrap(), limit, marker })
        }
        Operation::Encrypt => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let plaintext = m.secret("Plaintext")?;
            let plaintext = c.required(plaintext, "plaintext");
            if let Some(p) = &plaintext {
                c.hidden_len(p.len(), "plaintext", 1, limits::MAX_PLAINTEXT_BYTES);
            }
            let encryption_context = encryption_context(&mut m, &mut c, "EncryptionContext")?;
            let grant_tokens = grant_tokens(&mut m, &mut c)?;
            let encryption_algorithm = algorithm(&mut m, &mut c, "EncryptionAlgorithm")?;
            let dry_run = m.boolean("DryRun")?.unwrap_or(false);
            c.finish()?;
            Request::Encrypt(EncryptRequest {
                key_id: key_id.unwrap(),
                plaintext: plaintext.unwrap(),
                encryption_context,
                grant_tokens,
                encryption_algorithm,
                dry_run,
            })
        }
        Operation::Decrypt => {
            let blob = m.blob("CiphertextBlob")?;
            if let Some(b) = &blob {
                c.hidden_len(b.len(), "ciphertextBlob", 1, limits::MAX_CIPHERTEXT_BYTES);
            }
            let encryption_context = encryption_context(&mut m, &mut c, "EncryptionContext")?;
            let grant_tokens = grant_tokens(&mut m, &mut c)?;
            let key_id = optional_key_id(&mut m, &mut c, "KeyId")?;
            let encryption_algorithm = algorithm(&mut m, &mut c, "EncryptionAlgorithm")?;
            let dry_run = m.boolean("DryRun")?.unwrap_or(false);
            let dry_run_modifiers = dry_run_modifiers(&mut m, &mut c)?;
            let recipient = m.present("Recipient");
            let ignore = dry_run && dry_run_modifiers.contains(&DryRunModifier::IgnoreCiphertext);
            let blob = if ignore { blob } else { c.required(blob, "ciphertextBlob") };
            c.finish()?;
            if ignore && key_id.is_none() {
                return Err(KmsError::validation("KeyId is required when DryRunModifiers contains IGNORE_CIPHERTEXT."));
            }
            if recipient {
                return Err(recipient_unsupported());
            }
            Request::Decrypt(DecryptRequest {
                ciphertext_blob: blob,
                encryption_context,
                grant_tokens,
                key_id,
                encryption_algorithm,
                dry_run,
                dry_run_modifiers,
            })
        }
        Operation::ReEncrypt => {
            let blob = m.blob("CiphertextBlob")?;
            if let Some(b) = &blob {
                c.hidden_len(b.len(), "ciphertextBlob", 1, limits::MAX_CIPHERTEXT_BYTES);
            }
            let source_encryption_context = encryption_context(&mut m, &mut c, "SourceEncryptionContext")?;
            let source_key_id = optional_key_id(&mut m, &mut c, "SourceKeyId")?;
            let destination_key_id = key_id(&mut m, &mut c, "DestinationKeyId")?;
            let destination_encryption_context = encryption_context(&mut m, &mut c, "DestinationEncryptionContext")?;
            let source_encryption_algorithm = algorithm(&mut m, &mut c, "SourceEncryptionAlgorithm")?;
            let destination_encryption_algorithm = algorithm(&mut m, &mut c, "DestinationEncryptionAlgorithm")?;
            let grant_tokens = grant_tokens(&mut m, &mut c)?;
            let dry_run = m.boolean("DryRun")?.unwrap_or(false);
            let dry_run_modifiers = dry_run_modifiers(&mut m, &mut c)?;
            let ignore = dry_run && dry_run_modifiers.contains(&DryRunModifier::IgnoreCiphertext);
            let blob = if ignore { blob } else { c.required(blob, "ciphertextBlob") };
            c.finish()?;
            if ignore && source_key_id.is_none() {
                return Err(KmsError::validation(
                    "SourceKeyId is required when DryRunModifiers contains IGNORE_CIPHERTEXT.",
                ));
            }
            Request::ReEncrypt(ReEncryptRequest {
                ciphertext_blob: blob,
                source_encryption_context,
                source_key_id,
                destination_key_id: destination_key_id.unwrap(),
                destination_encryption_context,
                source_encryption_algorithm,
                destination_encryption_algorithm,
                grant_tokens,
                dry_run,
                dry_run_modifiers,
            })
        }
        Operation::GenerateDataKey | Operation::GenerateDataKeyWithoutPlaintext => {
            let key_id = key_id(&mut m, &mut c, "KeyId")?;
            let encryption_context = encryption_context(&mut m, &mut c, "EncryptionContext")?;
            let n = m.integer("NumberOfBytes")?;
            if let Some(n) = n {
                c.range(n, "numberOfBytes", 1, limits::MAX_NUMBER_OF_BYTES);
            }
            let spec = m.string("KeySpec")?;
            let key_spec = c.enum_value(spec, "keySpec", DataKeySpec::parse, DataKeySpec::value_set());
            let grant_tokens = grant_tokens(&mut m, &mut c)?;
            let dry_run = m.boolean("DryRun")?.unwrap_or(false);
            let recipient = op == Operation::GenerateDataKey && m.present("Recipient");
            c.finish()?;
            if key_spec.is_some() == n.is_some() {
                return Err(KmsError::validation("Please specify either number of bytes or key spec."));
            }
            if recipient {
                return Err(recipient_unsupported());
            }
            let r = GenerateDataKeyRequest {
                key_id: key_id.unwrap(),
                encryption_context,
                key_spec,
                number_of_bytes: n.map(|n| n as u32),
                grant_tokens,
                dry_run,
            };
            if op == Operation::GenerateDataKey {
                Request::GenerateDataKey(r)
            } else {
                Request::GenerateDataKeyWithoutPlaintext(r)
            }
        }
        Operation::GenerateRandom => {
            let n = m.integer("NumberOfBytes")?;
            if let Some(n) = n {
                c.range(n, "numberOfBytes", 1, limits::MAX_NUMBER_OF_BYTES);
            }
            let store = m.string("CustomKeyStoreId")?;
            if let Some(s) = &store {
                c.str_len(s, "customKeyStoreId", 1, limits::MAX_CUSTOM_KEY_STORE_ID_CHARS);
            }
            let recipient = m.present("Recipient");
            c.finish()?;
            let Some(n) = n else {
                return Err(KmsError::validation("NumberOfBytes is required."));
            };
            if store.is_some() {
                return Err(custom_key_store_unsupported());
            }
            if recipient {
                return Err(recipient_unsupported());
            }
            Request::GenerateRandom(GenerateRandomRequest { number_of_bytes: n as u32 })
        }
    };
    Ok(req)
}

fn recipient_unsupported() -> KmsError {
    KmsError::unsupported("Recipient (attested enclave delivery) is not supported yet.")
}

fn custom_key_store_unsupported() -> KmsError {
    KmsError::unsupported("Custom key stores (CustomKeyStoreId) are not supported.")
}

fn camel(member: &str) -> String {
    let mut out = String::with_capacity(member.len());
    let mut chars = member.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_lowercase());
    }
    out.extend(chars);
    out
}

/// A required key-id member (1..2048 characters).
fn key_id(m: &mut Members, c: &mut Checks, member: &str) -> Result<Option<String>, KmsError> {
    let v = m.string(member)?;
    let v = c.required(v, &camel(member));
    if let Some(s) = &v {
        c.str_len(s, &camel(member), 1, limits::MAX_KEY_ID_CHARS);
    }
    Ok(v)
}

fn optional_key_id(m: &mut Members, c: &mut Checks, member: &str) -> Result<Option<String>, KmsError> {
    let v = m.string(member)?;
    if let Some(s) = &v {
        c.str_len(s, &camel(member), 1, limits::MAX_KEY_ID_CHARS);
    }
    Ok(v)
}

/// An optional `KeyMaterialId` member: 64 characters of `[a-f0-9]` (API model
/// `KeyMaterialIdType`).
fn key_material_id(m: &mut Members, c: &mut Checks) -> Result<Option<String>, KmsError> {
    let v = m.string("KeyMaterialId")?;
    if let Some(id) = &v {
        c.str_len(id, "keyMaterialId", limits::KEY_MATERIAL_ID_CHARS, limits::KEY_MATERIAL_ID_CHARS);
        let ok = id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        c.pattern(id, "keyMaterialId", ok, "^[a-f0-9]+$");
    }
    Ok(v)
}

/// A request whose only member is `KeyId`.
fn only_key_id(m: &mut Members, mut c: Checks) -> Result<String, KmsError> {
    let v = key_id(m, &mut c, "KeyId")?;
    c.finish()?;
    Ok(v.unwrap())
}

fn alias_name(m: &mut Members, c: &mut Checks) -> Result<Option<String>, KmsError> {
    let v = m.string("AliasName")?;
    let v = c.required(v, "aliasName");
    if let Some(s) = &v {
        c.str_len(s, "aliasName", 1, limits::MAX_ALIAS_NAME_CHARS);
        let ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'));
        c.pattern(s, "aliasName", ok, "^[a-zA-Z0-9:/_-]+$");
    }
    Ok(v)
}

/// The alias-name rules beyond the model pattern (aws-kms-api.md §1.4, §2.4), in order:
/// the `alias/` prefix, no `:`, a name after the prefix, and the reserved `alias/aws/`.
pub(crate) fn check_alias_name(name: &str) -> Result<(), KmsError> {
    if !name.starts_with("alias/") {
        return Err(KmsError::validation(
            "Alias must start with the prefix \"alias/\". Please see \
             https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html",
        ));
    }
    if name.contains(':') {
        return Err(KmsError::validation(format!("{name} contains invalid characters for an alias")));
    }
    if name == "alias/" {
        return Err(KmsError::new(
            crate::ErrorKind::InvalidAliasName,
            "Alias name must have a name after the alias/ prefix.",
        ));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::new(
            crate::ErrorKind::InvalidAliasName,
            format!("{name} is not a valid alias name: the prefix alias/aws/ is reserved for AWS managed keys."),
        ));
    }
    Ok(())
}

/// `PolicyName`: 1..128 word characters; absent means `default`.
fn policy_name(m: &mut Members, c: &mut Checks) -> Result<String, KmsError> {
    let name = m.string("PolicyName")?;
    if let Some(n) = &name {
        c.str_len(n, "policyName", 1, 128);
        let ok = n.chars().all(|ch| ch.is_alphanumeric() || ch == '_');
        c.pattern(n, "policyName", ok, "[\\w]+");
    }
    Ok(name.unwrap_or_else(|| crate::access::POLICY_NAME.to_owned()))
}

/// Only the policy named `default` exists (AWS API reference, GetKeyPolicy/PutKeyPolicy):
/// another name → `NotFoundException`.
fn check_policy_name(name: &str) -> Result<(), KmsError> {
    if name != crate::access::POLICY_NAME {
        return Err(KmsError::new(
            crate::ErrorKind::NotFound,
            format!("No such policy exists: {}. The only valid policy name is default.", crate::error::shorten(name)),
        ));
    }
    Ok(())
}

/// A grant id: 64 hex characters (AWS shows lowercase; case is folded). Anything else →
/// `InvalidGrantIdException`.
pub fn parse_grant_id(s: &str) -> Result<[u8; 32], KmsError> {
    let bad = || KmsError::new(crate::ErrorKind::InvalidGrantId, "Invalid grant ID.");
    if s.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// A principal member (`GranteePrincipal`, `RetiringPrincipal`): 1..256 characters of
/// `[\w+=,.@:/-]` (API model).
fn principal_member(m: &mut Members, c: &mut Checks, member: &str, required: bool) -> Result<Option<String>, KmsError> {
    let v = m.string(member)?;
    let v = if required { c.required(v, &camel(member)) } else { v };
    if let Some(p) = &v {
        c.str_len(p, &camel(member), 1, 256);
        let ok = p.chars().all(|ch| ch.is_alphanumeric() || "_+=,.@:/-".contains(ch));
        c.pattern(p, &camel(member), ok, "^[\\w+=,.@:/-]+$");
    }
    Ok(v)
}

/// Grant constraints: at most 8 pairs, values at most 384 characters (aws-kms-api.md §7).
const MAX_CONSTRAINT_PAIRS: usize = 8;
const MAX_CONSTRAINT_VALUE_CHARS: usize = 384;

fn create_grant(m: &mut Members, c: &mut Checks) -> Result<CreateGrantRequest, KmsError> {
    use crate::access::{GrantConstraint, GrantOperation};
    let key_id = key_id(m, c, "KeyId")?;
    let grantee = principal_member(m, c, "GranteePrincipal", true)?;
    let retiring = principal_member(m, c, "RetiringPrincipal", false)?;
    let ops = m.string_list("Operations")?;
    let ops = c.required(ops, "operations");
    let mut operations = Vec::new();
    if let Some(list) = ops {
        if list.is_empty() {
            c.push(violation(Shown::Hidden, "operations", "have length greater than or equal to 1"));
        }
        for (i, name) in list.into_iter().enumerate() {
            let member = format!("operations.{}.member", i + 1);
            let set = super::enums::value_set(GrantOperation::ALL.iter().map(|o| o.name()));
            if let Some(op) = c.enum_value(Some(name), &member, GrantOperation::parse, set) {
                operations.push(op);
            }
        }
    }
    operations.sort();
    operations.dedup();
    let constraints = m.object("Constraints")?;
    let mut constraint = None;
    let mut both = false;
    let mut dup_keys = false;
    if let Some(mut cm) = constraints {
        let equals = cm.string_map("EncryptionContextEquals")?;
        let subset = cm.string_map("EncryptionContextSubset")?;
        if cm.present("SourceArn") {
            return Err(KmsError::unsupported("The SourceArn grant constraint is not supported."));
        }
        both = equals.is_some() && subset.is_some();
        for (member, map) in
            [("constraints.encryptionContextEquals", &equals), ("constraints.encryptionContextSubset", &subset)]
        {
            if let Some(map) = map {
                if map.len() > MAX_CONSTRAINT_PAIRS {
                    c.push(violation(
                        Shown::Hidden,
                        member,
                        &format!("have number of entries less than or equal to {MAX_CONSTRAINT_PAIRS}"),
                    ));
                }
                if map.values().any(|v| v.chars().count() > MAX_CONSTRAINT_VALUE_CHARS) {
                    c.push(violation(
                        Shown::Hidden,
                        member,
                        &format!("have values of length less than or equal to {MAX_CONSTRAINT_VALUE_CHARS}"),
                    ));
                }
                if map.keys().any(|k| k.is_empty()) {
                    c.push(violation(Shown::Hidden, member, "have keys of length greater than or equal to 1"));
                }
                let folded: std::collections::BTreeSet<String> = map.keys().map(|k| k.to_lowercase()).collect();
                if folded.len() != map.len() {
                    dup_keys = true;
                }
            }
        }
        let pairs = |m: BTreeMap<String, String>| m.into_iter().collect::<Vec<_>>();
        constraint = match (equals, subset) {
            (Some(e), None) => Some(GrantConstraint::Equals(pairs(e))),
            (None, Some(s)) => Some(GrantConstraint::Subset(pairs(s))),
            _ => None,
        };
    }
    let grant_tokens = grant_tokens(m, c)?;
    let name = m.string("Name")?;
    if let Some(n) = &name {
        c.str_len(n, "name", 1, 256);
        let ok = n.chars().all(|ch| ch.is_ascii_alphanumeric() || ":/_-".contains(ch));
        c.pattern(n, "name", ok, "^[a-zA-Z0-9:/_-]+$");
    }
    let dry_run = m.boolean("DryRun")?.unwrap_or(false);
    if m.present("GranteeServicePrincipal") || m.present("RetiringServicePrincipal") {
        std::mem::take(c).finish()?;
        return Err(KmsError::unsupported(
            "Service principals in grants are not supported: Keyledger has no AWS services.",
        ));
    }
    std::mem::take(c).finish()?;
    if both {
        return Err(KmsError::validation(
            "Only one of EncryptionContextEquals and EncryptionContextSubset may be specified.",
        ));
    }
    if dup_keys {
        // Constraint keys compare case-insensitively: two keys that differ only in case would
        // make the constraint ambiguous.
        return Err(KmsError::validation(
            "Grant constraint keys must be unique ignoring case (they are compared case-insensitively).",
        ));
    }
    Ok(CreateGrantRequest {
        key_id: key_id.unwrap(),
        grantee_principal: grantee.unwrap(),
        retiring_principal: retiring,
        operations,
        constraint,
        grant_tokens,
        name,
        dry_run,
    })
}

impl Request {
    /// The grant tokens a request carries (empty for operations without `GrantTokens`).
    pub fn grant_tokens(&self) -> &[String] {
        match self {
            Request::DescribeKey(r) => &r.grant_tokens,
            Request::Encrypt(r) => &r.grant_tokens,
            Request::Decrypt(r) => &r.grant_tokens,
            Request::ReEncrypt(r) => &r.grant_tokens,
            Request::GenerateDataKey(r) | Request::GenerateDataKeyWithoutPlaintext(r) => &r.grant_tokens,
            Request::CreateGrant(r) => &r.grant_tokens,
            Request::ListGrants(r) => &r.grant_tokens,
            _ => &[],
        }
    }
}

fn grant_tokens(m: &mut Members, c: &mut Checks) -> Result<Vec<String>, KmsError> {
    let tokens = m.string_list("GrantTokens")?.unwrap_or_default();
    c.hidden_len(tokens.len(), "grantTokens", 0, limits::MAX_GRANT_TOKENS);
    for (i, t) in tokens.iter().enumerate() {
        c.hidden_len(t.chars().count(), &format!("grantTokens.{}.member", i + 1), 1, limits::MAX_GRANT_TOKEN_CHARS);
    }
    Ok(tokens)
}

fn paging(
    m: &mut Members,
    c: &mut Checks,
    (min, max, default): (i64, i64, u32),
) -> Result<(u32, Option<String>), KmsError> {
    let limit = m.integer("Limit")?;
    if let Some(l) = limit {
        c.range(l, "limit", min, max);
    }
    let marker = m.string("Marker")?;
    if let Some(s) = &marker {
        c.str_len(s, "marker", 1, limits::MAX_MARKER_CHARS);
        let ok = s.chars().all(|ch| ('\u{20}'..='\u{FF}').contains(&ch));
        c.pattern(s, "marker", ok, "[\\u0020-\\u00FF]*");
    }
    Ok((limit.map_or(default, |l| l.clamp(min, max) as u32), marker))
}

fn algorithm(m: &mut Members, c: &mut Checks, member: &str) -> Result<Option<EncryptionAlgorithm>, KmsError> {
    let v = m.string(member)?;
    Ok(c.enum_value(v, &camel(member), EncryptionAlgorithm::parse, EncryptionAlgorithm::value_set()))
}

fn dry_run_modifiers(m: &mut Members, c: &mut Checks) -> Result<Vec<DryRunModifier>, KmsError> {
    let list = m.string_list("DryRunModifiers")?.unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.into_iter().enumerate() {
        let member = format!("dryRunModifiers.{}.member", i + 1);
        if let Some(v) = c.enum_value(Some(s), &member, DryRunModifier::parse, DryRunModifier::value_set()) {
            out.push(v);
        }
    }
    Ok(out)
}

/// An encryption context with Keyledger's caps ([`limits`]); violations are reported on the
/// member without echoing the map.
fn encryption_context(m: &mut Members, c: &mut Checks, member: &str) -> Result<EncryptionContext, KmsError> {
    let ec = m.string_map(member)?.unwrap_or_default();
    let name = camel(member);
    if ec.len() > limits::MAX_ENCRYPTION_CONTEXT_PAIRS {
        c.push(violation(
            Shown::Hidden,
            &name,
            &format!("have number of entries less than or equal to {}", limits::MAX_ENCRYPTION_CONTEXT_PAIRS),
        ));
    }
    if ec.keys().any(|k| k.is_empty()) {
        c.push(violation(Shown::Hidden, &name, "have keys of length greater than or equal to 1"));
    }
    if ec.keys().any(|k| k.len() > limits::MAX_ENCRYPTION_CONTEXT_KEY_BYTES) {
        c.push(violation(
            Shown::Hidden,
            &name,
            &format!("have keys of length less than or equal to {} bytes", limits::MAX_ENCRYPTION_CONTEXT_KEY_BYTES),
        ));
    }
    if ec.values().any(|v| v.len() > limits::MAX_ENCRYPTION_CONTEXT_VALUE_BYTES) {
        c.push(violation(
            Shown::Hidden,
            &name,
            &format!(
                "have values of length less than or equal to {} bytes",
                limits::MAX_ENCRYPTION_CONTEXT_VALUE_BYTES
            ),
        ));
    }
    let total: usize = ec.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > limits::MAX_ENCRYPTION_CONTEXT_TOTAL_BYTES {
        c.push(violation(
            Shown::Hidden,
            &name,
            &format!(
                "have a total size of keys and values less than or equal to {} bytes",
                limits::MAX_ENCRYPTION_CONTEXT_TOTAL_BYTES
            ),
        ));
    }
    Ok(ec)
}

/// Model constraints of a tag list; returns the well-formed tags (request order).
fn check_tags(raw: Vec<super::json::RawTag>, c: &mut Checks) -> Vec<TagV1> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, (key, value)) in raw.into_iter().enumerate() {
        let n = i + 1;
        let key = c.required(key, &format!("tags.{n}.member.tagKey"));
        let value = c.required(value, &format!("tags.{n}.member.tagValue"));
        if let Some(k) = &key {
            c.str_len(k, &format!("tags.{n}.member.tagKey"), 1, limits::MAX_TAG_KEY_CHARS);
        }
        if let Some(v) = &value {
            c.str_len(v, &format!("tags.{n}.member.tagValue"), 0, limits::MAX_TAG_VALUE_CHARS);
        }
        if let (Some(key), Some(value)) = (key, value) {
            out.push(TagV1 { key, value });
        }
    }
    out
}

fn create_key(m: &mut Members, c: &mut Checks) -> Result<CreateKeyRequest, KmsError> {
    let policy = m.string("Policy")?;
    if let Some(p) = &policy {
        c.str_len(p, "policy", 1, limits::MAX_POLICY_CHARS);
    }
    let description = m.string("Description")?;
    if let Some(d) = &description {
        c.str_len(d, "description", 0, limits::MAX_DESCRIPTION_CHARS);
    }
    let usage = m.string("KeyUsage")?;
    let usage = c.enum_value(usage, "keyUsage", KeyUsage::parse, KeyUsage::value_set());
    let cmk_spec = m.string("CustomerMasterKeySpec")?;
    let cmk_spec = c.enum_value(
        cmk_spec,
        "customerMasterKeySpec",
        |s| KeySpec::parse(s).filter(|k| k.is_customer_master_key_spec()),
        super::enums::value_set(KeySpec::ALL.iter().filter(|k| k.is_customer_master_key_spec()).map(|k| k.as_str())),
    );
    let spec = m.string("KeySpec")?;
    let spec = c.enum_value(spec, "keySpec", KeySpec::parse, KeySpec::value_set());
    let origin = m.string("Origin")?;
    let origin = c.enum_value(origin, "origin", Origin::parse, Origin::value_set());
    let store = m.string("CustomKeyStoreId")?;
    if let Some(s) = &store {
        c.str_len(s, "customKeyStoreId", 1, limits::MAX_CUSTOM_KEY_STORE_ID_CHARS);
    }
    let bypass = m.boolean("BypassPolicyLockoutSafetyCheck")?.unwrap_or(false);
    let tags = m.tags("Tags")?.map(|t| check_tags(t, c)).unwrap_or_default();
    let multi_region = m.boolean("MultiRegion")?.unwrap_or(false);
    let xks = m.string("XksKeyId")?;
    if let Some(x) = &xks {
        c.str_len(x, "xksKeyId", 1, 128);
        let ok = x.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        c.pattern(x, "xksKeyId", ok, "^[a-zA-Z0-9-_.]+$");
    }
    std::mem::take(c).finish()?;

    // Semantic validation (AWS's texts).
    let key_spec = match (spec, cmk_spec) {
        (Some(a), Some(b)) if a != b => {
            return Err(KmsError::validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request.",
            ))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => KeySpec::SymmetricDefault,
    };
    let key_usage = match usage {
        Some(u) => u,
        None if key_spec == KeySpec::SymmetricDefault => KeyUsage::EncryptDecrypt,
        None => {
            return Err(KmsError::validation(
                "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.",
            ))
        }
    };
    if !key_spec.allowed_usages().contains(&key_usage) {
        return Err(KmsError::validation(format!("KeyUsage {key_usage} is not compatible with KeySpec {key_spec}")));
    }
    let origin = origin.unwrap_or(Origin::AwsKms);

    // Valid AWS values this build does not offer.
    if key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::unsupported(format!(
            "KeySpec {key_spec} is not supported yet: Keyledger creates only SYMMETRIC_DEFAULT keys so far."
        )));
    }
    match origin {
        Origin::AwsKms | Origin::External => {}
        other => {
            return Err(KmsError::unsupported(format!(
                "Origin {other} is not supported: Keyledger has no custom key stores."
            )))
        }
    }
    if store.is_some() {
        return Err(custom_key_store_unsupported());
    }
    if xks.is_some() {
        return Err(KmsError::unsupported("External key stores (XksKeyId) are not supported."));
    }
    if multi_region {
        return Err(KmsError::unsupported("Multi-Region keys (MultiRegion true) are not supported yet."));
    }
    Ok(CreateKeyRequest {
        policy,
        description: description.unwrap_or_default(),
        key_spec,
        key_usage,
        origin,
        tags,
        bypass_policy_lockout_safety_check: bypass,
    })
}
