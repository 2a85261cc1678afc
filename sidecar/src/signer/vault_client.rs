//! The Vault client of the transit and KV sources (`crate::vault_http`, as the key source builds
//! it), and vaultrs' errors as [`SignError`]s.

use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

use super::SignError;
use crate::settings::VaultConfig;
use crate::vault_http::{self, Failure};

pub(super) fn client(config: &VaultConfig) -> Result<VaultClient, SignError> {
    vault_http::client(config).map_err(|f| SignError::VaultUnreachable {
        addr: config.addr.clone(),
        reason: f.reason,
    })
}

/// `path` is what the request was for, as the error message names it.
pub(super) fn classify(addr: &str, path: &str, error: ClientError) -> SignError {
    let path = path.to_owned();
    match vault_http::classify(error) {
        Failure::NotFound => SignError::NotFound { path },
        Failure::PermissionDenied => SignError::PermissionDenied { path },
        Failure::Unavailable(status) => SignError::VaultUnavailable { path, status },
        Failure::Rejected(status) => SignError::VaultRejected { path, status },
        Failure::Unreachable(reason) => SignError::VaultUnreachable {
            addr: addr.to_owned(),
            reason,
        },
        Failure::Malformed => SignError::MalformedResponse {
            path,
            reason: "not a Vault API answer".to_owned(),
        },
    }
}
