//! The manager: domains, keys, selectors, enable/disable, publishing and the
//! live DNS check, over one store. It decides and records; each command's
//! steps go to a [`StepSink`] that the command line prints and the page
//! renders.

mod delegation;
mod domains;
mod enable;
mod keys;
mod lifecycle;
mod migrate;
mod plan;
mod publishing;
mod set;
mod status;
#[cfg(test)]
mod tests;
mod transfer;

pub use crate::steps::{Quiet, Recording, StepLine, StepSink, Steps};
pub use enable::EnableOptions;
pub use lifecycle::{next_step, propagation_wait, RotateTarget, StepReport, PENDING_ALARM};
pub use plan::{all_decisions, keys_at};
pub use set::{check_settings, SettingsChange, SettingsRequest};
pub use status::{DomainStatus, KeyStatus, StatusPage, StatusQuery};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::publish::PublishEnv;
use crate::store::{State, Store};
use dkim::{KeyAlgorithm, SigningKey};

/// The store, the configuration, the clock and the steps of one command.
pub struct Manager {
    /// The configuration.
    pub cfg: Config,
    /// The store.
    pub store: Box<dyn Store>,
    /// The steps reported so far.
    pub out: Steps,
    clock: SharedClock,
    publishers: std::sync::Arc<dyn crate::publish::Publishers>,
    /// Publishing targets (backend and server or file) whose DNS did not
    /// answer in this run, with why: their other records are not tried.
    down: std::collections::HashMap<String, String>,
    /// Record changes for backends that batch (zone files), gathered
    /// during a command and made at [`Manager::flush_batch`]: one edit,
    /// one serial step, one reload per zone file and command.
    batch: Option<Vec<PendingRecord>>,
}

/// A record change waiting for the batch.
struct PendingRecord {
    domain: String,
    /// The name whose zone publishes it: the domain, or its delegation
    /// zone for a delegated target.
    via: String,
    name: String,
    /// The value to publish; `None` to remove.
    value: Option<String>,
    /// The publishing target (backend and file).
    key: String,
}

fn generate(alg: KeyAlgorithm, bits: usize) -> crate::Result<SigningKey> {
    Ok(match alg {
        KeyAlgorithm::Rsa => SigningKey::generate_rsa(bits)?,
        KeyAlgorithm::Ed25519 => SigningKey::generate_ed25519()?,
    })
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

impl Manager {
    /// A manager over the store the configuration names (created when
    /// missing), on the system clock.
    pub fn open(cfg: Config, out: Steps) -> crate::Result<Manager> {
        let store = crate::store::open(&cfg)?;
        Ok(Manager::new(cfg, store, out, crate::clock::system()))
    }

    /// For commands that only read: the store when it exists, else an empty
    /// one in memory (nothing is created on disk). The flag says whether
    /// the store existed.
    pub fn open_read_only(cfg: Config, out: Steps) -> crate::Result<(Manager, bool)> {
        let (store, existed) = crate::store::open_existing_or_empty(&cfg)?;
        Ok((
            Manager::new(cfg, store, out, crate::clock::system()),
            existed,
        ))
    }

    /// A manager over a given store and clock (the page's shared store,
    /// tests).
    pub fn new(cfg: Config, store: Box<dyn Store>, out: Steps, clock: SharedClock) -> Manager {
        Manager {
            cfg,
            store,
            out,
            clock,
            publishers: std::sync::Arc::new(crate::publish::Configured),
            down: Default::default(),
            batch: None,
        }
    }

    /// The same manager publishing through `publishers` (tests record what
    /// would be published instead of changing DNS).
    pub fn with_publishers(
        mut self,
        publishers: std::sync::Arc<dyn crate::publish::Publishers>,
    ) -> Manager {
        self.publishers = publishers;
        self
    }

    /// The same manager on another clock (`dkimd rotate --step --at T`).
    pub fn with_clock(mut self, clock: SharedClock) -> Manager {
        self.clock = clock;
        self
    }

    /// Reads the whole store.
    pub fn load(&self) -> crate::Result<State> {
        self.store.load()
    }

    /// The state without the published records (see
    /// [`Store::load_signing`]): what signing and status need.
    pub fn load_signing(&self) -> crate::Result<State> {
        self.store.load_signing()
    }

    /// The selector a new key gets when none is named: this year and month.
    pub fn default_selector(&self) -> String {
        crate::clock::year_month(self.clock.now())
    }

    /// What a publisher works with: the clock, and the step sink's notices.
    fn publish_env(&self) -> PublishEnv {
        let sink = self.out.sink();
        PublishEnv {
            clock: self.clock.clone(),
            notice: std::sync::Arc::new(move |t: &str| sink.notice(t)),
        }
    }
}

/// Running daemons notice store changes within a second on their own;
/// this says whether one runs on this store (it holds the store open), or
/// only on another one.
fn reload_daemon(st: &dyn Store) -> String {
    if st.shared() {
        return "the daemons of every node that shares this store pick up the change within a second (they listen for it)".into();
    }
    let store = std::path::PathBuf::from(st.location());
    let (ours, others) = crate::sys::daemons(&store);
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    if !ours.is_empty() {
        format!(
            "the running dkimd (pid {}) picks up the change within a second (it watches the store)",
            join(&ours)
        )
    } else if !others.is_empty() {
        format!(
            "a dkimd daemon runs (pid {}), but on another store than {}: it does not see this change",
            join(&others),
            store.display()
        )
    } else {
        "no dkimd daemon is running (start it with `dkimd run` or systemctl start dkimd)".into()
    }
}
