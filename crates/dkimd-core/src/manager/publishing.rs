//! Making DNS match the store: records are set or removed per domain, at
//! once or gathered into one batch per zone file, and what was published
//! is remembered.

use super::plan::{all_decisions, wanted_records};
use super::{Manager, PendingRecord};
use crate::error::{err, Error, Field};
use crate::model::names::domain_name;
use crate::model::settings::decide;
use crate::publish::{Outcome, Publisher};
use crate::store::{Change, KeyState, PublishedRecord, State, StoredKey};
use std::collections::{BTreeMap, BTreeSet};

/// Dynamic updates per chunk of a batch, with progress reported between.
const PROGRESS_CHUNK: usize = 500;

/// A record name and the value to publish there (`None`: remove it).
type RecordChange = (String, Option<String>);

/// Where a publisher writes, as the key of its batch and of `down`.
fn target_key(p: &dyn Publisher) -> String {
    format!("{} {}", p.backend(), p.target())
}

/// An outcome with the backend that produced it (manual needs no more words).
fn where_(outcome: &Outcome, p: &dyn Publisher) -> String {
    match outcome {
        Outcome::Pending(_) => outcome.describe(),
        _ => format!("{} ({} {})", outcome.describe(), p.backend(), p.target()),
    }
}

impl Manager {
    /// The publisher of a domain's records.
    pub(super) fn publisher(&self, domain: &str) -> crate::Result<Box<dyn Publisher>> {
        let dn: dkim::DomainName = domain
            .parse()
            .map_err(|e| Error::invalid(Field::Domain, e))?;
        self.publishers
            .for_domain(&self.cfg, &dn, &self.publish_env())
    }

    /// Publishes a domain's wanted records; remembers what got published.
    pub(super) fn publish_domain(&mut self, st: &State, domain: &str) -> crate::Result<()> {
        let wanted = wanted_records(st, domain, self.now_i64());
        if wanted.is_empty() {
            self.out.step(domain, "no key to publish", false);
            return Ok(());
        }
        let items = wanted.into_iter().map(|(n, v)| (n, Some(v))).collect();
        self.change_records(domain, items, st.settings.signing)
    }

    /// Removes the given record names from a domain.
    pub(super) fn unpublish(&mut self, domain: &str, names: &[String]) -> crate::Result<()> {
        let items = names.iter().map(|n| (n.clone(), None)).collect();
        self.change_records(domain, items, false)
    }

    /// Sets (a value) or removes (`None`) records of one domain: now, or in
    /// the batch when one is open and the backend batches.
    pub(super) fn change_records(
        &mut self,
        domain: &str,
        items: Vec<(String, Option<String>)>,
        signing: bool,
    ) -> crate::Result<()> {
        // A delegated domain's targets are published in the delegation
        // zone, its other names at the domain: one group per zone.
        let mut groups: Vec<(String, Vec<RecordChange>)> = Vec::new();
        for (name, value) in items {
            let via = crate::model::names::publishing_name(domain, &name).to_string();
            match groups.iter_mut().find(|(v, _)| *v == via) {
                Some((_, g)) => g.push((name, value)),
                None => groups.push((via, vec![(name, value)])),
            }
        }
        for (via, items) in groups {
            self.change_records_via(domain, &via, items, signing)?;
        }
        Ok(())
    }

    /// [`Manager::change_records`] for the names one zone (that of `via`)
    /// publishes.
    fn change_records_via(
        &mut self,
        domain: &str,
        via: &str,
        items: Vec<(String, Option<String>)>,
        signing: bool,
    ) -> crate::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let publisher = match self.publisher(via) {
            Ok(p) => p,
            Err(e) => {
                self.out.step(domain, &e.chain(), false);
                return Ok(());
            }
        };
        let key = target_key(publisher.as_ref());
        if publisher.batches() {
            if let Some(batch) = self.batch.as_mut() {
                batch.extend(items.into_iter().map(|(name, value)| PendingRecord {
                    domain: domain.to_string(),
                    via: via.to_string(),
                    name,
                    value,
                    key: key.clone(),
                }));
                return Ok(());
            }
        }
        // One at a time: a target that did not answer is not asked again
        // for the domain's other records. On a shared store, one node of
        // the fleet publishes at a time.
        self.store.begin_publishing()?;
        let mut results = Vec::with_capacity(items.len());
        for (name, value) in &items {
            let r = match self.down.get(&key) {
                Some(why) => Err(err!("not tried: {why}")),
                None => match value {
                    Some(v) => publisher.set(name, v),
                    None => publisher.remove(name),
                },
            };
            if let Err(e) = &r {
                self.note_unreachable(&key, e);
            }
            results.push(r);
        }
        self.store.end_publishing();
        let pending: Vec<PendingRecord> = items
            .into_iter()
            .map(|(name, value)| PendingRecord {
                domain: domain.to_string(),
                via: via.to_string(),
                name,
                value,
                key: key.clone(),
            })
            .collect();
        let (changes, failed) = self.report(&key, publisher.as_ref(), &pending, results);
        self.unpublished(&failed, signing);
        self.store.apply(&changes)
    }

    /// From now on, record changes for backends that batch wait for
    /// [`Manager::flush_batch`].
    pub fn begin_batch(&mut self) {
        if self.batch.is_none() {
            self.batch = Some(Vec::new());
        }
    }

    /// Makes the gathered record changes, one batch per publishing target,
    /// and reports each record as publishing one at a time does.
    pub fn flush_batch(&mut self) -> crate::Result<()> {
        let Some(batch) = self.batch.as_mut().map(std::mem::take) else {
            return Ok(());
        };
        if batch.is_empty() {
            return Ok(());
        }
        let mut groups: Vec<(String, Vec<PendingRecord>)> = Vec::new();
        for p in batch {
            match groups.iter_mut().find(|(k, _)| *k == p.key) {
                Some((_, v)) => v.push(p),
                None => groups.push((p.key.clone(), vec![p])),
            }
        }
        let signing = self.load()?.settings.signing;
        let mut changes = Vec::new();
        let mut failed: BTreeMap<String, usize> = BTreeMap::new();
        // Dynamic updates and API calls go in chunks, with progress between
        // them (a zone file is edited once, whatever the count).
        let total: usize = groups.iter().map(|(_, v)| v.len()).sum();
        let sink = self.out.sink();
        let mut done = 0;
        let groups: Vec<(String, Vec<PendingRecord>)> = groups
            .into_iter()
            .flat_map(|(key, items)| {
                let chunked = items
                    .first()
                    .and_then(|i| self.publisher(&i.via).ok())
                    .is_some_and(|p| {
                        matches!(
                            p.backend(),
                            crate::config::Backend::Rfc2136 | crate::config::Backend::PowerDns
                        )
                    });
                let size = if chunked { PROGRESS_CHUNK } else { usize::MAX };
                let mut out = Vec::new();
                let mut items = items.into_iter().peekable();
                while items.peek().is_some() {
                    out.push((key.clone(), items.by_ref().take(size).collect::<Vec<_>>()));
                }
                out
            })
            .collect();
        self.store.begin_publishing()?;
        for (key, items) in groups {
            done += items.len();
            let Some(first) = items.first() else { continue };
            let publisher = match self.publisher(&first.via) {
                Ok(p) => p,
                Err(e) => {
                    for it in &items {
                        self.out
                            .step(&it.domain, &format!("{}: {}", it.name, e.chain()), false);
                    }
                    continue;
                }
            };
            let results: Vec<crate::Result<Outcome>> = match self.down.get(&key) {
                Some(why) => items
                    .iter()
                    .map(|_| Err(err!("not tried: {why}")))
                    .collect(),
                None => publisher.apply_many(
                    &items
                        .iter()
                        .map(|i| (i.name.clone(), i.value.clone()))
                        .collect::<Vec<_>>(),
                ),
            };
            let (c, f) = self.report(&key, publisher.as_ref(), &items, results);
            changes.extend(c);
            for (d, n) in f {
                *failed.entry(d).or_default() += n;
            }
            if total > PROGRESS_CHUNK {
                sink.progress("records published", done, total);
            }
        }
        self.store.end_publishing();
        self.unpublished(&failed, signing);
        self.store.apply(&changes)
    }

    /// One failed step per domain that signs but has records not published.
    fn unpublished(&mut self, failed: &BTreeMap<String, usize>, signing: bool) {
        if !signing {
            return;
        }
        for (d, n) in failed {
            self.out.step(
                d,
                &format!(
                    "signs, but {n} of its records are not published: receivers cannot verify its mail until they are (fix the cause, then run dkimd enable)"
                ),
                false,
            );
        }
    }

    /// Reports each record's outcome as a step; returns what the store must
    /// remember, and how many records of each domain were not published.
    fn report(
        &mut self,
        key: &str,
        publisher: &dyn Publisher,
        items: &[PendingRecord],
        results: Vec<crate::Result<Outcome>>,
    ) -> (Vec<Change>, BTreeMap<String, usize>) {
        let mut changes = Vec::new();
        let mut failed: BTreeMap<String, usize> = BTreeMap::new();
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        for (it, r) in items.iter().zip(results) {
            match r {
                Ok(outcome) => {
                    let pending = matches!(outcome, Outcome::Pending(_));
                    let ok = it.value.is_none() || outcome.is_published() || pending;
                    self.out.step(
                        &it.domain,
                        &format!("{}: {}", it.name, where_(&outcome, publisher)),
                        ok,
                    );
                    match &it.value {
                        Some(value) if outcome.is_published() => {
                            changes.push(Change::PutRecord(PublishedRecord {
                                domain: it.domain.clone(),
                                name: it.name.clone(),
                                value: value.clone(),
                                backend: publisher.backend().as_str().into(),
                                published: now,
                            }));
                        }
                        Some(_) if !pending => *failed.entry(it.domain.clone()).or_default() += 1,
                        Some(_) => {}
                        None if !pending => changes.push(Change::RemoveRecord {
                            domain: it.domain.clone(),
                            name: it.name.clone(),
                        }),
                        None => {}
                    }
                }
                Err(e) => {
                    self.note_unreachable(key, &e);
                    self.out
                        .step(&it.domain, &format!("{}: {}", it.name, e.chain()), false);
                    if it.value.is_some() {
                        *failed.entry(it.domain.clone()).or_default() += 1;
                    }
                }
            }
        }
        (changes, failed)
    }

    /// Remembers a target whose DNS did not answer, so that the rest of this
    /// run does not wait for it again.
    fn note_unreachable(&mut self, key: &str, e: &Error) {
        if let Error::Unreachable(u) = e.root() {
            self.down
                .insert(key.to_string(), format!("{u} earlier in this run"));
        }
    }

    /// Brings one domain's records in line with the rules (signing on only).
    pub(super) fn sync_domain(&mut self, domain: &str, signs: bool) -> crate::Result<()> {
        let st = self.load()?;
        if !st.settings.signing {
            return Ok(());
        }
        if signs {
            let wanted: Vec<String> = wanted_records(&st, domain, self.now_i64())
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            let stale: Vec<String> = st
                .records
                .iter()
                .filter(|r| r.domain == domain && !wanted.contains(&r.name))
                .map(|r| r.name.clone())
                .collect();
            self.unpublish(domain, &stale)?;
            self.publish_domain(&st, domain)
        } else {
            let names: Vec<String> = st
                .records
                .iter()
                .filter(|r| r.domain == domain)
                .map(|r| r.name.clone())
                .collect();
            self.unpublish(domain, &names)
        }
    }

    /// Re-checks every domain after a rule change.
    pub fn sync_all(&mut self) -> crate::Result<()> {
        let st = self.load()?;
        if !st.settings.signing {
            return Ok(());
        }
        let published: BTreeSet<String> = st.records.iter().map(|r| r.domain.clone()).collect();
        for (name, d) in all_decisions(&st) {
            if d.signs != published.contains(&name) {
                self.sync_domain(&name, d.signs)?;
            }
        }
        // Domains whose records remain but that are no longer known at all.
        let known: BTreeSet<String> = all_decisions(&st).into_iter().map(|(n, _)| n).collect();
        for d in published.difference(&known) {
            self.sync_domain(d, false)?;
        }
        Ok(())
    }

    /// Ends the overlap early: every retired and revoked key (global and
    /// own) is deleted (private key destroyed, public key and dates kept
    /// for the audit), then the records are brought in line (theirs go).
    pub fn purge_retired(&mut self) -> crate::Result<()> {
        let st = self.load()?;
        let retired: Vec<&StoredKey> = st
            .keys
            .iter()
            .filter(|k| matches!(k.state, KeyState::Retired | KeyState::Revoked))
            .collect();
        if retired.is_empty() {
            self.out.step("keys", "no retired key to delete", true);
            return Ok(());
        }
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        let changes: Vec<Change> = retired
            .iter()
            .map(|k| Change::KeyState(k.id, KeyState::Deleted, now))
            .collect();
        for k in &retired {
            self.out.step(
                "keys",
                &format!(
                    "deleted {} {} key, selector {}{}",
                    k.state,
                    k.algorithm,
                    k.selector,
                    k.domain
                        .as_deref()
                        .map(|d| format!(" (own key of {d})"))
                        .unwrap_or_default()
                ),
                true,
            );
        }
        self.store.apply(&changes)?;
        self.resync_everything()
    }

    /// Publishes or repairs one domain's records: what its keys want is
    /// published (a stale or missing record replaced), what they do not
    /// want is removed.
    pub fn repair_domain(&mut self, name: &str) -> crate::Result<()> {
        let domain = domain_name(name, Field::Domain)?;
        let st = self.load()?;
        let Some(d) = st.domain(&domain) else {
            return Err(Error::NotFound(format!("no domain {domain}")));
        };
        if !st.settings.signing {
            self.out
                .step(&domain, "signing is off: nothing to publish", true);
            return Ok(());
        }
        let signs = decide(&st.settings, &domain, Some((d.dns, d.mail, d.dkim))).signs;
        self.sync_domain(&domain, signs)
    }

    /// Brings every domain's records in line whatever the records table
    /// says (after an import): each known domain is synced, each domain
    /// that has records but is no longer known loses them, and with
    /// signing off every record is removed.
    pub fn resync_everything(&mut self) -> crate::Result<()> {
        let st = self.load()?;
        let mut published: BTreeMap<String, Vec<String>> = Default::default();
        for r in &st.records {
            published
                .entry(r.domain.clone())
                .or_default()
                .push(r.name.clone());
        }
        if !st.settings.signing {
            for (d, names) in published {
                self.unpublish(&d, &names)?;
            }
            return Ok(());
        }
        let decisions = all_decisions(&st);
        for (name, d) in &decisions {
            self.sync_domain(name, d.signs)?;
        }
        for d in published.keys() {
            if !decisions.iter().any(|(n, _)| n == d) {
                self.sync_domain(d, false)?;
            }
        }
        Ok(())
    }
}
