//! Cryptographic operations over NATS against a real nats-server and the real roles.

use keyledger_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_then_decrypt_round_trips_without_a_key_id() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let enc = h
        .ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"attack at dawn"), "EncryptionContext": {"app": "orders", "tenant": "t-42"}}))
        .await;
    let arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}");
    assert_eq!(enc["KeyId"], arn, "responses name keys by full ARN");
    assert_eq!(enc["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    // Context order does not matter; the blob names the key, so no KeyId is needed.
    let dec = h
        .ok(
            "Decrypt",
            json!({"CiphertextBlob": enc["CiphertextBlob"], "EncryptionContext": {"tenant": "t-42", "app": "orders"}}),
        )
        .await;
    assert_eq!(unb64(&dec["Plaintext"]), b"attack at dawn");
    assert_eq!(dec["KeyId"], arn);
    assert_eq!(dec["KeyMaterialId"].as_str().unwrap().len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_truncated_or_miscontexted_ciphertext_is_invalid_ciphertext() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let enc =
        h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"secret"), "EncryptionContext": {"a": "1"}})).await;
    let blob = unb64(&enc["CiphertextBlob"]);

    // Wrong, missing, extra and altered context pairs.
    for ctx in [json!({}), json!({"a": "2"}), json!({"A": "1"}), json!({"a": "1", "b": "2"})] {
        let (name, message) = h.err("Decrypt", json!({"CiphertextBlob": b64(&blob), "EncryptionContext": ctx})).await;
        assert_eq!(name, "InvalidCiphertextException", "context {ctx}");
        assert_eq!(message, "", "InvalidCiphertextException carries no detail");
    }
    // A flipped byte after the header (nonce, commitment, body, tag) and truncations.
    for i in [23, 40, 60, blob.len() - 20, blob.len() - 1] {
        let mut t = blob.clone();
        t[i] ^= 0x01;
        let (name, _) = h.err("Decrypt", json!({"CiphertextBlob": b64(&t), "EncryptionContext": {"a": "1"}})).await;
        assert_eq!(name, "InvalidCiphertextException", "flip at byte {i}");
    }
    for len in [1, 10, blob.len() - 1] {
        let (name, _) =
            h.err("Decrypt", json!({"CiphertextBlob": b64(&blob[..len]), "EncryptionContext": {"a": "1"}})).await;
        assert_eq!(name, "InvalidCiphertextException", "truncated to {len}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_with_another_key_id_is_incorrect_key() {
    let h = Harness::start().await;
    let k1 = h.create_key().await;
    let k2 = h.create_key().await;
    let enc = h.ok("Encrypt", json!({"KeyId": k1, "Plaintext": b64(b"x")})).await;
    let (name, message) = h.err("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "KeyId": k2})).await;
    assert_eq!(name, "IncorrectKeyException");
    assert_eq!(message, "The key ID in the request does not identify a CMK that can perform this operation.");
    // The right key, by alias, is fine.
    h.ok("CreateAlias", json!({"AliasName": "alias/one", "TargetKeyId": k1})).await;
    let dec = h.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "KeyId": "alias/one"})).await;
    assert_eq!(unb64(&dec["Plaintext"]), b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_material_keeps_decrypting_after_on_demand_rotations() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let before = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"v1 data")})).await;
    for _ in 0..3 {
        h.ok("RotateKeyOnDemand", json!({"KeyId": key})).await;
    }
    let after = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"v4 data")})).await;
    let d1 = h.ok("Decrypt", json!({"CiphertextBlob": before["CiphertextBlob"]})).await;
    let d4 = h.ok("Decrypt", json!({"CiphertextBlob": after["CiphertextBlob"]})).await;
    assert_eq!(unb64(&d1["Plaintext"]), b"v1 data");
    assert_eq!(unb64(&d4["Plaintext"]), b"v4 data");
    assert_ne!(d1["KeyMaterialId"], d4["KeyMaterialId"], "each rotation brings new material");
    let rotations = h.ok("ListKeyRotations", json!({"KeyId": key})).await;
    assert_eq!(rotations["Rotations"].as_array().unwrap().len(), 3);
    let current = h.ok("DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(current["KeyMetadata"]["CurrentKeyMaterialId"], d4["KeyMaterialId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_data_key_variants_and_reencrypt() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let ctx = json!({"purpose": "files"});
    for (req, len) in [
        (json!({"KeySpec": "AES_256"}), 32usize),
        (json!({"KeySpec": "AES_128"}), 16),
        (json!({"NumberOfBytes": 1}), 1),
        (json!({"NumberOfBytes": 1024}), 1024),
    ] {
        let mut r = req.clone();
        r["KeyId"] = json!(key);
        r["EncryptionContext"] = ctx.clone();
        let dk = h.ok("GenerateDataKey", r).await;
        let plain = unb64(&dk["Plaintext"]);
        assert_eq!(plain.len(), len);
        let dec = h.ok("Decrypt", json!({"CiphertextBlob": dk["CiphertextBlob"], "EncryptionContext": ctx})).await;
        assert_eq!(unb64(&dec["Plaintext"]), plain);
    }
    let wp = h.ok("GenerateDataKeyWithoutPlaintext", json!({"KeyId": key, "KeySpec": "AES_256"})).await;
    assert!(wp.get("Plaintext").is_none());
    let other = h.create_key().await;
    let re = h
        .ok("ReEncrypt", json!({"CiphertextBlob": wp["CiphertextBlob"], "DestinationKeyId": other, "DestinationEncryptionContext": {"moved": "yes"}}))
        .await;
    assert!(re["SourceKeyId"].as_str().unwrap().ends_with(&key));
    assert!(re["KeyId"].as_str().unwrap().ends_with(&other));
    assert!(re.get("Plaintext").is_none());
    let (name, _) = h.err("Decrypt", json!({"CiphertextBlob": re["CiphertextBlob"]})).await;
    assert_eq!(name, "InvalidCiphertextException", "the new context is required");
    let back =
        h.ok("Decrypt", json!({"CiphertextBlob": re["CiphertextBlob"], "EncryptionContext": {"moved": "yes"}})).await;
    assert_eq!(unb64(&back["Plaintext"]).len(), 32);

    for n in [1, 1024] {
        let r = h.ok("GenerateRandom", json!({"NumberOfBytes": n})).await;
        assert_eq!(unb64(&r["Plaintext"]).len(), n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_encrypt_at_once_from_another_client_works() {
    // The second client has never seen the CreateKey's log position: the worker catches up
    // to the head before answering NotFound.
    let h = Harness::start().await;
    let other = h.new_client().await;
    for _ in 0..5 {
        let key = h.create_key().await;
        let r = other.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"x")})).await;
        assert!(r.is_ok(), "encrypt right after create: {:?}", r.err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_on_disabled_or_pending_deletion_keys_names_the_state() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}");
    let enc = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await;
    h.ok("DisableKey", json!({"KeyId": key})).await;
    for (op, req) in [
        ("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})),
        ("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})),
        ("GenerateDataKey", json!({"KeyId": key, "KeySpec": "AES_256"})),
        ("GenerateDataKeyWithoutPlaintext", json!({"KeyId": key, "NumberOfBytes": 8})),
        ("ReEncrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "DestinationKeyId": key})),
    ] {
        assert_eq!(h.err(op, req).await, ("DisabledException".to_owned(), format!("{arn} is disabled.")), "{op}");
    }
    h.ok("ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": 7})).await;
    let (name, message) = h.err("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await;
    assert_eq!((name.as_str(), message), ("KMSInvalidStateException", format!("{arn} is pending deletion.")));
    let (name, _) = h.err("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    assert_eq!(name, "KMSInvalidStateException");
}

/// Matrix row 17 (audit-integrity.md §3), live: key A's wrapped material copied over key B's
/// in the material store. B's event commits to its own wrapped bytes (digest) and the wrap is
/// bound to (account, key id, version) as AAD, so after a restart B fails closed with an
/// integrity error — never A's key, never a plaintext — and A keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_material_swapped_between_keys_fails_closed_for_that_key_only() {
    let mut h = Harness::start().await;
    let a = h.create_key().await;
    let b = h.create_key().await;
    let ct_a = h.ok("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"of a")})).await;
    let ct_b = h.ok("Encrypt", json!({"KeyId": b, "Plaintext": b64(b"of b")})).await;

    let js = keyledger_log::jetstream(h.service_nats().await);
    let store = js.get_stream(keyledger_events::names::MATERIAL_STREAM).await.unwrap();
    let last = |key: &str| {
        let mut store = store.clone();
        let filter = keyledger_events::names::material_filter(ACCOUNT, key);
        async move {
            let info = store.info().await.unwrap().state.last_sequence;
            let mut found = None;
            for seq in 1..=info {
                if let Ok(m) = store.direct_get(seq).await {
                    if m.subject.starts_with(filter.trim_end_matches('>')) {
                        found = Some(m);
                    }
                }
            }
            found.expect("the key's material message")
        }
    };
    let (mat_a, mat_b) = (last(&a).await, last(&b).await);
    assert_ne!(mat_a.payload, mat_b.payload);
    assert!(store.delete_message(mat_b.sequence).await.unwrap());
    js.publish(mat_b.subject.to_string(), mat_a.payload.clone()).await.unwrap().await.unwrap();

    // A restart empties every cache: material is read from the store again.
    h.restart().await;
    let (name, _) = h.err("Encrypt", json!({"KeyId": b, "Plaintext": b64(b"x")})).await;
    assert_eq!(name, "KMSInternalException", "B's material fails its integrity check");
    let (name, message) = h.err("Decrypt", json!({"CiphertextBlob": ct_b["CiphertextBlob"]})).await;
    assert_eq!(name, "KMSInternalException");
    assert!(!message.contains("of b") && !message.contains(&b64(b"of b")));
    let dec = h.ok("Decrypt", json!({"CiphertextBlob": ct_a["CiphertextBlob"]})).await;
    assert_eq!(unb64(&dec["Plaintext"]), b"of a", "A is untouched");
}
