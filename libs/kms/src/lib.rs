//! # keyledger-kms
//!
//! Keyledger's AWS KMS rulebook, as pure functions over a projection of the event log
//! (STYLE.md, "The Decider"):
//!
//! - [`error`]: AWS error names, HTTP statuses and exact messages ([`KmsError`]);
//! - [`ids`]: realm, key ids, ARNs and key-reference resolution ([`parse_key_ref`]);
//! - [`api`]: operations, typed requests parsed from AWS JSON with AWS's validation errors
//!   ([`parse_request`]), response shapes;
//! - [`state`]: the [`Projection`] (every account's keys, tombstones, aliases and chain heads)
//!   with [`Projection::apply`] (chain checks + evolve) and [`Projection::state_digest`];
//! - [`decide`](mod@decide): management commands and time-driven actions → at most one event
//!   ([`decide()`], [`due_actions`], [`material_needed`]);
//! - [`query`](mod@query): read operations and management replies;
//! - [`crypto_rules`]: which key and material a crypto request may use;
//! - [`policy`]: key policies — parsing, evaluation, the default policy and the lockout
//!   safety check ([`KeyPolicy`], [`RequestContext`]);
//! - [`access`]: the access decision every key operation goes through — key policy, then
//!   grants ([`authorize`]).
//!
//! Invariants: this crate does no I/O, reads no clock and makes no randomness — time, fresh ids
//! and freshly wrapped material come in through [`Ctx`]. No secret reaches an error message or
//! `Debug` output ([`Secret`]). State = fold(events): the projection changes only through
//! `Projection::apply`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod calendar;
pub mod crypto_rules;
pub mod decide;
pub mod error;
mod evolve;
pub mod ids;
pub mod policy;
pub mod query;
pub mod secret;
pub mod state;

pub use access::{authorize, Access, Authorization, Grant, GrantConstraint, GrantOperation, PolicySlot};
pub use api::response;
pub use api::{parse_request, EncryptionContext, Operation, Request, Role};
pub use crypto_rules::{check_encryption_algorithm, resolve_for_crypto, resolve_for_decrypt, CryptoKey};
pub use decide::{
    decide, due_actions, import_parameters_target, import_target, material_needed, Caller, Command, Ctx, Decision,
    ImportedMaterial, Limits, MaterialNeed, IMPORT_PARAMETERS_VALIDITY_MS, MAX_IMPORT_VALIDITY_MS,
};
pub use error::{ErrorKind, KmsError};
pub use ids::{parse_key_ref, KeyId, KeyRef, Realm};
pub use policy::{default_key_policy, lockout_check, KeyPolicy, RequestContext};
pub use query::{management_response, query};
pub use secret::Secret;
pub use state::{
    AggregateHead, Applied, ApplyError, ImportState, Key, KeyState, Projection, SnapshotError,
    MAX_OPEN_IMPORT_PARAMETERS, SNAPSHOT_MAGIC,
};
