//! The shared store: PostgreSQL, for a fleet of mail servers.
//!
//! The tables and columns are SQLite's (`sqlite.rs`), plus the node
//! registry and the audit trail, which SQLite keeps in a file. Private keys
//! are sealed with the node's key-encryption key before they are written
//! ([`super::kek`]). Every change list is one transaction that first takes
//! a fleet-wide advisory lock, so that two nodes' changes are applied one
//! after the other and the store's checks (one active key per owner and
//! algorithm, one rotation at a time) see both; the commit raises the
//! change counter and sends `NOTIFY dkimd_changes`.
//!
//! The client is synchronous (`postgres`), and the `Store` trait is too;
//! since that client runs a runtime of its own, which may not be entered
//! from a tokio task, each store drives its connection on a thread of its
//! own and every call is a job sent there. A lost connection is made again
//! at the next call.

use super::audit::{AuditEntry, AuditRow, MAX_FIELD, MAX_USER_NAME, SHOWN_FIELD};
use super::kek::{Kek, KeyRing};
use super::*;
use crate::config::{Config, PgUrl};
use crate::error::{bail, err, Context, Error};
use crate::model::cut;
use crate::model::settings::Override;
use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::{Client, NoTls};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Advisory lock keys ("dkimd" and a number): changes, migrations, and the
/// worker election.
const APPLY_LOCK: i64 = 0x646b_696d_6401;
const MIGRATE_LOCK: i64 = 0x646b_696d_6402;
const WORKER_LOCK: i64 = 0x646b_696d_6403;
const PUBLISH_LOCK: i64 = 0x646b_696d_6404;
/// The channel every commit notifies.
const CHANNEL: &str = "dkimd_changes";

/// Migrations, in order; `dkimd_schema.version` says how many ran.
const MIGRATIONS: [&str; 2] = [
    "
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    dns BOOLEAN NOT NULL,
    mail BOOLEAN NOT NULL,
    dkim TEXT NOT NULL DEFAULT 'default',
    created BIGINT NOT NULL
);
CREATE TABLE keys (
    id BIGSERIAL PRIMARY KEY,
    domain TEXT,
    algorithm TEXT NOT NULL,
    bits BIGINT NOT NULL,
    selector TEXT NOT NULL,
    pem TEXT NOT NULL,
    created BIGINT NOT NULL,
    state TEXT NOT NULL,
    since BIGINT NOT NULL DEFAULT 0,
    served BIGINT,
    record TEXT NOT NULL DEFAULT ''
);
CREATE TABLE records (
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    backend TEXT NOT NULL,
    published BIGINT NOT NULL,
    PRIMARY KEY (domain, name)
);
CREATE TABLE admin_users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, changed BIGINT NOT NULL);
CREATE TABLE meta (version BIGINT NOT NULL, changed BIGINT NOT NULL);
INSERT INTO meta (version, changed) VALUES (0, 0);
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    version TEXT NOT NULL,
    snapshot BIGINT NOT NULL,
    started BIGINT NOT NULL,
    worker BOOLEAN NOT NULL,
    seen BIGINT NOT NULL
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    time TEXT NOT NULL,
    node TEXT NOT NULL,
    who TEXT NOT NULL,
    remote TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    steps TEXT NOT NULL
);
",
    // 2: publishing by delegation (as SQLite's migration 5).
    "
ALTER TABLE domains ADD COLUMN delegate TEXT;
",
];

fn now() -> i64 {
    i64::try_from(crate::clock::now()).unwrap_or(i64::MAX)
}

/// A PostgreSQL error with the server's message when there is one, else
/// with its causes ("error connecting to server: Connection refused").
fn pg(e: ::postgres::Error) -> Error {
    Error::Store(format!("PostgreSQL: {}", pg_text(&e)))
}

fn pg_text(e: &::postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return d.message().to_string();
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// How to reach the server, shared by a store's connection and its watch.
struct Conf {
    pg: ::postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    keys: KeyRing,
    location: String,
    node: String,
    poll: Duration,
}

impl Conf {
    fn new(cfg: &Config, url: &PgUrl) -> crate::Result<Conf> {
        let s = &cfg.store;
        let mut pg: ::postgres::Config = url
            .as_str()
            .parse()
            .map_err(|e| crate::Error::Usage(format!("store.url: {e}")))?;
        if let Some(f) = &s.password_file {
            crate::sys::check_private(f, "store password file")?;
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read store password file {}", f.display()))?;
            pg.password(text.lines().next().unwrap_or("").trim_end());
        }
        let node = s.node();
        pg.application_name(&format!("dkimd {}", cut(&node, 40)))
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(15));
        let loopback = pg.get_hosts().iter().all(|h| match h {
            ::postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback())
            }
            ::postgres::config::Host::Unix(_) => true,
        });
        // Off loopback the connection is always TLS with a checked
        // certificate; on loopback only when the URL asks (sslmode=require).
        let tls = if !loopback || pg.get_ssl_mode() == ::postgres::config::SslMode::Require {
            pg.ssl_mode(::postgres::config::SslMode::Require);
            Some(tls_connector(s.ca_file.as_deref())?)
        } else {
            pg.ssl_mode(::postgres::config::SslMode::Disable);
            None
        };
        let key_file = s.key_file.as_ref().ok_or_else(|| {
            crate::Error::Usage(
                "store.key_file is needed with a PostgreSQL store: make one with `dkimd store new-key-file FILE`".into(),
            )
        })?;
        let previous = match &s.previous_key_file {
            Some(p) => Some(Kek::load(p)?),
            None => None,
        };
        Ok(Conf {
            keys: KeyRing::new(Kek::load(key_file)?, previous),
            location: url.as_str().to_string(),
            pg,
            tls,
            node,
            poll: Duration::from_secs(s.poll_interval.max(1)),
        })
    }

    fn connect(&self) -> crate::Result<Client> {
        let r = match &self.tls {
            Some(t) => self.pg.connect(t.clone()),
            None => self.pg.connect(NoTls),
        };
        r.map_err(|e| {
            Error::Store(format!(
                "store {} unreachable: {}",
                self.location,
                pg_text(&e)
            ))
        })
    }
}

fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> crate::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let config = crate::sys::tls_client_config(ca_file, "store.ca_file", "the PostgreSQL server")?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The connection a store's thread drives.
struct Conn {
    conf: Arc<Conf>,
    client: Option<Client>,
    /// This connection holds the worker lock.
    worker: bool,
}

impl Conn {
    /// The connection, made (and the schema migrated) when there is none.
    fn client(&mut self) -> crate::Result<&mut Client> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
            self.worker = false;
        }
        let client = match self.client.take() {
            Some(c) => c,
            None => {
                let mut c = self.conf.connect()?;
                migrate(&mut c, &self.conf.location)?;
                self.worker = false;
                c
            }
        };
        Ok(self.client.insert(client))
    }
}

fn migrate(c: &mut Client, location: &str) -> crate::Result<()> {
    let mut tx = c.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .map_err(pg)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS dkimd_schema (version INTEGER NOT NULL)")
        .map_err(pg)?;
    let version: i32 = match tx
        .query_opt("SELECT version FROM dkimd_schema", &[])
        .map_err(pg)?
    {
        Some(r) => r.get(0),
        None => {
            let others: i64 = tx
                .query_one(
                    "SELECT count(*) FROM information_schema.tables
                     WHERE table_schema = current_schema() AND table_name <> 'dkimd_schema'",
                    &[],
                )
                .map_err(pg)?
                .get(0);
            if others > 0 {
                bail!("store {location}: the database has tables but no dkimd schema version: give dkimd a database of its own");
            }
            tx.execute("INSERT INTO dkimd_schema (version) VALUES (0)", &[])
                .map_err(pg)?;
            0
        }
    };
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if version > known {
        bail!("store {location} has schema version {version}, newer than this dkimd knows ({known}); use a newer dkimd");
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.batch_execute(sql).map_err(pg)?;
        let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE dkimd_schema SET version = $1", &[&v])
            .map_err(pg)?;
    }
    tx.commit().map_err(pg)
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// A PostgreSQL store: a handle to the thread that drives its connection.
pub struct PgStore {
    jobs: mpsc::Sender<Job>,
    conf: Arc<Conf>,
}

impl PgStore {
    /// A store on the server at `url`; with `connect_now` the server must
    /// answer (and the schema is migrated) before this returns, else the
    /// first call connects.
    pub fn open(cfg: &Config, url: &PgUrl, connect_now: bool) -> crate::Result<PgStore> {
        // The node's snapshot of the store lives in the state directory.
        crate::sys::private_dir(&cfg.state_dir, "state directory")?;
        let conf = Arc::new(Conf::new(cfg, url)?);
        let (jobs, rx) = mpsc::channel::<Job>();
        let mut conn = Conn {
            conf: conf.clone(),
            client: None,
            worker: false,
        };
        std::thread::Builder::new()
            .name("dkimd-store".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .context("cannot start the store's thread")?;
        let store = PgStore { jobs, conf };
        if connect_now {
            store.call(|c| c.client().map(|_| ()))?;
        }
        Ok(store)
    }

    /// Runs `f` on the connection's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> crate::Result<T> + Send + 'static,
    ) -> crate::Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |c: &mut Conn| {
                let r = f(c);
                let _ = tx.send(r);
            }))
            .map_err(|_| Error::Store("the store's thread has stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::Store("the store's thread has stopped".into()))?
    }
}

fn alg(s: &str) -> crate::Result<dkim::KeyAlgorithm> {
    s.parse::<dkim::KeyAlgorithm>().map_err(|e| err!("{e}"))
}

/// Calls `each` on every row of `sql` as it arrives (the rows are never
/// all held at once).
fn each_row(
    tx: &mut ::postgres::Transaction<'_>,
    sql: &str,
    mut each: impl FnMut(&::postgres::Row) -> crate::Result<()>,
) -> crate::Result<()> {
    use ::postgres::fallible_iterator::FallibleIterator;
    let none: [&(dyn ::postgres::types::ToSql + Sync); 0] = [];
    let mut rows = tx.query_raw(sql, none).map_err(pg)?;
    while let Some(r) = rows.next().map_err(pg)? {
        each(&r)?;
    }
    Ok(())
}

/// Reads the state in one read-only transaction; the published records
/// only when `records`.
fn load(c: &mut Conn, records: bool) -> crate::Result<State> {
    let conf = c.conf.clone();
    let client = c.client()?;
    let mut tx = client
        .build_transaction()
        .isolation_level(::postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg)?;
    let mut state = State {
        version: tx
            .query_one("SELECT version FROM meta", &[])
            .map_err(pg)?
            .get(0),
        ..State::default()
    };
    let corrupt = |e: String| err!("store {} holds a bad value: {e}", conf.location);
    each_row(&mut tx, "SELECT name, value FROM settings", |r| {
        let (k, v): (String, String) = (r.get(0), r.get(1));
        state
            .settings
            .set_named(&k, &v, true)
            .map_err(|e| corrupt(format!("setting {k}: {e}")))
    })?;
    each_row(
        &mut tx,
        "SELECT name, dns, mail, dkim, delegate FROM domains ORDER BY name",
        |r| {
            let dkim: String = r.get(3);
            state.domains.push(Domain {
                name: r.get(0),
                dns: r.get(1),
                mail: r.get(2),
                dkim: Override::parse(&dkim).map_err(|e| corrupt(e.to_string()))?,
                delegate: r.get(4),
            });
            Ok(())
        },
    )?;
    each_row(
        &mut tx,
        "SELECT id, domain, algorithm, bits, selector, pem, created, state, since, served, record
         FROM keys ORDER BY id",
        |r| {
            let id: i64 = r.get(0);
            let record: String = r.get(10);
            let sealed: String = r.get(5);
            let algorithm: String = r.get(2);
            let kstate: String = r.get(7);
            let bits: i64 = r.get(3);
            state.keys.push(StoredKey {
                id,
                domain: r.get(1),
                algorithm: alg(&algorithm).map_err(|e| corrupt(e.to_string()))?,
                bits: usize::try_from(bits).unwrap_or(0),
                selector: r.get(4),
                pem: conf.keys.open(&sealed, &record, &format!("key {id}"))?,
                created: r.get(6),
                state: KeyState::parse(&kstate).map_err(|e| corrupt(e.to_string()))?,
                since: r.get(8),
                served: r.get(9),
                record,
            });
            Ok(())
        },
    )?;
    if records {
        each_row(
            &mut tx,
            "SELECT domain, name, value, backend, published FROM records ORDER BY domain, name",
            |r| {
                state.records.push(PublishedRecord {
                    domain: r.get(0),
                    name: r.get(1),
                    value: r.get(2),
                    backend: r.get(3),
                    published: r.get(4),
                });
                Ok(())
            },
        )?;
    }
    tx.commit().map_err(pg)?;
    Ok(state)
}

fn apply(c: &mut Conn, changes: &[Change]) -> crate::Result<()> {
    let conf = c.conf.clone();
    let client = c.client()?;
    let mut tx = client.transaction().map_err(pg)?;
    // Changes from every node of the fleet, one after the other.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK])
        .map_err(pg)?;
    for ch in changes {
        match ch {
            Change::Setting(k, v) => {
                tx.execute(
                    "INSERT INTO settings (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[&k.as_str(), v],
                )
                .map_err(pg)?;
            }
            Change::PutDomain(d) => {
                tx.execute(
                    "INSERT INTO domains (name, dns, mail, dkim, created, delegate) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (name) DO UPDATE SET dns = excluded.dns, mail = excluded.mail, dkim = excluded.dkim, delegate = excluded.delegate",
                    &[&d.name, &d.dns, &d.mail, &d.dkim.as_str(), &now(), &d.delegate],
                )
                .map_err(pg)?;
            }
            Change::RemoveDomain(n) => {
                tx.execute("DELETE FROM domains WHERE name = $1", &[n])
                    .map_err(pg)?;
                tx.execute("DELETE FROM keys WHERE domain = $1", &[n])
                    .map_err(pg)?;
                tx.execute("DELETE FROM records WHERE domain = $1", &[n])
                    .map_err(pg)?;
            }
            Change::RenameDomain { from, to } => {
                if tx
                    .query_opt("SELECT 1 FROM domains WHERE name = $1", &[to])
                    .map_err(pg)?
                    .is_some()
                {
                    bail!("domain {to} already exists");
                }
                tx.execute("UPDATE domains SET name = $2 WHERE name = $1", &[from, to])
                    .map_err(pg)?;
                tx.execute("UPDATE keys SET domain = $2 WHERE domain = $1", &[from, to])
                    .map_err(pg)?;
            }
            Change::AddKey(k) => {
                let created = k.created.unwrap_or_else(now);
                let pem = if k.state == KeyState::Deleted {
                    String::new()
                } else {
                    conf.keys.seal(&k.pem, &k.record)?
                };
                tx.execute(
                    "INSERT INTO keys (domain, algorithm, bits, selector, pem, created, state, since, served, record)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    &[
                        &k.domain,
                        &k.algorithm.as_str(),
                        &i64::try_from(k.bits).unwrap_or(0),
                        &k.selector,
                        &pem,
                        &created,
                        &k.state.as_str(),
                        &k.since.unwrap_or(created),
                        &k.served,
                        &k.record,
                    ],
                )
                .map_err(pg)?;
            }
            Change::KeyState(id, s, at) => {
                let Some(cur) = tx
                    .query_opt("SELECT state FROM keys WHERE id = $1 FOR UPDATE", &[id])
                    .map_err(pg)?
                else {
                    bail!("key {id} is no longer in the store (changed meanwhile)");
                };
                let cur = KeyState::parse(cur.get(0))?;
                if cur > *s {
                    bail!("key {id} is {cur} already and cannot become {s} (changed meanwhile)");
                }
                tx.execute(
                    "UPDATE keys SET state = $2, since = $3 WHERE id = $1 AND state <> $2",
                    &[id, &s.as_str(), at],
                )
                .map_err(pg)?;
                if *s == KeyState::Deleted {
                    tx.execute("UPDATE keys SET pem = '' WHERE id = $1", &[id])
                        .map_err(pg)?;
                }
            }
            Change::KeyServed(id, at) => {
                tx.execute("UPDATE keys SET served = $2 WHERE id = $1", &[id, at])
                    .map_err(pg)?;
            }
            Change::DeleteKey(id) => {
                tx.execute("DELETE FROM keys WHERE id = $1", &[id])
                    .map_err(pg)?;
            }
            Change::PutRecord(r) => {
                tx.execute(
                    "INSERT INTO records (domain, name, value, backend, published) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (domain, name) DO UPDATE SET value = excluded.value, backend = excluded.backend, published = excluded.published",
                    &[&r.domain, &r.name, &r.value, &r.backend, &r.published],
                )
                .map_err(pg)?;
            }
            Change::RemoveRecord { domain, name } => {
                tx.execute(
                    "DELETE FROM records WHERE domain = $1 AND name = $2",
                    &[domain, name],
                )
                .map_err(pg)?;
            }
            Change::ClearAll => {
                tx.batch_execute("DELETE FROM settings; DELETE FROM domains; DELETE FROM keys;")
                    .map_err(pg)?;
            }
        }
    }
    if let Some(r) = tx
        .query_opt(
            "SELECT domain, algorithm FROM keys WHERE state = 'active'
             GROUP BY domain, algorithm HAVING count(*) > 1 LIMIT 1",
            &[],
        )
        .map_err(pg)?
    {
        let (domain, algorithm): (Option<String>, String) = (r.get(0), r.get(1));
        bail!(
            "two active {algorithm} keys for {} (changed meanwhile): nothing was changed",
            domain.as_deref().unwrap_or("the global key")
        );
    }
    if let Some(r) = tx
        .query_opt(
            "SELECT p.domain, p.selector FROM keys p JOIN keys o
               ON o.id <> p.id AND o.domain IS NOT DISTINCT FROM p.domain AND o.state <> 'deleted'
              AND (lower(o.selector) = lower(p.selector)
                   OR (o.state = 'pending' AND o.algorithm = p.algorithm))
             WHERE p.state = 'pending' LIMIT 1",
            &[],
        )
        .map_err(pg)?
    {
        let (domain, selector): (Option<String>, String) = (r.get(0), r.get(1));
        bail!(
            "a rotation of {} (selector {selector}) is under way already, or its selector is taken (changed meanwhile): nothing was changed",
            domain.as_deref().unwrap_or("the global key")
        );
    }
    if !changes.is_empty() {
        let v: i64 = tx
            .query_one(
                // The server's clock, as the registry's heartbeats use.
                "UPDATE meta SET version = version + 1, changed = extract(epoch FROM now())::bigint RETURNING version",
                &[],
            )
            .map_err(pg)?
            .get(0);
        // Delivered at commit, to every node that listens.
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &v.to_string()])
            .map_err(pg)?;
    }
    tx.commit().map_err(pg)
}

fn rekey(c: &mut Conn) -> crate::Result<usize> {
    let conf = c.conf.clone();
    let client = c.client()?;
    let mut tx = client.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK])
        .map_err(pg)?;
    let mut n = 0;
    for r in tx
        .query("SELECT id, pem, record FROM keys WHERE pem <> ''", &[])
        .map_err(pg)?
    {
        let (id, sealed, record): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
        if conf.keys.is_current(&sealed) {
            continue;
        }
        let pem = conf.keys.open(&sealed, &record, &format!("key {id}"))?;
        let again = conf.keys.seal(&pem, &record)?;
        tx.execute("UPDATE keys SET pem = $2 WHERE id = $1", &[&id, &again])
            .map_err(pg)?;
        n += 1;
    }
    tx.commit().map_err(pg)?;
    Ok(n)
}

impl Store for PgStore {
    fn load(&self) -> crate::Result<State> {
        self.call(|c| load(c, true))
    }

    fn load_signing(&self) -> crate::Result<State> {
        self.call(|c| load(c, false))
    }

    fn apply(&mut self, changes: &[Change]) -> crate::Result<()> {
        let changes = changes.to_vec();
        self.call(move |c| apply(c, &changes))
    }

    fn location(&self) -> String {
        self.conf.location.clone()
    }

    fn admin_hash(&self, name: &str) -> crate::Result<Option<String>> {
        let name = name.to_string();
        self.call(move |c| {
            Ok(c.client()?
                .query_opt("SELECT hash FROM admin_users WHERE name = $1", &[&name])
                .map_err(pg)?
                .map(|r| r.get(0)))
        })
    }

    fn set_admin(&mut self, name: &str, hash: &str) -> crate::Result<()> {
        let (name, hash) = (name.to_string(), hash.to_string());
        self.call(move |c| {
            c.client()?
                .execute(
                    "INSERT INTO admin_users (name, hash, changed) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, changed = excluded.changed",
                    &[&name, &hash, &now()],
                )
                .map_err(pg)?;
            Ok(())
        })
    }

    fn remove_admin(&mut self, name: &str) -> crate::Result<bool> {
        let name = name.to_string();
        self.call(move |c| {
            Ok(c.client()?
                .execute("DELETE FROM admin_users WHERE name = $1", &[&name])
                .map_err(pg)?
                > 0)
        })
    }

    fn admin_names(&self) -> crate::Result<Vec<String>> {
        self.call(|c| {
            Ok(c.client()?
                .query("SELECT name FROM admin_users ORDER BY name", &[])
                .map_err(pg)?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn watch(&self) -> crate::Result<Box<dyn Watch>> {
        Ok(Box::new(PgWatch::start(self.conf.clone())?))
    }

    fn audit(&self, e: &AuditEntry<'_>) -> crate::Result<()> {
        let time = crate::clock::utc_timestamp(crate::clock::now());
        let fields: [String; 5] = [
            cut(&self.conf.node, 64),
            cut(e.user, MAX_USER_NAME),
            cut(e.remote, 64),
            cut(e.action, 64),
            cut(e.detail, MAX_FIELD),
        ]
        .map(|s| s.to_string());
        let steps = serde_json::to_string(
            &e.steps
                .iter()
                .map(|s| cut(s, MAX_FIELD))
                .collect::<Vec<_>>(),
        )?;
        let ok = e.ok;
        self.call(move |c| {
            let [node, who, remote, action, detail] = &fields;
            c.client()?
                .execute(
                    "INSERT INTO audit (time, node, who, remote, action, detail, ok, steps)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[&time, node, who, remote, action, detail, &ok, &steps],
                )
                .map_err(pg)?;
            Ok(())
        })
    }

    fn recent_audit(&self, n: usize) -> crate::Result<Vec<AuditRow>> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.call(move |c| {
            Ok(c.client()?
                .query(
                    "SELECT time, who, action, detail, ok FROM audit ORDER BY id DESC LIMIT $1",
                    &[&n],
                )
                .map_err(pg)?
                .iter()
                .map(|r| {
                    let s = |i: usize| cut(r.get::<_, &str>(i), SHOWN_FIELD).to_string();
                    AuditRow {
                        time: s(0),
                        user: s(1),
                        action: s(2),
                        detail: s(3),
                        ok: r.get(4),
                    }
                })
                .collect())
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn try_worker(&mut self) -> crate::Result<bool> {
        self.call(|c| {
            c.client()?;
            if c.worker {
                return Ok(true);
            }
            let got: bool = c
                .client()?
                .query_one("SELECT pg_try_advisory_lock($1)", &[&WORKER_LOCK])
                .map_err(pg)?
                .get(0);
            c.worker = got;
            Ok(got)
        })
    }

    fn begin_publishing(&mut self) -> crate::Result<()> {
        self.call(|c| {
            let client = c.client()?;
            client
                .batch_execute("SET lock_timeout = '60s'")
                .map_err(pg)?;
            let r = client.execute("SELECT pg_advisory_lock($1)", &[&PUBLISH_LOCK]);
            let _ = client.batch_execute("RESET lock_timeout");
            match r {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&::postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                    Err(Error::Store(
                        "another node of the fleet has been publishing DNS for a minute: try again later (nothing was published)".into(),
                    ))
                }
                Err(e) => Err(pg(e)),
            }
        })
    }

    fn end_publishing(&mut self) {
        let _ = self.call(|c| {
            if let Some(client) = c.client.as_mut() {
                let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&PUBLISH_LOCK]);
            }
            Ok(())
        });
    }

    fn heartbeat(&mut self, b: &NodeBeat) -> crate::Result<()> {
        let b = b.clone();
        self.call(move |c| {
            c.client()?
                .execute(
                    "INSERT INTO nodes (name, host, version, snapshot, started, worker, seen)
                     VALUES ($1, $2, $3, $4, $5, $6, extract(epoch FROM now())::bigint)
                     ON CONFLICT (name) DO UPDATE SET host = excluded.host, version = excluded.version,
                       snapshot = excluded.snapshot, started = excluded.started,
                       worker = excluded.worker, seen = excluded.seen",
                    &[
                        &cut(&b.name, 64),
                        &cut(&b.host, 255),
                        &cut(&b.version, 32),
                        &b.snapshot,
                        &b.started,
                        &b.worker,
                    ],
                )
                .map_err(pg)?;
            Ok(())
        })
    }

    fn nodes(&self) -> crate::Result<Option<Nodes>> {
        self.call(|c| {
            let client = c.client()?;
            let meta = client
                .query_one(
                    "SELECT version, changed, extract(epoch FROM now())::bigint FROM meta",
                    &[],
                )
                .map_err(pg)?;
            let rows = client
                .query(
                    "SELECT name, host, version, snapshot, started, worker, seen FROM nodes ORDER BY name",
                    &[],
                )
                .map_err(pg)?
                .iter()
                .map(|r| NodeRow {
                    beat: NodeBeat {
                        name: r.get(0),
                        host: r.get(1),
                        version: r.get(2),
                        snapshot: r.get(3),
                        started: r.get(4),
                        worker: r.get(5),
                    },
                    seen: r.get(6),
                })
                .collect();
            Ok(Some(Nodes {
                rows,
                version: meta.get(0),
                changed: meta.get(1),
                now: meta.get(2),
            }))
        })
    }

    fn rekey(&mut self) -> crate::Result<usize> {
        self.call(rekey)
    }
}

/// Watches a shared store: LISTEN on a connection of its own (a thread
/// that waits for notifications), and the change counter read every
/// `store.poll_interval` in case a notification was lost. A lost
/// connection is made again, backing off from 1 s to 30 s; once it is
/// back, the store counts as changed (anything may have happened).
struct PgWatch {
    flag: Arc<AtomicBool>,
    down_since: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl PgWatch {
    fn start(conf: Arc<Conf>) -> crate::Result<PgWatch> {
        let w = PgWatch {
            flag: Arc::default(),
            down_since: Arc::default(),
            stop: Arc::default(),
        };
        let (flag, down, stop) = (w.flag.clone(), w.down_since.clone(), w.stop.clone());
        std::thread::Builder::new()
            .name("dkimd-watch".into())
            .spawn(move || watch_loop(&conf, &flag, &down, &stop))
            .context("cannot start the store watch")?;
        Ok(w)
    }
}

impl Drop for PgWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Watch for PgWatch {
    fn changed(&mut self) -> crate::Result<bool> {
        Ok(self.flag.swap(false, Ordering::AcqRel))
    }

    fn unreachable_since(&self) -> Option<i64> {
        match self.down_since.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }
}

fn watch_loop(conf: &Conf, flag: &AtomicBool, down: &AtomicI64, stop: &AtomicBool) {
    let mut backoff = Duration::from_secs(1);
    let mut last: Option<i64> = None;
    while !stop.load(Ordering::Relaxed) {
        let listened = conf.connect().and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {CHANNEL}")).map_err(pg)?;
            Ok(c)
        });
        let mut c = match listened {
            Ok(c) => c,
            Err(_) => {
                let _ = down.compare_exchange(0, now(), Ordering::AcqRel, Ordering::Acquire);
                sleep_unless(stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        if down.swap(0, Ordering::AcqRel) != 0 {
            flag.store(true, Ordering::Release);
        }
        let mut polled = std::time::Instant::now() - conf.poll;
        let lost = loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let got = c
                .notifications()
                .timeout_iter(Duration::from_millis(250))
                .next();
            match got {
                Ok(Some(_)) => {
                    flag.store(true, Ordering::Release);
                    continue;
                }
                Ok(None) => {}
                Err(_) => break true,
            }
            if polled.elapsed() >= conf.poll {
                polled = std::time::Instant::now();
                match c.query_one("SELECT version FROM meta", &[]) {
                    Ok(r) => {
                        let v: i64 = r.get(0);
                        if last.is_some_and(|l| l != v) {
                            flag.store(true, Ordering::Release);
                        }
                        last = Some(v);
                    }
                    Err(_) => break true,
                }
            }
        };
        if lost {
            let _ = down.compare_exchange(0, now(), Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn conf(url: &str, dir: &std::path::Path) -> crate::Result<Conf> {
        let key = dir.join("k");
        if !key.exists() {
            Kek::create(&key).unwrap();
        }
        let mut cfg = Config::default();
        cfg.store.key_file = Some(key);
        let StoreUrl::Postgres(u) = StoreUrl::parse(url).unwrap() else {
            panic!("not postgres")
        };
        Conf::new(&cfg, &u)
    }

    use crate::config::StoreUrl;

    #[test]
    fn tls_off_loopback_always() {
        let dir = tempfile::tempdir().unwrap();
        // Off loopback: TLS, whatever the URL says.
        let c = conf(
            "postgresql://dkimd@db.example:5432/dkimd?sslmode=disable",
            dir.path(),
        );
        match c {
            // No system roots on this machine: the refusal names the fix.
            Err(e) => assert!(e.to_string().contains("store.ca_file"), "{e}"),
            Ok(c) => {
                assert!(c.tls.is_some());
                assert_eq!(c.pg.get_ssl_mode(), ::postgres::config::SslMode::Require);
            }
        }
        // Loopback: plain unless asked.
        let c = conf("postgresql://dkimd@127.0.0.1:5432/dkimd", dir.path()).unwrap();
        assert!(c.tls.is_none());
        let c = conf("postgresql://dkimd@localhost/dkimd", dir.path()).unwrap();
        assert!(c.tls.is_none());
    }
}
