//! Encoding, canonical decoding, hashing and golden vectors of event records.
//!
//! Golden vectors live in `tests/golden/<name>.hex` as two lines: the stored record bytes and
//! their BLAKE3 record hash, both lowercase hex. A change that alters a single byte of any
//! record fails here. To add a vector for a new body, run
//! `KEYLEDGER_BLESS_GOLDEN=1 cargo test -p keyledger-events --test records` once and commit
//! the new file — never re-bless an existing one.

use keyledger_events::*;
use std::path::PathBuf;

fn principal() -> PrincipalV1 {
    PrincipalV1 {
        kind: principal_kind::NATS_USER,
        account: "111122223333".into(),
        arn: "arn:aws:iam::111122223333:user/dev".into(),
        nats_account: "DEV".into(),
        user: "dev".into(),
    }
}

const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

fn draft(kind: AggregateKind, id: &str, seq: u64, prev: [u8; 32]) -> Draft {
    Draft {
        event_id: [0x01; 16],
        account: "111122223333".into(),
        aggregate_kind: kind,
        aggregate_id: id.into(),
        aggregate_seq: seq,
        time_unix_ms: 1_767_225_600_000,
        principal: principal(),
        request_id: [0x02; 16],
        prev_hash: prev,
    }
}

fn material(version: u32) -> MaterialRefV1 {
    MaterialRefV1 { version, material_id: [0xaa; 32], root_key_id: [0xbb; 16], wrapped_digest: [0xcc; 32] }
}

/// One sample of every body this build knows, with a stable name.
fn samples() -> Vec<(&'static str, AggregateKind, Body)> {
    let tags = vec![TagV1 { key: "team".into(), value: "payments".into() }];
    vec![
        (
            "key_created",
            AggregateKind::Key,
            Body::KeyCreated(KeyCreatedV1 {
                key_spec: codes::key_spec::SYMMETRIC_DEFAULT,
                key_usage: codes::key_usage::ENCRYPT_DECRYPT,
                origin: codes::origin::AWS_KMS,
                description: "orders".into(),
                tags: tags.clone(),
                multi_region: false,
                material: Some(material(1)),
            }),
        ),
        (
            "key_description_updated",
            AggregateKind::Key,
            Body::KeyDescriptionUpdated(KeyDescriptionUpdatedV1 { description: "new".into() }),
        ),
        (
            "key_enabled",
            AggregateKind::Key,
            Body::KeyEnabled(KeyEnabledV1 { rotation_catch_up_due_unix_ms: Some(1_800_000_000_000) }),
        ),
        ("key_disabled", AggregateKind::Key, Body::KeyDisabled(KeyDisabledV1 {})),
        (
            "key_rotation_enabled",
            AggregateKind::Key,
            Body::KeyRotationEnabled(KeyRotationEnabledV1 {
                rotation_period_days: 365,
                next_rotation_unix_ms: 1_798_761_600_000,
            }),
        ),
        ("key_rotation_disabled", AggregateKind::Key, Body::KeyRotationDisabled(KeyRotationDisabledV1 {})),
        (
            "key_material_rotated",
            AggregateKind::Key,
            Body::KeyMaterialRotated(KeyMaterialRotatedV1 {
                rotation_type: codes::rotation_type::AUTOMATIC,
                material: material(2),
                due_unix_ms: Some(1_798_761_600_000),
                next_rotation_unix_ms: Some(1_830_297_600_000),
            }),
        ),
        (
            "key_deletion_scheduled",
            AggregateKind::Key,
            Body::KeyDeletionScheduled(KeyDeletionScheduledV1 {
                pending_window_days: 7,
                deletion_unix_ms: 1_767_830_400_000,
            }),
        ),
        ("key_deletion_cancelled", AggregateKind::Key, Body::KeyDeletionCancelled(KeyDeletionCancelledV1 {})),
        ("key_deleted", AggregateKind::Key, Body::KeyDeleted(KeyDeletedV1 { due_unix_ms: 1_767_830_400_000 })),
        ("key_tags_added", AggregateKind::Key, Body::KeyTagsAdded(KeyTagsAddedV1 { tags: tags.clone() })),
        (
            "key_tags_removed",
            AggregateKind::Key,
            Body::KeyTagsRemoved(KeyTagsRemovedV1 { tag_keys: vec!["team".into()] }),
        ),
        (
            "import_parameters_issued",
            AggregateKind::Key,
            Body::ImportParametersIssued(ImportParametersIssuedV1 {
                token_id: [0x71; 16],
                wrapping_key_spec: codes::wrapping_key_spec::RSA_4096,
                wrapping_algorithm: codes::wrapping_algorithm::RSA_AES_KEY_WRAP_SHA_256,
                public_key_digest: [0x72; 32],
                root_key_id: [0x73; 16],
                wrapped_key_digest: [0x74; 32],
                valid_to_unix_ms: 1_767_312_000_000,
            }),
        ),
        (
            "key_material_imported",
            AggregateKind::Key,
            Body::KeyMaterialImported(KeyMaterialImportedV1 {
                material: material(1),
                description: "hsm export 2026-11".into(),
                token_id: [0x71; 16],
                expiration_model: codes::expiration_model::KEY_MATERIAL_EXPIRES,
                valid_to_unix_ms: Some(1_798_761_600_000),
            }),
        ),
        (
            "key_material_deleted",
            AggregateKind::Key,
            Body::KeyMaterialDeleted(KeyMaterialDeletedV1 {
                material: material(1),
                reason: codes::material_deletion::EXPIRED,
                due_unix_ms: Some(1_798_761_600_000),
            }),
        ),
        ("alias_created", AggregateKind::Alias, Body::AliasCreated(AliasCreatedV1 { target_key_id: [0x12; 16] })),
        (
            "alias_updated",
            AggregateKind::Alias,
            Body::AliasUpdated(AliasUpdatedV1 { target_key_id: [0x34; 16], previous_target_key_id: [0x12; 16] }),
        ),
        ("alias_deleted", AggregateKind::Alias, Body::AliasDeleted(AliasDeletedV1 { target_key_id: [0x34; 16] })),
        (
            "usage_block",
            AggregateKind::UsageLane,
            Body::UsageBlock(UsageBlockV1 {
                records: vec![UsageRecordV1 {
                    request_id: [0x05; 16],
                    time_unix_ms: 1_767_225_600_123,
                    operation: "Decrypt".into(),
                    principal: principal(),
                    source: SourceV1 {
                        transport: codes::transport::NATS,
                        client_name: "orders-app".into(),
                        client_addr: "127.0.0.1".into(),
                    },
                    key_id_supplied: "alias/orders".into(),
                    key_arn: format!("arn:aws:kms:us-east-1:111122223333:key/{KEY_ID}"),
                    material_version: 2,
                    encryption_context: vec![("app".into(), "orders".into()), ("tenant".into(), "t-42".into())],
                    authorized_by: String::new(),
                    outcome: codes::outcome::OK,
                    error_name: String::new(),
                    decided_at_seq: 42,
                    ciphertext_digest: Some([0x0c; 32]),
                    pending_deletion_alarm: false,
                }],
                suppressed: vec![SuppressedRequestsV1 {
                    principal: principal(),
                    count: 7,
                    window_start_unix_ms: 1_767_225_600_000,
                    window_end_unix_ms: 1_767_225_601_000,
                }],
            }),
        ),
        (
            "key_created_v2",
            AggregateKind::Key,
            Body::KeyCreatedV2(KeyCreatedV2 {
                key_spec: codes::key_spec::SYMMETRIC_DEFAULT,
                key_usage: codes::key_usage::ENCRYPT_DECRYPT,
                origin: codes::origin::AWS_KMS,
                description: "orders".into(),
                tags: tags.clone(),
                multi_region: false,
                material: Some(material(1)),
                policy: Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into()),
                bypass_policy_lockout_safety_check: true,
            }),
        ),
        (
            "key_policy_put",
            AggregateKind::Key,
            Body::KeyPolicyPut(KeyPolicyPutV1 {
                policy_name: "default".into(),
                policy: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
                bypass_policy_lockout_safety_check: false,
            }),
        ),
        (
            "grant_created",
            AggregateKind::Key,
            Body::GrantCreated(GrantCreatedV1 {
                grant_id: [0x33; 32],
                name: "orders-reader".into(),
                grantee_principal: "arn:aws:iam::444455556666:user/app".into(),
                retiring_principal: "arn:aws:iam::111122223333:user/dev".into(),
                operations: vec![codes::grant_operation::DECRYPT, codes::grant_operation::RETIRE_GRANT],
                constraint: Some(GrantConstraintV1 {
                    kind: codes::grant_constraint::SUBSET,
                    pairs: vec![ContextPairV1 { key: "tenant".into(), value: "a".into() }],
                }),
                issuing_account: "111122223333".into(),
            }),
        ),
        (
            "grant_retired",
            AggregateKind::Key,
            Body::GrantRetired(GrantRetiredV1 { grant_id: [0x33; 32], how: codes::grant_end::RETIRED_BY_TOKEN }),
        ),
        ("grant_revoked", AggregateKind::Key, Body::GrantRevoked(GrantRevokedV1 { grant_id: [0x33; 32] })),
    ]
}

fn encode_sample(kind: AggregateKind, body: &Body) -> (Vec<u8>, [u8; 32]) {
    let id = match kind {
        AggregateKind::Alias => "alias/orders",
        AggregateKind::UsageLane => "cryptod-0001",
        _ => KEY_ID,
    };
    let prev = genesis_hash(kind, "111122223333", id);
    encode(&draft(kind, id, 0, prev), body).expect("encodes")
}

#[test]
fn golden_vectors_pin_every_body_and_the_header() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("KEYLEDGER_BLESS_GOLDEN").is_some();
    for (name, kind, body) in samples() {
        let (bytes, hash) = encode_sample(kind, &body);
        let path = dir.join(format!("{name}.hex"));
        if bless && !path.exists() {
            std::fs::write(&path, format!("{}\n{}\n", hex::encode(&bytes), hex::encode(hash))).unwrap();
        }
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden vector {}", path.display()));
        let mut lines = text.lines();
        let want_bytes = hex::decode(lines.next().unwrap()).unwrap();
        let want_hash = hex::decode(lines.next().unwrap()).unwrap();
        assert_eq!(bytes, want_bytes, "encoding of {name} changed");
        assert_eq!(hash.to_vec(), want_hash, "hash of {name} changed");
        let event = decode(&want_bytes).expect("golden vector decodes");
        assert_eq!(event.body, body, "{name} decodes to a different body");
        assert_eq!(event.hash.to_vec(), want_hash);
    }
}

#[test]
fn every_body_round_trips_through_the_record() {
    for (name, kind, body) in samples() {
        let (bytes, hash) = encode_sample(kind, &body);
        let event = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.body, body);
        assert_eq!(event.hash, hash);
        assert_eq!(event.hash, record_hash(&bytes));
        assert_eq!(event.aggregate_kind(), kind);
        assert_eq!(event.record.body_type, body.body_type());
    }
}

#[test]
fn decode_rejects_trailing_bytes() {
    let (_, kind, body) = samples().remove(0);
    let (mut bytes, _) = encode_sample(kind, &body);
    bytes.push(0);
    assert_eq!(decode(&bytes), Err(EventError::NotCanonical("trailing bytes after the record")));
}

#[test]
fn decode_rejects_a_padded_varint() {
    // record_version (u16 = 1) is encoded as the single byte 0x01 right after the magic;
    // the padded form 0x81 0x00 decodes to the same value but is not canonical.
    let (_, kind, body) = samples().remove(3);
    let (bytes, _) = encode_sample(kind, &body);
    assert_eq!(bytes[4], 0x01);
    let mut padded = bytes[..4].to_vec();
    padded.extend_from_slice(&[0x81, 0x00]);
    padded.extend_from_slice(&bytes[5..]);
    assert!(matches!(decode(&padded), Err(EventError::NotCanonical(_))));
}

#[test]
fn decode_rejects_a_non_canonical_body_inside_a_valid_record() {
    // A KeyDisabledV1 body is empty; give it one trailing byte and re-encode the header
    // around it so the record itself is canonical.
    let (_, kind, body) = samples().remove(3);
    let (bytes, _) = encode_sample(kind, &body);
    let mut record: RecordV1 = postcard::from_bytes(&bytes).unwrap();
    record.body = vec![0];
    let forged = postcard::to_stdvec(&record).unwrap();
    assert_eq!(decode(&forged), Err(EventError::NotCanonical("trailing bytes after the body")));
}

#[test]
fn decode_rejects_bad_magic_unknown_version_kind_and_body() {
    let (_, kind, body) = samples().remove(0);
    let (bytes, _) = encode_sample(kind, &body);
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(decode(&bad), Err(EventError::BadMagic));

    let mut record: RecordV1 = postcard::from_bytes(&bytes).unwrap();
    record.record_version = 2;
    assert_eq!(decode(&postcard::to_stdvec(&record).unwrap()), Err(EventError::UnknownRecordVersion(2)));

    let mut record: RecordV1 = postcard::from_bytes(&bytes).unwrap();
    record.aggregate_kind = 99;
    assert_eq!(decode(&postcard::to_stdvec(&record).unwrap()), Err(EventError::UnknownAggregateKind(99)));

    let mut record: RecordV1 = postcard::from_bytes(&bytes).unwrap();
    record.body_type = 999;
    assert_eq!(
        decode(&postcard::to_stdvec(&record).unwrap()),
        Err(EventError::UnknownBody { body_type: 999, body_version: 1 })
    );
    assert!(decode(&[]).is_err());
    assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "truncated record must not decode");
}

#[test]
fn a_flipped_bit_anywhere_changes_the_hash_or_fails_decoding() {
    let (_, kind, body) = samples().remove(0);
    let (bytes, hash) = encode_sample(kind, &body);
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        if let Ok(ev) = decode(&b) {
            assert_ne!(ev.hash, hash, "flip at byte {i} kept the hash");
        }
    }
}

#[test]
fn genesis_separates_kinds_accounts_and_ids() {
    let a = genesis_hash(AggregateKind::Key, "111122223333", KEY_ID);
    assert_ne!(a, genesis_hash(AggregateKind::Alias, "111122223333", KEY_ID));
    assert_ne!(a, genesis_hash(AggregateKind::Key, "111122223334", KEY_ID));
    assert_ne!(genesis_hash(AggregateKind::Key, "1", "23"), genesis_hash(AggregateKind::Key, "12", "3"));
    assert_ne!(a, record_hash(b""), "genesis and record hashes use different contexts");
}

#[test]
fn oversize_fields_are_refused_when_encoding() {
    let mut d = draft(AggregateKind::Key, KEY_ID, 0, [0; 32]);
    d.aggregate_id = "x".repeat(MAX_AGGREGATE_ID_BYTES + 1);
    let body = Body::KeyDisabled(KeyDisabledV1 {});
    assert_eq!(encode(&d, &body).unwrap_err(), EventError::TooLarge("aggregate_id"));
    let d = draft(AggregateKind::Key, KEY_ID, 0, [0; 32]);
    let big = Body::KeyDescriptionUpdated(KeyDescriptionUpdatedV1 { description: "x".repeat(MAX_BODY_BYTES) });
    assert_eq!(encode(&d, &big).unwrap_err(), EventError::TooLarge("body"));
}

#[test]
fn subjects_are_scoped_by_account_and_kind() {
    assert_eq!(
        names::control_subject("111122223333", AggregateKind::Key, KEY_ID),
        format!("kl.v1.ctl.111122223333.key.{KEY_ID}")
    );
    assert_eq!(
        names::control_subject("111122223333", AggregateKind::Alias, "alias/orders"),
        "kl.v1.ctl.111122223333.alias.alias/orders"
    );
    assert_eq!(
        names::material_subject("111122223333", KEY_ID, 3, &[0xab; 32]),
        format!("kl.v1.mat.111122223333.{KEY_ID}.3.{}", "ab".repeat(32))
    );
    assert!(names::is_subject_token("alias/orders_1-x"));
    assert!(!names::is_subject_token("a.b"));
    assert!(!names::is_subject_token("a b"));
    assert!(!names::is_subject_token(">"));
    assert!(!names::is_subject_token(""));
}

#[test]
fn usage_periods_are_utc_months() {
    assert_eq!(names::usage_period(0), "197001");
    assert_eq!(names::usage_period(951_782_400_000), "200002"); // 2000-02-29T00:00Z
    assert_eq!(names::usage_period(951_868_799_999), "200002"); // 2000-02-29T23:59:59.999Z
    assert_eq!(names::usage_period(951_868_800_000), "200003"); // 2000-03-01T00:00Z
    assert_eq!(names::usage_period(1_798_761_599_999), "202612"); // 2026-12-31T23:59:59.999Z
    assert_eq!(names::usage_period(1_798_761_600_000), "202701");
    assert_eq!(names::usage_stream("202611"), "KL_USAGE_V1_202611");
    assert_eq!(names::usage_subject("202611", "cryptod-ab12"), "kl.v1.use.202611.cryptod-ab12");
}
