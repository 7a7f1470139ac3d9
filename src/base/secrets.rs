//! Secret files: a password or private key every user can read is refused.

/// Secrets (passwords, private keys) readable by every user are refused.
pub fn refuse_world_readable(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(format!(
            "{} is readable by every user; run: chmod o-r {}",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// The first line of a secret file (a password), refused when every user can
/// read it.
pub fn read_secret(path: &std::path::Path) -> Result<String, String> {
    refuse_world_readable(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}
