//! The index on real encoded log records (no NATS): mapping, documents, writer resume,
//! queries, paging and aggregation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keyledger_audit_index::*;
use keyledger_events::{
    codes, encode, genesis_hash, principal_kind, AggregateKind, AliasCreatedV1, Body, Draft, KeyCreatedV1,
    KeyMaterialRotatedV1, MaterialRefV1, PrincipalV1, SourceV1, SuppressedRequestsV1, UsageBlockV1, UsageRecordV1,
};

const A: &str = "111122223333";
const B: &str = "444455556666";
const USAGE: &str = "KL_USAGE_V1_202611";
const CONTROL: &str = "KL_CONTROL_V1";
const T0: u64 = 1_795_000_000_000; // 2026-11-18, ms

fn principal(account: &str, user: &str) -> PrincipalV1 {
    PrincipalV1 {
        kind: principal_kind::NATS_USER,
        account: account.to_owned(),
        arn: format!("arn:aws:iam::{account}:user/{user}"),
        nats_account: format!("NATS_{user}"),
        user: user.to_owned(),
    }
}

fn key_uuid(n: u8) -> String {
    uuid::Uuid::from_bytes([n; 16]).hyphenated().to_string()
}

fn key_arn(account: &str, n: u8) -> String {
    format!("arn:aws:kms:us-east-1:{account}:key/{}", key_uuid(n))
}

/// A usage record: request id from `n`, on key `key` of `owner`, by `user` of `account`.
#[allow(clippy::too_many_arguments)]
fn usage(
    n: u32,
    time_ms: u64,
    op: &str,
    owner: &str,
    key: u8,
    account: &str,
    user: &str,
    outcome: u16,
) -> UsageRecordV1 {
    let mut request_id = [0u8; 16];
    request_id[..4].copy_from_slice(&n.to_be_bytes());
    request_id[15] = 0xaa;
    UsageRecordV1 {
        request_id,
        time_unix_ms: time_ms,
        operation: op.to_owned(),
        principal: principal(account, user),
        source: SourceV1 {
            transport: codes::transport::NATS,
            client_name: "app-7".to_owned(),
            client_addr: "127.0.0.1:5000".to_owned(),
        },
        key_id_supplied: key_arn(owner, key),
        key_arn: key_arn(owner, key),
        material_version: 1 + n % 2,
        encryption_context: vec![
            ("purpose".to_owned(), format!("p{}", n % 3)),
            ("tenant.id".to_owned(), "t-1".to_owned()),
        ],
        authorized_by: String::new(),
        outcome,
        error_name: if outcome == codes::outcome::OK { String::new() } else { "AccessDeniedException".to_owned() },
        decided_at_seq: 7,
        ciphertext_digest: Some([n as u8; 32]),
        pending_deletion_alarm: false,
    }
}

struct Lane {
    id: String,
    seq: u64,
    prev: [u8; 32],
}

impl Lane {
    fn new(id: &str) -> Self {
        Self { id: id.to_owned(), seq: 0, prev: genesis_hash(AggregateKind::UsageLane, "", id) }
    }
    fn block(&mut self, records: Vec<UsageRecordV1>, suppressed: Vec<SuppressedRequestsV1>) -> Vec<u8> {
        let mut event_id = [0u8; 16];
        event_id[..8].copy_from_slice(&self.seq.to_be_bytes());
        event_id[8] = 0x77;
        let draft = Draft {
            event_id,
            account: String::new(),
            aggregate_kind: AggregateKind::UsageLane,
            aggregate_id: self.id.clone(),
            aggregate_seq: self.seq,
            time_unix_ms: T0,
            principal: PrincipalV1::service(),
            request_id: [0; 16],
            prev_hash: self.prev,
        };
        let (bytes, hash) = encode(&draft, &Body::UsageBlock(UsageBlockV1 { records, suppressed })).unwrap();
        self.prev = hash;
        self.seq += 1;
        bytes
    }
}

fn control_event(n: u8, kind: AggregateKind, account: &str, aggregate: &str, body: Body, p: PrincipalV1) -> Vec<u8> {
    let draft = Draft {
        event_id: [n; 16],
        account: account.to_owned(),
        aggregate_kind: kind,
        aggregate_id: aggregate.to_owned(),
        aggregate_seq: 0,
        time_unix_ms: T0 + u64::from(n),
        principal: p,
        request_id: [n.wrapping_add(100); 16],
        prev_hash: genesis_hash(kind, account, aggregate),
    };
    encode(&draft, &body).unwrap().0
}

fn material(version: u32) -> MaterialRefV1 {
    MaterialRefV1 { version, material_id: [9; 32], root_key_id: [1; 16], wrapped_digest: [2; 32] }
}

/// 3 control events + 2 usage blocks (6 usage records + 1 summary) = 10 records.
fn fixture() -> Vec<(String, u64, Vec<u8>)> {
    let realm_key = key_uuid(1);
    let created = Body::KeyCreated(KeyCreatedV1 {
        key_spec: codes::key_spec::SYMMETRIC_DEFAULT,
        key_usage: codes::key_usage::ENCRYPT_DECRYPT,
        origin: codes::origin::AWS_KMS,
        description: "payroll export key".to_owned(),
        tags: vec![],
        multi_region: false,
        material: Some(material(1)),
    });
    let alias = Body::AliasCreated(AliasCreatedV1 { target_key_id: [1; 16] });
    let rotated = Body::KeyMaterialRotated(KeyMaterialRotatedV1 {
        rotation_type: codes::rotation_type::AUTOMATIC,
        material: material(2),
        due_unix_ms: Some(T0),
        next_rotation_unix_ms: Some(T0 + 1),
    });
    let mut lane = Lane::new("cryptod-test");
    let ok = codes::outcome::OK;
    let denied = codes::outcome::DENIED;
    let block1 = lane.block(
        vec![
            usage(1, T0 + 10, "Encrypt", A, 1, A, "alice", ok),
            usage(2, T0 + 10, "Decrypt", A, 1, A, "bob", ok),
            usage(3, T0 + 11, "Decrypt", A, 1, B, "mallory", denied),
        ],
        vec![SuppressedRequestsV1 {
            principal: principal(B, "mallory"),
            count: 42,
            window_start_unix_ms: T0,
            window_end_unix_ms: T0 + 12,
        }],
    );
    let mut alias_use = usage(5, T0 + 20, "GenerateDataKey", A, 1, A, "alice", ok);
    alias_use.key_id_supplied = "alias/payroll".to_owned();
    let block2 = lane.block(
        vec![
            usage(4, T0 + 20, "Encrypt", B, 2, B, "carol", ok),
            alias_use,
            usage(6, T0 + 21, "Decrypt", A, 1, A, "alice", ok),
        ],
        vec![],
    );
    vec![
        (CONTROL.to_owned(), 1, control_event(1, AggregateKind::Key, A, &realm_key, created, principal(A, "alice"))),
        (
            CONTROL.to_owned(),
            2,
            control_event(2, AggregateKind::Alias, A, "alias/payroll", alias, principal(A, "alice")),
        ),
        (USAGE.to_owned(), 1, block1),
        (USAGE.to_owned(), 2, block2),
        (CONTROL.to_owned(), 3, control_event(3, AggregateKind::Key, A, &realm_key, rotated, PrincipalV1::service())),
    ]
}

fn messages() -> Vec<IndexedMessage> {
    fixture()
        .into_iter()
        .map(|(stream, seq, bytes)| IndexedMessage {
            records: records_from_message(&stream, seq, &bytes, &Realm::default()).unwrap(),
            stream,
            seq,
        })
        .collect()
}

async fn indexed() -> AuditIndex {
    let index = AuditIndex::in_memory().unwrap();
    let w = index.writer(WriterOptions::default()).unwrap();
    for m in messages() {
        w.send(m).await.unwrap();
    }
    w.close().await.unwrap();
    index
}

fn cond(field: TermFilter, v: &str) -> Condition {
    Condition { field, values: vec![v.to_owned()], exclude: false }
}

fn not(field: TermFilter, v: &str) -> Condition {
    Condition { field, values: vec![v.to_owned()], exclude: true }
}

fn ids(index: &AuditIndex, scope: &Scope, q: &Query) -> Vec<String> {
    index.search(scope, q, 1000, None).unwrap().records.into_iter().map(|r| r.record_id).collect()
}

/// The rate-limiter summary of the first block (event id: lane seq 0, marker 0x77).
fn summary_id() -> String {
    let mut e = [0u8; 16];
    e[8] = 0x77;
    format!("{}-s3", hex::encode(e))
}

fn req_hex(n: u32) -> String {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[15] = 0xaa;
    hex::encode(id)
}

#[test]
fn control_events_map_to_aws_operation_names() {
    let m = messages();
    let created = &m[0].records[0];
    assert_eq!(created.operation, "CreateKey");
    assert_eq!(created.event_type, EVENT_API_CALL);
    assert_eq!(created.key_id, key_uuid(1));
    assert_eq!(created.key_arn, key_arn(A, 1));
    assert_eq!(created.material_version, 1);
    assert_eq!(created.record_id, hex::encode([1u8; 16]));
    assert_eq!(created.request_id, uuid::Uuid::from_bytes([101; 16]).hyphenated().to_string());
    assert!(created.text.contains("payroll export key"));
    let alias = &m[1].records[0];
    assert_eq!(
        (alias.operation.as_str(), alias.alias.as_str(), alias.key_id.as_str()),
        ("CreateAlias", "alias/payroll", key_uuid(1).as_str())
    );
    let rotated = &m[4].records[0];
    assert_eq!((rotated.operation.as_str(), rotated.event_type.as_str()), ("RotateKey", EVENT_SERVICE));
    assert_eq!(rotated.material_version, 2);
    assert_eq!(rotated.principal_arn, "keyledger:service");
}

#[test]
fn usage_blocks_become_one_record_per_request_and_summary() {
    let m = messages();
    let block = &m[2].records;
    assert_eq!(block.len(), 4);
    let r = &block[0];
    assert_eq!(r.record_id, req_hex(1));
    assert_eq!((r.stream.as_str(), r.seq, r.index), (USAGE, 1, 0));
    assert_eq!(r.time_unix_us, (T0 as i64 + 10) * 1000);
    assert_eq!(r.encryption_context.get("tenant.id").map(String::as_str), Some("t-1"));
    assert_eq!(r.ciphertext_digest, hex::encode([1u8; 32]));
    assert_eq!((r.source_transport.as_str(), r.source_client.as_str()), ("nats", "app-7"));
    let denied = &block[2];
    assert_eq!((denied.outcome.as_str(), denied.error_name.as_str()), ("denied", "AccessDeniedException"));
    assert_eq!(denied.accounts, vec![A.to_owned(), B.to_owned()], "key owner and caller");
    let summary = &block[3];
    assert_eq!(
        (summary.operation.as_str(), summary.outcome.as_str(), summary.suppressed_count, summary.index),
        (OPERATION_SUPPRESSED, "suppressed", 42, 3)
    );
    assert_eq!(m[3].records[1].alias, "alias/payroll");
}

#[test]
fn damaged_or_misplaced_records_are_refused() {
    let m = fixture();
    let mut broken = m[2].2.clone();
    broken.push(0);
    assert!(matches!(records_from_message(USAGE, 1, &broken, &Realm::default()), Err(IndexError::Decode(_))));
    assert!(matches!(
        records_from_message(CONTROL, 1, &m[2].2, &Realm::default()),
        Err(IndexError::UnexpectedRecord(_))
    ));
    assert!(matches!(records_from_message(USAGE, 1, &m[0].2, &Realm::default()), Err(IndexError::UnexpectedRecord(_))));
    assert!(matches!(
        records_from_message("KL_MATERIAL_V1", 1, &m[0].2, &Realm::default()),
        Err(IndexError::UnexpectedRecord(_))
    ));
}

#[tokio::test]
async fn documents_hold_only_the_listed_fields_and_read_back_unchanged() {
    let index = AuditIndex::in_memory().unwrap();
    let names: Vec<&str> = index.schema().fields().map(|(_, e)| e.name()).collect();
    assert_eq!(names, FIELD_NAMES.to_vec());
    let listed: BTreeSet<&str> = FIELD_NAMES.iter().copied().collect();
    for m in messages() {
        for r in &m.records {
            let doc = to_document(index.fields(), r).unwrap();
            for (field, _) in doc.field_values() {
                assert!(listed.contains(index.schema().get_field_name(field)));
            }
            assert_eq!(&from_document(index.fields(), &doc), r, "a document reads back as its record");
            let json = serde_json::to_value(r).unwrap();
            let keys: BTreeSet<String> = json.as_object().unwrap().keys().cloned().collect();
            let mut expected: BTreeSet<String> = listed.iter().map(|s| (*s).to_owned()).collect();
            expected.remove("stream_rank");
            expected.remove("account");
            expected.insert("accounts".to_owned());
            expected.insert("time_unix_us".to_owned());
            assert_eq!(keys, expected, "the API shape is the schema");
        }
    }
    let index = indexed().await;
    assert_eq!(index.num_docs(), 10);
    let page = index.search(&Scope::All, &Query::default(), 1000, None).unwrap();
    let mut from_index = page.records.clone();
    let mut expected: Vec<AuditRecord> = messages().into_iter().flat_map(|m| m.records).collect();
    from_index.sort_by(|a, b| a.record_id.cmp(&b.record_id));
    expected.sort_by(|a, b| a.record_id.cmp(&b.record_id));
    assert_eq!(from_index, expected);
}

#[tokio::test]
async fn results_are_newest_first_and_the_cursor_walks_every_record_once() {
    let index = indexed().await;
    let all = index.search(&Scope::All, &Query::default(), 1000, None).unwrap();
    assert_eq!(all.total, 10);
    assert!(all.next_cursor.is_none());
    let times: Vec<i64> = all.records.iter().map(|r| r.time_unix_us).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // Same time (T0+10 ms): request 2 (index 1) before request 1 (index 0).
    let pos1 = all.records.iter().position(|r| r.record_id == req_hex(1)).unwrap();
    let pos2 = all.records.iter().position(|r| r.record_id == req_hex(2)).unwrap();
    assert_eq!(pos2 + 1, pos1);
    for limit in [1, 3, 4] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = index.search(&Scope::All, &Query::default(), limit, cursor.as_deref()).unwrap();
            assert!(page.records.len() <= limit);
            assert_eq!(page.total, 10);
            seen.extend(page.records.into_iter().map(|r| r.record_id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let expected: Vec<String> = all.records.iter().map(|r| r.record_id.clone()).collect();
        assert_eq!(seen, expected, "limit {limit}: pages concatenate to the full order");
    }
    assert!(matches!(index.search(&Scope::All, &Query::default(), 0, None), Err(IndexError::InvalidQuery(_))));
    assert!(matches!(index.search(&Scope::All, &Query::default(), 1001, None), Err(IndexError::InvalidQuery(_))));
    assert!(matches!(
        index.search(&Scope::All, &Query::default(), 10, Some("garbage")),
        Err(IndexError::InvalidQuery(_))
    ));
}

#[tokio::test]
async fn each_filter_selects_exactly_its_records() {
    let index = indexed().await;
    let all = Scope::All;
    let q = |conditions: Vec<Condition>| Query { conditions, ..Query::default() };
    let set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    let control = |n: u8| hex::encode([n; 16]);

    // key by id, by ARN, by alias
    let by_id = set(ids(&index, &all, &q(vec![cond(TermFilter::Key, &key_uuid(1))])));
    let expected: BTreeSet<String> =
        [control(1), control(2), control(3), req_hex(1), req_hex(2), req_hex(3), req_hex(5), req_hex(6)]
            .into_iter()
            .collect();
    assert_eq!(by_id, expected);
    let by_arn = set(ids(&index, &all, &q(vec![cond(TermFilter::Key, &key_arn(A, 1))])));
    assert_eq!(by_arn, expected);
    assert_eq!(
        ids(&index, &all, &q(vec![cond(TermFilter::Key, "alias/payroll")])).len(),
        2,
        "alias event + use by alias"
    );
    assert_eq!(
        set(ids(&index, &all, &q(vec![cond(TermFilter::Alias, "alias/payroll")]))),
        set(vec![control(2), req_hex(5)])
    );
    // operation, outcome, error, principal (ARN and user), account
    assert_eq!(
        set(ids(&index, &all, &q(vec![cond(TermFilter::Operation, "Decrypt")]))),
        set(vec![req_hex(2), req_hex(3), req_hex(6)])
    );
    assert_eq!(ids(&index, &all, &q(vec![cond(TermFilter::Outcome, "denied")])), vec![req_hex(3)]);
    assert_eq!(ids(&index, &all, &q(vec![cond(TermFilter::ErrorName, "AccessDeniedException")])), vec![req_hex(3)]);
    assert_eq!(
        ids(&index, &all, &q(vec![cond(TermFilter::Principal, "arn:aws:iam::444455556666:user/carol")])),
        vec![req_hex(4)]
    );
    assert_eq!(ids(&index, &all, &q(vec![cond(TermFilter::Principal, "bob")])), vec![req_hex(2)]);
    assert_eq!(
        set(ids(&index, &all, &q(vec![cond(TermFilter::Account, B)]))).len(),
        3,
        "carol's use, mallory's denial and summary"
    );
    assert_eq!(ids(&index, &all, &q(vec![cond(TermFilter::EventType, EVENT_SERVICE)])), vec![control(3)]);
    // several values are alternatives
    let enc_or_gdk = Condition {
        field: TermFilter::Operation,
        values: vec!["Encrypt".into(), "GenerateDataKey".into()],
        exclude: false,
    };
    assert_eq!(set(ids(&index, &all, &q(vec![enc_or_gdk]))), set(vec![req_hex(1), req_hex(4), req_hex(5)]));
    // time window [T0+11 ms, T0+21 ms)
    let window =
        Query { from_us: Some((T0 as i64 + 11) * 1000), to_us: Some((T0 as i64 + 21) * 1000), ..Query::default() };
    assert_eq!(set(ids(&index, &all, &window)), set(vec![req_hex(3), req_hex(4), req_hex(5), summary_id()]));
    // encryption context, exact pair; dotted keys are one key
    let ctx = |k: &str, v: &str, exclude: bool| Query {
        context: vec![ContextCondition { key: k.into(), value: v.into(), exclude }],
        ..Query::default()
    };
    assert_eq!(set(ids(&index, &all, &ctx("purpose", "p1", false))), set(vec![req_hex(1), req_hex(4)]));
    assert_eq!(ids(&index, &all, &ctx("tenant.id", "t-1", false)).len(), 6);
    assert!(ids(&index, &all, &ctx("tenant", "t-1", false)).is_empty());
    assert!(ids(&index, &all, &ctx("purpose", "P1", false)).is_empty(), "exact, case-sensitive");
    // free text: words, never query syntax
    let text = |t: &str| Query { text: Some(t.into()), ..Query::default() };
    assert_eq!(ids(&index, &all, &text("payroll export")), vec![control(1)]);
    assert_eq!(
        set(ids(&index, &all, &text("PAYROLL"))),
        set(vec![control(1), req_hex(5)]),
        "case-folded; alias/payroll too"
    );
    assert!(ids(&index, &all, &text("operation:Decrypt")).is_empty(), "field syntax is just words");
    assert_eq!(ids(&index, &all, &text("mallory requests")), vec![summary_id()]);
}

#[tokio::test]
async fn exclusions_work_alone_and_with_other_filters() {
    let index = indexed().await;
    let all = Scope::All;
    // pure exclusion: everything except ok (a query with only a negative clause must not be empty)
    let not_ok = Query { conditions: vec![not(TermFilter::Outcome, "ok")], ..Query::default() };
    assert_eq!(ids(&index, &all, &not_ok).len(), 2, "the denial and the summary");
    // `Decrypt AND NOT denied` (the query parser returns 0 hits for this in tantivy 0.27)
    let decrypt_not_denied = Query {
        conditions: vec![cond(TermFilter::Operation, "Decrypt"), not(TermFilter::Outcome, "denied")],
        ..Query::default()
    };
    assert_eq!(ids(&index, &all, &decrypt_not_denied).len(), 2);
    let no_ctx = Query {
        context: vec![ContextCondition { key: "purpose".into(), value: "p0".into(), exclude: true }],
        ..Query::default()
    };
    assert_eq!(ids(&index, &all, &no_ctx).len(), 10 - 2);
    // account scope + exclusion only
    let scoped = Scope::Account(B.to_owned());
    let not_suppressed =
        Query { conditions: vec![not(TermFilter::Operation, OPERATION_SUPPRESSED)], ..Query::default() };
    assert_eq!(ids(&index, &scoped, &not_suppressed).len(), 2);
}

#[tokio::test]
async fn an_account_scope_never_shows_another_accounts_records() {
    let index = indexed().await;
    let b = Scope::Account(B.to_owned());
    let page = index.search(&b, &Query::default(), 1000, None).unwrap();
    assert_eq!(page.total, 3);
    assert!(page.records.iter().all(|r| r.accounts.contains(&B.to_owned())));
    // asking for another account inside a scope gives nothing, not the other account
    let other = Query { conditions: vec![cond(TermFilter::Account, A)], ..Query::default() };
    let got = index.search(&b, &other, 1000, None).unwrap().records;
    assert!(got.iter().all(|r| r.accounts.contains(&B.to_owned())));
    assert_eq!(got.len(), 1, "only the cross-account denial belongs to both");
    assert!(index.get(&b, &req_hex(1)).unwrap().is_none(), "get is scoped too");
    assert!(index.get(&Scope::Account("999999999999".into()), &req_hex(4)).unwrap().is_none());
    assert_eq!(index.get(&b, &req_hex(4)).unwrap().unwrap().operation, "Encrypt");
    let usage = index.key_usage(&b, &key_uuid(1), 10).unwrap();
    assert_eq!(usage.records, 1, "B sees only its own denied attempt on A's key");
}

#[tokio::test]
async fn get_finds_records_by_record_id_or_request_id() {
    let index = indexed().await;
    let r = index.get(&Scope::All, &req_hex(6)).unwrap().unwrap();
    assert_eq!(r.operation, "Decrypt");
    let hyphenated = uuid::Uuid::parse_str(&req_hex(6)).unwrap().hyphenated().to_string().to_uppercase();
    assert_eq!(index.get(&Scope::All, &hyphenated).unwrap().unwrap().record_id, req_hex(6));
    // a management event by the request id the API returned
    let request = uuid::Uuid::from_bytes([101; 16]).hyphenated().to_string();
    assert_eq!(index.get(&Scope::All, &request).unwrap().unwrap().operation, "CreateKey");
    assert!(index.get(&Scope::All, "00000000000000000000000000000000").unwrap().is_none());
}

#[tokio::test]
async fn key_usage_counts_operations_versions_and_users() {
    let index = indexed().await;
    let u = index.key_usage(&Scope::All, &key_arn(A, 1), 2).unwrap();
    assert_eq!(u.key_id, key_uuid(1));
    assert_eq!(u.records, 8);
    let ops: BTreeMap<&str, u64> = u.by_operation.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        ops,
        BTreeMap::from([
            ("CreateAlias", 1),
            ("CreateKey", 1),
            ("Decrypt", 3),
            ("Encrypt", 1),
            ("GenerateDataKey", 1),
            ("RotateKey", 1)
        ])
    );
    assert_eq!(u.by_outcome.get("denied"), Some(&1));
    // versions: usage n%2 → 1 + n%2 for requests 1,2,3,5,6 (2,1,2,2,1) + CreateKey v1 + rotation v2
    assert_eq!(u.by_material_version, BTreeMap::from([(1, 3), (2, 4)]));
    let last = u.last_used.unwrap();
    assert_eq!((last.record_id.as_str(), last.operation.as_str()), (req_hex(6).as_str(), "Decrypt"));
    assert_eq!(u.last_activity.unwrap().operation, "Decrypt");
    assert_eq!(u.recent_principals.len(), 2);
    assert_eq!(u.recent_principals[0].principal_arn, format!("arn:aws:iam::{A}:user/alice"));
    assert!(u.recent_principals[0].last_time_unix_us >= u.recent_principals[1].last_time_unix_us);
    assert!(index.key_usage(&Scope::All, "alias/payroll", 5).is_err());
}

#[tokio::test]
async fn a_crash_between_commits_loses_and_duplicates_nothing_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let all = messages();
    let total: usize = all.iter().map(|m| m.records.len()).sum();
    {
        let index = AuditIndex::open(dir.path()).unwrap();
        // messages hold 1, 1, 4 and 3 records: the third triggers a commit, the fourth waits
        let opts =
            WriterOptions { commit_every_docs: 5, commit_every: Duration::from_secs(3600), ..WriterOptions::default() };
        let w = index.writer(opts).unwrap();
        for m in all.iter().take(4).cloned() {
            w.send(m).await.unwrap();
        }
        // wait until the writer took all four messages and made its one commit
        for _ in 0..500 {
            let s = w.status();
            if s.received.last(USAGE) == 2 && s.commits == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = w.status();
        assert_eq!(s.received.last(USAGE), 2);
        w.abort();
        let committed = AuditIndex::open(dir.path()).unwrap().checkpoint().unwrap();
        assert_eq!(committed, s.committed, "the payload is what was committed");
        assert_eq!(
            (committed.last(CONTROL), committed.last(USAGE)),
            (2, 1),
            "the fourth message was still uncommitted when the writer died"
        );
        assert_eq!(AuditIndex::open(dir.path()).unwrap().num_docs(), 6);
    }
    let index = AuditIndex::open(dir.path()).unwrap();
    let checkpoint = index.checkpoint().unwrap();
    let w = index.writer(WriterOptions::default()).unwrap();
    // replay every stream from its resume point, plus an already-indexed message (a follower
    // re-delivery) that must be dropped
    w.send(all[0].clone()).await.unwrap();
    w.send(all[1].clone()).await.unwrap(); // exactly the last committed sequence of its stream
    for m in all.iter().filter(|m| m.seq >= checkpoint.resume_from(&m.stream)).cloned() {
        w.send(m).await.unwrap();
    }
    let final_checkpoint = w.flush().await.unwrap();
    assert_eq!(final_checkpoint.last(CONTROL), 3);
    assert_eq!(final_checkpoint.last(USAGE), 2);
    assert_eq!(w.status().duplicates_dropped, 2);
    w.close().await.unwrap();
    assert_eq!(index.num_docs() as usize, total);
    let page = index.search(&Scope::All, &Query::default(), 1000, None).unwrap();
    let unique: BTreeSet<_> = page.records.iter().map(|r| (r.stream.clone(), r.seq, r.index)).collect();
    assert_eq!(unique.len(), total, "every record once");
}

#[tokio::test]
async fn a_second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let index = AuditIndex::open(dir.path()).unwrap();
    let w = index.writer(WriterOptions::default()).unwrap();
    assert!(index.writer(WriterOptions::default()).is_err());
    w.close().await.unwrap();
}

#[test]
fn foreign_commit_payloads_are_refused() {
    assert!(Checkpoint::from_payload(Some("last_seq=5")).is_err());
    assert!(Checkpoint::from_payload(Some(
        r#"{"format":"keyledger-audit-checkpoint","schema_version":99,"streams":{}}"#
    ))
    .is_err());
    let c = Checkpoint { streams: BTreeMap::from([(CONTROL.to_owned(), 4)]) };
    assert_eq!(Checkpoint::from_payload(Some(&c.to_payload())).unwrap(), c);
    assert_eq!(c.resume_from(CONTROL), 5);
    assert_eq!(c.resume_from(USAGE), 1);
}

#[tokio::test]
async fn a_withheld_result_gets_its_own_record_next_to_the_first() {
    let mut lane = Lane::new("withheld-lane");
    let first = usage(9, T0 + 30, "Decrypt", A, 1, A, "alice", codes::outcome::OK);
    let mut withheld = first.clone();
    withheld.outcome = codes::outcome::WITHHELD;
    withheld.error_name = "DisabledException".to_owned();
    let bytes = lane.block(vec![first, withheld], vec![]);
    let records = records_from_message(USAGE, 1, &bytes, &Realm::default()).unwrap();
    assert_eq!(records[0].record_id, req_hex(9));
    assert_eq!(records[1].record_id, format!("{}-withheld", req_hex(9)));
    assert_eq!(records[0].request_id, records[1].request_id);
    let index = AuditIndex::in_memory().unwrap();
    let w = index.writer(WriterOptions::default()).unwrap();
    w.send(IndexedMessage { stream: USAGE.to_owned(), seq: 1, records }).await.unwrap();
    w.close().await.unwrap();
    let request = uuid::Uuid::parse_str(&req_hex(9)).unwrap().to_string();
    let both = Query { conditions: vec![cond(TermFilter::RequestId, &request)], ..Query::default() };
    assert_eq!(ids(&index, &Scope::All, &both), vec![format!("{}-withheld", req_hex(9)), req_hex(9)]);
    assert_eq!(index.get(&Scope::All, &req_hex(9)).unwrap().unwrap().outcome, "ok", "the record id names the first");
    assert_eq!(index.get(&Scope::All, &format!("{}-withheld", req_hex(9))).unwrap().unwrap().outcome, "withheld");
}
