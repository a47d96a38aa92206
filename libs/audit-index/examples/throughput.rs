//! Indexing throughput: encodes N usage records in blocks (as the write path stores them),
//! then decodes, maps and indexes them through the writer (default options: commit every
//! 1000 documents or 1 s) into an on-disk index, and prints documents per second.
//!
//! `cargo run -p keyledger-audit-index --example throughput -- [records] [records-per-block] [commit-every-docs]`

use std::time::Instant;

use keyledger_audit_index::{records_from_message, AuditIndex, IndexedMessage, Realm, WriterOptions};
use keyledger_events::{
    codes, encode, genesis_hash, principal_kind, AggregateKind, Body, Draft, PrincipalV1, SourceV1, UsageBlockV1,
    UsageRecordV1,
};

fn record(i: u32) -> UsageRecordV1 {
    let account = if i.is_multiple_of(5) { "444455556666" } else { "111122223333" };
    let mut request_id = [0x5e; 16];
    request_id[12..].copy_from_slice(&i.to_be_bytes());
    UsageRecordV1 {
        request_id,
        time_unix_ms: 1_795_000_000_000 + u64::from(i),
        operation: ["Encrypt", "Decrypt", "GenerateDataKey", "ReEncrypt"][(i % 4) as usize].to_owned(),
        principal: PrincipalV1 {
            kind: principal_kind::NATS_USER,
            account: account.to_owned(),
            arn: format!("arn:aws:iam::{account}:user/u{}", i % 50),
            nats_account: "DEV".to_owned(),
            user: format!("u{}", i % 50),
        },
        source: SourceV1 {
            transport: codes::transport::NATS,
            client_name: "bench".to_owned(),
            client_addr: "127.0.0.1:1".to_owned(),
        },
        key_id_supplied: format!("arn:aws:kms:us-east-1:{account}:key/0a0a0a0a-0000-4000-8000-{:012}", i % 100),
        key_arn: format!("arn:aws:kms:us-east-1:{account}:key/0a0a0a0a-0000-4000-8000-{:012}", i % 100),
        material_version: 1 + i % 3,
        encryption_context: vec![
            ("app".to_owned(), format!("a{}", i % 7)),
            ("tenant".to_owned(), format!("t{}", i % 11)),
        ],
        authorized_by: String::new(),
        outcome: if i.is_multiple_of(20) { codes::outcome::DENIED } else { codes::outcome::OK },
        error_name: if i.is_multiple_of(20) { "AccessDeniedException".to_owned() } else { String::new() },
        decided_at_seq: 42,
        ciphertext_digest: Some([i as u8; 32]),
        pending_deletion_alarm: false,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<u32> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let total = args.first().copied().unwrap_or(200_000);
    let per_block = args.get(1).copied().unwrap_or(256).max(1);
    let mut prev = genesis_hash(AggregateKind::UsageLane, "", "bench");
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < total {
        let n = per_block.min(total - i);
        let records: Vec<UsageRecordV1> = (i..i + n).map(record).collect();
        let draft = Draft {
            event_id: *uuid::Uuid::now_v7().as_bytes(),
            account: String::new(),
            aggregate_kind: AggregateKind::UsageLane,
            aggregate_id: "bench".to_owned(),
            aggregate_seq: blocks.len() as u64,
            time_unix_ms: 0,
            principal: PrincipalV1::service(),
            request_id: [0; 16],
            prev_hash: prev,
        };
        let (bytes, hash) = encode(&draft, &Body::UsageBlock(UsageBlockV1 { records, suppressed: vec![] })).unwrap();
        prev = hash;
        blocks.push(bytes);
        i += n;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = AuditIndex::open(dir.path()).unwrap();
    let commit_docs = args.get(2).map(|n| *n as usize).unwrap_or(WriterOptions::default().commit_every_docs);
    let writer = index.writer(WriterOptions { commit_every_docs: commit_docs, ..WriterOptions::default() }).unwrap();
    let t = Instant::now();
    let mut mapped = 0usize;
    for (n, bytes) in blocks.iter().enumerate() {
        mapped += records_from_message("KL_USAGE_V1_202611", n as u64 + 1, bytes, &Realm::default()).unwrap().len();
    }
    let t2 = Instant::now();
    let mut decoded = 0usize;
    for bytes in &blocks {
        if let Body::UsageBlock(b) = keyledger_events::decode(bytes).unwrap().body {
            decoded += b.records.len();
        }
    }
    println!("decode alone: {decoded} records in {:.2} s", t2.elapsed().as_secs_f64());
    println!("decode + map alone: {mapped} records in {:.2} s", t.elapsed().as_secs_f64());
    let started = Instant::now();
    for (n, bytes) in blocks.iter().enumerate() {
        let seq = n as u64 + 1;
        let records = records_from_message("KL_USAGE_V1_202611", seq, bytes, &Realm::default()).unwrap();
        writer.send(IndexedMessage { stream: "KL_USAGE_V1_202611".to_owned(), seq, records }).await.unwrap();
    }
    writer.close().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(index.num_docs(), u64::from(total));
    let status = writer.status();
    println!(
        "{total} records in {} blocks of {per_block}: {secs:.2} s, {:.0} docs/s, {} commits",
        blocks.len(),
        f64::from(total) / secs,
        status.commits
    );
}
