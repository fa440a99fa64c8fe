//! The embedded store: SQLite in the state directory, with versioned
//! migrations; the audit trail beside it as a JSON-lines file.

use super::audit::AuditFile;
use super::*;
use crate::error::{bail, err, Context, Error};
use crate::model::settings::Override;
use crate::sys::check_private;
use dkim::KeyAlgorithm;
use rusqlite::{params, Connection, OptionalExtension};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    audit: AuditFile,
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Store(e.to_string())
    }
}

/// Migrations, in order; the store's `user_version` says how many ran.
/// PostgreSQL's schema (`postgres.rs`) has the same tables and columns.
const MIGRATIONS: [&str; 5] = [
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
    // 3: the key lifecycle: when a key entered its state, when a pending
    // key's record was first served everywhere, and its public record (kept
    // after the private key is destroyed). Active keys that exist entered
    // their state when they were made; retired ones (when is not known)
    // at the upgrade, so that their overlap starts then and mail they
    // signed lately still verifies. Records are filled in on load.
    "
ALTER TABLE keys ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN served INTEGER;
ALTER TABLE keys ADD COLUMN record TEXT NOT NULL DEFAULT '';
UPDATE keys SET since = CASE WHEN state = 'retired' THEN CAST(strftime('%s', 'now') AS INTEGER) ELSE created END;
",
    // 4: the change counter ("snapshot N") and when it last rose.
    "
CREATE TABLE meta (version INTEGER NOT NULL, changed INTEGER NOT NULL);
INSERT INTO meta (version, changed) VALUES (0, 0);
",
    // 5: publishing by delegation (CNAMEs at the customer's, the targets
    // in a zone of dkimd's).
    "
ALTER TABLE domains ADD COLUMN delegate TEXT;
",
];

fn now() -> i64 {
    i64::try_from(crate::clock::now()).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Reads the state in one read transaction; the published records
    /// only when `records`.
    fn read_state(&self, records: bool) -> crate::Result<State> {
        let mut state = State::default();
        // One read transaction: the counter and the rows agree.
        let tx = self.conn.unchecked_transaction()?;
        state.version = tx.query_row("SELECT version FROM meta", [], |r| r.get(0))?;
        let mut st = tx
            .prepare("SELECT name, value FROM settings")
            .map_err(|e| self.corrupt(e))?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (k, v) = row?;
            state
                .settings
                .set_named(&k, &v, true)
                .map_err(|e| self.corrupt(format!("setting {k}: {e}")))?;
        }
        let mut st =
            tx.prepare("SELECT name, dns, mail, dkim, delegate FROM domains ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        for row in rows {
            let (name, dns, mail, dkim, delegate) = row?;
            let dkim = Override::parse(&dkim).map_err(|e| self.corrupt(e))?;
            state.domains.push(Domain {
                name,
                dns,
                mail,
                dkim,
                delegate,
            });
        }
        let mut st = tx.prepare(
            "SELECT id, domain, algorithm, bits, selector, pem, created, state, since, served, record
             FROM keys ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ),
                (
                    r.get::<_, i64>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                    r.get::<_, String>(10)?,
                ),
            ))
        })?;
        for row in rows {
            let (
                (id, domain, algorithm, bits, selector, pem),
                (created, kstate, since, served, record),
            ) = row?;
            // Keys stored before migration 3 have no record yet: it is
            // derived from the private key.
            let record = if record.is_empty() && !pem.is_empty() {
                dkim::SigningKey::from_pem(pem.as_bytes())
                    .map_err(|e| self.corrupt(format!("key {id}: {e}")))?
                    .dns_record()
            } else {
                record
            };
            state.keys.push(StoredKey {
                id,
                domain,
                algorithm: alg(&algorithm).map_err(|e| self.corrupt(e))?,
                bits: usize::try_from(bits).unwrap_or(0),
                selector,
                pem,
                created,
                state: KeyState::parse(&kstate).map_err(|e| self.corrupt(e))?,
                since,
                served,
                record,
            });
        }
        if records {
            let mut st = tx.prepare(
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
        }
        // Read only: dropping the transaction ends it.
        Ok(state)
    }

    /// The database file in a state directory.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("dkimd.sqlite")
    }

    /// Opens (creating when missing) the store in the file `path`. Its
    /// directory is created with mode 0700 and the database with 0600;
    /// existing ones that others can read are refused.
    pub fn open(path: &Path, audit: PathBuf) -> crate::Result<SqliteStore> {
        crate::sys::private_dir(path.parent().unwrap_or(Path::new(".")), "state directory")?;
        let path = path.to_path_buf();
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
        let mut store = SqliteStore {
            conn,
            path,
            audit: AuditFile::new(audit),
        };
        store.migrate()?;
        // Run as root on the service user's state directory: the store,
        // its -wal and -shm, and anything an earlier root command left
        // (even one that crashed) stay the service user's.
        if let Some(dir) = store.path.parent() {
            crate::sys::hand_over(dir)?;
        }
        Ok(store)
    }

    /// An empty store in memory, for showing the defaults where no store
    /// exists yet (read-only commands create nothing).
    pub fn empty(audit: PathBuf) -> crate::Result<SqliteStore> {
        let conn = Connection::open_in_memory().context("cannot open an in-memory store")?;
        let mut store = SqliteStore {
            conn,
            path: PathBuf::from(":memory:"),
            audit: AuditFile::new(audit),
        };
        store.migrate()?;
        Ok(store)
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> crate::Error {
        err!(
            "store {} is damaged or not a dkimd store: {e}",
            self.path.display()
        )
    }

    fn migrate(&mut self) -> crate::Result<()> {
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
    fn admin_hash_row(&self, name: &str) -> crate::Result<Option<String>> {
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
    fn set_admin_row(&mut self, name: &str, hash: &str) -> crate::Result<()> {
        self.conn.execute(
            "INSERT INTO admin_users (name, hash, changed) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, changed = excluded.changed",
            rusqlite::params![name, hash, now()],
        )?;
        Ok(())
    }

    /// Removes a web admin user; false when there was none.
    fn remove_admin_row(&mut self, name: &str) -> crate::Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM admin_users WHERE name = ?1", [name])?
            > 0)
    }

    /// The web admin users' names.
    fn admin_names_row(&self) -> crate::Result<Vec<String>> {
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
struct ChangeWatcher {
    conn: Connection,
    last: i64,
}

impl ChangeWatcher {
    fn open(path: &Path) -> crate::Result<ChangeWatcher> {
        let conn = Connection::open(path)?;
        let last = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(ChangeWatcher { conn, last })
    }
}

/// The watch of a store in memory: nobody else can change it.
struct Unchanging;

impl Watch for Unchanging {
    fn changed(&mut self) -> crate::Result<bool> {
        Ok(false)
    }
}

impl Watch for ChangeWatcher {
    fn changed(&mut self) -> crate::Result<bool> {
        let v: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let changed = v != self.last;
        self.last = v;
        Ok(changed)
    }
}

fn alg(s: &str) -> crate::Result<KeyAlgorithm> {
    s.parse::<KeyAlgorithm>().map_err(|e| err!("{e}"))
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn admin_hash(&self, name: &str) -> crate::Result<Option<String>> {
        self.admin_hash_row(name)
    }

    fn set_admin(&mut self, name: &str, hash: &str) -> crate::Result<()> {
        self.set_admin_row(name, hash)
    }

    fn remove_admin(&mut self, name: &str) -> crate::Result<bool> {
        self.remove_admin_row(name)
    }

    fn admin_names(&self) -> crate::Result<Vec<String>> {
        self.admin_names_row()
    }

    fn watch(&self) -> crate::Result<Box<dyn Watch>> {
        if self.path == Path::new(":memory:") {
            return Ok(Box::new(Unchanging));
        }
        Ok(Box::new(ChangeWatcher::open(&self.path)?))
    }

    fn audit(&self, entry: &AuditEntry<'_>) -> crate::Result<()> {
        self.audit.write(entry)
    }

    fn recent_audit(&self, n: usize) -> crate::Result<Vec<AuditRow>> {
        self.audit.recent(n)
    }

    fn load(&self) -> crate::Result<State> {
        self.read_state(true)
    }

    fn load_signing(&self) -> crate::Result<State> {
        self.read_state(false)
    }

    fn apply(&mut self, changes: &[Change]) -> crate::Result<()> {
        let tx = self.conn.transaction()?;
        for c in changes {
            match c {
                Change::Setting(k, v) => {
                    tx.execute(
                        "INSERT INTO settings(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = ?2",
                        params![k.as_str(), v],
                    )?;
                }
                Change::PutDomain(d) => {
                    tx.execute(
                        "INSERT INTO domains(name, dns, mail, dkim, created, delegate) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT(name) DO UPDATE SET dns = ?2, mail = ?3, dkim = ?4, delegate = ?6",
                        params![d.name, d.dns, d.mail, d.dkim.as_str(), now(), d.delegate],
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
                    let created = k.created.unwrap_or_else(now);
                    tx.execute(
                        "INSERT INTO keys(domain, algorithm, bits, selector, pem, created, state, since, served, record)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        params![
                            k.domain,
                            k.algorithm.as_str(),
                            i64::try_from(k.bits).unwrap_or(0),
                            k.selector,
                            if k.state == KeyState::Deleted { "" } else { k.pem.as_str() },
                            created,
                            k.state.as_str(),
                            k.since.unwrap_or(created),
                            k.served,
                            k.record
                        ],
                    )?;
                }
                Change::KeyState(id, s, at) => {
                    // A key never moves back; a stale step that would is
                    // refused as a whole.
                    let cur: Option<String> = tx
                        .query_row("SELECT state FROM keys WHERE id = ?1", params![id], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    let Some(cur) = cur else {
                        bail!("key {id} is no longer in the store (changed meanwhile)");
                    };
                    let cur = KeyState::parse(&cur)?;
                    if cur > *s {
                        bail!(
                            "key {id} is {cur} already and cannot become {s} (changed meanwhile)"
                        );
                    }
                    tx.execute(
                        "UPDATE keys SET state = ?2, since = ?3 WHERE id = ?1 AND state <> ?2",
                        params![id, s.as_str(), at],
                    )?;
                    if *s == KeyState::Deleted {
                        tx.execute("UPDATE keys SET pem = '' WHERE id = ?1", params![id])?;
                    }
                }
                Change::KeyServed(id, at) => {
                    tx.execute("UPDATE keys SET served = ?2 WHERE id = ?1", params![id, at])?;
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
        // At most one active key per owner and algorithm, whatever ran
        // before: a change list that would break it is refused whole.
        let twice: Option<(Option<String>, String)> = tx
            .query_row(
                "SELECT domain, algorithm FROM keys WHERE state = 'active'
                 GROUP BY domain, algorithm HAVING count(*) > 1 LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((domain, algorithm)) = twice {
            bail!(
                "two active {algorithm} keys for {} (changed meanwhile): nothing was changed",
                domain.as_deref().unwrap_or("the global key")
            );
        }
        // One rotation at a time per owner and algorithm, and a pending
        // key's selector used by no other key of its owner that has a
        // record (two rotations started at once are refused, not merged).
        let clash: Option<(Option<String>, String)> = tx
            .query_row(
                "SELECT p.domain, p.selector FROM keys p JOIN keys o
                   ON o.id <> p.id AND o.domain IS p.domain AND o.state <> 'deleted'
                  AND (lower(o.selector) = lower(p.selector)
                       OR (o.state = 'pending' AND o.algorithm = p.algorithm))
                 WHERE p.state = 'pending' LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((domain, selector)) = clash {
            bail!(
                "a rotation of {} (selector {selector}) is under way already, or its selector is taken (changed meanwhile): nothing was changed",
                domain.as_deref().unwrap_or("the global key")
            );
        }
        if !changes.is_empty() {
            tx.execute(
                "UPDATE meta SET version = version + 1, changed = ?1",
                params![now()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    #[test]
    fn round_trip_and_atomicity() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let mut s = SqliteStore::open(
            &SqliteStore::path_in(&state_dir),
            state_dir.join("audit.log"),
        )
        .unwrap();
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
                delegate: None,
            }),
            Change::Setting(SettingName::Verify, "off".into()),
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
                    delegate: Some("dkim.example.net".into()),
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
        let s = SqliteStore::open(
            &SqliteStore::path_in(&state_dir),
            state_dir.join("audit.log"),
        )
        .unwrap();
        let st = s.load().unwrap();
        assert_eq!(st.domains.len(), 1);
        assert_eq!(st.domains[0].delegate, None);
        assert_eq!(st.version, 1, "one committed change list, one failed");
        drop(s);
        let mut s = SqliteStore::open(
            &SqliteStore::path_in(&state_dir),
            state_dir.join("audit.log"),
        )
        .unwrap();
        let mut d = st.domains[0].clone();
        d.delegate = Some("dkim.example.net".into());
        s.apply(&[Change::PutDomain(d)]).unwrap();
        assert_eq!(
            s.load().unwrap().domains[0].delegate.as_deref(),
            Some("dkim.example.net")
        );
    }

    #[test]
    fn load_signing_is_load_without_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let mut s = SqliteStore::open(
            &SqliteStore::path_in(&state_dir),
            state_dir.join("audit.log"),
        )
        .unwrap();
        s.apply(&[
            Change::PutDomain(Domain {
                name: "a.com".into(),
                dns: true,
                mail: true,
                dkim: Override::Default,
                delegate: None,
            }),
            Change::PutRecord(PublishedRecord {
                domain: "a.com".into(),
                name: "s._domainkey.a.com".into(),
                value: "v=DKIM1; k=ed25519; p=".into(),
                backend: "manual".into(),
                published: 1,
            }),
        ])
        .unwrap();
        let all = s.load().unwrap();
        assert_eq!(all.records.len(), 1);
        let signing = s.load_signing().unwrap();
        assert!(signing.records.is_empty());
        assert_eq!(signing.domains, all.domains);
        assert_eq!(signing.keys, all.keys);
        assert_eq!(signing.version, all.version);
    }

    #[test]
    fn refuses_open_permissions_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        SqliteStore::open(
            &SqliteStore::path_in(&state_dir),
            state_dir.join("audit.log"),
        )
        .unwrap();
        std::fs::set_permissions(
            SqliteStore::path_in(&state_dir),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = SqliteStore::open(
            &SqliteStore::path_in(&state_dir),
            state_dir.join("audit.log"),
        )
        .err()
        .unwrap();
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
        let e = SqliteStore::open(&SqliteStore::path_in(&other), other.join("audit.log"))
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("damaged or not a dkimd store"),
            "{e}"
        );
    }
}
