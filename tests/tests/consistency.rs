//! Never a stale yes: log positions in replies, minimum sequences in requests, and keyd
//! instances racing on the same due action.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use keyledger::roles::{Role, RoleConfig};
use keyledger_events::names;
use keyledger_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_replies_carry_increasing_log_positions() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let a = h.call("DisableKey", json!({"KeyId": key})).await.unwrap().log_seq.unwrap();
    let b = h.call("EnableKey", json!({"KeyId": key})).await.unwrap().log_seq.unwrap();
    assert!(b > a);
    // A no-op (already enabled) appends nothing and reports a position at least as new.
    let c = h.call("EnableKey", json!({"KeyId": key})).await.unwrap().log_seq.unwrap();
    assert!(c >= b);
    let follower = &h.env().roles.as_ref().unwrap().ctx.follower;
    assert_eq!(follower.catch_up(Duration::from_secs(5)).await.unwrap(), b, "the no-op appended nothing");
}

/// DescribeKey sent raw with these headers; the JSON reply body.
async fn describe_with_headers(h: &Harness, key: &str, headers: HeaderMap) -> serde_json::Value {
    let body = serde_json::to_vec(&json!({"KeyId": key})).unwrap();
    let reply =
        h.client.nats().request_with_headers(names::api_subject("DescribeKey"), headers, body.into()).await.unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// How many material messages (committed or not) a key has in the material stream.
async fn material_messages(material: &async_nats::jetstream::stream::Stream, key: &str) -> usize {
    let filter = names::material_filter(ACCOUNT, key);
    let mut count = 0;
    let mut from = 1u64;
    while let Ok(msg) = material.direct_get_next_for_subject(filter.clone(), Some(from)).await {
        count += 1;
        from = msg.sequence + 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimum_sequence_beyond_the_head_cannot_stall_a_worker() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let mut headers = HeaderMap::new();
    headers.insert(keyledger::protocol::MIN_SEQ_HEADER, "18446744073709551615");
    let started = Instant::now();
    let body = describe_with_headers(&h, &key, headers).await;
    assert_eq!(body["KeyMetadata"]["KeyId"], key, "answered from the head: {body}");
    assert!(started.elapsed() < Duration::from_secs(2), "the minimum is capped at the stream's head");

    let mut headers = HeaderMap::new();
    headers.insert(keyledger::protocol::MIN_SEQ_HEADER, "not-a-number");
    let body = describe_with_headers(&h, &key, headers).await;
    assert_eq!(body["__type"], "ValidationException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keyd_instances_racing_on_a_due_rotation_rotate_once_and_leave_no_orphan_material() {
    let h = Harness::start().await;
    // A second keyd on the same log, reading the same clock, ticking faster.
    let env = h.env();
    let root = keyledger_crypto::RootKey::load(&env.data_dir.join("root.key")).unwrap();
    let config = RoleConfig {
        accounts: [("DEV".to_owned(), ACCOUNT.to_owned())].into_iter().collect(),
        clock: h.clock.clone(),
        scheduler_tick: Duration::from_millis(200),
        ..RoleConfig::default()
    };
    let second = keyledger::roles::start(&[Role::Keyd], &env.service_profile, Arc::new(root), config).await.unwrap();

    let mut keys = Vec::new();
    for _ in 0..4 {
        let key = h.create_key().await;
        h.ok("EnableKeyRotation", json!({"KeyId": key, "RotationPeriodInDays": 90})).await;
        keys.push(key);
    }
    h.clock.advance_ms(91 * 86_400_000);
    for key in &keys {
        let rotated = eventually(Duration::from_secs(10), || async {
            h.ok("ListKeyRotations", json!({"KeyId": key})).await["Rotations"]
                .as_array()
                .map(|a| !a.is_empty())
                .unwrap_or(false)
        })
        .await;
        assert!(rotated);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let nats = h.service_nats().await;
    let js = keyledger_log::jetstream(nats);
    let material = js.get_stream(names::MATERIAL_STREAM).await.unwrap();
    for key in &keys {
        let r = h.ok("ListKeyRotations", json!({"KeyId": key})).await;
        assert_eq!(r["Rotations"].as_array().unwrap().len(), 1, "exactly one rotation of {key}");
        // Count the material messages of the key: the first and the rotated one, no orphan.
        assert_eq!(material_messages(&material, key).await, 2, "{key}: one material per committed version");
    }

    // Now force the race: two more keyd instances whose clock is 91 days ahead (the others'
    // is not, and these two never tick on their own) execute the same due rotation at once.
    let key = h.create_key().await;
    h.ok("EnableKeyRotation", json!({"KeyId": key, "RotationPeriodInDays": 90})).await;
    let ahead = Clock::shifted(91 * 86_400_000 * 2);
    let racer = |clock: Clock| {
        let profile = env.service_profile.clone();
        let root = keyledger_crypto::RootKey::load(&env.data_dir.join("root.key")).unwrap();
        let config = RoleConfig {
            accounts: [("DEV".to_owned(), ACCOUNT.to_owned())].into_iter().collect(),
            clock,
            scheduler_tick: Duration::from_secs(3600),
            ..RoleConfig::default()
        };
        async move { keyledger::roles::start(&[Role::Keyd], &profile, Arc::new(root), config).await.unwrap() }
    };
    let r1 = racer(ahead.clone()).await;
    let r2 = racer(ahead.clone()).await;
    let (first, other) = (r1.ctx.clone(), r2.ctx.clone());
    first.follower.catch_up(Duration::from_secs(5)).await.unwrap();
    other.follower.catch_up(Duration::from_secs(5)).await.unwrap();
    let command = {
        let p = first.follower.read();
        keyledger_kms::due_actions(&p, ahead.now_unix_ms(), 100)
            .into_iter()
            .find(|c| matches!(c, keyledger_kms::Command::RotationDue { key_id, .. } if key_id.to_string() == key))
            .expect("the rotation is due by the racers' clock")
    };
    let service = keyledger_kms::Caller { account: String::new(), principal: keyledger_events::PrincipalV1::service() };
    let (a, b) = tokio::join!(
        keyledger::keyd::execute(&first, &service, &command, [0; 16]),
        keyledger::keyd::execute(&other, &service, &command, [0; 16]),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        [a.1.is_some(), b.1.is_some()].iter().filter(|x| **x).count(),
        1,
        "exactly one instance appended the rotation"
    );
    assert_eq!(material_messages(&material, &key).await, 2, "the loser discarded the material it prepared");
    r1.stop().await;
    r2.stop().await;
    second.stop().await;
}
