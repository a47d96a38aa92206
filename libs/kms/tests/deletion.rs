//! End of the deletion window (aws-kms-api.md §10; BRIEF invariant 7: an irreversible step
//! needs the server's own timestamp past its due time).

mod common;

use common::*;
use keyledger_events::{AggregateKind, Body, KeyDeletedV1};
use keyledger_kms::{resolve_for_decrypt, Applied, Command, ErrorKind, KeyId, KmsError, Operation};

fn scheduled(w: &mut World, days: u64) -> (KeyId, u64) {
    let id = w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/doomed","TargetKeyId":"{id}"}}"#));
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/doomed2","TargetKeyId":"{id}"}}"#));
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{id}","PendingWindowInDays":{days}}}"#));
    (id, w.now + days * DAY)
}

#[test]
fn deletion_is_not_due_before_the_deletion_date() {
    let mut w = World::new();
    let (id, due) = scheduled(&mut w, 7);
    w.now = due - 1;
    assert!(keyledger_kms::due_actions(&w.p, w.now, 10).is_empty());
    let early = Command::DeletionDue { account: ACCOUNT.into(), key_id: id, due_unix_ms: due };
    assert!(w.decide_command(&early).unwrap().is_none(), "the writer clock has not reached it");
    w.now = due;
    let commands = keyledger_kms::due_actions(&w.p, w.now, 10);
    assert!(matches!(&commands[..], [Command::DeletionDue { due_unix_ms, .. }] if *due_unix_ms == due));
    let d = w.decide_command(&commands[0]).unwrap().unwrap();
    assert_eq!(d.body, Body::KeyDeleted(KeyDeletedV1 { due_unix_ms: due }));
}

#[test]
fn a_deletion_event_stamped_before_its_due_time_by_the_server_is_ignored() {
    let mut w = World::new();
    let (id, due) = scheduled(&mut w, 7);
    // A writer whose clock runs a minute fast decides the deletion; the server stamps its own time.
    w.now = due;
    w.server_skew = -(MINUTE as i64);
    let d = w.decide_command(&keyledger_kms::due_actions(&w.p, w.now, 10).remove(0)).unwrap().unwrap();
    let digest = w.p.state_digest();
    let head = w.head_of(&id);
    assert_eq!(w.append(&d), Applied::Ignored);
    assert_eq!(w.key_state(&id), Some(keyledger_kms::KeyState::PendingDeletion));
    assert!(w.p.alias(ACCOUNT, "alias/doomed").is_some());
    assert_eq!(w.head_of(&id).next_aggregate_seq, head.next_aggregate_seq + 1, "recorded in the chain");
    assert_ne!(w.p.state_digest(), digest, "the head moved");
    // Still due: the next attempt, stamped after the due time, takes effect.
    w.server_skew = 0;
    w.now = due + MINUTE;
    assert_eq!(w.tick(), 1);
    assert!(w.p.is_deleted(ACCOUNT, &id));
}

#[test]
fn a_deleted_key_is_a_tombstone_without_aliases_or_material() {
    let mut w = World::new();
    let (id, due) = scheduled(&mut w, 30);
    let other = w.create_key();
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/keep","TargetKeyId":"{other}"}}"#));
    w.now = due + 1;
    assert_eq!(w.tick(), 1);
    assert!(w.p.is_deleted(ACCOUNT, &id));
    assert_eq!(w.p.deleted_unix_ms(ACCOUNT, &id), Some(due + 1));
    assert_eq!(w.p.deleted_keys(), vec![(ACCOUNT.to_owned(), id)]);
    assert!(w.p.key(ACCOUNT, &id).is_none());
    let arn = w.arn(&id);
    assert_eq!(
        w.err(Operation::DescribeKey, &format!(r#"{{"KeyId":"{id}"}}"#)),
        (ErrorKind::NotFound, format!("Key '{arn}' does not exist"))
    );
    assert_eq!(
        w.err(Operation::DescribeKey, r#"{"KeyId":"alias/doomed"}"#),
        (ErrorKind::NotFound, format!("Alias arn:aws:kms:us-east-1:{ACCOUNT}:alias/doomed is not found."))
    );
    assert_eq!(w.err(Operation::CancelKeyDeletion, &format!(r#"{{"KeyId":"{id}"}}"#)).0, ErrorKind::NotFound);
    let keys = w.ok(Operation::ListKeys, "{}");
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 1);
    let aliases = w.ok(Operation::ListAliases, "{}");
    assert_eq!(aliases["Aliases"].as_array().unwrap().len(), 1);
    assert_eq!(aliases["Aliases"][0]["AliasName"], "alias/keep");
    assert_eq!(
        resolve_for_decrypt(
            &w.p,
            &w.realm,
            &keyledger_kms::Access::new(&w.caller, "Decrypt", w.now),
            *id.as_bytes(),
            1,
            None,
            w.now
        )
        .unwrap_err(),
        KmsError::ciphertext_key_access_denied()
    );
    assert_eq!(w.tick(), 0, "nothing left to do");
    // The alias name can be reused; its chain continues.
    let head = w.p.head(AggregateKind::Alias, ACCOUNT, "alias/doomed");
    assert_eq!(head.next_aggregate_seq, 1);
    w.ok(Operation::CreateAlias, &format!(r#"{{"AliasName":"alias/doomed","TargetKeyId":"{other}"}}"#));
    assert_eq!(w.p.head(AggregateKind::Alias, ACCOUNT, "alias/doomed").next_aggregate_seq, 2);
    // Replay gives the same state.
    assert_eq!(w.replay().state_digest(), w.p.state_digest());
}

#[test]
fn a_deletion_that_answers_another_date_changes_nothing() {
    let mut w = World::new();
    let (id, due) = scheduled(&mut w, 7);
    // Cancel and re-schedule: the old due time no longer matches.
    w.ok(Operation::CancelKeyDeletion, &format!(r#"{{"KeyId":"{id}"}}"#));
    w.now += DAY;
    w.ok(Operation::ScheduleKeyDeletion, &format!(r#"{{"KeyId":"{id}","PendingWindowInDays":7}}"#));
    w.now = due + 2 * DAY;
    w.given(AggregateKind::Key, ACCOUNT, &id.to_string(), Body::KeyDeleted(KeyDeletedV1 { due_unix_ms: due }));
    assert_eq!(w.key_state(&id), Some(keyledger_kms::KeyState::PendingDeletion));
    let stale = Command::DeletionDue { account: ACCOUNT.into(), key_id: id, due_unix_ms: due };
    assert!(w.decide_command(&stale).unwrap().is_none());
}
