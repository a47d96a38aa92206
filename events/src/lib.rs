//! # keyledger-events
//!
//! The records of Keyledger's log: one frozen header ([`RecordV1`]), typed bodies registered by
//! `(body_type, body_version)` ([`Body`]), their postcard encoding, and the BLAKE3 hash chain
//! that links each record to the previous record of its aggregate.
//!
//! Encode once, hash those bytes, store those bytes ([`encode`]); [`decode`] accepts only bytes
//! that round-trip byte for byte. Golden vectors in `tests/golden/` pin the format.
//!
//! This crate does no I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
pub mod names;
mod record;

pub use body::*;
pub use record::*;

/// Why a record could not be encoded or decoded. Messages never contain record contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The bytes do not start with [`MAGIC`].
    #[error("not a Keyledger record (bad magic)")]
    BadMagic,
    /// A record version this build does not read.
    #[error("unknown record version {0}")]
    UnknownRecordVersion(u16),
    /// An aggregate kind code this build does not know.
    #[error("unknown aggregate kind {0}")]
    UnknownAggregateKind(u16),
    /// A `(body_type, body_version)` this build does not know.
    #[error("unknown body type {body_type} version {body_version}")]
    UnknownBody {
        /// Registry code.
        body_type: u16,
        /// Version.
        body_version: u16,
    },
    /// postcard could not decode the bytes.
    #[error("malformed record: {0}")]
    Decode(String),
    /// postcard could not encode the value.
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// The bytes decode but are not the one canonical encoding.
    #[error("non-canonical encoding: {0}")]
    NotCanonical(&'static str),
    /// A bounded field (named) is over its limit.
    #[error("{0} is too large")]
    TooLarge(&'static str),
}
