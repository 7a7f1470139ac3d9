//! Secret files: a password or private key every user can read is refused.

use std::path::{Path, PathBuf};

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Missing or not readable by us.
    #[error("cannot read {} ({reason})", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        reason: std::io::Error,
    },
    /// Every user on the machine can read it.
    #[error("{} is readable by every user; run: chmod o-r {}", path.display(), path.display())]
    WorldReadable {
        /// The file.
        path: PathBuf,
    },
}

/// A password from a file or an environment variable that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The file cannot be used.
    #[error(transparent)]
    File(#[from] SecretError),
    /// The variable named is not set.
    #[error("environment variable {var} (password_env) is not set")]
    EnvUnset {
        /// The variable.
        var: String,
    },
}

/// Secrets (passwords, private keys) readable by every user are refused.
pub fn refuse_world_readable(path: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|reason| SecretError::Unreadable {
        path: path.to_path_buf(),
        reason,
    })?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(SecretError::WorldReadable {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The first line of a secret file (a password), refused when every user can
/// read it.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    refuse_world_readable(path)?;
    let text = std::fs::read_to_string(path).map_err(|reason| SecretError::Unreadable {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}
