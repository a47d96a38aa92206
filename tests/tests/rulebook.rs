//! The AWS KMS rulebook as tables, end to end over NATS: every key state (Enabled, Disabled,
//! PendingDeletion, PendingImport) × every operation, and every limit on both sides of its
//! boundary. (The pure rulebook has its own, larger tables in
//! libs/kms/tests; these prove the services apply them unchanged.)

use keyledger_tests::*;
use serde_json::{json, Value};

/// Expected outcome of one call.
#[derive(Debug, Clone, Copy)]
enum Want {
    Ok,
    /// AWS error name; `{arn}` in the message is replaced by the key's ARN.
    Err(&'static str, Option<&'static str>),
}

const DISABLED: Want = Want::Err("DisabledException", Some("{arn} is disabled."));
const PENDING: Want = Want::Err("KMSInvalidStateException", Some("{arn} is pending deletion."));
const NOT_PENDING: Want = Want::Err("KMSInvalidStateException", Some("{arn} is not pending deletion."));

/// (operation, request builder, Enabled, Disabled, PendingDeletion) — aws-kms-api.md §3.3.
fn matrix(key: &str, blob: &str, alias: &str) -> Vec<(&'static str, Value, Want, Want, Want)> {
    use Want::Ok as OK;
    vec![
        ("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")}), OK, DISABLED, PENDING),
        ("Decrypt", json!({"CiphertextBlob": blob}), OK, DISABLED, PENDING),
        ("ReEncrypt", json!({"CiphertextBlob": blob, "DestinationKeyId": key}), OK, DISABLED, PENDING),
        ("GenerateDataKey", json!({"KeyId": key, "KeySpec": "AES_256"}), OK, DISABLED, PENDING),
        ("GenerateDataKeyWithoutPlaintext", json!({"KeyId": key, "NumberOfBytes": 16}), OK, DISABLED, PENDING),
        ("DescribeKey", json!({"KeyId": key}), OK, OK, OK),
        ("ListResourceTags", json!({"KeyId": key}), OK, OK, OK),
        ("ListKeyRotations", json!({"KeyId": key}), OK, OK, OK),
        ("GetKeyRotationStatus", json!({"KeyId": key}), OK, OK, OK),
        ("ListAliases", json!({"KeyId": key}), OK, OK, OK),
        ("UpdateKeyDescription", json!({"KeyId": key, "Description": "d"}), OK, OK, PENDING),
        ("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "k", "TagValue": "v"}]}), OK, OK, PENDING),
        ("UntagResource", json!({"KeyId": key, "TagKeys": ["k"]}), OK, OK, PENDING),
        ("CreateAlias", json!({"AliasName": alias, "TargetKeyId": key}), OK, OK, PENDING),
        ("EnableKeyRotation", json!({"KeyId": key}), OK, DISABLED, PENDING),
        ("DisableKeyRotation", json!({"KeyId": key}), OK, DISABLED, PENDING),
        ("RotateKeyOnDemand", json!({"KeyId": key}), OK, DISABLED, PENDING),
        ("CancelKeyDeletion", json!({"KeyId": key}), NOT_PENDING, NOT_PENDING, OK),
    ]
}

async fn check(h: &Harness, state: &str, op: &str, req: Value, want: Want, arn: &str) {
    let got = h.call(op, req).await;
    match (want, got) {
        (Want::Ok, Ok(_)) => {}
        (Want::Err(name, message), Err(e)) => {
            assert_eq!(e.aws_name(), Some(name), "{op} on a {state} key: {e}");
            if let (Some(m), keyledger::protocol::CallError::Service(se)) = (message, &e) {
                assert_eq!(se.message, m.replace("{arn}", arn), "{op} on a {state} key");
            }
        }
        (want, got) => panic!("{op} on a {state} key: wanted {want:?}, got {got:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_in_every_key_state() {
    let h = Harness::start().await;
    for (state_index, state) in ["Enabled", "Disabled", "PendingDeletion"].into_iter().enumerate() {
        // A fresh key per operation, so one row's effect cannot change another's state.
        for row in 0..matrix("k", "b", "alias/a").len() {
            let key = h.create_key().await;
            let arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}");
            let blob = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await["CiphertextBlob"]
                .as_str()
                .unwrap()
                .to_owned();
            match state {
                "Disabled" => {
                    h.ok("DisableKey", json!({"KeyId": key})).await;
                }
                "PendingDeletion" => {
                    h.ok("ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": 7})).await;
                }
                _ => {}
            }
            let alias = format!("alias/m-{state_index}-{row}");
            let (op, req, enabled, disabled, pending) = matrix(&key, &blob, &alias).swap_remove(row);
            let want = [enabled, disabled, pending][state_index];
            check(&h, state, op, req, want, &arn).await;
        }
    }
}

/// PendingImport (aws-kms-api.md §3.3, column PendingImport): an EXTERNAL key whose material
/// was imported, used, and deleted — so there is a ciphertext naming it. No row succeeds in
/// changing its state, so one key serves the whole column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_on_a_pending_import_key() {
    const PI: Want = Want::Err("KMSInvalidStateException", Some("{arn} is pending import."));
    const UO: Want = Want::Err("UnsupportedOperationException", None);
    const NPD: Want = Want::Err("KMSInvalidStateException", Some("{arn} is not pending deletion."));
    let h = Harness::start().await;
    let created = h.ok("CreateKey", json!({"Origin": "EXTERNAL"})).await;
    let key = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let arn = created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    import_material(&h, &key, &[7u8; 32], None).await.expect("import");
    let blob = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})).await["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    h.ok("DeleteImportedKeyMaterial", json!({"KeyId": key})).await;
    let state = |v: Value| v["KeyMetadata"]["KeyState"].as_str().unwrap().to_owned();
    assert_eq!(state(h.ok("DescribeKey", json!({"KeyId": key})).await), "PendingImport");
    let rows: Vec<(&str, Value, Want)> = vec![
        ("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")}), PI),
        ("Decrypt", json!({"CiphertextBlob": blob}), PI),
        ("ReEncrypt", json!({"CiphertextBlob": blob, "DestinationKeyId": key}), PI),
        ("GenerateDataKey", json!({"KeyId": key, "KeySpec": "AES_256"}), PI),
        ("GenerateDataKeyWithoutPlaintext", json!({"KeyId": key, "NumberOfBytes": 16}), PI),
        ("EnableKey", json!({"KeyId": key}), PI),
        ("DisableKey", json!({"KeyId": key}), PI),
        ("RotateKeyOnDemand", json!({"KeyId": key}), PI),
        ("EnableKeyRotation", json!({"KeyId": key}), UO),
        ("DisableKeyRotation", json!({"KeyId": key}), UO),
        ("GetKeyRotationStatus", json!({"KeyId": key}), UO),
        ("CancelKeyDeletion", json!({"KeyId": key}), NPD),
        ("DescribeKey", json!({"KeyId": key}), Want::Ok),
        ("ListResourceTags", json!({"KeyId": key}), Want::Ok),
        ("ListKeyRotations", json!({"KeyId": key}), Want::Ok),
        ("ListAliases", json!({"KeyId": key}), Want::Ok),
        ("UpdateKeyDescription", json!({"KeyId": key, "Description": "d"}), Want::Ok),
        ("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "k", "TagValue": "v"}]}), Want::Ok),
        ("UntagResource", json!({"KeyId": key, "TagKeys": ["k"]}), Want::Ok),
        ("CreateAlias", json!({"AliasName": "alias/pending-import", "TargetKeyId": key}), Want::Ok),
        ("GetKeyPolicy", json!({"KeyId": key}), Want::Ok),
        ("ListGrants", json!({"KeyId": key}), Want::Ok),
        (
            "GetParametersForImport",
            json!({"KeyId": key, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
            Want::Ok,
        ),
    ];
    for (op, req, want) in rows {
        check(&h, "PendingImport", op, req, want, &arn).await;
        assert_eq!(state(h.ok("DescribeKey", json!({"KeyId": key})).await), "PendingImport", "after {op}");
    }
    // ScheduleKeyDeletion is allowed in PendingImport (and leaves it).
    check(&h, "PendingImport", "ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": 7}), Want::Ok, &arn)
        .await;
    assert_eq!(state(h.ok("DescribeKey", json!({"KeyId": key})).await), "PendingDeletion");
}

/// An encryption context of `pairs` (< 100) pairs: keys `00`, `01`, … (2 bytes each), each
/// value `value_bytes` bytes.
fn context(pairs: usize, value_bytes: usize) -> Value {
    let map: serde_json::Map<String, Value> =
        (0..pairs).map(|i| (format!("{i:02}"), Value::String("v".repeat(value_bytes)))).collect();
    Value::Object(map)
}

/// `ec` with one more byte in its first value.
fn context_plus_one(mut ec: Value) -> Value {
    let first = ec.as_object_mut().unwrap().values_mut().next().unwrap();
    *first = Value::String(format!("{}v", first.as_str().unwrap()));
    ec
}

/// (operation, request at the limit (must succeed), request past it, error name).
async fn limit_rows(h: &Harness) -> Vec<(&'static str, Value, Value, &'static str)> {
    let key = h.create_key().await;
    let tags = |n: usize| (0..n).map(|i| json!({"TagKey": format!("t{i}"), "TagValue": ""})).collect::<Vec<_>>();
    // Grant tokens are checked (a forged one is InvalidGrantTokenException): use real ones.
    let grant = h
        .ok(
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:user/dev"), "Operations": ["Encrypt"]}),
        )
        .await;
    let token = grant["GrantToken"].as_str().unwrap().to_owned();
    let tokens = |n: usize| vec![token.clone(); n];
    vec![
        (
            "CreateKey",
            json!({"Description": "d".repeat(8192)}),
            json!({"Description": "d".repeat(8193)}),
            "ValidationException",
        ),
        ("CreateKey", json!({"Tags": tags(50)}), json!({"Tags": tags(51)}), "TagException"),
        (
            "CreateKey",
            json!({"Tags": [{"TagKey": "k".repeat(128), "TagValue": "v".repeat(256)}]}),
            json!({"Tags": [{"TagKey": "k".repeat(129), "TagValue": "v"}]}),
            "ValidationException",
        ),
        (
            "CreateKey",
            json!({"Tags": [{"TagKey": "k", "TagValue": "v".repeat(256)}]}),
            json!({"Tags": [{"TagKey": "k", "TagValue": "v".repeat(257)}]}),
            "ValidationException",
        ),
        (
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(&[1; 4096])}),
            json!({"KeyId": key, "Plaintext": b64(&[1; 4097])}),
            "ValidationException",
        ),
        (
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(&[1; 1])}),
            json!({"KeyId": key, "Plaintext": ""}),
            "ValidationException",
        ),
        // Keyledger's encryption-context caps (AWS sets none; aws-kms-api.md §4.1, README):
        // 64 pairs, keys 1..2048 bytes, values ≤ 2048 bytes, ≤ 8192 bytes in all.
        (
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": context(64, 1)}),
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": context(65, 1)}),
            "ValidationException",
        ),
        (
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"k".repeat(2048): "v".repeat(2048)}}),
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"k": "v".repeat(2049)}}),
            "ValidationException",
        ),
        (
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"k".repeat(2048): "v"}}),
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"k".repeat(2049): "v"}}),
            "ValidationException",
        ),
        (
            "GenerateDataKey",
            // 4 pairs of (2-byte key + 2046-byte value) = 8192 bytes; one more byte is over.
            json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": context(4, 2046)}),
            json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": context_plus_one(context(4, 2046))}),
            "ValidationException",
        ),
        (
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"k": ""}}),
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"": "v"}}),
            "ValidationException",
        ),
        (
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x"), "GrantTokens": tokens(10)}),
            json!({"KeyId": key, "Plaintext": b64(b"x"), "GrantTokens": tokens(11)}),
            "ValidationException",
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": key, "NumberOfBytes": 1024}),
            json!({"KeyId": key, "NumberOfBytes": 1025}),
            "ValidationException",
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": key, "NumberOfBytes": 1}),
            json!({"KeyId": key, "NumberOfBytes": 0}),
            "ValidationException",
        ),
        ("GenerateRandom", json!({"NumberOfBytes": 1024}), json!({"NumberOfBytes": 1025}), "ValidationException"),
        ("GenerateRandom", json!({"NumberOfBytes": 1}), json!({"NumberOfBytes": 0}), "ValidationException"),
        (
            "EnableKeyRotation",
            json!({"KeyId": key, "RotationPeriodInDays": 2560}),
            json!({"KeyId": key, "RotationPeriodInDays": 2561}),
            "ValidationException",
        ),
        (
            "EnableKeyRotation",
            json!({"KeyId": key, "RotationPeriodInDays": 90}),
            json!({"KeyId": key, "RotationPeriodInDays": 89}),
            "ValidationException",
        ),
        ("ListKeys", json!({"Limit": 1000}), json!({"Limit": 1001}), "ValidationException"),
        ("ListKeys", json!({"Limit": 1}), json!({"Limit": 0}), "ValidationException"),
        ("ListAliases", json!({"Limit": 100}), json!({"Limit": 101}), "ValidationException"),
        (
            "ListResourceTags",
            json!({"KeyId": key, "Limit": 50}),
            json!({"KeyId": key, "Limit": 51}),
            "ValidationException",
        ),
        (
            "ListKeyRotations",
            json!({"KeyId": key, "Limit": 1000}),
            json!({"KeyId": key, "Limit": 1001}),
            "ValidationException",
        ),
        (
            "CreateAlias",
            json!({"AliasName": format!("alias/{}", "a".repeat(250)), "TargetKeyId": key}),
            json!({"AliasName": format!("alias/{}", "a".repeat(251)), "TargetKeyId": key}),
            "ValidationException",
        ),
        (
            "UpdateKeyDescription",
            json!({"KeyId": key, "Description": ""}),
            json!({"KeyId": key, "Description": "d".repeat(8193)}),
            "ValidationException",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_on_both_sides_of_its_boundary() {
    let h = Harness::start().await;
    for (op, at_limit, past_limit, error) in limit_rows(&h).await {
        if let Err(e) = h.call(op, at_limit.clone()).await {
            panic!("{op} at its limit must succeed: {e}");
        }
        let (name, _) = h.err(op, past_limit).await;
        assert_eq!(name, error, "{op} past its limit");
    }
    // Deletion window 7..30 (the service's rule, not the model's 1..365).
    for (days, ok) in [(6, false), (7, true), (30, true), (31, false)] {
        let key = h.create_key().await;
        let r = h.call("ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": days})).await;
        assert_eq!(r.is_ok(), ok, "PendingWindowInDays {days}: {r:?}");
    }
    // 50 aliases per key.
    let key = h.create_key().await;
    for i in 0..50 {
        h.ok("CreateAlias", json!({"AliasName": format!("alias/many-{i}"), "TargetKeyId": key})).await;
    }
    let (name, _) = h.err("CreateAlias", json!({"AliasName": "alias/many-50", "TargetKeyId": key})).await;
    assert_eq!(name, "LimitExceededException");
    // 50 tags per key, counted after the upsert.
    let key = h.create_key().await;
    let tags: Vec<_> = (0..50).map(|i| json!({"TagKey": format!("t{i}"), "TagValue": "v"})).collect();
    h.ok("TagResource", json!({"KeyId": key, "Tags": tags})).await;
    h.ok("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "t0", "TagValue": "replaced"}]})).await;
    let (name, _) = h.err("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "t50", "TagValue": "v"}]})).await;
    assert_eq!(name, "TagException");
}
