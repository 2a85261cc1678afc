//! The pure core of pg_agentidp, shared by the PostgreSQL extension and the sidecar.
//!
//! Nothing here knows about PostgreSQL or does I/O, so every rule the audit trail's integrity
//! rests on can be tested with plain `cargo test` and reused by an offline verifier.

pub mod chain;
pub mod chain_set;
pub mod checkpoint;
pub mod crypto;
pub mod ddl;
pub mod distribution;
pub mod export;
pub mod head_cache;
pub mod merkle;
pub mod savepoints;
pub mod seal;
pub mod tiles;
pub mod verdict;
pub mod witness;
