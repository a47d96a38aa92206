//! `keyledger export` and `keyledger verify` on a log written by the real roles: the unaltered
//! log has no finding (and says its tail is unanchored, exit 2), and every alteration of the
//! test matrix (audit-integrity.md §3, rows 1–5, 7, 12, 13) is caught with its exact finding
//! code at its exact stream sequence and chain position (exit 1).
//!
//! Also `keyledger witness` (the C2SP tlog-witness that will anchor the log's checkpoints), as a
//! process over real HTTP: it cosigns a first checkpoint and a consistent growth, keeps its
//! state across a kill, and refuses forks, bad proofs, stale old sizes, unknown origins and
//! foreign signatures with tlog-witness's statuses, without touching its state.

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
    assert_eq!(streams[0]["stream"], names::CHECKPOINT_STREAM, "checkpoints are read first");
    assert_eq!(streams[1]["stream"], names::CONTROL_STREAM);
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
    assert!(text.contains("without the log key (--log-key) no checkpoint anchors them"), "{text}");

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

    // Live, against the running streams, without the log key: no finding, never "verified".
    let (code, out, err) = cli(&["verify", "--json", "--log-key", "@/dev/null", "--data-dir"], &[&data_dir(&h)]).await;
    assert_eq!(code, 3, "an empty log key is a usage error: {out}{err}");
    let (code, out, err) = cli(&["verify", "--json", "--service-profile"], &[&data_dir(&h).join("service.json")]).await;
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
    let draft = Draft { event_id: fork_id, time_unix_ms: r.time_unix_ms + 1, ..event.draft() };
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

/// `keyledger witness serve` as a child process.
struct WitnessProcess {
    child: tokio::process::Child,
    /// The submission URL it printed.
    url: String,
    /// The verifier key it printed.
    vkey: String,
    _stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl WitnessProcess {
    /// Starts the witness on `dir` (loopback, any free port) and reads its URL and key.
    async fn start(dir: &Path, log_keys: &[&str], name: Option<&str>) -> WitnessProcess {
        use tokio::io::AsyncBufReadExt as _;
        let mut cmd = tokio::process::Command::new(CLI);
        cmd.args(["witness", "serve", "--listen", "127.0.0.1:0", "--dir"]).arg(dir);
        for k in log_keys {
            cmd.args(["--log-key", k]);
        }
        if let Some(n) = name {
            cmd.args(["--name", n]);
        }
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(witness_log(dir)).unwrap();
        let mut child = cmd
            .env("KEYLEDGER_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut url, mut vkey) = (None, None);
        while url.is_none() || vkey.is_none() {
            let line = tokio::time::timeout(std::time::Duration::from_secs(60), stdout.next_line())
                .await
                .expect("the witness prints its URL and key within 60 s")
                .unwrap()
                .unwrap_or_else(|| {
                    panic!("the witness exited: {}", std::fs::read_to_string(witness_log(dir)).unwrap())
                });
            if let Some(u) = line.strip_prefix("witness url: ") {
                url = Some(u.to_owned());
            } else if let Some(k) = line.strip_prefix("witness key: ") {
                vkey = Some(k.to_owned());
            }
        }
        WitnessProcess { child, url: url.unwrap(), vkey: vkey.unwrap(), _stdout: stdout }
    }

    /// SIGKILL: no shutdown path runs, as in a crash.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Where the witness's stderr goes (beside its directory).
fn witness_log(dir: &Path) -> PathBuf {
    dir.with_extension("log")
}

/// A plain HTTP/1.1 POST: (status, content type, body).
async fn post(url: &str, body: String) -> (u16, String, String) {
    use http_body_util::BodyExt as _;
    let uri: hyper::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().to_string();
    let stream = tokio::net::TcpStream::connect(authority.as_str()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let driver = tokio::spawn(connection);
    let request = hyper::Request::post(uri.path())
        .header(hyper::header::HOST, authority)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get(hyper::header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    (status, content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// The files in the witness's evidence folder.
fn evidence_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(keyledger::witness::EVIDENCE_DIR))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_cosigns_consistent_checkpoints_and_refuses_the_rest_across_a_restart() {
    use keyledger::witness::{add_checkpoint, EvidenceRecord, WitnessClientError, STATE_FILE};
    use keyledger_transparency::{
        AddCheckpointRequest, Checkpoint, MerkleTree, NoteSigner, SignedCheckpoint, WitnessState, WitnessVerifier,
    };

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("witness");
    let seed = [42u8; 32];
    let log_key = NoteSigner::from_seed("test.log/abc", &seed).unwrap();
    let log_vkey = log_key.verifier().to_string();
    let origin = "test.log/abc/KL_CONTROL_V1";
    let sign = |tree: &MerkleTree, origin: &str, seed: &[u8; 32]| {
        let signer = NoteSigner::from_seed(origin, seed).unwrap();
        SignedCheckpoint::sign(Checkpoint::new(origin, tree.size(), tree.root()), &signer).unwrap()
    };
    let request = |old: u64, proof: Vec<[u8; 32]>, signed: &SignedCheckpoint| AddCheckpointRequest {
        old_size: old,
        proof,
        checkpoint: signed.to_text(),
    };
    let recorded_size = |dir: &Path| {
        let state = WitnessState::from_json(&std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()).unwrap();
        state.head(origin).map(|h| h.size)
    };
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut tree = MerkleTree::new();
    for i in 0..5u8 {
        tree.append(&[i; 32]);
    }

    let w = WitnessProcess::start(&dir, &[&log_vkey], Some("witness.test/w1")).await;
    let (code, key_out, err) = cli(&["witness", "key", "--dir"], &[&dir]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(key_out.trim_end(), w.vkey, "`witness key` prints the key `serve` printed");
    let witness = WitnessVerifier::parse(&w.vkey).unwrap();

    // The first checkpoint of the origin (old 0), then a consistent growth 5 → 8.
    let first = sign(&tree, origin, &seed);
    let before = now();
    let sigs = add_checkpoint(&w.url, &request(0, vec![], &first)).await.unwrap();
    assert_eq!(sigs.len(), 1);
    let t = witness.verify_cosignature(first.body(), &sigs[0]).expect("the cosignature verifies with the vkey");
    assert!((before..=now()).contains(&t), "cosigned at the witness's clock: {t}");
    assert_eq!(recorded_size(&dir), Some(5));
    for i in 5..8u8 {
        tree.append(&[i; 32]);
    }
    let second = sign(&tree, origin, &seed);
    let sigs = add_checkpoint(&w.url, &request(5, tree.consistency_proof(5, 8).unwrap(), &second)).await.unwrap();
    let mut cosigned = second.clone();
    cosigned.add_signature(sigs[0].clone()).unwrap();
    assert_eq!(cosigned.verify_cosignatures(std::slice::from_ref(&witness)).unwrap().len(), 1);
    assert_eq!(recorded_size(&dir), Some(8), "state.json holds the new size");
    // The same checkpoint again is cosigned again (old size = size, empty proof).
    add_checkpoint(&w.url, &request(8, vec![], &second)).await.unwrap();

    // A crash, then a start with another name (refused), then a restart on the same directory,
    // the log key now read from a file.
    w.kill().await;
    let (code, _, err) = cli(
        &["witness", "serve", "--listen", "127.0.0.1:0", "--name", "witness.test/w2", "--log-key", &log_vkey, "--dir"],
        &[&dir],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("witness.test/w1"), "the key's name is kept: {err}");
    let key_file = tmp.path().join("log.vkey");
    std::fs::write(&key_file, format!("{log_vkey}\n")).unwrap();
    let w = WitnessProcess::start(&dir, &[&format!("@{}", key_file.display())], None).await;
    assert_eq!(w.vkey, key_out.trim_end(), "the same witness key after the restart");
    let state_before = std::fs::read(dir.join(STATE_FILE)).unwrap();
    let checkpoint_url = format!("{}/add-checkpoint", w.url);

    // Same size, another root: a fork (409), kept as evidence.
    let mut forked = MerkleTree::new();
    for i in 100..108u8 {
        forked.append(&[i; 32]);
    }
    let fork = sign(&forked, origin, &seed);
    let (status, _, body) = post(&checkpoint_url, request(8, vec![], &fork).to_text()).await;
    assert_eq!(status, 409, "{body}");
    let evidence = evidence_files(&dir);
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    let record: EvidenceRecord = serde_json::from_slice(&std::fs::read(&evidence[0]).unwrap()).unwrap();
    assert_eq!((record.kind.as_str(), record.origin.as_str(), record.old_size), ("fork", origin, 8));
    assert_eq!(record.presented_checkpoint, fork.to_text());
    assert_eq!(record.recorded.as_ref().map(|h| h.root), Some(tree.root()));
    assert_eq!(record.recorded.map(|h| h.checkpoint), Some(second.to_text()), "both signed checkpoints are kept");
    // The same fork presented again is kept once.
    let (status, _, _) = post(&checkpoint_url, request(8, vec![], &fork).to_text()).await;
    assert_eq!(status, 409);
    assert_eq!(evidence_files(&dir).len(), 1, "one file per fork");

    // Growth 8 → 12 with a damaged proof: 422, not kept (an unsigned proof proves nothing, and
    // anyone holding a genuine checkpoint could send one).
    for i in 8..12u8 {
        tree.append(&[i; 32]);
    }
    let third = sign(&tree, origin, &seed);
    let proof = tree.consistency_proof(8, 12).unwrap();
    let mut bad = proof.clone();
    bad[0][0] ^= 1;
    let (status, _, body) = post(&checkpoint_url, request(8, bad.clone(), &third).to_text()).await;
    assert_eq!(status, 422, "{body}");
    for _ in 0..3 {
        let (status, _, _) = post(&checkpoint_url, request(8, bad.clone(), &third).to_text()).await;
        assert_eq!(status, 422);
    }
    assert_eq!(evidence_files(&dir).len(), 1, "failed proofs fill no disk");

    // A stale old size: 409 with the witness's latest size as text/x.tlog.size.
    let stale = request(5, tree.consistency_proof(5, 12).unwrap(), &third);
    let (status, content_type, body) = post(&checkpoint_url, stale.to_text()).await;
    assert_eq!((status, content_type.as_str(), body.as_str()), (409, "text/x.tlog.size", "8\n"));
    let e = add_checkpoint(&w.url, &stale).await.unwrap_err();
    assert!(matches!(&e, WitnessClientError::Refused { status: 409, .. }), "{e:?}");
    assert_eq!(e.latest_size(), Some(8), "the client reads the size to retry with");

    // Unknown origins (another base; a suffix that is no stream name): 404.
    for other in ["other.log/KL_CONTROL_V1", "test.log/abc/x.y", "test.log/abc"] {
        let (status, _, body) = post(&checkpoint_url, request(0, vec![], &sign(&tree, other, &seed)).to_text()).await;
        assert_eq!(status, 404, "{other}: {body}");
    }
    // The right origin signed by another key: 403.
    let foreign = sign(&tree, origin, &[43; 32]);
    let (status, _, body) = post(&checkpoint_url, request(8, proof.clone(), &foreign).to_text()).await;
    assert_eq!(status, 403, "{body}");
    // Not a request at all: 400.
    let (status, _, _) = post(&checkpoint_url, "old x\n\n".to_owned()).await;
    assert_eq!(status, 400);

    assert_eq!(std::fs::read(dir.join(STATE_FILE)).unwrap(), state_before, "refusals leave state.json as it was");
    assert_eq!(evidence_files(&dir).len(), 1, "only the fork is evidence");

    // The log goes on with a valid proof.
    let sigs = add_checkpoint(&w.url, &request(8, proof, &third)).await.unwrap();
    assert!(witness.verify_cosignature(third.body(), &sigs[0]).is_ok());
    assert_eq!(recorded_size(&dir), Some(12));
    w.kill().await;
    let log = std::fs::read_to_string(witness_log(&dir)).unwrap();
    assert!(log.contains("witness: cosigned") && log.contains("witness: refused"), "{log}");
    assert!(!log.contains("PRIVATE"), "no key material in the log");
}

/// `keyledger checkpoint key` for the harness's data directory.
async fn log_key(h: &Harness) -> String {
    let (code, out, err) = cli(&["checkpoint", "key", "--data-dir"], &[&data_dir(h)]).await;
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

/// `verify --file F --log-key K [--trusted-checkpoint T]…` with the real binary.
async fn verify_anchored(path: &Path, key: &str, trusted: &[&Path]) -> (i32, Value) {
    let mut args: Vec<&Path> = vec![path];
    for t in trusted {
        args.push(Path::new("--trusted-checkpoint"));
        args.push(t);
    }
    let (code, out, err) =
        cli(&["verify", "--json", "--max-findings", "1000", "--log-key", key, "--file"], &args).await;
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("JSON report ({e}): {out}{err}"));
    (code, report)
}

/// Waits until the live log verifies with exit 0: every record is under a checkpoint.
async fn wait_until_checkpointed(h: &Harness) {
    let dir = data_dir(h);
    let verified = eventually(std::time::Duration::from_secs(15), || {
        let dir = dir.clone();
        async move { cli(&["verify", "--data-dir"], &[&dir]).await.0 == 0 }
    })
    .await;
    let (code, text, _) = cli(&["verify", "--data-dir"], &[&dir]).await;
    assert!(verified, "the checkpointer covers the whole log within seconds (exit {code}):\n{text}");
}

/// The stored checkpoints of `stream` in an export: (frame index, parsed checkpoint).
fn checkpoints_of(frames: &[Frame], stream: &str) -> Vec<(usize, keyledger_transparency::Checkpoint)> {
    frames
        .iter()
        .enumerate()
        .filter_map(|(i, f)| message(f).map(|m| (i, m)))
        .filter(|(_, m)| m.stream == names::CHECKPOINT_STREAM && m.subject == names::checkpoint_subject(stream))
        .map(|(i, m)| {
            let note = keyledger_transparency::Note::parse(&m.payload).unwrap();
            (i, keyledger_transparency::Checkpoint::parse(note.text()).unwrap())
        })
        .collect()
}

/// Frame indices of `stream`'s messages, in order.
fn messages_of(frames: &[Frame], stream: &str) -> Vec<usize> {
    frames.iter().enumerate().filter(|(_, f)| message(f).is_some_and(|m| m.stream == stream)).map(|(i, _)| i).collect()
}

/// The codes of the findings, sorted and deduplicated.
fn codes(report: &Value) -> Vec<String> {
    let mut c: Vec<String> =
        report["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_owned()).collect();
    c.sort();
    c.dedup();
    c
}

/// Signed checkpoints anchor the log (matrix rows 6, 8, 9 and 10): what a hash chain cannot
/// see — a cut-off tail, a lane removed whole, two lanes' records reordered — is caught against
/// the log's own checkpoints, and a tail cut off together with its checkpoints against a
/// checkpoint kept elsewhere; the unaltered log verifies (exit 0), before and after more
/// operations, live and exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_catch_what_chains_cannot() {
    let h = Harness::start().await;
    // A second cryptod: two usage lanes in one stream (rows 6 and 8 need them).
    let env = h.env();
    let config = keyledger::roles::RoleConfig { checkpoint: None, ..env.roles.as_ref().unwrap().ctx.config.clone() };
    let root = std::sync::Arc::new(keyledger_crypto::RootKey::load(&data_dir(&h).join("root.key")).unwrap());
    let second =
        keyledger::roles::start(&[keyledger::roles::Role::Cryptod], &env.service_profile, root, config).await.unwrap();
    let key = operations(&h, 1).await;
    for i in 0..24 {
        h.ok("Encrypt", json!({"KeyId": key, "Plaintext": b64(format!("lane {i}").as_bytes())})).await;
    }
    wait_until_checkpointed(&h).await;
    let vkey = log_key(&h).await;
    assert!(vkey.starts_with("keyledger.local/log-"), "{vkey}");

    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("log.klexport");
    export(&h, &original).await;
    let frames = read(&original);
    let (code, report) = verify_anchored(&original, &vkey, &[]).await;
    assert_eq!((code, report["verdict"].as_str().unwrap()), (0, "verified"), "{report:#}");
    for s in report["streams"].as_array().unwrap() {
        if s["stream"] != names::CHECKPOINT_STREAM {
            assert_eq!(s["checkpointed"], s["messages"], "every record is under a checkpoint: {s}");
        }
    }
    let (code, text, _) = cli(&["verify", "--log-key", &vkey, "--file"], &[&original]).await;
    assert_eq!(code, 0);
    assert!(text.starts_with("VERIFIED: "), "{text}");
    // Another log's key verifies nothing: every checkpoint is a BAD_SIGNATURE.
    let other = keyledger::checkpointer::LogKey::generate("keyledger.local/log-other").unwrap().verifier().to_string();
    let (code, report) = verify_anchored(&original, &other, &[]).await;
    assert_eq!(code, 1);
    assert_eq!(codes(&report), ["BAD_SIGNATURE"]);

    let altered = dir.path().join("altered.klexport");
    let check = |frames: Vec<Frame>, trusted: Vec<PathBuf>| {
        let (altered, vkey) = (altered.clone(), vkey.clone());
        async move {
            write(&altered, &frames);
            let trusted: Vec<&Path> = trusted.iter().map(PathBuf::as_path).collect();
            verify_anchored(&altered, &vkey, &trusted).await
        }
    };
    let ctl = messages_of(&frames, names::CONTROL_STREAM);
    let ctl_checkpoints = checkpoints_of(&frames, names::CONTROL_STREAM);
    let newest_ctl = ctl_checkpoints.last().expect("control checkpoints").1.clone();
    assert_eq!(newest_ctl.size, ctl.len() as u64);

    // Row 9: the tail cut off, the checkpoints intact: TRUNCATED, exit 1.
    let mut f = frames.clone();
    for i in ctl.iter().rev().take(2) {
        f.remove(*i);
    }
    for fr in f.iter_mut() {
        if let Frame::Stream(s) = fr {
            if s.stream == names::CONTROL_STREAM {
                s.last_seq -= 2;
                s.messages -= 2;
            }
        }
    }
    let (code, report) = check(f.clone(), vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(codes(&report), ["TRUNCATED"], "no gap, every chain intact: only L4 sees the cut: {report:#}");

    // Row 10: the tail cut off together with every checkpoint covering it — the checkpoint
    // stream cut at the first note that covers a removed record (it is one chain: only its tail
    // can go unseen) — and the stream ranges rewritten to match: no finding, but the remaining
    // tail is unanchored (exit 2, never 0)…
    let kept = ctl.len() as u64 - 2;
    let cut = ctl_checkpoints
        .iter()
        .find(|(_, c)| c.size > kept)
        .map(|(i, _)| message(&frames[*i]).unwrap().seq)
        .expect("a checkpoint covers the removed records");
    let newest_kept = ctl_checkpoints
        .iter()
        .filter(|(i, _)| message(&frames[*i]).unwrap().seq < cut)
        .map(|(_, c)| c.size)
        .max()
        .unwrap_or(0);
    let mut f: Vec<Frame> = frames
        .iter()
        .filter(|fr| match message(fr) {
            Some(m) if m.stream == names::CONTROL_STREAM => m.seq <= kept,
            Some(m) if m.stream == names::CHECKPOINT_STREAM => m.seq < cut,
            _ => true,
        })
        .cloned()
        .collect();
    for fr in f.iter_mut() {
        match fr {
            Frame::Stream(s) if s.stream == names::CONTROL_STREAM => {
                s.last_seq = kept;
                s.messages = kept;
            }
            Frame::Stream(s) if s.stream == names::CHECKPOINT_STREAM => {
                s.last_seq = cut - 1;
                s.messages = cut - 1;
            }
            _ => {}
        }
    }
    let (code, report) = check(f.clone(), vec![]).await;
    assert_eq!(report["findings_total"], 0, "{report:#}");
    assert_eq!((code, report["verdict"].as_str().unwrap()), (2, "unanchored"));
    let ctl_report =
        report["streams"].as_array().unwrap().iter().find(|s| s["stream"] == names::CONTROL_STREAM).unwrap();
    assert_eq!(ctl_report["checkpointed"], newest_kept);
    assert!(report["unanchored_messages"].as_u64().unwrap() >= kept - newest_kept);
    // Removing checkpoints from the middle of the checkpoint stream instead (renumbered to hide
    // the gap) breaks its chain.
    let mut middle: Vec<Frame> = frames
        .iter()
        .filter(|fr| !message(fr).is_some_and(|m| m.stream == names::CHECKPOINT_STREAM && m.seq == 1))
        .cloned()
        .collect();
    for fr in middle.iter_mut() {
        match fr {
            Frame::Message(m) if m.stream == names::CHECKPOINT_STREAM => m.seq -= 1,
            Frame::Stream(s) if s.stream == names::CHECKPOINT_STREAM => {
                s.last_seq -= 1;
                s.messages -= 1;
            }
            _ => {}
        }
    }
    let (code, report) = check(middle, vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert!(codes(&report).contains(&"CHAIN_BREAK".to_owned()), "{report:#}");
    // …and a checkpoint the auditor kept elsewhere names the cut.
    let kept_note = dir.path().join("kept-checkpoint.txt");
    let (code, latest, err) = cli(&["checkpoint", "latest", "--data-dir"], &[&data_dir(&h)]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(latest.as_bytes(), &message(&frames[ctl_checkpoints.last().unwrap().0]).unwrap().payload[..]);
    std::fs::write(&kept_note, latest).unwrap();
    let (code, report) = check(f, vec![kept_note.clone()]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(codes(&report), ["TRUNCATED"]);
    // The unaltered log agrees with the kept checkpoint (the negative control).
    let (code, report) = verify_anchored(&original, &vkey, &[&kept_note]).await;
    assert_eq!(code, 0, "{report:#}");

    // Rows 6 and 8 on the usage stream, which has two lanes.
    let usage = frames
        .iter()
        .find_map(|f| message(f).filter(|m| m.stream.starts_with(names::USAGE_STREAM_PREFIX)).map(|m| m.stream.clone()))
        .unwrap();
    let blocks = messages_of(&frames, &usage);
    let lane_of = |i: usize| message(&frames[i]).unwrap().subject.clone();
    let lanes: std::collections::BTreeSet<String> = blocks.iter().map(|i| lane_of(*i)).collect();
    assert_eq!(lanes.len(), 2, "two cryptods, two lanes: {lanes:?}");

    // Row 8: two adjacent blocks of different lanes swapped (sequences kept): every chain is
    // still valid; only the checkpoints see it.
    let pair = blocks.windows(2).find(|w| lane_of(w[0]) != lane_of(w[1])).expect("adjacent blocks of two lanes");
    let mut f = frames.clone();
    let (a, b) = (message(&frames[pair[0]]).unwrap().clone(), message(&frames[pair[1]]).unwrap().clone());
    f[pair[0]] = Frame::Message(ExportedMessage { seq: a.seq, ..b.clone() });
    f[pair[1]] = Frame::Message(ExportedMessage { seq: b.seq, ..a.clone() });
    let (code, report) = check(f, vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(codes(&report), ["ROOT_MISMATCH"], "chains alone cannot see a cross-lane reorder: {report:#}");
    let covering = checkpoints_of(&frames, &usage).iter().filter(|(_, c)| c.size >= b.seq).count();
    assert_eq!(report["findings_total"], covering as u64, "each checkpoint covering the swap says so");

    // Row 6: one lane deleted whole and the rest renumbered to hide the gap: the other lane's
    // chain is intact, the stream has no gap, and the checkpoints still see it.
    let gone = lane_of(blocks[0]);
    let mut f: Vec<Frame> = Vec::new();
    let mut next = 0;
    for fr in &frames {
        match fr {
            Frame::Message(m) if m.stream == usage && m.subject == gone => {}
            Frame::Message(m) if m.stream == usage => {
                next += 1;
                f.push(Frame::Message(ExportedMessage { seq: next, ..m.clone() }));
            }
            other => f.push(other.clone()),
        }
    }
    for fr in f.iter_mut() {
        if let Frame::Stream(s) = fr {
            if s.stream == usage {
                s.last_seq = next;
                s.messages = next;
            }
        }
    }
    let (code, report) = check(f, vec![]).await;
    assert_eq!(code, 1, "{report:#}");
    let c = codes(&report);
    assert!(c.iter().all(|c| c == "ROOT_MISMATCH" || c == "TRUNCATED"), "only L4 sees a whole lane removed: {c:?}");
    assert!(c.contains(&"TRUNCATED".to_owned()), "the newest checkpoint is larger than what is left: {c:?}");

    // More operations: the log verifies again, live and exported (the negative control after
    // more appends).
    operations(&h, 2).await;
    wait_until_checkpointed(&h).await;
    export(&h, &original).await;
    let (code, report) = verify_anchored(&original, &vkey, &[&kept_note]).await;
    assert_eq!(code, 0, "{report:#}");
    second.stop().await;
}

/// Matrix row 11: a forked history signed with the stolen log key. The checkpointer had every
/// checkpoint cosigned by a witness keeping its own state; an attacker with the log key rewrites
/// a record and re-signs every checkpoint. `verify` with only the log key cannot tell (exit 0:
/// that is what a stolen key buys); against the witness's state it reports FORK, and the witness
/// refuses to cosign the forked checkpoint (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_signed_with_a_stolen_log_key_is_caught_by_the_witness() {
    use keyledger::checkpointer::{CheckpointConfig, LogKey, WitnessTarget};
    use keyledger_transparency::{AddCheckpointRequest, Checkpoint, MerkleTree, SignedCheckpoint};
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("log.key");
    let stolen = LogKey::create_file(&key_path, "keyledger.local/log-row11").unwrap();
    let vkey = stolen.verifier().to_string();
    let witness_dir = dir.path().join("witness");
    let witness = std::sync::Arc::new(
        keyledger::witness::Witness::open(&witness_dir, Some("witness.test/w1"), vec![stolen.verifier()]).unwrap(),
    );
    let running = keyledger::witness::start(witness.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}", running.addr);
    let checkpoint = CheckpointConfig {
        witness: Some(WitnessTarget { url: url.clone(), key: witness.verifier() }),
        ..CheckpointConfig::new(std::sync::Arc::new(LogKey::load(&key_path).unwrap()))
    };
    let h =
        Harness::start_with_config(keyledger::roles::RoleConfig { checkpoint: Some(checkpoint), ..Default::default() })
            .await;
    operations(&h, 1).await;

    // Wait until the witness has cosigned the whole control stream.
    let origin = keyledger::checkpointer::origin(stolen.name(), names::CONTROL_STREAM);
    let js = keyledger_log::jetstream(h.service_nats().await);
    let control_len = js.get_stream(names::CONTROL_STREAM).await.unwrap().info().await.unwrap().state.messages;
    let cosigned = eventually(std::time::Duration::from_secs(15), || {
        let (witness, origin) = (witness.clone(), origin.clone());
        async move { witness.load_state().unwrap().head(&origin).is_some_and(|h| h.size == control_len) }
    })
    .await;
    assert!(cosigned, "the witness cosigns the control stream's checkpoints");
    let state = witness_dir.join(keyledger::witness::STATE_FILE);

    let original = dir.path().join("log.klexport");
    export(&h, &original).await;
    let frames = read(&original);
    // The stored checkpoints carry the witness's cosignature.
    let stored = frames
        .iter()
        .filter_map(message)
        .rfind(|m| m.subject == names::checkpoint_subject(names::CONTROL_STREAM))
        .unwrap()
        .clone();
    let verifier = keyledger::checkpointer::verifier_for(&stolen.verifier(), names::CONTROL_STREAM).unwrap();
    let signed = SignedCheckpoint::open(&stored.payload, &verifier).unwrap();
    assert_eq!(signed.verify_cosignatures(&[witness.verifier()]).unwrap().len(), 1);
    // The negative control: the log agrees with the witness.
    let (code, report) = verify_anchored(&original, &vkey, &[&state]).await;
    assert_eq!(code, 0, "{report:#}");
    // A receipt can require the witness's cosignature (a stolen log key alone cannot make one).
    let nats = h.service_nats().await;
    let answer = nats
        .request(
            names::PROOF_SUBJECT,
            serde_json::to_vec(&json!({"stream": names::CONTROL_STREAM, "seq": 1})).unwrap().into(),
        )
        .await
        .unwrap();
    let proof_path = dir.path().join("proof.json");
    std::fs::write(&proof_path, &answer.payload).unwrap();
    let witness_vkey = witness.verifier().to_string();
    let (code, out, err) =
        cli(&["verify-receipt", "--log-key", &vkey, "--witness-key", &witness_vkey], &[&proof_path]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cosigned by witness witness.test/w1"), "{out}");
    let other_witness = keyledger_transparency::WitnessSigner::from_seed("witness.test/w1", &[9; 32]).unwrap();
    let (code, out, _) = cli(
        &["verify-receipt", "--log-key", &vkey, "--witness-key", &other_witness.verifier().to_string()],
        &[&proof_path],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("NOT PROVEN: the checkpoint has no valid cosignature"), "{out}");

    // A witness state edited by hand is not evidence: refused (exit 3), the log not blamed.
    let mut edited: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    edited["logs"][&origin]["size"] = json!(control_len + 100);
    let edited_path = dir.path().join("edited-state.json");
    std::fs::write(&edited_path, edited.to_string()).unwrap();
    let (code, _, err) =
        cli(&["verify", "--log-key", &vkey, "--trusted-checkpoint"], &[&edited_path, Path::new("--file"), &original])
            .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is not the one the recorded checkpoint signs"), "{err}");

    // The fork: the newest control event (the head of its key's chain; its Nats-Msg-Id is its
    // event id, unchanged) rewritten from KeyDisabled to KeyEnabled, every control checkpoint
    // re-signed over the rewritten stream with the stolen key.
    let mut forked = frames.clone();
    let ctl = messages_of(&forked, names::CONTROL_STREAM);
    let last = *ctl.last().unwrap();
    let event = keyledger_events::decode(&message(&forked[last]).unwrap().payload).unwrap();
    assert!(matches!(event.body, keyledger_events::Body::KeyDisabled(_)), "operations() ends with DisableKey");
    let draft = event.draft();
    let body =
        keyledger_events::Body::KeyEnabled(keyledger_events::KeyEnabledV1 { rotation_catch_up_due_unix_ms: None });
    let (bytes, _) = keyledger_events::encode(&draft, &body).unwrap();
    if let Frame::Message(m) = &mut forked[last] {
        m.payload = bytes;
    }
    let mut tree = MerkleTree::new();
    for i in &ctl {
        tree.append(&keyledger_events::record_hash(&message(&forked[*i]).unwrap().payload));
    }
    // Every note of the checkpoint stream re-signed in order: control checkpoints over the
    // rewritten stream, every note re-chained (what a thief of the log key can do).
    let mut forked_head = None;
    let mut prev = [0u8; 32];
    for frame in forked.iter_mut() {
        let Some(m) = message(frame).filter(|m| m.stream == names::CHECKPOINT_STREAM).cloned() else { continue };
        let note = keyledger_transparency::Note::parse(&m.payload).unwrap();
        let mut c = Checkpoint::parse(note.text()).unwrap();
        let stream = keyledger::checkpointer::stream_of_origin(stolen.name(), &c.origin).unwrap().to_owned();
        if stream == names::CONTROL_STREAM {
            c.root = tree.root_at(c.size).unwrap();
        }
        c.extensions = vec![keyledger::checkpointer::prev_line(&prev)];
        let signer = stolen.signer_for(&stream).unwrap();
        let resigned = SignedCheckpoint::sign(c, &signer).unwrap();
        let payload = resigned.to_text().into_bytes();
        prev = keyledger::checkpointer::chain_hash(&payload);
        if let Frame::Message(slot) = frame {
            slot.msg_id = Some(blake3::hash(&payload).to_hex().to_string());
            slot.payload = payload;
        }
        if stream == names::CONTROL_STREAM {
            forked_head = Some(resigned);
        }
    }
    let forked_file = dir.path().join("forked.klexport");
    write(&forked_file, &forked);
    let (code, report) = verify_anchored(&forked_file, &vkey, &[]).await;
    assert_eq!(code, 0, "with only the (stolen) log key the fork is self-consistent: {report:#}");
    let (code, report) = verify_anchored(&forked_file, &vkey, &[&state]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(codes(&report), ["FORK"]);

    // The witness refuses to cosign it: same size, another root.
    let request =
        AddCheckpointRequest { old_size: control_len, proof: vec![], checkpoint: forked_head.unwrap().to_text() };
    let refused = keyledger::witness::add_checkpoint(&url, &request).await.unwrap_err();
    assert!(matches!(refused, keyledger::witness::WitnessClientError::Refused { status: 409, .. }), "{refused}");
    assert!(std::fs::read_dir(witness_dir.join(keyledger::witness::EVIDENCE_DIR)).unwrap().count() >= 1);
    running.stop().await;
}

/// One signer at a time (issue 4): three checkpointers with one log key on one log — the
/// harness's and two more — sign under a lease and fenced appends, so every stream's
/// checkpoints form one line of strictly growing sizes (no two signers extend the same
/// checkpoint); when two of them stop, whichever remains keeps checkpointing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_checkpointers_sign_one_line_of_checkpoints_and_a_survivor_carries_on() {
    use keyledger::checkpointer::{CheckpointConfig, LogKey};
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("log.key");
    let vkey = LogKey::create_file(&key_path, "keyledger.local/log-lease").unwrap().verifier().to_string();
    let config = || CheckpointConfig {
        lease_ttl: std::time::Duration::from_secs(2),
        ..CheckpointConfig::new(std::sync::Arc::new(LogKey::load(&key_path).unwrap()))
    };
    let h =
        Harness::start_with_config(keyledger::roles::RoleConfig { checkpoint: Some(config()), ..Default::default() })
            .await;
    let env = h.env();
    let root = std::sync::Arc::new(keyledger_crypto::RootKey::load(&data_dir(&h).join("root.key")).unwrap());
    let mut others = Vec::new();
    for _ in 0..2 {
        let c = keyledger::roles::RoleConfig {
            checkpoint: Some(config()),
            ..env.roles.as_ref().unwrap().ctx.config.clone()
        };
        let r = keyledger::roles::start(&[keyledger::roles::Role::Checkpointer], &env.service_profile, root.clone(), c)
            .await
            .unwrap();
        others.push(r);
    }
    for round in 1..=3 {
        operations(&h, round).await;
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    for r in others {
        r.stop().await;
    }
    operations(&h, 4).await;
    let dir_path = data_dir(&h);
    let covered = eventually(std::time::Duration::from_secs(20), || {
        let (dir_path, vkey) = (dir_path.clone(), vkey.clone());
        async move { cli(&["verify", "--log-key", &vkey, "--data-dir"], &[&dir_path]).await.0 == 0 }
    })
    .await;
    assert!(covered, "the remaining checkpointer covers the log after the others stopped");

    let file = dir.path().join("log.klexport");
    export(&h, &file).await;
    let frames = read(&file);
    let sizes: Vec<u64> = checkpoints_of(&frames, names::CONTROL_STREAM).into_iter().map(|(_, c)| c.size).collect();
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "one line of growing checkpoints: {sizes:?}");
    let (code, report) = verify_anchored(&file, &vkey, &[]).await;
    assert_eq!(code, 0, "{report:#}");
}
