//! Key lifecycle and the operation × key-state matrix (aws-kms-api.md §2.2, §3.3, §10, §12.1).

mod common;

use common::*;
use keyledger_events::{codes, AggregateKind, Body};
use keyledger_kms::{
    decide, management_response, parse_request, Caller, Command, Ctx, ErrorKind, KeyId, KeyState, Operation,
};
use serde_json::json;

#[test]
fn create_key_returns_the_metadata_aws_returns_for_a_fresh_symmetric_key() {
    let mut w = World::new();
    let created = w.ok(Operation::CreateKey, "{}");
    let id: KeyId = created["KeyMetadata"]["KeyId"].as_str().unwrap().parse().unwrap();
    let expected = json!({
        "KeyMetadata": {
            "AWSAccountId": ACCOUNT,
            "Arn": w.arn(&id),
            "CreationDate": 1_700_000_000u64,
            "CurrentKeyMaterialId": hex::encode(material(&id, 1).material_id),
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "Description": "",
            "Enabled": true,
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "KeyId": id.to_string(),
            "KeyManager": "CUSTOMER",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "KeyState": "Enabled",
            "KeyUsage": "ENCRYPT_DECRYPT",
            "MultiRegion": false,
            "Origin": "AWS_KMS",
        }
    });
    assert_eq!(created, expected);
    for key_id in [id.to_string(), w.arn(&id)] {
        assert_eq!(w.ok(Operation::DescribeKey, &format!("{{\"KeyId\":\"{key_id}\"}}")), expected);
    }
}

#[test]
fn timestamps_are_epoch_seconds_with_fractions_when_needed() {
    let mut w = World::new();
    w.now = T0 + 191;
    let v = w.ok(Operation::CreateKey, r#"{"Description":"orders","Tags":[{"TagKey":"team","TagValue":"kms"}]}"#);
    assert_eq!(v["KeyMetadata"]["CreationDate"], json!(1_700_000_000.191));
    assert_eq!(v["KeyMetadata"]["Description"], json!("orders"));
    let id = v["KeyMetadata"]["KeyId"].as_str().unwrap();
    assert_eq!(
        w.ok(Operation::ListResourceTags, &format!("{{\"KeyId\":\"{id}\"}}")),
        json!({"Tags": [{"TagKey": "team", "TagValue": "kms"}], "Truncated": false})
    );
}

#[derive(Clone, Copy, Debug)]
enum Start {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
}

#[derive(Debug, PartialEq)]
enum Exp {
    /// One event with this body name.
    Event(&'static str),
    NoChange,
    Read,
    Err(ErrorKind, &'static str),
}

fn world_in(start: Start) -> (World, KeyId) {
    let mut w = World::new();
    let id = match start {
        Start::PendingImport => w.given_key(codes::origin::EXTERNAL, false),
        _ => w.create_key(),
    };
    match start {
        Start::Disabled => {
            w.ok(Operation::DisableKey, &format!("{{\"KeyId\":\"{id}\"}}"));
        }
        Start::PendingDeletion => {
            w.ok(Operation::ScheduleKeyDeletion, &format!("{{\"KeyId\":\"{id}\"}}"));
        }
        _ => {}
    }
    let expected = match start {
        Start::Enabled => KeyState::Enabled,
        Start::Disabled => KeyState::Disabled,
        Start::PendingDeletion => KeyState::PendingDeletion,
        Start::PendingImport => KeyState::PendingImport,
    };
    assert_eq!(w.key_state(&id), Some(expected));
    (w, id)
}

const D: Exp = Exp::Err(ErrorKind::Disabled, "{arn} is disabled.");
const PD: Exp = Exp::Err(ErrorKind::KMSInvalidState, "{arn} is pending deletion.");
const NPD: Exp = Exp::Err(ErrorKind::KMSInvalidState, "{arn} is not pending deletion.");
const PI: Exp = Exp::Err(ErrorKind::KMSInvalidState, "{arn} is pending import.");
const UO_EXTERNAL: Exp =
    Exp::Err(ErrorKind::UnsupportedOperation, "{arn} origin is EXTERNAL which is not valid for this operation.");

#[test]
fn every_operation_answers_each_key_state_as_the_aws_matrix_says() {
    use Exp::*;
    let key = r#"{"KeyId":"{id}"}"#;
    // (operation, request, [Enabled, Disabled, PendingDeletion, PendingImport])
    let table: Vec<(Operation, &str, [Exp; 4])> = vec![
        (
            Operation::UpdateKeyDescription,
            r#"{"KeyId":"{id}","Description":"new"}"#,
            [Event("KeyDescriptionUpdated"), Event("KeyDescriptionUpdated"), PD, Event("KeyDescriptionUpdated")],
        ),
        (Operation::EnableKey, key, [NoChange, Event("KeyEnabled"), PD, PI]),
        (Operation::DisableKey, key, [Event("KeyDisabled"), NoChange, PD, PI]),
        (
            Operation::ScheduleKeyDeletion,
            key,
            [Event("KeyDeletionScheduled"), Event("KeyDeletionScheduled"), PD, Event("KeyDeletionScheduled")],
        ),
        (Operation::CancelKeyDeletion, key, [NPD, NPD, Event("KeyDeletionCancelled"), NPD]),
        (Operation::EnableKeyRotation, key, [Event("KeyRotationEnabled"), D, PD, UO_EXTERNAL]),
        (Operation::DisableKeyRotation, key, [NoChange, D, PD, UO_EXTERNAL]),
        (Operation::RotateKeyOnDemand, key, [Event("KeyMaterialRotated"), D, PD, PI]),
        (
            Operation::TagResource,
            r#"{"KeyId":"{id}","Tags":[{"TagKey":"t","TagValue":"v"}]}"#,
            [Event("KeyTagsAdded"), Event("KeyTagsAdded"), PD, Event("KeyTagsAdded")],
        ),
        (Operation::UntagResource, r#"{"KeyId":"{id}","TagKeys":["absent"]}"#, [NoChange, NoChange, PD, NoChange]),
        (
            Operation::CreateAlias,
            r#"{"AliasName":"alias/new","TargetKeyId":"{id}"}"#,
            [Event("AliasCreated"), Event("AliasCreated"), PD, Event("AliasCreated")],
        ),
        (Operation::DescribeKey, key, [Read, Read, Read, Read]),
        (Operation::ListResourceTags, key, [Read, Read, Read, Read]),
        (Operation::ListKeyRotations, key, [Read, Read, Read, Read]),
        (Operation::GetKeyRotationStatus, key, [Read, Read, Read, UO_EXTERNAL]),
        (Operation::ListAliases, key, [Read, Read, Read, Read]),
    ];
    let starts = [Start::Enabled, Start::Disabled, Start::PendingDeletion, Start::PendingImport];
    for (op, template, expectations) in table {
        for (start, expected) in starts.iter().zip(expectations) {
            let (mut w, id) = world_in(*start);
            let arn = w.arn(&id);
            let body = fill(template, &id, &arn);
            let got = if op.role() == keyledger_kms::Role::Read {
                w.run(op, &body).map(|_| Read)
            } else {
                w.decide(op, &body).map(|d| match d {
                    None => NoChange,
                    Some(d) => {
                        assert_eq!(d.account, ACCOUNT);
                        Event(d.body.name())
                    }
                })
            };
            let got = got.unwrap_or_else(|e| {
                let msg = e.message.clone();
                // Compare against the template with {arn} filled in.
                if let Err(kind, t) = &expected {
                    if *kind == e.kind && fill(t, &id, &arn) == msg {
                        return Err(*kind, t);
                    }
                }
                panic!("{op} in {start:?}: unexpected error {e}");
            });
            assert_eq!(got, expected, "{op} in {start:?}");
        }
    }
}

#[test]
fn update_alias_and_delete_alias_follow_the_matrix() {
    // UpdateAlias: moving away from a PendingDeletion key works, moving onto one fails.
    let mut w = World::new();
    let pending = w.create_key();
    let fresh = w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/a","TargetKeyId":"{pending}"}}"#));
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/b","TargetKeyId":"{fresh}"}}"#));
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{pending}"}}"#));
    let arn_pending = w.arn(&pending);
    assert_eq!(
        w.err(Operation::UpdateAlias, &format!(r#"{{"AliasName":"alias/b","TargetKeyId":"{pending}"}}"#)),
        (ErrorKind::KMSInvalidState, format!("{arn_pending} is pending deletion."))
    );
    assert_eq!(
        w.ok(Operation::UpdateAlias, &format!(r#"{{"AliasName":"alias/a","TargetKeyId":"{fresh}"}}"#)),
        json!({})
    );
    assert_eq!(w.p.alias(ACCOUNT, "alias/a").unwrap().target, fresh);
    // DeleteAlias works whatever the key state.
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/c","TargetKeyId":"{fresh}"}}"#));
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{fresh}"}}"#));
    assert_eq!(w.ok(Operation::DeleteAlias, r#"{"AliasName":"alias/c"}"#), json!({}));
    assert!(w.p.alias(ACCOUNT, "alias/c").is_none());
}

#[test]
fn disable_then_enable_round_trips_the_state() {
    let mut w = World::new();
    let id = w.create_key();
    let key = format!(r#"{{"KeyId":"{id}"}}"#);
    assert_eq!(w.ok(Operation::DisableKey, &key), json!({}));
    let d = w.ok(Operation::DescribeKey, &key);
    assert_eq!(
        (d["KeyMetadata"]["KeyState"].clone(), d["KeyMetadata"]["Enabled"].clone()),
        (json!("Disabled"), json!(false))
    );
    assert_eq!(w.ok(Operation::EnableKey, &key), json!({}));
    assert_eq!(w.key_state(&id), Some(KeyState::Enabled));
    // Idempotent: a second EnableKey appends nothing.
    let before = w.log.len();
    w.ok(Operation::EnableKey, &key);
    assert_eq!(w.log.len(), before);
}

#[test]
fn schedule_key_deletion_sets_the_date_window_days_ahead() {
    for (request_window, days) in [(None, 30u64), (Some(7), 7), (Some(30), 30)] {
        let mut w = World::new();
        let id = w.create_key();
        let body = match request_window {
            None => format!(r#"{{"KeyId":"{id}"}}"#),
            Some(d) => format!(r#"{{"KeyId":"{id}","PendingWindowInDays":{d}}}"#),
        };
        w.now = T0 + 5_000;
        let reply = w.ok(Operation::ScheduleKeyDeletion, &body);
        let date = (T0 + 5_000 + days * DAY) / 1000;
        assert_eq!(
            reply,
            json!({"KeyId": w.arn(&id), "DeletionDate": date, "KeyState": "PendingDeletion", "PendingWindowInDays": days})
        );
        let md = &w.ok(Operation::DescribeKey, &format!(r#"{{"KeyId":"{id}"}}"#))["KeyMetadata"];
        assert_eq!(md["DeletionDate"], json!(date));
        assert_eq!(md["PendingDeletionWindowInDays"], json!(days));
        assert_eq!(md["Enabled"], json!(false));
        assert_eq!(md["KeyState"], json!("PendingDeletion"));
    }
}

#[test]
fn cancel_key_deletion_lands_in_disabled_and_clears_the_date() {
    let mut w = World::new();
    let id = w.create_key();
    let key = format!(r#"{{"KeyId":"{id}"}}"#);
    w.ok(Operation::ScheduleKeyDeletion, &key);
    assert_eq!(w.ok(Operation::CancelKeyDeletion, &key), json!({"KeyId": w.arn(&id)}));
    let md = &w.ok(Operation::DescribeKey, &key)["KeyMetadata"];
    assert_eq!(md["KeyState"], json!("Disabled"));
    assert!(md.get("DeletionDate").is_none() && md.get("PendingDeletionWindowInDays").is_none());
}

#[test]
fn unknown_keys_other_accounts_and_aliases_are_refused_in_management_operations() {
    let mut w = World::new();
    let id = w.create_key();
    let unknown = w.fresh_key_id();
    let unknown_arn = w.arn(&unknown);
    assert_eq!(
        w.err(Operation::DisableKey, &format!(r#"{{"KeyId":"{unknown}"}}"#)),
        (ErrorKind::NotFound, format!("Key '{unknown_arn}' does not exist"))
    );
    assert_eq!(
        w.err(Operation::DisableKey, r#"{"KeyId":"fake-key-id"}"#),
        (ErrorKind::NotFound, "Invalid keyId 'fake-key-id'".into())
    );
    assert_eq!(
        w.err(Operation::DisableKey, r#"{"KeyId":"alias/app"}"#),
        (ErrorKind::InvalidArn, "Key Aliases are not supported for this operation.".into())
    );
    // Another account: a bare id resolves in the caller's own account (not found there) …
    let arn = w.arn(&id);
    w.caller = caller(OTHER_ACCOUNT);
    assert_eq!(
        w.err(Operation::DisableKey, &format!(r#"{{"KeyId":"{id}"}}"#)),
        (ErrorKind::NotFound, format!("Key 'arn:aws:kms:us-east-1:{OTHER_ACCOUNT}:key/{id}' does not exist"))
    );
    // … and the owner's ARN is an access question.
    for op in [Operation::DisableKey, Operation::ScheduleKeyDeletion, Operation::EnableKeyRotation] {
        assert_eq!(
            w.err(op, &format!(r#"{{"KeyId":"{arn}"}}"#)),
            (
                ErrorKind::AccessDenied,
                format!(
                    "User: arn:aws:iam::{OTHER_ACCOUNT}:user/dev is not authorized to perform: kms:{op} on resource: {arn} \
                     because no resource-based policy allows the kms:{op} action"
                )
            )
        );
    }
    assert_eq!(w.err(Operation::DescribeKey, &format!(r#"{{"KeyId":"{arn}"}}"#)).0, ErrorKind::AccessDenied);
    assert_eq!(w.key_state(&id), Some(KeyState::Enabled));
}

#[test]
fn the_account_key_quota_counts_pending_deletion_keys_but_not_deleted_ones() {
    let mut w = World::new();
    w.limits.max_keys_per_account = 2;
    let a = w.create_key();
    w.create_key();
    let (kind, message) = w.err(Operation::CreateKey, "{}");
    assert_eq!(kind, ErrorKind::LimitExceeded);
    assert_eq!(
        message,
        format!("The request was rejected because account {ACCOUNT} already has the maximum number of KMS keys (2).")
    );
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{a}","PendingWindowInDays":7}}"#));
    assert_eq!(w.err(Operation::CreateKey, "{}").0, ErrorKind::LimitExceeded, "pending deletion still counts");
    w.now += 7 * DAY;
    assert_eq!(w.tick(), 1);
    assert!(w.p.is_deleted(ACCOUNT, &a));
    w.create_key();
    // Another account has its own quota.
    w.caller = caller(OTHER_ACCOUNT);
    w.create_key();
}

#[test]
fn create_key_tags_follow_the_tag_exception_rules() {
    let mut w = World::new();
    let tags = |n: usize| {
        let t: Vec<String> = (0..n).map(|i| format!(r#"{{"TagKey":"k{i}","TagValue":"v"}}"#)).collect();
        format!(r#"{{"Tags":[{}]}}"#, t.join(","))
    };
    assert!(w.run(Operation::CreateKey, &tags(50)).is_ok());
    assert_eq!(w.err(Operation::CreateKey, &tags(51)), (ErrorKind::Tag, "Too many tags".into()));
    assert_eq!(
        w.err(Operation::CreateKey, r#"{"Tags":[{"TagKey":"a","TagValue":"1"},{"TagKey":"a","TagValue":"2"}]}"#),
        (ErrorKind::Tag, "Duplicate tag keys".into())
    );
    assert_eq!(
        w.err(Operation::CreateKey, r#"{"Tags":[{"TagKey":"AWS:x","TagValue":"1"}]}"#),
        (ErrorKind::Tag, "Tags beginning with aws: are reserved".into())
    );
}

#[test]
fn create_key_emits_one_key_created_event_at_the_genesis_of_the_new_key() {
    let mut w = World::new();
    let d = w.decide(Operation::CreateKey, r#"{"Description":"x"}"#).unwrap().unwrap();
    assert_eq!(d.aggregate_kind, AggregateKind::Key);
    let id: KeyId = d.aggregate_id.parse().unwrap();
    assert_eq!(d.head, keyledger_kms::AggregateHead::genesis(AggregateKind::Key, ACCOUNT, &d.aggregate_id));
    let Body::KeyCreatedV2(b) = &d.body else { panic!("{:?}", d.body) };
    assert_eq!(b.policy, None, "no Policy: the default key policy");
    assert_eq!(
        (b.key_spec, b.key_usage, b.origin),
        (codes::key_spec::SYMMETRIC_DEFAULT, codes::key_usage::ENCRYPT_DECRYPT, codes::origin::AWS_KMS)
    );
    assert_eq!(b.description, "x");
    assert_eq!(b.material, Some(material(&id, 1)));
    assert!(!b.multi_region);
}

#[test]
fn create_key_without_prepared_material_is_an_internal_error() {
    let w = World::new();
    let command = Command::Request(parse_request(Operation::CreateKey, b"{}").unwrap());
    let id = KeyId::from_bytes([0x11; 16]);
    for material in [None, Some(material(&id, 2))] {
        let ctx = Ctx { new_material: material, ..Ctx::new(T0, id) };
        let e = decide(&w.p, &w.realm, &w.caller, &command, &ctx, &w.limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::KMSInternal);
    }
}

#[test]
fn a_change_too_large_for_one_event_is_refused() {
    let mut w = World::new();
    let big = "€".repeat(8192); // 24 KiB of UTF-8
    let tags: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"TagKey":"{}{i:02}","TagValue":"{}"}}"#, "€".repeat(120), "€".repeat(256)))
        .collect();
    let (kind, message) =
        w.err(Operation::CreateKey, &format!(r#"{{"Description":"{big}","Tags":[{}]}}"#, tags.join(",")));
    assert_eq!(kind, ErrorKind::LimitExceeded);
    assert!(message.starts_with("The request is too large to record"), "{message}");
    assert!(w.log.is_empty());
}

#[test]
fn decide_refuses_read_and_crypto_requests() {
    let w = World::new();
    for (op, body) in [(Operation::ListKeys, "{}"), (Operation::GenerateRandom, r#"{"NumberOfBytes":8}"#)] {
        let command = Command::Request(parse_request(op, body.as_bytes()).unwrap());
        let ctx = Ctx::new(T0, KeyId::from_bytes([1; 16]));
        let e = decide(&w.p, &w.realm, &w.caller, &command, &ctx, &w.limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::KMSInternal);
        let Command::Request(r) = &command else { unreachable!() };
        let caller: &Caller = &w.caller;
        assert_eq!(management_response(&w.p, &w.realm, caller, r, None).unwrap_err().kind, ErrorKind::KMSInternal);
    }
}

#[test]
fn update_key_description_changes_only_when_different() {
    let mut w = World::new();
    let id = w.create_key();
    assert_eq!(w.ok(Operation::UpdateKeyDescription, &format!(r#"{{"KeyId":"{id}","Description":"a"}}"#)), json!({}));
    assert_eq!(w.p.key(ACCOUNT, &id).unwrap().description, "a");
    assert!(w
        .decide(Operation::UpdateKeyDescription, &format!(r#"{{"KeyId":"{id}","Description":"a"}}"#))
        .unwrap()
        .is_none());
    w.ok(Operation::UpdateKeyDescription, &format!(r#"{{"KeyId":"{id}","Description":""}}"#));
    assert_eq!(w.p.key(ACCOUNT, &id).unwrap().description, "");
}
