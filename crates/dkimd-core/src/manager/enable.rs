//! Turning signing on (choose the selector, keep or make keys, publish) and
//! off (remove every record, keep or delete the keys).

use super::plan::{all_decisions, possible_names};
use super::{generate, reload_daemon, Manager};
use crate::error::{Error, Field};
use crate::model::names::selector_for;
use crate::model::settings::{Decision, SettingName};
use crate::store::{Change, KeyState, NewKey, StoredKey};
use dkim::{KeyAlgorithm, SigningKey};
use std::collections::BTreeSet;

/// What `enable` is asked to change besides turning signing on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnableOptions {
    /// The selector (default: the current one, or this month's).
    pub selector: Option<String>,
    /// The algorithms to sign with (default: the settings').
    pub algorithms: Option<Vec<KeyAlgorithm>>,
    /// The size of new RSA keys (default: the settings').
    pub rsa_bits: Option<usize>,
    /// Make new keys even when the current ones fit.
    pub new_key: bool,
}

impl Manager {
    /// Turns signing on: checks the options, keeps or makes the global
    /// keys, stores the settings, publishes every signing domain's records.
    pub fn enable(&mut self, opts: &EnableOptions) -> crate::Result<()> {
        let new_key = opts.new_key;
        let st = self.load()?;
        let mut settings = st.settings.clone();
        if let Some(a) = &opts.algorithms {
            settings
                .set_algorithms(a)
                .map_err(|e| Error::invalid(Field::Algorithms, e))?;
        }
        if let Some(b) = opts.rsa_bits {
            settings
                .set_rsa_bits(b)
                .map_err(|e| Error::invalid(Field::SettingValue, e))?;
        }
        let current = st.settings.selector.clone();
        let wanted = match &opts.selector {
            Some(s) => s.clone(),
            None if !current.is_empty() && !new_key => current.clone(),
            None => {
                super::plan::free_base(&st, None, &self.default_selector(), &settings.algorithms)
                    .unwrap_or_else(|| self.default_selector())
            }
        };
        if crate::model::names::is_slot(&wanted) {
            if let Some(d) = st.domains.iter().find(|d| d.delegate.is_some()) {
                return Err(Error::invalid(
                    Field::Selector,
                    format!(
                        "selectors s1 and s2 belong to the domains that publish by delegation ({} is one): choose another for the global keys",
                        d.name
                    ),
                ));
            }
        }
        for alg in &settings.algorithms {
            selector_for(&wanted, *alg)
                .parse::<dkim::Selector>()
                .map_err(|e| Error::invalid(Field::Selector, format!("--selector: {e}")))?;
        }
        if st.settings.signing && !current.is_empty() && wanted != current && !new_key {
            return Err(Error::invalid(
                Field::Selector,
                format!(
                    "signing is on with selector {current}; changing the selector needs a new key: dkimd enable --selector {wanted} --new-key"
                ),
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

        let (mut changes, rotation) = self.global_key_changes(&st, &settings, &wanted, new_key)?;
        settings.signing = true;
        // A rotation's selector becomes the settings' when it is promoted.
        if !rotation {
            settings.selector = wanted.clone();
        }
        for (k, v) in settings.to_pairs() {
            changes.push(Change::Setting(k, v));
        }
        self.store.apply(&changes)?;
        self.ensure_slot_keys()?;

        let st = self.load()?;
        for (name, _) in all_decisions(&st).into_iter().filter(|(_, d)| d.signs) {
            self.publish_domain(&st, &name)?;
        }
        self.flush_batch()?;
        let pf = crate::postfix::postfix_state(&self.cfg);
        self.out.step("postfix", &pf, true);
        self.out
            .step("daemon", &reload_daemon(self.store.as_ref()), true);
        Ok(())
    }

    /// Turns signing off and removes every record dkimd published;
    /// `purge_keys` deletes the keys as well.
    pub fn disable(&mut self, purge_keys: bool) -> crate::Result<()> {
        let st = self.load()?;
        self.out.title("Disabling DKIM signing");
        self.store
            .apply(&[Change::Setting(SettingName::Signing, "off".into())])?;
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
        let pf = crate::postfix::postfix_state(&self.cfg);
        self.out.step(
            "postfix",
            &format!("{pf}; with signing off dkimd only verifies"),
            true,
        );
        self.out
            .step("daemon", &reload_daemon(self.store.as_ref()), true);
        Ok(())
    }

    /// The global keys under selector `wanted`: those that match are kept;
    /// the rest are generated. Where an active key of the algorithm exists,
    /// this is a rotation: every new key is pending, and the old ones sign
    /// until `dkimd rotate --step` promotes the new ones (never is the
    /// record of a key that has signed overwritten). Keys of algorithms no
    /// longer used are retired. Each is reported as a step; the flag says
    /// whether the new keys are pending.
    fn global_key_changes(
        &mut self,
        st: &crate::store::State,
        settings: &crate::model::settings::Settings,
        wanted: &str,
        new_key: bool,
    ) -> crate::Result<(Vec<Change>, bool)> {
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        let mut changes: Vec<Change> = Vec::new();
        let mut made: Vec<(SigningKey, String)> = Vec::new();
        let mut rotation = false;
        for alg in &settings.algorithms {
            let sel = selector_for(wanted, *alg);
            let bits = if *alg == KeyAlgorithm::Rsa {
                settings.rsa_bits
            } else {
                256
            };
            let fits = |k: &&StoredKey| {
                k.algorithm == *alg
                    && k.selector == sel
                    && (*alg != KeyAlgorithm::Rsa || k.bits == bits)
            };
            let active: Vec<&StoredKey> = st
                .global_keys()
                .into_iter()
                .filter(|k| k.algorithm == *alg)
                .collect();
            if let Some(k) = active.iter().find(|k| fits(k) && !new_key) {
                self.out.step(
                    "key",
                    &format!("kept {} {} bits, selector {}", alg, k.bits, k.selector),
                    true,
                );
                for other in active.iter().filter(|o| o.id != k.id) {
                    changes.push(Change::KeyState(other.id, KeyState::Retired, now));
                }
                continue;
            }
            // A rotation under way (under this selector, or any with
            // --new-key) is left to finish: never two pending keys.
            if let Some(p) = st.keys.iter().find(|k| {
                k.domain.is_none()
                    && k.state == KeyState::Pending
                    && k.algorithm == *alg
                    && (fits(k) || new_key)
            }) {
                self.out.step(
                    "key",
                    &format!(
                        "{} {} bits, selector {}: pending (a rotation is under way; `dkimd rotate --step` promotes it)",
                        alg, p.bits, p.selector
                    ),
                    true,
                );
                // The settings keep the selector that signs until then.
                rotation = true;
                continue;
            }
            if super::plan::selector_taken(st, None, &sel) {
                return Err(Error::invalid(
                    Field::Selector,
                    format!(
                        "selector {wanted} is in use (a key or a published record under {sel} exists, and a record that has signed mail is never overwritten): choose another, e.g. {wanted}-2"
                    ),
                ));
            }
            rotation |= !active.is_empty();
            made.push((generate(*alg, bits)?, sel));
        }
        let state = if rotation {
            KeyState::Pending
        } else {
            KeyState::Active
        };
        for (key, sel) in made {
            if state == KeyState::Active {
                for old in st
                    .global_keys()
                    .into_iter()
                    .filter(|k| k.algorithm == key.algorithm())
                {
                    changes.push(Change::KeyState(old.id, KeyState::Retired, now));
                }
            }
            self.out.step(
                "key",
                &format!(
                    "generated {} {} bits, selector {} (in {}){}",
                    key.algorithm(),
                    key.bits(),
                    sel,
                    self.store.location(),
                    if rotation {
                        ": pending; the current key signs until every authoritative server serves the new record (`dkimd rotate --step` promotes it)"
                    } else {
                        ""
                    }
                ),
                true,
            );
            changes.push(Change::AddKey(NewKey::from_key(
                None, &key, sel, state, now,
            )?));
        }
        for k in st.global_keys() {
            if !settings.algorithms.contains(&k.algorithm) {
                changes.push(Change::KeyState(k.id, KeyState::Retired, now));
                self.out.step(
                    "key",
                    &format!(
                        "retired {} key, selector {} (algorithm no longer used; its record stays for retire-after, {})",
                        k.algorithm, k.selector, settings.retire_after
                    ),
                    true,
                );
            }
        }
        // A rotation of an algorithm no longer used never signs: its
        // pending keys are deleted (they have signed nothing).
        for k in st.keys.iter().filter(|k| {
            k.domain.is_none()
                && k.state == KeyState::Pending
                && !settings.algorithms.contains(&k.algorithm)
        }) {
            changes.push(Change::KeyState(k.id, KeyState::Deleted, now));
            self.out.step(
                "key",
                &format!(
                    "deleted the pending {} key, selector {} (algorithm no longer used)",
                    k.algorithm, k.selector
                ),
                true,
            );
        }
        Ok((changes, rotation))
    }
}
