//! auditd against a real nats-server: every stored audit record becomes exactly one document,
//! indexing resumes exactly after kill -9, every filter and the cursor select the known
//! records, tokens see only their scope, and bad input gets a JSON 400/401.
//!
//! The usage records here are written by the test itself (a usage stream of January 2020,
//! blocks chained per lane, as the write path stores them), next to real management events
//! made through the API; records the roles write on their own are counted from the streams.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use keyledger::auditd::{self, AuditdConfig, BearerTokens, RunnerTimings, RunningAuditd, TokenFile};
use keyledger_audit_index::{records_from_message, Realm, WriterOptions};
use keyledger_events::{
    codes, encode, genesis_hash, names, principal_kind, AggregateKind, Body, Draft, PrincipalV1, SourceV1,
    SuppressedRequestsV1, UsageBlockV1, UsageRecordV1,
};
use keyledger_tests::*;
use serde_json::{json, Value};

const CLI: &str = env!("CARGO_BIN_EXE_kl-cli");
const OTHER: &str = "444455556666";
const PERIOD: &str = "202001";
/// 2020-01-10T00:00:00Z in ms; synthetic record i is at T0 + i seconds.
const T0: u64 = 1_578_614_400_000;
const KEY_A: &str = "0a0a0a0a-0000-4000-8000-00000000000a";
const KEY_B: &str = "0b0b0b0b-0000-4000-8000-00000000000b";
const SYNTHETIC: u32 = 60;
const BLOCK: usize = 7;

// ---------------------------------------------------------------------------------------------
// Synthetic usage records: every property is a function of i, so each filter's expected
// result is computed here, independently of the index.

fn account_of(i: u32) -> &'static str {
    if i.is_multiple_of(5) {
        OTHER
    } else {
        ACCOUNT
    }
}
fn user_of(i: u32) -> &'static str {
    if i.is_multiple_of(5) {
        "carol"
    } else if i % 2 == 1 {
        "bob"
    } else {
        "alice"
    }
}
fn op_of(i: u32) -> &'static str {
    ["Encrypt", "Decrypt", "GenerateDataKey", "ReEncrypt"][(i % 4) as usize]
}
fn outcome_of(i: u32) -> &'static str {
    match i % 10 {
        8 => "denied",
        9 => "error",
        _ => "ok",
    }
}
fn by_alias(i: u32) -> bool {
    i.is_multiple_of(7) && account_of(i) == ACCOUNT
}
fn key_arn(account: &str) -> String {
    let key = if account == ACCOUNT { KEY_A } else { KEY_B };
    format!("arn:aws:kms:us-east-1:{account}:key/{key}")
}
fn request_id(i: u32) -> [u8; 16] {
    let mut id = [0x5e; 16];
    id[12..].copy_from_slice(&i.to_be_bytes());
    id
}
fn record_id(i: u32) -> String {
    hex::encode(request_id(i))
}

fn principal(account: &str, user: &str) -> PrincipalV1 {
    PrincipalV1 {
        kind: principal_kind::NATS_USER,
        account: account.to_owned(),
        arn: format!("arn:aws:iam::{account}:user/{user}"),
        nats_account: "SYNTH".to_owned(),
        user: user.to_owned(),
    }
}

fn synthetic(i: u32) -> UsageRecordV1 {
    let account = account_of(i);
    let outcome = match outcome_of(i) {
        "denied" => codes::outcome::DENIED,
        "error" => codes::outcome::ERROR,
        _ => codes::outcome::OK,
    };
    UsageRecordV1 {
        request_id: request_id(i),
        time_unix_ms: T0 + u64::from(i) * 1000,
        operation: op_of(i).to_owned(),
        principal: principal(account, user_of(i)),
        source: SourceV1 {
            transport: codes::transport::NATS,
            client_name: "synthetic-client".to_owned(),
            client_addr: "127.0.0.1:1".to_owned(),
        },
        key_id_supplied: if by_alias(i) { "alias/app".to_owned() } else { key_arn(account) },
        key_arn: key_arn(account),
        material_version: 1 + i % 2,
        encryption_context: vec![("app".to_owned(), format!("a{}", i % 3)), ("tenant.id".to_owned(), "t1".to_owned())],
        authorized_by: String::new(),
        outcome,
        error_name: match outcome_of(i) {
            "denied" => "AccessDeniedException".to_owned(),
            "error" => "KMSInvalidStateException".to_owned(),
            _ => String::new(),
        },
        decided_at_seq: 1,
        ciphertext_digest: Some([i as u8; 32]),
        pending_deletion_alarm: false,
    }
}

/// The rate-limiter summary written with the last block (carol, account OTHER).
fn summary_window_end() -> u64 {
    T0 + u64::from(SYNTHETIC + 100) * 1000
}

/// A writer lane of the test: blocks chained to their predecessor, as the write path does.
struct Lane {
    id: String,
    next_seq: u64,
    prev: [u8; 32],
}

impl Lane {
    fn new(id: &str) -> Self {
        Self { id: id.to_owned(), next_seq: 0, prev: genesis_hash(AggregateKind::UsageLane, "", id) }
    }

    fn block(&mut self, records: Vec<UsageRecordV1>, suppressed: Vec<SuppressedRequestsV1>) -> Vec<u8> {
        let draft = Draft {
            event_id: *uuid::Uuid::now_v7().as_bytes(),
            account: String::new(),
            aggregate_kind: AggregateKind::UsageLane,
            aggregate_id: self.id.clone(),
            aggregate_seq: self.next_seq,
            time_unix_ms: T0,
            principal: PrincipalV1::service(),
            request_id: [0; 16],
            prev_hash: self.prev,
        };
        let (bytes, hash) =
            encode(&draft, &Body::UsageBlock(UsageBlockV1 { records, suppressed })).expect("block encodes");
        self.prev = hash;
        self.next_seq += 1;
        bytes
    }
}

async fn publish_blocks(
    js: &async_nats::jetstream::Context,
    period: &str,
    lane: &mut Lane,
    blocks: Vec<(Vec<UsageRecordV1>, Vec<SuppressedRequestsV1>)>,
) {
    keyledger_log::ensure_usage_stream(js, period, 1, None).await.expect("usage stream");
    let subject = names::usage_subject(period, &lane.id);
    for (records, suppressed) in blocks {
        let bytes = lane.block(records, suppressed);
        js.publish(subject.clone(), bytes.into()).await.expect("publish").await.expect("block stored");
    }
}

/// Writes the 60 synthetic records (blocks of 7) and the summary to KL_USAGE_V1_202001.
async fn write_synthetic(h: &Harness) {
    let js = keyledger_log::jetstream(h.service_nats().await);
    let records: Vec<UsageRecordV1> = (0..SYNTHETIC).map(synthetic).collect();
    let mut blocks: Vec<(Vec<UsageRecordV1>, Vec<SuppressedRequestsV1>)> =
        records.chunks(BLOCK).map(|c| (c.to_vec(), Vec::new())).collect();
    blocks.last_mut().unwrap().1.push(SuppressedRequestsV1 {
        principal: principal(OTHER, "carol"),
        count: 17,
        window_start_unix_ms: summary_window_end() - 1000,
        window_end_unix_ms: summary_window_end(),
    });
    publish_blocks(&js, PERIOD, &mut Lane::new("synthetic-lane"), blocks).await;
}

// ---------------------------------------------------------------------------------------------
// What the streams hold, counted independently of the index: (stream, seq, index) of every
// record, by decoding every stored message.

async fn stored_positions(h: &Harness) -> BTreeSet<(String, u64, u32)> {
    use futures::StreamExt;
    let js = keyledger_log::jetstream(h.service_nats().await);
    let mut names: Vec<String> = js.stream_names().filter_map(|n| async move { n.ok() }).collect().await;
    names.sort();
    let mut out = BTreeSet::new();
    for name in names {
        if name != names::CONTROL_STREAM && !name.starts_with(names::USAGE_STREAM_PREFIX) {
            continue;
        }
        let mut stream = js.get_stream(&name).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        for seq in 1..=last {
            let msg = stream.direct_get(seq).await.expect("contiguous stream");
            let event = keyledger_events::decode(&msg.payload).expect("stored records decode");
            let n = match &event.body {
                Body::UsageBlock(b) => b.records.len() + b.suppressed.len(),
                _ => 1,
            };
            for i in 0..n {
                out.insert((name.clone(), seq, i as u32));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// auditd and its HTTP API.

fn tokens() -> TokenFile {
    TokenFile::generate("http://127.0.0.1:0", &[("dev", ACCOUNT), ("other", OTHER)])
}

fn token<'a>(file: &'a TokenFile, name: &str) -> &'a str {
    file.token(name).unwrap().token.expose()
}

async fn start_auditd(h: &Harness, index_dir: &Path, tokens: &TokenFile) -> RunningAuditd {
    let config = AuditdConfig {
        index_dir: index_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        authenticator: Arc::new(BearerTokens::new(tokens).unwrap()),
        realm: Realm::default(),
        writer: WriterOptions { commit_every: Duration::from_millis(100), ..WriterOptions::default() },
        timings: RunnerTimings {
            discover_every: Duration::from_millis(200),
            lag_every: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        },
    };
    auditd::start(h.service_nats().await, config).await.expect("auditd starts")
}

/// `GET path` with an optional bearer token; (status, JSON body or the text as a string).
async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = sender.send_request(req.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    let value =
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

fn q(pairs: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    format!("/v1/audit/search?{}", serde_urlencoded_like(&owned))
}

/// URL-encodes query pairs (RFC 3986 unreserved characters kept).
fn serde_urlencoded_like(pairs: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// Waits until the index holds exactly the records the streams hold (and no stream lags).
async fn wait_caught_up(a: &RunningAuditd, h: &Harness) -> BTreeSet<(String, u64, u32)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let expected = stored_positions(h).await;
        let (code, health) = http_get(a.addr, "/healthz", None).await;
        let indexed = health["indexed_records"].as_u64().unwrap_or(0);
        if code == 200
            && health["lag"] == 0
            && indexed == expected.len() as u64
            && !health["streams"].as_array().unwrap().is_empty()
        {
            return expected;
        }
        assert!(Instant::now() < deadline, "auditd did not catch up: {health} (expected {} records)", expected.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of a search, following cursors (auditor scope unless `token` says otherwise).
async fn all_pages(addr: SocketAddr, token: &str, pairs: &[(&str, &str)], limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut p: Vec<(&str, &str)> = pairs.to_vec();
        let limit_text = limit.to_string();
        p.push(("limit", &limit_text));
        if let Some(c) = &cursor {
            p.push(("cursor", c));
        }
        let (code, body) = http_get(addr, &q(&p), Some(token)).await;
        assert_eq!(code, 200, "{body}");
        let records = body["records"].as_array().unwrap();
        assert!(records.len() <= limit);
        out.extend(records.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("cursor never ended");
}

fn ids(records: &[Value]) -> BTreeSet<String> {
    records.iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect()
}

fn expected(pred: impl Fn(u32) -> bool) -> BTreeSet<String> {
    (0..SYNTHETIC).filter(|i| pred(*i)).map(record_id).collect()
}

async fn search_ids(addr: SocketAddr, token: &str, pairs: &[(&str, &str)]) -> BTreeSet<String> {
    let mut pairs = pairs.to_vec();
    pairs.push(("limit", "1000"));
    let (code, body) = http_get(addr, &q(&pairs), Some(token)).await;
    assert_eq!(code, 200, "{pairs:?}: {body}");
    let records = body["records"].as_array().unwrap();
    assert_eq!(body["total"].as_u64().unwrap() as usize, records.len(), "{pairs:?}: one page holds them all");
    ids(records)
}

fn summary_id(records: &[Value]) -> String {
    records.iter().find(|r| r["operation"] == "SuppressedRequests").expect("the summary is indexed")["record_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A harness with real management events and the synthetic records, and auditd caught up.
struct Fixture {
    h: Harness,
    auditd: RunningAuditd,
    tokens: TokenFile,
    key: String,
    create_request: String,
    stored: BTreeSet<(String, u64, u32)>,
    _index: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let h = Harness::start().await;
    let created = h.call("CreateKey", json!({"Description": "audit fixture key"})).await.unwrap();
    let key = created.body["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let create_request = created.request_id.expect("replies carry the request id");
    h.ok("CreateAlias", json!({"AliasName": "alias/ctl", "TargetKeyId": key})).await;
    h.ok("DisableKey", json!({"KeyId": key})).await;
    h.ok("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "team", "TagValue": "payroll"}]})).await;
    write_synthetic(&h).await;
    let index = tempfile::tempdir().unwrap();
    let tokens = tokens();
    let auditd = start_auditd(&h, index.path(), &tokens).await;
    let stored = wait_caught_up(&auditd, &h).await;
    Fixture { h, auditd, tokens, key, create_request, stored, _index: index }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_record_becomes_exactly_one_document_with_its_fields() {
    let f = fixture().await;
    let auditor = token(&f.tokens, "auditor");
    let all = all_pages(f.auditd.addr, auditor, &[], 1000).await;
    let positions: BTreeSet<(String, u64, u32)> = all
        .iter()
        .map(|r| {
            (r["stream"].as_str().unwrap().to_owned(), r["seq"].as_u64().unwrap(), r["index"].as_u64().unwrap() as u32)
        })
        .collect();
    assert_eq!(all.len(), f.stored.len(), "one document per stored record");
    assert_eq!(positions, f.stored, "exactly the stored records, none twice");

    // a synthetic usage record, field by field
    let (code, r) = http_get(f.auditd.addr, &format!("/v1/audit/records/{}", record_id(8)), Some(auditor)).await;
    assert_eq!(code, 200, "{r}");
    let s = synthetic(8);
    assert_eq!(r["stream"], format!("KL_USAGE_V1_{PERIOD}"));
    assert_eq!((r["seq"].as_u64(), r["index"].as_u64()), (Some(2), Some(1)), "record 8 is the 2nd of block 2");
    assert_eq!(r["time_unix_us"].as_i64().unwrap(), (s.time_unix_ms * 1000) as i64);
    assert_eq!(r["time"], "2020-01-10T00:00:08Z");
    assert_eq!(r["operation"], "Encrypt");
    assert_eq!(r["outcome"], "denied");
    assert_eq!(r["error_name"], "AccessDeniedException");
    assert_eq!(r["principal_arn"], s.principal.arn);
    assert_eq!(r["nats_user"], "alice");
    assert_eq!(r["key_arn"], key_arn(ACCOUNT));
    assert_eq!(r["key_id"], KEY_A);
    assert_eq!(r["material_version"], 1);
    assert_eq!(r["encryption_context"], json!({"app": "a2", "tenant.id": "t1"}));
    assert_eq!(r["ciphertext_digest"], hex::encode([8u8; 32]));
    assert_eq!(r["source_client"], "synthetic-client");
    assert_eq!(r["request_id"], uuid::Uuid::from_bytes(request_id(8)).to_string());
    let (_, by_uuid) =
        http_get(f.auditd.addr, &format!("/v1/audit/records/{}", uuid::Uuid::from_bytes(request_id(8))), Some(auditor))
            .await;
    assert_eq!(by_uuid["record_id"], record_id(8));

    // a real management event, found by the request id the API returned
    let (code, ev) = http_get(f.auditd.addr, &format!("/v1/audit/records/{}", f.create_request), Some(auditor)).await;
    assert_eq!(code, 200, "{ev}");
    assert_eq!(ev["operation"], "CreateKey");
    assert_eq!(ev["stream"], "KL_CONTROL_V1");
    assert_eq!(ev["key_id"], f.key);
    assert_eq!(ev["key_arn"], format!("arn:aws:kms:us-east-1:{ACCOUNT}:key/{}", f.key));
    assert_eq!(ev["principal_arn"], format!("arn:aws:iam::{ACCOUNT}:user/dev"));
    assert_eq!(ev["nats_account"], "DEV");
    assert_eq!(ev["event_type"], "AwsApiCall");
    assert_eq!(ev["outcome"], "ok");
    assert_eq!(ev["material_version"], 1);
    assert!(ev["text"].as_str().unwrap().contains("audit fixture key"));
    let ops = search_ids(f.auditd.addr, auditor, &[("key", &f.key), ("operation", "DisableKey")]).await;
    assert_eq!(ops.len(), 1);
    let alias_events = all_pages(f.auditd.addr, auditor, &[("alias", "alias/ctl")], 10).await;
    assert_eq!(alias_events.len(), 1);
    assert_eq!(alias_events[0]["operation"], "CreateAlias");
    assert_eq!(alias_events[0]["key_id"], f.key);

    // a new usage period appearing while auditd runs is discovered and indexed
    let js = keyledger_log::jetstream(f.h.service_nats().await);
    let mut late = synthetic(1000);
    late.time_unix_ms = T0 + 40 * 86_400_000;
    publish_blocks(&js, "202002", &mut Lane::new("late-lane"), vec![(vec![late], vec![])]).await;
    wait_caught_up(&f.auditd, &f.h).await;
    let (code, r) = http_get(f.auditd.addr, &format!("/v1/audit/records/{}", record_id(1000)), Some(auditor)).await;
    assert_eq!(code, 200);
    assert_eq!(r["stream"], "KL_USAGE_V1_202002");
    f.auditd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_search_filter_and_the_cursor_select_exactly_the_known_records() {
    let f = fixture().await;
    let a = f.auditd.addr;
    let t = token(&f.tokens, "auditor");
    // the synthetic records live in January 2020; the window keeps real records out
    let win = [("from", "2020-01-01T00:00:00Z"), ("to", "1580515200")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut v = win.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let everything = all_pages(a, t, &win, 1000).await;
    assert_eq!(everything.len(), SYNTHETIC as usize + 1, "60 records and one summary");
    let summary = summary_id(&everything);
    let plus_summary = |mut s: BTreeSet<String>| {
        s.insert(summary.clone());
        s
    };

    assert_eq!(search_ids(a, t, &[("key", KEY_A)]).await, expected(|i| account_of(i) == ACCOUNT));
    assert_eq!(search_ids(a, t, &[("key", &key_arn(OTHER))]).await, expected(|i| account_of(i) == OTHER));
    assert_eq!(search_ids(a, t, &[("key", "alias/app")]).await, expected(by_alias));
    assert_eq!(search_ids(a, t, &[("alias", "alias/app")]).await, expected(by_alias));
    assert_eq!(
        search_ids(a, t, &[("principal", &format!("arn:aws:iam::{ACCOUNT}:user/bob"))]).await,
        expected(|i| user_of(i) == "bob")
    );
    assert_eq!(search_ids(a, t, &[("principal", "carol")]).await, plus_summary(expected(|i| user_of(i) == "carol")));
    assert_eq!(search_ids(a, t, &[("account", OTHER)]).await, plus_summary(expected(|i| account_of(i) == OTHER)));
    assert_eq!(search_ids(a, t, &with(&[("operation", "Decrypt")])).await, expected(|i| op_of(i) == "Decrypt"));
    assert_eq!(
        search_ids(a, t, &with(&[("operation", "Decrypt"), ("operation", "Encrypt")])).await,
        expected(|i| matches!(op_of(i), "Decrypt" | "Encrypt"))
    );
    assert_eq!(search_ids(a, t, &with(&[("outcome", "denied")])).await, expected(|i| outcome_of(i) == "denied"));
    assert_eq!(
        search_ids(a, t, &with(&[("error", "KMSInvalidStateException")])).await,
        expected(|i| outcome_of(i) == "error")
    );
    // time window [T0+10 s, T0+20 s), as RFC 3339 and as epoch seconds
    let (from, to) = ((T0 / 1000 + 10).to_string(), "2020-01-10T00:00:20Z".to_owned());
    assert_eq!(search_ids(a, t, &[("from", &from), ("to", &to)]).await, expected(|i| (10..20).contains(&i)));
    // encryption context: exact pairs, dotted keys
    assert_eq!(search_ids(a, t, &[("ctx.app", "a1")]).await, expected(|i| i % 3 == 1));
    assert_eq!(search_ids(a, t, &[("ctx.tenant.id", "t1")]).await, expected(|_| true));
    assert!(search_ids(a, t, &[("ctx.app", "A1")]).await.is_empty(), "values match exactly");
    assert_eq!(
        search_ids(a, t, &[("ctx.app", "a1"), ("operation", "ReEncrypt")]).await,
        expected(|i| i % 3 == 1 && op_of(i) == "ReEncrypt")
    );
    // exclusions: alone, and `Decrypt AND NOT denied`
    assert_eq!(search_ids(a, t, &with(&[("outcome!", "ok")])).await, plus_summary(expected(|i| outcome_of(i) != "ok")));
    assert_eq!(
        search_ids(a, t, &with(&[("operation", "Decrypt"), ("outcome!", "denied")])).await,
        expected(|i| op_of(i) == "Decrypt" && outcome_of(i) != "denied")
    );
    assert_eq!(search_ids(a, t, &with(&[("ctx.app!", "a1")])).await, plus_summary(expected(|i| i % 3 != 1)));
    // free text is words, never query syntax
    assert_eq!(search_ids(a, t, &with(&[("q", "carol")])).await, plus_summary(expected(|i| user_of(i) == "carol")));
    assert!(search_ids(a, t, &with(&[("q", "operation:Decrypt AND NOT outcome:denied")])).await.is_empty());
    // requests: every record of one request
    assert_eq!(
        search_ids(a, t, &[("request", &uuid::Uuid::from_bytes(request_id(3)).to_string())]).await,
        expected(|i| i == 3)
    );

    // newest first, and the cursor walks every record exactly once whatever the page size
    let times: Vec<i64> = everything.iter().map(|r| r["time_unix_us"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let order: Vec<String> = everything.iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect();
    for limit in [1, 7, 50] {
        let paged = all_pages(a, t, &win, limit).await;
        let paged: Vec<String> = paged.iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(paged, order, "limit {limit}");
    }
    let (_, page) = http_get(a, &q(&with(&[("limit", "7")])), Some(t)).await;
    assert_eq!(page["total"], SYNTHETIC + 1);
    assert_eq!(page["records"].as_array().unwrap().len(), 7);

    // per-key usage
    let (code, u) = http_get(a, &format!("/v1/keys/{KEY_A}/usage?principals=2"), Some(t)).await;
    assert_eq!(code, 200, "{u}");
    let on_a: Vec<u32> = (0..SYNTHETIC).filter(|i| account_of(*i) == ACCOUNT).collect();
    assert_eq!(u["records"], on_a.len());
    assert_eq!(u["by_operation"]["Decrypt"], on_a.iter().filter(|i| op_of(**i) == "Decrypt").count());
    assert_eq!(u["by_material_version"]["2"], on_a.iter().filter(|i| *i % 2 == 1).count());
    let last_ok = *on_a.iter().rev().find(|i| outcome_of(**i) == "ok").unwrap();
    assert_eq!(u["last_used"]["record_id"], record_id(last_ok));
    assert_eq!(u["recent_principals"].as_array().unwrap().len(), 2);
    assert_eq!(
        u["recent_principals"][0]["principal_arn"],
        format!("arn:aws:iam::{ACCOUNT}:user/{}", user_of(*on_a.last().unwrap()))
    );
    f.auditd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_token_sees_only_its_account_and_the_auditor_sees_all() {
    let f = fixture().await;
    let a = f.auditd.addr;
    let dev = all_pages(a, token(&f.tokens, "dev"), &[], 1000).await;
    let other = all_pages(a, token(&f.tokens, "other"), &[], 1000).await;
    let auditor = all_pages(a, token(&f.tokens, "auditor"), &[], 1000).await;
    assert!(dev.iter().all(|r| r["accounts"].as_array().unwrap().contains(&json!(ACCOUNT))));
    assert!(other.iter().all(|r| r["accounts"].as_array().unwrap().contains(&json!(OTHER))));
    assert_eq!(ids(&other), {
        let mut s = expected(|i| account_of(i) == OTHER);
        s.insert(summary_id(&auditor));
        s
    });
    assert!(ids(&dev).is_superset(&expected(|i| account_of(i) == ACCOUNT)));
    assert!(ids(&dev).is_disjoint(&ids(&other)), "no record belongs to both accounts here");
    assert_eq!(auditor.len(), f.stored.len(), "the auditor sees every record");
    // filters cannot widen a scope
    let (_, body) = http_get(a, &q(&[("account", ACCOUNT)]), Some(token(&f.tokens, "other"))).await;
    assert_eq!(body["total"], 0);
    assert_eq!(body["scope"], format!("account:{OTHER}"));
    let (code, _) = http_get(a, &format!("/v1/audit/records/{}", record_id(1)), Some(token(&f.tokens, "other"))).await;
    assert_eq!(code, 404, "another account's record is not found");
    let (code, _) =
        http_get(a, &format!("/v1/audit/records/{}", f.create_request), Some(token(&f.tokens, "other"))).await;
    assert_eq!(code, 404);
    let (code, _) =
        http_get(a, &format!("/v1/audit/records/{}", f.create_request), Some(token(&f.tokens, "dev"))).await;
    assert_eq!(code, 200);
    let (_, u) = http_get(a, &format!("/v1/keys/{KEY_A}/usage"), Some(token(&f.tokens, "other"))).await;
    assert_eq!(u["records"], 0, "no usage of another account's key leaks");
    f.auditd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_a_400_or_401_with_a_json_reason() {
    let f = fixture().await;
    let a = f.auditd.addr;
    let t = token(&f.tokens, "auditor");
    let cases: &[(&str, &str)] = &[
        ("/v1/audit/search?cursor=not-a-cursor", "cursor"),
        ("/v1/audit/search?limit=0", "limit"),
        ("/v1/audit/search?limit=1001", "limit"),
        ("/v1/audit/search?limit=many", "limit"),
        ("/v1/audit/search?colour=red", "unknown parameter"),
        ("/v1/audit/search?outcome=maybe", "outcome"),
        ("/v1/audit/search?from=last%20tuesday", "from"),
        ("/v1/audit/search?from=20&to=10", "before"),
        ("/v1/audit/search?limit=5&limit=6", "more than once"),
        ("/v1/keys/alias%2Fapp/usage", "key id"),
        ("/v1/keys/x/usage?principals=0", "principals"),
    ];
    for (path, word) in cases {
        let (code, body) = http_get(a, path, Some(t)).await;
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(body["error"], "InvalidParameter", "{path}");
        assert!(body["message"].as_str().unwrap().contains(word), "{path}: {body}");
    }
    let too_many = (0..41).map(|i| format!("operation=Op{i}")).collect::<Vec<_>>().join("&");
    let (code, body) = http_get(a, &format!("/v1/audit/search?{too_many}"), Some(t)).await;
    assert_eq!((code, body["error"].as_str()), (400, Some("InvalidParameter")));
    let (code, body) = http_get(a, &format!("/v1/audit/search?key={}", "k".repeat(3000)), Some(t)).await;
    assert_eq!((code, body["error"].as_str()), (400, Some("InvalidParameter")));
    // a cursor from another position decodes; a tampered one does not
    let (_, page) = http_get(a, "/v1/audit/search?limit=1", Some(t)).await;
    let mut cursor = page["next_cursor"].as_str().unwrap().to_owned();
    cursor.push('x');
    let (code, _) = http_get(a, &format!("/v1/audit/search?cursor={cursor}"), Some(t)).await;
    assert_eq!(code, 400);
    // authentication
    for token in [None, Some("wrong"), Some("")] {
        let (code, body) = http_get(a, "/v1/audit/search", token).await;
        assert_eq!(code, 401, "{token:?}");
        assert_eq!(body["error"], "Unauthorized");
        assert!(
            body["message"].as_str().unwrap().contains("token")
                || body["message"].as_str().unwrap().contains("Authorization")
        );
    }
    let (code, _) = http_get(a, &format!("/v1/keys/{KEY_A}/usage"), None).await;
    assert_eq!(code, 401);
    let (code, body) = http_get(a, "/v1/nothing", Some(t)).await;
    assert_eq!((code, body["error"].as_str()), (404, Some("NotFound")));
    f.auditd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_report_lag_and_a_stopped_writer_turns_health_503() {
    let f = fixture().await;
    let a = f.auditd.addr;
    let (code, health) = http_get(a, "/healthz", None).await;
    assert_eq!(code, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["lag"], 0);
    assert_eq!(health["lag_seconds"], 0.0);
    let streams = health["streams"].as_array().unwrap();
    assert!(streams.iter().any(|s| s["stream"] == "KL_CONTROL_V1" && s["state"] == "following"));
    let (code, text) = http_get(a, "/metrics", None).await;
    assert_eq!(code, 200);
    let text = text.as_str().unwrap().to_owned();
    assert!(text.contains(&format!("keyledger_audit_indexed_records {}", f.stored.len())), "{text}");
    assert!(text.contains("keyledger_audit_stream_lag_messages{stream=\"KL_CONTROL_V1\"} 0"), "{text}");
    assert!(text.contains("keyledger_audit_stream_lag_seconds{stream=\"KL_CONTROL_V1\"} 0.000"), "{text}");
    assert!(
        text.contains(&format!("keyledger_audit_stream_indexed_sequence{{stream=\"KL_USAGE_V1_{PERIOD}\"}} 9")),
        "{text}"
    );
    assert!(text.contains("keyledger_audit_last_commit_timestamp_seconds"));
    // more records while the writer is gone: health says stopped, lag grows
    f.auditd.writer.abort();
    let (code, health) = http_get(a, "/healthz", None).await;
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "stopped");
    let before_create = std::time::Instant::now();
    f.h.ok("CreateKey", json!({})).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, h) = http_get(a, "/healthz", None).await;
            h["lag"].as_u64().unwrap_or(0) >= 1
        })
        .await,
        "the lag shows records not indexed"
    );
    // ... and the lag in seconds is the age of the oldest one, so it keeps growing.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, h) = http_get(a, "/healthz", None).await;
            h["lag_seconds"].as_f64().unwrap_or(0.0) >= 0.5
        })
        .await,
        "the lag in seconds grows while nothing is indexed"
    );
    let (_, h) = http_get(a, "/healthz", None).await;
    let reported = h["lag_seconds"].as_f64().unwrap();
    // Server and test share the machine's clock; allow a little for rounding.
    assert!(reported <= before_create.elapsed().as_secs_f64() + 0.05, "the age is the record's, not older: {h}");
    f.auditd.abort().await;
}

// ---------------------------------------------------------------------------------------------
// kill -9: auditd as a child process (`keyledger audit serve`), killed while it indexes.

struct Serve {
    child: Child,
}

impl Serve {
    fn start(data: &Path, index: &Path, tokens: &Path, port: u16, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(CLI)
            .args(["audit", "serve", "--service-profile"])
            .arg(data.join("service.json"))
            .arg("--index-dir")
            .arg(index)
            .arg("--tokens")
            .arg(tokens)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn keyledger audit serve");
        Self { child }
    }

    fn kill_9(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
}

async fn indexed_now(port: u16) -> Option<u64> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::net::TcpStream::connect(addr).await.ok()?;
    let (_, text) = http_get(addr, "/metrics", None).await;
    metric(text.as_str()?, "keyledger_audit_indexed_records ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_indexing_then_restart_indexes_every_record_exactly_once() {
    const BLOCKS: u32 = 100;
    const PER_BLOCK: u32 = 1000;
    let h = Harness::start().await;
    h.create_key().await;
    let js = keyledger_log::jetstream(h.service_nats().await);
    let mut lane = Lane::new("bulk-lane");
    for b in 0..BLOCKS {
        let records: Vec<UsageRecordV1> = (0..PER_BLOCK).map(|i| synthetic(b * PER_BLOCK + i)).collect();
        publish_blocks(&js, PERIOD, &mut lane, vec![(records, vec![])]).await;
    }
    let stored = stored_positions(&h).await;
    let total = stored.len() as u64;
    assert!(total > u64::from(BLOCKS * PER_BLOCK));

    let data = h.env().data_dir.clone();
    let work = tempfile::tempdir().unwrap();
    let (index, tokens_path, log) =
        (work.path().join("index"), work.path().join("tokens.json"), work.path().join("serve.log"));
    let tokens = tokens();
    tokens.write_to(&tokens_path).unwrap();
    let port = keyledger_nats_server::free_port().unwrap();

    let first = Serve::start(&data, &index, &tokens_path, port, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        if let Some(n) = indexed_now(port).await {
            if n > 0 {
                break n;
            }
        }
        assert!(
            Instant::now() < deadline,
            "auditd made no progress: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    first.kill_9();
    assert!(at_kill < total, "killed mid-indexing ({at_kill} of {total} committed)");

    let started = Instant::now();
    let second = Serve::start(&data, &index, &tokens_path, port, &log);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if indexed_now(port).await == Some(total) {
            break;
        }
        assert!(Instant::now() < deadline, "auditd did not finish: {:?}", indexed_now(port).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed_secs = started.elapsed().as_secs_f64();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let auditor = token(&tokens, "auditor");
    let (_, page) = http_get(addr, "/v1/audit/search?limit=1", Some(auditor)).await;
    assert_eq!(page["total"].as_u64(), Some(total), "exactly the stored records: none lost, none twice");
    // none twice, checked on positions of the bulk stream
    let bulk = all_pages(addr, auditor, &[("principal", "carol")], 1000).await;
    let positions: BTreeSet<(u64, u64)> =
        bulk.iter().map(|r| (r["seq"].as_u64().unwrap(), r["index"].as_u64().unwrap())).collect();
    assert_eq!(positions.len(), bulk.len());
    assert_eq!(bulk.len() as u32, (0..BLOCKS * PER_BLOCK).filter(|i| account_of(*i) == OTHER).count() as u32);
    let (_, health) = http_get(addr, "/healthz", None).await;
    assert_eq!(health["status"], "ok", "{health}");
    eprintln!(
        "kill -9 after {at_kill} committed records; resumed and indexed {} more in {resumed_secs:.2} s ({:.0} records/s incl. start)",
        total - at_kill,
        (total - at_kill) as f64 / resumed_secs
    );
    drop(second);
}

// ---------------------------------------------------------------------------------------------
// `keyledger dev` serves the audit API; `keyledger audit …` talks to it with the token file.

#[test]
fn keyledger_dev_serves_the_audit_api_and_the_cli_searches_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kl");
    let port = keyledger_nats_server::free_port().unwrap();
    let log_path = dir.path().join("dev.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(CLI)
        .args(["dev", "--data-dir"])
        .arg(&data)
        .args(["--nats-port", "0", "--gateway-port", "0"])
        .env("KEYLEDGER_AUDIT_ADDR", format!("127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !read_log().contains("Keyledger dev is running") {
        assert!(Instant::now() < deadline, "dev did not start:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(read_log().contains(&format!("audit API     http://127.0.0.1:{port}")), "{}", read_log());
    let tokens = data.join("audit-tokens.json");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&tokens).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let file = TokenFile::read_from(&tokens).unwrap();
    assert!(file.token("auditor").is_some() && file.token("dev").is_some());
    let cli = |args: &[&str]| {
        let out = Command::new(CLI)
            .args(args)
            .env("KEYLEDGER_PROFILE", data.join("client.json"))
            .env("KEYLEDGER_DATA_DIR", &data)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&["kms", "create-key", "--description", "cli audit"]);
    assert_eq!(code, 0, "{err}");
    let key = serde_json::from_str::<Value>(&out).unwrap()["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let (code, out, err) = cli(&["audit", "search", "--key", &key, "--operation", "CreateKey"]);
        assert_eq!(code, 0, "{err}");
        let body: Value = serde_json::from_str(&out).unwrap();
        if body["total"] == 1 {
            break body;
        }
        assert!(Instant::now() < deadline, "CreateKey never became searchable: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(found["records"][0]["key_id"], key);
    let (code, out, _) = cli(&["audit", "search", "--as", "dev", "--key", &key, "--outcome", "!ok"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["total"], 0);
    let (code, out, err) = cli(&["audit", "usage", &key]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["by_operation"]["CreateKey"], 1);
    let (code, _, err) = cli(&["audit", "search", "--limit", "0"]);
    assert_eq!(code, 254);
    assert!(err.contains("InvalidParameter"), "{err}");

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dev did not stop:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_usage_block_maps_to_its_records_in_order() {
    let mut lane = Lane::new("unit-lane");
    let bytes = lane.block((0..3).map(synthetic).collect(), vec![]);
    let records = records_from_message(&format!("KL_USAGE_V1_{PERIOD}"), 5, &bytes, &Realm::default()).unwrap();
    let got: Vec<(u32, String)> = records.iter().map(|r| (r.index, r.record_id.clone())).collect();
    assert_eq!(got, vec![(0, record_id(0)), (1, record_id(1)), (2, record_id(2))]);
}

/// Receipts (issue 4): every reply names its audit record's log position; auditd proves it
/// against the newest signed checkpoint; `keyledger verify-receipt` checks the proof offline
/// with only the log's public key, and refuses a proof that was altered, one for another
/// position, and one under another log's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_names_its_record_and_its_proof_holds_offline_with_only_the_public_key() {
    let h = Harness::start().await;
    let key = h.create_key().await;
    let created = h.client.call("DescribeKey", &json!({"KeyId": key})).await.unwrap();
    let enc = h.client.call("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"receipt")})).await.unwrap();
    let change = h.client.call("UpdateKeyDescription", &json!({"KeyId": key, "Description": "r"})).await.unwrap();
    let (stream, seq) = enc.audit_position.clone().expect("a crypto reply names its record's position");
    assert!(stream.starts_with(names::USAGE_STREAM_PREFIX), "{stream}");
    let (ctl, ctl_seq) = change.audit_position.clone().expect("a management reply names its event");
    assert_eq!((ctl.as_str(), Some(ctl_seq)), (names::CONTROL_STREAM, change.log_seq));
    assert!(created.audit_position.is_some(), "reads are recorded too");
    // A refused request is recorded, and its reply says where.
    let refused = h
        .client
        .nats()
        .request(names::api_subject("DescribeKey"), serde_json::to_vec(&json!({"KeyId": "alias/none"})).unwrap().into())
        .await
        .unwrap();
    let header = |n: &str| refused.headers.as_ref().and_then(|h| h.get(n)).map(|v| v.as_str().to_owned());
    assert_eq!(header("Nats-Service-Error").as_deref(), Some("NotFoundException"));
    assert!(header(keyledger::protocol::AUDIT_SEQ_HEADER).is_some(), "an error reply names its record's position too");

    let dir = tempfile::tempdir().unwrap();
    let file = tokens();
    let a = start_auditd(&h, &dir.path().join("index"), &file).await;
    wait_caught_up(&a, &h).await;
    let dev = token(&file, "dev");
    let vkey = keyledger::checkpointer::LogKey::load(&h.env().data_dir.join("checkpoint.key")).unwrap().verifier();

    for (reply, stream, seq) in [(&enc, &stream, seq), (&change, &ctl, ctl_seq)] {
        let id = reply.request_id.clone().unwrap();
        let (code, proof) = http_get(a.addr, &format!("/v1/audit/proof/{id}?wait=10"), Some(dev)).await;
        assert_eq!(code, 200, "{proof}");
        assert_eq!((proof["stream"].as_str().unwrap(), proof["seq"].as_u64().unwrap()), (stream.as_str(), seq));
        assert_eq!(proof["leaf_index"], seq - 1);
        // The leaf is the BLAKE3 hash of exactly the stored message.
        let js = keyledger_log::jetstream(h.service_nats().await);
        let stored = js.get_stream(stream).await.unwrap().direct_get(seq).await.unwrap();
        assert_eq!(proof["event_hash"], hex::encode(keyledger_events::record_hash(&stored.payload)));

        let path = dir.path().join("proof.json");
        std::fs::write(&path, proof.to_string()).unwrap();
        let run = |extra: Vec<String>| {
            let path = path.clone();
            let vkey = vkey.to_string();
            async move {
                let out = tokio::process::Command::new(CLI)
                    .args(["verify-receipt", "--log-key", &vkey])
                    .args(extra)
                    .arg(&path)
                    .output()
                    .await
                    .unwrap();
                (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
            }
        };
        let (code, out) = run(vec!["--stream".into(), stream.clone(), "--seq".into(), seq.to_string()]).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with(&format!("PROVEN: the message at {stream}#{seq}")), "{out}");
        // Another position than the reply named: refused.
        let (code, out) = run(vec!["--seq".into(), (seq + 1).to_string()]).await;
        assert_eq!(code, 1, "{out}");
        // Another message's hash: refused.
        let (code, out) = run(vec!["--event-hash".into(), "00".repeat(32)]).await;
        assert_eq!((code, out.starts_with("NOT PROVEN")), (1, true), "{out}");
        // Another log's key: refused.
        let other = keyledger::checkpointer::LogKey::generate(&vkey_name(&vkey)).unwrap().verifier();
        let out = tokio::process::Command::new(CLI)
            .args(["verify-receipt", "--log-key", &other.to_string()])
            .arg(&path)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    }
    // An altered path hash: refused (matrix row 27 end to end; the edge cases are unit tests
    // of keyledger-transparency).
    let id = enc.request_id.clone().unwrap();
    let (_, proof) = http_get(a.addr, &format!("/v1/audit/proof/{id}?wait=10"), Some(dev)).await;
    let text = proof["proof"].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() > 3 && !lines[2].is_empty() {
        let mut altered: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        let mut raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &altered[2]).unwrap();
        raw[0] ^= 1;
        altered[2] = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
        let mut bad = proof.clone();
        bad["proof"] = Value::String(altered.join("\n") + "\n");
        let path = dir.path().join("bad.json");
        std::fs::write(&path, bad.to_string()).unwrap();
        let out = tokio::process::Command::new(CLI)
            .args(["verify-receipt", "--log-key", &vkey.to_string()])
            .arg(&path)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
    }
    // Another account's token does not learn the record exists.
    let (code, _) = http_get(a.addr, &format!("/v1/audit/proof/{id}?wait=0"), Some(token(&file, "other"))).await;
    assert_eq!(code, 404);
    let (code, _) = http_get(a.addr, &format!("/v1/audit/proof/{id}?wait=99"), Some(dev)).await;
    assert_eq!(code, 400);
    a.stop().await;
}

fn vkey_name(v: &keyledger_transparency::NoteVerifier) -> String {
    use keyledger_transparency::note::Verifier as _;
    v.name().to_owned()
}
