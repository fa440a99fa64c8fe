//! What `dkimd status` and the page's overview show: every domain with its
//! decision, keys, where its records go, and what DNS serves (live).

use super::lifecycle::{next_step, PENDING_ALARM};
use super::plan::{all_decisions, keys_at};
use super::Manager;
use crate::config::{Backend, Config};
use crate::dns::live::{check_many, DnsState};
use crate::model::names::record_name;
use crate::model::settings::Override;
use crate::publish;
use crate::store::KeyState;
use dkim::KeyAlgorithm;

/// One domain as `status` reports it.
#[derive(Clone, Debug)]
pub struct DomainStatus {
    /// The domain, lower case.
    pub domain: String,
    /// Signing is on and the rules say this domain signs.
    pub signs: bool,
    /// Why it signs or not, in words.
    pub why: String,
    /// (dns, mail, dkim override) for domains in the store; `None` for
    /// extra domains named only in the settings.
    pub known: Option<(bool, bool, Override)>,
    /// Its keys that have a record: the ones that sign, pending ones, and
    /// retired and revoked ones in their overlap (empty when it does not
    /// sign).
    pub keys: Vec<KeyStatus>,
    /// Where its records are published, in words.
    pub backend: String,
}

/// One key of a domain, where it is in its life, and what DNS serves for it.
#[derive(Clone, Debug)]
pub struct KeyStatus {
    /// The store's id of the key.
    pub id: i64,
    /// Where it is in its life.
    pub state: KeyState,
    /// Seconds since it was made.
    pub age: u64,
    /// When it entered its state (epoch seconds).
    pub since: i64,
    /// Its next step in words, and when it is due (epoch seconds), if known.
    pub next: Option<(String, Option<i64>)>,
    /// What is wrong, when something is: status exits 1.
    pub alarm: Option<String>,
    /// The selector the key signs under.
    pub selector: String,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// Its size in bits (256 for Ed25519).
    pub bits: usize,
    /// The domain's own key rather than the global one.
    pub own_key: bool,
    /// `SELECTOR._domainkey.DOMAIN`.
    pub record_name: String,
    /// The TXT record DNS should serve (`p=` empty once revoked).
    pub record: String,
    /// The same as one zone-file line (absolute name, the zone's TTL,
    /// strings of at most 255 bytes).
    pub zone_line: String,
    /// What DNS serves for it.
    pub dns: DnsState,
    /// Publishing by delegation: the target in dkimd's zone that the
    /// customer's CNAME at `record_name` must point at (`zone_line` is
    /// then that CNAME).
    pub target: Option<String>,
}

/// Which domains `status` reports, and where the DNS states come from.
#[derive(Clone, Debug, Default)]
pub struct StatusQuery {
    /// Only domains whose name contains this (lower case).
    pub search: Option<String>,
    /// Skip this many matching domains.
    pub offset: usize,
    /// At most this many domains; `None`: all.
    pub limit: Option<usize>,
    /// Take DNS states from the daemon's background live check when it is
    /// fresh (looking up only what it lacks); else look everything up now.
    pub cached: bool,
}

/// A page of `status`.
#[derive(Clone, Debug)]
pub struct StatusPage {
    /// The domains of the page.
    pub rows: Vec<DomainStatus>,
    /// How many domains match the search in all.
    pub total: usize,
    /// When the DNS states were looked up, when they came from the
    /// daemon's cache (epoch seconds); `None`: just now.
    pub checked: Option<i64>,
}

impl Manager {
    /// Every known domain with its decision, keys and the live DNS state
    /// of each key's record (what `dkimd status --live` shows). The
    /// lookups run concurrently (at most 32 at a time), each under the DNS
    /// timeout.
    pub fn status(&self) -> crate::Result<Vec<DomainStatus>> {
        Ok(self.status_query(&StatusQuery::default())?.rows)
    }

    /// How old the daemon's live check may be to be used: twice its
    /// interval, at least a minute; `None` when the daemon runs none.
    fn cache_age(&self) -> Option<i64> {
        let every = i64::try_from(self.cfg.milter.key_step_interval).unwrap_or(0);
        (every > 0).then(|| (2 * every).max(60))
    }

    /// The live check of every domain, in pages of 500 (so that 10,000
    /// domains never sit in memory at once), each domain handed to `each`;
    /// the DNS states are then kept for `status` (the daemon's round).
    pub fn check_all(&self, mut each: impl FnMut(&DomainStatus)) -> crate::Result<()> {
        let st = self.load_signing()?;
        let mut cache = crate::dns::live::Cache {
            checked: i64::try_from(self.clock.now()).unwrap_or(0),
            ..Default::default()
        };
        let mut offset = 0;
        loop {
            let q = StatusQuery {
                offset,
                limit: Some(500),
                ..Default::default()
            };
            let page = self.status_in(&st, &q, None)?;
            for d in &page.rows {
                for k in &d.keys {
                    cache.put(&k.record_name, &k.record, k.dns.clone());
                }
                each(d);
            }
            offset += 500;
            if offset >= page.total {
                break;
            }
        }
        cache.save(&crate::dns::live::Cache::path_in(&self.cfg.state_dir))
    }

    /// The domains `q` asks for, with their DNS states.
    pub fn status_query(&self, q: &StatusQuery) -> crate::Result<StatusPage> {
        let st = self.load_signing()?;
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        let cache = match (q.cached, self.cache_age()) {
            (true, Some(age)) => crate::dns::live::Cache::load_fresh(
                &crate::dns::live::Cache::path_in(&self.cfg.state_dir),
                now,
                age,
            ),
            _ => None,
        };
        self.status_in(&st, q, cache)
    }

    fn status_in(
        &self,
        st: &crate::store::State,
        q: &StatusQuery,
        cache: Option<crate::dns::live::Cache>,
    ) -> crate::Result<StatusPage> {
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        let search = q.search.as_deref().map(str::to_ascii_lowercase);
        let matching: Vec<_> = all_decisions(st)
            .into_iter()
            .filter(|(name, _)| search.as_deref().is_none_or(|s| name.contains(s)))
            .collect();
        let total = matching.len();
        let mut rows = Vec::new();
        for (name, dec) in matching
            .into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
        {
            let signs = dec.signs && st.settings.signing;
            let mut keys = Vec::new();
            if signs {
                let ttl = name
                    .parse::<dkim::DomainName>()
                    .map_or(3600, |d| self.cfg.ttl_for(&d));
                for k in &keys_at(st, &name, now) {
                    let Some(record) = k.wanted_record() else {
                        continue;
                    };
                    let rname = record_name(&k.selector, &name);
                    let location = st.record_location(k, &name);
                    let target = (location != rname).then_some(location);
                    let zone_line = match &target {
                        Some(t) => format!("{rname}. IN CNAME {t}."),
                        None => dkim::KeyRecord::parse(&record)
                            .map(|r| r.zone_line(&rname, ttl))
                            .unwrap_or_default(),
                    };
                    keys.push(KeyStatus {
                        id: k.id,
                        state: k.state,
                        age: u64::try_from(now.saturating_sub(k.created)).unwrap_or(0),
                        since: k.since,
                        next: next_step(k, &st.settings, ttl),
                        alarm: None,
                        selector: k.selector.clone(),
                        algorithm: k.algorithm,
                        bits: k.bits,
                        own_key: k.domain.is_some(),
                        zone_line,
                        record_name: rname,
                        record,
                        dns: DnsState::NotChecked,
                        target,
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
        // What the cache has, from it; the rest looked up now.
        if let Some(c) = &cache {
            for k in rows.iter_mut().flat_map(|r| r.keys.iter_mut()) {
                if let Some(s) = c.get(&k.record_name, &k.record) {
                    k.dns = s.clone();
                }
            }
        }
        let checks: Vec<(String, String)> = rows
            .iter()
            .flat_map(|r| r.keys.iter())
            .filter(|k| k.dns == DnsState::NotChecked)
            .map(|k| (k.record_name.clone(), k.record.clone()))
            .collect();
        let all_cached = checks.is_empty() && cache.is_some();
        let mut states = if checks.is_empty() {
            Vec::new().into_iter()
        } else {
            let resolver = publish::live_resolver(&self.cfg)?;
            check_many(&resolver, checks)?.into_iter()
        };
        for k in rows.iter_mut().flat_map(|r| r.keys.iter_mut()) {
            if k.dns == DnsState::NotChecked {
                k.dns = states
                    .next()
                    .unwrap_or_else(|| DnsState::LookupFailed(String::new()));
            }
        }
        self.diagnose_delegations(&mut rows)?;
        for k in rows.iter_mut().flat_map(|r| r.keys.iter_mut()) {
            k.alarm = alarm(k, &st.settings, now);
        }
        Ok(StatusPage {
            rows,
            total,
            checked: cache.filter(|_| all_cached).map(|c| c.checked),
        })
    }
}

impl Manager {
    /// For each delegated key whose record receivers do not get through
    /// the customer's CNAME, which link of the chain is wrong: the CNAME
    /// is missing, points elsewhere, or its target serves the wrong thing.
    fn diagnose_delegations(&self, rows: &mut [DomainStatus]) -> crate::Result<()> {
        let names: Vec<String> = rows
            .iter()
            .flat_map(|r| r.keys.iter())
            .filter(|k| k.target.is_some() && !k.dns.is_ok())
            .map(|k| k.record_name.clone())
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let resolver = publish::live_resolver(&self.cfg)?;
        let targets: Vec<String> = rows
            .iter()
            .flat_map(|r| r.keys.iter())
            .filter(|k| k.target.is_some() && !k.dns.is_ok())
            .map(|k| k.target.clone().unwrap_or_default())
            .collect();
        let mut found = crate::dns::follow_cnames(&resolver, names, &targets)?.into_iter();
        for k in rows
            .iter_mut()
            .flat_map(|r| r.keys.iter_mut())
            .filter(|k| k.target.is_some() && !k.dns.is_ok())
        {
            let target = k.target.clone().unwrap_or_default();
            k.dns = match found.next() {
                Some(Ok(None)) => DnsState::CnameMissing {
                    name: k.record_name.clone(),
                    target,
                },
                Some(Ok(Some(t))) if !t.eq_ignore_ascii_case(&target) => DnsState::CnameElsewhere {
                    name: k.record_name.clone(),
                    found: t,
                    target,
                },
                Some(Ok(Some(_))) => DnsState::TargetWrong {
                    target,
                    state: k.dns.to_string(),
                },
                _ => continue,
            };
        }
        Ok(())
    }
}

/// What is wrong with a key, if anything: an active key DNS does not serve
/// or older than rotate-every, a pending key not served after a day.
fn alarm(k: &KeyStatus, s: &crate::model::settings::Settings, now: i64) -> Option<String> {
    match k.state {
        KeyState::Active if !k.dns.is_ok() => Some(format!(
            "it signs, but DNS does not serve its record ({}): receivers cannot verify its signatures",
            k.dns
        )),
        KeyState::Active if s.rotate_every.is_some_and(|p| k.age >= p.as_secs()) => Some(format!(
            "older than rotate-every ({}): rotate it (`dkimd rotate`)",
            s.rotate_every.map(|p| p.to_string()).unwrap_or_default()
        )),
        KeyState::Pending
            if !k.dns.is_ok() && now.saturating_sub(k.since) > PENDING_ALARM.as_i64() =>
        {
            Some(format!(
                "pending for more than {PENDING_ALARM}, and its record is not served ({}): publish it, or check the zone's servers",
                k.dns
            ))
        }
        _ => None,
    }
}

/// Where a domain's records are published, in words.
pub(super) fn describe_backend(cfg: &Config, domain: &str) -> String {
    let zone = domain
        .parse::<dkim::DomainName>()
        .ok()
        .and_then(|d| cfg.zone_for(&d).cloned());
    match zone {
        Some(z) if z.backend == Backend::BindZoneFile => format!(
            "zone {} in the file {}",
            z.name,
            z.file.map(|f| f.display().to_string()).unwrap_or_default()
        ),
        Some(z) if z.backend == Backend::Rfc2136 => format!(
            "zone {} by dynamic update (RFC 2136) to {}",
            z.name,
            z.server.map(|s| s.to_string()).unwrap_or_default()
        ),
        Some(z) if z.backend == Backend::Provider => format!(
            "zone {} through the {} API",
            z.name,
            z.provider.map(|p| p.as_str()).unwrap_or_default()
        ),
        Some(z) if z.backend == Backend::PowerDns => format!(
            "zone {} through the PowerDNS API at {}",
            z.name,
            z.api_url.map(|u| u.to_string()).unwrap_or_default()
        ),
        _ => "by hand (no zone configured for it: publish the records shown)".into(),
    }
}
