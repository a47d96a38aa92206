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
