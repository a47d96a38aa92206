//! # keyledger
//!
//! The roles of Keyledger (keyd, cryptod) as a library, the `keyledger` command line, and
//! `keyledger dev`. The binary in `main.rs` only calls [`cli::main`].
//!
//! - [`roles`] starts roles on a NATS connection and serves the `keyledger` micro service.
//! - [`keyd`] decides management commands and appends events; runs time-driven actions.
//! - [`cryptod`] answers crypto and read operations from the projection.
//! - [`follower`] keeps a projection current by following the control stream.
//! - [`materials`] prepares, fetches, caches and erases key material.
//! - [`gateway`] the AWS KMS JSON 1.1 endpoint over HTTP (SigV4), forwarding to NATS.
//! - [`identity`] turns the server-stamped `Nats-Request-Info` into a caller.
//! - [`protocol`] the NATS API's headers, and a client that reads its own writes.
//! - [`export`] the log export file (`keyledger export`, format in `EXPORT.md`) and reading the
//!   streams for it.
//! - [`snapshot`] projection snapshots committed by signed notes, verified before a cold start.
//! - [`checkpointer`] the Merkle trees over the record streams, signed checkpoints, proofs.
//! - [`verify`] the pure log checker behind `keyledger verify` (record, chain and position
//!   layers, finding codes, report).
//! - [`witness`] `keyledger witness`: a C2SP tlog-witness with its own key and state on disk,
//!   the origin rule for per-stream checkpoints, and the client the checkpointer calls.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auditd;
pub mod checkpointer;
pub mod cli;
pub mod clock;
pub mod cryptod;
pub mod export;
pub mod follower;
pub mod gateway;
pub mod health;
pub mod http_server;
pub mod identity;
pub mod keyd;
pub mod materials;
pub mod pipeline;
pub mod private_file;
pub mod protocol;
pub mod roles;
pub mod snapshot;
pub mod verify;
pub mod witness;
