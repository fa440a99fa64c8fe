//! The key lifecycle: a rotation makes new keys under a new selector and
//! publishes them, pending; the step promotes a pending key once every
//! authoritative server of its zone serves its record (and
//! `propagation-wait` has passed), retires the key it replaces, revokes
//! retired keys after `retire-after`, deletes revoked ones after
//! `revoke-for`, and starts the rotations `rotate-every` asks for.
//!
//! The store decides each transition (one transaction each) and DNS
//! follows from the store's state, so a crash between the two is repaired
//! by the next step.

use super::plan::{all_decisions, free_base, keys_at, selector_taken, slot_free, wanted_records};
use super::{generate, Manager};
use crate::clock::utc_timestamp;
use crate::config::Backend;
use crate::dns::authoritative::{self, Query, ServerState};
use crate::error::{Error, Field};
use crate::model::names::{domain_name, is_slot, record_name, selector_for, SLOTS};
use crate::model::period::Period;
use crate::model::settings::{SettingName, Settings};
use crate::store::{Change, KeyState, NewKey, State, StoredKey};
use dkim::KeyAlgorithm;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A pending key whose record is not served everywhere after this long is
/// an alarm.
pub const PENDING_ALARM: Period = Period::days(1);

/// Which keys a rotation replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateTarget {
    /// The global keys, and every domain's own keys.
    All,
    /// These domains' own keys.
    Domains(Vec<String>),
}

/// What a step did, what it waits for and what is wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Transitions made (promoted, retired, revoked, deleted, started).
    pub changed: Vec<String>,
    /// Pending keys that do not sign yet, and why.
    pub waiting: Vec<String>,
    /// Problems an admin must look at.
    pub alarms: Vec<String>,
}

/// The next step of a key's life, in words, with when it is due (epoch
/// seconds) when that is known.
pub fn next_step(k: &StoredKey, s: &Settings, ttl: u32) -> Option<(String, Option<i64>)> {
    match k.state {
        KeyState::Pending => Some(match k.served {
            Some(t) => (
                "signs (its record is served everywhere)".into(),
                Some(t.saturating_add(propagation_wait(s, ttl).as_i64())),
            ),
            None => (
                "signs once every authoritative server serves its record".into(),
                None,
            ),
        }),
        KeyState::Active => s.rotate_every.map(|p| {
            (
                "a rotation starts (rotate-every)".into(),
                Some(k.created.saturating_add(p.as_i64())),
            )
        }),
        KeyState::Retired => Some((
            "revoked (its record is served with p= empty)".into(),
            Some(k.since.saturating_add(s.retire_after.as_i64())),
        )),
        KeyState::Revoked => Some((
            "deleted (record removed, private key destroyed)".into(),
            Some(k.since.saturating_add(s.revoke_for.as_i64())),
        )),
        KeyState::Deleted => None,
    }
}

/// How long a pending key's record must have been served everywhere.
pub fn propagation_wait(s: &Settings, ttl: u32) -> Period {
    s.propagation_wait
        .unwrap_or(Period::seconds(u64::from(ttl)))
}

/// The base selector (RSA's; Ed25519 adds `-ed25519`) of a key.
fn base_of(k: &StoredKey) -> String {
    match k.algorithm {
        KeyAlgorithm::Ed25519 => k
            .selector
            .strip_suffix("-ed25519")
            .unwrap_or(&k.selector)
            .to_string(),
        KeyAlgorithm::Rsa => k.selector.clone(),
    }
}

/// The owner's key of each algorithm in `state`.
fn keys_of<'a>(
    st: &'a State,
    owner: Option<&'a str>,
    state: KeyState,
) -> impl Iterator<Item = &'a StoredKey> + 'a {
    st.keys
        .iter()
        .filter(move |k| k.state == state && k.domain.as_deref() == owner)
}

/// A key a rotation is about to add, as later plans of the same rotation
/// see it (the `n`th change: an id no stored key has).
fn planned(owner: &Option<String>, nk: &NewKey, n: usize) -> StoredKey {
    StoredKey {
        id: -1 - i64::try_from(n).unwrap_or(0),
        domain: owner.clone(),
        algorithm: nk.algorithm,
        bits: nk.bits,
        selector: nk.selector.clone(),
        pem: String::new(),
        created: 0,
        state: KeyState::Pending,
        since: 0,
        served: None,
        record: nk.record.clone(),
    }
}

/// Every key of a domain's own, in any state.
fn keys_of_any<'a>(st: &'a State, domain: &'a str) -> impl Iterator<Item = &'a StoredKey> + 'a {
    st.keys
        .iter()
        .filter(move |k| k.domain.as_deref() == Some(domain))
}

/// The signing domains at which `k`'s record is wanted at `now`.
fn domains_using(st: &State, k: &StoredKey, now: i64) -> Vec<String> {
    if !st.settings.signing {
        return Vec::new();
    }
    all_decisions(st)
        .into_iter()
        .filter(|(_, d)| d.signs)
        .map(|(n, _)| n)
        .filter(|n| match &k.domain {
            Some(d) => d == n,
            None => keys_at(st, n, now).iter().any(|x| x.id == k.id),
        })
        .collect()
}

/// What a domain's authoritative servers serve for one key's record.
type DomainCheck = (String, crate::Result<Vec<ServerState>>);

impl Manager {
    pub(super) fn now_i64(&self) -> i64 {
        i64::try_from(self.clock.now()).unwrap_or(i64::MAX)
    }

    /// Starts a rotation: new keys under a new selector, published now and
    /// pending, for the global keys and every own key (`All`) or for the
    /// named domains' own keys. The old keys sign until the step promotes
    /// the new ones.
    pub fn rotate(
        &mut self,
        target: &RotateTarget,
        selector: Option<&str>,
        algorithms: Option<&[KeyAlgorithm]>,
    ) -> crate::Result<()> {
        let st = self.load()?;
        if !st.settings.signing {
            return Err(Error::Usage(
                "signing is off: a new key could not be published; turn signing on with `dkimd enable` first".into(),
            ));
        }
        if let Some(s) = selector {
            crate::model::names::selector(s)?;
        }
        let wanted_algs = |own: Vec<KeyAlgorithm>| -> Vec<KeyAlgorithm> {
            match algorithms {
                Some(a) => own.into_iter().filter(|x| a.contains(x)).collect(),
                None => own,
            }
        };
        let mut plans: Vec<(Option<String>, Vec<KeyAlgorithm>, bool)> = Vec::new();
        match target {
            RotateTarget::All => {
                let global: Vec<KeyAlgorithm> = match algorithms {
                    Some(a) => st
                        .settings
                        .algorithms
                        .iter()
                        .copied()
                        .filter(|x| a.contains(x))
                        .collect(),
                    None => st.settings.algorithms.clone(),
                };
                plans.push((None, global, true));
                let owners: BTreeSet<&str> = st
                    .keys
                    .iter()
                    .filter(|k| k.state == KeyState::Active)
                    .filter_map(|k| k.domain.as_deref())
                    .collect();
                for d in owners {
                    let own = keys_of(&st, Some(d), KeyState::Active)
                        .map(|k| k.algorithm)
                        .collect();
                    plans.push((Some(d.to_string()), wanted_algs(own), false));
                }
            }
            RotateTarget::Domains(names) => {
                if names.is_empty() {
                    return Err(Error::Usage(
                        "name the domains to rotate, or --all for the global keys and every own key"
                            .into(),
                    ));
                }
                for n in names {
                    let d = domain_name(n, Field::Domain)?;
                    if st.domain(&d).is_none() {
                        return Err(Error::NotFound(format!("no domain {d}")));
                    }
                    let own: Vec<KeyAlgorithm> = keys_of(&st, Some(&d), KeyState::Active)
                        .map(|k| k.algorithm)
                        .collect();
                    if own.is_empty() && st.delegate_of(&d).is_some() {
                        return Err(Error::invalid(
                            Field::Domain,
                            format!(
                                "{d} publishes by delegation and its first key is still pending, waiting for the customer's CNAME to lead to its record (see `dkimd status`): there is nothing to rotate yet"
                            ),
                        ));
                    }
                    if own.is_empty() {
                        return Err(Error::invalid(
                            Field::Domain,
                            format!(
                                "{d} signs with the global key, which every domain without a key of its own shares: rotate it with `dkimd rotate --all`, or give {d} a key of its own with `dkimd key generate {d}`"
                            ),
                        ));
                    }
                    let algs = wanted_algs(own);
                    if algs.is_empty() {
                        return Err(Error::invalid(
                            Field::Algorithms,
                            format!("{d} has no own key of the algorithms named"),
                        ));
                    }
                    plans.push((Some(d), algs, true));
                }
            }
        }
        self.out.title("Starting a key rotation");
        let (changes, lines, busy) = self.rotation_changes(&st, &plans, selector)?;
        // Asked for by name, a delegated domain with no free selector is
        // an error; among --all, a failed step.
        if let (RotateTarget::Domains(_), Some(b)) = (target, busy.first()) {
            return Err(Error::invalid(Field::Domain, b.clone()));
        }
        for b in &busy {
            self.out.step("rotate", b, false);
        }
        if changes.is_empty() {
            for l in lines {
                self.out.step("rotate", &l, true);
            }
            return Ok(());
        }
        self.store.apply(&changes)?;
        for l in lines {
            self.out.step("rotate", &l, true);
        }
        let touched: BTreeSet<String> = self.affected_domains(&changes)?;
        self.reconcile(&touched)?;
        let st = self.load()?;
        self.out.step(
            "rotate",
            &format!(
                "the new keys are pending: each signs once every authoritative server of its zone serves its record and propagation-wait ({}) has passed; `dkimd rotate --step` does that (the running daemon does it every {} s)",
                st.settings
                    .propagation_wait
                    .map_or_else(|| "the record's TTL".to_string(), |p| p.to_string()),
                self.cfg.milter.key_step_interval
            ),
            true,
        );
        Ok(())
    }

    /// The new pending keys of each plan (owner, algorithms, and whether an
    /// explicit selector is used exactly), with a line each.
    fn rotation_changes(
        &self,
        st: &State,
        plans: &[(Option<String>, Vec<KeyAlgorithm>, bool)],
        selector: Option<&str>,
    ) -> crate::Result<(Vec<Change>, Vec<String>, Vec<String>)> {
        let mut st = st.clone();
        let mut changes = Vec::new();
        let mut lines = Vec::new();
        // Delegated domains whose two selectors are both still in use.
        let mut busy = Vec::new();
        let default = self.default_selector();
        for (owner, algs, exact) in plans {
            let who = owner.as_deref().unwrap_or("global key");
            let mut todo = Vec::new();
            for alg in algs {
                if let Some(p) =
                    keys_of(&st, owner.as_deref(), KeyState::Pending).find(|k| k.algorithm == *alg)
                {
                    lines.push(format!(
                        "{who}: a rotation of its {alg} key is under way already (selector {}, pending since {})",
                        p.selector,
                        utc_timestamp(u64::try_from(p.since).unwrap_or(0))
                    ));
                } else {
                    todo.push(*alg);
                }
            }
            if todo.is_empty() {
                continue;
            }
            // A domain that publishes by delegation holds one key per
            // slot, s1 or s2: the new key takes the slot that is free.
            if let Some(d) = owner.as_deref().filter(|d| st.delegate_of(d).is_some()) {
                // One key per slot, RSA; one rotation at a time, whatever
                // own key of another algorithm is pending from before.
                if let Some(p) = keys_of(&st, Some(d), KeyState::Pending).next() {
                    lines.push(format!(
                        "{who}: a rotation is under way already (selector {}, pending since {})",
                        p.selector,
                        utc_timestamp(u64::try_from(p.since).unwrap_or(0))
                    ));
                    continue;
                }
                todo = vec![KeyAlgorithm::Rsa];
                let Some(slot) = SLOTS.iter().find(|s| slot_free(&st, d, s)) else {
                    let held: Vec<String> = keys_of_any(&st, d)
                        .filter(|k| is_slot(&k.selector) && k.state.has_record())
                        .map(|k| {
                            format!(
                                "{} is {} since {}",
                                k.selector,
                                k.state,
                                utc_timestamp(u64::try_from(k.since).unwrap_or(0))
                            )
                        })
                        .collect();
                    busy.push(format!(
                        "{d}: no free selector for a rotation by delegation ({}): a selector is reused once its previous key is revoked and gone (retire-after, then revoke-for)",
                        held.join(", ")
                    ));
                    continue;
                };
                if selector.is_some() {
                    lines.push(format!(
                        "{d}: publishes by delegation, so its new key takes selector {slot}, not the one named"
                    ));
                }
                let alg = todo.first().copied().unwrap_or(KeyAlgorithm::Rsa);
                let bits = if alg == KeyAlgorithm::Rsa {
                    st.settings.rsa_bits
                } else {
                    256
                };
                let key = generate(alg, bits)?;
                let nk = NewKey::from_key(
                    owner.clone(),
                    &key,
                    (*slot).to_string(),
                    KeyState::Pending,
                    self.now_i64(),
                )?;
                lines.push(format!(
                    "{who}: new {alg} key, {} bits, selector {slot}: pending (its record goes to {})",
                    key.bits(),
                    crate::model::names::delegated_name(slot, d, st.delegate_of(d).unwrap_or_default())
                ));
                st.keys.push(planned(owner, &nk, changes.len()));
                changes.push(Change::AddKey(nk));
                continue;
            }
            if owner.is_none()
                && selector.is_some_and(is_slot)
                && st.domains.iter().any(|d| d.delegate.is_some())
            {
                return Err(Error::invalid(
                    Field::Selector,
                    "selectors s1 and s2 belong to the domains that publish by delegation: choose another for the global keys",
                ));
            }
            let free = |base: &str| {
                todo.iter()
                    .all(|a| !selector_taken(&st, owner.as_deref(), &selector_for(base, *a)))
            };
            let base = match selector {
                Some(s) if *exact => {
                    if !free(s) {
                        return Err(Error::invalid(
                            Field::Selector,
                            format!(
                                "selector {s} is in use for {who} (a key or a record under it exists): choose another"
                            ),
                        ));
                    }
                    s.to_string()
                }
                other => free_base(&st, owner.as_deref(), other.unwrap_or(&default), &todo)
                    .ok_or_else(|| Error::invalid(Field::Selector, "no free selector"))?,
            };
            for alg in todo {
                let bits = if alg == KeyAlgorithm::Rsa {
                    st.settings.rsa_bits
                } else {
                    256
                };
                let key = generate(alg, bits)?;
                let sel = selector_for(&base, alg);
                let nk = NewKey::from_key(
                    owner.clone(),
                    &key,
                    sel.clone(),
                    KeyState::Pending,
                    self.now_i64(),
                )?;
                lines.push(format!(
                    "{who}: new {alg} key, {} bits, selector {sel}: pending",
                    key.bits()
                ));
                // Later plans see the selector as taken.
                st.keys.push(planned(owner, &nk, changes.len()));
                changes.push(Change::AddKey(nk));
            }
        }
        Ok((changes, lines, busy))
    }

    /// The signing domains whose records the keys added by `changes` go to.
    fn affected_domains(&self, changes: &[Change]) -> crate::Result<BTreeSet<String>> {
        let st = self.load()?;
        let mut out = BTreeSet::new();
        for c in changes {
            if let Change::AddKey(nk) = c {
                for k in st.keys.iter().filter(|k| {
                    k.state == KeyState::Pending
                        && k.domain == nk.domain
                        && k.selector == nk.selector
                }) {
                    out.extend(domains_using(&st, k, self.now_i64()));
                }
            }
        }
        Ok(out)
    }

    /// Carries out every step of the key lifecycle due now (the manager's
    /// clock): promote pending keys DNS serves everywhere (retiring the
    /// keys they replace), revoke, delete, start scheduled rotations, then
    /// bring DNS in line. Safe to run again at any time.
    pub fn step(&mut self) -> crate::Result<StepReport> {
        let now = self.now_i64();
        self.out.title(&format!(
            "Key lifecycle step at {}",
            utc_timestamp(u64::try_from(now).unwrap_or(0))
        ));
        let mut report = StepReport::default();
        // On a shared store, one node of the fleet takes the steps.
        if !self.store.try_worker()? {
            self.out.step(
                "waiting",
                "another node is the fleet's worker and takes the steps (its daemon, or its rotate --step); nothing done here",
                true,
            );
            return Ok(report);
        }
        let mut touched: BTreeSet<String> = BTreeSet::new();
        // First bring DNS in line with the store, so that what an
        // interrupted command left undone is published before it is checked.
        self.reconcile(&BTreeSet::new())?;
        let st = self.load()?;
        if st.settings.signing {
            self.promote(&st, now, &mut report, &mut touched)?;
        }
        // Each part reads the state its predecessor left; one at a time
        // (a state of 10,000 domains holds 20,000 records).
        drop(st);
        // Retired → revoked → deleted, each on its own clock.
        let st = self.load()?;
        for k in &st.keys {
            let (to, after) = match k.state {
                KeyState::Retired => (KeyState::Revoked, st.settings.retire_after),
                KeyState::Revoked => (KeyState::Deleted, st.settings.revoke_for),
                _ => continue,
            };
            if k.since.saturating_add(after.as_i64()) > now {
                continue;
            }
            touched.extend(domains_using(&st, k, now));
            self.store.apply(&[Change::KeyState(k.id, to, now)])?;
            let line = format!(
                "{}: {} key, selector {}: {to}{}",
                k.owner(),
                k.algorithm,
                k.selector,
                if to == KeyState::Deleted {
                    " (private key destroyed)"
                } else {
                    " (its record is served with p= empty)"
                }
            );
            self.out.step("step", &line, true);
            report.changed.push(line);
        }
        drop(st);
        // Rotations rotate-every asks for.
        let st = self.load()?;
        if let (true, Some(every)) = (st.settings.signing, st.settings.rotate_every) {
            let mut plans = Vec::new();
            let owners: BTreeSet<Option<String>> = st
                .keys
                .iter()
                .filter(|k| k.state == KeyState::Active)
                .map(|k| k.domain.clone())
                .collect();
            for owner in owners {
                let due: Vec<KeyAlgorithm> = keys_of(&st, owner.as_deref(), KeyState::Active)
                    .filter(|k| k.created.saturating_add(every.as_i64()) <= now)
                    .filter(|k| {
                        !keys_of(&st, owner.as_deref(), KeyState::Pending)
                            .any(|p| p.algorithm == k.algorithm)
                    })
                    .map(|k| k.algorithm)
                    .collect();
                if !due.is_empty() {
                    plans.push((owner, due, false));
                }
            }
            if !plans.is_empty() {
                let (changes, lines, busy) = self.rotation_changes(&st, &plans, None)?;
                report.waiting.extend(busy);
                self.store.apply(&changes)?;
                touched.extend(self.affected_domains(&changes)?);
                for l in lines {
                    let l = format!("{l} (rotate-every {every})");
                    self.out.step("step", &l, true);
                    report.changed.push(l);
                }
            }
        }
        drop(st);
        self.reconcile(&touched)?;
        if report.changed.is_empty() {
            self.out.step("step", "nothing was due", true);
        }
        for w in &report.waiting {
            self.out.step("waiting", w, true);
        }
        for a in &report.alarms {
            self.out.step("alarm", a, false);
        }
        Ok(report)
    }

    /// Promotes each rotation (the pending keys of one owner under one base
    /// selector, together) whose records every authoritative server serves
    /// since at least propagation-wait.
    fn promote(
        &mut self,
        st: &State,
        now: i64,
        report: &mut StepReport,
        touched: &mut BTreeSet<String>,
    ) -> crate::Result<()> {
        let mut groups: BTreeMap<(Option<String>, String), Vec<&StoredKey>> = BTreeMap::new();
        for k in st.keys.iter().filter(|k| k.state == KeyState::Pending) {
            groups
                .entry((k.domain.clone(), base_of(k)))
                .or_default()
                .push(k);
        }
        if groups.is_empty() {
            return Ok(());
        }
        // Every (key, domain) record, asked of every authoritative server.
        let mut queries = Vec::new();
        let mut index: Vec<(i64, String)> = Vec::new();
        // A delegated key is served only once the customer's CNAME leads
        // to its target: (key, customer name, target) asked of the resolver.
        let mut chains: Vec<(i64, String, String)> = Vec::new();
        for k in groups.values().flatten() {
            for d in domains_using(st, k, now) {
                let location = st.record_location(k, &d);
                let direct = record_name(&k.selector, &d);
                if location != direct {
                    chains.push((k.id, direct, location.clone()));
                }
                queries.push(self.query(&d, &location, &k.record));
                index.push((k.id, d));
            }
        }
        let resolver = crate::publish::live_resolver(&self.cfg)?;
        let timeout = Duration::from_secs(self.cfg.dns.timeout.max(1));
        let results = authoritative::check_many(&resolver, queries, timeout)?;
        let cnames = crate::dns::follow_cnames(
            &resolver,
            chains.iter().map(|(_, n, _)| n.clone()).collect(),
            &chains.iter().map(|(_, _, t)| t.clone()).collect::<Vec<_>>(),
        )?;
        let mut broken_chain: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for ((id, name, target), found) in chains.into_iter().zip(cnames) {
            let problem = match found {
                Ok(Some(t)) if t.eq_ignore_ascii_case(&target) => continue,
                Ok(Some(t)) => format!("{name}: the customer's CNAME points to {t}, not {target}"),
                Ok(None) => format!(
                    "{name}: the customer's CNAME is missing (publish {name}. CNAME {target}.)"
                ),
                Err(e) => format!("{name}: {e}"),
            };
            broken_chain.entry(id).or_default().push(problem);
        }
        let mut by_key: BTreeMap<i64, Vec<DomainCheck>> = BTreeMap::new();
        for ((id, d), r) in index.into_iter().zip(results) {
            by_key.entry(id).or_default().push((d, r));
        }
        for ((owner, base), keys) in groups {
            let who = owner.as_deref().unwrap_or("global key");
            let mut missing: Vec<String> = Vec::new();
            let mut ttl = 0u32;
            for k in &keys {
                if let Some(p) = broken_chain.get(&k.id) {
                    missing.extend(p.iter().cloned());
                }
                let checks = by_key.get(&k.id).map(Vec::as_slice).unwrap_or_default();
                // A global key no signing domain uses (every domain has
                // its own, or publishes by delegation) has nothing to wait
                // for: no mail is signed with it until one does.
                if checks.is_empty() && k.domain.is_some() {
                    missing.push(format!("{}: no signing domain publishes it", k.selector));
                }
                for (d, r) in checks {
                    let location = st.record_location(k, d);
                    ttl = ttl.max(
                        crate::model::names::publishing_name(d, &location)
                            .parse::<dkim::DomainName>()
                            .map_or(3600, |dn| self.cfg.ttl_for(&dn)),
                    );
                    match r {
                        Ok(states) if authoritative::everywhere(states) => {}
                        Ok(states) => {
                            let bad: Vec<String> = states
                                .iter()
                                .filter(|s| !s.state.is_ok())
                                .map(|s| format!("{}: {}", s.server, s.state))
                                .collect();
                            missing.push(format!(
                                "{} ({})",
                                st.record_location(k, d),
                                if bad.is_empty() {
                                    "no authoritative server".to_string()
                                } else {
                                    bad.join(", ")
                                }
                            ));
                        }
                        Err(e) => {
                            missing.push(format!("{}: {}", st.record_location(k, d), e.chain()))
                        }
                    }
                }
            }
            if !missing.is_empty() {
                let clear: Vec<Change> = keys
                    .iter()
                    .filter(|k| k.served.is_some())
                    .map(|k| Change::KeyServed(k.id, None))
                    .collect();
                self.store.apply(&clear)?;
                let oldest = keys.iter().map(|k| k.since).min().unwrap_or(now);
                let line = format!(
                    "{who}, selector {base}: not served everywhere yet: {}",
                    missing.join("; ")
                );
                if now.saturating_sub(oldest) > PENDING_ALARM.as_i64() {
                    report.alarms.push(format!(
                        "{line} — pending for more than {PENDING_ALARM}: publish its record, or check the zone's servers"
                    ));
                } else {
                    report.waiting.push(line);
                }
                continue;
            }
            let newly: Vec<Change> = keys
                .iter()
                .filter(|k| k.served.is_none())
                .map(|k| Change::KeyServed(k.id, Some(now)))
                .collect();
            self.store.apply(&newly)?;
            let served = keys
                .iter()
                .map(|k| k.served.unwrap_or(now))
                .max()
                .unwrap_or(now);
            let wait = propagation_wait(&st.settings, ttl);
            let due = served.saturating_add(wait.as_i64());
            if due > now {
                report.waiting.push(format!(
                    "{who}, selector {base}: served everywhere since {}; signs from {} (propagation-wait {wait})",
                    utc_timestamp(u64::try_from(served).unwrap_or(0)),
                    utc_timestamp(u64::try_from(due).unwrap_or(0)),
                ));
                continue;
            }
            // One transaction: the new keys sign, the ones they replace retire.
            let mut changes = Vec::new();
            for k in &keys {
                changes.push(Change::KeyState(k.id, KeyState::Active, now));
                // At a delegated domain the slot key replaces every own key.
                let delegated = owner
                    .as_deref()
                    .is_some_and(|d| st.delegate_of(d).is_some());
                for old in keys_of(st, owner.as_deref(), KeyState::Active)
                    .filter(|o| delegated || o.algorithm == k.algorithm)
                {
                    changes.push(Change::KeyState(old.id, KeyState::Retired, now));
                    touched.extend(domains_using(st, old, now));
                }
                touched.extend(domains_using(st, k, now));
            }
            if owner.is_none() {
                changes.push(Change::Setting(SettingName::Selector, base.clone()));
            }
            self.store.apply(&changes)?;
            let line = format!(
                "{who}: selector {base} signs now; the keys it replaces are retired (their records stay for retire-after, {})",
                st.settings.retire_after
            );
            self.out.step("step", &line, true);
            report.changed.push(line);
        }
        Ok(())
    }

    /// The authoritative check of one record of `domain`, at `name` (in
    /// the domain's zone, or in its delegation zone).
    fn query(&self, domain: &str, name: &str, record: &str) -> Query {
        let publishing = crate::model::names::publishing_name(domain, name);
        let zone = publishing
            .parse::<dkim::DomainName>()
            .ok()
            .and_then(|d| self.cfg.zone_for(&d).cloned());
        Query {
            zone: zone.as_ref().map(|z| z.name.to_ascii_lowercase()),
            configured: zone.map(|z| z.authoritative).unwrap_or_default(),
            name: name.to_string(),
            record: record.to_string(),
        }
    }

    /// Brings DNS in line with the store where it differs from what dkimd
    /// remembers publishing, and at the `force`d domains (whose records a
    /// step changed; for manual publishing, the records to publish by hand
    /// are shown only then).
    pub(super) fn reconcile(&mut self, force: &BTreeSet<String>) -> crate::Result<()> {
        let st = self.load()?;
        let mut domains: BTreeMap<String, bool> = all_decisions(&st)
            .into_iter()
            .map(|(n, d)| (n, d.signs && st.settings.signing))
            .collect();
        // What the store remembers publishing, by domain (the records are
        // sorted by domain; one pass, not one per domain).
        let mut remembered_of: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for r in &st.records {
            domains.entry(r.domain.clone()).or_insert(false);
            remembered_of
                .entry(r.domain.as_str())
                .or_default()
                .insert(r.name.as_str(), r.value.as_str());
        }
        self.begin_batch();
        for (d, signs) in domains {
            let wanted: BTreeMap<String, String> = if signs {
                wanted_records(&st, &d, self.now_i64())
                    .into_iter()
                    .collect()
            } else {
                BTreeMap::new()
            };
            let remembered = remembered_of.remove(d.as_str()).unwrap_or_default();
            let mut items: Vec<(String, Option<String>)> = wanted
                .iter()
                .filter(|(n, v)| remembered.get(n.as_str()) != Some(&v.as_str()))
                .map(|(n, v)| (n.clone(), Some(v.clone())))
                .collect();
            items.extend(
                remembered
                    .keys()
                    .filter(|n| !wanted.contains_key(**n))
                    .map(|n| (n.to_string(), None)),
            );
            if !force.contains(&d) {
                // Records published by hand are shown only when forced;
                // a delegated domain's targets are dkimd's to publish even
                // when its own zone is not.
                let mut manual: BTreeMap<String, bool> = BTreeMap::new();
                items.retain(|(n, _)| {
                    let via = crate::model::names::publishing_name(&d, n).to_string();
                    !*manual.entry(via).or_insert_with_key(|v| self.is_manual(v))
                });
            }
            if items.is_empty() {
                continue;
            }
            self.change_records(&d, items, st.settings.signing)?;
        }
        self.flush_batch()
    }

    /// True when the domain's records are published by hand.
    fn is_manual(&self, domain: &str) -> bool {
        self.publisher(domain)
            .map(|p| p.backend() == Backend::Manual)
            .unwrap_or(true)
    }
}
