//! The parts of dkimd that parse what admins write (the configuration file
//! and BIND zone files), as a library so that fuzz targets and tests can
//! reach them. The `dkimd` binary compiles the same modules.
#![forbid(unsafe_code)]

pub mod config;
pub mod zonefile;

/// An error caused by how dkimd was called (bad flag value, unreadable
/// configuration): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a usage error.
pub fn usage<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(msg.into()).into())
}
