//! Where signed checkpoints go besides the database, out of its operators' reach: a directory
//! that a WORM store (S3 Object Lock through a sync agent) takes in, and C2SP witnesses.

pub mod directory;
pub mod witness;
