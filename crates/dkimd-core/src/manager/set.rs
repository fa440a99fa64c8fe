//! Changing settings by name.

use super::Manager;
use crate::error::{Error, Field};
use crate::model::settings::{SettingName, Settings};
use crate::store::Change;

impl Manager {
    /// Changes settings by name (all checked first, then stored in one
    /// transaction), then brings every domain's records in line.
    pub fn set_settings(&mut self, pairs: &[(SettingName, &str)]) -> crate::Result<()> {
        self.set_settings_only(pairs)?;
        self.sync_all()
    }

    /// Changes settings by name without bringing records in line (for a
    /// caller that runs `enable` or `disable` right after).
    pub fn set_settings_only(&mut self, pairs: &[(SettingName, &str)]) -> crate::Result<()> {
        let st = self.load()?;
        let mut s = st.settings.clone();
        for (name, value) in pairs {
            s.set(*name, value, false)
                .map_err(|e| Error::invalid(Field::SettingValue, format!("{name}: {e}")))?;
        }
        let before = st.settings.to_pairs();
        let mut changes = Vec::new();
        for (k, v) in s.to_pairs() {
            let old = before.iter().find(|(n, _)| *n == k).map(|(_, o)| o);
            let named = pairs.iter().any(|(n, _)| *n == k);
            if named && old != Some(&v) {
                self.out.step("setting", &format!("{k} = {v}"), true);
                changes.push(Change::Setting(k, v));
            } else if named {
                self.out
                    .step("setting", &format!("{k} = {v} (unchanged)"), true);
            }
        }
        self.store.apply(&changes)
    }
}

/// The settings a form asks for, as written: one value per setting named
/// (lists may be one per line), whether signing is on, the selector (empty:
/// the current one, or this month's), and whether to make new keys.
#[derive(Clone, Debug, Default)]
pub struct SettingsRequest {
    /// Values by setting; the ones not named stay as they are.
    pub values: Vec<(SettingName, String)>,
    /// Signing on or off.
    pub signing: bool,
    /// The selector; empty for the default.
    pub selector: String,
    /// Make new keys.
    pub new_key: bool,
}

/// A [`SettingsRequest`] checked against the current settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsChange {
    /// The settings whose value changes (not the algorithms or the RSA
    /// size: `enable` sets those with the keys they need).
    pub pairs: Vec<(SettingName, String)>,
    /// Signing on or off.
    pub signing: bool,
    /// The selector to sign with.
    pub selector: String,
    /// Make new keys.
    pub new_key: bool,
    /// The algorithms to sign with.
    pub algorithms: Vec<dkim::KeyAlgorithm>,
    /// The size of new RSA keys.
    pub rsa_bits: usize,
}

/// Checks every value of `req` against `cur`; nothing is changed. Every
/// invalid value is reported, each with its field ([`Error::Form`]).
/// `default_selector` is the one a new key gets when none is named.
pub fn check_settings(
    cur: &Settings,
    req: &SettingsRequest,
    default_selector: &str,
) -> crate::Result<SettingsChange> {
    let mut errors: Vec<(Field, String)> = Vec::new();
    let mut next = cur.clone();
    let mut pairs = Vec::new();
    let before = cur.to_pairs();
    for (name, value) in &req.values {
        if let Err(e) = next.set(*name, value, false) {
            errors.push((Field::Setting(name.as_str()), e));
            continue;
        }
        let old = before.iter().find(|(k, _)| k == name);
        let new = next.to_pairs().into_iter().find(|(k, _)| k == name);
        if let Some((k, v)) = new {
            // Keys are set by enable itself (it generates what they need).
            if old != Some(&(k, v.clone()))
                && k != SettingName::Algorithms
                && k != SettingName::RsaBits
            {
                pairs.push((k, v));
            }
        }
    }
    let selector = if req.selector.is_empty() {
        if cur.selector.is_empty() || req.new_key {
            default_selector.to_string()
        } else {
            cur.selector.clone()
        }
    } else {
        req.selector.clone()
    };
    if req.signing {
        let valid = next.algorithms.iter().all(|alg| {
            crate::model::names::selector(&crate::model::names::selector_for(&selector, *alg))
                .is_ok()
        });
        if !valid {
            errors.push((
                Field::Selector,
                crate::model::names::selector_error(&selector),
            ));
        } else if cur.signing
            && !cur.selector.is_empty()
            && selector != cur.selector
            && !req.new_key
        {
            errors.push((
                Field::Selector,
                format!(
                    "signing uses selector {}; a new selector needs a new key: set \"Force generation of new key?\" to Yes",
                    cur.selector
                ),
            ));
        }
    } else if req.new_key {
        errors.push((
            Field::NewKey,
            "new keys are made only when signing is on".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Form(errors));
    }
    Ok(SettingsChange {
        pairs,
        signing: req.signing,
        selector,
        new_key: req.new_key,
        algorithms: next.algorithms.clone(),
        rsa_bits: next.rsa_bits,
    })
}

impl Manager {
    /// Makes a checked settings change: the settings, then `enable` (which
    /// makes the keys the algorithms need) or `disable`.
    pub fn save_settings(&mut self, c: &SettingsChange) -> crate::Result<()> {
        let was_on = self.load()?.settings.signing;
        if !c.pairs.is_empty() {
            let pairs: Vec<(SettingName, &str)> =
                c.pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            // The enable or disable below brings the records in line once
            // (syncing here too would show every step twice).
            if c.signing || was_on {
                self.set_settings_only(&pairs)?;
            } else {
                self.set_settings(&pairs)?;
            }
        }
        if c.signing {
            self.enable(&super::EnableOptions {
                selector: Some(c.selector.clone()),
                algorithms: Some(c.algorithms.clone()),
                rsa_bits: Some(c.rsa_bits),
                new_key: c.new_key,
            })
        } else if was_on {
            self.disable(false)
        } else {
            self.out.step("signing", "stays off", true);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn form(cur: &Settings) -> SettingsRequest {
        SettingsRequest {
            values: cur
                .to_pairs()
                .into_iter()
                .filter(|(k, _)| !matches!(k, SettingName::Signing | SettingName::Selector))
                .collect(),
            signing: cur.signing,
            selector: cur.selector.clone(),
            new_key: false,
        }
    }

    fn set(r: &mut SettingsRequest, name: SettingName, v: &str) {
        r.values.retain(|(k, _)| *k != name);
        r.values.push((name, v.into()));
    }

    fn errors(e: &Error) -> std::collections::HashMap<&'static str, String> {
        e.fields()
            .into_iter()
            .map(|(f, m)| (f.form_name(), m.to_string()))
            .collect()
    }

    #[test]
    fn every_invalid_value_is_reported_next_to_its_field() {
        let cur = Settings::default();
        let mut r = form(&cur);
        r.signing = true;
        r.selector = "bad selector".into();
        set(
            &mut r,
            SettingName::ExtraDomains,
            "ok.example\nbad..example",
        );
        set(&mut r, SettingName::RsaBits, "1024");
        let e = errors(&check_settings(&cur, &r, "202612").unwrap_err());
        assert!(e["selector"].contains("not a valid selector"), "{e:?}");
        assert!(
            e["extra_domains"].contains("\"bad..example\" is not a domain"),
            "{e:?}"
        );
        assert!(e["rsa_bits"].contains("2048"), "{e:?}");
        assert!(!e.contains_key("verify"));
        // "exa mple.com" is one bad name with a field error, not two domains.
        let mut r = form(&cur);
        set(&mut r, SettingName::ExcludedDomains, "exa mple.com");
        let e = errors(&check_settings(&cur, &r, "202612").unwrap_err());
        assert!(
            e["excluded_domains"]
                .contains("\"exa mple.com\" is not a domain: a name has no spaces"),
            "{e:?}"
        );
    }

    #[test]
    fn changing_the_selector_needs_a_new_key() {
        let cur = Settings {
            signing: true,
            selector: "202601".into(),
            ..Settings::default()
        };
        let mut r = form(&cur);
        r.selector = "202612".into();
        let e = errors(&check_settings(&cur, &r, "202612").unwrap_err());
        assert!(e["selector"].contains("Force generation"), "{e:?}");
        r.new_key = true;
        let c = check_settings(&cur, &r, "202612").unwrap();
        assert_eq!(c.selector, "202612");
        assert!(c.new_key && c.signing);
        // Unchanged fields are not set again.
        assert!(c.pairs.is_empty(), "{:?}", c.pairs);
        set(
            &mut r,
            SettingName::Verify,
            if cur.verify { "off" } else { "on" },
        );
        let c = check_settings(&cur, &r, "202612").unwrap();
        assert_eq!(c.pairs.len(), 1);
        // No selector named, a new key: this month's.
        r.selector.clear();
        assert_eq!(
            check_settings(&cur, &r, "202703").unwrap().selector,
            "202703"
        );
    }

    #[test]
    fn new_keys_need_signing_on() {
        let cur = Settings::default();
        let mut r = form(&cur);
        r.new_key = true;
        let e = errors(&check_settings(&cur, &r, "202612").unwrap_err());
        assert!(e["new_key"].contains("only when signing is on"));
    }
}
