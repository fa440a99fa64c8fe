//! `dkimd store migrate`: one store's whole content copied into another,
//! empty one (SQLite to PostgreSQL and back), through the `Store` trait.

use super::{Change, NewKey, Store};
use crate::error::bail;

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Settings.
    pub settings: usize,
    /// Domains.
    pub domains: usize,
    /// Keys, in every state.
    pub keys: usize,
    /// Records of what is published.
    pub records: usize,
    /// Web admin users.
    pub admins: usize,
}

/// Copies settings, domains, keys (with their states and dates), the
/// record of what is published and the web admin users from `from` into
/// `to`, which must be empty, in one transaction (the admin users after
/// it). The audit trail stays where it was.
pub fn copy_into(from: &dyn Store, to: &mut dyn Store) -> crate::Result<Copied> {
    let there = to.load()?;
    if !there.domains.is_empty() || !there.keys.is_empty() || !there.records.is_empty() {
        bail!(
            "{} is not empty ({} domains, {} keys): migrate only into a new store",
            to.location(),
            there.domains.len(),
            there.keys.len()
        );
    }
    let st = from.load()?;
    let pairs = st.settings.to_pairs();
    let mut changes: Vec<Change> = pairs
        .iter()
        .map(|(k, v)| Change::Setting(*k, v.clone()))
        .collect();
    changes.extend(st.domains.iter().cloned().map(Change::PutDomain));
    changes.extend(st.keys.iter().map(|k| {
        Change::AddKey(NewKey {
            domain: k.domain.clone(),
            algorithm: k.algorithm,
            bits: k.bits,
            selector: k.selector.clone(),
            pem: k.pem.clone(),
            record: k.record.clone(),
            created: Some(k.created),
            state: k.state,
            since: Some(k.since),
            served: k.served,
        })
    }));
    changes.extend(st.records.iter().cloned().map(Change::PutRecord));
    to.apply(&changes)?;
    let names = from.admin_names()?;
    for n in &names {
        if let Some(h) = from.admin_hash(n)? {
            to.set_admin(n, &h)?;
        }
    }
    Ok(Copied {
        settings: pairs.len(),
        domains: st.domains.len(),
        keys: st.keys.len(),
        records: st.records.len(),
        admins: names.len(),
    })
}
