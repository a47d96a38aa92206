//! Read operations: pagination, markers, account scoping (aws-kms-api.md §2.2, §2.7, §2.9, §13).

mod common;

use common::*;
use keyledger_kms::{ErrorKind, KmsError, Operation};
use serde_json::{json, Value};

fn collect_pages(w: &mut World, op: Operation, extra: &str, member: &str, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut body = format!(r#"{{{extra}"Limit":{limit}"#);
        if let Some(m) = &marker {
            body.push_str(&format!(r#","Marker":"{m}""#));
        }
        body.push('}');
        let v = w.ok(op, &body);
        pages.push(v[member].as_array().unwrap().clone());
        if v["Truncated"] == json!(true) {
            marker = Some(v["NextMarker"].as_str().expect("NextMarker when truncated").to_owned());
        } else {
            assert!(v.get("NextMarker").is_none(), "no NextMarker on the last page");
            return pages;
        }
    }
}

#[test]
fn list_keys_pages_through_every_key_including_pending_deletion() {
    let mut w = World::new();
    let mut ids: Vec<String> = (0..5).map(|_| w.create_key().to_string()).collect();
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{}"}}"#, ids[2]));
    ids.sort();
    let pages = collect_pages(&mut w, Operation::ListKeys, "", "Keys", 2);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let listed: Vec<String> = pages.concat().iter().map(|k| k["KeyId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed, ids);
    let first = &pages[0][0];
    let id = first["KeyId"].as_str().unwrap();
    assert_eq!(first, &json!({"KeyId": id, "KeyArn": format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{id}")}));
    // Exactly `limit` keys: one page, not truncated.
    assert_eq!(collect_pages(&mut w, Operation::ListKeys, "", "Keys", 5).len(), 1);
    // Default limit 100.
    assert_eq!(w.ok(Operation::ListKeys, "{}")["Keys"].as_array().unwrap().len(), 5);
}

#[test]
fn list_keys_is_scoped_to_the_callers_account() {
    let mut w = World::new();
    w.create_key();
    w.caller = caller(OTHER_ACCOUNT);
    assert_eq!(w.ok(Operation::ListKeys, "{}"), json!({"Keys": [], "Truncated": false}));
    w.create_key();
    assert_eq!(w.ok(Operation::ListKeys, "{}")["Keys"].as_array().unwrap().len(), 1);
}

#[test]
fn markers_this_service_did_not_issue_are_invalid() {
    let mut w = World::new();
    let id = w.create_key();
    w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/a","TargetKeyId":"{id}"}}"#));
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/b","TargetKeyId":"{id}"}}"#));
    let alias_marker = w.ok(Operation::ListAliases, r#"{"Limit":1}"#)["NextMarker"].as_str().unwrap().to_owned();
    let invalid = KmsError::invalid_marker();
    let bad = ["garbage!", "x", alias_marker.as_str(), "Szpub3QtYS1rZXktaWQ" /* K:not-a-key-id */];
    for marker in bad {
        let e = w.run(Operation::ListKeys, &format!(r#"{{"Marker":"{marker}"}}"#)).unwrap_err();
        assert_eq!(e, invalid, "{marker}");
    }
    assert_eq!(
        invalid.message,
        "The request was rejected because the marker that specifies where pagination should next begin is not valid."
    );
    let key_marker = w.ok(Operation::ListKeys, r#"{"Limit":1}"#)["NextMarker"].as_str().unwrap().to_owned();
    assert_eq!(w.err(Operation::ListAliases, &format!(r#"{{"Marker":"{key_marker}"}}"#)).0, ErrorKind::InvalidMarker);
    assert_eq!(
        w.err(Operation::ListResourceTags, &format!(r#"{{"KeyId":"{id}","Marker":"{key_marker}"}}"#)).0,
        ErrorKind::InvalidMarker
    );
}

#[test]
fn list_resource_tags_and_rotations_page_in_order() {
    let mut w = World::new();
    let id = w.create_key();
    let tags: Vec<String> = (0..5).map(|i| format!(r#"{{"TagKey":"k{i}","TagValue":"v{i}"}}"#)).collect();
    w.ok(Operation::TagResource, &format!(r#"{{"KeyId":"{id}","Tags":[{}]}}"#, tags.join(",")));
    let pages = collect_pages(&mut w, Operation::ListResourceTags, &format!(r#""KeyId":"{id}","#), "Tags", 2);
    let keys: Vec<String> = pages.concat().iter().map(|t| t["TagKey"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4"]);
    for _ in 0..3 {
        w.ok(Operation::RotateKeyOnDemand, &format!(r#"{{"KeyId":"{id}"}}"#));
    }
    let pages = collect_pages(&mut w, Operation::ListKeyRotations, &format!(r#""KeyId":"{id}","#), "Rotations", 2);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    let ids: Vec<Value> = pages.concat().iter().map(|r| r["KeyMaterialId"].clone()).collect();
    let expected: Vec<Value> = (2..=4).map(|v| json!(hex::encode(material(&id, v).material_id))).collect();
    assert_eq!(ids, expected);
}

#[test]
fn reads_of_another_accounts_key_are_denied() {
    let mut w = World::new();
    let id = w.create_key();
    let arn = w.arn(&id);
    w.caller = caller(OTHER_ACCOUNT);
    for op in [
        Operation::DescribeKey,
        Operation::GetKeyRotationStatus,
        Operation::ListKeyRotations,
        Operation::ListResourceTags,
        Operation::ListAliases,
    ] {
        let (kind, message) = w.err(op, &format!(r#"{{"KeyId":"{arn}"}}"#));
        assert_eq!(kind, ErrorKind::AccessDenied, "{op}");
        assert!(message.contains(&format!("kms:{op} on resource: {arn}")), "{message}");
    }
}

#[test]
fn management_replies_have_the_aws_shapes() {
    let mut w = World::new();
    let id = w.create_key();
    let key = format!(r#"{{"KeyId":"{id}"}}"#);
    let empty_output = [
        (Operation::UpdateKeyDescription, format!(r#"{{"KeyId":"{id}","Description":"d"}}"#)),
        (Operation::DisableKey, key.clone()),
        (Operation::EnableKey, key.clone()),
        (Operation::EnableKeyRotation, key.clone()),
        (Operation::DisableKeyRotation, key.clone()),
        (Operation::TagResource, format!(r#"{{"KeyId":"{id}","Tags":[{{"TagKey":"a","TagValue":"b"}}]}}"#)),
        (Operation::UntagResource, format!(r#"{{"KeyId":"{id}","TagKeys":["a"]}}"#)),
        (Operation::CreateAlias, format!(r#"{{"AliasName":"alias/x","TargetKeyId":"{id}"}}"#)),
        (Operation::UpdateAlias, format!(r#"{{"AliasName":"alias/x","TargetKeyId":"{id}"}}"#)),
        (Operation::DeleteAlias, r#"{"AliasName":"alias/x"}"#.to_owned()),
    ];
    for (op, body) in empty_output {
        assert_eq!(w.ok(op, &body), json!({}), "{op}");
    }
    assert_eq!(w.ok(Operation::RotateKeyOnDemand, &key), json!({"KeyId": w.arn(&id)}));
}
