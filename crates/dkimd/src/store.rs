//! The store: domains, keys, published records and settings.
//!
//! Behind the small [`Store`] trait (load everything, apply a list of changes
//! in one transaction) so that a networked engine can serve a fleet later.
//! The embedded default is SQLite in the state directory.

use crate::settings::{Override, Settings};
use anyhow::{anyhow, bail, Context};
use dkim::KeyAlgorithm;
use rusqlite::{params, Connection, OptionalExtension};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A domain with its features and override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Lower-case name.
    pub name: String,
    pub dns: bool,
    pub mail: bool,
    pub dkim: Override,
}

/// Life of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Signs now (when signing is on and the domain signs).
    Active,
    /// No longer used; kept until purged.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
    fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "active" => Ok(KeyState::Active),
            "retired" => Ok(KeyState::Retired),
            _ => bail!("unknown key state {s:?} in the store"),
        }
    }
}

/// A key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub id: i64,
    /// The domain that owns the key; None for the global key.
    pub domain: Option<String>,
    pub algorithm: KeyAlgorithm,
    pub bits: usize,
    pub selector: String,
    /// PKCS#8 PEM. Never shown.
    pub pem: String,
    pub created: i64,
    pub state: KeyState,
}

/// A record dkimd has published (or printed for manual publishing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedRecord {
    pub domain: String,
    /// `selector._domainkey.domain`, lower case, no final dot.
    pub name: String,
    pub value: String,
    /// The backend that holds it: bind-zone-file, rfc2136 or manual.
    pub backend: String,
    pub published: i64,
}

/// Everything in the store.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub settings: Settings,
    pub domains: Vec<Domain>,
    pub keys: Vec<StoredKey>,
    pub records: Vec<PublishedRecord>,
}

impl State {
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// Active keys that sign for `domain`: its own when it has any, else the global ones.
    pub fn keys_for(&self, domain: &str) -> Vec<&StoredKey> {
        let mut keys: Vec<&StoredKey> = self
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Active && k.domain.as_deref() == Some(domain))
            .collect();
        // An own key replaces the global key of its algorithm only: an
        // imported RSA key signs beside the global Ed25519 key.
        for g in self.global_keys() {
            if !keys.iter().any(|k| k.algorithm == g.algorithm) {
                keys.push(g);
            }
        }
        keys
    }

    /// The active global keys.
    pub fn global_keys(&self) -> Vec<&StoredKey> {
        self.keys
            .iter()
            .filter(|k| k.state == KeyState::Active && k.domain.is_none())
            .collect()
    }
}

/// A key to insert.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub domain: Option<String>,
    pub algorithm: KeyAlgorithm,
    pub bits: usize,
    pub selector: String,
    pub pem: String,
    /// When the key was made (epoch seconds); `None`: now.
    pub created: Option<i64>,
    pub state: KeyState,
}

/// One change; a list of them is applied in one transaction.
#[derive(Clone, Debug)]
pub enum Change {
    Setting(String, String),
    PutDomain(Domain),
    RemoveDomain(String),
    RenameDomain {
        from: String,
        to: String,
    },
    AddKey(NewKey),
    KeyState(i64, KeyState),
    DeleteKey(i64),
    PutRecord(PublishedRecord),
    RemoveRecord {
        domain: String,
        name: String,
    },
    /// Deletes settings, domains and keys (before an import), but not the
    /// record of what is published in DNS.
    ClearAll,
}

/// The store of `state_dir` when it exists, else an empty one in memory
/// (nothing is created on disk); the flag says which.
pub fn open_existing_or_empty(state_dir: &Path) -> anyhow::Result<(Box<dyn Store>, bool)> {
    if store_file(state_dir).exists() {
        Ok((Box::new(SqliteStore::open(state_dir)?), true))
    } else {
        Ok((Box::new(SqliteStore::empty()?), false))
    }
}

/// The file that holds the store of `state_dir`.
pub fn store_file(state_dir: &Path) -> PathBuf {
    SqliteStore::path_in(state_dir)
}

/// Storage for dkimd's state.
pub trait Store {
    /// Reads everything.
    fn load(&self) -> anyhow::Result<State>;
    /// Applies the changes in order, all or none.
    fn apply(&mut self, changes: &[Change]) -> anyhow::Result<()>;
}

/// The embedded SQLite store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

/// Migrations, in order; the store's `user_version` says how many ran.
const MIGRATIONS: [&str; 2] = [
    "
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    dns INTEGER NOT NULL,
    mail INTEGER NOT NULL,
    dkim TEXT NOT NULL DEFAULT 'default',
    created INTEGER NOT NULL
);
CREATE TABLE keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT,
    algorithm TEXT NOT NULL,
    bits INTEGER NOT NULL,
    selector TEXT NOT NULL,
    pem TEXT NOT NULL,
    created INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE records (
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    backend TEXT NOT NULL,
    published INTEGER NOT NULL,
    PRIMARY KEY (domain, name)
);
",
    // 2: users of the web admin page (argon2 PHC strings).
    "
CREATE TABLE admin_users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, changed INTEGER NOT NULL);
",
];

fn now() -> i64 {
    i64::try_from(crate::cli::now()).unwrap_or(i64::MAX)
}

/// Refuses a file or directory that others can read.
pub fn check_private(path: &Path, what: &str) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{what} {} has mode {mode:04o}: it holds private keys and must not be accessible to group or others (chmod {} {})",
            path.display(),
            if meta.is_dir() { "700" } else { "600" },
            path.display()
        );
    }
    Ok(())
}

impl SqliteStore {
    /// The database file in a state directory.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("dkimd.sqlite")
    }

    /// Opens (creating when missing) the store in `state_dir`. The directory
    /// is created with mode 0700 and the database with 0600; existing ones
    /// that others can read are refused.
    pub fn open(state_dir: &Path) -> anyhow::Result<SqliteStore> {
        if !state_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .with_context(|| {
                    format!("cannot create state directory {}", state_dir.display())
                })?;
        }
        check_private(state_dir, "state directory")?;
        let path = Self::path_in(state_dir);
        if !path.exists() {
            // Create it with the right mode before SQLite opens it.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
        }
        check_private(&path, "store")?;
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open store {}", path.display()))?;
        let mut store = SqliteStore { conn, path };
        store.migrate()?;
        Ok(store)
    }

    /// An empty store in memory, for showing the defaults where no store
    /// exists yet (read-only commands create nothing).
    fn empty() -> anyhow::Result<SqliteStore> {
        let conn = Connection::open_in_memory().context("cannot open an in-memory store")?;
        let mut store = SqliteStore {
            conn,
            path: PathBuf::from(":memory:"),
        };
        store.migrate()?;
        Ok(store)
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "store {} is damaged or not a dkimd store: {e}",
            self.path.display()
        )
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| self.corrupt(e))?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.corrupt(e))?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            bail!(
                "store {} has schema version {version}, newer than this dkimd knows ({known}); use a newer dkimd",
                self.path.display()
            );
        }
        if version == 0 {
            // A file with tables but no version is not ours.
            let tables: i64 = self
                .conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| self.corrupt(e))?;
            if tables > 0 {
                return Err(self.corrupt("it has tables but no dkimd schema version"));
            }
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).unwrap_or(i64::MAX),
            )?;
            tx.commit()?;
        }
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.corrupt(e))?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(())
    }
}

impl SqliteStore {
    /// The password hash (PHC string) of a web admin user.
    pub fn admin_hash(&self, name: &str) -> anyhow::Result<Option<String>> {
        let mut st = self
            .conn
            .prepare("SELECT hash FROM admin_users WHERE name = ?1")?;
        let mut rows = st.query([name])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    }

    /// Sets (or replaces) a web admin user's password hash.
    pub fn set_admin(&mut self, name: &str, hash: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO admin_users (name, hash, changed) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, changed = excluded.changed",
            rusqlite::params![name, hash, now()],
        )?;
        Ok(())
    }

    /// Removes a web admin user; false when there was none.
    pub fn remove_admin(&mut self, name: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM admin_users WHERE name = ?1", [name])?
            > 0)
    }

    /// The web admin users' names.
    pub fn admin_names(&self) -> anyhow::Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT name FROM admin_users ORDER BY name")?;
        let names = st
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }
}

/// Notices commits other processes make to the store (SQLite's
/// `data_version`), so that the daemon picks up `enable`, `disable` and key
/// changes without a restart.
pub struct ChangeWatcher {
    conn: Connection,
    last: i64,
}

impl ChangeWatcher {
    pub fn open(state_dir: &Path) -> anyhow::Result<ChangeWatcher> {
        let conn = Connection::open(SqliteStore::path_in(state_dir))?;
        let last = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(ChangeWatcher { conn, last })
    }

    /// True when another connection committed since the last call.
    pub fn changed(&mut self) -> anyhow::Result<bool> {
        let v: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let changed = v != self.last;
        self.last = v;
        Ok(changed)
    }
}

fn alg(s: &str) -> anyhow::Result<KeyAlgorithm> {
    s.parse::<KeyAlgorithm>().map_err(|e| anyhow!("{e}"))
}

impl Store for SqliteStore {
    fn load(&self) -> anyhow::Result<State> {
        let mut state = State::default();
        let mut st = self
            .conn
            .prepare("SELECT name, value FROM settings")
            .map_err(|e| self.corrupt(e))?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (k, v) = row?;
            state
                .settings
                .set(&k, &v, true)
                .map_err(|e| self.corrupt(format!("setting {k}: {e}")))?;
        }
        let mut st = self
            .conn
            .prepare("SELECT name, dns, mail, dkim FROM domains ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (name, dns, mail, dkim) = row?;
            let dkim = Override::parse(&dkim).map_err(|e| self.corrupt(e))?;
            state.domains.push(Domain {
                name,
                dns,
                mail,
                dkim,
            });
        }
        let mut st = self.conn.prepare(
            "SELECT id, domain, algorithm, bits, selector, pem, created, state FROM keys ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        for row in rows {
            let (id, domain, algorithm, bits, selector, pem, created, kstate) = row?;
            state.keys.push(StoredKey {
                id,
                domain,
                algorithm: alg(&algorithm).map_err(|e| self.corrupt(e))?,
                bits: usize::try_from(bits).unwrap_or(0),
                selector,
                pem,
                created,
                state: KeyState::parse(&kstate).map_err(|e| self.corrupt(e))?,
            });
        }
        let mut st = self.conn.prepare(
            "SELECT domain, name, value, backend, published FROM records ORDER BY domain, name",
        )?;
        let rows = st.query_map([], |r| {
            Ok(PublishedRecord {
                domain: r.get(0)?,
                name: r.get(1)?,
                value: r.get(2)?,
                backend: r.get(3)?,
                published: r.get(4)?,
            })
        })?;
        for row in rows {
            state.records.push(row?);
        }
        Ok(state)
    }

    fn apply(&mut self, changes: &[Change]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        for c in changes {
            match c {
                Change::Setting(k, v) => {
                    tx.execute(
                        "INSERT INTO settings(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2",
                        params![k, v],
                    )?;
                }
                Change::PutDomain(d) => {
                    tx.execute(
                        "INSERT INTO domains(name, dns, mail, dkim, created) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(name) DO UPDATE SET dns = ?2, mail = ?3, dkim = ?4",
                        params![d.name, d.dns, d.mail, d.dkim.as_str(), now()],
                    )?;
                }
                Change::RemoveDomain(n) => {
                    tx.execute("DELETE FROM domains WHERE name = ?1", params![n])?;
                    tx.execute("DELETE FROM keys WHERE domain = ?1", params![n])?;
                    tx.execute("DELETE FROM records WHERE domain = ?1", params![n])?;
                }
                Change::RenameDomain { from, to } => {
                    let exists: Option<i64> = tx
                        .query_row("SELECT 1 FROM domains WHERE name = ?1", params![to], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    if exists.is_some() {
                        bail!("domain {to} already exists");
                    }
                    tx.execute(
                        "UPDATE domains SET name = ?2 WHERE name = ?1",
                        params![from, to],
                    )?;
                    tx.execute(
                        "UPDATE keys SET domain = ?2 WHERE domain = ?1",
                        params![from, to],
                    )?;
                }
                Change::AddKey(k) => {
                    tx.execute(
                        "INSERT INTO keys(domain, algorithm, bits, selector, pem, created, state)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            k.domain,
                            k.algorithm.as_str(),
                            i64::try_from(k.bits).unwrap_or(0),
                            k.selector,
                            k.pem,
                            k.created.unwrap_or_else(now),
                            k.state.as_str()
                        ],
                    )?;
                }
                Change::KeyState(id, s) => {
                    tx.execute(
                        "UPDATE keys SET state = ?2 WHERE id = ?1",
                        params![id, s.as_str()],
                    )?;
                }
                Change::DeleteKey(id) => {
                    tx.execute("DELETE FROM keys WHERE id = ?1", params![id])?;
                }
                Change::PutRecord(r) => {
                    tx.execute(
                        "INSERT INTO records(domain, name, value, backend, published) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(domain, name) DO UPDATE SET value = ?3, backend = ?4, published = ?5",
                        params![r.domain, r.name, r.value, r.backend, r.published],
                    )?;
                }
                Change::ClearAll => {
                    // What is published in DNS stays known, so that the
                    // records an import no longer wants can be removed.
                    tx.execute_batch(
                        "DELETE FROM settings; DELETE FROM domains; DELETE FROM keys;",
                    )?;
                }
                Change::RemoveRecord { domain, name } => {
                    tx.execute(
                        "DELETE FROM records WHERE domain = ?1 AND name = ?2",
                        params![domain, name],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_atomicity() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let mut s = SqliteStore::open(&state_dir).unwrap();
        assert_eq!(
            std::fs::metadata(&state_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(SqliteStore::path_in(&state_dir))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        s.apply(&[
            Change::PutDomain(Domain {
                name: "a.com".into(),
                dns: true,
                mail: true,
                dkim: Override::Default,
            }),
            Change::Setting("verify".into(), "off".into()),
        ])
        .unwrap();
        // A failing change list leaves nothing behind.
        let err = s
            .apply(&[
                Change::PutDomain(Domain {
                    name: "b.com".into(),
                    dns: true,
                    mail: false,
                    dkim: Override::Never,
                }),
                Change::RenameDomain {
                    from: "b.com".into(),
                    to: "a.com".into(),
                },
            ])
            .unwrap_err();
        assert!(err.to_string().contains("already exists"));
        let st = s.load().unwrap();
        assert_eq!(st.domains.len(), 1);
        assert!(!st.settings.verify);
        drop(s);
        let s = SqliteStore::open(&state_dir).unwrap();
        assert_eq!(s.load().unwrap().domains.len(), 1);
    }

    #[test]
    fn refuses_open_permissions_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        SqliteStore::open(&state_dir).unwrap();
        std::fs::set_permissions(
            SqliteStore::path_in(&state_dir),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = SqliteStore::open(&state_dir).err().unwrap();
        assert!(e.to_string().contains("must not be accessible"), "{e}");

        let other = dir.path().join("other");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&other)
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(SqliteStore::path_in(&other))
            .unwrap();
        std::fs::write(
            SqliteStore::path_in(&other),
            b"this is not sqlite at all, just text that is long enough",
        )
        .unwrap();
        let e = SqliteStore::open(&other).err().unwrap();
        assert!(
            e.to_string().contains("damaged or not a dkimd store"),
            "{e}"
        );
    }
}
