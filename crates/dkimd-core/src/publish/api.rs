//! What every publishing backend is: the [`Publisher`] trait, the
//! [`Outcome`] of one change, and what a backend is given to work with.

use crate::clock::SharedClock;
use crate::config::Backend;
use crate::error::{err, Error};
use std::sync::Arc;

/// What publishing or removing one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record was not there and has been added.
    Added,
    /// Exactly this record was there already.
    AlreadyPresent,
    /// Stale records at the same name (this many) were replaced.
    Replaced(usize),
    /// This many records were removed.
    Removed(usize),
    /// Nothing to remove.
    Absent,
    /// Manual backend: DNS does not serve the record yet; the admin must publish it.
    Pending(String),
    /// The zone file already said so, but DNS served an older version of
    /// the zone (an earlier reload failed): reloaded, and now served.
    ReloadedNowServed,
    /// The zone file no longer had the record, but DNS still served it (an
    /// earlier reload failed): reloaded, and now gone.
    ReloadedNowRemoved,
}

impl Outcome {
    /// The words `enable` and friends print.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Added => "record added".into(),
            Outcome::AlreadyPresent => "already present".into(),
            Outcome::Replaced(0) => "duplicate records made one".into(),
            Outcome::Replaced(1) => "replaced a stale record".into(),
            Outcome::Replaced(n) => format!("replaced {n} stale records"),
            Outcome::Removed(1) => "record removed".into(),
            Outcome::Removed(n) => format!("{n} records removed"),
            Outcome::Absent => "no record to remove".into(),
            Outcome::Pending(what) => format!("publish by hand: {what}"),
            Outcome::ReloadedNowServed => {
                "in the zone file but not served (an earlier reload failed): zone reloaded, now served".into()
            }
            Outcome::ReloadedNowRemoved => {
                "gone from the zone file but still served (an earlier reload failed): zone reloaded".into()
            }
        }
    }

    /// True when DNS holds the record afterwards (for publishing).
    pub fn is_published(&self) -> bool {
        matches!(
            self,
            Outcome::Added
                | Outcome::AlreadyPresent
                | Outcome::Replaced(_)
                | Outcome::ReloadedNowServed
        )
    }
}

/// Tells the admin about a change still in progress ("waiting up to 30 s
/// for DNS to serve serial N").
pub type Notice = Arc<dyn Fn(&str) + Send + Sync>;

/// What a backend works with besides its configuration.
#[derive(Clone)]
pub struct PublishEnv {
    /// The clock (zone serials carry the date).
    pub clock: SharedClock,
    /// Where progress notices go.
    pub notice: Notice,
}

impl PublishEnv {
    /// The system clock, notices dropped.
    pub fn quiet() -> PublishEnv {
        PublishEnv {
            clock: crate::clock::system(),
            notice: Arc::new(|_| {}),
        }
    }
}

/// One way of changing DNS.
pub trait Publisher {
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// Where, in words (file, server).
    fn target(&self) -> String;
    /// Makes `value` the only TXT record at `name`.
    fn set(&self, name: &str, value: &str) -> crate::Result<Outcome>;
    /// Removes every TXT record at `name`.
    fn remove(&self, name: &str) -> crate::Result<Outcome>;
    /// Several changes (a value to set, or `None` to remove), with an
    /// outcome each; backends that can make them in one go (a zone file:
    /// one edit, one reload) do.
    fn apply_many(&self, changes: &[(String, Option<String>)]) -> Vec<crate::Result<Outcome>> {
        changes
            .iter()
            .map(|(n, v)| match v {
                Some(v) => self.set(n, v),
                None => self.remove(n),
            })
            .collect()
    }
    /// True when [`Publisher::apply_many`] does better than one change at
    /// a time, so that the manager gathers a command's changes for it.
    fn batches(&self) -> bool {
        false
    }
}

/// A copy of an error for each record of a batch it stopped (keeping
/// [`Error::Unreachable`], which the manager acts on).
pub(crate) fn copy_error(e: &Error) -> Error {
    match e.root() {
        Error::Unreachable(u) => Error::Unreachable(u.clone()),
        _ => err!("{}", e.chain()),
    }
}
