//! What the rules and the store ask for, decided without side effects:
//! which domains sign, which records each should have, and what giving a
//! domain its own keys would change.

use crate::error::{Error, Field};
use crate::model::names::{record_name, selector_for};
use crate::model::settings::{decide, Decision};
use crate::store::{Change, KeyState, State, StoredKey};
use dkim::{KeyAlgorithm, SigningKey};
use std::collections::BTreeSet;

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
            .any(|x| crate::model::settings::matches_pattern(x, &name));
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

/// The keys whose records a (signing) domain should have at `now`, one
/// per record name, each as it stands at this domain: its own keys and,
/// for each algorithm it has no active own key of, the global keys, in
/// every state but deleted. A global key an own key replaced at this
/// domain keeps an overlap here as if it were retired there when the own
/// key became active: retired for `retire-after`, then revoked for
/// `revoke-for`, then gone. Where two keys share a name (stores from
/// before the lifecycle), the livelier state wins.
pub fn keys_at(st: &State, domain: &str, now: i64) -> Vec<StoredKey> {
    let own_active: Vec<&StoredKey> = st
        .keys
        .iter()
        .filter(|k| k.state == KeyState::Active && k.domain.as_deref() == Some(domain))
        .collect();
    // A domain that publishes by delegation signs with its slot key alone:
    // its own key replaces the global keys of every algorithm there.
    let delegated = !own_active.is_empty() && st.delegate_of(domain).is_some();
    let s = &st.settings;
    let mut keys: Vec<StoredKey> = Vec::new();
    for k in st.keys.iter().filter(|k| k.state.has_record()) {
        match &k.domain {
            Some(d) if d == domain => keys.push(k.clone()),
            Some(_) => {}
            None => match own_active
                .iter()
                .find(|o| delegated || o.algorithm == k.algorithm)
            {
                None => keys.push(k.clone()),
                // It signed here until the first own key of its algorithm
                // made after it took over (a key made later never did).
                Some(_) if k.state != KeyState::Pending => {
                    // At a delegated domain the slot key took over when it
                    // became active (it waited, pending, for the CNAMEs).
                    let took_over = if delegated {
                        delegation_began(st, domain)
                    } else {
                        st.keys
                            .iter()
                            .filter(|o| {
                                o.domain.as_deref() == Some(domain)
                                    && o.algorithm == k.algorithm
                                    && o.created >= k.created
                            })
                            .map(|o| o.created)
                            .min()
                    };
                    let Some(took_over) = took_over.filter(|t| *t >= k.created) else {
                        continue;
                    };
                    let retired_until = took_over.saturating_add(s.retire_after.as_i64());
                    let revoked_until = retired_until.saturating_add(s.revoke_for.as_i64());
                    let mut here = k.clone();
                    if k.state == KeyState::Revoked {
                        // Revoked everywhere already: the step deletes it.
                    } else if now < retired_until {
                        here.state = KeyState::Retired;
                        here.since = took_over;
                    } else if now < revoked_until {
                        here.state = KeyState::Revoked;
                        here.since = retired_until;
                    } else {
                        continue;
                    }
                    keys.push(here);
                }
                Some(_) => {}
            },
        }
    }
    let rank = |s: KeyState| match s {
        KeyState::Active => 0,
        KeyState::Pending => 1,
        KeyState::Retired => 2,
        KeyState::Revoked => 3,
        KeyState::Deleted => 4,
    };
    // Own keys before global ones, then by state, then the newest first.
    keys.sort_by_key(|k| (k.domain.is_none(), rank(k.state), std::cmp::Reverse(k.id)));
    let mut names = BTreeSet::new();
    keys.retain(|k| names.insert(k.selector.to_ascii_lowercase()));
    keys.sort_by_key(|k| k.id);
    keys
}

/// When a delegated domain's first slot key began to sign: the activation
/// of its active key while it is the only slot key that ever signed, else
/// the creation of the first one that did (its activation is no longer
/// kept once it retires; it came at most its pending time later).
fn delegation_began(st: &State, domain: &str) -> Option<i64> {
    let signed: Vec<&StoredKey> = st
        .keys
        .iter()
        .filter(|k| {
            k.domain.as_deref() == Some(domain)
                && k.state != KeyState::Pending
                && crate::model::names::is_slot(&k.selector)
        })
        .collect();
    match signed.as_slice() {
        [only] if only.state == KeyState::Active => Some(only.since),
        _ => signed.iter().map(|k| k.created).min(),
    }
}

/// The records a signing domain should have now: pending, active and
/// retired keys' records, and revoked keys' with `p=` empty.
pub(super) fn wanted_records(st: &State, domain: &str, now: i64) -> Vec<(String, String)> {
    keys_at(st, domain, now)
        .into_iter()
        .filter_map(|k| Some((st.record_location(&k, domain), k.wanted_record()?)))
        .collect()
}

/// Every record name dkimd may have put at a domain: those it remembers and
/// those of every key it holds (a crash can leave one it does not remember).
pub(super) fn possible_names(st: &State, domain: &str) -> Vec<String> {
    let mut names: BTreeSet<String> = st
        .records
        .iter()
        .filter(|r| r.domain == domain)
        .map(|r| r.name.clone())
        .collect();
    for k in &st.keys {
        if k.domain.is_none() || k.domain.as_deref() == Some(domain) {
            names.insert(record_name(&k.selector, domain));
            // A delegated domain's slot keys live at their targets.
            names.insert(st.record_location(k, domain));
        }
    }
    names.into_iter().collect()
}

/// `YYYYMM` of a base selector, then `-2`, `-3` …
fn candidates(base: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(base.to_string()).chain((2..1000).map(move |n| format!("{base}-{n}")))
}

/// True when a record under `selector` exists, or may, where a key of
/// `owner` (None: global, at every domain) would publish it: a key that
/// still has a record, or a record dkimd remembers.
pub(super) fn selector_taken(st: &State, owner: Option<&str>, selector: &str) -> bool {
    let sel = selector.to_ascii_lowercase();
    let prefix = format!("{sel}._domainkey.");
    st.keys.iter().any(|k| {
        k.state.has_record()
            && k.selector.eq_ignore_ascii_case(&sel)
            && (owner.is_none() || k.domain.is_none() || k.domain.as_deref() == owner)
    }) || st.records.iter().any(|r| {
        (owner.is_none() || Some(r.domain.as_str()) == owner)
            && r.name.to_ascii_lowercase().starts_with(&prefix)
    })
}

/// True when a delegated domain's `slot` (s1 or s2) can take a new key:
/// no key of the domain under it still has a record (its previous key is
/// revoked and gone), and dkimd remembers no record at its target.
pub(super) fn slot_free(st: &State, domain: &str, slot: &str) -> bool {
    let target = st
        .delegate_of(domain)
        .map(|z| crate::model::names::delegated_name(slot, domain, z));
    !st.keys.iter().any(|k| {
        k.state.has_record()
            && k.domain.as_deref() == Some(domain)
            && k.selector.eq_ignore_ascii_case(slot)
    }) && !st
        .records
        .iter()
        .any(|r| r.domain == domain && Some(r.name.as_str()) == target.as_deref())
}

/// The first of `base`, `base-2`, `base-3` … under which no key of `owner`
/// has a record for any of `algs`.
pub(super) fn free_base(
    st: &State,
    owner: Option<&str>,
    base: &str,
    algs: &[KeyAlgorithm],
) -> Option<String> {
    candidates(base).find(|c| {
        algs.iter()
            .all(|a| !selector_taken(st, owner, &selector_for(c, *a)))
    })
}

/// What giving a domain its own keys would do.
pub(super) struct OwnKeysPlan {
    /// The selector of each new key, in order.
    pub(super) selectors: Vec<String>,
    /// The own keys the new ones replace.
    pub(super) retire: Vec<Change>,
    /// In words: the keys that sign afterwards and the record changes.
    pub(super) lines: Vec<String>,
}

/// `default_selector`: the one to use when neither `selector` nor the
/// settings name one (this month's).
pub(super) fn plan_own_keys(
    st: &State,
    domain: &str,
    keys: &[SigningKey],
    selector: Option<&str>,
    exact: bool,
    default_selector: &str,
    now: i64,
) -> crate::Result<OwnKeysPlan> {
    let Some(d) = st.domain(domain) else {
        return Err(Error::NotFound(format!("no domain {domain}")));
    };
    let base = selector
        .map(str::to_string)
        .or_else(|| Some(st.settings.selector.clone()).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| default_selector.to_string());
    // Without a selector named, the first free one: a record that has
    // signed mail (the global key's at this domain) is never overwritten.
    let base = if selector.is_none() {
        let algs: Vec<KeyAlgorithm> = keys.iter().map(SigningKey::algorithm).collect();
        free_base(st, Some(domain), &base, &algs).unwrap_or(base)
    } else {
        base
    };
    let mut selectors = Vec::new();
    let mut retire = Vec::new();
    let mut retired = BTreeSet::new();
    for key in keys {
        let sel = if exact && selector.is_some() {
            base.clone()
        } else {
            selector_for(&base, key.algorithm())
        };
        crate::model::names::selector(&sel)?;
        // A named selector under which a record of this domain exists, or
        // may (a retired, revoked or pending key's, the global key's), is
        // refused: that record may still verify mail in flight.
        let new_record = key.dns_record();
        let in_use_by_other = st.keys.iter().any(|k| {
            k.state.has_record()
                && k.selector.eq_ignore_ascii_case(&sel)
                && (k.domain.as_deref() == Some(domain) || k.domain.is_none())
                && k.record != new_record
        }) || st.records.iter().any(|r| {
            r.domain == domain
                && r.name.eq_ignore_ascii_case(&record_name(&sel, domain))
                && r.value != new_record
        });
        if selector.is_some() && in_use_by_other {
            return Err(Error::invalid(
                Field::Selector,
                format!(
                    "selector {sel} is in use at {domain} (a key or a published record under it exists, which may still verify mail in flight): choose another"
                ),
            ));
        }
        for old in st.keys.iter().filter(|k| {
            k.domain.as_deref() == Some(domain)
                && k.state == KeyState::Active
                && k.algorithm == key.algorithm()
        }) {
            retire.push(Change::KeyState(old.id, KeyState::Retired, now));
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
            return Err(Error::invalid(
                Field::Selector,
                format!(
                    "selector {sel} would be used by two keys of {domain}: choose another with --selector"
                ),
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
        lines.extend(record_lines(st, domain, &selectors, &after, &retired));
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

/// What happens to each record name when `after` sign for `domain`: the new
/// keys' (`new_selectors`) published, the others kept, published or removed.
fn record_lines(
    st: &State,
    domain: &str,
    new_selectors: &[String],
    after: &[(KeyAlgorithm, usize, String, &str)],
    retired: &BTreeSet<i64>,
) -> Vec<String> {
    let mut lines = Vec::new();
    let before: BTreeSet<String> = st
        .keys_for(domain)
        .iter()
        .map(|k| record_name(&k.selector, domain))
        .collect();
    let now: BTreeSet<String> = after
        .iter()
        .map(|(_, _, s, _)| record_name(s, domain))
        .collect();
    let new_names: BTreeSet<String> = new_selectors
        .iter()
        .map(|s| record_name(s, domain))
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
        let own_retired = st
            .keys
            .iter()
            .any(|k| retired.contains(&k.id) && record_name(&k.selector, domain) == *n);
        let global = st
            .global_keys()
            .iter()
            .any(|k| record_name(&k.selector, domain) == *n);
        if own_retired {
            lines.push(format!(
                "record {n}: kept for retire-after ({}), then served revoked for revoke-for ({}), then removed (its key is retired)",
                st.settings.retire_after, st.settings.revoke_for
            ));
        } else if global {
            lines.push(format!(
                "record {n}: kept for retire-after ({}), then served revoked for revoke-for ({}), then removed here (the global key no longer signs for {domain})",
                st.settings.retire_after, st.settings.revoke_for
            ));
        } else {
            lines.push(format!(
                "record {n}: removed (its key no longer signs for {domain})"
            ));
        }
    }
    lines
}
