//! The offline verifier of pg_agentidp's evidence: no database, only the files an auditor is
//! given. The rules it applies (the event hash, the tree, the note formats) are agentidp-core's;
//! this crate reads the files and reports.

pub mod bundle;
pub mod export_file;
pub mod failure;
pub mod notes;
pub mod proofs;
pub mod tiles;
