//! Domains: add, change, remove, rename; each brings its records in line.

use super::plan::possible_names;
use super::{onoff, Manager};
use crate::error::{err, Error, Field};
use crate::model::names::domain_name;
use crate::model::settings::{decide, Override};
use crate::store::{Change, Domain};

impl Manager {
    /// Adds a domain and publishes its records when it signs.
    pub fn domain_add(
        &mut self,
        name: &str,
        dns: bool,
        mail: bool,
        dkim: Override,
    ) -> crate::Result<()> {
        let name = domain_name(name, Field::Domain)?;
        let st = self.load()?;
        if st.domain(&name).is_some() {
            return Err(Error::invalid(
                Field::Domain,
                format!("domain {name} already exists (change it with `dkimd domain set`)"),
            ));
        }
        let d = Domain {
            name: name.clone(),
            dns,
            mail,
            dkim,
            delegate: None,
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

    /// Changes a domain's features or override.
    pub fn domain_set(
        &mut self,
        name: &str,
        dns: Option<bool>,
        mail: Option<bool>,
        dkim: Option<Override>,
    ) -> crate::Result<()> {
        let name = domain_name(name, Field::Domain)?;
        let st = self.load()?;
        let mut d = st.domain(&name).cloned().ok_or_else(|| {
            Error::NotFound(format!(
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

    /// Removes a domain, its own keys and its records.
    pub fn domain_remove(&mut self, name: &str) -> crate::Result<()> {
        let name = domain_name(name, Field::Domain)?;
        let st = self.load()?;
        if st.domain(&name).is_none() {
            return Err(Error::NotFound(format!("no domain {name}")));
        }
        if st.settings.signing {
            let names = possible_names(&st, &name);
            self.unpublish(&name, &names)?;
        }
        self.store.apply(&[Change::RemoveDomain(name.clone())])?;
        self.out.step(&name, "removed, with its own keys", true);
        Ok(())
    }

    /// Renames a domain: the old name's records go, the new one's come.
    pub fn domain_rename(&mut self, from: &str, to: &str) -> crate::Result<()> {
        let from = domain_name(from, Field::Domain)?;
        let to = domain_name(to, Field::NewName)?;
        let st = self.load()?;
        if st.domain(&from).is_none() {
            return Err(Error::NotFound(format!("no domain {from}")));
        }
        if st.domain(&to).is_some() {
            return Err(Error::invalid(
                Field::NewName,
                format!("domain {to} already exists"),
            ));
        }
        if let Some(zone) = st.delegate_of(&from) {
            return Err(Error::invalid(
                Field::Domain,
                format!(
                    "{from} publishes by delegation (CNAMEs to {zone}) and its customer's CNAMEs name it: add {to} as a domain of its own and delegate it (its customer publishes its CNAMEs), then remove {from} once mail no longer comes from it"
                ),
            ));
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
            .ok_or_else(|| err!("renamed domain vanished"))?;
        let decision = decide(&st.settings, &to, Some((d.dns, d.mail, d.dkim)));
        self.sync_domain(&to, decision.signs)
    }
}
