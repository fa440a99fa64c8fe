//! `[store]`: which store holds dkimd's state. Unset, it is SQLite in the
//! state directory; a `postgresql://` URL shares one store between the
//! mail servers of a fleet.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// SQLite in this file (`sqlite:PATH`; the default is
    /// `STATE_DIR/dkimd.sqlite`).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgresql://user@host:port/database`), the
    /// password not in the URL but in `store.password_file`.
    Postgres(PgUrl),
}

/// A checked `postgresql://` URL without a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl StoreUrl {
    /// Parses `sqlite:PATH` or `postgresql://…` (also `postgres://…`).
    pub fn parse(s: &str) -> Result<StoreUrl, String> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "sqlite: needs a file path (sqlite:/var/lib/dkimd/dkimd.sqlite)".into(),
                );
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgresql://") || s.starts_with("postgres://") {
            let cfg: postgres::Config = s
                .parse()
                .map_err(|e| format!("{s:?} is not a PostgreSQL URL: {e}"))?;
            if cfg.get_password().is_some() {
                return Err(
                    "the URL carries a password: put it in store.password_file (mode 0600) instead, so that the configuration file can stay readable"
                        .into(),
                );
            }
            if cfg.get_dbname().is_none() {
                return Err(format!(
                    "{s:?} names no database (postgresql://USER@HOST:PORT/DATABASE)"
                ));
            }
            return Ok(StoreUrl::Postgres(PgUrl(s.to_string())));
        }
        Err(format!(
            "{s:?} is not a store URL: postgresql://USER@HOST:PORT/DATABASE or sqlite:PATH"
        ))
    }

    /// The URL as an admin writes it.
    pub fn display(&self) -> String {
        match self {
            StoreUrl::Sqlite(p) => format!("sqlite:{}", p.display()),
            StoreUrl::Postgres(u) => u.0.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for StoreUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StoreUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The store; unset: SQLite in the state directory.
    #[serde(default)]
    pub url: Option<StoreUrl>,
    /// A file (mode 0600) whose first line is the PostgreSQL password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The key-encryption key (mode 0600) that private keys are encrypted
    /// with in PostgreSQL; made by `dkimd store new-key-file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// While the fleet changes its key-encryption key: the old file, still
    /// used to open keys not yet sealed with `key_file`.
    #[serde(default)]
    pub previous_key_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate (TLS off
    /// loopback); unset: the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This node's name in `dkimd nodes`; unset: the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Seconds between a daemon's heartbeats in the node registry.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: u64,
    /// Seconds between checks of the store's change counter, beside
    /// LISTEN/NOTIFY (which tells at once).
    #[serde(default = "default_poll")]
    pub poll_interval: u64,
}

fn default_heartbeat() -> u64 {
    5
}

fn default_poll() -> u64 {
    5
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            password_file: None,
            key_file: None,
            previous_key_file: None,
            ca_file: None,
            node_name: None,
            heartbeat: default_heartbeat(),
            poll_interval: default_poll(),
        }
    }
}

impl StoreConfig {
    /// The store this configuration names, with the default for a state
    /// directory.
    pub fn url_in(&self, state_dir: &Path) -> StoreUrl {
        self.url
            .clone()
            .unwrap_or_else(|| StoreUrl::Sqlite(state_dir.join("dkimd.sqlite")))
    }

    /// This node's name: `node_name`, else the host name.
    pub fn node(&self) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if let Some(StoreUrl::Postgres(_)) = &self.url {
            if self.key_file.is_none() {
                return Err(
                    "store.key_file is needed with a PostgreSQL store (private keys are encrypted with it): make one with `dkimd store new-key-file /etc/dkimd/store.key`"
                        .into(),
                );
            }
        }
        if self.heartbeat == 0 || self.poll_interval == 0 {
            return Err(
                "store.heartbeat and store.poll_interval must be at least 1 (seconds)".into(),
            );
        }
        if let Some(n) = &self.node_name {
            if n.is_empty() || n.len() > 64 || n.chars().any(|c| c.is_control() || c == ' ') {
                return Err(format!(
                    "store.node_name {n:?}: 1 to 64 characters, no spaces"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        assert!(matches!(
            StoreUrl::parse("postgresql://dkimd@db.example:5432/dkimd").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert_eq!(
            StoreUrl::parse("sqlite:/tmp/x.sqlite").unwrap(),
            StoreUrl::Sqlite("/tmp/x.sqlite".into())
        );
        let e = StoreUrl::parse("postgresql://dkimd:secret@db/dkimd").unwrap_err();
        assert!(e.contains("password_file"), "{e}");
        let e = StoreUrl::parse("postgresql://dkimd@db").unwrap_err();
        assert!(e.contains("no database"), "{e}");
        assert!(StoreUrl::parse("mysql://x")
            .unwrap_err()
            .contains("not a store URL"));
    }
}
