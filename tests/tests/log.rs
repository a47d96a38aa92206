//! The log is the truth: every change is a chained event on an immutable stream, and replaying
//! the stream into an empty projection gives the live state.

use std::time::Duration;

use futures::StreamExt;
use keyledger_events::{names, Body};
use keyledger_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_a_chained_event_and_replay_rebuilds_the_live_state() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    h.ok("CreateAlias", json!({"AliasName": "alias/chain", "TargetKeyId": key})).await;
    h.ok("DisableKey", json!({"KeyId": key})).await;
    h.ok("EnableKey", json!({"KeyId": key})).await;
    h.ok("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "a", "TagValue": "b"}]})).await;
    h.ok("RotateKeyOnDemand", json!({"KeyId": key})).await;
    let reply = h.call("UpdateKeyDescription", json!({"KeyId": key, "Description": "z"})).await.unwrap();
    let last_seq = reply.log_seq.expect("mutating replies carry the event's stream sequence");

    let nats = h.service_nats().await;
    let js = keyledger_log::jetstream(nats);
    let log = keyledger_log::ControlLog::open(js, 1).await.unwrap();
    let records: Vec<_> = log.read_range(1, last_seq).await.unwrap().map(|r| r.unwrap()).collect().await;
    assert_eq!(records.len() as u64, last_seq);
    let mut projection = keyledger_kms::Projection::default();
    let mut key_chain = Vec::new();
    for r in &records {
        let event = keyledger_events::decode(&r.payload).expect("every stored record decodes byte-exactly");
        assert_eq!(
            r.subject,
            names::control_subject(&event.record.account, event.aggregate_kind(), &event.record.aggregate_id)
        );
        if event.record.aggregate_id == key {
            key_chain.push(event.clone());
        }
        projection.apply(r.stream_seq, r.server_time_unix_ms, &event).expect("the chain links");
    }
    let kinds: Vec<&str> = key_chain.iter().map(|e| e.body.name()).collect();
    assert_eq!(
        kinds,
        ["KeyCreated", "KeyDisabled", "KeyEnabled", "KeyTagsAdded", "KeyMaterialRotated", "KeyDescriptionUpdated"]
    );
    for pair in key_chain.windows(2) {
        assert_eq!(pair[1].record.prev_hash, pair[0].hash, "each event names its predecessor's hash");
        assert_eq!(pair[1].record.aggregate_seq, pair[0].record.aggregate_seq + 1);
    }
    assert_eq!(key_chain[0].record.principal.nats_account, "DEV");
    assert_eq!(key_chain[0].record.principal.user, "dev");
    assert!(matches!(&key_chain[0].body, Body::KeyCreatedV2(c) if c.material.is_some() && c.policy.is_none()));

    let follower = &h.env().roles.as_ref().unwrap().ctx.follower;
    follower.wait_for(last_seq, Duration::from_secs(5)).await.unwrap();
    assert_eq!(projection.state_digest(), follower.read().state_digest(), "replay equals the live state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_stream_refuses_delete_and_purge() {
    let h = Harness::start().await;
    h.create_key().await;
    let nats = h.service_nats().await;
    let js = keyledger_log::jetstream(nats);
    let stream = js.get_stream(names::CONTROL_STREAM).await.unwrap();
    assert!(stream.delete_message(1).await.is_err(), "message delete is denied");
    assert!(stream.purge().await.is_err(), "purge is denied");
    let info = js.get_stream(names::CONTROL_STREAM).await.unwrap().info().await.unwrap().clone();
    assert!(info.config.deny_delete && info.config.deny_purge);
    assert_eq!(info.state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_stream_holds_only_wrapped_material() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let nats = h.service_nats().await;
    let js = keyledger_log::jetstream(nats);
    let stream = js.get_stream(names::MATERIAL_STREAM).await.unwrap();
    let msg = stream
        .direct_get_next_for_subject(names::material_filter(ACCOUNT, &key), None)
        .await
        .expect("the key's material is stored");
    assert_eq!(msg.payload.len(), keyledger_crypto::WRAPPED_MATERIAL_LEN, "only the wrapped form is stored");
}

/// `GET path` over plain HTTP/1.0 on `addr`; the JSON body.
async fn http_get_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

/// Runs `keyledger replay` (the real binary) into `to`; its JSON report.
fn replay_cli(data_dir: &std::path::Path, to: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kl-cli"))
        .arg("replay")
        .arg("--to")
        .arg(to)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_ten_thousand_mixed_operations_gives_the_live_digest_twice() {
    let h = Harness::start().await;
    let keys: Vec<String> = futures::stream::iter(0..40).then(|_| h.create_key()).collect().await;
    // 10,000 operations: management (aliases, tags, disable/enable, rotations, grants,
    // policies, descriptions) and cryptography (Encrypt, GenerateDataKey, Decrypt), 16 at a
    // time from 16 clients.
    let clients: Vec<_> = futures::stream::iter(0..16).then(|_| h.new_client()).collect().await;
    let total = 10_000usize;
    let ops = futures::stream::iter(0..total)
        .map(|i| {
            let client = &clients[i % clients.len()];
            let key = keys[(i * 7 + i / 50) % keys.len()].clone();
            async move {
                let (op, req) = match i % 50 {
                    0 => ("CreateAlias", json!({"AliasName": format!("alias/a{i}"), "TargetKeyId": key})),
                    1 => ("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": format!("t{}", i % 7), "TagValue": i.to_string()}]})),
                    2 => ("UpdateKeyDescription", json!({"KeyId": key, "Description": format!("d{i}")})),
                    3 => ("RotateKeyOnDemand", json!({"KeyId": key})),
                    4 => ("CreateGrant", json!({"KeyId": key, "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:user/g{i}"), "Operations": ["Encrypt"]})),
                    5 => ("EnableKeyRotation", json!({"KeyId": key, "RotationPeriodInDays": 90 + i % 100})),
                    6 => ("PutKeyPolicy", json!({"KeyId": key, "Policy": json!({"Version": "2012-10-17", "Statement": [{"Sid": format!("s{i}"), "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"}]}).to_string()})),
                    7..=20 => ("GenerateDataKey", json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": {"i": i.to_string()}})),
                    _ => ("Encrypt", json!({"KeyId": key, "Plaintext": b64(&i.to_le_bytes()), "EncryptionContext": {"n": (i % 3).to_string()}})),
                };
                client.call(op, &req).await.map(|_| ()).map_err(|e| format!("{op}: {e}"))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let failed: Vec<_> = ops.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {total} failed, first: {:?}", failed.len(), failed.first());

    // The live digest, over the roles' real health endpoint.
    let ctx = h.env().roles.as_ref().unwrap().ctx.clone();
    let head = ctx.follower.log().head_seq().await.unwrap();
    ctx.follower.wait_for(head, Duration::from_secs(10)).await.unwrap();
    let health = keyledger::health::serve(ctx, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let live = http_get_json(health.addr, "/digest").await;
    assert_eq!(live["control_seq"], head);

    let data_dir = h.env().data_dir.clone();
    let out = tempfile::tempdir().unwrap();
    let first = replay_cli(&data_dir, &out.path().join("r1"), &[]);
    assert_eq!(first["control_seq"], live["control_seq"]);
    assert_eq!(first["state_digest"], live["state_digest"], "replay rebuilds the live state bit for bit");
    assert_eq!(first["keys"], 40);
    let second = replay_cli(&data_dir, &out.path().join("r2"), &[]);
    assert_eq!(second["state_digest"], first["state_digest"]);
    assert_eq!(second["index_digest"], first["index_digest"], "both rebuilt indexes hold the same records");
    let records = h.audit_records().await.len() as u64;
    assert_eq!(first["index_records"].as_u64().unwrap(), records, "the index holds every audit record of the log");
    // Every management event names what authorized it, recomputed from the log: CreateKey by
    // the account, the rest by a key policy statement (the default policy's, or the one a
    // PutKeyPolicy installed), never "not-allowed".
    let index = keyledger_audit_index::AuditIndex::open(&out.path().join("r1").join("audit-index")).unwrap();
    let mut control = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page =
            index.search(&keyledger_audit_index::Scope::All, &Default::default(), 1000, cursor.as_deref()).unwrap();
        control.extend(page.records.into_iter().filter(|r| r.stream == names::CONTROL_STREAM));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(control.len() > 1000, "{} control records", control.len());
    for r in &control {
        let ok = match r.operation.as_str() {
            "CreateKey" => r.authorized_by == "account",
            _ => r.authorized_by.starts_with("key-policy:"),
        };
        assert!(ok, "{} at {} authorized by {:?}", r.operation, r.seq, r.authorized_by);
    }
    assert!(control.iter().any(|r| r.authorized_by == "key-policy:Enable IAM User Permissions"));
    assert!(control.iter().any(|r| r.authorized_by.starts_with("key-policy:s")), "a PutKeyPolicy statement decided");

    // A replay to an earlier position differs, and refuses a directory that is not empty.
    let earlier = replay_cli(&data_dir, &out.path().join("r3"), &["--to-seq", "10", "--no-index"]);
    assert_eq!(earlier["control_seq"], 10);
    assert_ne!(earlier["state_digest"], first["state_digest"]);
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_kl-cli"))
        .args(["replay", "--no-index", "--to"])
        .arg(out.path().join("r1"))
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    health.stop();
}

/// Snapshots (issue 4): a cold start reads the newest snapshot the log commits to (a signed
/// snapshot note) and only the tail after it, and ends at the live state; a snapshot file that
/// is not the committed one (a flipped byte, an older snapshot renamed) is refused and the log
/// replayed from the start, to the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_uses_a_verified_snapshot_and_replays_the_log_when_it_is_refused() {
    let config = keyledger::roles::RoleConfig {
        snapshot: keyledger::snapshot::SnapshotConfig { dir: None, every: 10 },
        ..Default::default()
    };
    let mut h = Harness::start_with_config(config).await;
    for i in 0..13 {
        let key = h.create_key().await;
        h.ok("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "n", "TagValue": i.to_string()}]})).await;
    }
    let follower = |h: &Harness| h.env().roles.as_ref().unwrap().ctx.follower.clone();
    let live = follower(&h).read().state_digest();
    let head = follower(&h).applied_seq();
    assert_eq!(head, 26);
    assert_eq!(follower(&h).started_from(), 0);

    // The checkpointer commits the snapshot at 20 (it may commit 10 first).
    let js = keyledger_log::jetstream(h.service_nats().await);
    let checkpoints = keyledger_log::CheckpointLog::open(js, 1).await.unwrap();
    let committed = eventually(Duration::from_secs(15), || {
        let checkpoints = checkpoints.clone();
        async move {
            let Some(note) = checkpoints.latest_snapshot(names::CONTROL_STREAM).await.unwrap() else { return false };
            let text = String::from_utf8(note.payload.to_vec()).unwrap();
            text.lines().nth(1) == Some("20")
        }
    })
    .await;
    assert!(committed, "a snapshot note for control sequence 20");
    let dir = h.env().data_dir.join(keyledger::cli::dev::SNAPSHOT_DIR);
    let file = dir.join(keyledger::snapshot::file_name(20));
    assert!(file.exists(), "the roles wrote the snapshot file");

    // A restart starts from the snapshot, applies the 6 records after it, and is at the live state.
    h.restart().await;
    assert_eq!(follower(&h).started_from(), 20);
    follower(&h).catch_up(Duration::from_secs(10)).await.unwrap();
    assert_eq!(follower(&h).read().state_digest(), live);
    assert_eq!(follower(&h).applied_seq(), head);
    // The state serves requests as before.
    let keys = h.ok("ListKeys", json!({"Limit": 100})).await;
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 13);

    // One flipped byte: refused, the log is replayed, same state.
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    std::fs::write(&file, &bad).unwrap();
    h.restart().await;
    assert_eq!(follower(&h).started_from(), 0, "a snapshot that is not the committed one is refused");
    follower(&h).catch_up(Duration::from_secs(10)).await.unwrap();
    assert_eq!(follower(&h).read().state_digest(), live);

    // An older, genuine snapshot under the committed position's name: refused too.
    let older = std::fs::read(dir.join(keyledger::snapshot::file_name(10))).expect("the snapshot at 10 is kept");
    assert_eq!(keyledger_kms::Projection::from_snapshot(&older).unwrap().last_applied_seq(), 10);
    std::fs::write(&file, older).unwrap();
    h.restart().await;
    assert_eq!(follower(&h).started_from(), 0);
    follower(&h).catch_up(Duration::from_secs(10)).await.unwrap();
    assert_eq!(follower(&h).read().state_digest(), live);

    // The right bytes again: used again.
    std::fs::write(&file, &good).unwrap();
    h.restart().await;
    assert_eq!(follower(&h).started_from(), 20);

    // verify reads the snapshot notes as checkpoints of the control stream: still clean.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kl-cli"))
        .args(["verify", "--data-dir"])
        .arg(&h.env().data_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{text}");
    assert!(text.contains("findings: 0 "), "{text}");
}
