//! Submitting signed checkpoints to C2SP tlog-witnesses (`POST <url>/add-checkpoint`). The
//! request and response formats are `agentidp_core::witness`'s; this is the HTTP around them.
//! A cosignature is kept only if it verifies with the witness's configured key.

use std::time::Duration;

use agentidp_core::merkle::Hash;
use agentidp_core::witness::{
    add_checkpoint_request, cosignature_verifier, parse_conflict_size, parse_cosignatures,
    with_cosignatures,
};
use signed_note::{Note, VerifierList};

use crate::settings::WitnessConfig;

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness {witness} is unreachable: {cause}")]
    Unreachable { witness: String, cause: String },
    #[error("witness {witness} refused the checkpoint with HTTP {status}: {body}")]
    Refused {
        witness: String,
        status: u16,
        body: String,
    },
    #[error("witness {witness} answered with a cosignature that does not verify with its key")]
    BadCosignature { witness: String },
    #[error("witness {witness} answered malformed: {cause}")]
    Malformed { witness: String, cause: String },
}

/// What a witness said to one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Cosigned: its cosignature lines, verified.
    Cosigned(Vec<String>),
    /// It holds another latest size for the log (409): submit again with a proof from there.
    Conflict(u64),
}

pub struct WitnessClient {
    pub config: WitnessConfig,
    http: reqwest::Client,
}

impl WitnessClient {
    pub fn new(config: WitnessConfig, timeout: Duration) -> Result<WitnessClient, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the witness client: {e}"))?;
        Ok(WitnessClient { config, http })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Submits `note`, the checkpoint of a tree of some size, with the consistency proof from
    /// `old_size` (what the witness last cosigned for the log, 0 the first time).
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        note: &str,
    ) -> Result<Answer, WitnessError> {
        let witness = || self.config.name.clone();
        let url = self
            .config
            .url
            .join("add-checkpoint")
            .map_err(|e| WitnessError::Malformed {
                witness: witness(),
                cause: e.to_string(),
            })?;
        let response = self
            .http
            .post(url)
            .body(add_checkpoint_request(old_size, proof, note))
            .send()
            .await
            .map_err(|e| WitnessError::Unreachable {
                witness: witness(),
                cause: e.without_url().to_string(),
            })?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| WitnessError::Unreachable {
                witness: witness(),
                cause: e.without_url().to_string(),
            })?;
        match status {
            200 => self.verified(note, &body).map(Answer::Cosigned),
            409 => parse_conflict_size(&body)
                .map(Answer::Conflict)
                .map_err(|e| WitnessError::Malformed {
                    witness: witness(),
                    cause: e.to_string(),
                }),
            _ => Err(WitnessError::Refused {
                witness: witness(),
                status,
                body: body.chars().take(200).collect(),
            }),
        }
    }

    /// The cosignature lines of `body`, each checked against the witness's key over `note`.
    fn verified(&self, note: &str, body: &str) -> Result<Vec<String>, WitnessError> {
        let bad = || WitnessError::BadCosignature {
            witness: self.config.name.clone(),
        };
        let lines: Vec<String> = parse_cosignatures(body)
            .map_err(|e| WitnessError::Malformed {
                witness: self.config.name.clone(),
                cause: e.to_string(),
            })?
            .iter()
            .map(|s| String::from_utf8_lossy(&s.to_bytes()).trim_end().to_owned())
            .collect();
        let cosigned = with_cosignatures(note, &lines).map_err(|_| bad())?;
        let verifier = cosignature_verifier(&self.config.vkey).map_err(|_| bad())?;
        let parsed = Note::from_bytes(cosigned.as_bytes()).map_err(|_| bad())?;
        let (verified, _) = parsed
            .verify(&VerifierList::new(vec![verifier]))
            .map_err(|_| bad())?;
        if !verified.iter().any(|s| s.name() == self.config.name) {
            return Err(bad());
        }
        Ok(lines)
    }
}
