//! What cryptod may use: key resolution and state for crypto operations, decryption by the key
//! a ciphertext names, algorithms, and crypto response bodies (aws-kms-api.md §3.3, §4.2).

mod common;

use common::*;
use keyledger_events::codes;
use keyledger_kms::api::response;
use keyledger_kms::api::EncryptionAlgorithm;
use keyledger_kms::{
    check_encryption_algorithm, resolve_for_crypto, resolve_for_decrypt, ErrorKind, KeyId, KmsError, Operation,
};
use serde_json::{json, Value};

fn crypto(w: &World, input: &str) -> Result<keyledger_kms::CryptoKey, (ErrorKind, String)> {
    resolve_for_crypto(
        &w.p,
        &w.realm,
        &keyledger_kms::Access::new(&w.caller, "Encrypt", w.now),
        input,
        Operation::Encrypt,
        w.now,
    )
    .map_err(|e| (e.kind, e.message))
}

fn decrypt(w: &World, key: &KeyId, version: u32, supplied: Option<&str>) -> Result<keyledger_kms::CryptoKey, KmsError> {
    resolve_for_decrypt(
        &w.p,
        &w.realm,
        &keyledger_kms::Access::new(&w.caller, "Decrypt", w.now),
        *key.as_bytes(),
        version,
        supplied,
        w.now,
    )
}

#[test]
fn crypto_operations_accept_every_key_reference_form() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/app","TargetKeyId":"{id}"}}"#));
    let arn = w.arn(&id);
    for input in [id.to_string(), arn.clone(), "alias/app".into(), format!("arn:aws:kms:us-east-1:{ACCOUNT}:alias/app")]
    {
        let k = crypto(&w, &input).unwrap();
        assert_eq!(k.arn, arn, "{input}: responses name the key by its full ARN");
        assert_eq!((k.account.as_str(), k.key_id, k.current_version), (ACCOUNT, id, 1));
        assert_eq!(k.current_material(), Some(&material(&id, 1)));
        assert_eq!(k.material(2), None);
    }
}

#[test]
fn crypto_operations_refuse_keys_by_state_with_aws_texts() {
    let mut w = World::new();
    let enabled = w.create_key();
    let disabled = w.create_key();
    let pending = w.create_key();
    let import = w.given_key(codes::origin::EXTERNAL, false);
    w.ok(Operation::DisableKey, &format!(r#"{{"KeyId":"{disabled}"}}"#));
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{pending}"}}"#));
    let unknown = w.fresh_key_id();
    assert!(crypto(&w, &enabled.to_string()).is_ok());
    let table = [
        (disabled, ErrorKind::Disabled, format!("{} is disabled.", w.arn(&disabled))),
        (pending, ErrorKind::KMSInvalidState, format!("{} is pending deletion.", w.arn(&pending))),
        (import, ErrorKind::KMSInvalidState, format!("{} is pending import.", w.arn(&import))),
        (unknown, ErrorKind::NotFound, format!("Key '{}' does not exist", w.arn(&unknown))),
    ];
    for (id, kind, message) in table {
        assert_eq!(crypto(&w, &id.to_string()), Err((kind, message.clone())));
        // Decrypting with the key named by the ciphertext: same state rules (unknown key aside).
        if kind != ErrorKind::NotFound {
            let e = decrypt(&w, &id, 1, None).unwrap_err();
            assert_eq!((e.kind, e.message), (kind, message));
        }
    }
    assert_eq!(
        crypto(&w, "alias/none"),
        Err((ErrorKind::NotFound, format!("Alias arn:aws:kms:us-east-1:{ACCOUNT}:alias/none is not found.")))
    );
    assert_eq!(crypto(&w, "nope"), Err((ErrorKind::NotFound, "Invalid keyId 'nope'".into())));
    let arn = w.arn(&enabled);
    w.caller = caller(OTHER_ACCOUNT);
    let (kind, message) = crypto(&w, &arn).unwrap_err();
    assert_eq!(kind, ErrorKind::AccessDenied);
    assert!(message.contains(&format!("kms:Encrypt on resource: {arn}")), "{message}");
}

#[test]
fn decrypt_uses_the_key_and_version_the_ciphertext_names() {
    let mut w = World::new();
    let id = w.create_key();
    let other = w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/app","TargetKeyId":"{id}"}}"#));
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/other","TargetKeyId":"{other}"}}"#));
    w.ok(Operation::RotateKeyOnDemand, &format!(r#"{{"KeyId":"{id}"}}"#));
    let arn = w.arn(&id);
    // No KeyId, or any form naming the same key.
    for supplied in [None, Some(id.to_string()), Some(arn.clone()), Some("alias/app".into())] {
        let k = decrypt(&w, &id, 1, supplied.as_deref()).unwrap();
        assert_eq!(k.arn, arn);
        assert_eq!(k.material(1), Some(&material(&id, 1)), "old material for old ciphertexts");
        assert_eq!(k.current_material(), Some(&material(&id, 2)));
    }
    // Another key named → IncorrectKeyException (even through an alias).
    for supplied in [other.to_string(), "alias/other".into(), w.arn(&other)] {
        assert_eq!(decrypt(&w, &id, 1, Some(&supplied)).unwrap_err(), KmsError::incorrect_key(), "{supplied}");
    }
    // A key id that exists nowhere is still the wrong key for this ciphertext.
    let nowhere = w.fresh_key_id();
    assert_eq!(decrypt(&w, &id, 1, Some(&nowhere.to_string())).unwrap_err(), KmsError::incorrect_key());
    // Syntax errors of the supplied KeyId come first; unknown aliases are NotFound.
    assert_eq!(decrypt(&w, &id, 1, Some("bad-id")).unwrap_err(), KmsError::invalid_key_id("bad-id"));
    assert_eq!(decrypt(&w, &id, 1, Some("alias/none")).unwrap_err().kind, ErrorKind::NotFound);
    // A version the key never had: InvalidCiphertextException with an empty message.
    assert_eq!(decrypt(&w, &id, 3, None).unwrap_err(), KmsError::invalid_ciphertext());
    assert_eq!(decrypt(&w, &id, 0, None).unwrap_err(), KmsError::invalid_ciphertext());
}

#[test]
fn a_ciphertext_naming_an_unknown_or_foreign_key_is_a_vague_access_denial() {
    let mut w = World::new();
    let mine = w.create_key();
    let unknown = w.fresh_key_id();
    let vague = KmsError::ciphertext_key_access_denied();
    assert_eq!(
        vague.message,
        "The ciphertext refers to a customer master key that does not exist, does not exist in this region, or you are not allowed to access."
    );
    assert_eq!(decrypt(&w, &unknown, 1, None).unwrap_err(), vague);
    // Checked before the supplied KeyId is compared: no existence oracle.
    assert_eq!(decrypt(&w, &unknown, 1, Some(&mine.to_string())).unwrap_err(), vague);
    w.caller = caller(OTHER_ACCOUNT);
    assert_eq!(decrypt(&w, &mine, 1, None).unwrap_err(), vague);
    assert_eq!(decrypt(&w, &mine, 1, Some(&format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{mine}"))).unwrap_err(), vague);
}

#[test]
fn symmetric_keys_accept_only_symmetric_default() {
    let mut w = World::new();
    let id = w.create_key();
    let k = crypto(&w, &id.to_string()).unwrap();
    assert!(check_encryption_algorithm(&k, None).is_ok());
    assert!(check_encryption_algorithm(&k, Some(EncryptionAlgorithm::SymmetricDefault)).is_ok());
    let e = check_encryption_algorithm(&k, Some(EncryptionAlgorithm::RsaesOaepSha256)).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::InvalidKeyUsage, "Algorithm RSAES_OAEP_SHA_256 is incompatible with key spec SYMMETRIC_DEFAULT.")
    );
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("valid JSON")
}

#[test]
fn crypto_response_bodies_have_the_aws_shapes() {
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let dest = "arn:aws:kms:us-east-1:111122223333:key/0000abcd-12ab-34cd-56ef-1234567890ab";
    let mid = [0xab; 32];
    let mid2 = [0x01; 32];
    assert_eq!(
        parse(&response::encrypt_body(arn, &[1, 2, 3])),
        json!({"CiphertextBlob": "AQID", "KeyId": arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
    );
    assert_eq!(
        parse(&response::decrypt_body(arn, b"hello", &mid)),
        json!({"KeyId": arn, "Plaintext": "aGVsbG8=", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "KeyMaterialId": "ab".repeat(32)})
    );
    assert_eq!(
        parse(&response::re_encrypt_body(arn, dest, &[9], &mid, &mid2)),
        json!({
            "CiphertextBlob": "CQ==", "SourceKeyId": arn, "KeyId": dest,
            "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT", "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "SourceKeyMaterialId": "ab".repeat(32), "DestinationKeyMaterialId": "01".repeat(32),
        })
    );
    assert_eq!(
        parse(&response::generate_data_key_body(arn, &[1], Some(&[0xff; 32]), &mid)),
        json!({"CiphertextBlob": "AQ==", "Plaintext": "//////////////////////////////////////////8=", "KeyId": arn, "KeyMaterialId": "ab".repeat(32)})
    );
    assert_eq!(
        parse(&response::generate_data_key_body(arn, &[1], None, &mid)),
        json!({"CiphertextBlob": "AQ==", "KeyId": arn, "KeyMaterialId": "ab".repeat(32)})
    );
    for n in [1usize, 2, 3, 1024] {
        let random = vec![7u8; n];
        let v = parse(&response::generate_random_body(&random));
        let decoded =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v["Plaintext"].as_str().unwrap())
                .unwrap();
        assert_eq!(decoded, random);
    }
    // Text is escaped.
    assert_eq!(parse(&response::encrypt_body("a\"b\\c\n", &[]))["KeyId"], json!("a\"b\\c\n"));
}
