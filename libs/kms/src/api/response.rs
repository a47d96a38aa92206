//! Response shapes (aws-kms-api.md §1.2, §2): timestamps as epoch seconds, full key ARNs in
//! every top-level `KeyId`, absent members omitted (never `null`).
//!
//! Crypto responses carry plaintext, so they are built straight into a zeroizing byte buffer
//! (never through `serde_json::Value`, whose strings are not zeroized).

use base64::Engine as _;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::ids::Realm;
use crate::state::{Key, KeyState};

/// A timestamp as AWS sends it: seconds since the epoch, a JSON number, fractional when the
/// milliseconds are not zero (e.g. `1593622000.191`).
pub fn epoch_seconds(unix_ms: u64) -> Value {
    if unix_ms.is_multiple_of(1000) {
        Value::from(unix_ms / 1000)
    } else {
        Value::from(unix_ms as f64 / 1000.0)
    }
}

/// `KeyMetadata` of a key (API reference, KeyMetadata): for a symmetric AWS_KMS key exactly
/// `AWSAccountId, Arn, CreationDate, CurrentKeyMaterialId, CustomerMasterKeySpec, Description,
/// Enabled, EncryptionAlgorithms, KeyId, KeyManager, KeySpec, KeyState, KeyUsage, MultiRegion,
/// Origin`, plus `DeletionDate` and `PendingDeletionWindowInDays` while PendingDeletion.
/// `KeyId` here is the bare id (the ARN is `Arn`); `CurrentKeyMaterialId` is the 64-hex
/// material id, omitted when the key has no material.
pub fn key_metadata(key: &Key, realm: &Realm) -> Value {
    let mut m = Map::new();
    m.insert("AWSAccountId".into(), json!(key.account));
    m.insert("KeyId".into(), json!(key.id.to_string()));
    m.insert("Arn".into(), json!(key.arn(realm)));
    m.insert("CreationDate".into(), epoch_seconds(key.created_unix_ms));
    m.insert("Enabled".into(), json!(key.state == KeyState::Enabled));
    m.insert("Description".into(), json!(key.description));
    m.insert("KeyUsage".into(), json!(key.key_usage.as_str()));
    m.insert("KeyState".into(), json!(key.state.as_str()));
    m.insert("Origin".into(), json!(key.origin.as_str()));
    m.insert("KeyManager".into(), json!("CUSTOMER"));
    m.insert("CustomerMasterKeySpec".into(), json!(key.key_spec.as_str()));
    m.insert("KeySpec".into(), json!(key.key_spec.as_str()));
    if key.key_usage == crate::api::KeyUsage::EncryptDecrypt {
        m.insert("EncryptionAlgorithms".into(), json!(["SYMMETRIC_DEFAULT"]));
    }
    m.insert("MultiRegion".into(), json!(key.multi_region));
    if let Some(mat) = key.current_material() {
        m.insert("CurrentKeyMaterialId".into(), json!(hex::encode(mat.material_id)));
    }
    if key.origin == crate::api::Origin::External {
        if let Some(model) = key.import().expiration_model {
            m.insert("ExpirationModel".into(), json!(model.as_str()));
        }
        if let Some(t) = key.import().valid_to_unix_ms {
            m.insert("ValidTo".into(), epoch_seconds(t));
        }
    }
    if let Some(d) = key.deletion {
        m.insert("DeletionDate".into(), epoch_seconds(d.deletion_unix_ms));
        m.insert("PendingDeletionWindowInDays".into(), json!(d.window_days));
    }
    Value::Object(m)
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Builds a flat JSON object whose members are strings, into a zeroizing buffer reserved up
/// front (so no reallocation leaves a copy of a secret behind).
struct SecretJson {
    out: Zeroizing<Vec<u8>>,
}

/// Members of a crypto response: (name, value) where the value is plain text or bytes to
/// base64.
enum Field<'a> {
    Text(&'a str),
    Blob(&'a [u8]),
}

impl SecretJson {
    fn build(fields: &[(&str, Field<'_>)]) -> Zeroizing<Vec<u8>> {
        // Worst case per field: quotes, colon, comma, escaped name and value (6 bytes per
        // char for \u escapes), base64 growth 4/3 rounded up.
        let cap = 2 + fields
            .iter()
            .map(|(k, v)| {
                6 + k.len() * 6
                    + match v {
                        Field::Text(t) => t.len() * 6,
                        Field::Blob(b) => b.len().div_ceil(3) * 4,
                    }
            })
            .sum::<usize>();
        let mut j = SecretJson { out: Zeroizing::new(Vec::with_capacity(cap)) };
        let reserved = j.out.capacity();
        j.out.push(b'{');
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                j.out.push(b',');
            }
            j.text(name);
            j.out.push(b':');
            match value {
                Field::Text(t) => j.text(t),
                Field::Blob(b) => {
                    j.out.push(b'"');
                    let start = j.out.len();
                    j.out.resize(start + b.len().div_ceil(3) * 4, 0);
                    let n = B64.encode_slice(b, &mut j.out[start..]).expect("sized above");
                    j.out.truncate(start + n);
                    j.out.push(b'"');
                }
            }
        }
        j.out.push(b'}');
        debug_assert_eq!(j.out.capacity(), reserved, "a reallocation would leave a copy behind");
        j.out
    }

    fn text(&mut self, s: &str) {
        self.out.push(b'"');
        for c in s.chars() {
            match c {
                '"' => self.out.extend_from_slice(b"\\\""),
                '\\' => self.out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 => self.out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
                c => {
                    let mut buf = [0u8; 4];
                    self.out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        self.out.push(b'"');
    }
}

/// Encrypt: `{"CiphertextBlob", "KeyId" (ARN), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}`.
pub fn encrypt_body(key_arn: &str, ciphertext_blob: &[u8]) -> Zeroizing<Vec<u8>> {
    SecretJson::build(&[
        ("CiphertextBlob", Field::Blob(ciphertext_blob)),
        ("KeyId", Field::Text(key_arn)),
        ("EncryptionAlgorithm", Field::Text("SYMMETRIC_DEFAULT")),
    ])
}

/// Decrypt: `{"KeyId" (ARN), "Plaintext", "EncryptionAlgorithm", "KeyMaterialId" (64 hex)}`.
pub fn decrypt_body(key_arn: &str, plaintext: &[u8], key_material_id: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    let mid = hex::encode(key_material_id);
    SecretJson::build(&[
        ("KeyId", Field::Text(key_arn)),
        ("Plaintext", Field::Blob(plaintext)),
        ("EncryptionAlgorithm", Field::Text("SYMMETRIC_DEFAULT")),
        ("KeyMaterialId", Field::Text(&mid)),
    ])
}

/// ReEncrypt: `{"CiphertextBlob", "SourceKeyId" (ARN), "KeyId" (destination ARN),
/// "SourceEncryptionAlgorithm", "DestinationEncryptionAlgorithm", "SourceKeyMaterialId",
/// "DestinationKeyMaterialId"}`.
pub fn re_encrypt_body(
    source_key_arn: &str,
    destination_key_arn: &str,
    ciphertext_blob: &[u8],
    source_key_material_id: &[u8; 32],
    destination_key_material_id: &[u8; 32],
) -> Zeroizing<Vec<u8>> {
    let smid = hex::encode(source_key_material_id);
    let dmid = hex::encode(destination_key_material_id);
    SecretJson::build(&[
        ("CiphertextBlob", Field::Blob(ciphertext_blob)),
        ("SourceKeyId", Field::Text(source_key_arn)),
        ("KeyId", Field::Text(destination_key_arn)),
        ("SourceEncryptionAlgorithm", Field::Text("SYMMETRIC_DEFAULT")),
        ("DestinationEncryptionAlgorithm", Field::Text("SYMMETRIC_DEFAULT")),
        ("SourceKeyMaterialId", Field::Text(&smid)),
        ("DestinationKeyMaterialId", Field::Text(&dmid)),
    ])
}

/// GenerateDataKey (with `plaintext`) or GenerateDataKeyWithoutPlaintext (`None`):
/// `{"CiphertextBlob", "Plaintext"?, "KeyId" (ARN), "KeyMaterialId"}`.
pub fn generate_data_key_body(
    key_arn: &str,
    ciphertext_blob: &[u8],
    plaintext: Option<&[u8]>,
    key_material_id: &[u8; 32],
) -> Zeroizing<Vec<u8>> {
    let mid = hex::encode(key_material_id);
    let mut fields = vec![("CiphertextBlob", Field::Blob(ciphertext_blob))];
    if let Some(p) = plaintext {
        fields.push(("Plaintext", Field::Blob(p)));
    }
    fields.push(("KeyId", Field::Text(key_arn)));
    fields.push(("KeyMaterialId", Field::Text(&mid)));
    SecretJson::build(&fields)
}

/// GenerateRandom: `{"Plaintext"}`.
pub fn generate_random_body(random: &[u8]) -> Zeroizing<Vec<u8>> {
    SecretJson::build(&[("Plaintext", Field::Blob(random))])
}
