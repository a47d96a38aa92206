//! Properties of the proof verifiers (every generated proof verifies, every mutation is refused)
//! and end-to-end scenarios of the witness and of client receipts, through the public API only.

use std::sync::OnceLock;

use keyledger_transparency::*;
use proptest::prelude::*;

/// The BLAKE3-event-hash stand-in for leaf `i`.
fn entry(i: u64) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..8].copy_from_slice(&i.to_be_bytes());
    e[8] = 0xA5;
    e
}

const TREE_LEAVES: u64 = 3000;

fn tree() -> &'static MerkleTree {
    static TREE: OnceLock<MerkleTree> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut t = MerkleTree::new();
        for i in 0..TREE_LEAVES {
            t.append(&entry(i));
        }
        t
    })
}

fn flip(mut h: Hash, byte: usize, bit: u8) -> Hash {
    h[byte % 32] ^= 1 << (bit % 8);
    h
}

fn is_length_error(e: &ProofError) -> bool {
    matches!(e, ProofError::PathTooShort | ProofError::PathTooLong)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_inclusion_proof_verifies_and_every_mutation_is_refused(
        size in 1..=TREE_LEAVES, index_seed: u64, pick: usize, byte: usize, bit: u8, other_size in 1..=TREE_LEAVES,
    ) {
        let t = tree();
        let index = index_seed % size;
        let root = t.root_at(size).unwrap();
        let leaf = leaf_hash(&entry(index));
        let path = t.inclusion_proof(index, size).unwrap();
        prop_assert!(path.len() <= MAX_PROOF_HASHES);
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &path, &root), Ok(()));

        // A flipped bit anywhere in the path, the leaf or the root.
        if !path.is_empty() {
            let mut p = path.clone();
            let k = pick % p.len();
            p[k] = flip(p[k], byte, bit);
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &p, &root), Err(ProofError::RootMismatch));
            // Dropped elements: the last, the first.
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &path[..path.len() - 1], &root), Err(ProofError::PathTooShort));
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &path[1..], &root), Err(ProofError::PathTooShort));
        }
        prop_assert_eq!(verify_inclusion(&flip(leaf, byte, bit), index, size, &path, &root), Err(ProofError::RootMismatch));
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &path, &flip(root, byte, bit)), Err(ProofError::RootMismatch));
        // An added element, at either end.
        let mut longer = path.clone();
        longer.push(root);
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &longer, &root), Err(ProofError::PathTooLong));
        let mut longer = vec![leaf];
        longer.extend_from_slice(&path);
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &longer, &root), Err(ProofError::PathTooLong));
        // Another index of the same tree: a different position, so a different computation.
        for wrong in [index.wrapping_sub(1), index + 1, index ^ 2, index ^ 1] {
            if wrong != index {
                prop_assert!(verify_inclusion(&leaf, wrong, size, &path, &root).is_err(), "index {} for {}", wrong, index);
            }
        }
        prop_assert_eq!(verify_inclusion(&leaf, size, size, &path, &root), Err(ProofError::IndexOutOfRange { index: size, size }));
        // Another size whose audit path for this index has another length is refused for the
        // length alone. (A size with a path of the same shape, e.g. index 0 of sizes 7 and 8,
        // describes the same computation: the root then binds the size, via the checkpoint.)
        if index < other_size && other_size != size {
            let needed = t.inclusion_proof(index, other_size).unwrap().len();
            let got = verify_inclusion(&leaf, index, other_size, &path, &root);
            if needed != path.len() {
                prop_assert!(matches!(&got, Err(e) if is_length_error(e)), "{:?}", got);
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_every_mutation_is_refused(
        new_size in 2..=TREE_LEAVES, old_seed: u64, pick: usize, byte: usize, bit: u8,
    ) {
        let t = tree();
        let old_size = 1 + old_seed % (new_size - 1); // 1 ≤ old < new
        let (r1, r2) = (t.root_at(old_size).unwrap(), t.root_at(new_size).unwrap());
        let proof = t.consistency_proof(old_size, new_size).unwrap();
        prop_assert!(!proof.is_empty() && proof.len() <= MAX_PROOF_HASHES);
        prop_assert_eq!(verify_consistency(old_size, new_size, &proof, &r1, &r2), Ok(()));

        let k = pick % proof.len();
        let mut p = proof.clone();
        p[k] = flip(p[k], byte, bit);
        prop_assert!(verify_consistency(old_size, new_size, &p, &r1, &r2).is_err());
        prop_assert!(verify_consistency(old_size, new_size, &proof, &flip(r1, byte, bit), &r2).is_err());
        prop_assert!(verify_consistency(old_size, new_size, &proof, &r1, &flip(r2, byte, bit)).is_err());
        prop_assert!(verify_consistency(old_size, new_size, &proof, &r2, &r1).is_err(), "swapped roots");
        prop_assert_eq!(verify_consistency(old_size, new_size, &[], &r1, &r2), Err(ProofError::PathTooShort));
        prop_assert_eq!(verify_consistency(old_size, new_size, &proof[..proof.len() - 1], &r1, &r2), Err(ProofError::PathTooShort));
        let mut longer = proof.clone();
        longer.push(r2);
        prop_assert_eq!(verify_consistency(old_size, new_size, &longer, &r1, &r2), Err(ProofError::PathTooLong));
        let mut longer = vec![proof[0]];
        longer.extend_from_slice(&proof);
        prop_assert_eq!(verify_consistency(old_size, new_size, &longer, &r1, &r2), Err(ProofError::PathTooLong));
        prop_assert_eq!(verify_consistency(new_size, old_size, &proof, &r2, &r1), Err(ProofError::OldSizeGreater { old_size: new_size, new_size: old_size }));
        prop_assert_eq!(verify_consistency(0, new_size, &proof, &empty_root(), &r2), Err(ProofError::OldSizeZero));
        prop_assert_eq!(verify_consistency(new_size, new_size, &proof, &r2, &r2), Err(ProofError::SameSizeNonEmptyPath));
        prop_assert_eq!(verify_consistency(old_size, old_size, &[], &r1, &r2), Err(ProofError::SameSizeRootsDiffer));
        // Other sizes whose proofs have another length are refused for the length alone.
        for (m, n) in [(old_size - 1, new_size), (old_size + 1, new_size), (old_size, new_size - 1), (old_size, new_size + 1)] {
            if m == 0 || m >= n || n > TREE_LEAVES {
                continue;
            }
            let needed = t.consistency_proof(m, n).unwrap().len();
            if needed != proof.len() {
                let got = verify_consistency(m, n, &proof, &r1, &r2);
                prop_assert!(matches!(&got, Err(e) if is_length_error(e)), "({}, {}): {:?}", m, n, got);
            }
        }
    }

    #[test]
    fn checkpoints_round_trip_and_notes_never_panic(origin in "[a-z./0-9-]{1,40}", size: u64, root: [u8; 32], junk: Vec<u8>) {
        let c = Checkpoint::new(origin, size, root);
        let text = c.format().unwrap();
        prop_assert_eq!(Checkpoint::parse(&text).unwrap(), c);
        // Arbitrary bytes never panic the decoders.
        let _ = Note::parse(&junk);
        let _ = InclusionProofBundle::parse(&junk);
        let _ = AddCheckpointRequest::parse(&junk);
        let _ = Checkpoint::parse(&String::from_utf8_lossy(&junk));
    }
}

// ---------------------------------------------------------------------------------------------
// Witness scenarios (c2sp.org/tlog-witness add-checkpoint).

const ORIGIN: &str = "keyledger.example/kms-audit/00ff";
const NOW: u64 = 1_800_000_000;

struct Log {
    key: NoteSigner,
    tree: MerkleTree,
}

impl Log {
    fn new(seed: u8) -> Self {
        Self { key: NoteSigner::from_seed(ORIGIN, &[seed; 32]).unwrap(), tree: MerkleTree::new() }
    }

    fn grow_to(&mut self, size: u64) {
        while self.tree.size() < size {
            let i = self.tree.size();
            self.tree.append(&entry(i));
        }
    }

    fn checkpoint(&self, size: u64) -> SignedCheckpoint {
        let c = Checkpoint::new(ORIGIN, size, self.tree.root_at(size).unwrap());
        SignedCheckpoint::sign(c, &self.key).unwrap()
    }

    fn request(&self, old: u64, new: u64) -> AddCheckpointRequest {
        AddCheckpointRequest {
            old_size: old,
            proof: self.tree.consistency_proof(old, new).unwrap(),
            checkpoint: self.checkpoint(new).to_text(),
        }
    }
}

fn witness_key() -> WitnessSigner {
    WitnessSigner::from_seed("witness.keyledger.example/internal", &[42; 32]).unwrap()
}

#[test]
fn witness_cosigns_a_growing_log_and_its_state_survives_json() {
    let mut log = Log::new(1);
    log.grow_to(10);
    let w = witness_key();
    let logs = [log.key.verifier()];

    let first = WitnessState::new().add_checkpoint(&log.request(0, 10), &logs, &w, NOW).unwrap();
    assert_eq!(first.state.head(ORIGIN).unwrap().size, 10);
    let line = first.cosignature.to_line();
    assert!(line.starts_with("\u{2014} witness.keyledger.example/internal "));

    // The service persists the state as JSON and reads it back.
    let state = WitnessState::from_json(&first.state.to_json()).unwrap();
    assert_eq!(state, first.state);

    log.grow_to(37);
    let second = state.add_checkpoint(&log.request(10, 37), &logs, &w, NOW + 5).unwrap();
    assert_eq!(second.state.head(ORIGIN).unwrap().root, log.tree.root_at(37).unwrap());

    // The log attaches the cosignature line; clients verify it with the witness key.
    let mut cp = second.checkpoint.clone();
    cp.add_signature(NoteSignature::parse_line(&second.cosignature.to_line()).unwrap()).unwrap();
    let reopened = SignedCheckpoint::open(cp.to_text().as_bytes(), &log.key.verifier()).unwrap();
    let cosigs = reopened.verify_cosignatures(&[w.verifier()]).unwrap();
    assert_eq!(cosigs.len(), 1);
    assert_eq!(cosigs[0].timestamp_unix_s, NOW + 5);

    // Re-submitting the same checkpoint is idempotent; a cosigned note passes through too.
    let again = AddCheckpointRequest { old_size: 37, proof: vec![], checkpoint: cp.to_text() };
    let third = second.state.add_checkpoint(&again, &logs, &w, NOW + 6).unwrap();
    let (before, after) = (second.state.head(ORIGIN).unwrap(), third.state.head(ORIGIN).unwrap());
    assert_eq!((after.size, after.root), (before.size, before.root));
    assert_eq!(after.checkpoint, cp.to_text()); // the note as last received
}

#[test]
fn witness_answers_409_with_its_size_when_the_old_size_is_stale() {
    let mut log = Log::new(1);
    log.grow_to(20);
    let w = witness_key();
    let logs = [log.key.verifier()];
    let state = WitnessState::new().add_checkpoint(&log.request(0, 12), &logs, &w, NOW).unwrap().state;
    let refusal = state.add_checkpoint(&log.request(5, 20), &logs, &w, NOW).unwrap_err();
    assert_eq!(refusal, WitnessRefusal::SizeConflict { recorded_size: 12 });
    assert_eq!(refusal.http_status(), 409);
    // A client that knew nothing starts with old 0 and learns the size the same way.
    let refusal = state.add_checkpoint(&log.request(0, 20), &logs, &w, NOW).unwrap_err();
    assert_eq!(refusal, WitnessRefusal::SizeConflict { recorded_size: 12 });
}

#[test]
fn witness_refuses_a_fork_with_evidence_of_both_checkpoints() {
    let mut honest = Log::new(1);
    honest.grow_to(8);
    let w = witness_key();
    let logs = [honest.key.verifier()];
    let state = WitnessState::new().add_checkpoint(&honest.request(0, 8), &logs, &w, NOW).unwrap().state;

    // The log key is stolen and a rewritten history of the same size is signed.
    let mut forged = Log { key: NoteSigner::from_seed(ORIGIN, &[1; 32]).unwrap(), tree: MerkleTree::new() };
    forged.tree.append(&[0xEE; 32]);
    forged.grow_to(8);
    let refusal = state.add_checkpoint(&forged.request(8, 8), &logs, &w, NOW).unwrap_err();
    assert_eq!(refusal.http_status(), 409);
    let WitnessRefusal::Fork(evidence) = &refusal else { panic!("{refusal:?}") };
    assert_eq!(evidence.recorded.as_ref().unwrap().checkpoint, honest.checkpoint(8).to_text());
    assert_eq!(evidence.presented_checkpoint, forged.checkpoint(8).to_text());

    // A larger forged tree cannot be proved consistent: 422, with the evidence kept.
    forged.grow_to(12);
    let refusal = state.add_checkpoint(&forged.request(8, 12), &logs, &w, NOW).unwrap_err();
    assert_eq!(refusal.http_status(), 422);
    // (8 is a power of two, so the recorded root is the proof's first node: the new root fails.)
    assert!(matches!(refusal, WitnessRefusal::InvalidProof { error: ProofError::NewRootMismatch, .. }));
    assert!(refusal.evidence().is_some());
}

#[test]
fn witness_refusals_map_to_the_tlog_witness_statuses() {
    let mut log = Log::new(1);
    log.grow_to(16);
    let w = witness_key();
    let logs = [log.key.verifier()];
    let state = WitnessState::new().add_checkpoint(&log.request(0, 9), &logs, &w, NOW).unwrap().state;

    // 404: nobody configured this origin.
    let stranger = NoteSigner::from_seed("other.example/log", &[3; 32]).unwrap();
    let cp = SignedCheckpoint::sign(Checkpoint::new("other.example/log", 1, [0; 32]), &stranger).unwrap();
    let req = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: cp.to_text() };
    assert_eq!(state.add_checkpoint(&req, &logs, &w, NOW).unwrap_err().http_status(), 404);

    // 403: the right origin, signed by another key (unknown, ignored: nothing verifies).
    let impostor = Log::new(2);
    let mut req = log.request(9, 16);
    req.checkpoint = sign_with(log.checkpoint(16).body(), &impostor.key);
    let refusal = state.add_checkpoint(&req, &logs, &w, NOW).unwrap_err();
    assert_eq!(refusal, WitnessRefusal::BadLogSignature(NoteError::NoVerifiedSignature));
    assert_eq!(refusal.http_status(), 403);
    // 403: a signature by the log key that does not verify.
    let mut req = log.request(9, 16);
    req.checkpoint = req.checkpoint.replacen("16\n", "17\n", 1);
    assert!(matches!(
        state.add_checkpoint(&req, &logs, &w, NOW),
        Err(WitnessRefusal::BadLogSignature(NoteError::InvalidSignature { .. }))
    ));

    // 400: old size beyond the checkpoint (a size regression), or a malformed checkpoint.
    let req = AddCheckpointRequest { old_size: 9, proof: vec![], checkpoint: log.checkpoint(5).to_text() };
    let refusal = state.add_checkpoint(&req, &logs, &w, NOW).unwrap_err();
    assert_eq!(refusal, WitnessRefusal::OldSizeTooLarge { old_size: 9, size: 5 });
    assert_eq!(refusal.http_status(), 400);
    let req = AddCheckpointRequest { old_size: 9, proof: vec![], checkpoint: "not a note\n".into() };
    assert_eq!(state.add_checkpoint(&req, &logs, &w, NOW).unwrap_err().http_status(), 400);

    // 422: a proof that does not verify, a proof sent with old size 0.
    let mut req = log.request(9, 16);
    req.proof[0][0] ^= 1;
    assert_eq!(state.add_checkpoint(&req, &logs, &w, NOW).unwrap_err().http_status(), 422);
    let mut req = log.request(0, 16);
    req.proof.push([0; 32]);
    assert_eq!(WitnessState::new().add_checkpoint(&req, &logs, &w, NOW).unwrap_err().http_status(), 422);
    // A size-0 checkpoint must carry the empty root.
    let req = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: log.checkpoint(0).to_text() };
    WitnessState::new().add_checkpoint(&req, &logs, &w, NOW).unwrap();
    let bad0 = SignedCheckpoint::sign(Checkpoint::new(ORIGIN, 0, [1; 32]), &log.key).unwrap();
    let req = AddCheckpointRequest { old_size: 0, proof: vec![], checkpoint: bad0.to_text() };
    assert_eq!(WitnessState::new().add_checkpoint(&req, &logs, &w, NOW).unwrap_err().http_status(), 422);
}

fn sign_with(body: &str, key: &NoteSigner) -> String {
    sign(body, &[key]).unwrap()
}

#[test]
fn add_checkpoint_requests_parse_strictly() {
    let mut log = Log::new(1);
    log.grow_to(100);
    let req = log.request(40, 100);
    let text = req.to_text();
    assert!(text.starts_with("old 40\n"));
    assert_eq!(AddCheckpointRequest::parse(text.as_bytes()).unwrap(), req);

    let body = log.checkpoint(100).to_text();
    let h = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n";
    for bad in [
        format!("old 040\n\n{body}"),
        format!("old -1\n\n{body}"),
        format!("Old 4\n\n{body}"),
        format!("old 4\n{body}"), // no empty line
        format!("old 4\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw\n\n{body}"),
        format!("old 4\n{}\n{body}", h.repeat(MAX_WITNESS_PROOF_LINES + 1)),
    ] {
        let refusal = AddCheckpointRequest::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(refusal.http_status(), 400, "{bad:?}");
    }
    assert!(
        AddCheckpointRequest::parse(format!("old 4\n{}\n{body}", h.repeat(MAX_WITNESS_PROOF_LINES)).as_bytes()).is_ok()
    );
}

#[test]
fn witness_state_json_is_strict() {
    assert!(WitnessState::from_json(r#"{"version":1,"logs":{}}"#).is_ok());
    assert!(WitnessState::from_json(r#"{"version":2,"logs":{}}"#).is_err());
    assert!(WitnessState::from_json(r#"{"version":1,"logs":{},"extra":1}"#).is_err());
    assert!(WitnessState::from_json(r#"{"version":1,"logs":{"o":{"size":1,"root":"AAAA","checkpoint":""}}}"#).is_err());
}

// ---------------------------------------------------------------------------------------------
// Client receipts (c2sp.org/tlog-proof@v1).

#[test]
fn a_receipt_verifies_for_its_entry_only() {
    let mut log = Log::new(1);
    log.grow_to(1000);
    let signed = log.checkpoint(777);
    let bundle = InclusionProofBundle::new(500, log.tree.inclusion_proof(500, 777).unwrap(), &signed);
    let text = bundle.encode();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 500\n"));
    let parsed = InclusionProofBundle::parse(text.as_bytes()).unwrap();
    assert_eq!(parsed, bundle);

    let vk = log.key.verifier();
    let receipt = verify_receipt(&parsed, &entry(500), &vk).unwrap();
    assert_eq!((receipt.origin.as_str(), receipt.index, receipt.size), (ORIGIN, 500, 777));
    assert_eq!(receipt.root, log.tree.root_at(777).unwrap());

    assert_eq!(verify_receipt(&parsed, &entry(501), &vk), Err(ReceiptError::Proof(ProofError::RootMismatch)));
    let mut wrong_index = parsed.clone();
    wrong_index.index = 777;
    assert_eq!(
        verify_receipt(&wrong_index, &entry(500), &vk),
        Err(ReceiptError::Proof(ProofError::IndexOutOfRange { index: 777, size: 777 }))
    );
    let mut short = parsed.clone();
    short.path.pop();
    assert_eq!(verify_receipt(&short, &entry(500), &vk), Err(ReceiptError::Proof(ProofError::PathTooShort)));
    let other_key = Log::new(9).key.verifier();
    assert_eq!(
        verify_receipt(&parsed, &entry(500), &other_key),
        Err(ReceiptError::Checkpoint(CheckpointError::Note(NoteError::NoVerifiedSignature)))
    );
    // A checkpoint with a size lied about fails the log signature.
    let mut lied = parsed.clone();
    lied.checkpoint = lied.checkpoint.replacen("\n777\n", "\n778\n", 1);
    assert!(matches!(verify_receipt(&lied, &entry(500), &vk), Err(ReceiptError::Checkpoint(_))));
    // Size 0: nothing is included.
    let empty = InclusionProofBundle::new(0, vec![], &log.checkpoint(0));
    assert_eq!(verify_receipt(&empty, &entry(0), &vk), Err(ReceiptError::Proof(ProofError::EmptyTree)));
}

#[test]
fn receipts_carry_cosignatures_and_extra_data() {
    let mut log = Log::new(1);
    log.grow_to(3);
    let w = witness_key();
    let update = WitnessState::new().add_checkpoint(&log.request(0, 3), &[log.key.verifier()], &w, NOW).unwrap();
    let mut signed = update.checkpoint;
    signed.add_signature(update.cosignature).unwrap();
    let mut bundle = InclusionProofBundle::new(2, log.tree.inclusion_proof(2, 3).unwrap(), &signed);
    bundle.extra = Some(b"request-id 1234".to_vec());
    let parsed = InclusionProofBundle::parse(bundle.encode().as_bytes()).unwrap();
    assert_eq!(parsed, bundle);
    let receipt = verify_receipt(&parsed, &entry(2), &log.key.verifier()).unwrap();
    let cosigs = receipt.checkpoint.verify_cosignatures(&[w.verifier()]).unwrap();
    assert_eq!(cosigs[0].timestamp_unix_s, NOW);
}

#[test]
fn the_tlog_proof_spec_example_splits_into_its_parts() {
    // The example of c2sp.org/tlog-proof (signature lines shortened there, so only the
    // structure is checked, not the checkpoint's signatures).
    let text = "c2sp.org/tlog-proof@v1\n\
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n\
index 73894\n\
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n\
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n\
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n\
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\
\n\
example.com/fancylog\n\
109482\n\
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\
\n\
\u{2014} example.com/fancylog hI2DJw[...]1roloI=\n";
    let b = InclusionProofBundle::parse(text.as_bytes()).unwrap();
    assert_eq!(b.index, 73894);
    assert_eq!(b.path.len(), 5);
    assert!(b.extra.is_some());
    assert!(b.checkpoint.starts_with("example.com/fancylog\n109482\n"));
    assert_eq!(b.encode(), text);
}

#[test]
fn malformed_receipts_are_refused() {
    let mut log = Log::new(1);
    log.grow_to(4);
    let good = InclusionProofBundle::new(1, log.tree.inclusion_proof(1, 4).unwrap(), &log.checkpoint(4)).encode();
    let hash = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n";
    let cp = log.checkpoint(4).to_text();
    for bad in [
        good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        good.replacen("index 1", "index 01", 1),
        good.replacen("index 1", "index  1", 1),
        good.replacen("index 1\n", "", 1),
        format!("c2sp.org/tlog-proof@v1\nextra \nindex 1\n\n{cp}"),
        format!("c2sp.org/tlog-proof@v1\nindex 1\n{}\n{cp}", hash.repeat(MAX_PROOF_HASHES + 1)),
        format!("c2sp.org/tlog-proof@v1\nindex 1\n{hash}"), // no empty line
        "c2sp.org/tlog-proof@v1".to_string(),
    ] {
        assert!(matches!(InclusionProofBundle::parse(bad.as_bytes()), Err(ReceiptError::Malformed(_))), "{bad:?}");
    }
}
