//! Per-domain keys: generate, import (keeping the selector it is published
//! under), go back to the global key.

use super::plan::{plan_own_keys, possible_names, wanted_records};
use super::{generate, Manager};
use crate::error::{Error, Field};
use crate::model::names::domain_name;
use crate::model::settings::decide;
use crate::store::{Change, KeyState, NewKey, StoredKey};
use dkim::SigningKey;

impl Manager {
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
    ) -> crate::Result<()> {
        let st = self.load()?;
        refuse_if_delegated(&st, domain)?;
        let plan = plan_own_keys(
            &st,
            domain,
            &keys,
            selector,
            exact,
            &self.default_selector(),
            i64::try_from(self.clock.now()).unwrap_or(0),
        )?;
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
            changes.push(Change::AddKey(NewKey::from_key(
                Some(domain.to_string()),
                key,
                sel,
                KeyState::Active,
                self.now_i64(),
            )?));
        }
        self.store.apply(&changes)?;
        self.republish(domain, &before)
    }

    /// After a key change: publish the wanted records, remove old names no longer wanted.
    pub(super) fn republish(&mut self, domain: &str, before: &[String]) -> crate::Result<()> {
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
        let wanted: Vec<String> = wanted_records(&st, domain, self.now_i64())
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

    /// Gives a domain its own new keys, one per configured algorithm.
    pub fn key_generate(&mut self, domain: &str, selector: Option<&str>) -> crate::Result<()> {
        let domain = domain_name(domain, Field::Domain)?;
        let st = self.load()?;
        let keys = st
            .settings
            .algorithms
            .iter()
            .map(|a| generate(*a, st.settings.rsa_bits))
            .collect::<crate::Result<Vec<_>>>()?;
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
    ) -> crate::Result<()> {
        let domain = domain_name(domain, Field::Domain)?;
        let key = crate::model::keyfile::load_private_key(file)?;
        self.own_keys(&domain, vec![key], selector, true, dry_run)
    }

    /// Gives a domain its own key from PEM text (the web page's import).
    pub fn key_import_pem(
        &mut self,
        domain: &str,
        pem: &str,
        selector: Option<&str>,
        dry_run: bool,
    ) -> crate::Result<()> {
        let domain = domain_name(domain, Field::Domain)?;
        if pem.trim().is_empty() {
            return Err(Error::invalid(
                Field::Key,
                "paste a PEM private key (-----BEGIN PRIVATE KEY----- …)",
            ));
        }
        let key = SigningKey::from_pem(pem.as_bytes())
            .map_err(|e| Error::invalid(Field::Key, format!("not a usable private key: {e}")))?;
        self.own_keys(&domain, vec![key], selector, true, dry_run)
    }

    /// Retires a domain's own keys: the global key signs for it again.
    pub fn key_default(&mut self, domain: &str) -> crate::Result<()> {
        let domain = domain_name(domain, Field::Domain)?;
        let st = self.load()?;
        refuse_if_delegated(&st, &domain)?;
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
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        let mut changes: Vec<Change> = own
            .iter()
            .map(|k| Change::KeyState(k.id, KeyState::Retired, now))
            .collect();
        // An own rotation under way would make the domain's own key sign
        // again once promoted: its pending keys go (they signed nothing).
        changes.extend(
            st.keys
                .iter()
                .filter(|k| k.domain.as_deref() == Some(&domain) && k.state == KeyState::Pending)
                .map(|k| Change::KeyState(k.id, KeyState::Deleted, now)),
        );
        self.store.apply(&changes)?;
        self.out.step(
            &domain,
            &format!(
                "{} own key(s) retired; the global key signs (the retired keys' records stay for retire-after, {})",
                own.len(),
                st.settings.retire_after
            ),
            true,
        );
        self.republish(&domain, &before)
    }
}

/// Keys of a domain that publishes by delegation come and go by rotation
/// only (between its two selectors).
fn refuse_if_delegated(st: &crate::store::State, domain: &str) -> crate::Result<()> {
    match st.delegate_of(domain) {
        Some(zone) => Err(Error::invalid(
            Field::Domain,
            format!(
                "{domain} publishes by delegation (CNAMEs to {zone}): its keys alternate between selectors s1 and s2 by rotation (`dkimd rotate {domain}`); `dkimd domain set {domain} --publish direct` ends the delegation"
            ),
        )),
        None => Ok(()),
    }
}
