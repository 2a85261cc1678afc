//! A signing key read from a file, for local development.
//!
//! As ssh does with private keys, a file that its group or others may read, write or execute is
//! refused (before it is read): a checkpoint key anyone on the host can copy would let them sign
//! checkpoints as the log. `chmod 600` (and ownership by the sidecar's user) is what is expected.

use std::path::Path;

use ed25519_dalek::SigningKey;
use secrecy::zeroize::Zeroizing;

use super::{signing_key_from_pem, SignError};

pub(super) async fn read(path: &Path) -> Result<SigningKey, SignError> {
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| SignError::FileUnreadable {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let metadata = tokio::fs::metadata(path).await.map_err(unreadable)?;
    refuse_open_permissions(&metadata, &shown)?;
    // Wiped once parsed: the key's only copy is then the SigningKey's.
    let text = Zeroizing::new(tokio::fs::read_to_string(path).await.map_err(unreadable)?);
    signing_key_from_pem(&text, &format!("key file {shown}"))
}

#[cfg(unix)]
fn refuse_open_permissions(metadata: &std::fs::Metadata, path: &str) -> Result<(), SignError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SignError::KeyFileTooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Elsewhere the file's ACL is the operator's to set.
#[cfg(not(unix))]
fn refuse_open_permissions(_: &std::fs::Metadata, _: &str) -> Result<(), SignError> {
    Ok(())
}
