//! Key lifecycle, aliases, tags and rotation through the NATS API (the full rulebook tables
//! live in libs/kms/tests; these check that the services apply them end to end).

use std::time::Duration;

use keyledger_tests::*;
use serde_json::json;

const DAY_MS: i64 = 86_400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_list_and_update_a_key() {
    let h = Harness::start().await;
    let r =
        h.ok("CreateKey", json!({"Description": "orders", "Tags": [{"TagKey": "team", "TagValue": "payments"}]})).await;
    let md = &r["KeyMetadata"];
    let key = md["KeyId"].as_str().unwrap().to_owned();
    assert_eq!(md["Arn"], format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}"));
    assert_eq!(md["AWSAccountId"], ACCOUNT);
    assert_eq!(md["KeyState"], "Enabled");
    assert_eq!(md["Enabled"], true);
    assert_eq!(md["KeySpec"], "SYMMETRIC_DEFAULT");
    assert_eq!(md["KeyUsage"], "ENCRYPT_DECRYPT");
    assert_eq!(md["Origin"], "AWS_KMS");
    assert_eq!(md["KeyManager"], "CUSTOMER");
    assert_eq!(md["Description"], "orders");
    assert!(md["CreationDate"].is_number());

    h.ok("UpdateKeyDescription", json!({"KeyId": key, "Description": "orders v2"})).await;
    let d = h.ok("DescribeKey", json!({"KeyId": format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}")})).await;
    assert_eq!(d["KeyMetadata"]["Description"], "orders v2");

    let tags = h.ok("ListResourceTags", json!({"KeyId": key})).await;
    assert_eq!(tags["Tags"], json!([{"TagKey": "team", "TagValue": "payments"}]));
    h.ok(
        "TagResource",
        json!({"KeyId": key, "Tags": [{"TagKey": "team", "TagValue": "risk"}, {"TagKey": "env", "TagValue": ""}]}),
    )
    .await;
    h.ok("UntagResource", json!({"KeyId": key, "TagKeys": ["env", "missing"]})).await;
    let tags = h.ok("ListResourceTags", json!({"KeyId": key})).await;
    assert_eq!(tags["Tags"], json!([{"TagKey": "team", "TagValue": "risk"}]));
    let (name, message) =
        h.err("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "aws:x", "TagValue": "1"}]})).await;
    assert_eq!(name, "TagException");
    assert!(message.contains("aws:"), "{message}");

    // Pagination over ListKeys.
    for _ in 0..4 {
        h.create_key().await;
    }
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut req = json!({"Limit": 2});
        if let Some(m) = &marker {
            req["Marker"] = json!(m);
        }
        let page = h.ok("ListKeys", req).await;
        for k in page["Keys"].as_array().unwrap() {
            seen.push(k["KeyId"].as_str().unwrap().to_owned());
        }
        if page["Truncated"] == true {
            marker = Some(page["NextMarker"].as_str().unwrap().to_owned());
        } else {
            assert!(page.get("NextMarker").is_none());
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "no key listed twice");
    let (name, _) = h.err("ListKeys", json!({"Marker": "bogus"})).await;
    assert_eq!(name, "InvalidMarkerException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_enable_schedule_and_cancel_follow_the_state_machine() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}");
    let state = |v: serde_json::Value| v["KeyMetadata"]["KeyState"].as_str().unwrap().to_owned();

    h.ok("DisableKey", json!({"KeyId": key})).await;
    h.ok("DisableKey", json!({"KeyId": key})).await; // idempotent
    assert_eq!(state(h.ok("DescribeKey", json!({"KeyId": key})).await), "Disabled");
    h.ok("EnableKey", json!({"KeyId": key})).await;
    assert_eq!(state(h.ok("DescribeKey", json!({"KeyId": key})).await), "Enabled");

    assert_eq!(
        h.err("CancelKeyDeletion", json!({"KeyId": key})).await,
        ("KMSInvalidStateException".into(), format!("{arn} is not pending deletion."))
    );
    let (name, _) = h.err("ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": 6})).await;
    assert_eq!(name, "ValidationException");
    let (name, _) = h.err("ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": 31})).await;
    assert_eq!(name, "ValidationException");
    let s = h.ok("ScheduleKeyDeletion", json!({"KeyId": key})).await;
    assert_eq!(s["KeyId"], arn);
    assert_eq!(s["KeyState"], "PendingDeletion");
    assert_eq!(s["PendingWindowInDays"], 30);
    assert!(s["DeletionDate"].is_number());
    assert_eq!(h.err("ScheduleKeyDeletion", json!({"KeyId": key})).await.0, "KMSInvalidStateException");
    for (op, req) in [
        ("EnableKey", json!({"KeyId": key})),
        ("DisableKey", json!({"KeyId": key})),
        ("UpdateKeyDescription", json!({"KeyId": key, "Description": "x"})),
        ("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "a", "TagValue": "b"}]})),
        ("EnableKeyRotation", json!({"KeyId": key})),
        ("RotateKeyOnDemand", json!({"KeyId": key})),
        ("CreateAlias", json!({"AliasName": "alias/late", "TargetKeyId": key})),
    ] {
        assert_eq!(
            h.err(op, req).await,
            ("KMSInvalidStateException".into(), format!("{arn} is pending deletion.")),
            "{op}"
        );
    }
    // Reads work in every state.
    h.ok("DescribeKey", json!({"KeyId": key})).await;
    h.ok("ListResourceTags", json!({"KeyId": key})).await;
    let c = h.ok("CancelKeyDeletion", json!({"KeyId": key})).await;
    assert_eq!(c["KeyId"], arn);
    assert_eq!(state(h.ok("DescribeKey", json!({"KeyId": key})).await), "Disabled", "cancel lands in Disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_key_ids_are_not_found() {
    let h = Harness::start().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let (name, message) = h.err("DescribeKey", json!({"KeyId": unknown})).await;
    assert_eq!(name, "NotFoundException");
    assert_eq!(message, format!("Key 'arn:aws:kms:us-east-1:{ACCOUNT}:key/{unknown}' does not exist"));
    let (name, message) = h.err("DescribeKey", json!({"KeyId": "fake-key-id"})).await;
    assert_eq!((name.as_str(), message.as_str()), ("NotFoundException", "Invalid keyId 'fake-key-id'"));
    let (name, _) = h.err("DescribeKey", json!({"KeyId": "arn:aws:kms:us-east-1"})).await;
    assert!(name == "InvalidArnException" || name == "NotFoundException", "{name}");
    let (name, _) = h.err("Encrypt", json!({"KeyId": "alias/none", "Plaintext": b64(b"x")})).await;
    assert_eq!(name, "NotFoundException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_create_update_delete_and_reserved_names() {
    let h = Harness::start().await;
    let k1 = h.create_key().await;
    let k2 = h.create_key().await;
    h.ok("CreateAlias", json!({"AliasName": "alias/app", "TargetKeyId": k1})).await;
    assert_eq!(
        h.err("CreateAlias", json!({"AliasName": "alias/app", "TargetKeyId": k2})).await.0,
        "AlreadyExistsException"
    );
    let (name, _) = h.err("CreateAlias", json!({"AliasName": "app", "TargetKeyId": k1})).await;
    assert_eq!(name, "ValidationException");
    let (name, _) = h.err("CreateAlias", json!({"AliasName": "alias/aws/s3", "TargetKeyId": k1})).await;
    assert_ne!(name, "", "reserved alias/aws/ prefix refused");
    let d = h.ok("DescribeKey", json!({"KeyId": "alias/app"})).await;
    assert_eq!(d["KeyMetadata"]["KeyId"], k1);
    h.ok("UpdateAlias", json!({"AliasName": "alias/app", "TargetKeyId": k2})).await;
    let d = h.ok("DescribeKey", json!({"KeyId": format!("arn:aws:kms:us-east-1:{ACCOUNT}:alias/app")})).await;
    assert_eq!(d["KeyMetadata"]["KeyId"], k2);
    let list = h.ok("ListAliases", json!({"KeyId": k2})).await;
    let names: Vec<_> = list["Aliases"].as_array().unwrap().iter().map(|a| a["AliasName"].clone()).collect();
    assert_eq!(names, vec![json!("alias/app")]);
    h.ok("DeleteAlias", json!({"AliasName": "alias/app"})).await;
    assert_eq!(h.err("DescribeKey", json!({"KeyId": "alias/app"})).await.0, "NotFoundException");
    assert_eq!(h.err("DeleteAlias", json!({"AliasName": "alias/app"})).await.0, "NotFoundException");
    // The name is free again.
    h.ok("CreateAlias", json!({"AliasName": "alias/app", "TargetKeyId": k1})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_create_alias_of_one_name_exactly_one_wins() {
    let h = Harness::start().await;
    for round in 0..5 {
        let k1 = h.create_key().await;
        let k2 = h.create_key().await;
        let c1 = h.new_client().await;
        let c2 = h.new_client().await;
        let name = format!("alias/race-{round}");
        let (req1, req2) =
            (json!({"AliasName": name, "TargetKeyId": k1}), json!({"AliasName": name, "TargetKeyId": k2}));
        let (r1, r2) = tokio::join!(c1.call("CreateAlias", &req1), c2.call("CreateAlias", &req2));
        let wins = [&r1, &r2].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {r1:?} / {r2:?}");
        let loser = if r1.is_ok() { r2 } else { r1 };
        assert_eq!(loser.unwrap_err().aws_name(), Some("AlreadyExistsException"));
        let target =
            h.ok("DescribeKey", json!({"KeyId": name})).await["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        assert!(target == k1 || target == k2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_rotation_limit_and_rotation_status() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let arn = format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{key}");
    let st = h.ok("GetKeyRotationStatus", json!({"KeyId": key})).await;
    assert_eq!(st["KeyRotationEnabled"], false);
    let (name, _) = h.err("EnableKeyRotation", json!({"KeyId": key, "RotationPeriodInDays": 89})).await;
    assert_eq!(name, "ValidationException");
    h.ok("EnableKeyRotation", json!({"KeyId": key, "RotationPeriodInDays": 90})).await;
    let st = h.ok("GetKeyRotationStatus", json!({"KeyId": key})).await;
    assert_eq!(st["KeyRotationEnabled"], true);
    assert_eq!(st["RotationPeriodInDays"], 90);
    h.ok("DisableKeyRotation", json!({"KeyId": key})).await;
    for _ in 0..25 {
        h.ok("RotateKeyOnDemand", json!({"KeyId": key})).await;
    }
    let (name, message) = h.err("RotateKeyOnDemand", json!({"KeyId": key})).await;
    assert_eq!(name, "LimitExceededException");
    assert_eq!(
        message,
        format!("The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: {arn}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_rotation_happens_when_the_injected_clock_passes_the_period() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let old = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"before")})).await;
    h.ok("EnableKeyRotation", json!({"KeyId": key, "RotationPeriodInDays": 90})).await;
    h.clock.advance_ms(91 * DAY_MS);
    let rotated = eventually(Duration::from_secs(10), || async {
        let r = h.ok("ListKeyRotations", json!({"KeyId": key})).await;
        r["Rotations"].as_array().map(|a| a.len() == 1).unwrap_or(false)
    })
    .await;
    assert!(rotated, "keyd rotates once the period has passed");
    let r = h.ok("ListKeyRotations", json!({"KeyId": key})).await;
    assert_eq!(r["Rotations"][0]["RotationType"], "AUTOMATIC");
    let d = h.ok("Decrypt", json!({"CiphertextBlob": old["CiphertextBlob"]})).await;
    assert_eq!(unb64(&d["Plaintext"]), b"before");
    // Not again until the next period.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = h.ok("ListKeyRotations", json!({"KeyId": key})).await;
    assert_eq!(r["Rotations"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_writer_clock_cannot_delete_a_key_early() {
    // keyd's clock runs 31 days ahead, so it believes the deletion is due; the server's own
    // timestamp of the deletion event is not past the due date, so the event changes nothing.
    let h = Harness::start().await;
    let key = h.create_key().await;
    let enc = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"keep me")})).await;
    h.ok("ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": 7})).await;
    h.clock.advance_ms(8 * DAY_MS);
    // Give the scheduler several ticks to try.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let d = h.ok("DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(d["KeyMetadata"]["KeyState"], "PendingDeletion");
    // keyd asked the server for its time and did not even propose the deletion: the key's
    // chain holds exactly CreateKey and ScheduleKeyDeletion.
    let nats = h.service_nats().await;
    let log = keyledger_log::ControlLog::open(keyledger_log::jetstream(nats), 1).await.unwrap();
    let head = log
        .subject_head(&keyledger_events::names::control_subject(ACCOUNT, keyledger_events::AggregateKind::Key, &key))
        .await
        .unwrap()
        .unwrap();
    let event = keyledger_events::decode(&head.payload).unwrap();
    assert_eq!(event.body.name(), "KeyDeletionScheduled");
    assert_eq!(event.record.aggregate_seq, 1);
    h.ok("CancelKeyDeletion", json!({"KeyId": key})).await;
    h.ok("EnableKey", json!({"KeyId": key})).await;
    let dec = h.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    assert_eq!(unb64(&dec["Plaintext"]), b"keep me", "the material was not erased");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_key_alias_and_ciphertext() {
    let mut h = Harness::start().await;
    let key = h.create_key().await;
    h.ok("CreateAlias", json!({"AliasName": "alias/keep", "TargetKeyId": key})).await;
    h.ok("RotateKeyOnDemand", json!({"KeyId": key})).await;
    let enc = h
        .ok("Encrypt", json!({"KeyId": "alias/keep", "Plaintext": b64(b"durable"), "EncryptionContext": {"k": "v"}}))
        .await;
    let digest_before = h.env().roles.as_ref().unwrap().ctx.follower.read().state_digest();
    h.restart().await;
    let dec = h.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"], "EncryptionContext": {"k": "v"}})).await;
    assert_eq!(unb64(&dec["Plaintext"]), b"durable");
    let d = h.ok("DescribeKey", json!({"KeyId": "alias/keep"})).await;
    assert_eq!(d["KeyMetadata"]["KeyId"], key);
    let follower = &h.env().roles.as_ref().unwrap().ctx.follower;
    follower.catch_up(Duration::from_secs(5)).await.unwrap();
    let digest_after = follower.read().state_digest();
    assert_eq!(digest_before, digest_after, "replaying the log after a restart rebuilds the same state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_that_comes_due_destroys_the_key_and_erases_its_material() {
    // The roles' clock starts 8 days behind, so a 7-day window scheduled now ends one day in
    // the real past: due by the server's clock too once the roles' clock catches up.
    let h = Harness::start_with_clock(Clock::shifted(-8 * DAY_MS)).await;
    let key = h.create_key().await;
    h.ok("CreateAlias", json!({"AliasName": "alias/doomed", "TargetKeyId": key})).await;
    let enc = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"gone soon")})).await;
    h.ok("ScheduleKeyDeletion", json!({"KeyId": key, "PendingWindowInDays": 7})).await;
    let nats = h.service_nats().await;
    let js = keyledger_log::jetstream(nats);
    let material = js.get_stream(keyledger_events::names::MATERIAL_STREAM).await.unwrap();
    let filter = keyledger_events::names::material_filter(ACCOUNT, &key);
    assert!(
        material.direct_get_next_for_subject(filter.clone(), None).await.is_ok(),
        "positive control: material is stored"
    );

    h.clock.advance_ms(8 * DAY_MS);
    let deleted = eventually(Duration::from_secs(15), || async {
        matches!(h.call("DescribeKey", json!({"KeyId": key})).await, Err(e) if e.aws_name() == Some("NotFoundException"))
    })
    .await;
    assert!(deleted, "the key is gone once its deletion date has passed");
    let erased = eventually(Duration::from_secs(10), || async {
        material.direct_get_next_for_subject(filter.clone(), None).await.is_err()
    })
    .await;
    assert!(erased, "its material was erased from the material stream");
    assert_eq!(
        h.err("DescribeKey", json!({"KeyId": "alias/doomed"})).await.0,
        "NotFoundException",
        "its aliases are gone"
    );
    let (name, _) = h.err("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    assert_eq!(name, "AccessDeniedException", "old ciphertexts name a key that no longer exists");
    assert_eq!(h.err("CancelKeyDeletion", json!({"KeyId": key})).await.0, "NotFoundException");
    let keys = h.ok("ListKeys", json!({})).await;
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_different_root_key_is_refused_at_start() {
    use keyledger::cli::dev::DevEnvironment;
    use std::os::unix::fs::PermissionsExt;
    let mut h = Harness::start().await;
    h.create_key().await;
    h.stop().await;
    let data = h.dir.path().join("kl");
    let root = data.join("root.key");
    let original = std::fs::read(&root).unwrap();

    std::fs::remove_file(&root).unwrap();
    let e = DevEnvironment::start(&data, 0, Clock::system()).await.err().expect("refused without its root key");
    assert!(format!("{e:#}").contains("missing"), "{e:#}");
    assert!(!root.exists(), "no new root key was made over an existing key log");

    keyledger_crypto::RootKey::create_file(&root).unwrap();
    let e = DevEnvironment::start(&data, 0, Clock::system()).await.err().expect("refused with another root key");
    assert!(format!("{e:#}").contains("refusing to start"), "{e:#}");

    std::fs::write(&root, &original).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = DevEnvironment::start(&data, 0, Clock::system()).await.expect("starts with its own root key");
    // A second environment on the same data directory is refused while the first runs.
    let e = DevEnvironment::start(&data, 0, Clock::system()).await.err().expect("one dev per data directory");
    assert!(format!("{e:#}").contains("already running"), "{e:#}");
    env.stop().await.unwrap();
}
