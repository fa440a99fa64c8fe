//! Applying an importer's plan: the domains, keys (under exactly their
//! published selectors) and settings in one transaction, then a live
//! check that DNS serves each imported key's record. Nothing is
//! published: the records are already there. A second run changes
//! nothing.

use super::{onoff, Manager};
use crate::dns::live::{check_many, DnsState};
use crate::migrate::Plan;
use crate::model::names::record_name;
use crate::store::{Change, Domain, KeyState, NewKey};

impl Manager {
    /// Shows `plan`; unless `dry_run`, applies it in one transaction and
    /// checks DNS for each of its keys (a record DNS does not serve as it
    /// should is a failed step).
    pub fn migrate(&mut self, plan: &Plan, dry_run: bool) -> crate::Result<()> {
        self.out
            .title(&format!("Moving in from {}", plan.source.as_str()));
        for line in plan.lines() {
            self.out.step("plan", &line, true);
        }
        if dry_run {
            self.out.step("plan", "dry run: nothing was changed", true);
            return Ok(());
        }
        let st = self.load()?;
        let now = self.now_i64();
        let mut changes = Vec::new();
        for d in &plan.domains {
            let want = Domain {
                name: d.name.clone(),
                dns: d.dns,
                mail: d.mail,
                dkim: d.dkim,
                delegate: st.domain(&d.name).and_then(|h| h.delegate.clone()),
            };
            match st.domain(&d.name) {
                Some(have) if *have == want => {
                    self.out.step(&d.name, "already in the store", true);
                }
                Some(_) if !plan.domains_authoritative => {
                    self.out
                        .step(&d.name, "already in the store (its rules are kept)", true);
                }
                have => {
                    self.out.step(
                        &d.name,
                        &format!(
                            "{} (dns {}, mail {}, dkim {})",
                            if have.is_some() { "set" } else { "added" },
                            onoff(d.dns),
                            onoff(d.mail),
                            d.dkim.as_str()
                        ),
                        true,
                    );
                    changes.push(Change::PutDomain(want));
                }
            }
        }
        for k in &plan.keys {
            let public = k.key.public_key_base64();
            let record = k.key.dns_record();
            let subject = k.domain.clone().unwrap_or_else(|| "global key".into());
            // The same key in the store in any state: imported before (the
            // key lifecycle may have moved it on since); never again.
            let before = st.keys.iter().find(|s| {
                s.domain == k.domain
                    && (s.record == record
                        || dkim::SigningKey::from_pem(s.pem.as_bytes())
                            .is_ok_and(|key| key.public_key_base64() == public))
            });
            if let Some(s) = before {
                let what = if s.state == KeyState::Active {
                    format!("key of selector {} already imported", k.selector)
                } else {
                    format!(
                        "key of selector {} already imported, and {} since (the key lifecycle moved it on): not imported again",
                        k.selector,
                        s.state.as_str()
                    )
                };
                self.out.step(&subject, &what, true);
                continue;
            }
            if let Some(zone) = k.domain.as_deref().and_then(|d| st.delegate_of(d)) {
                self.out.step(
                    &subject,
                    &format!(
                        "key of selector {} not imported: the domain publishes by delegation (CNAMEs to {zone}), and its keys come by rotation only",
                        k.selector
                    ),
                    false,
                );
                continue;
            }
            let own = st.keys.iter().filter(|s| {
                s.domain == k.domain && matches!(s.state, KeyState::Active | KeyState::Pending)
            });
            let mut clash = None;
            let mut retire = Vec::new();
            for s in own {
                let stored_public = dkim::SigningKey::from_pem(s.pem.as_bytes())
                    .map(|key| key.public_key_base64())
                    .unwrap_or_default();
                if s.selector.eq_ignore_ascii_case(&k.selector) {
                    if stored_public != public {
                        clash = Some(s.id);
                    }
                } else if s.algorithm == k.key.algorithm() && s.state == KeyState::Active {
                    retire.push(s.id);
                }
            }
            if let Some(id) = clash {
                self.out.step(
                    &subject,
                    &format!(
                        "selector {} already names another key in the store (key {id}): not imported; one record name holds one key",
                        k.selector
                    ),
                    false,
                );
                continue;
            }
            for id in retire {
                changes.push(Change::KeyState(id, KeyState::Retired, now));
                self.out.step(
                    &subject,
                    &format!(
                        "its {} key {id} retires (the imported key replaces it)",
                        k.key.algorithm()
                    ),
                    true,
                );
            }
            changes.push(Change::AddKey(NewKey::from_key(
                k.domain.clone(),
                &k.key,
                k.selector.clone(),
                KeyState::Active,
                now,
            )?));
            self.out.step(
                &subject,
                &format!(
                    "{} key, {} bits, selector {} (as published; nothing re-published)",
                    k.key.algorithm(),
                    k.key.bits(),
                    k.selector
                ),
                true,
            );
        }
        let current = st.settings.to_pairs();
        for s in &plan.settings {
            let now_value = current
                .iter()
                .find(|(n, _)| *n == s.name)
                .map(|(_, v)| v.as_str());
            if now_value == Some(s.value.as_str()) {
                continue;
            }
            // Checked as `dkimd set` would (signing as the store sets it).
            let mut check = st.settings.clone();
            check
                .set(s.name, &s.value, true)
                .map_err(|e| crate::Error::Usage(format!("{}: {e}", s.name)))?;
            changes.push(Change::Setting(s.name, s.value.clone()));
            self.out.step(
                "settings",
                &format!(
                    "{}: {} → {}",
                    s.name,
                    now_value.unwrap_or("(unset)"),
                    s.value
                ),
                true,
            );
        }
        if changes.is_empty() {
            self.out
                .step("store", "nothing to change: already moved in", true);
        } else {
            self.store.apply(&changes)?;
            self.out.step(
                "store",
                &format!("{} change(s) made in one transaction", changes.len()),
                true,
            );
        }
        for c in &plan.config {
            self.out.step(
                "config",
                &format!("in dkimd.toml set [{}] {} = {}", c.section, c.key, c.value),
                true,
            );
        }
        self.check_imported(plan)
    }

    /// The live check: for every domain that signs now, each of its keys
    /// that came from the plan (a global key under every domain it signs
    /// for).
    fn check_imported(&mut self, plan: &Plan) -> crate::Result<()> {
        if plan.keys.is_empty() {
            return Ok(());
        }
        let planned: Vec<String> = plan
            .keys
            .iter()
            .map(|k| k.key.public_key_base64())
            .collect();
        let st = self.load_signing()?;
        let mut checks: Vec<(String, String, String)> = Vec::new();
        if st.settings.signing {
            for (domain, d) in super::all_decisions(&st) {
                if !d.signs {
                    continue;
                }
                for k in st.keys_for(&domain) {
                    let Ok(key) = dkim::SigningKey::from_pem(k.pem.as_bytes()) else {
                        continue;
                    };
                    if planned.contains(&key.public_key_base64()) {
                        checks.push((
                            domain.clone(),
                            record_name(&k.selector, &domain),
                            key.dns_record(),
                        ));
                    }
                }
            }
        }
        if checks.is_empty() {
            self.out.step(
                "dns",
                "no imported key signs now (signing is off, or no domain signs): nothing to check",
                true,
            );
            return Ok(());
        }
        let resolver = crate::publish::live_resolver(&self.cfg)?;
        let queries = checks
            .iter()
            .map(|(_, n, r)| (n.clone(), r.clone()))
            .collect();
        let states = check_many(&resolver, queries)?;
        for ((domain, name, record), state) in checks.iter().zip(states) {
            match state {
                DnsState::Ok => self.out.step(domain, &format!("DNS serves {name}"), true),
                other => self.out.step(
                    domain,
                    &format!(
                        "DNS at {name}: {other}; receivers cannot verify what this key signs until it serves: {record}"
                    ),
                    false,
                ),
            }
        }
        Ok(())
    }
}
