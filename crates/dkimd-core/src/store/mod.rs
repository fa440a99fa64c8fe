//! The store: domains, keys, published records, settings, web admin users,
//! the change watch and the audit trail.
//!
//! Everything goes through the [`Store`] trait (load everything, apply a
//! list of changes in one transaction, …). The embedded default is SQLite
//! in the state directory (`sqlite`); a fleet shares one PostgreSQL store
//! (`postgres`), with private keys sealed by a key-encryption key
//! ([`kek`]) and a local [`snapshot`] on every node for outages. [`open`]
//! is the only place that chooses.

use crate::config::Config;
use crate::model::settings::{Override, SettingName, Settings};
use dkim::KeyAlgorithm;
use std::path::{Path, PathBuf};

/// A domain with its features and override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Lower-case name.
    pub name: String,
    /// Has the DNS feature (its zone is hosted here).
    pub dns: bool,
    /// Has the mail feature (it sends mail from here).
    pub mail: bool,
    /// Overrides the signing rules.
    pub dkim: Override,
    /// Publishing by delegation: the zone dkimd owns (e.g.
    /// "dkim.example.net") where the targets of the customer's CNAMEs live
    /// (`s1._domainkey.D` → `s1.D.ZONE`). `None`: records at the domain.
    pub delegate: Option<String>,
}

/// Where a key is in its life. A key only moves forward: pending →
/// active → retired → revoked → deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyState {
    /// Made under a new selector, its record published; it does not sign
    /// until every authoritative server serves the record.
    Pending,
    /// Signs now (when signing is on and the domain signs).
    Active,
    /// No longer signs; its record stays published for `retire-after`, so
    /// that mail signed before the switch still verifies.
    Retired,
    /// Its record is served with `p=` empty for `revoke-for`: receivers
    /// see "key revoked".
    Revoked,
    /// Its record is gone and its private key destroyed; the public key
    /// and dates stay for the audit.
    Deleted,
}

impl KeyState {
    /// Every state, in the order of a key's life.
    pub const ALL: [KeyState; 5] = [
        KeyState::Pending,
        KeyState::Active,
        KeyState::Retired,
        KeyState::Revoked,
        KeyState::Deleted,
    ];

    /// The state as the store writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Revoked => "revoked",
            KeyState::Deleted => "deleted",
        }
    }

    /// Parses a state as the store and exports write it.
    pub fn parse(s: &str) -> crate::Result<Self> {
        KeyState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                crate::error::err!(
                    "unknown key state {s:?}: pending, active, retired, revoked or deleted"
                )
            })
    }

    /// True while the key has a record in DNS (every state but deleted).
    pub fn has_record(self) -> bool {
        self != KeyState::Deleted
    }
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// The store's id of the key.
    pub id: i64,
    /// The domain that owns the key; None for the global key.
    pub domain: Option<String>,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// Its size in bits (256 for Ed25519).
    pub bits: usize,
    /// The selector its record is published under.
    pub selector: String,
    /// PKCS#8 PEM. Never shown; empty once the key is deleted.
    pub pem: String,
    /// When it was made (epoch seconds).
    pub created: i64,
    /// Where it is in its life.
    pub state: KeyState,
    /// When it entered that state (epoch seconds).
    pub since: i64,
    /// A pending key: since when every authoritative server serves its
    /// record (epoch seconds); `None` while one does not.
    pub served: Option<i64>,
    /// Its public key record (`v=DKIM1; k=…; p=…`), kept after the private
    /// key is destroyed.
    pub record: String,
}

impl StoredKey {
    /// The record a revoked key is served with: its key type, `p=` empty.
    pub fn revoked_record(&self) -> String {
        format!("v=DKIM1; k={}; p=", self.algorithm.as_str())
    }

    /// The record DNS should serve for this key now; `None` once deleted.
    pub fn wanted_record(&self) -> Option<String> {
        match self.state {
            KeyState::Pending | KeyState::Active | KeyState::Retired => Some(self.record.clone()),
            KeyState::Revoked => Some(self.revoked_record()),
            KeyState::Deleted => None,
        }
    }

    /// "global" or the owning domain, for messages.
    pub fn owner(&self) -> &str {
        self.domain.as_deref().unwrap_or("global")
    }
}

/// A record dkimd has published (or printed for manual publishing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedRecord {
    /// The domain the record belongs to.
    pub domain: String,
    /// `selector._domainkey.domain`, lower case, no final dot.
    pub name: String,
    /// The TXT value.
    pub value: String,
    /// The backend that holds it: bind-zone-file, rfc2136 or manual.
    pub backend: String,
    /// When it was published (epoch seconds).
    pub published: i64,
}

/// Everything in the store.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// The global settings.
    pub settings: Settings,
    /// The domains, sorted by name.
    pub domains: Vec<Domain>,
    /// Every key, in every state.
    pub keys: Vec<StoredKey>,
    /// Every record dkimd has published.
    pub records: Vec<PublishedRecord>,
    /// The store's change counter when this was read: it rises with every
    /// committed change list ("snapshot N").
    pub version: i64,
}

impl State {
    /// The domain of this (lower-case) name.
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
        // A domain that publishes by delegation signs with its own slot key
        // alone once it has one: the global keys' records are not where
        // its customer's CNAMEs point.
        if !keys.is_empty() && self.delegate_of(domain).is_some() {
            return keys;
        }
        // An own key replaces the global key of its algorithm only: an
        // imported RSA key signs beside the global Ed25519 key.
        for g in self.global_keys() {
            if !keys.iter().any(|k| k.algorithm == g.algorithm) {
                keys.push(g);
            }
        }
        keys
    }

    /// The delegation zone of a domain that publishes by delegation.
    pub fn delegate_of(&self, domain: &str) -> Option<&str> {
        self.domain(domain).and_then(|d| d.delegate.as_deref())
    }

    /// Where the record of `k` lives for `domain`: a delegated domain's
    /// own keys under the slot selectors at their targets in the
    /// delegation zone, every other key at `SELECTOR._domainkey.DOMAIN`.
    pub fn record_location(&self, k: &StoredKey, domain: &str) -> String {
        match self.delegate_of(domain) {
            Some(zone)
                if k.domain.as_deref() == Some(domain)
                    && crate::model::names::is_slot(&k.selector) =>
            {
                crate::model::names::delegated_name(&k.selector, domain, zone)
            }
            _ => crate::model::names::record_name(&k.selector, domain),
        }
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
    /// The owning domain; None for the global key.
    pub domain: Option<String>,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// Its size in bits.
    pub bits: usize,
    /// The selector its record is published under.
    pub selector: String,
    /// PKCS#8 PEM.
    pub pem: String,
    /// Its public key record.
    pub record: String,
    /// When the key was made (epoch seconds); `None`: now.
    pub created: Option<i64>,
    /// Its state.
    pub state: KeyState,
    /// When it entered that state; `None`: when it was made.
    pub since: Option<i64>,
    /// A pending key: since when DNS serves it everywhere.
    pub served: Option<i64>,
}

impl NewKey {
    /// A new key of `domain` (None: global) under `selector`, made at
    /// `created` (epoch seconds, by the manager's clock).
    pub fn from_key(
        domain: Option<String>,
        key: &dkim::SigningKey,
        selector: String,
        state: KeyState,
        created: i64,
    ) -> crate::Result<NewKey> {
        Ok(NewKey {
            domain,
            algorithm: key.algorithm(),
            bits: key.bits(),
            selector,
            pem: key.to_pem()?,
            record: key.dns_record(),
            created: Some(created),
            state,
            since: None,
            served: None,
        })
    }
}

/// One change; a list of them is applied in one transaction.
#[derive(Clone, Debug)]
pub enum Change {
    /// A setting's new value, as text.
    Setting(SettingName, String),
    /// Adds or replaces a domain.
    PutDomain(Domain),
    /// Removes a domain and its own keys.
    RemoveDomain(String),
    /// Renames a domain (its own keys and records follow).
    RenameDomain {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Adds a key.
    AddKey(NewKey),
    /// Moves a key (by id) to a state at a time (epoch seconds); to
    /// deleted, its private key is destroyed.
    KeyState(i64, KeyState, i64),
    /// Sets or clears when a pending key was first served everywhere.
    KeyServed(i64, Option<i64>),
    /// Deletes a key (by id).
    DeleteKey(i64),
    /// Remembers a published record.
    PutRecord(PublishedRecord),
    /// Forgets a published record.
    RemoveRecord {
        /// Its domain.
        domain: String,
        /// Its name.
        name: String,
    },
    /// Deletes settings, domains and keys (before an import), but not the
    /// record of what is published in DNS.
    ClearAll,
}

pub mod audit;
mod copy;
pub mod kek;
mod postgres;
pub mod snapshot;
mod sqlite;

pub use audit::{AuditEntry, AuditRow};
pub use copy::{copy_into, Copied};

use crate::config::StoreUrl;

/// Opens (creating when missing) the store the configuration names; a
/// PostgreSQL store is connected to and migrated now.
pub fn open(cfg: &Config) -> crate::Result<Box<dyn Store>> {
    open_url(cfg, &cfg.store.url_in(&cfg.state_dir))
}

/// Opens the store at `url` with the configuration's files (audit log,
/// password and key files).
pub fn open_url(cfg: &Config, url: &StoreUrl) -> crate::Result<Box<dyn Store>> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(
            path,
            cfg.admin.audit_path(&cfg.state_dir),
        )?)),
        StoreUrl::Postgres(u) => Ok(Box::new(postgres::PgStore::open(cfg, u, true)?)),
    }
}

/// Opens the store for a daemon: a PostgreSQL store that does not answer
/// now is connected to later (the daemon serves its snapshot meanwhile).
pub fn open_for_daemon(cfg: &Config) -> crate::Result<Box<dyn Store>> {
    match cfg.store.url_in(&cfg.state_dir) {
        StoreUrl::Postgres(u) => Ok(Box::new(postgres::PgStore::open(cfg, &u, false)?)),
        _ => open(cfg),
    }
}

/// The store the configuration names when it exists, else an empty one in
/// memory (nothing is created on disk); the flag says which.
pub fn open_existing_or_empty(cfg: &Config) -> crate::Result<(Box<dyn Store>, bool)> {
    match cfg.store.url_in(&cfg.state_dir) {
        StoreUrl::Sqlite(path) => {
            // "Cannot tell" (no permission to look) is not "missing".
            let exists = path
                .try_exists()
                .map_err(|e| crate::error::err!("cannot read the store {}: {e}", path.display()))?;
            if exists {
                Ok((open(cfg)?, true))
            } else {
                Ok((
                    Box::new(sqlite::SqliteStore::empty(
                        cfg.admin.audit_path(&cfg.state_dir),
                    )?),
                    false,
                ))
            }
        }
        _ => Ok((open(cfg)?, true)),
    }
}

/// An empty store in memory whose audit trail goes to `audit` (tests).
pub fn in_memory(audit: PathBuf) -> crate::Result<Box<dyn Store>> {
    Ok(Box::new(sqlite::SqliteStore::empty(audit)?))
}

/// The file that holds the store of `state_dir` when it is SQLite's
/// default.
pub fn store_file(state_dir: &Path) -> PathBuf {
    sqlite::SqliteStore::path_in(state_dir)
}

/// One daemon's heartbeat in the node registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBeat {
    /// The node's name (`store.node_name`, else the host name).
    pub name: String,
    /// The host it runs on.
    pub host: String,
    /// Its dkimd version.
    pub version: String,
    /// The store version of the snapshot it signs from.
    pub snapshot: i64,
    /// When the daemon started (epoch seconds).
    pub started: i64,
    /// Whether it is the fleet's worker (DNS publishing, key steps).
    pub worker: bool,
}

/// A node as the registry last heard of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    /// What it said.
    pub beat: NodeBeat,
    /// When it said it (epoch seconds, the store server's clock).
    pub seen: i64,
}

impl Nodes {
    /// What is wrong with a node, given the heartbeat interval: silent
    /// (no heartbeat for three intervals), or serving an old snapshot (the
    /// store changed more than two intervals and a bit ago, and it still
    /// reports an older version).
    pub fn problem(&self, row: &NodeRow, heartbeat: u64) -> Option<String> {
        let beat = i64::try_from(heartbeat.max(1)).unwrap_or(5);
        let quiet = self.now.saturating_sub(row.seen);
        if quiet > 3 * beat {
            Some(format!(
                "silent for {}",
                crate::clock::short_age(u64::try_from(quiet).unwrap_or(0))
            ))
        } else if row.beat.snapshot < self.version
            && self.now.saturating_sub(self.changed) > 2 * beat + 2
        {
            Some(format!(
                "serves old snapshot {} (the store is at {})",
                row.beat.snapshot, self.version
            ))
        } else {
            None
        }
    }

    /// Whether the node is the worker now (it says so and is not silent).
    pub fn is_worker(&self, row: &NodeRow, heartbeat: u64) -> bool {
        let beat = i64::try_from(heartbeat.max(1)).unwrap_or(5);
        row.beat.worker && self.now.saturating_sub(row.seen) <= 3 * beat
    }
}

/// The node registry, with the store's change counter to compare with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nodes {
    /// Every node that ever heartbeat, by name.
    pub rows: Vec<NodeRow>,
    /// The store's version now.
    pub version: i64,
    /// When it last rose (epoch seconds).
    pub changed: i64,
    /// The store server's clock now (epoch seconds).
    pub now: i64,
}

/// Storage for dkimd's state. Every change is one transaction.
pub trait Store: Send {
    /// Reads everything.
    fn load(&self) -> crate::Result<State>;
    /// Reads everything but the published records ([`State::records`] is
    /// empty): what signing needs, without 20,000 records at 10,000
    /// domains.
    fn load_signing(&self) -> crate::Result<State> {
        let mut st = self.load()?;
        st.records = Vec::new();
        Ok(st)
    }
    /// Applies the changes in order, all or none.
    fn apply(&mut self, changes: &[Change]) -> crate::Result<()>;
    /// Where the store is, for messages (a file, a server).
    fn location(&self) -> String;
    /// The password hash (PHC string) of a web admin user.
    fn admin_hash(&self, name: &str) -> crate::Result<Option<String>>;
    /// Sets (or replaces) a web admin user's password hash.
    fn set_admin(&mut self, name: &str, hash: &str) -> crate::Result<()>;
    /// Removes a web admin user; false when there was none.
    fn remove_admin(&mut self, name: &str) -> crate::Result<bool>;
    /// The web admin users' names, sorted.
    fn admin_names(&self) -> crate::Result<Vec<String>>;
    /// A watch that tells when another process changed the store.
    fn watch(&self) -> crate::Result<Box<dyn Watch>>;
    /// Appends one entry to the audit trail.
    fn audit(&self, entry: &AuditEntry<'_>) -> crate::Result<()>;
    /// The newest `n` entries of the audit trail, newest first.
    fn recent_audit(&self, n: usize) -> crate::Result<Vec<AuditRow>>;
    /// True when other machines share this store (a daemon then keeps a
    /// local snapshot and heartbeats).
    fn shared(&self) -> bool {
        false
    }
    /// Tries to become (or confirms being) the one worker that publishes
    /// DNS and runs the key steps. A store of one machine always says yes;
    /// a shared one holds a lock on the server for as long as its
    /// connection lives.
    fn try_worker(&mut self) -> crate::Result<bool> {
        Ok(true)
    }
    /// Waits (at most a minute) until no other node of the fleet publishes
    /// DNS, and holds that turn until [`Store::end_publishing`]; turns nest.
    /// A store of one machine has no other node to wait for.
    fn begin_publishing(&mut self) -> crate::Result<()> {
        Ok(())
    }
    /// Ends a turn [`Store::begin_publishing`] took.
    fn end_publishing(&mut self) {}
    /// Writes a daemon's heartbeat to the node registry (shared stores).
    fn heartbeat(&mut self, _beat: &NodeBeat) -> crate::Result<()> {
        Ok(())
    }
    /// The node registry; `None` for a store of one machine.
    fn nodes(&self) -> crate::Result<Option<Nodes>> {
        Ok(None)
    }
    /// Seals every private key again with the current key-encryption key;
    /// the count of keys changed.
    fn rekey(&mut self) -> crate::Result<usize> {
        crate::error::bail!(
            "store {} keeps no sealed keys (only a PostgreSQL store does)",
            self.location()
        )
    }
}

/// Tells when the store changed under the process that watches it.
pub trait Watch: Send {
    /// True when another connection committed since the last call.
    fn changed(&mut self) -> crate::Result<bool>;
    /// Since when (epoch seconds) the store has not answered; `None` while
    /// it does.
    fn unreachable_since(&self) -> Option<i64> {
        None
    }
}

/// One store shared by the requests of a long-running process (the web
/// page): opened, checked and migrated once.
#[derive(Clone)]
pub struct Shared(std::sync::Arc<std::sync::Mutex<Box<dyn Store>>>);

impl Shared {
    /// Shares `store`.
    pub fn new(store: Box<dyn Store>) -> Shared {
        Shared(std::sync::Arc::new(std::sync::Mutex::new(store)))
    }

    fn with<T>(&self, f: impl FnOnce(&mut dyn Store) -> crate::Result<T>) -> crate::Result<T> {
        let mut g = self
            .0
            .lock()
            .map_err(|_| crate::Error::Store("the store lock is poisoned".into()))?;
        f(g.as_mut())
    }
}

impl Store for Shared {
    fn load(&self) -> crate::Result<State> {
        self.with(|s| s.load())
    }
    fn load_signing(&self) -> crate::Result<State> {
        self.with(|s| s.load_signing())
    }
    fn apply(&mut self, changes: &[Change]) -> crate::Result<()> {
        self.with(|s| s.apply(changes))
    }
    fn location(&self) -> String {
        self.with(|s| Ok(s.location())).unwrap_or_default()
    }
    fn admin_hash(&self, name: &str) -> crate::Result<Option<String>> {
        self.with(|s| s.admin_hash(name))
    }
    fn set_admin(&mut self, name: &str, hash: &str) -> crate::Result<()> {
        self.with(|s| s.set_admin(name, hash))
    }
    fn remove_admin(&mut self, name: &str) -> crate::Result<bool> {
        self.with(|s| s.remove_admin(name))
    }
    fn admin_names(&self) -> crate::Result<Vec<String>> {
        self.with(|s| s.admin_names())
    }
    fn watch(&self) -> crate::Result<Box<dyn Watch>> {
        self.with(|s| s.watch())
    }
    fn audit(&self, entry: &AuditEntry<'_>) -> crate::Result<()> {
        self.with(|s| s.audit(entry))
    }
    fn recent_audit(&self, n: usize) -> crate::Result<Vec<AuditRow>> {
        self.with(|s| s.recent_audit(n))
    }
    fn shared(&self) -> bool {
        self.with(|s| Ok(s.shared())).unwrap_or(false)
    }
    fn try_worker(&mut self) -> crate::Result<bool> {
        self.with(|s| s.try_worker())
    }
    fn heartbeat(&mut self, beat: &NodeBeat) -> crate::Result<()> {
        self.with(|s| s.heartbeat(beat))
    }
    fn begin_publishing(&mut self) -> crate::Result<()> {
        self.with(|s| s.begin_publishing())
    }
    fn end_publishing(&mut self) {
        let _ = self.with(|s| {
            s.end_publishing();
            Ok(())
        });
    }
    fn nodes(&self) -> crate::Result<Option<Nodes>> {
        self.with(|s| s.nodes())
    }
    fn rekey(&mut self) -> crate::Result<usize> {
        self.with(|s| s.rekey())
    }
}
