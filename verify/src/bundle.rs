//! `bundle`: an export of one chain, checked on its own (every hash and link) and against the
//! checkpoints the log signed over it.

use std::path::{Path, PathBuf};

use agentidp_core::chain::BreakKind;
use agentidp_core::merkle::{self, Tree};

use crate::export_file::{self, Export};
use crate::failure::{Failure, Kind, Stop, Unusable};
use crate::notes::{self, LogKeys, SignedCheckpoint, Witnesses};
use crate::tiles::{self, TileDir};

/// What `bundle` is given.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub events: PathBuf,
    pub checkpoints: Vec<PathBuf>,
    pub keys: Vec<String>,
    pub witness_keys: Vec<String>,
    pub quorum: usize,
    pub tiles: Option<PathBuf>,
}

/// Verifies the bundle, appending the human report to `report` as it goes.
pub fn verify(bundle: &Bundle, report: &mut Vec<String>) -> Result<(), Stop> {
    let keys = LogKeys::new(&bundle.keys)?;
    let witnesses = Witnesses::new(&bundle.witness_keys, bundle.quorum)?;
    let (export, tree) = export_file::read(&bundle.events)?;
    if export.event_ids.is_empty() {
        return Err(
            Unusable::malformed(&bundle.events, "holds no event: a chain starts at seq 1").into(),
        );
    }
    report.push(format!(
        "events: {} of chain {}, every hash and link verified",
        export.event_ids.len(),
        export.chain_id
    ));
    let mut checkpoints = bundle
        .checkpoints
        .iter()
        .map(|path| notes::read_checkpoint(path, &keys, &witnesses))
        .collect::<Result<Vec<_>, _>>()?;
    checkpoints.sort_by_key(|cp| cp.size);
    let mut agreed: Option<&SignedCheckpoint> = None;
    for cp in &checkpoints {
        check_against_export(cp, agreed, &export, &tree, bundle.tiles.as_deref())?;
        report.push(format!("{}: ok", cp.summary()));
        agreed = Some(cp);
    }
    Ok(())
}

/// Checks one checkpoint against the export; `agreed` is the largest checkpoint before it
/// (smaller or equal in size) that the export matched.
fn check_against_export(
    cp: &SignedCheckpoint,
    agreed: Option<&SignedCheckpoint>,
    export: &Export,
    tree: &Tree,
    tiles: Option<&Path>,
) -> Result<(), Failure> {
    if !cp.is_of_chain(&export.chain_id) {
        return Err(Failure::checkpoint(
            cp.size,
            Kind::WrongOrigin,
            format!(
                "{}: origin {} is not of chain {}",
                cp.file.display(),
                cp.origin,
                export.chain_id
            ),
        ));
    }
    if let Some(earlier) = agreed.filter(|earlier| earlier.origin != cp.origin) {
        return Err(Failure::checkpoint(
            cp.size,
            Kind::WrongOrigin,
            format!(
                "{}: origin {} differs from checkpoint {}'s, {}",
                cp.file.display(),
                cp.origin,
                earlier.size,
                earlier.origin
            ),
        ));
    }
    if cp.size > tree.size() {
        return Err(Failure::checkpoint(
            cp.size,
            Kind::Chain(BreakKind::Truncated),
            format!(
                "the export ends at seq {}, before the signed tree does",
                tree.size()
            ),
        ));
    }
    let root = tree
        .root(cp.size)
        .map_err(|e| Failure::checkpoint(cp.size, Kind::RootMismatch, format!("no root: {e}")))?;
    if root != cp.root {
        return Err(locate_rewrite(cp, agreed, export, tree, tiles));
    }
    match agreed {
        // The empty tree is a prefix of every tree, and RFC 9162 has no proof for it.
        Some(earlier) if earlier.size > 0 => {
            // Redundant once both roots are the export's, but it runs the proof check the
            // `consistency` subcommand relies on over every bundle.
            let proof = tree
                .consistency_proof(earlier.size, cp.size)
                .and_then(|proof| {
                    merkle::verify_consistency(&proof, earlier.size, earlier.root, cp.size, cp.root)
                });
            proof.map_err(|e| {
                Failure::checkpoint(
                    cp.size,
                    Kind::Inconsistent,
                    format!("with checkpoint {}: {e}", earlier.size),
                )
            })
        }
        _ => Ok(()),
    }
}

/// Names where the export departs from what `cp` signed: the first rewritten event, from the
/// log's tiles, or else the range of seqs it must lie in.
fn locate_rewrite(
    cp: &SignedCheckpoint,
    agreed: Option<&SignedCheckpoint>,
    export: &Export,
    tree: &Tree,
    tiles: Option<&Path>,
) -> Failure {
    let agreed_size = agreed.map_or(0, |earlier| earlier.size);
    let mut detail = String::new();
    if let Some(dir) = tiles {
        match tiles::first_differing_leaf(&TileDir::new(dir), cp.size, cp.root, tree) {
            Ok(Some(leaf)) if leaf < agreed_size => {
                return Failure::checkpoint(
                    cp.size,
                    Kind::Inconsistent,
                    format!(
                        "it signed another event at seq {} than checkpoint {} did",
                        leaf + 1,
                        agreed_size
                    ),
                )
            }
            Ok(Some(leaf)) => {
                if let Some((id, seq)) = export.event_at(leaf) {
                    return Failure::event(
                        id,
                        seq,
                        Kind::Chain(BreakKind::Rewritten),
                        format!("checkpoint {} signed another event here", cp.size),
                    );
                }
            }
            Ok(None) => detail = "; the tiles hold the export's leaves".to_owned(),
            Err(e) => detail = format!("; the tiles did not help: {e}"),
        }
    }
    if agreed_size == cp.size {
        return Failure::checkpoint(
            cp.size,
            Kind::Inconsistent,
            format!("another checkpoint of this size has another root{detail}"),
        );
    }
    Failure::checkpoint(
        cp.size,
        Kind::RootMismatch,
        format!(
            "rewritten within seqs {}-{}{detail}",
            agreed_size + 1,
            cp.size
        ),
    )
}

#[cfg(test)]
mod tests {
    use agentidp_core::export::EventId;

    use super::*;

    fn export(n: u8) -> (Export, Tree) {
        let hashes: Vec<[u8; 32]> = (1..=n).map(|i| [i; 32]).collect();
        let export = Export {
            chain_id: "org:acme".to_owned(),
            event_ids: (1..=n).map(|i| EventId([i; 16])).collect(),
        };
        (export, Tree::of(&hashes))
    }

    fn signed(size: u64, root: merkle::Hash) -> SignedCheckpoint {
        SignedCheckpoint {
            file: PathBuf::from(format!("cp{size}")),
            origin: "log.example/org:acme".to_owned(),
            size,
            root,
            signed_by: vec!["log.example".to_owned()],
            cosigned_by: vec![],
        }
    }

    fn check(
        cp: &SignedCheckpoint,
        agreed: Option<&SignedCheckpoint>,
        (export, tree): &(Export, Tree),
    ) -> Result<(), Failure> {
        check_against_export(cp, agreed, export, tree, None)
    }

    #[test]
    fn checkpoints_of_the_exported_tree_hold() {
        let export = export(9);
        let tree = &export.1;
        let four = signed(4, tree.root(4).expect("root"));
        let nine = signed(9, tree.root(9).expect("root"));
        assert_eq!(check(&four, None, &export), Ok(()));
        assert_eq!(check(&nine, Some(&four), &export), Ok(()));
        assert_eq!(check(&nine, Some(&nine), &export), Ok(()));
        assert_eq!(
            check(&signed(0, tree.root(0).expect("root")), None, &export),
            Ok(())
        );
    }

    #[test]
    fn a_root_mismatch_names_the_range_after_the_last_agreed_checkpoint() {
        let export = export(9);
        let tree = &export.1;
        let four = signed(4, tree.root(4).expect("root"));
        let forged = signed(9, merkle::Hash([7; 32]));
        let failure = check(&forged, Some(&four), &export).expect_err("mismatch");
        assert_eq!(failure.kind, Kind::RootMismatch);
        assert_eq!(failure.detail, "rewritten within seqs 5-9");
        let failure = check(&forged, None, &export).expect_err("mismatch");
        assert_eq!(failure.detail, "rewritten within seqs 1-9");
        let twin = signed(4, merkle::Hash([7; 32]));
        let failure = check(&twin, Some(&four), &export).expect_err("mismatch");
        assert_eq!(failure.kind, Kind::Inconsistent);
    }

    #[test]
    fn a_checkpoint_beyond_the_export_or_of_another_chain_fails() {
        let export = export(3);
        let tree = &export.1;
        let failure = check(&signed(4, merkle::Hash([1; 32])), None, &export).expect_err("cut");
        assert_eq!(failure.kind, Kind::Chain(BreakKind::Truncated));
        let mut other = signed(3, tree.root(3).expect("root"));
        other.origin = "log.example/global".to_owned();
        let failure = check(&other, None, &export).expect_err("other chain");
        assert_eq!(failure.kind, Kind::WrongOrigin);
        let earlier = signed(2, tree.root(2).expect("root"));
        other.origin = "other.example/org:acme".to_owned();
        let failure = check(&other, Some(&earlier), &export).expect_err("other log");
        assert_eq!(failure.kind, Kind::WrongOrigin);
    }
}
