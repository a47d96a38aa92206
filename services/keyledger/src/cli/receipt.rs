//! `keyledger verify-receipt`: checks an inclusion proof offline, with only the log's verifier
//! key (`keyledger checkpoint key`). No connection to anything.
//!
//! Input: the JSON `GET /v1/audit/proof/{id}` answers (`keyledger audit proof ID`), or a bare
//! `c2sp.org/tlog-proof@v1` text. The leaf entry is the BLAKE3 hash of the stored message that
//! holds the record: `--event-hash` when the caller knows it independently (it hashed the
//! record bytes itself), else the JSON's `event_hash` (then the proof shows that *the log*
//! committed to that message at that position, as the server described it).

use std::path::PathBuf;
use std::process::ExitCode;

use keyledger_transparency::{verify_receipt, InclusionProofBundle, NoteVerifier};

use super::logcheck::EXIT_IO;

/// `keyledger verify-receipt` arguments.
#[derive(clap::Args, Debug)]
pub struct VerifyReceiptArgs {
    /// The proof file (JSON from `keyledger audit proof`, or tlog-proof text); `-` for stdin.
    pub proof: PathBuf,
    /// The log's verifier key (what `keyledger checkpoint key` prints), or `@FILE`.
    #[arg(long)]
    pub log_key: String,
    /// The record message's BLAKE3 hash (64 hex characters), when known independently.
    #[arg(long)]
    pub event_hash: Option<String>,
    /// The stream the reply named (`Keyledger-Audit-Stream`): the proof must be for it.
    #[arg(long)]
    pub stream: Option<String>,
    /// The stream sequence the reply named (`Keyledger-Audit-Seq`): the proof must be for it.
    #[arg(long)]
    pub seq: Option<u64>,
    /// A witness's verifier key (`keyledger witness key`), or `@FILE`: the checkpoint must carry
    /// its valid cosignature. Repeatable (each is required). Without one, the proof rests on the
    /// log key alone, which a thief of that key could forge.
    #[arg(long)]
    pub witness_key: Vec<String>,
}

/// What was proven.
#[derive(Debug, PartialEq, Eq)]
pub struct Proven {
    /// Record stream (from the checkpoint origin).
    pub stream: String,
    /// Stream sequence (leaf index + 1).
    pub seq: u64,
    /// The signed tree size.
    pub size: u64,
    /// The checkpoint origin.
    pub origin: String,
    /// Witnesses whose cosignature verified (names), with their timestamps (POSIX seconds).
    pub cosigned_by: Vec<(String, u64)>,
}

/// Checks `text` (JSON or tlog-proof) under the base log key.
///
/// # Errors
/// A message for a human: why the proof does not hold.
pub fn check(
    text: &str,
    log_key: &NoteVerifier,
    witnesses: &[keyledger_transparency::WitnessVerifier],
    args: &VerifyReceiptArgs,
) -> Result<Proven, String> {
    use keyledger_transparency::note::Verifier as _;
    let (proof_text, json) = if text.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not a proof JSON: {e}"))?;
        let p = v["proof"].as_str().ok_or("the JSON has no \"proof\"")?.to_owned();
        (p, Some(v))
    } else {
        (text.to_owned(), None)
    };
    let bundle = InclusionProofBundle::parse(proof_text.as_bytes()).map_err(|e| e.to_string())?;
    let origin = bundle_origin(&bundle)?;
    let stream = crate::checkpointer::stream_of_origin(log_key.name(), &origin)
        .ok_or_else(|| format!("the checkpoint's origin {origin:?} is not this log's ({}/<stream>)", log_key.name()))?
        .to_owned();
    let verifier = crate::checkpointer::verifier_for(log_key, &stream).map_err(|e| e.to_string())?;
    let hash_hex = match (&args.event_hash, json.as_ref().and_then(|j| j["event_hash"].as_str())) {
        (Some(h), _) => h.clone(),
        (None, Some(h)) => h.to_owned(),
        (None, None) => return Err("a bare proof needs --event-hash".to_owned()),
    };
    let entry: [u8; 32] = hex::decode(hash_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the event hash must be 64 hex characters")?;
    let verified = verify_receipt(&bundle, &entry, &verifier).map_err(|e| format!("the proof does not hold: {e}"))?;
    let seq = verified.index + 1;
    if let Some(j) = &json {
        if j["stream"].as_str() != Some(stream.as_str()) || j["seq"].as_u64() != Some(seq) {
            return Err(format!("the JSON's stream and seq are not the proof's ({stream}#{seq})"));
        }
    }
    if args.stream.as_deref().is_some_and(|s| s != stream) || args.seq.is_some_and(|s| s != seq) {
        return Err(format!("the proof is for {stream}#{seq}, not the position given"));
    }
    let mut cosigned_by = Vec::new();
    if !witnesses.is_empty() {
        let signed = keyledger_transparency::SignedCheckpoint::open(bundle.checkpoint.as_bytes(), &verifier)
            .map_err(|e| e.to_string())?;
        for w in witnesses {
            let found = signed.verify_cosignatures(std::slice::from_ref(w)).unwrap_or_default();
            let Some(c) = found.first() else {
                return Err(format!("the checkpoint has no valid cosignature by witness {}", w.name()));
            };
            cosigned_by.push((w.name().to_owned(), c.timestamp_unix_s));
        }
    }
    Ok(Proven { stream, seq, size: verified.size, origin, cosigned_by })
}

/// The origin line of the checkpoint inside a tlog-proof (after the index and path lines).
fn bundle_origin(bundle: &InclusionProofBundle) -> Result<String, String> {
    let note = keyledger_transparency::Note::parse(bundle.checkpoint.as_bytes()).map_err(|e| e.to_string())?;
    let checkpoint = keyledger_transparency::Checkpoint::parse(note.text()).map_err(|e| e.to_string())?;
    Ok(checkpoint.origin)
}

/// Runs `keyledger verify-receipt`.
pub fn run(args: &VerifyReceiptArgs) -> ExitCode {
    let read = |p: &std::path::Path| {
        if p.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(p)
        }
    };
    let text = match read(&args.proof) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.proof.display());
            return ExitCode::from(EXIT_IO);
        }
    };
    let key = match crate::witness::parse_log_key_arg(&args.log_key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_IO);
        }
    };
    let mut witnesses = Vec::new();
    for w in &args.witness_key {
        let text = match w.strip_prefix('@') {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {path}: {e}");
                    return ExitCode::from(EXIT_IO);
                }
            },
            None => w.clone(),
        };
        match keyledger_transparency::WitnessVerifier::parse(text.trim()) {
            Ok(v) => witnesses.push(v),
            Err(e) => {
                eprintln!("error: --witness-key: {e}");
                return ExitCode::from(EXIT_IO);
            }
        }
    }
    match check(&text, &key, &witnesses, args) {
        Ok(p) => {
            println!(
                "PROVEN: the message at {}#{} (leaf {}) is in the log of {} records signed by {}",
                p.stream,
                p.seq,
                p.seq - 1,
                p.size,
                p.origin
            );
            for (name, t) in &p.cosigned_by {
                println!("  cosigned by witness {name} at {t} (POSIX seconds)");
            }
            println!(
                "  (the proof covers that stored message; that it holds your request's record rests on the reply that \
                 named this position — the JSON's request_id and record_id are not part of the proof)"
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("NOT PROVEN: {why}");
            ExitCode::from(1)
        }
    }
}
