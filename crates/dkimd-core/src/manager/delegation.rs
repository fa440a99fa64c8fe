//! Publishing by delegation: the customer points `s1._domainkey.D` and
//! `s2._domainkey.D` at `s1.D.ZONE` and `s2.D.ZONE` once, and dkimd, which
//! owns ZONE, publishes each key there and alternates rotations between
//! the two selectors.

use super::plan::{possible_names, slot_free};
use super::Manager;
use crate::error::{Error, Field};
use crate::model::names::{delegated_name, domain_name, record_name, Publishing, SLOTS};
use crate::store::{Change, KeyState, NewKey};
use dkim::{KeyAlgorithm, SigningKey};

impl Manager {
    /// Sets where a domain's records are published. Delegating gives the
    /// domain a new key in a free slot, pending: it signs once the
    /// customer's CNAME leads to its record (the lifecycle step checks),
    /// while the keys that sign now go on signing until then.
    pub fn domain_publish(&mut self, name: &str, how: &Publishing) -> crate::Result<()> {
        let name = domain_name(name, Field::Domain)?;
        let st = self.load()?;
        let mut d = st
            .domain(&name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no domain {name}")))?;
        let before = possible_names(&st, &name);
        let mut changes = Vec::new();
        match how {
            Publishing::Direct => {
                let Some(zone) = d.delegate.take() else {
                    self.out
                        .step(&name, "publishes at the domain already", true);
                    return Ok(());
                };
                // Undoing a delegation is safe only while no slot key has
                // signed: mail signed with one is verified through the
                // customer's CNAMEs, at targets in the delegation zone.
                if let Some(k) = st.keys.iter().find(|k| {
                    k.domain.as_deref() == Some(name.as_str())
                        && crate::model::names::is_slot(&k.selector)
                        && matches!(
                            k.state,
                            KeyState::Active | KeyState::Retired | KeyState::Revoked
                        )
                }) {
                    return Err(Error::invalid(
                        Field::Domain,
                        format!(
                            "{name} has signed by delegation (selector {} is {}): ending a delegation is not supported yet, since its mail is verified through the customer's CNAMEs into {zone}; keep the delegation",
                            k.selector, k.state
                        ),
                    ));
                }
                for k in st.keys.iter().filter(|k| {
                    k.domain.as_deref() == Some(name.as_str())
                        && crate::model::names::is_slot(&k.selector)
                        && k.state == KeyState::Pending
                }) {
                    changes.push(Change::DeleteKey(k.id));
                    self.out.step(
                        &name,
                        &format!(
                            "pending key under selector {} dropped (it never signed)",
                            k.selector
                        ),
                        true,
                    );
                }
                changes.push(Change::PutDomain(d));
                self.out.step(
                    &name,
                    &format!(
                        "publishes at the domain again, no longer by delegation to {zone} (its key never signed by delegation)"
                    ),
                    true,
                );
            }
            Publishing::Cname(zone) => {
                let zone = domain_name(zone, Field::DelegateZone)?;
                let zdn: dkim::DomainName = zone
                    .parse()
                    .map_err(|e| Error::invalid(Field::DelegateZone, e))?;
                if self.cfg.zone_for(&zdn).is_none() {
                    return Err(Error::invalid(
                        Field::DelegateZone,
                        format!(
                            "no [[publish.zone]] in the configuration holds {zone}: add one (any backend) so that dkimd can publish the CNAMEs' targets there"
                        ),
                    ));
                }
                if zone == name {
                    return Err(Error::invalid(
                        Field::DelegateZone,
                        format!("{name} cannot delegate to itself: name a zone of dkimd's, e.g. dkim.example.net"),
                    ));
                }
                if d.delegate.as_deref() == Some(zone.as_str()) {
                    self.out.step(
                        &name,
                        &format!("publishes by delegation to {zone} already"),
                        true,
                    );
                    return Ok(());
                }
                if let Some(old) = &d.delegate {
                    return Err(Error::invalid(
                        Field::DelegateZone,
                        format!(
                            "{name} publishes by delegation to {old}, where its customer's CNAMEs point: moving a delegation to another zone is not supported yet"
                        ),
                    ));
                }
                // The global keys must not use the slots' selectors: mail
                // they sign would be checked against the slots' records.
                if let Some(g) = st.keys.iter().find(|k| {
                    k.domain.is_none()
                        && k.state.has_record()
                        && crate::model::names::is_slot(&k.selector)
                }) {
                    return Err(Error::invalid(
                        Field::Domain,
                        format!(
                            "the global key uses selector {} ({}), one of the two a delegation needs: rotate the global keys to another selector first (`dkimd rotate --all --selector 202612`), and delegate once that key is gone",
                            g.selector, g.state
                        ),
                    ));
                }
                let was_delegated = d.delegate.is_some();
                // A key of the domain's own under s1 or s2 published at the
                // domain would move to the delegation zone: refuse.
                if !was_delegated {
                    if let Some(k) = st.keys.iter().find(|k| {
                        k.domain.as_deref() == Some(name.as_str())
                            && k.state.has_record()
                            && crate::model::names::is_slot(&k.selector)
                    }) {
                        return Err(Error::invalid(
                            Field::Domain,
                            format!(
                                "{name} has a key of its own under selector {} ({}), published at the domain; delegation uses selectors s1 and s2: wait until that key is deleted, or remove it",
                                k.selector, k.state
                            ),
                        ));
                    }
                }
                // Rotations of its own keys under way from before would
                // compete with the slot key: they never signed, drop them.
                for k in st.keys.iter().filter(|k| {
                    k.domain.as_deref() == Some(name.as_str()) && k.state == KeyState::Pending
                }) {
                    changes.push(Change::DeleteKey(k.id));
                    self.out.step(
                        &name,
                        &format!(
                            "pending {} key under selector {} dropped (a delegated domain rotates between s1 and s2)",
                            k.algorithm, k.selector
                        ),
                        true,
                    );
                }
                d.delegate = Some(zone.clone());
                let mut next = st.clone();
                next.keys.retain(|k| {
                    !(k.domain.as_deref() == Some(name.as_str()) && k.state == KeyState::Pending)
                });
                if let Some(nd) = next.domains.iter_mut().find(|x| x.name == name) {
                    nd.delegate = Some(zone.clone());
                }
                changes.push(Change::PutDomain(d));
                self.out.step(
                    &name,
                    &format!(
                        "publishes by delegation to {zone}: the customer publishes, once, in the zone of {name}: {} and {}",
                        cname_line(&name, SLOTS[0], &zone),
                        cname_line(&name, SLOTS[1], &zone)
                    ),
                    true,
                );
                let has_slot_key = next.keys.iter().any(|k| {
                    k.domain.as_deref() == Some(name.as_str())
                        && matches!(k.state, KeyState::Pending | KeyState::Active)
                        && crate::model::names::is_slot(&k.selector)
                });
                if !has_slot_key {
                    let Some(slot) = SLOTS.iter().find(|s| slot_free(&next, &name, s)) else {
                        return Err(Error::invalid(
                            Field::Domain,
                            format!("{name}: selectors s1 and s2 are both in use"),
                        ));
                    };
                    let key = SigningKey::generate_rsa(next.settings.rsa_bits)?;
                    changes.push(Change::AddKey(NewKey::from_key(
                        Some(name.clone()),
                        &key,
                        (*slot).to_string(),
                        KeyState::Pending,
                        self.now_i64(),
                    )?));
                    self.out.step(
                        &name,
                        &format!(
                            "new {} key, {} bits, selector {slot}: pending; it signs once {} leads to its record and propagation-wait has passed (`dkimd rotate --step`; the running daemon steps every {} s); until then the keys that sign now go on",
                            KeyAlgorithm::Rsa,
                            key.bits(),
                            record_name(slot, &name),
                            self.cfg.milter.key_step_interval
                        ),
                        true,
                    );
                }
            }
        }
        self.store.apply(&changes)?;
        self.republish(&name, &before)
    }
}

impl Manager {
    /// Gives each delegated domain that has no slot key pending or active
    /// (after `disable --purge-keys`, say) a new one, pending: it signs
    /// once the customer's CNAME leads to its record.
    pub(super) fn ensure_slot_keys(&mut self) -> crate::Result<()> {
        let st = self.load()?;
        let mut changes = Vec::new();
        for d in st.domains.iter().filter(|d| d.delegate.is_some()) {
            let has = st.keys.iter().any(|k| {
                k.domain.as_deref() == Some(d.name.as_str())
                    && matches!(k.state, KeyState::Pending | KeyState::Active)
                    && crate::model::names::is_slot(&k.selector)
            });
            if has {
                continue;
            }
            let Some(slot) = SLOTS.iter().find(|s| slot_free(&st, &d.name, s)) else {
                continue;
            };
            let key = SigningKey::generate_rsa(st.settings.rsa_bits)?;
            changes.push(Change::AddKey(NewKey::from_key(
                Some(d.name.clone()),
                &key,
                (*slot).to_string(),
                KeyState::Pending,
                self.now_i64(),
            )?));
            self.out.step(
                &d.name,
                &format!(
                    "publishes by delegation: new rsa key, selector {slot}: pending until {} leads to its record",
                    record_name(slot, &d.name)
                ),
                true,
            );
        }
        self.store.apply(&changes)
    }
}

/// The CNAME line the customer publishes for one slot.
pub(super) fn cname_line(domain: &str, slot: &str, zone: &str) -> String {
    format!(
        "{}. CNAME {}.",
        record_name(slot, domain),
        delegated_name(slot, domain, zone)
    )
}
