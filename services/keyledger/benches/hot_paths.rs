//! The hot paths of a request, one criterion group each:
//!
//! * `event`: encode + BLAKE3 hash of a control event (KeyCreated), and its byte-exact decode;
//! * `projection`: `Projection::apply` of KeyCreated events (chain check included) into an
//!   empty projection, 10,000 per iteration;
//! * `usage_block`: encode + hash of a usage block of 1, 64 and 256 records (what an audit
//!   lane does per block);
//! * `blob`: the ciphertext blob of a 256-byte plaintext: seal (encode + AEAD), open (decode +
//!   AEAD), header parse;
//! * `material`: wrap and unwrap of key material under the root key (XChaCha20-Poly1305).
//!
//! * `audit_index`: what auditd does per usage record: map 20 stored usage blocks of 64
//!   records each (unique request ids and ciphertext digests, as in real traffic) to audit
//!   records and index them into an in-memory tantivy index with one commit at the end (no
//!   disk: the index's CPU cost alone);
//!
//! * `policy`: the access decision of an Encrypt (`keyledger_kms::authorize`) on a key with the
//!   default key policy (evaluated without parsing), with a 4-statement custom policy with
//!   encryption-context conditions, and through the last of 100 grants; parsing a policy.
//!
//! `cargo bench -p keyledger --bench hot_paths`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keyledger_crypto::{EncryptionContext, KeyMaterial, MaterialAad, RootKey};
use keyledger_events::{
    codes, AggregateKind, Body, Draft, Event, KeyCreatedV1, MaterialRefV1, PrincipalV1, SourceV1, UsageBlockV1,
    UsageRecordV1,
};
use keyledger_kms::{AggregateHead, Decision, Projection};

const ACCOUNT: &str = "111122223333";
/// 2023-11-14T22:13:20Z, ms.
const T0: u64 = 1_700_000_000_000;

fn principal() -> PrincipalV1 {
    PrincipalV1 {
        kind: keyledger_events::principal_kind::NATS_USER,
        account: ACCOUNT.to_owned(),
        arn: format!("arn:aws:iam::{ACCOUNT}:user/dev"),
        nats_account: "DEV".to_owned(),
        user: "dev".to_owned(),
    }
}

fn key_id(n: u64) -> uuid::Uuid {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    b[6] = 0x40;
    b[8] |= 0x80;
    uuid::Uuid::from_bytes(b)
}

/// The stored bytes of the KeyCreated event of key number `n`.
fn key_created(n: u64) -> Vec<u8> {
    let id = key_id(n).to_string();
    let body = Body::KeyCreated(KeyCreatedV1 {
        key_spec: codes::key_spec::SYMMETRIC_DEFAULT,
        key_usage: codes::key_usage::ENCRYPT_DECRYPT,
        origin: codes::origin::AWS_KMS,
        description: "orders".to_owned(),
        tags: vec![],
        multi_region: false,
        material: Some(MaterialRefV1 {
            version: 1,
            material_id: *blake3::hash(id.as_bytes()).as_bytes(),
            root_key_id: [7; 16],
            wrapped_digest: *blake3::hash(&n.to_le_bytes()).as_bytes(),
        }),
    });
    let decision = Decision {
        aggregate_kind: AggregateKind::Key,
        account: ACCOUNT.to_owned(),
        aggregate_id: id.clone(),
        head: AggregateHead::genesis(AggregateKind::Key, ACCOUNT, &id),
        body,
    };
    let draft = decision.draft(*uuid::Uuid::now_v7().as_bytes(), T0, principal(), [9; 16]);
    keyledger_events::encode(&draft, &decision.body).expect("encodes").0
}

fn usage_record(n: u64) -> UsageRecordV1 {
    UsageRecordV1 {
        request_id: *key_id(n).as_bytes(),
        time_unix_ms: T0 + n,
        operation: "Encrypt".to_owned(),
        principal: principal(),
        source: SourceV1 {
            transport: codes::transport::NATS,
            client_name: "keyledger-bench".to_owned(),
            client_addr: "127.0.0.1:50000".to_owned(),
        },
        key_id_supplied: format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{}", key_id(1)),
        key_arn: format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{}", key_id(1)),
        material_version: 1,
        encryption_context: vec![("app".to_owned(), "orders".to_owned())],
        authorized_by: String::new(),
        outcome: codes::outcome::OK,
        error_name: String::new(),
        decided_at_seq: 42,
        ciphertext_digest: Some([3; 32]),
        pending_deletion_alarm: false,
    }
}

fn event_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    let id = key_id(1).to_string();
    let decision = Decision {
        aggregate_kind: AggregateKind::Key,
        account: ACCOUNT.to_owned(),
        aggregate_id: id.clone(),
        head: AggregateHead::genesis(AggregateKind::Key, ACCOUNT, &id),
        body: keyledger_events::decode(&key_created(1)).expect("decodes").body,
    };
    let draft = decision.draft([1; 16], T0, principal(), [9; 16]);
    group.bench_function("key_created/encode+hash", |b| {
        b.iter(|| keyledger_events::encode(black_box(&draft), black_box(&decision.body)).expect("encodes"));
    });
    let stored = key_created(1);
    group.throughput(Throughput::Bytes(stored.len() as u64));
    group.bench_function("key_created/decode", |b| {
        b.iter(|| keyledger_events::decode(black_box(&stored)).expect("decodes"));
    });
    group.finish();
}

fn projection_benches(c: &mut Criterion) {
    const N: u64 = 10_000;
    let events: Vec<Event> =
        (1..=N).map(|n| keyledger_events::decode(&key_created(n)).expect("decodes")).collect::<Vec<_>>();
    let mut group = c.benchmark_group("projection");
    group.throughput(Throughput::Elements(N));
    group.sample_size(20);
    group.bench_function("apply/key_created x10000", |b| {
        b.iter_batched(
            Projection::new,
            |mut p| {
                for (i, e) in events.iter().enumerate() {
                    p.apply(i as u64 + 1, T0, e).expect("applies");
                }
                p
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn usage_block_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("usage_block");
    for records in [1usize, 64, 256] {
        let body = Body::UsageBlock(UsageBlockV1 {
            records: (0..records as u64).map(usage_record).collect(),
            suppressed: vec![],
        });
        let draft = Draft {
            event_id: [1; 16],
            account: String::new(),
            aggregate_kind: AggregateKind::UsageLane,
            aggregate_id: "cryptod-bench".to_owned(),
            aggregate_seq: 7,
            time_unix_ms: T0,
            principal: PrincipalV1::service(),
            request_id: [0; 16],
            prev_hash: [5; 32],
        };
        group.throughput(Throughput::Elements(records as u64));
        group.bench_function(format!("encode+hash/{records} records"), |b| {
            b.iter(|| keyledger_events::encode(black_box(&draft), black_box(&body)).expect("encodes"));
        });
    }
    group.finish();
}

fn crypto_benches(c: &mut Criterion) {
    let material = KeyMaterial::generate();
    let mut ec = EncryptionContext::new();
    ec.insert("app".into(), "orders".into());
    let plaintext = vec![0xA5u8; 256];
    let kid = *key_id(1).as_bytes();
    let mut group = c.benchmark_group("blob");
    group.throughput(Throughput::Bytes(256));
    group.bench_function("seal/256B", |b| {
        b.iter(|| keyledger_crypto::seal(&material, kid, 1, black_box(&ec), black_box(&plaintext)));
    });
    let blob = keyledger_crypto::seal(&material, kid, 1, &ec, &plaintext);
    group.bench_function("open/256B", |b| {
        b.iter(|| keyledger_crypto::open(&material, black_box(&blob), black_box(&ec)).expect("opens"));
    });
    group.bench_function("parse_header", |b| {
        b.iter(|| keyledger_crypto::parse_header(black_box(&blob)).expect("parses"));
    });
    group.finish();

    let root = RootKey::generate();
    let aad = MaterialAad { account: ACCOUNT, key_id: kid, version: 1 };
    let mut group = c.benchmark_group("material");
    group.bench_function("wrap", |b| b.iter(|| root.wrap(black_box(&aad), black_box(&material))));
    let wrapped = root.wrap(&aad, &material);
    group.bench_function("unwrap", |b| {
        b.iter(|| root.unwrap(black_box(&aad), black_box(wrapped.as_bytes())).expect("unwraps"));
    });
    group.finish();
}

/// A projection holding one key (id 1) with `policy` (None: the default) and `grants` grants
/// to other principals, then one to `arn:aws:iam::<ACCOUNT>:user/app`.
fn key_with(policy: Option<String>, grants: usize) -> Projection {
    let id = key_id(1).to_string();
    let mut p = Projection::new();
    let mut head = AggregateHead::genesis(AggregateKind::Key, ACCOUNT, &id);
    let mut bodies = vec![Body::KeyCreatedV2(keyledger_events::KeyCreatedV2 {
        key_spec: codes::key_spec::SYMMETRIC_DEFAULT,
        key_usage: codes::key_usage::ENCRYPT_DECRYPT,
        origin: codes::origin::AWS_KMS,
        description: String::new(),
        tags: vec![],
        multi_region: false,
        material: Some(MaterialRefV1 {
            version: 1,
            material_id: [1; 32],
            root_key_id: [7; 16],
            wrapped_digest: [2; 32],
        }),
        policy,
        bypass_policy_lockout_safety_check: true,
    })];
    for g in 0..=grants {
        let grantee = if g == grants {
            format!("arn:aws:iam::{ACCOUNT}:user/app")
        } else {
            format!("arn:aws:iam::{ACCOUNT}:user/other-{g}")
        };
        let mut grant_id = [0u8; 32];
        grant_id[..8].copy_from_slice(&(g as u64 + 1).to_be_bytes());
        bodies.push(Body::GrantCreated(keyledger_events::GrantCreatedV1 {
            grant_id,
            name: String::new(),
            grantee_principal: grantee,
            retiring_principal: String::new(),
            operations: vec![codes::grant_operation::ENCRYPT],
            constraint: Some(keyledger_events::GrantConstraintV1 {
                kind: codes::grant_constraint::SUBSET,
                pairs: vec![keyledger_events::ContextPairV1 { key: "app".into(), value: "orders".into() }],
            }),
            issuing_account: ACCOUNT.to_owned(),
        }));
    }
    if grants == 0 {
        bodies.truncate(1);
    }
    for (i, body) in bodies.into_iter().enumerate() {
        let d = Decision {
            aggregate_kind: AggregateKind::Key,
            account: ACCOUNT.to_owned(),
            aggregate_id: id.clone(),
            head,
            body,
        };
        let draft = d.draft(*key_id(1000 + i as u64).as_bytes(), T0, principal(), [9; 16]);
        let (bytes, _) = keyledger_events::encode(&draft, &d.body).expect("encodes");
        let event = keyledger_events::decode(&bytes).expect("decodes");
        p.apply(i as u64 + 1, T0, &event).expect("applies");
        head = p.head(AggregateKind::Key, ACCOUNT, &id);
    }
    p
}

fn policy_benches(c: &mut Criterion) {
    let realm = keyledger_kms::Realm::default();
    let caller = |user: &str| keyledger_kms::Caller {
        account: ACCOUNT.to_owned(),
        principal: PrincipalV1 { arn: format!("arn:aws:iam::{ACCOUNT}:user/{user}"), ..principal() },
    };
    let custom = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/admin")},
             "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                        "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:ScheduleKeyDeletion"],
             "Resource": "*"},
            {"Sid": "Use", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/dev")},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"], "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:app": "orders"}}},
            {"Sid": "NoForeign", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
             "Condition": {"StringNotEquals": {"kms:CallerAccount": ACCOUNT}}},
            {"Sid": "Keys", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
             "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["app", "tenant"]},
                           "Bool": {"aws:SecureTransport": "true"}}}
        ]
    })
    .to_string();
    let ec: keyledger_kms::EncryptionContext = [("app".to_owned(), "orders".to_owned())].into();
    let key = keyledger_kms::KeyId::from_uuid(key_id(1));
    let mut group = c.benchmark_group("policy");
    for (name, policy, grants, user) in [
        ("authorize/default policy", None, 0, "dev"),
        ("authorize/4-statement policy with conditions", Some(custom.clone()), 0, "dev"),
        ("authorize/last of 100 grants", Some(custom.clone()), 100, "app"),
    ] {
        let p = key_with(policy, grants);
        let k = p.key(ACCOUNT, &key).expect("the key");
        let who = caller(user);
        let access = keyledger_kms::Access::new(&who, "Encrypt", T0).with_context(Some(&ec));
        assert!(keyledger_kms::authorize(&realm, k, &access).is_ok(), "{name} must allow");
        group.bench_function(name, |b| b.iter(|| keyledger_kms::authorize(&realm, black_box(k), black_box(&access))));
    }
    group.bench_function(format!("parse/{} bytes", custom.len()), |b| {
        b.iter(|| keyledger_kms::KeyPolicy::parse(black_box(&custom)).expect("parses"))
    });
    group.finish();
}

fn audit_index_benches(c: &mut Criterion) {
    use keyledger_audit_index::{AuditIndex, IndexedMessage, WriterOptions};
    const BLOCKS: u64 = 20;
    const PER_BLOCK: u64 = 64;
    let stream = keyledger_events::names::usage_stream("202311");
    let realm = keyledger_kms::Realm::default();
    let stored: Vec<Vec<u8>> = (0..BLOCKS)
        .map(|b| {
            let records = (b * PER_BLOCK..(b + 1) * PER_BLOCK)
                .map(|n| UsageRecordV1 {
                    ciphertext_digest: Some(*blake3::hash(&n.to_le_bytes()).as_bytes()),
                    ..usage_record(n)
                })
                .collect();
            let draft = Draft {
                event_id: *uuid::Uuid::from_u64_pair(9, b).as_bytes(),
                account: String::new(),
                aggregate_kind: AggregateKind::UsageLane,
                aggregate_id: "cryptod-bench".to_owned(),
                aggregate_seq: b,
                time_unix_ms: T0 + b,
                principal: PrincipalV1::service(),
                request_id: [0; 16],
                prev_hash: [5; 32],
            };
            let body = Body::UsageBlock(UsageBlockV1 { records, suppressed: vec![] });
            keyledger_events::encode(&draft, &body).expect("encodes").0
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("audit_index");
    group.sample_size(20);
    group.throughput(Throughput::Elements(BLOCKS * PER_BLOCK));
    group.bench_function(format!("map+index+commit/{} usage records", BLOCKS * PER_BLOCK), |b| {
        b.iter_batched(
            || AuditIndex::in_memory().expect("index"),
            |index| {
                runtime.block_on(async {
                    let options = WriterOptions {
                        commit_every_docs: 1_000_000,
                        commit_every: std::time::Duration::from_secs(3600),
                        ..WriterOptions::default()
                    };
                    let writer = index.writer(options).expect("writer");
                    for (i, bytes) in stored.iter().enumerate() {
                        let seq = i as u64 + 1;
                        let records =
                            keyledger_audit_index::records_from_message(&stream, seq, bytes, &realm).expect("maps");
                        writer.send(IndexedMessage { stream: stream.clone(), seq, records }).await.expect("queued");
                    }
                    writer.close().await.expect("committed")
                })
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(
    benches,
    event_benches,
    projection_benches,
    usage_block_benches,
    crypto_benches,
    policy_benches,
    audit_index_benches
);
criterion_main!(benches);
