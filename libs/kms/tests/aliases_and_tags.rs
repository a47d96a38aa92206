//! Aliases (aws-kms-api.md §2.4) and tags (§2.9).

mod common;

use common::*;
use keyledger_kms::{ErrorKind, Limits, Operation};
use serde_json::json;

fn alias_arn(name: &str) -> String {
    format!("arn:aws:kms:us-east-1:{ACCOUNT}:{name}")
}

#[test]
fn create_alias_then_list_and_describe_through_it() {
    let mut w = World::new();
    let id = w.create_key();
    w.now = T0 + 500;
    assert_eq!(
        w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/app","TargetKeyId":"{}"}}"#, w.arn(&id))),
        json!({})
    );
    assert_eq!(
        w.ok(Operation::ListAliases, "{}"),
        json!({"Aliases": [{
            "AliasName": "alias/app",
            "AliasArn": alias_arn("alias/app"),
            "TargetKeyId": id.to_string(),
            "CreationDate": (T0 + 500) as f64 / 1000.0,
            "LastUpdatedDate": (T0 + 500) as f64 / 1000.0,
        }], "Truncated": false})
    );
    for via in ["alias/app".to_owned(), alias_arn("alias/app")] {
        let md = w.ok(Operation::DescribeKey, &format!(r#"{{"KeyId":"{via}"}}"#));
        assert_eq!(md["KeyMetadata"]["KeyId"], json!(id.to_string()));
    }
    assert_eq!(
        w.err(Operation::DescribeKey, r#"{"KeyId":"alias/nope"}"#),
        (ErrorKind::NotFound, format!("Alias {} is not found.", alias_arn("alias/nope")))
    );
}

#[test]
fn create_alias_errors_in_aws_order() {
    let mut w = World::new();
    let id = w.create_key();
    let unknown = w.fresh_key_id();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/taken","TargetKeyId":"{id}"}}"#));
    let create = |name: &str, target: &str| format!(r#"{{"AliasName":"{name}","TargetKeyId":"{target}"}}"#);
    assert_eq!(
        w.err(Operation::CreateAlias, &create("alias/taken", &id.to_string())),
        (ErrorKind::AlreadyExists, format!("An alias with the name {} already exists", alias_arn("alias/taken")))
    );
    assert_eq!(
        w.err(Operation::CreateAlias, &create("alias/x", &unknown.to_string())),
        (ErrorKind::NotFound, format!("Key '{}' does not exist", w.arn(&unknown)))
    );
    assert_eq!(
        w.err(Operation::CreateAlias, &create("alias/x", "alias/taken")),
        (ErrorKind::InvalidArn, "Key Aliases are not supported for this operation.".into())
    );
    // Not found comes before "already exists".
    assert_eq!(w.err(Operation::CreateAlias, &create("alias/taken", &unknown.to_string())).0, ErrorKind::NotFound);
    // A key of another account cannot be a target.
    let mine = w.arn(&id);
    w.caller = caller(OTHER_ACCOUNT);
    assert_eq!(w.err(Operation::CreateAlias, &create("alias/x", &mine)).0, ErrorKind::AccessDenied);
    // Aliases are per account: the same name is free elsewhere.
    let theirs = w.create_key();
    w.ok(Operation::CreateAlias, &create("alias/taken", &theirs.to_string()));
}

#[test]
fn aliases_per_key_stop_at_the_limit() {
    for max in [50usize, 2] {
        let mut w = World::new();
        w.limits = Limits { max_aliases_per_key: max, ..Limits::default() };
        let id = w.create_key();
        let other = w.create_key();
        for i in 0..max {
            w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/a{i}","TargetKeyId":"{id}"}}"#));
        }
        let arn = w.arn(&id);
        let full = (ErrorKind::LimitExceeded, format!("{arn} already has the maximum number of aliases ({max})."));
        assert_eq!(
            w.err(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/over","TargetKeyId":"{id}"}}"#)),
            full
        );
        // UpdateAlias onto the full key is refused too; away from it is fine.
        w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/o","TargetKeyId":"{other}"}}"#));
        assert_eq!(w.err(Operation::UpdateAlias, &format!(r#"{{"AliasName":"alias/o","TargetKeyId":"{id}"}}"#)), full);
        w.ok(Operation::UpdateAlias, &format!(r#"{{"AliasName":"alias/a0","TargetKeyId":"{other}"}}"#));
        w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/over","TargetKeyId":"{id}"}}"#));
        assert_eq!(w.p.key(ACCOUNT, &id).unwrap().aliases.len(), max);
    }
}

#[test]
fn update_alias_moves_the_alias_and_keeps_its_creation_date() {
    let mut w = World::new();
    let a = w.create_key();
    let b = w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/app","TargetKeyId":"{a}"}}"#));
    w.now = T0 + 7000;
    assert!(w
        .decide(Operation::UpdateAlias, &format!(r#"{{"AliasName":"alias/app","TargetKeyId":"{a}"}}"#))
        .unwrap()
        .is_none());
    w.ok(Operation::UpdateAlias, &format!(r#"{{"AliasName":"alias/app","TargetKeyId":"{b}"}}"#));
    let listed = w.ok(Operation::ListAliases, "{}");
    assert_eq!(listed["Aliases"][0]["TargetKeyId"], json!(b.to_string()));
    assert_eq!(listed["Aliases"][0]["CreationDate"], json!(T0 / 1000));
    assert_eq!(listed["Aliases"][0]["LastUpdatedDate"], json!((T0 + 7000) / 1000));
    assert!(w.p.key(ACCOUNT, &a).unwrap().aliases.is_empty());
    assert_eq!(w.p.key(ACCOUNT, &b).unwrap().aliases, vec!["alias/app".to_owned()]);
    assert_eq!(
        w.err(Operation::UpdateAlias, &format!(r#"{{"AliasName":"alias/none","TargetKeyId":"{b}"}}"#)),
        (ErrorKind::NotFound, format!("Alias {} is not found.", alias_arn("alias/none")))
    );
}

#[test]
fn delete_alias_removes_it_and_a_second_delete_is_not_found() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/app","TargetKeyId":"{id}"}}"#));
    assert_eq!(w.ok(Operation::DeleteAlias, r#"{"AliasName":"alias/app"}"#), json!({}));
    assert!(w.p.key(ACCOUNT, &id).unwrap().aliases.is_empty());
    assert_eq!(
        w.err(Operation::DeleteAlias, r#"{"AliasName":"alias/app"}"#),
        (ErrorKind::NotFound, format!("Alias {} is not found.", alias_arn("alias/app")))
    );
    assert_eq!(w.ok(Operation::ListAliases, "{}"), json!({"Aliases": [], "Truncated": false}));
}

#[test]
fn list_aliases_filters_by_key() {
    let mut w = World::new();
    let a = w.create_key();
    let b = w.create_key();
    for (name, key) in [("alias/z", a), ("alias/m", b), ("alias/b", a)] {
        w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"{name}","TargetKeyId":"{key}"}}"#));
    }
    let names = |v: serde_json::Value| -> Vec<String> {
        v["Aliases"].as_array().unwrap().iter().map(|a| a["AliasName"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(w.ok(Operation::ListAliases, "{}")), ["alias/b", "alias/m", "alias/z"]);
    assert_eq!(names(w.ok(Operation::ListAliases, &format!(r#"{{"KeyId":"{a}"}}"#))), ["alias/b", "alias/z"]);
    let page = w.ok(Operation::ListAliases, &format!(r#"{{"KeyId":"{a}","Limit":1}}"#));
    assert_eq!(page["Truncated"], json!(true));
    let marker = page["NextMarker"].as_str().unwrap().to_owned();
    assert_eq!(
        names(w.ok(Operation::ListAliases, &format!(r#"{{"KeyId":"{a}","Limit":1,"Marker":"{marker}"}}"#))),
        ["alias/z"]
    );
    let unknown = w.fresh_key_id();
    assert_eq!(w.err(Operation::ListAliases, &format!(r#"{{"KeyId":"{unknown}"}}"#)).0, ErrorKind::NotFound);
    assert_eq!(w.err(Operation::ListAliases, r#"{"KeyId":"alias/b"}"#).0, ErrorKind::InvalidArn);
}

#[test]
fn tag_resource_upserts_in_insertion_order() {
    let mut w = World::new();
    let id = w.create_key();
    let tag = |pairs: &[(&str, &str)]| {
        let t: Vec<String> = pairs.iter().map(|(k, v)| format!(r#"{{"TagKey":"{k}","TagValue":"{v}"}}"#)).collect();
        format!(r#"{{"KeyId":"{id}","Tags":[{}]}}"#, t.join(","))
    };
    w.ok(Operation::TagResource, &tag(&[("b", "1"), ("a", "2")]));
    w.ok(Operation::TagResource, &tag(&[("c", "3"), ("b", "changed")]));
    assert_eq!(
        w.ok(Operation::ListResourceTags, &format!(r#"{{"KeyId":"{id}"}}"#)),
        json!({"Tags": [
            {"TagKey": "b", "TagValue": "changed"},
            {"TagKey": "a", "TagValue": "2"},
            {"TagKey": "c", "TagValue": "3"},
        ], "Truncated": false})
    );
    assert!(w.decide(Operation::TagResource, &tag(&[("a", "2")])).unwrap().is_none(), "nothing changes");
    w.ok(Operation::UntagResource, &format!(r#"{{"KeyId":"{id}","TagKeys":["a","zz","a"]}}"#));
    let d = w
        .decide(Operation::UntagResource, &format!(r#"{{"KeyId":"{id}","TagKeys":["b","b","nope"]}}"#))
        .unwrap()
        .unwrap();
    assert_eq!(
        d.body,
        keyledger_events::Body::KeyTagsRemoved(keyledger_events::KeyTagsRemovedV1 { tag_keys: vec!["b".into()] })
    );
    w.append(&d);
    assert_eq!(
        w.ok(Operation::ListResourceTags, &format!(r#"{{"KeyId":"{id}"}}"#)),
        json!({"Tags": [{"TagKey": "c", "TagValue": "3"}], "Truncated": false})
    );
}

#[test]
fn tags_per_key_stop_at_fifty_counting_existing_ones() {
    let mut w = World::new();
    let id = w.create_key();
    let tags = |from: usize, to: usize| {
        let t: Vec<String> = (from..to).map(|i| format!(r#"{{"TagKey":"k{i}","TagValue":"v"}}"#)).collect();
        format!(r#"{{"KeyId":"{id}","Tags":[{}]}}"#, t.join(","))
    };
    w.ok(Operation::TagResource, &tags(0, 40));
    assert_eq!(w.err(Operation::TagResource, &tags(35, 51)), (ErrorKind::Tag, "Too many tags".into()));
    w.ok(Operation::TagResource, &tags(35, 50));
    assert_eq!(w.p.key(ACCOUNT, &id).unwrap().tags.len(), 50);
    // Replacing values of existing keys at the limit is fine.
    w.ok(Operation::TagResource, &format!(r#"{{"KeyId":"{id}","Tags":[{{"TagKey":"k0","TagValue":"new"}}]}}"#));
    assert_eq!(w.err(Operation::TagResource, &tags(50, 51)), (ErrorKind::Tag, "Too many tags".into()));
    assert_eq!(
        w.err(Operation::TagResource, &format!(r#"{{"KeyId":"{id}","Tags":[{{"TagKey":"aws:x","TagValue":""}}]}}"#)),
        (ErrorKind::Tag, "Tags beginning with aws: are reserved".into())
    );
    assert_eq!(
        w.err(
            Operation::TagResource,
            &format!(r#"{{"KeyId":"{id}","Tags":[{{"TagKey":"d","TagValue":"1"}},{{"TagKey":"d","TagValue":"1"}}]}}"#)
        ),
        (ErrorKind::Tag, "Duplicate tag keys".into())
    );
}
