//! AWS KMS string enums (aws-kms-api.md §2.1), with their wire text and the value lists AWS
//! prints in `Member must satisfy enum value set: [..]`.

use keyledger_events::codes;

macro_rules! aws_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[doc = concat!("`", $s, "`")] $var),+
        }

        impl $name {
            /// Every value, in the API model's order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The wire text, e.g. `SYMMETRIC_DEFAULT`.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }

            /// The value with this exact wire text.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($s => Some($name::$var),)+ _ => None }
            }

            /// `[A, B, …]`: the value set as validation messages print it.
            pub fn value_set() -> String {
                value_set(Self::ALL.iter().map(|v| v.as_str()))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) fn value_set<'a>(values: impl Iterator<Item = &'a str>) -> String {
    format!("[{}]", values.collect::<Vec<_>>().join(", "))
}

aws_enum!(
    /// AWS `KeySpec` (and the deprecated `CustomerMasterKeySpec`). Only `SYMMETRIC_DEFAULT`
    /// keys can be created so far; the others are answered with UnsupportedOperationException.
    KeySpec {
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        EccNistP256 = "ECC_NIST_P256",
        EccNistP384 = "ECC_NIST_P384",
        EccNistP521 = "ECC_NIST_P521",
        EccSecgP256k1 = "ECC_SECG_P256K1",
        EccNistEdwards25519 = "ECC_NIST_EDWARDS25519",
        MlDsa44 = "ML_DSA_44",
        MlDsa65 = "ML_DSA_65",
        MlDsa87 = "ML_DSA_87",
        Hmac224 = "HMAC_224",
        Hmac256 = "HMAC_256",
        Hmac384 = "HMAC_384",
        Hmac512 = "HMAC_512",
        Sm2 = "SM2",
        MlKem512 = "ML_KEM_512",
        MlKem768 = "ML_KEM_768",
        MlKem1024 = "ML_KEM_1024",
    }
);

impl KeySpec {
    /// Whether the value also belongs to the deprecated `CustomerMasterKeySpec` enum.
    pub fn is_customer_master_key_spec(self) -> bool {
        !matches!(
            self,
            KeySpec::EccNistEdwards25519
                | KeySpec::MlDsa44
                | KeySpec::MlDsa65
                | KeySpec::MlDsa87
                | KeySpec::MlKem512
                | KeySpec::MlKem768
                | KeySpec::MlKem1024
        )
    }

    /// The key usages a key of this spec may have (aws-kms-api.md §4.10).
    pub fn allowed_usages(self) -> &'static [KeyUsage] {
        use KeySpec::*;
        use KeyUsage::*;
        match self {
            SymmetricDefault => &[EncryptDecrypt],
            Rsa2048 | Rsa3072 | Rsa4096 => &[EncryptDecrypt, SignVerify],
            EccNistP256 | EccNistP384 | EccNistP521 => &[SignVerify, KeyAgreement],
            EccSecgP256k1 | EccNistEdwards25519 | MlDsa44 | MlDsa65 | MlDsa87 => &[SignVerify],
            Hmac224 | Hmac256 | Hmac384 | Hmac512 => &[GenerateVerifyMac],
            Sm2 => &[EncryptDecrypt, SignVerify, KeyAgreement],
            MlKem512 | MlKem768 | MlKem1024 => &[EncapsulateDecapsulate],
        }
    }

    /// The event code ([`codes::key_spec`]); `None` for specs the event schema cannot record.
    pub fn code(self) -> Option<u16> {
        match self {
            KeySpec::SymmetricDefault => Some(codes::key_spec::SYMMETRIC_DEFAULT),
            _ => None,
        }
    }

    /// The spec of an event code; `None` for a code this build does not know.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            codes::key_spec::SYMMETRIC_DEFAULT => Some(KeySpec::SymmetricDefault),
            _ => None,
        }
    }
}

aws_enum!(
    /// AWS `KeyUsageType`.
    KeyUsage {
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        SignVerify = "SIGN_VERIFY",
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
        KeyAgreement = "KEY_AGREEMENT",
        EncapsulateDecapsulate = "ENCAPSULATE_DECAPSULATE",
    }
);

impl KeyUsage {
    /// The event code ([`codes::key_usage`]); `None` for usages the event schema cannot record.
    pub fn code(self) -> Option<u16> {
        match self {
            KeyUsage::EncryptDecrypt => Some(codes::key_usage::ENCRYPT_DECRYPT),
            _ => None,
        }
    }

    /// The usage of an event code.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            codes::key_usage::ENCRYPT_DECRYPT => Some(KeyUsage::EncryptDecrypt),
            _ => None,
        }
    }
}

aws_enum!(
    /// AWS `OriginType`.
    Origin {
        AwsKms = "AWS_KMS",
        External = "EXTERNAL",
        AwsCloudhsm = "AWS_CLOUDHSM",
        ExternalKeyStore = "EXTERNAL_KEY_STORE",
    }
);

impl Origin {
    /// The event code ([`codes::origin`]).
    pub fn code(self) -> Option<u16> {
        match self {
            Origin::AwsKms => Some(codes::origin::AWS_KMS),
            Origin::External => Some(codes::origin::EXTERNAL),
            _ => None,
        }
    }

    /// The origin of an event code.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            codes::origin::AWS_KMS => Some(Origin::AwsKms),
            codes::origin::EXTERNAL => Some(Origin::External),
            _ => None,
        }
    }
}

aws_enum!(
    /// AWS `DataKeySpec` (GenerateDataKey `KeySpec`).
    DataKeySpec {
        Aes256 = "AES_256",
        Aes128 = "AES_128",
    }
);

impl DataKeySpec {
    /// Data key length in bytes: 32 for AES_256, 16 for AES_128.
    pub fn len_bytes(self) -> usize {
        match self {
            DataKeySpec::Aes256 => 32,
            DataKeySpec::Aes128 => 16,
        }
    }
}

aws_enum!(
    /// AWS `EncryptionAlgorithmSpec`. Symmetric keys accept only `SYMMETRIC_DEFAULT`.
    EncryptionAlgorithm {
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        Sm2pke = "SM2PKE",
    }
);

aws_enum!(
    /// AWS `IncludeKeyMaterial` (ListKeyRotations).
    IncludeKeyMaterial {
        AllKeyMaterial = "ALL_KEY_MATERIAL",
        RotationsOnly = "ROTATIONS_ONLY",
    }
);

aws_enum!(
    /// AWS `DryRunModifierType` (Decrypt, ReEncrypt).
    DryRunModifier {
        IgnoreCiphertext = "IGNORE_CIPHERTEXT",
    }
);

aws_enum!(
    /// AWS `AlgorithmSpec` (GetParametersForImport `WrappingAlgorithm`). `RSAES_PKCS1_V1_5`
    /// (refused by AWS since 2023-10-10) and `SM2PKE` (China Regions) are answered with
    /// UnsupportedOperationException.
    WrappingAlgorithm {
        RsaesPkcs1V15 = "RSAES_PKCS1_V1_5",
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        RsaAesKeyWrapSha1 = "RSA_AES_KEY_WRAP_SHA_1",
        RsaAesKeyWrapSha256 = "RSA_AES_KEY_WRAP_SHA_256",
        Sm2pke = "SM2PKE",
    }
);

impl WrappingAlgorithm {
    /// The event code ([`codes::wrapping_algorithm`]); `None` for the refused algorithms.
    pub fn code(self) -> Option<u16> {
        match self {
            WrappingAlgorithm::RsaesOaepSha1 => Some(codes::wrapping_algorithm::RSAES_OAEP_SHA_1),
            WrappingAlgorithm::RsaesOaepSha256 => Some(codes::wrapping_algorithm::RSAES_OAEP_SHA_256),
            WrappingAlgorithm::RsaAesKeyWrapSha1 => Some(codes::wrapping_algorithm::RSA_AES_KEY_WRAP_SHA_1),
            WrappingAlgorithm::RsaAesKeyWrapSha256 => Some(codes::wrapping_algorithm::RSA_AES_KEY_WRAP_SHA_256),
            WrappingAlgorithm::RsaesPkcs1V15 | WrappingAlgorithm::Sm2pke => None,
        }
    }

    /// The algorithm of an event code.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.code() == Some(code))
    }
}

aws_enum!(
    /// AWS `WrappingKeySpec` (GetParametersForImport). `SM2` (China Regions) is answered with
    /// UnsupportedOperationException.
    WrappingKeySpec {
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        Sm2 = "SM2",
    }
);

impl WrappingKeySpec {
    /// The event code ([`codes::wrapping_key_spec`]); `None` for SM2.
    pub fn code(self) -> Option<u16> {
        match self {
            WrappingKeySpec::Rsa2048 => Some(codes::wrapping_key_spec::RSA_2048),
            WrappingKeySpec::Rsa3072 => Some(codes::wrapping_key_spec::RSA_3072),
            WrappingKeySpec::Rsa4096 => Some(codes::wrapping_key_spec::RSA_4096),
            WrappingKeySpec::Sm2 => None,
        }
    }

    /// The spec of an event code.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.code() == Some(code))
    }
}

aws_enum!(
    /// AWS `ExpirationModelType` (ImportKeyMaterial `ExpirationModel`).
    ExpirationModel {
        KeyMaterialExpires = "KEY_MATERIAL_EXPIRES",
        KeyMaterialDoesNotExpire = "KEY_MATERIAL_DOES_NOT_EXPIRE",
    }
);

impl ExpirationModel {
    /// The event code ([`codes::expiration_model`]).
    pub fn code(self) -> u16 {
        match self {
            ExpirationModel::KeyMaterialExpires => codes::expiration_model::KEY_MATERIAL_EXPIRES,
            ExpirationModel::KeyMaterialDoesNotExpire => codes::expiration_model::KEY_MATERIAL_DOES_NOT_EXPIRE,
        }
    }

    /// The model of an event code.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.code() == code)
    }
}

aws_enum!(
    /// AWS `ImportType` (ImportKeyMaterial).
    ImportType {
        NewKeyMaterial = "NEW_KEY_MATERIAL",
        ExistingKeyMaterial = "EXISTING_KEY_MATERIAL",
    }
);
