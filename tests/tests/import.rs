//! Imported key material (Origin EXTERNAL) and deletion that destroys, end to end: a real
//! nats-server, the real roles, material wrapped on the client side exactly as AWS documents it
//! (32 random bytes, RSA-OAEP or RSA-AES key wrap with the returned public key; the crypto
//! crate's tests check the same wrapping against the `openssl` CLI), and a search of the
//! server's storage directory for the wrapped bytes after deletion.

use std::path::Path;
use std::time::Duration;

use keyledger_crypto::{wrap_for_import, WrappingAlgorithm};
use keyledger_tests::*;
use serde_json::json;

const DAY_MS: i64 = 86_400_000;

async fn external_key(h: &Harness) -> String {
    let created = h.ok("CreateKey", json!({"Origin": "EXTERNAL", "Description": "imported"})).await;
    assert_eq!(created["KeyMetadata"]["KeyState"], "PendingImport");
    assert_eq!(created["KeyMetadata"]["Origin"], "EXTERNAL");
    assert!(created["KeyMetadata"].get("CurrentKeyMaterialId").is_none());
    created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

/// 32 random bytes (two v4 UUIDs: 244 random bits is plenty for a test key).
fn random_material() -> [u8; 32] {
    let mut m = [0u8; 32];
    m[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    m[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    m
}

async fn state(h: &Harness, key: &str) -> String {
    h.ok("DescribeKey", json!({"KeyId": key})).await["KeyMetadata"]["KeyState"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_imported_with_each_wrapping_algorithm_encrypts_and_decrypts() {
    let h = Harness::start().await;
    let cases = [
        ("RSAES_OAEP_SHA_1", "RSA_2048"),
        ("RSAES_OAEP_SHA_256", "RSA_2048"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSA_3072"),
        ("RSA_AES_KEY_WRAP_SHA_256", "RSA_4096"),
    ];
    for (alg, spec) in cases {
        let key = external_key(&h).await;
        let (name, message) = h.err("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await;
        assert_eq!(name, "KMSInvalidStateException", "{message}");
        assert!(message.ends_with("is pending import."), "{message}");
        let (public_key, token, valid_to) = import_parameters(&h, &key, alg, spec).await;
        let now = h.clock.now_unix_ms() as f64 / 1000.0;
        assert!((valid_to - now - 86_400.0).abs() < 60.0, "{alg}: parameters are valid for 24 h");
        let material = random_material();
        let imported = h
            .ok(
                "ImportKeyMaterial",
                json!({
                    "KeyId": key,
                    "ImportToken": token,
                    "EncryptedKeyMaterial": wrap_material(&public_key, alg, &material),
                    "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
                    "KeyMaterialDescription": format!("test {alg}"),
                }),
            )
            .await;
        assert_eq!(imported["KeyMaterialId"].as_str().unwrap().len(), 64, "{imported}");
        let meta = h.ok("DescribeKey", json!({"KeyId": key})).await["KeyMetadata"].clone();
        assert_eq!(meta["KeyState"], "Enabled", "{alg}");
        assert_eq!(meta["ExpirationModel"], "KEY_MATERIAL_DOES_NOT_EXPIRE");
        assert_eq!(meta["CurrentKeyMaterialId"], imported["KeyMaterialId"]);
        let enc = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"imported secret")})).await;
        let dec = h.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
        assert_eq!(unb64(&dec["Plaintext"]), b"imported secret", "{alg}");
        // Rotation is not for imported material.
        assert_eq!(h.err("EnableKeyRotation", json!({"KeyId": key})).await.0, "UnsupportedOperationException");
        assert_eq!(h.err("RotateKeyOnDemand", json!({"KeyId": key})).await.0, "UnsupportedOperationException");
    }
    // Import operations on a key of origin AWS_KMS.
    let native = h.create_key().await;
    let (name, message) = h
        .err(
            "GetParametersForImport",
            json!({"KeyId": native, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
        )
        .await;
    assert_eq!(name, "UnsupportedOperationException");
    assert!(message.ends_with("origin is AWS_KMS which is not valid for this operation."), "{message}");
    let (name, _) = h
        .err(
            "GetParametersForImport",
            json!({"KeyId": native, "WrappingAlgorithm": "RSAES_PKCS1_V1_5", "WrappingKeySpec": "RSA_2048"}),
        )
        .await;
    assert_eq!(name, "UnsupportedOperationException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimport_restores_old_ciphertexts_and_other_material_or_tokens_are_refused() {
    let h = Harness::start().await;
    let key = external_key(&h).await;
    let material = random_material();
    let first = import_material(&h, &key, &material, None).await.expect("first import");
    let enc = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"keep me")})).await;

    // Reimport of the same material while present (e.g. to set an expiry): same KeyMaterialId.
    let valid_to = h.clock.now_unix_ms() as f64 / 1000.0 + 30.0 * 86_400.0;
    let again = import_material(&h, &key, &material, Some(valid_to)).await.expect("same material again");
    assert_eq!(again["KeyMaterialId"], first["KeyMaterialId"]);
    let meta = h.ok("DescribeKey", json!({"KeyId": key})).await["KeyMetadata"].clone();
    assert_eq!(meta["ExpirationModel"], "KEY_MATERIAL_EXPIRES");
    assert!((meta["ValidTo"].as_f64().unwrap() - valid_to).abs() < 1.0, "{meta}");

    // Other material, now or later, never.
    let (name, _) = import_material(&h, &key, &random_material(), None).await.unwrap_err();
    assert_eq!(name, "IncorrectKeyMaterialException");

    // DeleteImportedKeyMaterial: PendingImport, the stored copy erased, old ciphertexts wait.
    let nats = h.service_nats().await;
    let js = keyledger_log::jetstream(nats);
    let stream = js.get_stream(keyledger_events::names::MATERIAL_STREAM).await.unwrap();
    let subject = keyledger_events::names::material_subject(
        ACCOUNT,
        &key,
        1,
        &hex::decode(first["KeyMaterialId"].as_str().unwrap()).unwrap().try_into().unwrap(),
    );
    assert!(stream.direct_get_last_for_subject(subject.clone()).await.is_ok(), "positive control: stored");
    let deleted = h.ok("DeleteImportedKeyMaterial", json!({"KeyId": key})).await;
    assert_eq!(deleted["KeyMaterialId"], first["KeyMaterialId"]);
    assert_eq!(state(&h, &key).await, "PendingImport");
    let (name, message) = h.err("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    assert_eq!(name, "KMSInvalidStateException", "{message}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            stream.direct_get_last_for_subject(subject.clone()).await.is_err()
        })
        .await,
        "the deleted material was erased from the material stream"
    );
    // Deleting again has no effect.
    assert!(h.ok("DeleteImportedKeyMaterial", json!({"KeyId": key})).await.get("KeyMaterialId").is_some());

    // Tokens: garbage, another key's, and material wrapped with another public key.
    let other = external_key(&h).await;
    let (_, other_token, _) = import_parameters(&h, &other, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let (public_key, token, _) = import_parameters(&h, &key, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let (other_public_key, _, _) = import_parameters(&h, &other, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let req = |token: &str, wrapped: String| {
        json!({"KeyId": key, "ImportToken": token, "EncryptedKeyMaterial": wrapped,
               "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
    };
    let good = wrap_material(&public_key, "RSAES_OAEP_SHA_256", &material);
    assert_eq!(h.err("ImportKeyMaterial", req(&b64(b"forged"), good.clone())).await.0, "InvalidImportTokenException");
    assert_eq!(h.err("ImportKeyMaterial", req(&other_token, good.clone())).await.0, "InvalidImportTokenException");
    let foreign = wrap_material(&other_public_key, "RSAES_OAEP_SHA_256", &material);
    assert_eq!(h.err("ImportKeyMaterial", req(&token, foreign)).await.0, "InvalidCiphertextException");
    let short = wrap_material(&public_key, "RSAES_OAEP_SHA_256", &material[..16]);
    assert_eq!(h.err("ImportKeyMaterial", req(&token, short)).await.0, "IncorrectKeyMaterialException");
    assert_eq!(state(&h, &key).await, "PendingImport", "failed imports change nothing");

    // The same material again: usable, and the old ciphertext decrypts.
    h.ok("ImportKeyMaterial", req(&token, good.clone())).await;
    // A token is single use: its wrapping key was erased with the import.
    assert_eq!(h.err("ImportKeyMaterial", req(&token, good)).await.0, "InvalidImportTokenException");
    assert_eq!(state(&h, &key).await, "Enabled");
    let dec = h.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    assert_eq!(unb64(&dec["Plaintext"]), b"keep me");
    assert!(
        eventually(Duration::from_secs(5), || async {
            stream.direct_get_last_for_subject(subject.clone()).await.is_ok()
        })
        .await,
        "the reimported copy is stored (and not erased by the earlier deletion's eraser)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_allows_three_unwrap_attempts_in_all() {
    let h = Harness::start().await;
    let key = external_key(&h).await;
    let (public_key, token, _) = import_parameters(&h, &key, "RSAES_OAEP_SHA_1", "RSA_2048").await;
    let material = random_material();
    let req = |wrapped: Vec<u8>| {
        json!({"KeyId": key, "ImportToken": token, "EncryptedKeyMaterial": b64(&wrapped),
               "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
    };
    let good = wrap_for_import(&public_key, WrappingAlgorithm::RsaesOaepSha1, &material).unwrap();
    for i in 0..3 {
        let mut bad = good.clone();
        bad[i] ^= 1;
        assert_eq!(h.err("ImportKeyMaterial", req(bad)).await.0, "InvalidCiphertextException", "attempt {i}");
    }
    // RSA decryption is not constant time in the `rsa` crate (RUSTSEC-2023-0071): the number
    // of decryption attempts per wrapping key is bounded, then the key is destroyed.
    assert_eq!(h.err("ImportKeyMaterial", req(good)).await.0, "InvalidImportTokenException");
    assert_eq!(state(&h, &key).await, "PendingImport");

    // Attempts whose unwrap succeeds but import nothing (wrong length) count too: no reset.
    let (public_key, token, _) = import_parameters(&h, &key, "RSAES_OAEP_SHA_1", "RSA_2048").await;
    let req = |wrapped: Vec<u8>| {
        json!({"KeyId": key, "ImportToken": token, "EncryptedKeyMaterial": b64(&wrapped),
               "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"})
    };
    let alg = WrappingAlgorithm::RsaesOaepSha1;
    let mut junk = wrap_for_import(&public_key, alg, &material).unwrap();
    junk[0] ^= 1;
    let short = wrap_for_import(&public_key, alg, &material[..16]).unwrap();
    assert_eq!(h.err("ImportKeyMaterial", req(junk.clone())).await.0, "InvalidCiphertextException");
    assert_eq!(h.err("ImportKeyMaterial", req(short)).await.0, "IncorrectKeyMaterialException");
    assert_eq!(h.err("ImportKeyMaterial", req(junk)).await.0, "InvalidCiphertextException");
    let good = wrap_for_import(&public_key, alg, &material).unwrap();
    assert_eq!(h.err("ImportKeyMaterial", req(good)).await.0, "InvalidImportTokenException");

    // Parallel attempts on one token cannot overrun the bound.
    let (public_key, token, _) = import_parameters(&h, &key, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let mut junk = wrap_for_import(&public_key, WrappingAlgorithm::RsaesOaepSha256, &material).unwrap();
    junk[1] ^= 1;
    let attempts = (0..12).map(|_| {
        let req = json!({"KeyId": key, "ImportToken": token, "EncryptedKeyMaterial": b64(&junk),
                         "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"});
        let h = &h;
        async move { h.err("ImportKeyMaterial", req).await.0 }
    });
    let names = futures::future::join_all(attempts).await;
    let decrypted = names.iter().filter(|n| *n == "InvalidCiphertextException").count();
    assert!(decrypted <= 3, "at most 3 of 12 parallel attempts reached the RSA decryption: {names:?}");
    assert!(names.iter().all(|n| n == "InvalidCiphertextException" || n == "InvalidImportTokenException"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_material_expires_on_the_injected_clock_and_tokens_after_24_hours() {
    // The roles' clock starts two days behind, so a ValidTo one day ahead of it is already past
    // by the server's clock once the roles' clock is moved forward.
    let h = Harness::start_with_clock(Clock::shifted(-2 * DAY_MS)).await;
    let key = external_key(&h).await;
    let material = random_material();
    let now_s = h.clock.now_unix_ms() as f64 / 1000.0;
    let (name, _) = import_material(&h, &key, &material, Some(now_s - 10.0)).await.unwrap_err();
    assert_eq!(name, "ValidationException", "ValidTo in the past");
    let (name, _) = import_material(&h, &key, &material, Some(now_s + 366.0 * 86_400.0)).await.unwrap_err();
    assert_eq!(name, "ValidationException", "ValidTo more than 365 days ahead");
    import_material(&h, &key, &material, Some(now_s + 86_400.0)).await.expect("import with ValidTo in one day");
    let enc = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"until tomorrow")})).await;

    h.clock.advance_ms(DAY_MS + 60_000);
    // cryptod enforces ValidTo by its own clock, before or after the expiry event.
    let (name, message) = h.err("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    assert_eq!(name, "KMSInvalidStateException", "{message}");
    assert!(
        eventually(Duration::from_secs(15), || async { state(&h, &key).await == "PendingImport" }).await,
        "the expiry event moved the key to PendingImport"
    );
    let meta = h.ok("DescribeKey", json!({"KeyId": key})).await["KeyMetadata"].clone();
    assert!(meta.get("ValidTo").is_none() && meta.get("CurrentKeyMaterialId").is_none(), "{meta}");

    // Reimport of the same material restores the key and its ciphertexts.
    import_material(&h, &key, &material, None).await.expect("reimport after expiry");
    let dec = h.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    assert_eq!(unb64(&dec["Plaintext"]), b"until tomorrow");

    // Import parameters are valid for 24 hours.
    let other = external_key(&h).await;
    let (public_key, token, _) = import_parameters(&h, &other, "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048").await;
    h.clock.advance_ms(DAY_MS + 1000);
    let (name, _) = h
        .err(
            "ImportKeyMaterial",
            json!({"KeyId": other, "ImportToken": token,
                   "EncryptedKeyMaterial": wrap_material(&public_key, "RSA_AES_KEY_WRAP_SHA_256", &random_material()),
                   "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}),
        )
        .await;
    assert_eq!(name, "ExpiredImportTokenException");
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_deletion_the_wrapped_material_is_nowhere_in_the_server_storage() {
    // Deletion due in the real past once the roles' clock catches up (see lifecycle.rs).
    let h = Harness::start_with_clock(Clock::shifted(-8 * DAY_MS)).await;
    let native = h.create_key().await;
    let imported = external_key(&h).await;
    import_material(&h, &imported, &random_material(), None).await.expect("import");
    let enc = h.ok("Encrypt", json!({"KeyId": native, "Plaintext": b64(b"soon unreadable")})).await;

    let nats = h.service_nats().await;
    let js = keyledger_log::jetstream(nats);
    let stream = js.get_stream(keyledger_events::names::MATERIAL_STREAM).await.unwrap();
    // The material stream is not compressed, so stored bytes are findable on disk.
    let info = js.get_stream(keyledger_events::names::MATERIAL_STREAM).await.unwrap().info().await.unwrap().clone();
    assert!(
        matches!(info.config.compression, None | Some(async_nats::jetstream::stream::Compression::None)),
        "storage compression is off for the material stream"
    );
    let hr = &h;
    let wrapped = |key: String| {
        let stream = stream.clone();
        async move {
            let meta = hr.ok("DescribeKey", json!({"KeyId": key})).await["KeyMetadata"].clone();
            let id: [u8; 32] = hex::decode(meta["CurrentKeyMaterialId"].as_str().unwrap()).unwrap().try_into().unwrap();
            let subject = keyledger_events::names::material_subject(ACCOUNT, &key, 1, &id);
            stream.direct_get_last_for_subject(subject).await.expect("stored").payload.to_vec()
        }
    };
    let native_bytes = wrapped(native.clone()).await;
    let imported_bytes = wrapped(imported.clone()).await;
    let storage = h.env().data_dir.clone();
    for bytes in [&native_bytes, &imported_bytes] {
        assert!(
            eventually(Duration::from_secs(10), || async { !files_containing(&storage, bytes).is_empty() }).await,
            "positive control: the wrapped material is found in the storage directory before deletion"
        );
    }

    // A spent import token's wrapping key is erased too: only the material is left under the
    // key's filter.
    let filter = keyledger_events::names::material_filter(ACCOUNT, &imported);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let first = stream.direct_get_next_for_subject(filter.clone(), None).await.unwrap();
            !first.subject.contains(".imp.")
        })
        .await,
        "the import wrapping key is erased once its token is spent"
    );

    // Imported material deleted on demand: gone from disk at once (no deletion window).
    h.ok("DeleteImportedKeyMaterial", json!({"KeyId": imported})).await;
    assert!(
        eventually(Duration::from_secs(10), || async { files_containing(&storage, &imported_bytes).is_empty() }).await,
        "deleted imported material is still on disk: {:?}",
        files_containing(&storage, &imported_bytes)
    );

    // A key whose deletion comes due.
    h.ok("ScheduleKeyDeletion", json!({"KeyId": native, "PendingWindowInDays": 7})).await;
    assert!(!files_containing(&storage, &native_bytes).is_empty(), "still there while pending deletion");
    h.clock.advance_ms(8 * DAY_MS);
    assert!(
        eventually(Duration::from_secs(15), || async {
            matches!(h.call("DescribeKey", json!({"KeyId": native})).await,
                     Err(e) if e.aws_name() == Some("NotFoundException"))
        })
        .await,
        "the key is deleted once due"
    );
    assert!(
        eventually(Duration::from_secs(10), || async { files_containing(&storage, &native_bytes).is_empty() }).await,
        "deleted key material is still on disk: {:?}",
        files_containing(&storage, &native_bytes)
    );
    let (name, _) = h.err("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    assert_eq!(name, "AccessDeniedException", "old ciphertexts name a key that no longer exists");
}
