//! `keyledger export` and `keyledger verify` on a log written by the real roles: the unaltered
//! log has no finding (and says its tail is unanchored, exit 2), and every alteration of the
//! test matrix (audit-integrity.md §3, rows 1–5, 7, 12, 13) is caught with its exact finding
//! code at its exact stream sequence and chain position (exit 1).

use std::path::{Path, PathBuf};

use keyledger::export::{ExportReader, ExportWriter, ExportedMessage, Frame};
use keyledger_events::{names, AggregateKind, Draft};
use keyledger_tests::*;
use serde_json::{json, Value};

const CLI: &str = env!("CARGO_BIN_EXE_kl-cli");

/// Runs the CLI; returns (exit code, stdout, stderr).
async fn cli(args: &[&str], path_args: &[&Path]) -> (i32, String, String) {
    let out = tokio::process::Command::new(CLI)
        .args(args)
        .args(path_args)
        .env_remove("KEYLEDGER_DATA_DIR")
        .env_remove("KEYLEDGER_SERVICE_PROFILE")
        .output()
        .await
        .expect("the CLI runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

fn data_dir(h: &Harness) -> PathBuf {
    h.env().data_dir.clone()
}

/// Exports the running log with the real binary into `to`.
async fn export(h: &Harness, to: &Path) -> String {
    let (code, out, err) = cli(&["export", "--force", "--data-dir"], &[&data_dir(h), Path::new("--to"), to]).await;
    assert_eq!(code, 0, "export succeeds: {out}{err}");
    out
}

/// `verify --file --json` with the real binary: (exit code, report).
async fn verify_file(path: &Path) -> (i32, Value) {
    let (code, out, err) = cli(&["verify", "--json", "--max-findings", "1000", "--file"], &[path]).await;
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("JSON report ({e}): {out}{err}"));
    (code, report)
}

fn read(path: &Path) -> Vec<Frame> {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    ExportReader::new(file).unwrap().map(Result::unwrap).collect()
}

fn write(path: &Path, frames: &[Frame]) {
    let mut w = ExportWriter::new(std::fs::File::create(path).unwrap(), 0, "verify.rs").unwrap();
    for f in frames {
        w.write(f).unwrap();
    }
    w.finish().unwrap();
}

/// The mix of operations the log is made of: keys, an alias, crypto through cryptod (usage
/// blocks), lifecycle and tags (control events).
async fn operations(h: &Harness, round: u32) -> String {
    let key = h.create_key().await;
    let other = h.create_key().await;
    h.ok("CreateAlias", json!({"AliasName": format!("alias/verify-{round}"), "TargetKeyId": key})).await;
    h.ok("TagResource", json!({"KeyId": key, "Tags": [{"TagKey": "team", "TagValue": "payments"}]})).await;
    h.ok("UpdateKeyDescription", json!({"KeyId": key, "Description": format!("round {round}")})).await;
    for i in 0..3 {
        let enc = h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(format!("secret {i}").as_bytes())})).await;
        h.ok("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})).await;
    }
    h.ok("GenerateDataKey", json!({"KeyId": format!("alias/verify-{round}"), "KeySpec": "AES_256"})).await;
    h.ok("DisableKey", json!({"KeyId": other})).await;
    h.ok("EnableKey", json!({"KeyId": other})).await;
    h.ok("DisableKey", json!({"KeyId": other})).await;
    key
}

/// Stream sequences of the findings with `code`.
fn at(report: &Value, code: &str) -> Vec<(String, u64)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code)
        .map(|f| (f["stream"].as_str().unwrap().to_owned(), f["seq"].as_u64().unwrap()))
        .collect()
}

/// Every finding as (code, stream sequence), in report order.
fn findings(report: &Value) -> Vec<(String, u64)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["code"].as_str().unwrap().to_owned(), f["seq"].as_u64().unwrap()))
        .collect()
}

fn assert_clean(code: i32, report: &Value) {
    assert_eq!(report["findings_total"], 0, "no integrity finding: {report:#}");
    assert_eq!(report["verdict"], "unanchored");
    assert_eq!(code, 2, "no checkpoint yet: incomplete, never OK");
}

fn message(frame: &Frame) -> Option<&ExportedMessage> {
    match frame {
        Frame::Message(m) => Some(m),
        Frame::Stream(_) => None,
    }
}

/// Index in `frames` of the control record at `position` of `key`'s chain.
fn chain_record(frames: &[Frame], key: &str, position: u64) -> usize {
    frames
        .iter()
        .position(|f| {
            message(f).is_some_and(|m| {
                m.stream == names::CONTROL_STREAM && {
                    let r = keyledger_events::decode(&m.payload).unwrap().record;
                    r.aggregate_id == key && r.aggregate_seq == position
                }
            })
        })
        .expect("the chain record exists")
}

/// Appends `m` to the control stream of the export (next stream sequence, range updated).
fn append_control(frames: &mut Vec<Frame>, mut m: ExportedMessage) -> u64 {
    let last = frames
        .iter()
        .rposition(|f| message(f).is_some_and(|m| m.stream == names::CONTROL_STREAM))
        .expect("control messages");
    let seq = message(&frames[last]).unwrap().seq + 1;
    m.seq = seq;
    frames.insert(last + 1, Frame::Message(m));
    for f in frames.iter_mut() {
        if let Frame::Stream(s) = f {
            if s.stream == names::CONTROL_STREAM {
                s.last_seq = seq;
                s.messages += 1;
            }
        }
    }
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unaltered_log_has_no_finding_but_an_unanchored_tail_before_and_after_more_operations() {
    let h = Harness::start().await;
    operations(&h, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.klexport");
    let summary = export(&h, &first).await;
    assert!(summary.contains("KL_CONTROL_V1: "), "{summary}");
    assert!(summary.contains("KL_USAGE_V1_"), "usage streams are exported: {summary}");

    let (code, report) = verify_file(&first).await;
    assert_clean(code, &report);
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(streams[0]["stream"], names::CONTROL_STREAM);
    assert!(streams.iter().any(|s| s["stream"].as_str().unwrap().starts_with(names::USAGE_STREAM_PREFIX)));
    for s in streams {
        assert_eq!(s["missing"], 0);
        assert_eq!(s["requested"][2], s["messages"], "every message the server reported is in the file");
    }
    assert!(report["checked"]["links"].as_u64().unwrap() >= 10);

    // The text report says it plainly.
    let (code, text, _) = cli(&["verify", "--file"], &[&first]).await;
    assert_eq!(code, 2);
    assert!(text.starts_with("INCOMPLETE: no integrity finding"), "{text}");
    assert!(text.contains("unanchored (no signed checkpoint yet)"), "{text}");

    // More operations, a second export: still clean, and the first export is its prefix.
    operations(&h, 2).await;
    let second = dir.path().join("second.klexport");
    export(&h, &second).await;
    let (code, report) = verify_file(&second).await;
    assert_clean(code, &report);
    let old: Vec<ExportedMessage> = read(&first).iter().filter_map(message).cloned().collect();
    let new: Vec<ExportedMessage> = read(&second).iter().filter_map(message).cloned().collect();
    assert!(new.len() > old.len());
    for m in &old {
        assert!(new.contains(m), "{}#{} is unchanged in the later export", m.stream, m.seq);
    }

    // Live, against the running streams.
    let (code, out, err) = cli(&["verify", "--json", "--data-dir"], &[&data_dir(&h)]).await;
    let live: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_clean(code, &live);
    assert!(live["checked"]["messages"].as_u64().unwrap() >= new.len() as u64);

    // Usage errors and unreadable files are exit 3, not a verdict.
    let (code, _, _) = cli(&["verify", "--file"], &[&dir.path().join("missing")]).await;
    assert_eq!(code, 3);
    let (code, _, _) = cli(&["verify", "--no-such-flag"], &[]).await;
    assert_eq!(code, 3);
    let mut truncated = std::fs::read(&first).unwrap();
    truncated.truncate(truncated.len() - 1);
    std::fs::write(dir.path().join("truncated"), &truncated).unwrap();
    let (code, _, err) = cli(&["verify", "--file"], &[&dir.path().join("truncated")]).await;
    assert_eq!(code, 3);
    assert!(err.contains("truncated"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alteration_of_the_test_matrix_is_caught_where_it_is() {
    let h = Harness::start().await;
    let key = operations(&h, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.klexport");
    export(&h, &original).await;
    let frames = read(&original);
    let (code, report) = verify_file(&original).await;
    assert_clean(code, &report);

    // The key's chain: CreateKey (0), CreateAlias has its own chain, TagResource (1),
    // UpdateKeyDescription (2), … The target is position 1, in the middle of the chain.
    let target = chain_record(&frames, &key, 1);
    let successor = chain_record(&frames, &key, 2);
    let t = message(&frames[target]).unwrap().clone();
    let s = message(&frames[successor]).unwrap().clone();
    let ctl = names::CONTROL_STREAM.to_owned();
    let altered = dir.path().join("altered.klexport");
    let check = |frames: Vec<Frame>| {
        let altered = altered.clone();
        async move {
            write(&altered, &frames);
            let (code, report) = verify_file(&altered).await;
            assert_eq!(code, 1, "an integrity violation: {report:#}");
            report
        }
    };
    let with_payload = |index: usize, payload: Vec<u8>| {
        let mut f = frames.clone();
        if let Frame::Message(m) = &mut f[index] {
            m.payload = payload;
        }
        f
    };

    // Row 1: one bit of the header (the event id) flipped.
    let mut p = t.payload.clone();
    p[5] ^= 0x01;
    let report = check(with_payload(target, p)).await;
    assert_eq!(findings(&report), [("HASH_MISMATCH".to_owned(), t.seq), ("CHAIN_BREAK".to_owned(), s.seq)]);
    let f = &report["findings"][1];
    assert_eq!(f["chain"]["id"], key.as_str());
    assert_eq!(f["chain"]["position"], 2);
    assert_eq!(f["actual"], hex::encode(keyledger_events::decode(&t.payload).unwrap().hash));
    assert_eq!(report["findings"][0]["chain"]["position"], 1);

    // Row 2: one bit of the body flipped (one that still decodes: only the hash tells).
    let body_len = keyledger_events::decode(&t.payload).unwrap().record.body.len();
    let flipped = (0..body_len * 8)
        .map(|bit| {
            let mut p = t.payload.clone();
            let i = t.payload.len() - body_len + bit / 8;
            p[i] ^= 1 << (bit % 8);
            p
        })
        .find(|p| keyledger_events::decode(p).is_ok())
        .expect("a body bit whose flip still decodes");
    let report = check(with_payload(target, flipped)).await;
    assert_eq!(findings(&report), [("HASH_MISMATCH".to_owned(), t.seq), ("CHAIN_BREAK".to_owned(), s.seq)]);
    assert_eq!(report["findings"][0]["expected"], hex::encode(keyledger_events::decode(&t.payload).unwrap().hash));

    // Row 3: trailing bytes appended to a record.
    let mut p = t.payload.clone();
    p.extend_from_slice(b"\0\x01");
    let report = check(with_payload(target, p)).await;
    assert_eq!(findings(&report), [("NONCANONICAL".to_owned(), t.seq)]);

    // Row 4: the same value re-encoded with a non-minimal varint (record_version 1 as 0x81 0x00).
    assert_eq!(t.payload[4], 0x01);
    let mut p = t.payload[..4].to_vec();
    p.extend_from_slice(&[0x81, 0x00]);
    p.extend_from_slice(&t.payload[5..]);
    let report = check(with_payload(target, p)).await;
    assert_eq!(findings(&report), [("NONCANONICAL".to_owned(), t.seq)]);
    assert_eq!(report["findings"][0]["chain"]["position"], 1, "located in its chain");

    // Row 5: a record in the middle deleted.
    let mut f = frames.clone();
    f.remove(target);
    let report = check(f).await;
    assert_eq!(at(&report, "GAP_IN_STREAM"), [(ctl.clone(), t.seq + 1)]);
    let gap = report["findings"].as_array().unwrap().iter().find(|f| f["code"] == "GAP_IN_STREAM").unwrap();
    assert_eq!(gap["expected"], t.seq.to_string(), "the missing sequence is named");
    assert_eq!(at(&report, "GAP_IN_CHAIN"), [(ctl.clone(), s.seq)]);
    assert_eq!(report["findings_total"], 2);

    // Row 7: two records of one chain swapped.
    let mut f = frames.clone();
    if let (Frame::Message(a), Frame::Message(b)) = (f[target].clone(), f[successor].clone()) {
        for (i, m) in [(target, b), (successor, a)] {
            if let Frame::Message(slot) = &mut f[i] {
                let seq = slot.seq;
                *slot = ExportedMessage { seq, ..m };
            }
        }
    }
    let report = check(f).await;
    assert_eq!(findings(&report), [("CHAIN_BREAK".to_owned(), s.seq)]);
    assert_eq!(report["findings"][0]["chain"]["position"], 1);

    // Row 12: two records at the same chain position (a well-formed second event at position 1).
    let event = keyledger_events::decode(&t.payload).unwrap();
    let r = &event.record;
    let fork_id = *uuid::Uuid::now_v7().as_bytes();
    let draft = Draft {
        event_id: fork_id,
        account: r.account.clone(),
        aggregate_kind: AggregateKind::Key,
        aggregate_id: r.aggregate_id.clone(),
        aggregate_seq: r.aggregate_seq,
        time_unix_ms: r.time_unix_ms + 1,
        principal: r.principal.clone(),
        request_id: r.request_id,
        prev_hash: r.prev_hash,
    };
    let (bytes, fork_hash) = keyledger_events::encode(&draft, &event.body).unwrap();
    let mut f = frames.clone();
    let fork_seq =
        append_control(&mut f, ExportedMessage { msg_id: Some(hex::encode(fork_id)), payload: bytes, ..t.clone() });
    let report = check(f).await;
    assert_eq!(findings(&report), [("FORK_IN_CHAIN".to_owned(), fork_seq)]);
    assert_eq!(report["findings"][0]["expected"], hex::encode(event.hash));
    assert_eq!(report["findings"][0]["actual"], hex::encode(fork_hash));

    // Row 13: an old record copied verbatim and appended.
    let mut f = frames.clone();
    let replay_seq = append_control(&mut f, t.clone());
    let report = check(f).await;
    assert_eq!(findings(&report), [("REPLAYED_RECORD".to_owned(), replay_seq)]);

    // Row 1 on a usage block (the head of its lane): its Nats-Msg-Id is its hash.
    let block = frames
        .iter()
        .rposition(|f| message(f).is_some_and(|m| m.stream.starts_with(names::USAGE_STREAM_PREFIX)))
        .expect("a usage block");
    let b = message(&frames[block]).unwrap().clone();
    let mut p = b.payload.clone();
    p[5] ^= 0x80;
    let report = check(with_payload(block, p)).await;
    assert_eq!(findings(&report), [("HASH_MISMATCH".to_owned(), b.seq)]);
    assert_eq!(report["findings"][0]["chain"]["kind"], "lane");
    assert_eq!(report["findings"][0]["expected"], b.msg_id.clone().unwrap());

    // The text report of a violation names the code, place and hashes, never payload bytes.
    let (code, text, _) = cli(&["verify", "--file"], &[&altered]).await;
    assert_eq!(code, 1);
    assert!(text.starts_with("INTEGRITY VIOLATION: 1 findings"), "{text}");
    assert!(text.contains(&format!("L1 HASH_MISMATCH {}#{}", b.stream, b.seq)), "{text}");
}

/// A real JetStream gap (a message deleted from a stream that allows it, as a damaged or
/// hostile store would leave it) is exported as a gap, never renumbered, and located live and
/// offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_missing_from_jetstream_is_kept_as_a_gap_and_located() {
    let h = Harness::start().await;
    operations(&h, 1).await;
    let js = keyledger_log::jetstream(h.service_nats().await);
    let period = "209901";
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: names::usage_stream(period),
            subjects: vec![names::usage_stream_subjects(period)],
            ..Default::default()
        })
        .await
        .unwrap();
    let lane = "test-lane";
    let mut prev = keyledger_events::genesis_hash(AggregateKind::UsageLane, "", lane);
    for position in 0..4u64 {
        let draft = Draft {
            event_id: *uuid::Uuid::now_v7().as_bytes(),
            account: String::new(),
            aggregate_kind: AggregateKind::UsageLane,
            aggregate_id: lane.to_owned(),
            aggregate_seq: position,
            time_unix_ms: 4_070_908_800_000 + position,
            principal: keyledger_events::PrincipalV1::service(),
            request_id: [0; 16],
            prev_hash: prev,
        };
        let body = keyledger_events::Body::UsageBlock(keyledger_events::UsageBlockV1 {
            records: Vec::new(),
            suppressed: Vec::new(),
        });
        let (bytes, hash) = keyledger_events::encode(&draft, &body).unwrap();
        prev = hash;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", hex::encode(hash).as_str());
        js.publish_with_headers(names::usage_subject(period, lane), headers, bytes.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Before the deletion the extra stream verifies like the others.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gap.klexport");
    export(&h, &file).await;
    let (code, report) = verify_file(&file).await;
    assert_clean(code, &report);

    assert!(stream.delete_message(2).await.unwrap(), "sequence 2 (chain position 1) deleted");
    let summary = export(&h, &file).await;
    assert!(summary.contains("KL_USAGE_V1_209901: 3 messages (sequences 1..=4)"), "{summary}");
    let frames = read(&file);
    let seqs: Vec<u64> =
        frames.iter().filter_map(message).filter(|m| m.stream.ends_with(period)).map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 3, 4], "stream sequences are never renumbered");
    let range = frames
        .iter()
        .find_map(|f| match f {
            Frame::Stream(s) if s.stream.ends_with(period) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((range.first_seq, range.last_seq, range.messages), (1, 4, 3));

    let stream_name = names::usage_stream(period);
    let (code, report) = verify_file(&file).await;
    assert_eq!(code, 1);
    assert_eq!(at(&report, "GAP_IN_STREAM"), [(stream_name.clone(), 3)]);
    assert_eq!(at(&report, "GAP_IN_CHAIN"), [(stream_name.clone(), 3)]);
    assert_eq!(report["findings_total"], 2);
    let gap = report["findings"].as_array().unwrap().iter().find(|f| f["code"] == "GAP_IN_CHAIN").unwrap();
    assert_eq!(gap["chain"]["id"], lane);
    assert_eq!(gap["expected"], "position 1");
    let s = report["streams"].as_array().unwrap().iter().find(|s| s["stream"] == stream_name.as_str()).unwrap();
    assert_eq!(s["missing"], 1);

    // The same, live.
    let (code, out, _) = cli(&["verify", "--json", "--data-dir"], &[&data_dir(&h)]).await;
    let live: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1);
    assert_eq!(at(&live, "GAP_IN_STREAM"), [(stream_name.clone(), 3)]);
    assert_eq!(at(&live, "GAP_IN_CHAIN"), [(stream_name, 3)]);
}
