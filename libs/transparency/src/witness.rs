//! A pure tlog-witness (`c2sp.org/tlog-witness`, `add-checkpoint`): the request format, the
//! witness's state and the state transition. No I/O and no clock: the service reads the state
//! file, passes `now`, and persists the returned state atomically *before* answering (the
//! spec's race: checking the old size and storing the new one must be one atomic step).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{decode_hash, encode_hash, parse_decimal};
use crate::merkle::{empty_root, verify_consistency};
use crate::note::{open, Verifier, MAX_NOTE_BYTES};
use crate::{Checkpoint, Hash, Note, NoteSignature, NoteVerifier, ProofError, SignedCheckpoint, WitnessSigner};

/// Most consistency proof lines in an `add-checkpoint` request (the spec: clients MUST NOT send
/// more than 63).
pub const MAX_WITNESS_PROOF_LINES: usize = 63;
/// Largest `add-checkpoint` request body: a note of [`MAX_NOTE_BYTES`] plus the old size and
/// proof lines.
pub const MAX_ADD_CHECKPOINT_BYTES: usize = MAX_NOTE_BYTES + 4096;
/// Version of the [`WitnessState`] JSON.
pub const WITNESS_STATE_VERSION: u32 = 1;

/// An `add-checkpoint` request: old size, consistency proof, signed checkpoint.
///
/// Body text: `"old " ‖ decimal old size ‖ "\n"`, zero to 63 lines of one base64 hash each,
/// an empty line, then the signed checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// The size of the latest checkpoint the client believes the witness cosigned (0 if none).
    pub old_size: u64,
    /// The RFC 6962 consistency proof from `old_size` to the checkpoint's size (empty when
    /// `old_size` is 0).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl AddCheckpointRequest {
    /// Parses a request body strictly (sizes as checkpoints, hashes as 44 characters of
    /// padded standard base64).
    ///
    /// # Errors
    /// [`WitnessRefusal::BadRequest`] (HTTP 400) for any other shape, more than
    /// [`MAX_WITNESS_PROOF_LINES`] proof lines or more than [`MAX_ADD_CHECKPOINT_BYTES`].
    pub fn parse(body: &[u8]) -> Result<Self, WitnessRefusal> {
        let bad = |why: &'static str| WitnessRefusal::BadRequest(why);
        if body.len() > MAX_ADD_CHECKPOINT_BYTES {
            return Err(bad("request too large"));
        }
        let body = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        let (first, mut rest) = body.split_once('\n').ok_or(bad("no old size line"))?;
        let old_size = first.strip_prefix("old ").and_then(parse_decimal).ok_or(bad("old size line"))?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest.split_once('\n').ok_or(bad("no empty line before the checkpoint"))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_WITNESS_PROOF_LINES {
                return Err(bad("too many proof lines"));
            }
            proof.push(decode_hash(line).ok_or(bad("proof line is not a base64 hash"))?);
        }
        Ok(Self { old_size, proof, checkpoint: rest.to_owned() })
    }

    /// The request body text.
    pub fn to_text(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&encode_hash(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }
}

/// What the witness last cosigned for one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHead {
    /// Tree size.
    pub size: u64,
    /// Root hash, as padded standard base64 in JSON.
    #[serde(with = "hash_b64")]
    pub root: Hash,
    /// The signed checkpoint note as received (log signature and any lines sent with it): the
    /// witness's half of the evidence if the log later equivocates.
    pub checkpoint: String,
}

/// The witness's whole state: for each log origin, the latest checkpoint it cosigned.
///
/// JSON form: `{"version":1,"logs":{"<origin>":{"size":N,"root":"<base64>","checkpoint":"…"}}}`
/// (unknown fields refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessState {
    version: u32,
    logs: BTreeMap<String, LogHead>,
}

impl Default for WitnessState {
    fn default() -> Self {
        Self { version: WITNESS_STATE_VERSION, logs: BTreeMap::new() }
    }
}

/// Evidence of log misbehaviour, kept when a correctly signed checkpoint cannot be cosigned:
/// the checkpoint the witness had cosigned and the one presented, with the proof offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The log origin.
    pub origin: String,
    /// What the witness had cosigned (absent for a first checkpoint).
    pub recorded: Option<LogHead>,
    /// The presented signed checkpoint note, verbatim (its log signature verified).
    pub presented_checkpoint: String,
    /// The old size of the request.
    pub old_size: u64,
    /// The consistency proof of the request.
    pub proof: Vec<Hash>,
}

/// Why the witness refused to cosign; each maps to the HTTP status tlog-witness prescribes
/// ([`http_status`](Self::http_status)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    /// 400: the request or the checkpoint is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// 404: no log key is configured for this origin.
    #[error("unknown log origin {origin:?}")]
    UnknownOrigin {
        /// The checkpoint's origin.
        origin: String,
    },
    /// 403: no signature by a trusted log key verifies (or one fails).
    #[error("checkpoint not signed by a trusted log key: {0}")]
    BadLogSignature(crate::NoteError),
    /// 400: the old size is larger than the checkpoint size (a size regression).
    #[error("old size {old_size} is larger than the checkpoint size {size}")]
    OldSizeTooLarge {
        /// The request's old size.
        old_size: u64,
        /// The checkpoint size.
        size: u64,
    },
    /// 409: the old size is not the size the witness last cosigned; the body answered is
    /// `recorded_size` in decimal and a newline (`Content-Type: text/x.tlog.size`).
    #[error("old size does not match: the witness's latest cosigned size is {recorded_size}")]
    SizeConflict {
        /// The size of the latest checkpoint cosigned for this origin (0 if none).
        recorded_size: u64,
    },
    /// 409: same size as the latest cosigned checkpoint but another root: a fork.
    #[error("fork: same size, different root")]
    Fork(Box<Evidence>),
    /// 422: the consistency proof does not verify (or is not empty for old size 0, or a size-0
    /// checkpoint does not carry the empty root).
    #[error("consistency proof does not verify: {error}")]
    InvalidProof {
        /// What failed.
        error: ProofError,
        /// The two checkpoints and the proof.
        evidence: Box<Evidence>,
    },
}

impl WitnessRefusal {
    /// The HTTP status of this refusal per tlog-witness: 400, 403, 404, 409 or 422.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::OldSizeTooLarge { .. } => 400,
            Self::BadLogSignature(_) => 403,
            Self::UnknownOrigin { .. } => 404,
            Self::SizeConflict { .. } | Self::Fork(_) => 409,
            Self::InvalidProof { .. } => 422,
        }
    }

    /// The evidence worth keeping, for a correctly signed checkpoint that could not be cosigned.
    pub fn evidence(&self) -> Option<&Evidence> {
        match self {
            Self::Fork(e) | Self::InvalidProof { evidence: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// A successful `add-checkpoint`: the state to persist and the cosignature to answer.
#[derive(Debug, Clone)]
pub struct WitnessUpdate {
    /// The new state; persist it atomically before answering.
    pub state: WitnessState,
    /// The cosignature; its [`NoteSignature::to_line`] is the 200 response body.
    pub cosignature: NoteSignature,
    /// The accepted checkpoint (log signature verified).
    pub checkpoint: SignedCheckpoint,
}

impl WitnessState {
    /// A witness that has cosigned nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest checkpoint cosigned for `origin`.
    pub fn head(&self, origin: &str) -> Option<&LogHead> {
        self.logs.get(origin)
    }

    /// Every log the witness has cosigned, by origin (sorted).
    pub fn heads(&self) -> impl Iterator<Item = (&str, &LogHead)> {
        self.logs.iter().map(|(o, h)| (o.as_str(), h))
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the state serializes")
    }

    /// Reads the JSON form.
    ///
    /// # Errors
    /// A JSON error for malformed JSON, unknown fields, a root that is not 32 bytes of base64,
    /// or a version other than [`WITNESS_STATE_VERSION`].
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let state: Self = serde_json::from_str(json)?;
        if state.version != WITNESS_STATE_VERSION {
            return Err(serde::de::Error::custom(format!("unknown witness state version {}", state.version)));
        }
        Ok(state)
    }

    /// The tlog-witness `add-checkpoint` decision, in the spec's order:
    /// 1. the checkpoint note and text parse (else 400);
    /// 2. some configured log key is named after the origin (else 404; Keyledger names log
    ///    keys after their origin);
    /// 3. a signature by one of those keys verifies and none fails (else 403);
    /// 4. `old_size ≤ size` (else 400);
    /// 5. `old_size` equals the size last cosigned for the origin, 0 if none (else 409 with
    ///    that size);
    /// 6. equal sizes need an empty proof and the recorded root (else 409 fork, or 422 for a
    ///    non-empty proof); `old_size` 0 needs an empty proof (a size-0 checkpoint, the empty
    ///    root); otherwise [`verify_consistency`] from the recorded root (else 422);
    /// 7. cosign at `now_unix_s` with `witness` and return the new state.
    ///
    /// # Errors
    /// The [`WitnessRefusal`] of the first failed step.
    pub fn add_checkpoint(
        &self,
        request: &AddCheckpointRequest,
        log_verifiers: &[NoteVerifier],
        witness: &WitnessSigner,
        now_unix_s: u64,
    ) -> Result<WitnessUpdate, WitnessRefusal> {
        let msg = request.checkpoint.as_bytes();
        let note = Note::parse(msg).map_err(|_| WitnessRefusal::BadRequest("malformed checkpoint note"))?;
        let parsed = Checkpoint::parse(note.text()).map_err(|_| WitnessRefusal::BadRequest("malformed checkpoint"))?;
        let origin = parsed.origin.clone();
        let keys: Vec<&dyn Verifier> =
            log_verifiers.iter().filter(|v| v.name() == origin).map(|v| v as &dyn Verifier).collect();
        if keys.is_empty() {
            return Err(WitnessRefusal::UnknownOrigin { origin });
        }
        let opened = open(msg, &keys).map_err(WitnessRefusal::BadLogSignature)?;
        let signed = SignedCheckpoint::from_verified(parsed.clone(), opened.note);

        let size = parsed.size;
        if request.old_size > size {
            return Err(WitnessRefusal::OldSizeTooLarge { old_size: request.old_size, size });
        }
        let recorded = self.logs.get(&origin);
        let recorded_size = recorded.map_or(0, |h| h.size);
        if request.old_size != recorded_size {
            return Err(WitnessRefusal::SizeConflict { recorded_size });
        }
        let evidence = || {
            Box::new(Evidence {
                origin: origin.clone(),
                recorded: recorded.cloned(),
                presented_checkpoint: request.checkpoint.clone(),
                old_size: request.old_size,
                proof: request.proof.clone(),
            })
        };
        let invalid = |error| WitnessRefusal::InvalidProof { error, evidence: evidence() };
        match recorded {
            Some(head) if head.size == size => {
                if head.root != parsed.root {
                    return Err(WitnessRefusal::Fork(evidence()));
                }
                if !request.proof.is_empty() {
                    return Err(invalid(ProofError::SameSizeNonEmptyPath));
                }
            }
            _ if request.old_size == 0 => {
                if !request.proof.is_empty() {
                    return Err(invalid(ProofError::PathTooLong));
                }
                if size == 0 && parsed.root != empty_root() {
                    return Err(invalid(ProofError::NewRootMismatch));
                }
            }
            Some(head) => {
                verify_consistency(head.size, size, &request.proof, &head.root, &parsed.root).map_err(invalid)?;
            }
            None => unreachable!("old size is nonzero and equals the recorded size, so a head exists"),
        }

        let cosignature = witness
            .cosign(note.text(), now_unix_s)
            .map_err(|_| WitnessRefusal::BadRequest("cannot cosign (timestamp beyond 2^63 - 1)"))?;
        let mut state = self.clone();
        state.logs.insert(origin, LogHead { size, root: parsed.root, checkpoint: request.checkpoint.clone() });
        Ok(WitnessUpdate { state, cosignature, checkpoint: signed })
    }
}

mod hash_b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::checkpoint::{decode_hash, encode_hash};
    use crate::Hash;

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode_hash(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        decode_hash(&s).ok_or_else(|| serde::de::Error::custom("root is not 32 bytes of padded base64"))
    }
}
