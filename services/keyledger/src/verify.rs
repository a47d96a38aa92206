//! Checks an exported (or live) log: layers L1–L3 of `audit-integrity.md` §2.9, pure and
//! streaming.
//!
//! Feed [`Frame`]s in file / stream order to a [`Verifier`] ([`Verifier::frame`]), then
//! [`Verifier::finish`] gives the [`Report`]. No I/O, no clock: `keyledger verify` reads the
//! frames from a file or from JetStream and prints the report.
//!
//! | Layer | Check | Finding code |
//! |---|---|---|
//! | L1 record | byte-exact decode (`keyledger_events::decode`) | `DECODE`, `NONCANONICAL`, `UNKNOWN_VERSION` |
//! | L1 record | `Nats-Msg-Id` = what the writer sets: hex(record hash) for usage blocks, hex(event id) for control events; a record that does not hash to what its chain successor recorded | `HASH_MISMATCH` |
//! | L1 record | stored under its own subject (`kl.v1.ctl.<account>.<kind>.<id>`, `kl.v1.use.<period>.<lane>`) | `SUBJECT_MISMATCH` |
//! | L2 chains | every chain (stream, kind, account, id) starts at position 0 with the genesis `prev_hash`, positions contiguous, each `prev_hash` = hash of the previous position, positions in stream order | `CHAIN_BREAK`, `GAP_IN_CHAIN` |
//! | L2 chains | two different records at one chain position | `FORK_IN_CHAIN` |
//! | L3 positions | stream sequences contiguous from 1 to the last sequence the server reported | `GAP_IN_STREAM` |
//! | L3 positions | event id unique; identical bytes stored twice | `DUPLICATE_EVENT`, `REPLAYED_RECORD` |
//! | L3 positions | messages inside the range the server reported for their stream | `RANGE_MISMATCH` |
//! | L4 commitments | the checkpoint stream is one chain: each note's `keyledger-prev` line is the chain hash of the stream's previous message; its `Nats-Msg-Id` is hex(BLAKE3(note)) | `CHAIN_BREAK`, `HASH_MISMATCH` |
//! | L4 commitments | each stored checkpoint verifies under the log key (origin `<log key name>/<stream>`) | `BAD_SIGNATURE` |
//! | L4 commitments | its size is not below the previous one of its stream | `ROLLBACK` |
//! | L4 commitments | the stream holds at least its size of records | `TRUNCATED` |
//! | L4 commitments | the RFC 6962 root recomputed over the stream's record hashes (leaf *i* = stream sequence *i + 1*) at its size equals its root | `ROOT_MISMATCH` |
//! | L4 anchors | each trusted checkpoint kept elsewhere (`--trusted-checkpoint`: a signed checkpoint, or a witness's state file): the log is not shorter, and has the same root at its size | `TRUNCATED`, `FORK` |
//!
//! A record with an unknown body type or version is not a finding: its header and bytes are
//! chained like any other and it is counted as *opaque* (a newer writer). A record that fails
//! L1 decoding still takes its chain position when its header can be read, but links into and
//! out of it are not judged (its L1 finding already locates it).
//!
//! The verdict is [`Verdict::Verified`] only when every record of every record stream is
//! covered by a checkpoint that verified (or by a trusted checkpoint). Records after the last
//! checkpoint, or any log checked without the log key, leave it [`Verdict::Unanchored`]: a
//! chain alone cannot see a cut-off tail, and the log's own checkpoints cannot see a tail cut
//! off together with them (matrix row 10) — only a checkpoint kept elsewhere can.

use std::collections::{BTreeMap, HashMap, HashSet};

use keyledger_events::{names, AggregateKind, EventError, RecordV1, MAGIC, RECORD_VERSION};
use serde::Serialize;

use crate::export::{ExportedMessage, Frame, StreamRange};
use keyledger_transparency::{MerkleTree, NoteVerifier, SignedCheckpoint};

/// Most findings kept in memory; further ones are only counted.
pub const MAX_KEPT_FINDINGS: usize = 100_000;

/// What a finding says is wrong. The string forms are stable (JSON reports, tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    /// L1: the bytes are not a record this build can read (bad magic, malformed, over-long).
    Decode,
    /// L1: the bytes decode but are not the one canonical encoding (trailing bytes, padded
    /// varints, non-0/1 booleans).
    Noncanonical,
    /// L1: a record version this build does not know (upgrade the verifier).
    UnknownVersion,
    /// L1: the record's hash differs from what the log committed to for it (`Nats-Msg-Id`,
    /// or its chain successor's `prev_hash`).
    HashMismatch,
    /// L1: the record is stored under another aggregate's or lane's subject.
    SubjectMismatch,
    /// L2: a `prev_hash` is not the hash of the previous chain position (or the genesis), or a
    /// position is stored after a later one.
    ChainBreak,
    /// L2: chain positions are missing.
    GapInChain,
    /// L2: two different records at one chain position.
    ForkInChain,
    /// L3: stream sequences are missing (or not increasing).
    GapInStream,
    /// L3: one event id on two different records.
    DuplicateEvent,
    /// L3: the exact bytes of an earlier record stored again.
    ReplayedRecord,
    /// L3: messages outside the sequence range the server reported for their stream.
    RangeMismatch,
    /// L4: a stored checkpoint does not verify under the log key (or is not a checkpoint).
    BadSignature,
    /// L4: a checkpoint's root is not the root recomputed over the stream at its size.
    RootMismatch,
    /// L4: the stream holds fewer records than a checkpoint (stored or trusted) commits to.
    Truncated,
    /// L4: a checkpoint's size is below an earlier checkpoint's of the same stream.
    Rollback,
    /// L4: a trusted checkpoint kept elsewhere has another root than the log at its size.
    Fork,
}

impl Code {
    /// Every code, in report order.
    pub const ALL: [Code; 17] = [
        Code::Decode,
        Code::Noncanonical,
        Code::UnknownVersion,
        Code::HashMismatch,
        Code::SubjectMismatch,
        Code::ChainBreak,
        Code::GapInChain,
        Code::ForkInChain,
        Code::GapInStream,
        Code::DuplicateEvent,
        Code::ReplayedRecord,
        Code::RangeMismatch,
        Code::BadSignature,
        Code::RootMismatch,
        Code::Truncated,
        Code::Rollback,
        Code::Fork,
    ];

    /// The stable name (`HASH_MISMATCH`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Decode => "DECODE",
            Code::Noncanonical => "NONCANONICAL",
            Code::UnknownVersion => "UNKNOWN_VERSION",
            Code::HashMismatch => "HASH_MISMATCH",
            Code::SubjectMismatch => "SUBJECT_MISMATCH",
            Code::ChainBreak => "CHAIN_BREAK",
            Code::GapInChain => "GAP_IN_CHAIN",
            Code::ForkInChain => "FORK_IN_CHAIN",
            Code::GapInStream => "GAP_IN_STREAM",
            Code::DuplicateEvent => "DUPLICATE_EVENT",
            Code::ReplayedRecord => "REPLAYED_RECORD",
            Code::RangeMismatch => "RANGE_MISMATCH",
            Code::BadSignature => "BAD_SIGNATURE",
            Code::RootMismatch => "ROOT_MISMATCH",
            Code::Truncated => "TRUNCATED",
            Code::Rollback => "ROLLBACK",
            Code::Fork => "FORK",
        }
    }

    /// The layer (1–4) of audit-integrity.md §2.9 the check belongs to.
    pub fn layer(self) -> u8 {
        match self {
            Code::Decode | Code::Noncanonical | Code::UnknownVersion | Code::HashMismatch | Code::SubjectMismatch => 1,
            Code::ChainBreak | Code::GapInChain | Code::ForkInChain => 2,
            Code::GapInStream | Code::DuplicateEvent | Code::ReplayedRecord | Code::RangeMismatch => 3,
            Code::BadSignature | Code::RootMismatch | Code::Truncated | Code::Rollback | Code::Fork => 4,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A chain position: which chain, and where in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainPosition {
    /// Aggregate kind token (`key`, `alias`, `account`, `sys`, `lane`).
    pub kind: String,
    /// Owning account (empty for usage lanes).
    pub account: String,
    /// Aggregate id (key id, alias name, lane id).
    pub id: String,
    /// `aggregate_seq` of the record.
    pub position: u64,
}

/// One integrity finding, located by stream and stream sequence. Never holds payload bytes:
/// hashes, ids and positions only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What is wrong.
    pub code: Code,
    /// Stream of the message the finding is about.
    pub stream: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Its chain position, when its header could be read.
    pub chain: Option<ChainPosition>,
    /// What the log committed to (hex hash, id, subject or range), when there is one.
    pub expected: Option<String>,
    /// What was found instead.
    pub actual: Option<String>,
    /// One sentence for a human.
    pub detail: String,
}

/// One stream's ranges in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    /// Stream name.
    pub stream: String,
    /// The range the server reported when the read started (`first_seq`, `last_seq`,
    /// message count); `None` when the input had no range frame for this stream.
    pub requested: Option<(u64, u64, u64)>,
    /// First and last stream sequence present in the input; `None` for no message.
    pub present: Option<(u64, u64)>,
    /// Messages present.
    pub messages: u64,
    /// Sequences missing between 1 and the requested (or present) last sequence.
    pub missing: u64,
    /// Record streams: how many of its first records a verified checkpoint (stored or trusted)
    /// covers; the rest are unanchored. 0 for the checkpoint stream.
    pub checkpointed: u64,
    /// Record streams: stored checkpoints that verified; the checkpoint stream: checkpoints
    /// stored.
    pub checkpoints: u64,
}

/// How much was checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Messages read.
    pub messages: u64,
    /// Records whose header decoded (placed in a chain).
    pub records: u64,
    /// Records with a body type or version this build does not know (chained, not decoded).
    pub opaque: u64,
    /// Chains (stream, kind, account, id).
    pub chains: u64,
    /// `prev_hash` links checked (including genesis links).
    pub links: u64,
    /// `Nats-Msg-Id` values compared.
    pub msg_ids: u64,
    /// Stored checkpoints read.
    pub checkpoints: u64,
    /// Trusted checkpoints compared with the log.
    pub trusted: u64,
}

/// The overall result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No finding, and every record is covered by a verified checkpoint. Exit code 0.
    Verified,
    /// At least one integrity finding. Exit code 1.
    Violation,
    /// No finding, but records after the last verified checkpoint (or every record, without
    /// the log key) are unanchored: a cut-off tail would leave intact chains behind. Exit
    /// code 2.
    Unanchored,
}

impl Verdict {
    /// The process exit code `keyledger verify` uses.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Verified => 0,
            Verdict::Violation => 1,
            Verdict::Unanchored => 2,
        }
    }
}

/// The report of one verification.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The verifier (`keyledger <version>`).
    pub verifier: String,
    /// The result.
    pub verdict: Verdict,
    /// Per stream, in input order.
    pub streams: Vec<StreamReport>,
    /// Counters of what was checked.
    pub checked: Checked,
    /// Findings per code (every code present, zero included).
    pub counts: BTreeMap<Code, u64>,
    /// Total findings (may exceed `findings.len()`).
    pub findings_total: u64,
    /// The first findings in stream order (at most the limit given to [`Verifier::finish`]).
    pub findings: Vec<Finding>,
    /// Records after the last anchor, over every record stream.
    pub unanchored_messages: u64,
    /// The log verifier key checkpoints were checked with, if one was given.
    pub log_key: Option<String>,
}

/// A checkpoint kept outside the log (by an auditor, a client, or a witness's state): the log
/// must not be shorter, and must have the same root at its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedHead {
    /// Checkpoint origin (`<log key name>/<stream>`).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Tree root (SHA-256, 32 bytes).
    pub root: [u8; 32],
    /// Where it came from (a file name), for the report.
    pub source: String,
}

/// What L4 checks against: the log's verifier key (`keyledger checkpoint key`) and checkpoints
/// kept elsewhere.
#[derive(Clone, Debug, Default)]
pub struct Anchors {
    /// The log's base verifier key; stream S's checkpoints are signed as `<name>/S`.
    pub log_key: Option<NoteVerifier>,
    /// Trusted checkpoints.
    pub trusted: Vec<TrustedHead>,
}

#[derive(Clone, Copy)]
struct Slot {
    hash: [u8; 32],
    prev: [u8; 32],
    stream: usize,
    seq: u64,
    /// False when L1 decoding failed: links into and out of it are not judged.
    judged: bool,
}

#[derive(Hash, PartialEq, Eq, Clone)]
struct ChainKey {
    stream: usize,
    kind: u16,
    account: String,
    id: String,
}

#[derive(Default)]
struct Chain {
    slots: BTreeMap<u64, Slot>,
}

struct StreamState {
    name: String,
    requested: Option<StreamRange>,
    first: Option<u64>,
    last: Option<u64>,
    messages: u64,
    missing: u64,
    /// Record streams: the Merkle tree over the record hashes in stream order.
    tree: Option<MerkleTree>,
    checkpointed: u64,
    checkpoints: u64,
}

/// A stored checkpoint, judged at the end (after every record it may commit to).
struct StoredCheckpoint {
    stream: usize,
    seq: u64,
    subject: String,
    payload: Vec<u8>,
}

/// The streaming checker. Memory grows with the number of records (a hash and an id per
/// record), not with their size.
pub struct Verifier {
    streams: Vec<StreamState>,
    stream_index: HashMap<String, usize>,
    chains: HashMap<ChainKey, Chain>,
    event_ids: HashMap<[u8; 16], [u8; 32]>,
    stored: HashMap<[u8; 32], (usize, u64)>,
    checked: Checked,
    findings: Vec<(usize, Finding)>,
    hash_mismatches: HashSet<(usize, u64)>,
    counts: BTreeMap<Code, u64>,
    anchors: Anchors,
    checkpoints: Vec<StoredCheckpoint>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

fn hex32(h: &[u8; 32]) -> String {
    hex::encode(h)
}

impl Verifier {
    /// An empty verifier without anchors (L4 cannot vouch for anything: at best
    /// [`Verdict::Unanchored`]).
    pub fn new() -> Self {
        Self::with_anchors(Anchors::default())
    }

    /// An empty verifier checking checkpoints against `anchors`.
    pub fn with_anchors(anchors: Anchors) -> Self {
        Self {
            anchors,
            checkpoints: Vec::new(),
            streams: Vec::new(),
            stream_index: HashMap::new(),
            chains: HashMap::new(),
            event_ids: HashMap::new(),
            stored: HashMap::new(),
            checked: Checked::default(),
            findings: Vec::new(),
            hash_mismatches: HashSet::new(),
            counts: Code::ALL.iter().map(|c| (*c, 0)).collect(),
        }
    }

    /// Checks every frame of `frames` and returns the report with at most `max_findings`
    /// findings listed.
    pub fn verify(frames: impl IntoIterator<Item = Frame>, max_findings: usize) -> Report {
        let mut v = Self::new();
        for f in frames {
            v.frame(&f);
        }
        v.finish(max_findings)
    }

    fn stream(&mut self, name: &str) -> usize {
        if let Some(i) = self.stream_index.get(name) {
            return *i;
        }
        let i = self.streams.len();
        self.streams.push(StreamState {
            name: name.to_owned(),
            requested: None,
            first: None,
            last: None,
            messages: 0,
            missing: 0,
            tree: crate::export::is_record_stream(name).then(MerkleTree::new),
            checkpointed: 0,
            checkpoints: 0,
        });
        self.stream_index.insert(name.to_owned(), i);
        i
    }

    fn report(&mut self, stream: usize, finding: Finding) {
        if finding.code == Code::HashMismatch && !self.hash_mismatches.insert((stream, finding.seq)) {
            return;
        }
        *self.counts.entry(finding.code).or_default() += 1;
        if self.findings.len() < MAX_KEPT_FINDINGS {
            self.findings.push((stream, finding));
        }
    }

    /// Takes one frame.
    pub fn frame(&mut self, frame: &Frame) {
        match frame {
            Frame::Stream(range) => {
                let i = self.stream(&range.stream);
                self.streams[i].requested = Some(range.clone());
            }
            Frame::Message(m) => self.message(m),
        }
    }

    /// Takes one message (in stream order).
    pub fn message(&mut self, m: &ExportedMessage) {
        self.checked.messages += 1;
        let si = self.stream(&m.stream);
        self.positions(si, m);
        if m.stream == names::CHECKPOINT_STREAM {
            self.checked.checkpoints += 1;
            self.checked.msg_ids += 1;
            let expected = blake3::hash(&m.payload).to_hex().to_string();
            if m.msg_id.as_deref() != Some(expected.as_str()) {
                self.report(
                    si,
                    Finding {
                        code: Code::HashMismatch,
                        stream: m.stream.clone(),
                        seq: m.seq,
                        chain: None,
                        expected: m.msg_id.clone().or_else(|| Some("(no Nats-Msg-Id)".to_owned())),
                        actual: Some(expected),
                        detail: "the Nats-Msg-Id the signer stored is not the note's BLAKE3 hash".to_owned(),
                    },
                );
            }
            self.streams[si].checkpoints += 1;
            self.checkpoints.push(StoredCheckpoint {
                stream: si,
                seq: m.seq,
                subject: m.subject.clone(),
                payload: m.payload.clone(),
            });
            return;
        }
        let hash = keyledger_events::record_hash(&m.payload);
        // L4: every stored message is the next leaf of its stream's tree, whatever L1–L3 say.
        if let Some(tree) = self.streams[si].tree.as_mut() {
            tree.append(&hash);
        }
        // L3: identical bytes seen before. Judged once, where they first appeared.
        if let Some((first_stream, first_seq)) = self.stored.get(&hash).copied() {
            let first = format!("{}#{first_seq}", self.streams[first_stream].name);
            self.report(
                si,
                Finding {
                    code: Code::ReplayedRecord,
                    stream: m.stream.clone(),
                    seq: m.seq,
                    chain: header(&m.payload).map(|r| position(&r)),
                    expected: Some(format!("first and only copy at {first}")),
                    actual: Some(hex32(&hash)),
                    detail: format!("the exact bytes of {first} are stored again"),
                },
            );
            return;
        }
        self.stored.insert(hash, (si, m.seq));

        // L1: byte-exact decoding.
        let (record, judged) = match keyledger_events::decode(&m.payload) {
            Ok(event) => (Some(event.record), true),
            Err(EventError::UnknownBody { .. }) => {
                self.checked.opaque += 1;
                (header(&m.payload), true)
            }
            Err(e) => {
                let code = match e {
                    EventError::UnknownRecordVersion(_) => Code::UnknownVersion,
                    EventError::NotCanonical(_) => Code::Noncanonical,
                    _ => Code::Decode,
                };
                let record = header(&m.payload);
                self.report(
                    si,
                    Finding {
                        code,
                        stream: m.stream.clone(),
                        seq: m.seq,
                        chain: record.as_ref().map(position),
                        expected: None,
                        actual: Some(hex32(&hash)),
                        detail: format!("the record does not decode byte-exactly: {e}"),
                    },
                );
                (record, false)
            }
        };
        let Some(record) = record else { return };
        self.checked.records += 1;
        let pos = position(&record);

        if judged {
            self.check_msg_id(si, m, &record, &hash, &pos);
            self.check_subject(si, m, &record, &pos);
        }

        // L3: event ids are unique (identical bytes were handled above).
        if let Some(other) = self.event_ids.get(&record.event_id) {
            let other = *other;
            self.report(
                si,
                Finding {
                    code: Code::DuplicateEvent,
                    stream: m.stream.clone(),
                    seq: m.seq,
                    chain: Some(pos.clone()),
                    expected: Some(hex32(&other)),
                    actual: Some(hex32(&hash)),
                    detail: format!("event id {} is on two different records", hex::encode(record.event_id)),
                },
            );
        } else {
            self.event_ids.insert(record.event_id, hash);
        }

        // L2: place the record in its chain.
        let key = ChainKey {
            stream: if record.aggregate_kind == AggregateKind::UsageLane.code() { si } else { usize::MAX },
            kind: record.aggregate_kind,
            account: record.account.clone(),
            id: record.aggregate_id.clone(),
        };
        let slot = Slot { hash, prev: record.prev_hash, stream: si, seq: m.seq, judged };
        let chain = self.chains.entry(key).or_default();
        let highest = chain.slots.last_key_value().map(|(p, s)| (*p, *s));
        match chain.slots.get(&record.aggregate_seq).copied() {
            Some(first) => {
                let at = format!("{}#{}", self.streams[first.stream].name, first.seq);
                self.report(
                    si,
                    Finding {
                        code: Code::ForkInChain,
                        stream: m.stream.clone(),
                        seq: m.seq,
                        chain: Some(pos),
                        expected: Some(hex32(&first.hash)),
                        actual: Some(hex32(&hash)),
                        detail: format!("a second, different record at the chain position of {at}"),
                    },
                );
            }
            None => {
                chain.slots.insert(record.aggregate_seq, slot);
                if let Some((high, high_slot)) = highest.filter(|(high, _)| *high > record.aggregate_seq) {
                    let at = format!("{}#{}", self.streams[high_slot.stream].name, high_slot.seq);
                    self.report(
                        si,
                        Finding {
                            code: Code::ChainBreak,
                            stream: m.stream.clone(),
                            seq: m.seq,
                            chain: Some(pos),
                            expected: Some(format!("position after {high}")),
                            actual: Some(format!("position {}", record.aggregate_seq)),
                            detail: format!("chain position stored after the later position {high} ({at})"),
                        },
                    );
                }
            }
        }
    }

    /// L3: stream sequences contiguous from 1.
    fn positions(&mut self, si: usize, m: &ExportedMessage) {
        let s = &mut self.streams[si];
        s.messages += 1;
        let expected = s.last.map_or(1, |l| l + 1);
        let finding = if m.seq < expected {
            Some((
                format!("sequence after {}", expected - 1),
                format!("{}", m.seq),
                "stream sequences are not increasing".to_owned(),
            ))
        } else if m.seq > expected {
            s.missing += m.seq - expected;
            Some((
                format!("{expected}"),
                format!("{}", m.seq),
                format!("stream sequences {expected}..={} are missing", m.seq - 1),
            ))
        } else {
            None
        };
        s.first.get_or_insert(m.seq);
        s.last = Some(s.last.map_or(m.seq, |l| l.max(m.seq)));
        if let Some((expected, actual, detail)) = finding {
            self.report(
                si,
                Finding {
                    code: Code::GapInStream,
                    stream: m.stream.clone(),
                    seq: m.seq,
                    chain: header(&m.payload).map(|r| position(&r)),
                    expected: Some(expected),
                    actual: Some(actual),
                    detail,
                },
            );
        }
    }

    fn check_msg_id(&mut self, si: usize, m: &ExportedMessage, r: &RecordV1, hash: &[u8; 32], pos: &ChainPosition) {
        self.checked.msg_ids += 1;
        let expected =
            if r.aggregate_kind == AggregateKind::UsageLane.code() { hex32(hash) } else { hex::encode(r.event_id) };
        if m.msg_id.as_deref() != Some(expected.as_str()) {
            let what = if r.aggregate_kind == AggregateKind::UsageLane.code() { "block hash" } else { "event id" };
            self.report(
                si,
                Finding {
                    code: Code::HashMismatch,
                    stream: m.stream.clone(),
                    seq: m.seq,
                    chain: Some(pos.clone()),
                    expected: m.msg_id.clone().or_else(|| Some("(no Nats-Msg-Id)".to_owned())),
                    actual: Some(expected),
                    detail: format!("the Nats-Msg-Id the writer stored is not the record's {what}"),
                },
            );
        }
    }

    fn check_subject(&mut self, si: usize, m: &ExportedMessage, r: &RecordV1, pos: &ChainPosition) {
        let kind = AggregateKind::from_code(r.aggregate_kind).expect("decode checked the kind");
        let expected = if m.stream == names::CONTROL_STREAM && kind != AggregateKind::UsageLane {
            Some(names::control_subject(&r.account, kind, &r.aggregate_id))
        } else if let (Some(period), AggregateKind::UsageLane) =
            (m.stream.strip_prefix(names::USAGE_STREAM_PREFIX), kind)
        {
            Some(names::usage_subject(period, &r.aggregate_id))
        } else {
            None
        };
        if expected.as_deref() != Some(m.subject.as_str()) {
            self.report(
                si,
                Finding {
                    code: Code::SubjectMismatch,
                    stream: m.stream.clone(),
                    seq: m.seq,
                    chain: Some(pos.clone()),
                    expected: Some(expected.unwrap_or_else(|| format!("no {} record in {}", pos.kind, m.stream))),
                    actual: Some(m.subject.clone()),
                    detail: "the record is stored under a subject that is not its aggregate's".to_owned(),
                },
            );
        }
    }

    /// Ends the input: judges every chain's links and gaps and each stream's tail, and returns
    /// the report with the first `max_findings` findings in stream order.
    pub fn finish(mut self, max_findings: usize) -> Report {
        // Messages outside the range the server reported (an altered range header).
        for si in 0..self.streams.len() {
            let s = &self.streams[si];
            let Some(r) = &s.requested else { continue };
            let outside = s.first.is_some_and(|f| f < r.first_seq.max(1)) || s.last.is_some_and(|l| l > r.last_seq);
            if outside {
                let (name, range) = (s.name.clone(), format!("{}..={}", r.first_seq, r.last_seq));
                let present = format!("{}..={}", s.first.unwrap_or(0), s.last.unwrap_or(0));
                self.report(
                    si,
                    Finding {
                        code: Code::RangeMismatch,
                        stream: name,
                        seq: s.first.unwrap_or(0),
                        chain: None,
                        expected: Some(range),
                        actual: Some(present),
                        detail: "messages outside the sequence range recorded for the stream".to_owned(),
                    },
                );
            }
        }
        // Tails the server reported but the input lacks.
        for si in 0..self.streams.len() {
            let s = &self.streams[si];
            let (last_present, requested_last) = (s.last.unwrap_or(0), s.requested.as_ref().map_or(0, |r| r.last_seq));
            if requested_last > last_present {
                let name = s.name.clone();
                self.streams[si].missing += requested_last - last_present;
                self.report(
                    si,
                    Finding {
                        code: Code::GapInStream,
                        stream: name,
                        seq: last_present + 1,
                        chain: None,
                        expected: Some(format!("sequences up to {requested_last}")),
                        actual: Some(format!("last present {last_present}")),
                        detail: format!("stream sequences {}..={requested_last} are missing", last_present + 1),
                    },
                );
            }
        }
        self.judge_commitments();
        let mut chains: Vec<(ChainKey, Chain)> = std::mem::take(&mut self.chains).into_iter().collect();
        chains.sort_by(|a, b| {
            (a.0.stream, a.0.kind, &a.0.account, &a.0.id).cmp(&(b.0.stream, b.0.kind, &b.0.account, &b.0.id))
        });
        self.checked.chains = chains.len() as u64;
        for (key, chain) in &chains {
            self.judge_chain(key, chain);
        }
        let findings_total: u64 = self.counts.values().sum();
        let mut findings = std::mem::take(&mut self.findings);
        findings.sort_by_key(|(si, f)| (*si, f.seq, f.code));
        let findings: Vec<Finding> = findings.into_iter().take(max_findings).map(|(_, f)| f).collect();
        let streams = self
            .streams
            .iter()
            .map(|s| StreamReport {
                stream: s.name.clone(),
                requested: s.requested.as_ref().map(|r| (r.first_seq, r.last_seq, r.messages)),
                present: s.first.zip(s.last),
                messages: s.messages,
                missing: s.missing,
                checkpointed: s.checkpointed,
                checkpoints: s.checkpoints,
            })
            .collect();
        let unanchored_messages: u64 =
            self.streams.iter().filter_map(|s| s.tree.as_ref().map(|t| t.size() - s.checkpointed.min(t.size()))).sum();
        let verdict = if findings_total > 0 {
            Verdict::Violation
        } else if unanchored_messages > 0 || self.anchors.log_key.is_none() {
            Verdict::Unanchored
        } else {
            Verdict::Verified
        };
        Report {
            verifier: format!("keyledger {}", env!("CARGO_PKG_VERSION")),
            verdict,
            streams,
            checked: self.checked.clone(),
            counts: self.counts.clone(),
            findings_total,
            findings,
            unanchored_messages,
            log_key: self.anchors.log_key.as_ref().map(ToString::to_string),
        }
    }

    /// L4: every stored checkpoint, then every trusted one, against the recomputed trees.
    fn judge_commitments(&mut self) {
        let checkpoints = std::mem::take(&mut self.checkpoints);
        let mut last_size: HashMap<(usize, bool), u64> = HashMap::new();
        // The checkpoint stream's own chain (`keyledger-prev` lines), judged with or without
        // the log key.
        let mut previous: Option<(u64, [u8; 32])> = None;
        for c in &checkpoints {
            let named = keyledger_transparency::Note::parse(&c.payload)
                .ok()
                .and_then(|n| keyledger_transparency::Checkpoint::parse(n.text()).ok())
                .and_then(|cp| crate::checkpointer::prev_of(&cp));
            let expected = match previous {
                Some((seq, hash)) if seq + 1 == c.seq => Some(hash),
                None if c.seq == 1 => Some([0; 32]),
                _ => None, // after a gap (reported by L3) the link is not judged
            };
            if let Some(expected) = expected.filter(|e| named != Some(*e)) {
                let name = self.streams[c.stream].name.clone();
                self.report(
                    c.stream,
                    Finding {
                        code: Code::ChainBreak,
                        stream: name,
                        seq: c.seq,
                        chain: None,
                        expected: Some(hex32(&expected)),
                        actual: Some(named.map_or_else(|| "(no keyledger-prev line)".to_owned(), |n| hex32(&n))),
                        detail: "the note does not name the checkpoint stream's previous message: checkpoints were removed, reordered or inserted".to_owned(),
                    },
                );
            }
            previous = Some((c.seq, crate::checkpointer::chain_hash(&c.payload)));
        }
        for c in &checkpoints {
            let name = self.streams[c.stream].name.clone();
            let finding = |code: Code, expected: Option<String>, actual: Option<String>, detail: String| Finding {
                code,
                stream: name.clone(),
                seq: c.seq,
                chain: None,
                expected,
                actual,
                detail,
            };
            let rest = c.subject.strip_prefix(names::CHECKPOINT_SUBJECT_PREFIX).and_then(|r| r.strip_prefix('.'));
            // `<stream>.snapshot`: a snapshot note (a checkpoint of the stream at the snapshot's
            // size with the snapshot line), judged like a checkpoint, in its own sequence.
            let (rest, snapshot) = match rest.and_then(|r| r.strip_suffix(".snapshot")) {
                Some(stream) => (Some(stream), true),
                None => (rest, false),
            };
            let Some(record_stream) = rest.filter(|r| crate::witness::is_stream_name(r)) else {
                let f =
                    finding(Code::BadSignature, None, Some(c.subject.clone()), "not a checkpoint subject".to_owned());
                self.report(c.stream, f);
                continue;
            };
            let Some(log_key) = self.anchors.log_key.clone() else { continue };
            let opened = crate::checkpointer::verifier_for(&log_key, record_stream)
                .ok()
                .and_then(|v| SignedCheckpoint::open(&c.payload, &v).map_err(|e| e.to_string()).ok());
            let Some(signed) = opened else {
                let f = finding(
                    Code::BadSignature,
                    Some(format!(
                        "a checkpoint signed as {}",
                        crate::checkpointer::origin(log_key_name(&log_key), record_stream)
                    )),
                    None,
                    format!("the checkpoint of {record_stream} does not verify under the log key"),
                );
                self.report(c.stream, f);
                continue;
            };
            if snapshot && crate::snapshot::SnapshotClaim::from_checkpoint(signed.checkpoint()).is_none() {
                let f = finding(
                    Code::BadSignature,
                    None,
                    None,
                    "a note on a snapshot subject has no valid snapshot line".to_owned(),
                );
                self.report(c.stream, f);
                continue;
            }
            let size = signed.checkpoint().size;
            let root = signed.checkpoint().root;
            let Some(target) = self.stream_index.get(record_stream).copied() else {
                if size > 0 {
                    let f = finding(
                        Code::Truncated,
                        Some(format!("{size} records in {record_stream}")),
                        Some("no such stream in the input".to_owned()),
                        format!("a checkpoint commits to {size} records of {record_stream}, which is absent"),
                    );
                    self.report(c.stream, f);
                }
                continue;
            };
            if let Some(previous) = last_size.get(&(target, snapshot)).copied().filter(|p| *p > size) {
                let f = finding(
                    Code::Rollback,
                    Some(format!("size ≥ {previous}")),
                    Some(format!("size {size}")),
                    format!("a checkpoint of {record_stream} is smaller than an earlier one"),
                );
                self.report(c.stream, f);
            }
            last_size.insert((target, snapshot), size.max(last_size.get(&(target, snapshot)).copied().unwrap_or(0)));
            self.streams[target].checkpoints += 1;
            if self.commitment(c.stream, c.seq, target, size, &root, Code::RootMismatch, "a stored checkpoint") {
                let s = &mut self.streams[target];
                s.checkpointed = s.checkpointed.max(size);
            }
        }
        for t in self.anchors.trusted.clone() {
            self.checked.trusted += 1;
            let stream = match &self.anchors.log_key {
                Some(k) => crate::checkpointer::stream_of_origin(log_key_name(k), &t.origin).map(str::to_owned),
                None => t.origin.rsplit('/').next().map(str::to_owned),
            };
            let Some(target) = stream.as_deref().and_then(|s| self.stream_index.get(s).copied()) else {
                let si = self.stream(names::CONTROL_STREAM);
                self.report(
                    si,
                    Finding {
                        code: Code::Truncated,
                        stream: stream.clone().unwrap_or_else(|| t.origin.clone()),
                        seq: 0,
                        chain: None,
                        expected: Some(format!("{} records ({})", t.size, t.source)),
                        actual: Some("no such stream in the input".to_owned()),
                        detail: format!("a trusted checkpoint of {} is for a stream the log does not have", t.origin),
                    },
                );
                continue;
            };
            let what = format!("the trusted checkpoint from {}", t.source);
            if self.commitment(target, 0, target, t.size, &t.root, Code::Fork, &what) {
                let s = &mut self.streams[target];
                s.checkpointed = s.checkpointed.max(t.size);
            }
        }
    }

    /// Compares a commitment (size, root) with `target`'s tree; reports TRUNCATED or `code`
    /// against stream `at`, sequence `seq`. True when it holds.
    #[allow(clippy::too_many_arguments)]
    fn commitment(
        &mut self,
        at: usize,
        seq: u64,
        target: usize,
        size: u64,
        root: &[u8; 32],
        code: Code,
        what: &str,
    ) -> bool {
        let name = self.streams[at].name.clone();
        let target_name = self.streams[target].name.clone();
        let Some(tree) = self.streams[target].tree.as_ref() else { return false };
        let leaves = tree.size();
        if size > leaves {
            self.report(
                at,
                Finding {
                    code: Code::Truncated,
                    stream: name,
                    seq,
                    chain: None,
                    expected: Some(format!("at least {size} records in {target_name}")),
                    actual: Some(format!("{leaves} records")),
                    detail: format!("{what} commits to more records than {target_name} holds: its tail was cut off"),
                },
            );
            return false;
        }
        let recomputed = tree.root_at(size).expect("size checked");
        if &recomputed != root {
            self.report(
                at,
                Finding {
                    code,
                    stream: name,
                    seq,
                    chain: None,
                    expected: Some(hex32(root)),
                    actual: Some(hex32(&recomputed)),
                    detail: format!(
                        "{what} of size {size} has another root than {target_name}'s first {size} records: they were changed, removed, inserted or reordered"
                    ),
                },
            );
            return false;
        }
        true
    }

    fn judge_chain(&mut self, key: &ChainKey, chain: &Chain) {
        let Some(kind) = AggregateKind::from_code(key.kind) else { return };
        let pos = |p: u64| ChainPosition {
            kind: kind.subject_token().to_owned(),
            account: key.account.clone(),
            id: key.id.clone(),
            position: p,
        };
        let slots: Vec<(u64, Slot)> = chain.slots.iter().map(|(p, s)| (*p, *s)).collect();
        // Is the link into slots[i] broken? None when not judged (gap, or an L1 failure).
        let link_broken = |i: usize| -> Option<bool> {
            let (p, s) = slots[i];
            if !s.judged {
                return None;
            }
            if i == 0 {
                return (p == 0).then(|| s.prev != keyledger_events::genesis_hash(kind, &key.account, &key.id));
            }
            let (q, before) = slots[i - 1];
            (q + 1 == p && before.judged).then(|| s.prev != before.hash)
        };
        for i in 0..slots.len() {
            let (p, s) = slots[i];
            let name = self.streams[s.stream].name.clone();
            let previous_position = if i == 0 { None } else { Some(slots[i - 1].0) };
            let expected_position = previous_position.map_or(0, |q| q + 1);
            if p > expected_position {
                self.report(
                    s.stream,
                    Finding {
                        code: Code::GapInChain,
                        stream: name.clone(),
                        seq: s.seq,
                        chain: Some(pos(p)),
                        expected: Some(format!("position {expected_position}")),
                        actual: Some(format!("position {p}")),
                        detail: format!("chain positions {expected_position}..={} are missing", p - 1),
                    },
                );
            }
            match link_broken(i) {
                None => {}
                Some(false) => self.checked.links += 1,
                Some(true) => {
                    self.checked.links += 1;
                    let expected = if i == 0 {
                        keyledger_events::genesis_hash(kind, &key.account, &key.id)
                    } else {
                        slots[i - 1].1.hash
                    };
                    self.report(
                        s.stream,
                        Finding {
                            code: Code::ChainBreak,
                            stream: name.clone(),
                            seq: s.seq,
                            chain: Some(pos(p)),
                            expected: Some(hex32(&expected)),
                            actual: Some(hex32(&s.prev)),
                            detail: if i == 0 {
                                "the chain's first record does not name the genesis hash".to_owned()
                            } else {
                                "prev_hash is not the hash of the previous chain position".to_owned()
                            },
                        },
                    );
                    // Which side changed? If this record is itself confirmed by its successor
                    // (or is the chain head), the previous record's bytes changed after this
                    // one was written: locate that as a HASH_MISMATCH.
                    let confirmed = i + 1 >= slots.len() || link_broken(i + 1) != Some(true);
                    if i > 0 && confirmed {
                        let (q, before) = slots[i - 1];
                        {
                            self.report(
                                before.stream,
                                Finding {
                                    code: Code::HashMismatch,
                                    stream: self.streams[before.stream].name.clone(),
                                    seq: before.seq,
                                    chain: Some(pos(q)),
                                    expected: Some(hex32(&s.prev)),
                                    actual: Some(hex32(&before.hash)),
                                    detail: format!(
                                        "the record does not hash to what its successor ({name}#{}) recorded",
                                        s.seq
                                    ),
                                },
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The header of stored bytes when it can be read at all (even non-canonically): for locating
/// a finding and placing a record whose L1 check failed.
fn log_key_name(key: &NoteVerifier) -> &str {
    use keyledger_transparency::note::Verifier as _;
    key.name()
}

fn header(payload: &[u8]) -> Option<RecordV1> {
    let (record, _rest) = postcard::take_from_bytes::<RecordV1>(payload).ok()?;
    (record.magic == MAGIC
        && record.record_version == RECORD_VERSION
        && AggregateKind::from_code(record.aggregate_kind).is_some())
    .then_some(record)
}

fn position(r: &RecordV1) -> ChainPosition {
    ChainPosition {
        kind: AggregateKind::from_code(r.aggregate_kind)
            .map_or_else(|| r.aggregate_kind.to_string(), |k| k.subject_token().to_owned()),
        account: r.account.clone(),
        id: r.aggregate_id.clone(),
        position: r.aggregate_seq,
    }
}

impl Report {
    /// The report as text for a terminal: verdict first, then ranges, counts and findings.
    /// Holds no payload bytes.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.verdict_line());
        for s in &self.streams {
            let requested = s.requested.map_or("(no range recorded)".to_owned(), |(f, l, n)| {
                if n == 0 {
                    "empty".to_owned()
                } else {
                    format!("{f}..={l} ({n} messages)")
                }
            });
            let present = s.present.map_or("none".to_owned(), |(f, l)| format!("{f}..={l}"));
            let anchored = if s.stream == names::CHECKPOINT_STREAM {
                String::new()
            } else if s.checkpointed == 0 {
                "; checkpointed none".to_owned()
            } else {
                format!("; checkpointed 1..={} ({} checkpoints)", s.checkpointed, s.checkpoints)
            };
            let _ = writeln!(
                out,
                "  {}: requested {requested}; present {present} ({} messages, {} missing){anchored}",
                s.stream, s.messages, s.missing
            );
        }
        let c = &self.checked;
        let _ = writeln!(
            out,
            "checked: {} messages, {} records ({} opaque), {} chains, {} links, {} Nats-Msg-Id",
            c.messages, c.records, c.opaque, c.chains, c.links, c.msg_ids
        );
        let counts: Vec<String> = self.counts.iter().map(|(code, n)| format!("{code}={n}")).collect();
        let _ = writeln!(out, "findings: {} ({})", self.findings_total, counts.join(" "));
        for f in &self.findings {
            let chain = f.chain.as_ref().map_or(String::new(), |c| {
                format!(" {}:{}/{}@{}", c.kind, if c.account.is_empty() { "-" } else { &c.account }, c.id, c.position)
            });
            let _ = writeln!(out, "  L{} {} {}#{}{}: {}", f.code.layer(), f.code, f.stream, f.seq, chain, f.detail);
            if let Some(e) = &f.expected {
                let _ = writeln!(out, "      expected {e}");
            }
            if let Some(a) = &f.actual {
                let _ = writeln!(out, "      actual   {a}");
            }
        }
        if (self.findings.len() as u64) < self.findings_total {
            let _ = writeln!(out, "  … {} more findings not listed", self.findings_total - self.findings.len() as u64);
        }
        out
    }

    /// The first line of the text report.
    pub fn verdict_line(&self) -> String {
        match self.verdict {
            Verdict::Verified => format!(
                "VERIFIED: {} records, every one covered by a checkpoint signed by the log key{}",
                self.streams.iter().map(|s| s.checkpointed).sum::<u64>(),
                if self.checked.trusted > 0 { " and consistent with every trusted checkpoint" } else { "" }
            ),
            Verdict::Violation => format!("INTEGRITY VIOLATION: {} findings", self.findings_total),
            Verdict::Unanchored if self.log_key.is_none() => format!(
                "INCOMPLETE: no integrity finding in {} messages, but without the log key (--log-key) no \
                 checkpoint anchors them: a chain alone cannot see records cut off its end",
                self.checked.messages
            ),
            Verdict::Unanchored => format!(
                "INCOMPLETE: no integrity finding, but {} record(s) after the last checkpoint are unanchored \
                 (a cut-off tail would look the same; wait for the next checkpoint, or add --trusted-checkpoint)",
                self.unanchored_messages
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyledger_events::{Body, Draft, PrincipalV1};

    /// Builds a control stream of `n` chained events of one key, as the writer does.
    fn key_chain(n: u64) -> Vec<ExportedMessage> {
        let key = "1234abcd-12ab-34cd-56ef-1234567890ab";
        let account = "111122223333";
        let mut prev = keyledger_events::genesis_hash(AggregateKind::Key, account, key);
        (0..n)
            .map(|i| {
                let mut event_id = [0u8; 16];
                event_id[..8].copy_from_slice(&(i + 1).to_be_bytes());
                let draft = Draft {
                    event_id,
                    account: account.into(),
                    aggregate_kind: AggregateKind::Key,
                    aggregate_id: key.into(),
                    aggregate_seq: i,
                    time_unix_ms: 1_700_000_000_000 + i,
                    principal: PrincipalV1::service(),
                    request_id: [0; 16],
                    prev_hash: prev,
                };
                let body = Body::KeyDisabled(keyledger_events::KeyDisabledV1 {});
                let (bytes, hash) = keyledger_events::encode(&draft, &body).unwrap();
                prev = hash;
                ExportedMessage {
                    stream: names::CONTROL_STREAM.into(),
                    seq: i + 1,
                    subject: names::control_subject(account, AggregateKind::Key, key),
                    time_unix_ns: 0,
                    msg_id: Some(hex::encode(event_id)),
                    payload: bytes,
                }
            })
            .collect()
    }

    fn run(messages: &[ExportedMessage]) -> Report {
        let last = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        run_in_range(last, messages.len() as u64, messages)
    }

    /// Verifies `messages` of the control stream as the server reported it: sequences 1 to
    /// `last_seq`, `count` messages.
    fn run_in_range(last_seq: u64, count: u64, messages: &[ExportedMessage]) -> Report {
        let mut frames = vec![Frame::Stream(StreamRange {
            stream: names::CONTROL_STREAM.into(),
            first_seq: 1,
            last_seq,
            messages: count,
        })];
        frames.extend(messages.iter().cloned().map(Frame::Message));
        Verifier::verify(frames, 100)
    }

    fn codes(r: &Report) -> Vec<(Code, u64)> {
        r.findings.iter().map(|f| (f.code, f.seq)).collect()
    }

    #[test]
    fn an_intact_chain_has_no_finding_but_is_unanchored() {
        let r = run(&key_chain(5));
        assert_eq!(codes(&r), []);
        assert_eq!(r.verdict, Verdict::Unanchored);
        assert_eq!(r.verdict.exit_code(), 2);
        assert_eq!(r.checked.links, 5);
        assert!(r.verdict_line().starts_with("INCOMPLETE"), "{}", r.verdict_line());
    }

    /// Checkpoint-stream messages for the control stream's first `sizes[i]` records of
    /// `messages`, chained (`keyledger-prev`) and with the signer's `Nats-Msg-Id`.
    fn checkpoints(
        key: &crate::checkpointer::LogKey,
        messages: &[ExportedMessage],
        sizes: &[u64],
    ) -> Vec<ExportedMessage> {
        let signer = key.signer_for(names::CONTROL_STREAM).unwrap();
        let mut prev = [0u8; 32];
        let mut out = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let mut tree = MerkleTree::new();
            for m in messages.iter().take(*size as usize) {
                tree.append(&keyledger_events::record_hash(&m.payload));
            }
            let root = if *size as usize > messages.len() { [7; 32] } else { tree.root() };
            let mut c = keyledger_transparency::Checkpoint::new(signer.name(), *size, root);
            c.extensions.push(crate::checkpointer::prev_line(&prev));
            let payload = SignedCheckpoint::sign(c, &signer).unwrap().to_text().into_bytes();
            prev = crate::checkpointer::chain_hash(&payload);
            out.push(ExportedMessage {
                stream: names::CHECKPOINT_STREAM.into(),
                seq: i as u64 + 1,
                subject: names::checkpoint_subject(names::CONTROL_STREAM),
                time_unix_ns: 0,
                msg_id: Some(blake3::hash(&payload).to_hex().to_string()),
                payload,
            });
        }
        out
    }

    fn run_anchored(messages: &[ExportedMessage], checkpoints: &[ExportedMessage], key: NoteVerifier) -> Report {
        let mut v = Verifier::with_anchors(Anchors { log_key: Some(key), trusted: Vec::new() });
        for m in checkpoints.iter().chain(messages) {
            v.message(m);
        }
        v.finish(100)
    }

    #[test]
    fn checkpoints_anchor_a_chain_and_see_its_cut_off_tail() {
        let key = crate::checkpointer::LogKey::generate("test.log/l4").unwrap();
        let chain = key_chain(6);
        let both = checkpoints(&key, &chain, &[4, 6]);
        let r = run_anchored(&chain, &both, key.verifier());
        assert_eq!(codes(&r), []);
        assert_eq!((r.verdict, r.verdict.exit_code()), (Verdict::Verified, 0));
        // Only the first checkpoint: two records unanchored.
        let r = run_anchored(&chain, &both[..1], key.verifier());
        assert_eq!((r.verdict, r.unanchored_messages), (Verdict::Unanchored, 2));
        // The tail cut off: the chain alone is intact, the checkpoint says 6.
        let r = run_anchored(&chain[..4], &both, key.verifier());
        assert_eq!(codes(&r), [(Code::Truncated, 2)]);
        // A size going backwards.
        let r = run_anchored(&chain, &checkpoints(&key, &chain, &[6, 4]), key.verifier());
        assert_eq!(codes(&r), [(Code::Rollback, 2)]);
        // The first checkpoint removed and the second renumbered: the checkpoint chain breaks.
        let mut renumbered = both[1].clone();
        renumbered.seq = 1;
        let r = run_anchored(&chain, &[renumbered], key.verifier());
        assert_eq!(codes(&r), [(Code::ChainBreak, 1)]);
        // A checkpoint's Nats-Msg-Id changed.
        let mut other_id = both.clone();
        other_id[0].msg_id = Some("00".repeat(32));
        let r = run_anchored(&chain, &other_id, key.verifier());
        assert_eq!(codes(&r), [(Code::HashMismatch, 1)]);
        let mut changed = chain.clone();
        changed.swap(4, 5);
        let r = run_anchored(&changed, &both[..1], key.verifier());
        assert!(codes(&r).contains(&(Code::ChainBreak, 5)), "{:?}", codes(&r));
        // Under another key nothing is anchored and each checkpoint is a finding.
        let other = crate::checkpointer::LogKey::generate("test.log/l4").unwrap();
        let r = run_anchored(&chain, &both, other.verifier());
        assert_eq!(codes(&r), [(Code::BadSignature, 1), (Code::BadSignature, 2)]);
    }

    #[test]
    fn messages_outside_the_recorded_range_are_a_finding() {
        let chain = key_chain(3);
        let r = run_in_range(2, 2, &chain);
        assert_eq!(codes(&r), [(Code::RangeMismatch, 1)]);
    }

    /// Throughput on a synthetic log: `cargo test -p keyledger --lib verify::tests::throughput
    /// -- --ignored --nocapture` (records: `KEYLEDGER_VERIFY_RECORDS`, default 200,000).
    #[test]
    #[ignore = "measurement"]
    fn throughput() {
        let n: u64 = std::env::var("KEYLEDGER_VERIFY_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
        let per_chain = 20;
        let mut messages = Vec::with_capacity(n as usize);
        let chain = key_chain(per_chain);
        for c in 0..n / per_chain {
            let id = format!("{c:08x}-0000-4000-8000-000000000000");
            let mut prev = keyledger_events::genesis_hash(AggregateKind::Key, "111122223333", &id);
            for template in &chain {
                let mut record = keyledger_events::decode(&template.payload).unwrap().record;
                record.aggregate_id = id.clone();
                record.event_id[8..16].copy_from_slice(&c.to_be_bytes());
                record.prev_hash = prev;
                let payload = postcard::to_stdvec(&record).unwrap();
                prev = keyledger_events::record_hash(&payload);
                messages.push(ExportedMessage {
                    seq: messages.len() as u64 + 1,
                    subject: names::control_subject("111122223333", AggregateKind::Key, &id),
                    msg_id: Some(hex::encode(record.event_id)),
                    payload,
                    ..template.clone()
                });
            }
        }
        let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
        let started = std::time::Instant::now();
        let r = run(&messages);
        let s = started.elapsed().as_secs_f64();
        assert_eq!(r.findings_total, 0);
        println!(
            "verified {} records ({:.1} MB) in {s:.3} s: {:.0} records/s, {:.1} MB/s",
            messages.len(),
            bytes as f64 / 1e6,
            messages.len() as f64 / s,
            bytes as f64 / 1e6 / s
        );
    }

    #[test]
    fn each_alteration_is_located() {
        let base = key_chain(5);
        // Trailing bytes.
        let mut m = base.clone();
        m[2].payload.push(0);
        assert_eq!(codes(&run(&m)), [(Code::Noncanonical, 3)]);
        // A changed time in the middle: its successor no longer links to it.
        let mut m = base.clone();
        let event = keyledger_events::decode(&m[1].payload).unwrap();
        let mut record = event.record.clone();
        record.time_unix_ms += 1;
        m[1].payload = postcard::to_stdvec(&record).unwrap();
        assert_eq!(codes(&run(&m)), [(Code::HashMismatch, 2), (Code::ChainBreak, 3)]);
        // A deleted record.
        let mut m = base.clone();
        m.remove(2);
        assert_eq!(codes(&run(&m)), [(Code::GapInChain, 4), (Code::GapInStream, 4)]);
        // Swapped payloads.
        let mut m = base.clone();
        let (a, b) = (m[1].payload.clone(), m[2].payload.clone());
        (m[1].payload, m[2].payload) = (b, a);
        let (a, b) = (m[1].msg_id.clone(), m[2].msg_id.clone());
        (m[1].msg_id, m[2].msg_id) = (b, a);
        assert_eq!(codes(&run(&m)), [(Code::ChainBreak, 3)]);
        // A replayed record.
        let mut m = base.clone();
        let mut copy = m[1].clone();
        copy.seq = 6;
        m.push(copy);
        assert_eq!(codes(&run(&m)), [(Code::ReplayedRecord, 6)]);
        // The tail the server reported is missing.
        let r = run_in_range(7, 7, &base);
        assert_eq!(codes(&r), [(Code::GapInStream, 6)]);
        assert_eq!(r.streams[0].missing, 2);
        // A stream the server says held 40 messages, none left.
        let frames = [Frame::Stream(StreamRange {
            stream: "KL_USAGE_V1_202612".into(),
            first_seq: 41,
            last_seq: 40,
            messages: 0,
        })];
        let r = Verifier::verify(frames, 100);
        assert_eq!(codes(&r), [(Code::GapInStream, 1)]);
        assert_eq!(r.streams[0].missing, 40);
    }
}
