//! Reading private key files safely.

use crate::error::{err, Context};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Loads a private key, refusing a file that other users can read.
pub fn load_private_key(path: &Path) -> crate::Result<dkim::SigningKey> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err!(
            "key file {} has mode {:04o}: a private key must not be readable by group or others (chmod 600 {})",
            path.display(),
            mode,
            path.display()
        ));
    }
    let text =
        std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    dkim::SigningKey::from_pem(&text).with_context(|| format!("key file {}", path.display()))
}
