//! Runs the built `agentidp-verify` on evidence made with agentidp-core.

mod bundle;
mod common;
mod proofs;
