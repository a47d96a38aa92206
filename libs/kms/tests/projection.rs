//! The projection: chain verification, replay equality (state digest), defensive evolve, and
//! memory per key (BRIEF invariants 1 and 2).

mod common;

use common::*;
use keyledger_events::{
    decode, encode, AggregateKind, AliasCreatedV1, Body, KeyCreatedV1, KeyDescriptionUpdatedV1, KeyDisabledV1,
};
use keyledger_kms::state::{AutoRotation, Key, MaterialVersion};
use keyledger_kms::{AggregateHead, Applied, ApplyError, Decision, KeyId, Operation, Projection};

/// A world with some history: keys, aliases, tags, rotation, deletion.
fn busy_world() -> World {
    let mut w = World::new();
    let a = w.create_key();
    let b = w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/a","TargetKeyId":"{a}"}}"#));
    w.ok(Operation::TagResource, &format!(r#"{{"KeyId":"{b}","Tags":[{{"TagKey":"t","TagValue":"v"}}]}}"#));
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{a}","RotationPeriodInDays":90}}"#));
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{b}","PendingWindowInDays":7}}"#));
    w.now += 90 * DAY;
    w.tick();
    w.caller = caller(OTHER_ACCOUNT);
    w.create_key();
    w.caller = caller(ACCOUNT);
    w
}

#[test]
fn a_never_seen_aggregate_starts_at_genesis() {
    let p = Projection::new();
    let head = p.head(AggregateKind::Key, ACCOUNT, "1234abcd-12ab-34cd-56ef-1234567890ab");
    assert_eq!(
        head,
        AggregateHead {
            next_aggregate_seq: 0,
            last_hash: keyledger_events::genesis_hash(
                AggregateKind::Key,
                ACCOUNT,
                "1234abcd-12ab-34cd-56ef-1234567890ab"
            ),
            last_stream_seq: 0,
        }
    );
    assert_eq!(p.last_applied_seq(), 0);
}

#[test]
fn heads_follow_each_aggregate_chain() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::DisableKey, &format!(r#"{{"KeyId":"{id}"}}"#));
    let head = w.head_of(&id);
    assert_eq!(head.next_aggregate_seq, 2);
    assert_eq!(head.last_stream_seq, 2);
    assert_eq!(head.last_hash, decode(&w.log[1].bytes).unwrap().hash);
    assert_eq!(w.p.last_applied_seq(), 2);
    let d = w.decide(Operation::EnableKey, &format!(r#"{{"KeyId":"{id}"}}"#)).unwrap().unwrap();
    assert_eq!(d.head, head, "the decision extends the head");
}

#[test]
fn replaying_the_log_gives_the_same_state_digest() {
    let w = busy_world();
    let replayed = w.replay();
    assert_eq!(replayed.state_digest(), w.p.state_digest());
    assert_eq!(replayed.last_applied_seq(), w.p.last_applied_seq());
    assert_eq!(
        keyledger_kms::due_actions(&replayed, u64::MAX, 100).len(),
        keyledger_kms::due_actions(&w.p, u64::MAX, 100).len()
    );
    // Two independent replays, then one more event on one of them.
    let mut one = w.replay();
    let two = w.replay();
    assert_eq!(one.state_digest(), two.state_digest());
    let mut w2 = World { p: one.clone(), ..World::new() };
    w2.log = w.log.clone();
    let id = one.keys(ACCOUNT).next().unwrap().id;
    let d = Decision {
        aggregate_kind: AggregateKind::Key,
        account: ACCOUNT.into(),
        aggregate_id: id.to_string(),
        head: one.head(AggregateKind::Key, ACCOUNT, &id.to_string()),
        body: Body::KeyDescriptionUpdated(KeyDescriptionUpdatedV1 { description: "changed".into() }),
    };
    w2.append(&d);
    one = w2.p;
    assert_ne!(one.state_digest(), two.state_digest());
}

#[test]
fn a_snapshot_restores_the_projection_bit_for_bit_and_refuses_anything_else() {
    let w = busy_world();
    let bytes = w.p.snapshot();
    assert_eq!(bytes[..8], keyledger_kms::SNAPSHOT_MAGIC);
    let restored = Projection::from_snapshot(&bytes).unwrap();
    assert_eq!(restored.snapshot(), bytes, "deterministic");
    assert_eq!(restored.state_digest(), w.p.state_digest());
    assert_eq!(restored.last_applied_seq(), w.p.last_applied_seq());
    // The derived indexes are rebuilt: due actions and the key quota count.
    let dues = |p: &Projection| format!("{:?}", keyledger_kms::due_actions(p, u64::MAX, 100));
    assert_eq!(dues(&restored), dues(&w.p));
    assert!(!keyledger_kms::due_actions(&restored, u64::MAX, 100).is_empty(), "the busy world has due actions");
    assert_eq!(w.replay().snapshot(), bytes, "a replay gives the same snapshot bytes");
    // The restored projection goes on like the original.
    let mut w2 = w;
    w2.p = restored;
    let key = w2.create_key();
    assert!(w2.p.key(ACCOUNT, &key).is_some());

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(Projection::from_snapshot(&trailing).unwrap_err(), keyledger_kms::SnapshotError::NotCanonical);
    let mut magic = bytes.clone();
    magic[0] ^= 1;
    assert!(matches!(Projection::from_snapshot(&magic), Err(keyledger_kms::SnapshotError::Decode(_))));
    assert!(Projection::from_snapshot(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn the_digest_covers_heads_even_when_an_event_changes_nothing_else() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::DisableKey, &format!(r#"{{"KeyId":"{id}"}}"#));
    let before = w.p.state_digest();
    // A second KeyDisabled (decided against a stale state) is ignored but chained.
    w.given(AggregateKind::Key, ACCOUNT, &id.to_string(), Body::KeyDisabled(KeyDisabledV1 {}));
    assert_ne!(w.p.state_digest(), before);
    assert_eq!(w.replay().state_digest(), w.p.state_digest());
}

fn event_bytes(w: &World, kind: AggregateKind, id: &str, seq: u64, prev: [u8; 32], body: Body) -> Vec<u8> {
    let d = Decision {
        aggregate_kind: kind,
        account: ACCOUNT.into(),
        aggregate_id: id.into(),
        head: AggregateHead { next_aggregate_seq: seq, last_hash: prev, last_stream_seq: 0 },
        body,
    };
    encode(&d.draft([3; 16], w.now, w.caller.principal.clone(), [0; 16]), &d.body).unwrap().0
}

#[test]
fn a_broken_chain_is_refused_and_changes_nothing() {
    let mut w = World::new();
    let id = w.create_key();
    let head = w.head_of(&id);
    let digest = w.p.state_digest();
    let body = || Body::KeyDisabled(KeyDisabledV1 {});
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "wrong previous hash",
            event_bytes(&w, AggregateKind::Key, &id.to_string(), head.next_aggregate_seq, [0xAB; 32], body()),
        ),
        (
            "skipped sequence",
            event_bytes(&w, AggregateKind::Key, &id.to_string(), head.next_aggregate_seq + 1, head.last_hash, body()),
        ),
        ("repeated sequence", event_bytes(&w, AggregateKind::Key, &id.to_string(), 0, head.last_hash, body())),
    ];
    for (what, bytes) in cases {
        let e = w.p.apply(10, w.now, &decode(&bytes).unwrap()).unwrap_err();
        let ApplyError::ChainBroken { kind, aggregate_id, expected_seq, expected_prev_hash, .. } = &e else {
            panic!("{what}: {e}")
        };
        assert_eq!(
            (*kind, aggregate_id.as_str(), *expected_seq),
            (AggregateKind::Key, id.to_string().as_str(), 1),
            "{what}"
        );
        assert_eq!(expected_prev_hash, &hex::encode(head.last_hash));
        assert!(e.to_string().starts_with("chain broken for Key"), "{e}");
        assert_eq!(w.p.state_digest(), digest, "{what}: no state change");
        assert_eq!(w.p.last_applied_seq(), 1, "{what}");
        assert_eq!(w.key_state(&id), Some(keyledger_kms::KeyState::Enabled));
    }
    // A fresh aggregate must start at its genesis hash.
    let other = w.fresh_key_id();
    let bytes =
        event_bytes(&w, AggregateKind::Key, &other.to_string(), 0, [0; 32], Body::KeyDisabled(KeyDisabledV1 {}));
    assert!(matches!(w.p.apply(10, w.now, &decode(&bytes).unwrap()), Err(ApplyError::ChainBroken { .. })));
    // The correct event still applies afterwards.
    let good = event_bytes(&w, AggregateKind::Key, &id.to_string(), 1, head.last_hash, body());
    assert_eq!(w.p.apply(10, w.now, &decode(&good).unwrap()), Ok(Applied::Folded));
}

#[test]
fn stream_sequences_must_increase() {
    let mut w = World::new();
    let id = w.create_key();
    let head = w.head_of(&id);
    let bytes =
        event_bytes(&w, AggregateKind::Key, &id.to_string(), 1, head.last_hash, Body::KeyDisabled(KeyDisabledV1 {}));
    let event = decode(&bytes).unwrap();
    assert_eq!(w.p.apply(1, w.now, &event), Err(ApplyError::StreamSeqNotIncreasing { last: 1, got: 1 }));
    assert_eq!(w.p.apply(0, w.now, &event), Err(ApplyError::StreamSeqNotIncreasing { last: 1, got: 0 }));
    assert_eq!(w.p.apply(5, w.now, &event), Ok(Applied::Folded));
    assert_eq!(w.p.last_applied_seq(), 5);
    assert_eq!(w.head_of(&id).last_stream_seq, 5);
}

#[test]
fn events_that_do_not_fit_their_aggregate_are_refused() {
    let mut w = World::new();
    let id = w.create_key();
    let digest = w.p.state_digest();
    let alias_on_key = event_bytes(
        &w,
        AggregateKind::Key,
        &id.to_string(),
        1,
        w.head_of(&id).last_hash,
        Body::AliasCreated(AliasCreatedV1 { target_key_id: *id.as_bytes() }),
    );
    assert!(matches!(w.p.apply(9, w.now, &decode(&alias_on_key).unwrap()), Err(ApplyError::Malformed(_))));
    let bad_id = "not-a-key";
    let key_bad_id = event_bytes(
        &w,
        AggregateKind::Key,
        bad_id,
        0,
        keyledger_events::genesis_hash(AggregateKind::Key, ACCOUNT, bad_id),
        Body::KeyDisabled(KeyDisabledV1 {}),
    );
    assert!(matches!(w.p.apply(9, w.now, &decode(&key_bad_id).unwrap()), Err(ApplyError::Malformed(_))));
    let fresh = w.fresh_key_id().to_string();
    let unknown_spec = event_bytes(
        &w,
        AggregateKind::Key,
        &fresh,
        0,
        keyledger_events::genesis_hash(AggregateKind::Key, ACCOUNT, &fresh),
        Body::KeyCreated(KeyCreatedV1 {
            key_spec: 99,
            key_usage: 1,
            origin: 1,
            description: String::new(),
            tags: vec![],
            multi_region: false,
            material: None,
        }),
    );
    assert_eq!(w.p.apply(9, w.now, &decode(&unknown_spec).unwrap()), Err(ApplyError::UnknownCode("key spec", 99)));
    assert_eq!(w.p.state_digest(), digest);
    assert_eq!(w.p.last_applied_seq(), 1);
}

#[test]
fn an_alias_created_for_a_key_deleted_meanwhile_is_ignored() {
    let mut w = World::new();
    let id = w.create_key();
    // Decided while the key was alive …
    let d = w
        .decide(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/late","TargetKeyId":"{id}"}}"#))
        .unwrap()
        .unwrap();
    // … but the key's deletion lands first.
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{id}","PendingWindowInDays":7}}"#));
    w.now += 7 * DAY;
    w.tick();
    assert_eq!(w.append(&d), Applied::Ignored);
    assert!(w.p.alias(ACCOUNT, "alias/late").is_none());
    assert_eq!(w.p.head(AggregateKind::Alias, ACCOUNT, "alias/late").next_aggregate_seq, 1);
    assert_eq!(w.replay().state_digest(), w.p.state_digest());
}

#[test]
fn a_key_stays_small_in_memory() {
    // Inline size of the per-key record and of one material version.
    let key = std::mem::size_of::<Key>();
    let version = std::mem::size_of::<MaterialVersion>();
    assert!(key <= 256, "Key is {key} bytes inline");
    assert!(version <= 128, "MaterialVersion is {version} bytes");
    // A typical key: 12-byte account, short description, two tags, one material version, one
    // alias name, plus its B-tree slot (id + head + entry pointer) with ~50 % node overhead.
    let slot = 16 + std::mem::size_of::<AggregateHead>() + 16;
    let typical = key + 12 + 32 + 2 * (48 + 32) + version + (24 + 16) + slot * 3 / 2;
    assert!(typical <= 1024, "a typical key takes about {typical} bytes");
    assert_eq!(std::mem::size_of::<AutoRotation>(), 16);
    let _ = KeyId::from_bytes([0; 16]);
}
