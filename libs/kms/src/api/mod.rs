//! The AWS KMS API surface in scope: operations, AWS enums, typed requests parsed from AWS JSON
//! (with AWS's validation errors), and response shapes.

mod enums;
mod json;
mod request;
pub mod response;

pub use enums::*;
pub use request::*;

/// Which role answers an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// keyd: decides and appends an event (management operations).
    Management,
    /// cryptod: answered from the projection (read operations).
    Read,
    /// cryptod: cryptography with key material.
    Crypto,
}

/// The AWS KMS operations this build serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // each variant is the AWS operation of the same name
pub enum Operation {
    CreateKey,
    UpdateKeyDescription,
    EnableKey,
    DisableKey,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    EnableKeyRotation,
    DisableKeyRotation,
    RotateKeyOnDemand,
    GetParametersForImport,
    ImportKeyMaterial,
    DeleteImportedKeyMaterial,
    TagResource,
    UntagResource,
    CreateAlias,
    UpdateAlias,
    DeleteAlias,
    DescribeKey,
    ListKeys,
    ListAliases,
    GetKeyRotationStatus,
    ListKeyRotations,
    ListResourceTags,
    Encrypt,
    Decrypt,
    ReEncrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    GenerateRandom,
    PutKeyPolicy,
    GetKeyPolicy,
    ListKeyPolicies,
    CreateGrant,
    ListGrants,
    ListRetirableGrants,
    RetireGrant,
    RevokeGrant,
}

impl Operation {
    /// Every operation in scope.
    pub const ALL: [Operation; 37] = [
        Operation::CreateKey,
        Operation::UpdateKeyDescription,
        Operation::EnableKey,
        Operation::DisableKey,
        Operation::ScheduleKeyDeletion,
        Operation::CancelKeyDeletion,
        Operation::EnableKeyRotation,
        Operation::DisableKeyRotation,
        Operation::RotateKeyOnDemand,
        Operation::GetParametersForImport,
        Operation::ImportKeyMaterial,
        Operation::DeleteImportedKeyMaterial,
        Operation::TagResource,
        Operation::UntagResource,
        Operation::CreateAlias,
        Operation::UpdateAlias,
        Operation::DeleteAlias,
        Operation::DescribeKey,
        Operation::ListKeys,
        Operation::ListAliases,
        Operation::GetKeyRotationStatus,
        Operation::ListKeyRotations,
        Operation::ListResourceTags,
        Operation::Encrypt,
        Operation::Decrypt,
        Operation::ReEncrypt,
        Operation::GenerateDataKey,
        Operation::GenerateDataKeyWithoutPlaintext,
        Operation::GenerateRandom,
        Operation::PutKeyPolicy,
        Operation::GetKeyPolicy,
        Operation::ListKeyPolicies,
        Operation::CreateGrant,
        Operation::ListGrants,
        Operation::ListRetirableGrants,
        Operation::RetireGrant,
        Operation::RevokeGrant,
    ];

    /// Every operation in scope (same as [`Operation::ALL`]).
    pub fn all() -> impl Iterator<Item = Operation> {
        Self::ALL.into_iter()
    }

    /// The AWS PascalCase name, e.g. `"GenerateDataKeyWithoutPlaintext"` (the
    /// `X-Amz-Target: TrentService.<name>` suffix and the `kms.v1.<name>` endpoint).
    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateKey => "CreateKey",
            Operation::UpdateKeyDescription => "UpdateKeyDescription",
            Operation::EnableKey => "EnableKey",
            Operation::DisableKey => "DisableKey",
            Operation::ScheduleKeyDeletion => "ScheduleKeyDeletion",
            Operation::CancelKeyDeletion => "CancelKeyDeletion",
            Operation::EnableKeyRotation => "EnableKeyRotation",
            Operation::DisableKeyRotation => "DisableKeyRotation",
            Operation::RotateKeyOnDemand => "RotateKeyOnDemand",
            Operation::GetParametersForImport => "GetParametersForImport",
            Operation::ImportKeyMaterial => "ImportKeyMaterial",
            Operation::DeleteImportedKeyMaterial => "DeleteImportedKeyMaterial",
            Operation::TagResource => "TagResource",
            Operation::UntagResource => "UntagResource",
            Operation::CreateAlias => "CreateAlias",
            Operation::UpdateAlias => "UpdateAlias",
            Operation::DeleteAlias => "DeleteAlias",
            Operation::DescribeKey => "DescribeKey",
            Operation::ListKeys => "ListKeys",
            Operation::ListAliases => "ListAliases",
            Operation::GetKeyRotationStatus => "GetKeyRotationStatus",
            Operation::ListKeyRotations => "ListKeyRotations",
            Operation::ListResourceTags => "ListResourceTags",
            Operation::Encrypt => "Encrypt",
            Operation::Decrypt => "Decrypt",
            Operation::ReEncrypt => "ReEncrypt",
            Operation::GenerateDataKey => "GenerateDataKey",
            Operation::GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            Operation::GenerateRandom => "GenerateRandom",
            Operation::PutKeyPolicy => "PutKeyPolicy",
            Operation::GetKeyPolicy => "GetKeyPolicy",
            Operation::ListKeyPolicies => "ListKeyPolicies",
            Operation::CreateGrant => "CreateGrant",
            Operation::ListGrants => "ListGrants",
            Operation::ListRetirableGrants => "ListRetirableGrants",
            Operation::RetireGrant => "RetireGrant",
            Operation::RevokeGrant => "RevokeGrant",
        }
    }

    /// The operation with this exact (case-sensitive) AWS name; `None` means
    /// `UnknownOperationException`.
    pub fn from_name(name: &str) -> Option<Operation> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Which role serves the operation.
    pub fn role(self) -> Role {
        use Operation::*;
        match self {
            CreateKey
            | UpdateKeyDescription
            | EnableKey
            | DisableKey
            | ScheduleKeyDeletion
            | CancelKeyDeletion
            | EnableKeyRotation
            | DisableKeyRotation
            | RotateKeyOnDemand
            | GetParametersForImport
            | ImportKeyMaterial
            | DeleteImportedKeyMaterial
            | TagResource
            | UntagResource
            | CreateAlias
            | UpdateAlias
            | DeleteAlias
            | PutKeyPolicy
            | CreateGrant
            | RetireGrant
            | RevokeGrant => Role::Management,
            DescribeKey | ListKeys | ListAliases | GetKeyRotationStatus | ListKeyRotations | ListResourceTags
            | GetKeyPolicy | ListKeyPolicies | ListGrants | ListRetirableGrants => Role::Read,
            Encrypt | Decrypt | ReEncrypt | GenerateDataKey | GenerateDataKeyWithoutPlaintext | GenerateRandom => {
                Role::Crypto
            }
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
