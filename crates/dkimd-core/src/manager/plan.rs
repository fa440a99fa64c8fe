//! What the rules and the store ask for, decided without side effects:
//! which domains sign, which records each should have, and what giving a
//! domain its own keys would change.

use super::key_of;
use crate::error::{Error, Field};
use crate::model::names::{record_name, selector_for};
use crate::model::settings::{decide, Decision};
use crate::store::{Change, KeyState, State};
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

/// The records a domain should have now: one per active key that signs for it.
pub(super) fn wanted_records(st: &State, domain: &str) -> crate::Result<Vec<(String, String)>> {
    st.keys_for(domain)
        .into_iter()
        .map(|k| Ok((record_name(&k.selector, domain), key_of(k)?.dns_record())))
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
        }
    }
    names.into_iter().collect()
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
) -> crate::Result<OwnKeysPlan> {
    let Some(d) = st.domain(domain) else {
        return Err(Error::NotFound(format!("no domain {domain}")));
    };
    let base = selector
        .map(str::to_string)
        .or_else(|| Some(st.settings.selector.clone()).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| default_selector.to_string());
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
        lines.extend(record_lines(st, domain, &selectors, &after));
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
        lines.push(format!(
            "record {n}: removed (its key no longer signs for {domain})"
        ));
    }
    lines
}
