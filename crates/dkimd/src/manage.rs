//! The manager: domains, keys, selectors, enable/disable, publishing and the
//! live DNS check, over one store. Each command prints the steps it takes.

use crate::config::Config;
use crate::dns;
use crate::publish::{self, Outcome};
use crate::settings::{decide, Decision, Override};
use crate::store::{
    Change, Domain, KeyState, NewKey, PublishedRecord, SqliteStore, State, Store, StoredKey,
};
use anyhow::{anyhow, Context};
use dkim::{KeyAlgorithm, SigningKey};
use std::collections::BTreeSet;

/// The store, the configuration and the step printer of one command.
pub struct Manager {
    pub cfg: Config,
    pub store: Box<dyn Store>,
    pub out: Steps,
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
    name: String,
    /// The value to publish; `None` to remove.
    value: Option<String>,
    /// The publishing target (backend and file).
    key: String,
}

/// How steps are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Printed to stdout as they happen (the CLI's text output).
    Print,
    /// Collected for one JSON document (`--json`).
    Json,
    /// Collected as lines, titles included (the web page).
    Collect,
}

/// One reported line: a heading (no subject) or a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepLine {
    /// `None` for a heading.
    pub subject: Option<String>,
    /// What happened.
    pub text: String,
    /// False for a failed step.
    pub ok: bool,
}

impl std::fmt::Display for StepLine {
    /// The line exactly as the CLI prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.subject, self.ok) {
            (None, _) => write!(f, "{}", self.text),
            (Some(s), true) => write!(f, "  {s}: {}", self.text),
            (Some(s), false) => write!(f, "  {s}: failed: {}", self.text),
        }
    }
}

/// Prints steps as they happen (text) or collects them (JSON, web page).
pub struct Steps {
    mode: Mode,
    steps: Vec<serde_json::Value>,
    lines: Vec<StepLine>,
    pub failures: usize,
}

impl Steps {
    pub fn new(json: bool) -> Steps {
        Steps {
            mode: if json { Mode::Json } else { Mode::Print },
            steps: Vec::new(),
            lines: Vec::new(),
            failures: 0,
        }
    }

    /// Collects every line, headings included, for display elsewhere.
    pub fn collecting() -> Steps {
        Steps {
            mode: Mode::Collect,
            ..Steps::new(false)
        }
    }

    /// One step: `subject` (a domain, "key", "postfix", …) and what happened.
    pub fn step(&mut self, subject: &str, what: &str, ok: bool) {
        if !ok {
            self.failures += 1;
        }
        let line = StepLine {
            subject: Some(subject.to_string()),
            text: what.to_string(),
            ok,
        };
        match self.mode {
            Mode::Json => {
                self.steps
                    .push(serde_json::json!({ "subject": subject, "result": what, "ok": ok }));
                self.lines.push(line);
            }
            Mode::Print => {
                outln!("{line}");
                self.lines.push(line);
            }
            Mode::Collect => self.lines.push(line),
        }
    }

    /// A heading line (text and collected output only).
    pub fn title(&mut self, what: &str) {
        let line = StepLine {
            subject: None,
            text: what.to_string(),
            ok: true,
        };
        match self.mode {
            Mode::Print => {
                outln!("{line}");
                self.lines.push(line);
            }
            Mode::Collect => self.lines.push(line),
            Mode::Json => {}
        }
    }

    pub fn is_json(&self) -> bool {
        self.mode == Mode::Json
    }

    /// The collected steps (JSON mode).
    pub fn take(&mut self) -> Vec<serde_json::Value> {
        std::mem::take(&mut self.steps)
    }

    /// The lines reported so far (every mode; headings only in text and
    /// collecting modes), for the audit log and the web page.
    pub fn take_lines(&mut self) -> Vec<StepLine> {
        std::mem::take(&mut self.lines)
    }
}

/// The selector a key of `alg` gets under the global selector `base`:
/// RSA uses it as is, Ed25519 adds `-ed25519` (two keys need two names).
pub fn selector_for(base: &str, alg: KeyAlgorithm) -> String {
    match alg {
        KeyAlgorithm::Rsa => base.to_string(),
        KeyAlgorithm::Ed25519 => format!("{base}-ed25519"),
    }
}

fn domain_name(s: &str) -> anyhow::Result<String> {
    s.parse::<dkim::DomainName>()
        .map(|d| d.to_lowercase())
        .or_else(|e| crate::usage(format!("{e}")))
}

fn record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}")
}

fn key_of(k: &StoredKey) -> anyhow::Result<SigningKey> {
    SigningKey::from_pem(k.pem.as_bytes())
        .with_context(|| format!("stored key {} ({})", k.id, k.selector))
}

fn generate(alg: KeyAlgorithm, bits: usize) -> anyhow::Result<SigningKey> {
    Ok(match alg {
        KeyAlgorithm::Rsa => SigningKey::generate_rsa(bits)?,
        KeyAlgorithm::Ed25519 => SigningKey::generate_ed25519()?,
    })
}

/// One domain as `status` reports it.
#[derive(Clone, Debug)]
pub struct DomainStatus {
    pub domain: String,
    /// Signing is on and the rules say this domain signs.
    pub signs: bool,
    /// Why it signs or not, in words.
    pub why: String,
    /// (dns, mail, dkim override) for domains in the store; `None` for
    /// extra domains named only in the settings.
    pub known: Option<(bool, bool, Override)>,
    /// The keys that sign for it (empty when it does not sign).
    pub keys: Vec<KeyStatus>,
    /// Where its records are published, in words.
    pub backend: String,
}

/// One signing key of a domain and what DNS serves for it.
#[derive(Clone, Debug)]
pub struct KeyStatus {
    pub selector: String,
    pub algorithm: KeyAlgorithm,
    pub bits: usize,
    /// The domain's own key rather than the global one.
    pub own_key: bool,
    /// `SELECTOR._domainkey.DOMAIN`.
    pub record_name: String,
    /// The TXT record to publish.
    pub record: String,
    /// The same as one zone-file line (absolute name, the zone's TTL,
    /// strings of at most 255 bytes).
    pub zone_line: String,
    /// ok, missing, mismatch, multiple records (N), lookup failed: …
    pub dns: String,
}

/// Every domain that may need records, with its decision: the store's
/// domains, concrete extra domains, and the parents of `*.` extras (mail
/// from their subdomains is signed with the parent's d=).
pub fn all_decisions(st: &State) -> Vec<(String, Decision)> {
    let mut out: Vec<(String, Decision)> = st
        .domains
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                decide(&st.settings, &d.name, Some((d.dns, d.mail, d.dkim))),
            )
        })
        .collect();
    for p in &st.settings.extra_domains {
        let (name, why) = match p.strip_prefix("*.") {
            Some(parent) => (parent.to_string(), format!("parent of extra domain {p}")),
            None => (p.clone(), format!("extra domain {p}")),
        };
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let excluded = st
            .settings
            .excluded_domains
            .iter()
            .any(|x| crate::settings::matches_pattern(x, &name));
        out.push((
            name,
            Decision {
                signs: !excluded,
                why: if excluded {
                    format!("excluded, although {why}")
                } else {
                    why
                },
            },
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The records a domain should have now: one per active key that signs for it.
fn wanted_records(st: &State, domain: &str) -> anyhow::Result<Vec<(String, String)>> {
    st.keys_for(domain)
        .into_iter()
        .map(|k| Ok((record_name(&k.selector, domain), key_of(k)?.dns_record())))
        .collect()
}

/// Every record name dkimd may have put at a domain: those it remembers and
/// those of every key it holds (a crash can leave one it does not remember).
fn possible_names(st: &State, domain: &str) -> Vec<String> {
    let mut names: BTreeSet<String> = st
        .records
        .iter()
        .filter(|r| r.domain == domain)
        .map(|r| r.name.clone())
        .collect();
    for k in &st.keys {
        if k.domain.is_none() || k.domain.as_deref() == Some(domain) {
            names.insert(record_name(&k.selector, domain));
        }
    }
    names.into_iter().collect()
}

/// What giving a domain its own keys would do.
struct OwnKeysPlan {
    /// The selector of each new key, in order.
    selectors: Vec<String>,
    /// The own keys the new ones replace.
    retire: Vec<Change>,
    /// In words: the keys that sign afterwards and the record changes.
    lines: Vec<String>,
}

fn plan_own_keys(
    st: &State,
    domain: &str,
    keys: &[SigningKey],
    selector: Option<&str>,
    exact: bool,
) -> anyhow::Result<OwnKeysPlan> {
    let Some(d) = st.domain(domain) else {
        return crate::usage(format!("no domain {domain}"));
    };
    let base = selector
        .map(str::to_string)
        .or_else(|| Some(st.settings.selector.clone()).filter(|s| !s.is_empty()))
        .unwrap_or_else(publish::year_month);
    let mut selectors = Vec::new();
    let mut retire = Vec::new();
    let mut retired = BTreeSet::new();
    for key in keys {
        let sel = if exact && selector.is_some() {
            base.clone()
        } else {
            selector_for(&base, key.algorithm())
        };
        sel.parse::<dkim::Selector>()
            .map_err(|e| crate::UsageError(format!("selector: {e}")))?;
        for old in st.keys.iter().filter(|k| {
            k.domain.as_deref() == Some(domain)
                && k.state == KeyState::Active
                && k.algorithm == key.algorithm()
        }) {
            retire.push(Change::KeyState(old.id, KeyState::Retired));
            retired.insert(old.id);
        }
        selectors.push(sel);
    }
    // The keys that sign afterwards: the new ones, the domain's other own
    // keys, and the global key of every algorithm no own key covers.
    let mut after: Vec<(KeyAlgorithm, usize, String, &str)> = keys
        .iter()
        .zip(&selectors)
        .map(|(k, s)| (k.algorithm(), k.bits(), s.clone(), "new"))
        .collect();
    for k in &st.keys {
        if k.domain.as_deref() == Some(domain)
            && k.state == KeyState::Active
            && !retired.contains(&k.id)
        {
            after.push((k.algorithm, k.bits, k.selector.clone(), "own"));
        }
    }
    for g in st.global_keys() {
        if !after.iter().any(|(a, ..)| *a == g.algorithm) {
            after.push((g.algorithm, g.bits, g.selector.clone(), "global"));
        }
    }
    let mut names = BTreeSet::new();
    for (_, _, sel, _) in &after {
        if !names.insert(sel.to_ascii_lowercase()) {
            return crate::usage(format!(
                "selector {sel} would be used by two keys of {domain}: choose another with --selector"
            ));
        }
    }
    let mut lines = vec![format!(
        "afterwards {domain} signs with: {}",
        after
            .iter()
            .map(|(a, b, s, w)| format!("{a} {b} bits, selector {s} ({w} key)"))
            .collect::<Vec<_>>()
            .join("; ")
    )];
    let signs =
        st.settings.signing && decide(&st.settings, domain, Some((d.dns, d.mail, d.dkim))).signs;
    if signs {
        let before: BTreeSet<String> = st
            .keys_for(domain)
            .iter()
            .map(|k| record_name(&k.selector, domain))
            .collect();
        let now: BTreeSet<String> = after
            .iter()
            .map(|(_, _, s, _)| record_name(s, domain))
            .collect();
        let new_names: BTreeSet<String> = keys
            .iter()
            .zip(&selectors)
            .map(|(_, s)| record_name(s, domain))
            .collect();
        for n in &now {
            if new_names.contains(n) {
                lines.push(format!("record {n}: published (the new key)"));
            } else if before.contains(n) {
                lines.push(format!("record {n}: kept"));
            } else {
                lines.push(format!("record {n}: published"));
            }
        }
        for n in before.difference(&now) {
            lines.push(format!(
                "record {n}: removed (its key no longer signs for {domain})"
            ));
        }
    } else {
        lines.push(format!(
            "{domain} does not sign now: no record is published or removed"
        ));
    }
    Ok(OwnKeysPlan {
        selectors,
        retire,
        lines,
    })
}

impl Manager {
    pub fn open(cfg: Config, json: bool) -> anyhow::Result<Manager> {
        Manager::open_with(cfg, Steps::new(json))
    }

    /// Opens the store with a given step reporter.
    pub fn open_with(cfg: Config, out: Steps) -> anyhow::Result<Manager> {
        let store = SqliteStore::open(&cfg.state_dir)?;
        Ok(Manager {
            cfg,
            store: Box::new(store),
            out,
            down: Default::default(),
            batch: None,
        })
    }

    /// For commands that only read: the store when it exists, else an empty
    /// one in memory (nothing is created on disk).
    pub fn open_read_only(cfg: Config, json: bool) -> anyhow::Result<Manager> {
        let (store, existed) = crate::store::open_existing_or_empty(&cfg.state_dir)?;
        if !existed {
            errln!(
                "dkimd: no store yet in {} (nothing set): showing the defaults",
                cfg.state_dir.display()
            );
        }
        Ok(Manager {
            cfg,
            store,
            out: Steps::new(json),
            down: Default::default(),
            batch: None,
        })
    }

    pub fn load(&self) -> anyhow::Result<State> {
        self.store.load()
    }

    /// Publishes a domain's wanted records; remembers what got published.
    fn publish_domain(&mut self, st: &State, domain: &str) -> anyhow::Result<()> {
        let wanted = match wanted_records(st, domain) {
            Ok(w) => w,
            Err(e) => {
                self.out.step(domain, &format!("{e:#}"), false);
                return Ok(());
            }
        };
        if wanted.is_empty() {
            self.out.step(domain, "no key to publish", false);
            return Ok(());
        }
        let dn: dkim::DomainName = domain.parse().map_err(|e| anyhow!("{e}"))?;
        let publisher = match publish::publisher_for(&self.cfg, &dn) {
            Ok(p) => p,
            Err(e) => {
                self.out.step(domain, &format!("{e:#}"), false);
                return Ok(());
            }
        };
        let mut changes = Vec::new();
        let key = format!("{} {}", publisher.backend(), publisher.target());
        if publisher.batches() {
            if let Some(batch) = self.batch.as_mut() {
                for (name, value) in wanted {
                    batch.push(PendingRecord {
                        domain: domain.to_string(),
                        name,
                        value: Some(value),
                        key: key.clone(),
                    });
                }
                return Ok(());
            }
        }
        let mut failed = 0usize;
        for (name, value) in wanted {
            if let Some(why) = self.down.get(&key) {
                self.out
                    .step(domain, &format!("{name}: not tried: {why}"), false);
                failed += 1;
                continue;
            }
            match publisher.set(&name, &value) {
                Ok(outcome) => {
                    let ok = outcome.is_published() || matches!(outcome, Outcome::Pending(_));
                    self.out.step(
                        domain,
                        &format!("{name}: {}", where_(&outcome, publisher.as_ref())),
                        ok,
                    );
                    if outcome.is_published() {
                        changes.push(Change::PutRecord(PublishedRecord {
                            domain: domain.to_string(),
                            name,
                            value,
                            backend: publisher.backend().into(),
                            published: i64::try_from(crate::cli::now()).unwrap_or(0),
                        }));
                    }
                }
                Err(e) => {
                    failed += 1;
                    self.note_unreachable(&key, &e);
                    self.out.step(domain, &format!("{name}: {e:#}"), false);
                }
            }
        }
        if failed > 0 && st.settings.signing {
            self.out.step(
                domain,
                &format!(
                    "signs, but {failed} of its records are not published: receivers cannot verify its mail until they are (fix the cause, then run dkimd enable)"
                ),
                false,
            );
        }
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
    pub fn flush_batch(&mut self) -> anyhow::Result<()> {
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
        let mut failed: std::collections::BTreeMap<String, usize> = Default::default();
        for (key, items) in groups {
            let Some(first) = items.first() else { continue };
            let publisher = first
                .domain
                .parse::<dkim::DomainName>()
                .map_err(|e| anyhow!("{e}"))
                .and_then(|dn| publish::publisher_for(&self.cfg, &dn));
            let publisher = match publisher {
                Ok(p) => p,
                Err(e) => {
                    for it in &items {
                        self.out
                            .step(&it.domain, &format!("{}: {e:#}", it.name), false);
                    }
                    continue;
                }
            };
            let results: Vec<anyhow::Result<Outcome>> = match self.down.get(&key) {
                Some(why) => items
                    .iter()
                    .map(|_| Err(anyhow!("not tried: {why}")))
                    .collect(),
                None => publisher.apply_many(
                    &items
                        .iter()
                        .map(|i| (i.name.clone(), i.value.clone()))
                        .collect::<Vec<_>>(),
                ),
            };
            for (it, r) in items.iter().zip(results) {
                match r {
                    Ok(outcome) => {
                        let pending = matches!(outcome, Outcome::Pending(_));
                        let ok = it.value.is_none() || outcome.is_published() || pending;
                        self.out.step(
                            &it.domain,
                            &format!("{}: {}", it.name, where_(&outcome, publisher.as_ref())),
                            ok,
                        );
                        match &it.value {
                            Some(value) if outcome.is_published() => {
                                changes.push(Change::PutRecord(PublishedRecord {
                                    domain: it.domain.clone(),
                                    name: it.name.clone(),
                                    value: value.clone(),
                                    backend: publisher.backend().into(),
                                    published: i64::try_from(crate::cli::now()).unwrap_or(0),
                                }));
                            }
                            Some(_) if !pending => {
                                *failed.entry(it.domain.clone()).or_default() += 1
                            }
                            Some(_) => {}
                            None if !pending => changes.push(Change::RemoveRecord {
                                domain: it.domain.clone(),
                                name: it.name.clone(),
                            }),
                            None => {}
                        }
                    }
                    Err(e) => {
                        self.note_unreachable(&key, &e);
                        self.out
                            .step(&it.domain, &format!("{}: {e:#}", it.name), false);
                        if it.value.is_some() {
                            *failed.entry(it.domain.clone()).or_default() += 1;
                        }
                    }
                }
            }
        }
        if signing {
            for (d, n) in failed {
                self.out.step(
                    &d,
                    &format!(
                        "signs, but {n} of its records are not published: receivers cannot verify its mail until they are (fix the cause, then run dkimd enable)"
                    ),
                    false,
                );
            }
        }
        self.store.apply(&changes)
    }

    /// Remembers a target whose DNS did not answer, so that the rest of this
    /// run does not wait for it again.
    fn note_unreachable(&mut self, key: &str, e: &anyhow::Error) {
        if let Some(u) = e.downcast_ref::<publish::Unreachable>() {
            self.down
                .insert(key.to_string(), format!("{} earlier in this run", u.0));
        }
    }

    /// Removes the given record names from a domain.
    fn unpublish(&mut self, domain: &str, names: &[String]) -> anyhow::Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let dn: dkim::DomainName = domain.parse().map_err(|e| anyhow!("{e}"))?;
        let publisher = match publish::publisher_for(&self.cfg, &dn) {
            Ok(p) => p,
            Err(e) => {
                self.out.step(domain, &format!("{e:#}"), false);
                return Ok(());
            }
        };
        let mut changes = Vec::new();
        let key = format!("{} {}", publisher.backend(), publisher.target());
        if publisher.batches() {
            if let Some(batch) = self.batch.as_mut() {
                for name in names {
                    batch.push(PendingRecord {
                        domain: domain.to_string(),
                        name: name.clone(),
                        value: None,
                        key: key.clone(),
                    });
                }
                return Ok(());
            }
        }
        for name in names {
            if let Some(why) = self.down.get(&key) {
                self.out
                    .step(domain, &format!("{name}: not tried: {why}"), false);
                continue;
            }
            match publisher.remove(name) {
                Ok(outcome) => {
                    let pending = matches!(outcome, Outcome::Pending(_));
                    self.out.step(
                        domain,
                        &format!("{name}: {}", where_(&outcome, publisher.as_ref())),
                        true,
                    );
                    if !pending {
                        changes.push(Change::RemoveRecord {
                            domain: domain.to_string(),
                            name: name.clone(),
                        });
                    }
                }
                Err(e) => {
                    self.note_unreachable(&key, &e);
                    self.out.step(domain, &format!("{name}: {e:#}"), false);
                }
            }
        }
        self.store.apply(&changes)
    }

    /// Brings one domain's records in line with the rules (signing on only).
    fn sync_domain(&mut self, domain: &str, signs: bool) -> anyhow::Result<()> {
        let st = self.load()?;
        if !st.settings.signing {
            return Ok(());
        }
        if signs {
            let wanted: Vec<String> = wanted_records(&st, domain)?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            let stale: Vec<String> = st
                .records
                .iter()
                .filter(|r| r.domain == domain && !wanted.contains(&r.name))
                .filter(|r| {
                    // Keep records of the global selector's older keys only
                    // when they belong to keys that still exist.
                    !st.keys
                        .iter()
                        .any(|k| record_name(&k.selector, domain) == r.name && k.domain.is_none())
                })
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
    pub fn sync_all(&mut self) -> anyhow::Result<()> {
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

    /// Deletes every retired key (global and own), then brings the records
    /// in line (those kept for the old keys go).
    pub fn purge_retired(&mut self) -> anyhow::Result<()> {
        let st = self.load()?;
        let retired: Vec<&StoredKey> = st
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Retired)
            .collect();
        if retired.is_empty() {
            self.out.step("keys", "no retired key to delete", true);
            return Ok(());
        }
        let changes: Vec<Change> = retired.iter().map(|k| Change::DeleteKey(k.id)).collect();
        for k in &retired {
            self.out.step(
                "keys",
                &format!(
                    "deleted retired {} key, selector {}{}",
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
    pub fn repair_domain(&mut self, name: &str) -> anyhow::Result<()> {
        let domain = domain_name(name)?;
        let st = self.load()?;
        let Some(d) = st.domain(&domain) else {
            return crate::usage(format!("no domain {domain}"));
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
    pub fn resync_everything(&mut self) -> anyhow::Result<()> {
        let st = self.load()?;
        let mut published: std::collections::BTreeMap<String, Vec<String>> = Default::default();
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

    /// Changes settings by name (all checked first, then stored in one
    /// transaction), then brings every domain's records in line.
    pub fn set_settings(&mut self, pairs: &[(&str, &str)]) -> anyhow::Result<()> {
        self.set_settings_only(pairs)?;
        self.sync_all()
    }

    /// Changes settings by name without bringing records in line (for a
    /// caller that runs `enable` or `disable` right after).
    pub fn set_settings_only(&mut self, pairs: &[(&str, &str)]) -> anyhow::Result<()> {
        let st = self.load()?;
        let mut s = st.settings.clone();
        for (name, value) in pairs {
            s.set(name, value, false)
                .map_err(|e| crate::UsageError(format!("{name}: {e}")))?;
        }
        let before = st.settings.to_pairs();
        let mut changes = Vec::new();
        for (k, v) in s.to_pairs() {
            let old = before.iter().find(|(n, _)| *n == k).map(|(_, o)| o);
            let named = pairs.iter().any(|(n, _)| *n == k);
            if named && old != Some(&v) {
                self.out.step("setting", &format!("{k} = {v}"), true);
                changes.push(Change::Setting(k.to_string(), v));
            } else if named {
                self.out
                    .step("setting", &format!("{k} = {v} (unchanged)"), true);
            }
        }
        self.store.apply(&changes)
    }

    /// Every known domain with its decision, keys and the live DNS state
    /// of each key's record (what `dkimd status` shows). The lookups run
    /// concurrently (at most 32 at a time), each under the DNS timeout.
    pub fn status(&self) -> anyhow::Result<Vec<DomainStatus>> {
        let st = self.load()?;
        let resolver = publish::live_resolver(&self.cfg)?;
        let mut rows = Vec::new();
        for (name, dec) in all_decisions(&st) {
            let signs = dec.signs && st.settings.signing;
            let mut keys = Vec::new();
            if signs {
                let ttl = name
                    .parse::<dkim::DomainName>()
                    .map_or(3600, |d| self.cfg.ttl_for(&d));
                for k in st.keys_for(&name) {
                    let key = key_of(k)?;
                    let rname = record_name(&k.selector, &name);
                    keys.push(KeyStatus {
                        selector: k.selector.clone(),
                        algorithm: k.algorithm,
                        bits: k.bits,
                        own_key: k.domain.is_some(),
                        zone_line: dkim::KeyRecord::for_key(&key).zone_line(&rname, ttl),
                        record_name: rname,
                        record: key.dns_record(),
                        dns: String::new(),
                    });
                }
            }
            let known = st.domain(&name).map(|d| (d.dns, d.mail, d.dkim));
            let backend = describe_backend(&self.cfg, &name);
            rows.push(DomainStatus {
                why: if st.settings.signing {
                    dec.why
                } else {
                    "signing is off".into()
                },
                domain: name,
                signs,
                known,
                keys,
                backend,
            });
        }
        let checks: Vec<(String, String)> = rows
            .iter()
            .flat_map(|r| r.keys.iter())
            .map(|k| (k.record_name.clone(), k.record.clone()))
            .collect();
        let mut states = live_states(&resolver, checks)?.into_iter();
        for k in rows.iter_mut().flat_map(|r| r.keys.iter_mut()) {
            k.dns = states.next().unwrap_or_else(|| "lookup failed".into());
        }
        Ok(rows)
    }

    // ---- domains -------------------------------------------------------

    pub fn domain_add(
        &mut self,
        name: &str,
        dns: bool,
        mail: bool,
        dkim: Override,
    ) -> anyhow::Result<()> {
        let name = domain_name(name)?;
        let st = self.load()?;
        if st.domain(&name).is_some() {
            return crate::usage(format!(
                "domain {name} already exists (change it with `dkimd domain set`)"
            ));
        }
        let d = Domain {
            name: name.clone(),
            dns,
            mail,
            dkim,
        };
        self.store.apply(&[Change::PutDomain(d.clone())])?;
        let decision = decide(&st.settings, &name, Some((dns, mail, dkim)));
        self.out.step(
            &name,
            &format!(
                "added (dns {}, mail {}, dkim {}); signs: {decision}",
                onoff(dns),
                onoff(mail),
                dkim.as_str()
            ),
            true,
        );
        self.sync_domain(&name, decision.signs)
    }

    pub fn domain_set(
        &mut self,
        name: &str,
        dns: Option<bool>,
        mail: Option<bool>,
        dkim: Option<Override>,
    ) -> anyhow::Result<()> {
        let name = domain_name(name)?;
        let st = self.load()?;
        let mut d = st.domain(&name).cloned().ok_or_else(|| {
            crate::UsageError(format!(
                "no domain {name}; add it with `dkimd domain add {name}`"
            ))
        })?;
        if let Some(v) = dns {
            d.dns = v;
        }
        if let Some(v) = mail {
            d.mail = v;
        }
        if let Some(v) = dkim {
            d.dkim = v;
        }
        self.store.apply(&[Change::PutDomain(d.clone())])?;
        let decision = decide(&st.settings, &name, Some((d.dns, d.mail, d.dkim)));
        self.out.step(
            &name,
            &format!(
                "dns {}, mail {}, dkim {}; signs: {decision}",
                onoff(d.dns),
                onoff(d.mail),
                d.dkim.as_str()
            ),
            true,
        );
        self.sync_domain(&name, decision.signs)
    }

    pub fn domain_remove(&mut self, name: &str) -> anyhow::Result<()> {
        let name = domain_name(name)?;
        let st = self.load()?;
        if st.domain(&name).is_none() {
            return crate::usage(format!("no domain {name}"));
        }
        if st.settings.signing {
            let names = possible_names(&st, &name);
            self.unpublish(&name, &names)?;
        }
        self.store.apply(&[Change::RemoveDomain(name.clone())])?;
        self.out.step(&name, "removed, with its own keys", true);
        Ok(())
    }

    pub fn domain_rename(&mut self, from: &str, to: &str) -> anyhow::Result<()> {
        let from = domain_name(from)?;
        let to = domain_name(to)?;
        let st = self.load()?;
        if st.domain(&from).is_none() {
            return crate::usage(format!("no domain {from}"));
        }
        if st.domain(&to).is_some() {
            return crate::usage(format!("domain {to} already exists"));
        }
        if st.settings.signing {
            let names = possible_names(&st, &from);
            self.unpublish(&from, &names)?;
        }
        self.store.apply(&[Change::RenameDomain {
            from: from.clone(),
            to: to.clone(),
        }])?;
        self.out.step(&from, &format!("renamed to {to}"), true);
        let st = self.load()?;
        let d = st
            .domain(&to)
            .cloned()
            .ok_or_else(|| anyhow!("renamed domain vanished"))?;
        let decision = decide(&st.settings, &to, Some((d.dns, d.mail, d.dkim)));
        self.sync_domain(&to, decision.signs)
    }

    // ---- enable / disable -------------------------------------------------

    pub fn enable(
        &mut self,
        selector: Option<&str>,
        algorithms: Option<&str>,
        rsa_bits: Option<usize>,
        new_key: bool,
    ) -> anyhow::Result<()> {
        let st = self.load()?;
        let mut settings = st.settings.clone();
        if let Some(a) = algorithms {
            settings
                .set("algorithms", a, false)
                .map_err(crate::UsageError)?;
        }
        if let Some(b) = rsa_bits {
            settings
                .set("rsa-bits", &b.to_string(), false)
                .map_err(crate::UsageError)?;
        }
        let current = st.settings.selector.clone();
        let wanted = match selector {
            Some(s) => s.to_string(),
            None if !current.is_empty() && !new_key => current.clone(),
            None => publish::year_month(),
        };
        for alg in &settings.algorithms {
            selector_for(&wanted, *alg)
                .parse::<dkim::Selector>()
                .map_err(|e| crate::UsageError(format!("--selector: {e}")))?;
        }
        if st.settings.signing && !current.is_empty() && wanted != current && !new_key {
            return crate::usage(format!(
                "signing is on with selector {current}; changing the selector needs a new key: dkimd enable --selector {wanted} --new-key"
            ));
        }
        self.out
            .title(&format!("Enabling DKIM signing with selector {wanted}"));
        let decisions = all_decisions(&st);
        let signing: Vec<&(String, Decision)> = decisions.iter().filter(|(_, d)| d.signs).collect();
        let extras = signing
            .iter()
            .filter(|(n, _)| st.domain(n).is_none())
            .count();
        self.out.step(
            "domains",
            &format!(
                "{} found, {} sign ({} extra), {} do not sign",
                decisions.len(),
                signing.len(),
                extras,
                decisions.len() - signing.len()
            ),
            true,
        );

        // Keys: keep those that match, generate the rest, retire the replaced.
        let mut changes: Vec<Change> = Vec::new();
        for alg in &settings.algorithms {
            let sel = selector_for(&wanted, *alg);
            let bits = if *alg == KeyAlgorithm::Rsa {
                settings.rsa_bits
            } else {
                256
            };
            let active: Vec<&StoredKey> = st
                .global_keys()
                .into_iter()
                .filter(|k| k.algorithm == *alg)
                .collect();
            let keep = active.iter().find(|k| {
                k.selector == sel && !new_key && (*alg != KeyAlgorithm::Rsa || k.bits == bits)
            });
            if let Some(k) = keep {
                self.out.step(
                    "key",
                    &format!("kept {} {} bits, selector {}", alg, k.bits, k.selector),
                    true,
                );
                for other in active.iter().filter(|o| o.id != k.id) {
                    changes.push(Change::KeyState(other.id, KeyState::Retired));
                }
                continue;
            }
            let key = generate(*alg, bits)?;
            for old in &active {
                changes.push(Change::KeyState(old.id, KeyState::Retired));
                self.out.step(
                    "key",
                    &format!("retired {} key of selector {}", old.algorithm, old.selector),
                    true,
                );
            }
            changes.push(Change::AddKey(NewKey {
                domain: None,
                algorithm: *alg,
                bits: key.bits(),
                selector: sel.clone(),
                pem: key.to_pem()?,
                created: None,
                state: KeyState::Active,
            }));
            self.out.step(
                "key",
                &format!(
                    "generated {} {} bits, selector {} (in {})",
                    alg,
                    key.bits(),
                    sel,
                    self.cfg.state_dir.display()
                ),
                true,
            );
        }
        for k in st.global_keys() {
            if !settings.algorithms.contains(&k.algorithm) {
                changes.push(Change::KeyState(k.id, KeyState::Retired));
                self.out.step(
                    "key",
                    &format!("retired {} key (algorithm no longer used)", k.algorithm),
                    true,
                );
            }
        }
        settings.signing = true;
        settings.selector = wanted.clone();
        for (k, v) in settings.to_pairs() {
            changes.push(Change::Setting(k.to_string(), v));
        }
        self.store.apply(&changes)?;

        let st = self.load()?;
        for (name, _) in all_decisions(&st).into_iter().filter(|(_, d)| d.signs) {
            self.publish_domain(&st, &name)?;
        }
        self.flush_batch()?;
        let pf = crate::install::postfix_state(&self.cfg);
        self.out.step("postfix", &pf, true);
        self.out
            .step("daemon", &reload_daemon(&self.cfg.state_dir), true);
        Ok(())
    }

    pub fn disable(&mut self, purge_keys: bool) -> anyhow::Result<()> {
        let st = self.load()?;
        self.out.title("Disabling DKIM signing");
        self.store
            .apply(&[Change::Setting("signing".into(), "off".into())])?;
        self.out.step(
            "signing",
            if st.settings.signing {
                "turned off"
            } else {
                "was already off"
            },
            true,
        );
        let mut domains: BTreeSet<String> = st.records.iter().map(|r| r.domain.clone()).collect();
        for (n, _) in all_decisions(&st) {
            domains.insert(n);
        }
        for d in domains {
            let names = possible_names(&st, &d);
            self.unpublish(&d, &names)?;
        }
        if purge_keys {
            let changes: Vec<Change> = st.keys.iter().map(|k| Change::DeleteKey(k.id)).collect();
            self.store.apply(&changes)?;
            self.out
                .step("keys", &format!("{} deleted", st.keys.len()), true);
        } else {
            self.out.step(
                "keys",
                &format!(
                    "{} kept in the store, so that signing can resume with the same keys (`dkimd disable --purge-keys` on the command line deletes them)",
                    st.keys.len()
                ),
                true,
            );
        }
        self.flush_batch()?;
        let pf = crate::install::postfix_state(&self.cfg);
        self.out.step(
            "postfix",
            &format!("{pf}; with signing off dkimd only verifies"),
            true,
        );
        self.out
            .step("daemon", &reload_daemon(&self.cfg.state_dir), true);
        Ok(())
    }

    // ---- keys ----------------------------------------------------------------

    /// Gives a domain its own keys (generated or imported) and publishes them.
    /// Gives `domain` its own `keys`: each replaces the domain's own key of
    /// its algorithm (if any); keys of other algorithms go on signing.
    /// `exact`: `selector` is used as it is (an imported key keeps the
    /// selector it was published under); otherwise Ed25519 keys get
    /// `SELECTOR-ed25519`. The plan (which keys sign afterwards, which
    /// records are published, kept or removed) is printed first; with
    /// `dry_run` nothing more happens.
    fn own_keys(
        &mut self,
        domain: &str,
        keys: Vec<SigningKey>,
        selector: Option<&str>,
        exact: bool,
        dry_run: bool,
    ) -> anyhow::Result<()> {
        let st = self.load()?;
        let plan = plan_own_keys(&st, domain, &keys, selector, exact)?;
        for line in &plan.lines {
            self.out.step(domain, line, true);
        }
        if dry_run {
            self.out.step(domain, "dry run: nothing was changed", true);
            return Ok(());
        }
        let before = possible_names(&st, domain);
        let mut changes = plan.retire;
        for (key, sel) in keys.iter().zip(plan.selectors) {
            self.out.step(
                domain,
                &format!(
                    "own {} key, {} bits, selector {sel}",
                    key.algorithm(),
                    key.bits()
                ),
                true,
            );
            changes.push(Change::AddKey(NewKey {
                domain: Some(domain.to_string()),
                algorithm: key.algorithm(),
                bits: key.bits(),
                selector: sel,
                pem: key.to_pem()?,
                created: None,
                state: KeyState::Active,
            }));
        }
        self.store.apply(&changes)?;
        self.republish(domain, &before)
    }

    /// After a key change: publish the wanted records, remove old names no longer wanted.
    fn republish(&mut self, domain: &str, before: &[String]) -> anyhow::Result<()> {
        let st = self.load()?;
        if !st.settings.signing {
            self.out
                .step(domain, "signing is off: nothing published", true);
            return Ok(());
        }
        let Some(d) = st.domain(domain) else {
            return Ok(());
        };
        if !decide(&st.settings, domain, Some((d.dns, d.mail, d.dkim))).signs {
            return Ok(());
        }
        let wanted: Vec<String> = wanted_records(&st, domain)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let stale: Vec<String> = before
            .iter()
            .filter(|n| !wanted.contains(n) && st.records.iter().any(|r| &r.name == *n))
            .cloned()
            .collect();
        self.publish_domain(&st, domain)?;
        self.unpublish(domain, &stale)
    }

    pub fn key_generate(&mut self, domain: &str, selector: Option<&str>) -> anyhow::Result<()> {
        let domain = domain_name(domain)?;
        let st = self.load()?;
        let keys = st
            .settings
            .algorithms
            .iter()
            .map(|a| generate(*a, st.settings.rsa_bits))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.own_keys(&domain, keys, selector, false, false)
    }

    /// Gives a domain its own key from a PEM file, under exactly the
    /// selector given (the one it is published under elsewhere).
    pub fn key_import(
        &mut self,
        domain: &str,
        file: &std::path::Path,
        selector: Option<&str>,
        dry_run: bool,
    ) -> anyhow::Result<()> {
        let domain = domain_name(domain)?;
        let key = crate::keyfile::load_private_key(file)?;
        self.own_keys(&domain, vec![key], selector, true, dry_run)
    }

    /// Gives a domain its own key from PEM text (the web page's import).
    pub fn key_import_pem(
        &mut self,
        domain: &str,
        pem: &str,
        selector: Option<&str>,
        dry_run: bool,
    ) -> anyhow::Result<()> {
        let domain = domain_name(domain)?;
        let key = SigningKey::from_pem(pem.as_bytes())
            .map_err(|e| crate::UsageError(format!("not a usable private key: {e}")))?;
        self.own_keys(&domain, vec![key], selector, true, dry_run)
    }

    pub fn key_default(&mut self, domain: &str) -> anyhow::Result<()> {
        let domain = domain_name(domain)?;
        let st = self.load()?;
        let own: Vec<&StoredKey> = st
            .keys
            .iter()
            .filter(|k| k.domain.as_deref() == Some(&domain) && k.state == KeyState::Active)
            .collect();
        if own.is_empty() {
            self.out.step(&domain, "already uses the global key", true);
            return Ok(());
        }
        let before = possible_names(&st, &domain);
        let changes: Vec<Change> = own
            .iter()
            .map(|k| Change::KeyState(k.id, KeyState::Retired))
            .collect();
        self.store.apply(&changes)?;
        self.out.step(
            &domain,
            &format!("{} own key(s) retired; the global key signs", own.len()),
            true,
        );
        self.republish(&domain, &before)
    }
}

/// Where a domain's records are published, in words.
fn describe_backend(cfg: &Config, domain: &str) -> String {
    let zone = domain
        .parse::<dkim::DomainName>()
        .ok()
        .and_then(|d| cfg.zone_for(&d).cloned());
    match zone {
        Some(z) if z.backend == "bind-zone-file" => format!(
            "zone {} in the file {}",
            z.name,
            z.file.map(|f| f.display().to_string()).unwrap_or_default()
        ),
        Some(z) if z.backend == "rfc2136" => format!(
            "zone {} by dynamic update (RFC 2136) to {}",
            z.name,
            z.server.map(|s| s.to_string()).unwrap_or_default()
        ),
        _ => "by hand (no zone configured for it: publish the records shown)".into(),
    }
}

/// Running daemons notice store changes within a second on their own;
/// this says whether one runs on this store (it holds the store open), or
/// only on another one.
fn reload_daemon(state_dir: &std::path::Path) -> String {
    let store = crate::store::store_file(state_dir);
    let store = store.canonicalize().unwrap_or(store);
    let (mut ours, mut others) = (Vec::new(), Vec::new());
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_daemon = args.first().is_some_and(|a| a.ends_with(b"dkimd"))
            && args.iter().any(|a| *a == b"run")
            && !args.iter().any(|a| *a == b"--check-config");
        if !is_daemon {
            continue;
        }
        let holds_store = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == store));
        if holds_store {
            ours.push(pid);
        } else {
            others.push(pid);
        }
    }
    if !ours.is_empty() {
        format!(
            "the running dkimd (pid {}) picks up the change within a second (it watches the store)",
            ours.join(", ")
        )
    } else if !others.is_empty() {
        format!(
            "a dkimd daemon runs (pid {}), but on another store than {}: it does not see this change",
            others.join(", "),
            store.display()
        )
    } else {
        "no dkimd daemon is running (start it with `dkimd run` or systemctl start dkimd)".into()
    }
}

/// An outcome with the backend that produced it (manual needs no more words).
fn where_(outcome: &Outcome, p: &dyn publish::Publisher) -> String {
    match outcome {
        Outcome::Pending(_) => outcome.describe(),
        _ => format!("{} ({} {})", outcome.describe(), p.backend(), p.target()),
    }
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The live state of many records at once, in order.
fn live_states(
    resolver: &hickory_resolver::TokioResolver,
    checks: Vec<(String, String)>,
) -> anyhow::Result<Vec<String>> {
    let n = checks.len();
    dns::block_on(async move {
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        let mut set = tokio::task::JoinSet::new();
        for (i, (name, record)) in checks.into_iter().enumerate() {
            let (resolver, limit) = (resolver.clone(), limit.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, live_state_async(&resolver, &name, &record).await)
            });
        }
        let mut out = vec![String::from("lookup failed"); n];
        while let Some(done) = set.join_next().await {
            if let Ok((i, state)) = done {
                if let Some(slot) = out.get_mut(i) {
                    *slot = state;
                }
            }
        }
        out
    })
}

/// The live state of an Ed25519 record that carries our key wrapped in
/// SubjectPublicKeyInfo (44 bytes) instead of the bare 32-byte key.
pub const WRONG_FORM: &str = "wrong form: the Ed25519 key is published in SubjectPublicKeyInfo form (44 bytes), which receivers reject; RFC 8463 requires the bare 32-byte key: publish the record shown";

/// What DNS serves for one key, compared with the key.
pub async fn live_state_async(
    resolver: &hickory_resolver::TokioResolver,
    name: &str,
    record: &str,
) -> String {
    let want = dkim::KeyRecord::parse(record)
        .map(|r| r.public_key)
        .unwrap_or_default();
    match dns::lookup_txt(resolver, name).await {
        Err(dkim::LookupError::NotFound) => "missing".into(),
        Err(e) => format!("lookup failed: {e}"),
        Ok(records) => {
            let parsed: Vec<Option<dkim::KeyRecord>> = records
                .iter()
                .map(|r| dkim::KeyRecord::parse(r).ok())
                .collect();
            let keys: Vec<Option<&Vec<u8>>> = parsed
                .iter()
                .map(|k| k.as_ref().map(|k| &k.public_key))
                .collect();
            let matching = keys.iter().filter(|k| **k == Some(&want)).count();
            // Our Ed25519 key, published wrapped in SubjectPublicKeyInfo:
            // receivers refuse it (RFC 8463 wants the bare key).
            let wrapped = parsed.iter().flatten().any(|k| {
                matches!(
                    k.key_type,
                    dkim::KeyType::Known(dkim::KeyAlgorithm::Ed25519)
                ) && dkim::ed25519_spki_inner(&k.public_key) == Some(&want[..])
            });
            if wrapped && matching == 0 {
                return WRONG_FORM.into();
            }
            match (records.len(), matching) {
                (1, 1) => "ok".into(),
                (n, m) if n > 1 && m > 0 => format!("multiple records ({n})"),
                (n, _) if n > 1 => format!("multiple records ({n}), none matches"),
                _ => "mismatch".into(),
            }
        }
    }
}

/// Parses on/off flags.
pub fn parse_onoff(v: &str) -> anyhow::Result<bool> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => crate::usage(format!("{v:?} is not on or off")),
    }
}
