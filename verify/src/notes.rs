//! Checkpoint notes: the log's signature (agentidp_core::checkpoint) and the witnesses'
//! cosignatures (agentidp_core::witness), read from the files the sidecar publishes.

use std::fs;
use std::path::{Path, PathBuf};

use agentidp_core::checkpoint;
use agentidp_core::merkle::Hash;
use agentidp_core::witness;
use signed_note::{Note, NoteError, StandardVerifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;

use crate::failure::{Failure, Kind, Stop, Unusable};

/// The log's verifier keys (`name+hash+base64`); a checkpoint must be signed by one of them.
#[derive(Debug, Clone)]
pub struct LogKeys(Vec<String>);

impl LogKeys {
    /// Checks each key's syntax now, so that a typo is reported as one rather than as a checkpoint
    /// that does not verify.
    pub fn new(keys: &[String]) -> Result<LogKeys, Unusable> {
        for key in keys {
            StandardVerifier::new(key)
                .map_err(|e| Unusable::Usage(format!("--key {key:?}: {e}")))?;
        }
        Ok(LogKeys(keys.to_vec()))
    }
}

/// The witnesses' cosignature/v1 keys and how many of them must cosign every checkpoint.
pub struct Witnesses {
    verifiers: VerifierList,
    quorum: usize,
}

impl Witnesses {
    pub fn new(keys: &[String], quorum: usize) -> Result<Witnesses, Unusable> {
        let mut keys = keys.to_vec();
        // The same key twice would make the note library call it ambiguous and count it once.
        keys.sort_unstable();
        keys.dedup();
        if quorum > keys.len() {
            return Err(Unusable::Usage(format!(
                "--quorum {quorum} needs at least {quorum} --witness-key, {} given",
                keys.len()
            )));
        }
        let verifiers = keys
            .iter()
            .map(|key| {
                witness::cosignature_verifier(key)
                    .map_err(|e| Unusable::Usage(format!("--witness-key {key:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Witnesses {
            verifiers: VerifierList::new(verifiers),
            quorum,
        })
    }

    /// No witness keys and no quorum, for the subcommands that check only the log's signature.
    pub fn none() -> Witnesses {
        Witnesses {
            verifiers: VerifierList::new(Vec::new()),
            quorum: 0,
        }
    }
}

/// A checkpoint whose log signature, cosignatures and quorum hold.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    pub file: PathBuf,
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub signed_by: Vec<String>,
    pub cosigned_by: Vec<String>,
}

impl SignedCheckpoint {
    /// Whether the checkpoint is of the chain `chain_id`: its origin is `<log name>/<chain id>`.
    pub fn is_of_chain(&self, chain_id: &str) -> bool {
        agentidp_core::checkpoint::chain_of_origin(&self.origin) == Some(chain_id)
    }

    /// One line of the human report.
    pub fn summary(&self) -> String {
        let cosigners = if self.cosigned_by.is_empty() {
            "none".to_owned()
        } else {
            self.cosigned_by.join(", ")
        };
        format!(
            "checkpoint {} ({}): origin {}, root {}, signed by {}, cosigned by {}",
            self.size,
            self.file.display(),
            self.origin,
            self.root,
            self.signed_by.join(", "),
            cosigners
        )
    }
}

/// Reads the note in `path` and checks its log signature, its cosignatures and the quorum.
pub fn read_checkpoint(
    path: &Path,
    keys: &LogKeys,
    witnesses: &Witnesses,
) -> Result<SignedCheckpoint, Stop> {
    let text = fs::read_to_string(path).map_err(|e| Unusable::read(path, e))?;
    let note = Note::from_bytes(text.as_bytes())
        .map_err(|e| Unusable::malformed(path, format!("not a signed note: {e}")))?;
    // Read before the signature is checked, only to name the checkpoint if it fails.
    let claimed = Checkpoint::from_bytes(note.text())
        .map_err(|e| Unusable::malformed(path, format!("not a checkpoint: {e}")))?;
    let keys: Vec<&str> = keys.0.iter().map(String::as_str).collect();
    let verified = checkpoint::verify(&text, &keys).map_err(|e| {
        Failure::checkpoint(
            claimed.size(),
            Kind::BadSignature,
            format!("{}: {e}", path.display()),
        )
    })?;
    let cosigned_by = match note.verify(&witnesses.verifiers) {
        Ok((cosignatures, _others)) => cosignatures.iter().map(|s| s.name().to_owned()).collect(),
        Err(NoteError::UnverifiedNote) => Vec::new(),
        Err(e) => {
            return Err(Failure::checkpoint(
                verified.size,
                Kind::BadCosignature,
                format!("{}: {e}", path.display()),
            )
            .into())
        }
    };
    if cosigned_by.len() < witnesses.quorum {
        return Err(Failure::checkpoint(
            verified.size,
            Kind::NoQuorum,
            format!(
                "{}: {} of the {} witnesses required cosigned it",
                path.display(),
                cosigned_by.len(),
                witnesses.quorum
            ),
        )
        .into());
    }
    Ok(SignedCheckpoint {
        file: path.to_owned(),
        origin: verified.origin,
        size: verified.size,
        root: verified.root,
        signed_by: verified.signed_by,
        cosigned_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint_with_origin(origin: &str) -> SignedCheckpoint {
        SignedCheckpoint {
            file: PathBuf::from("cp"),
            origin: origin.to_owned(),
            size: 1,
            root: Hash::default(),
            signed_by: vec![],
            cosigned_by: vec![],
        }
    }

    #[test]
    fn the_origin_names_the_chain_after_the_log() {
        let cp = checkpoint_with_origin("agentidp.example/org:acme");
        assert!(cp.is_of_chain("org:acme"));
        assert!(!cp.is_of_chain("acme"));
        assert!(!cp.is_of_chain("org:acm"));
        assert!(!cp.is_of_chain("global"));
        assert!(!checkpoint_with_origin("/global").is_of_chain("global"));
        assert!(!checkpoint_with_origin("global").is_of_chain("global"));
        // Log names hold no '/': the chain is all after the first one (agentidp_core::checkpoint).
        assert!(checkpoint_with_origin("a/org:x/y").is_of_chain("org:x/y"));
        assert!(!checkpoint_with_origin("a/b/org:x").is_of_chain("org:x"));
    }

    #[test]
    fn a_quorum_larger_than_the_witnesses_is_a_usage_error() {
        assert!(matches!(
            Witnesses::new(&[], 1),
            Err(Unusable::Usage(message)) if message.contains("--quorum 1")
        ));
        assert!(Witnesses::new(&[], 0).is_ok());
    }

    #[test]
    fn malformed_keys_are_usage_errors() {
        assert!(LogKeys::new(&["nonsense".to_owned()]).is_err());
        assert!(Witnesses::new(&["nonsense".to_owned()], 0).is_err());
    }
}
