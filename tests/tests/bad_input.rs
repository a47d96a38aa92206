//! Bad input gets a clear AWS-style error and changes nothing.

use keyledger::protocol::CallError;
use keyledger_tests::*;
use serde_json::json;

async fn raw_err(h: &Harness, op: &str, body: &[u8]) -> (String, String) {
    match h.client.call_raw(op, bytes::Bytes::copy_from_slice(body)).await {
        Err(CallError::Service(e)) => (e.name, e.message),
        other => panic!("{op} with {:?}: expected a service error, got {other:?}", String::from_utf8_lossy(body)),
    }
}

/// The control log's head and the key state's digest there (what `/digest` serves): equal
/// before and after a bad request means it appended nothing and changed no key.
async fn log_head(h: &Harness) -> (u64, [u8; 32]) {
    let follower = &h.env().roles.as_ref().unwrap().ctx.follower;
    let head = follower.catch_up(std::time::Duration::from_secs(5)).await.unwrap();
    (head, follower.read().state_digest())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_wrong_types_and_missing_members_change_nothing() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let head = log_head(&h).await;

    assert_eq!(raw_err(&h, "CreateKey", b"{not json").await.0, "SerializationException");
    assert_eq!(raw_err(&h, "CreateKey", b"[1,2]").await.0, "SerializationException");
    assert_eq!(raw_err(&h, "Encrypt", br#"{"KeyId": 5, "Plaintext": "eA=="}"#).await.0, "SerializationException");
    assert_eq!(
        raw_err(&h, "Encrypt", br#"{"KeyId": "k", "Plaintext": "not base64!!"}"#).await.0,
        "SerializationException"
    );
    assert_eq!(raw_err(&h, "CreateKey", br#"{"Description": 7}"#).await.0, "SerializationException");
    let (name, message) = h.err("Encrypt", json!({"KeyId": key})).await;
    assert_eq!(name, "ValidationException");
    assert!(message.contains("plaintext"), "{message}");
    let (name, message) = h.err("GenerateRandom", json!({})).await;
    assert_eq!(name, "ValidationException");
    assert!(message.contains("NumberOfBytes"), "{message}");
    let (name, message) = h.err("GenerateRandom", json!({"NumberOfBytes": 1025})).await;
    assert_eq!(
        (name.as_str(), message.as_str()),
        (
            "ValidationException",
            "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024"
        )
    );
    let (name, _) = h.err("GenerateDataKey", json!({"KeyId": key})).await;
    assert_eq!(name, "ValidationException", "neither KeySpec nor NumberOfBytes");
    let (name, _) = h.err("GenerateDataKey", json!({"KeyId": key, "KeySpec": "AES_256", "NumberOfBytes": 32})).await;
    assert_eq!(name, "ValidationException", "both KeySpec and NumberOfBytes");
    let (name, _) = h.err("GenerateDataKey", json!({"KeyId": key, "KeySpec": "AES_512"})).await;
    assert_eq!(name, "ValidationException");
    // Unknown members are ignored, as AWS clients expect.
    h.ok("DescribeKey", json!({"KeyId": key, "SomeFutureMember": true})).await;
    assert_eq!(log_head(&h).await, head, "nothing was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_payloads_are_validation_errors() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let head = log_head(&h).await;
    let (name, message) = h.err("Encrypt", json!({"KeyId": key, "Plaintext": b64(&[7u8; 4097])})).await;
    assert_eq!(name, "ValidationException");
    assert!(message.contains("Member must have length less than or equal to 4096"), "{message}");
    assert!(!message.contains("BwcH"), "the value of a blob is never echoed");
    h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(&[7u8; 4096])})).await;
    let (name, _) = h.err("Decrypt", json!({"CiphertextBlob": b64(&[1u8; 6145])})).await;
    assert_eq!(name, "ValidationException");
    let (name, _) = h.err("CreateKey", json!({"Description": "d".repeat(8193)})).await;
    assert_eq!(name, "ValidationException");
    // A body larger than NATS's max payload never reaches the service: the client is told.
    let huge = vec![b'a'; 2 * 1024 * 1024];
    assert!(h.client.call_raw("Encrypt", huge.into()).await.is_err());
    let (name, _) =
        h.err("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "k".repeat(129), "TagValue": "v"}]})).await;
    assert_eq!(name, "ValidationException");
    assert_eq!(log_head(&h).await, head, "nothing was appended and no key changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_operation_is_answered_with_unknown_operation_exception() {
    let h = Harness::start().await;
    h.create_key().await;
    let head = log_head(&h).await;
    let (name, _) = raw_err(&h, "DeleteEverything", b"{}").await;
    assert_eq!(name, "UnknownOperationException");
    let (name, _) = raw_err(&h, "ScheduleKeyDeletionNow", b"{\"KeyId\": \"x\"}").await;
    assert_eq!(name, "UnknownOperationException");
    assert_eq!(log_head(&h).await, head, "nothing was appended and no key changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_arns_and_foreign_regions_are_refused() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let head = log_head(&h).await;
    let (name, message) =
        h.err("DescribeKey", json!({"KeyId": format!("arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key}")})).await;
    assert_eq!((name.as_str(), message.as_str()), ("NotFoundException", "Invalid arn eu-west-1"));
    for bad in ["arn:aws:kms", "arn:aws:s3:us-east-1:111122223333:key/x", "arn:aws:kms:us-east-1:abc:key/x"] {
        let (name, _) = h.err("EnableKey", json!({"KeyId": bad})).await;
        assert!(name == "InvalidArnException" || name == "NotFoundException", "{bad}: {name}");
    }
    let (name, _) = h.err("Encrypt", json!({"KeyId": "", "Plaintext": b64(b"x")})).await;
    assert_eq!(name, "ValidationException");
    // Mutations through a foreign-region or malformed ARN of an existing key change nothing.
    let foreign = format!("arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key}");
    for op in ["DisableKey", "ScheduleKeyDeletion"] {
        let (name, _) = h.err(op, json!({"KeyId": foreign})).await;
        assert_eq!(name, "NotFoundException", "{op}");
    }
    let (name, _) =
        h.err("CreateAlias", json!({"AliasName": "alias/x", "TargetKeyId": "arn:aws:kms:us-east-1:abc:key/x"})).await;
    assert!(name == "InvalidArnException" || name == "NotFoundException", "{name}");
    assert_eq!(log_head(&h).await, head, "nothing was appended and no key changed");
}
