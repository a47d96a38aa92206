//! Automatic and on-demand rotation (aws-kms-api.md §2.7, §8).

mod common;

use common::*;
use keyledger_events::{codes, Body};
use keyledger_kms::{
    material_needed, parse_request, resolve_for_decrypt, Command, ErrorKind, KeyId, Limits, Operation,
};
use serde_json::json;

fn status(w: &mut World, id: &KeyId) -> serde_json::Value {
    w.ok(Operation::GetKeyRotationStatus, &format!(r#"{{"KeyId":"{id}"}}"#))
}

fn rotations(w: &mut World, id: &KeyId, include: &str) -> Vec<serde_json::Value> {
    let v = w.ok(Operation::ListKeyRotations, &format!(r#"{{"KeyId":"{id}","IncludeKeyMaterial":"{include}"}}"#));
    v["Rotations"].as_array().unwrap().clone()
}

#[test]
fn enabling_rotation_schedules_the_first_rotation_one_period_later() {
    let mut w = World::new();
    let id = w.create_key();
    assert_eq!(status(&mut w, &id), json!({"KeyRotationEnabled": false, "KeyId": w.arn(&id)}));
    w.now = T0 + 1000;
    assert_eq!(w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}"}}"#)), json!({}));
    assert_eq!(
        status(&mut w, &id),
        json!({"KeyRotationEnabled": true, "KeyId": w.arn(&id), "RotationPeriodInDays": 365, "NextRotationDate": (T0 + 1000 + 365 * DAY) / 1000})
    );
    w.ok(Operation::DisableKeyRotation, &format!(r#"{{"KeyId":"{id}"}}"#));
    assert_eq!(status(&mut w, &id), json!({"KeyRotationEnabled": false, "KeyId": w.arn(&id)}));
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":90}}"#));
    assert_eq!(status(&mut w, &id)["NextRotationDate"], json!((T0 + 1000 + 90 * DAY) / 1000));
}

#[test]
fn a_new_period_keeps_the_anchor_and_the_same_period_changes_nothing() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":365}}"#));
    w.now = T0 + 10 * DAY;
    assert!(w
        .decide(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":365}}"#))
        .unwrap()
        .is_none());
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":100}}"#));
    assert_eq!(status(&mut w, &id)["NextRotationDate"], json!((T0 + 100 * DAY) / 1000), "anchored at enable time");
    assert_eq!(status(&mut w, &id)["RotationPeriodInDays"], json!(100));
    // Shortening below the time already elapsed makes the rotation due at once.
    w.now = T0 + 95 * DAY;
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":90}}"#));
    assert_eq!(status(&mut w, &id)["NextRotationDate"], json!((T0 + 95 * DAY) / 1000));
    assert_eq!(w.tick(), 1);
    assert_eq!(w.p.key(ACCOUNT, &id).unwrap().current_version, 2);
}

#[test]
fn a_due_rotation_makes_new_material_current_and_keeps_every_old_version() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":90}}"#));
    let due = T0 + 90 * DAY;
    w.now = due - 1;
    assert_eq!(w.tick(), 0, "not due yet");
    w.now = due + 5 * MINUTE;
    let commands = keyledger_kms::due_actions(&w.p, w.now, 10);
    assert!(matches!(&commands[..], [Command::RotationDue { due_unix_ms, .. }] if *due_unix_ms == due));
    let d = w.decide_command(&commands[0]).unwrap().unwrap();
    let Body::KeyMaterialRotated(b) = &d.body else { panic!("{:?}", d.body) };
    assert_eq!(b.rotation_type, codes::rotation_type::AUTOMATIC);
    assert_eq!(b.due_unix_ms, Some(due));
    assert_eq!(b.next_rotation_unix_ms, Some(due + 90 * DAY));
    assert_eq!(b.material, material(&id, 2));
    // Deciding the same due action twice gives the same event (racing instances agree).
    assert_eq!(w.decide_command(&commands[0]).unwrap().unwrap(), d);
    w.append(&d);
    assert_eq!(w.tick(), 0, "done");
    let key = w.p.key(ACCOUNT, &id).unwrap();
    assert_eq!(key.current_version, 2);
    assert_eq!(key.materials.len(), 2);
    assert_eq!(status(&mut w, &id)["NextRotationDate"], json!((due + 90 * DAY) / 1000));
    assert_eq!(
        w.ok(Operation::DescribeKey, &format!(r#"{{"KeyId":"{id}"}}"#))["KeyMetadata"]["CurrentKeyMaterialId"],
        json!(hex::encode(material(&id, 2).material_id))
    );
    assert_eq!(
        rotations(&mut w, &id, "ROTATIONS_ONLY"),
        vec![json!({
            "KeyId": w.arn(&id),
            "KeyMaterialId": hex::encode(material(&id, 2).material_id),
            "KeyMaterialState": "CURRENT",
            "RotationDate": (due + 5 * MINUTE) / 1000,
            "RotationType": "AUTOMATIC",
        })]
    );
    let all = rotations(&mut w, &id, "ALL_KEY_MATERIAL");
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0],
        json!({"KeyId": w.arn(&id), "KeyMaterialId": hex::encode(material(&id, 1).material_id), "KeyMaterialState": "NON_CURRENT"})
    );
    // Old ciphertexts still resolve to their own material; new ones use the current one.
    for v in [1, 2] {
        let k = resolve_for_decrypt(
            &w.p,
            &w.realm,
            &keyledger_kms::Access::new(&w.caller, "Decrypt", w.now),
            *id.as_bytes(),
            v,
            None,
            w.now,
        )
        .unwrap();
        assert_eq!(k.material(v), Some(&material(&id, v)));
        assert_eq!(k.current_version, 2);
    }
}

#[test]
fn a_disabled_key_does_not_rotate_and_catches_up_when_re_enabled() {
    let mut w = World::new();
    let id = w.create_key();
    let key = format!(r#"{{"KeyId":"{id}"}}"#);
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":90}}"#));
    w.ok(Operation::DisableKey, &key);
    w.now = T0 + 200 * DAY;
    assert_eq!(w.tick(), 0, "Disabled keys do not rotate");
    assert_eq!(status(&mut w, &id)["KeyRotationEnabled"], json!(true), "the setting is unchanged while Disabled");
    let d = w.decide(Operation::EnableKey, &key).unwrap().unwrap();
    assert_eq!(d.body, Body::KeyEnabled(keyledger_events::KeyEnabledV1 { rotation_catch_up_due_unix_ms: Some(w.now) }));
    w.append(&d);
    assert_eq!(w.tick(), 1, "material older than the period rotates at once");
    assert_eq!(status(&mut w, &id)["NextRotationDate"], json!((T0 + 290 * DAY) / 1000));

    // Re-enabled before the next date: the schedule simply resumes.
    w.ok(Operation::DisableKey, &key);
    w.now = T0 + 210 * DAY;
    let d = w.decide(Operation::EnableKey, &key).unwrap().unwrap();
    assert_eq!(d.body, Body::KeyEnabled(keyledger_events::KeyEnabledV1 { rotation_catch_up_due_unix_ms: None }));
}

#[test]
fn pending_deletion_reads_false_and_cancel_restores_the_rotation_status() {
    let mut w = World::new();
    let id = w.create_key();
    let key = format!(r#"{{"KeyId":"{id}"}}"#);
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":90}}"#));
    let before = status(&mut w, &id);
    w.ok(Operation::ScheduleKeyDeletion, &key);
    assert_eq!(status(&mut w, &id), json!({"KeyRotationEnabled": false, "KeyId": w.arn(&id)}));
    w.now = T0 + 25 * DAY;
    w.ok(Operation::CancelKeyDeletion, &key);
    assert_eq!(w.key_state(&id), Some(keyledger_kms::KeyState::Disabled));
    assert_eq!(status(&mut w, &id), before);
}

#[test]
fn disabling_rotation_cancels_the_schedule() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":90}}"#));
    w.ok(Operation::DisableKeyRotation, &format!(r#"{{"KeyId":"{id}"}}"#));
    w.now = T0 + 1000 * DAY;
    assert_eq!(w.tick(), 0);
    assert!(w.decide(Operation::DisableKeyRotation, &format!(r#"{{"KeyId":"{id}"}}"#)).unwrap().is_none());
}

#[test]
fn on_demand_rotations_stop_at_the_limit_with_the_exact_aws_message() {
    for max in [25u32, 3] {
        let mut w = World::new();
        w.limits = Limits { max_on_demand_rotations: max, ..Limits::default() };
        let id = w.create_key();
        let key = format!(r#"{{"KeyId":"{id}"}}"#);
        for i in 0..max {
            assert_eq!(w.ok(Operation::RotateKeyOnDemand, &key), json!({"KeyId": w.arn(&id)}), "rotation {i}");
        }
        assert_eq!(w.p.key(ACCOUNT, &id).unwrap().current_version, max + 1);
        assert_eq!(
            w.err(Operation::RotateKeyOnDemand, &key),
            (
                ErrorKind::LimitExceeded,
                format!(
                    "The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: {}",
                    w.arn(&id)
                )
            )
        );
        let listed = rotations(&mut w, &id, "ROTATIONS_ONLY");
        assert_eq!(listed.len(), max as usize);
        assert!(listed.iter().all(|r| r["RotationType"] == json!("ON_DEMAND")));
        assert_eq!(listed.iter().filter(|r| r["KeyMaterialState"] == json!("CURRENT")).count(), 1);
    }
}

#[test]
fn on_demand_rotation_conflicts_with_an_automatic_rotation_due_within_20_minutes() {
    let mut w = World::new();
    let id = w.create_key();
    let key = format!(r#"{{"KeyId":"{id}"}}"#);
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":90}}"#));
    let next = T0 + 90 * DAY;
    w.now = next - 20 * MINUTE;
    let (kind, message) = w.err(Operation::RotateKeyOnDemand, &key);
    assert_eq!(kind, ErrorKind::Conflict);
    assert!(message.starts_with(&w.arn(&id)), "{message}");
    w.now = next - 20 * MINUTE - 1;
    w.ok(Operation::RotateKeyOnDemand, &key);
    // On-demand rotation does not move the automatic schedule.
    assert_eq!(status(&mut w, &id)["NextRotationDate"], json!(next / 1000));
}

#[test]
fn material_is_requested_only_for_commands_that_create_it() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::RotateKeyOnDemand, &format!(r#"{{"KeyId":"{id}"}}"#));
    let fresh = w.fresh_key_id();
    let need = |w: &World, op: Operation, body: &str| {
        let command = Command::Request(parse_request(op, body.as_bytes()).unwrap());
        material_needed(&w.p, &w.realm, &w.caller, &command, &fresh, w.now).unwrap().map(|n| (n.key_id, n.version))
    };
    assert_eq!(need(&w, Operation::CreateKey, "{}"), Some((fresh, 1)));
    assert_eq!(need(&w, Operation::RotateKeyOnDemand, &format!(r#"{{"KeyId":"{id}"}}"#)), Some((id, 3)));
    assert_eq!(need(&w, Operation::RotateKeyOnDemand, &format!(r#"{{"KeyId":"{fresh}"}}"#)), None, "unknown key");
    assert_eq!(need(&w, Operation::DisableKey, &format!(r#"{{"KeyId":"{id}"}}"#)), None);
    let due = Command::RotationDue { account: ACCOUNT.into(), key_id: id, due_unix_ms: T0 };
    assert_eq!(material_needed(&w.p, &w.realm, &w.caller, &due, &fresh, w.now).unwrap().map(|n| n.version), Some(3));
}

#[test]
fn a_rotation_due_command_that_is_no_longer_due_changes_nothing() {
    let mut w = World::new();
    let id = w.create_key();
    w.ok(Operation::EnableKeyRotation, &format!(r#"{{"KeyId":"{id}","RotationPeriodInDays":90}}"#));
    let due = T0 + 90 * DAY;
    w.now = due;
    let stale = Command::RotationDue { account: ACCOUNT.into(), key_id: id, due_unix_ms: due - 1 };
    assert!(w.decide_command(&stale).unwrap().is_none(), "the key's due time is after the command's");
    w.now = due - 1;
    let early = Command::RotationDue { account: ACCOUNT.into(), key_id: id, due_unix_ms: due };
    assert!(w.decide_command(&early).unwrap().is_none(), "the writer clock has not reached it");
    w.now = due;
    w.ok(Operation::DisableKey, &format!(r#"{{"KeyId":"{id}"}}"#));
    assert!(w.decide_command(&early).unwrap().is_none(), "Disabled keys do not rotate");
}
