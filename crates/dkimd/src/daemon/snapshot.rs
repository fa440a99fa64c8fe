//! What a connection works with: settings, a signer per signing domain,
//! trust rules and limits, built from the store and the configuration, and
//! replaced whole on reload.

use super::headers::author_domain_of;
use anyhow::{anyhow, Context};
use dkim::HeaderField;
use dkim::SignerConfig;
use dkimd_core::config::{AuthorHeader, MilterConfig, OnError};
use dkimd_core::model::settings::{matches_pattern, Settings, UnservedKey};
use dkimd_core::store::State;
use milter::Response;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What the MTA told about the client.
#[derive(Clone, Copy, Debug, Default)]
pub struct Who<'a> {
    /// Its address.
    pub addr: Option<IpAddr>,
    /// `{auth_authen}`: the SASL user, when it authenticated.
    pub auth_authen: Option<&'a str>,
    /// `{daemon_name}`: the Postfix service it came in by.
    pub daemon_name: Option<&'a str>,
}

/// What a message gets.
#[derive(Debug)]
pub enum Plan<'a> {
    /// Signed (a subdomain of a `*.` extra with its parent's signer and d=).
    Sign {
        /// The author domain.
        domain: String,
        /// The signer of that domain.
        signer: &'a dkim::Signer,
    },
    /// Verified (an untrusted client, verification on).
    Verify,
    /// Passed on as it is.
    Pass,
}

/// What a connection works with; replaced whole on reload.
pub struct Snapshot {
    /// The global settings the snapshot was built from.
    pub settings: Settings,
    /// A signer per signing domain (lower case), built once per snapshot.
    signers: HashMap<String, dkim::Signer>,
    /// `*.parent` extras: pattern and parent domain.
    wildcard_extras: Vec<(String, String)>,
    trusted: Vec<ipnet::IpNet>,
    signing_daemons: Vec<String>,
    /// The authserv-id of our Authentication-Results fields.
    pub authserv_id: String,
    pub(super) on_error: Response,
    pub(super) max_signatures: usize,
    pub(super) lookup_timeout: Duration,
    use_sender: bool,
    pub(super) max_headers: usize,
    pub(super) max_header_bytes: usize,
    /// Domains in the store (for `run --check-config`).
    stored_domains: usize,
}

fn error_response(e: OnError) -> Response {
    match e {
        OnError::Accept => Response::Continue,
        OnError::Reject => Response::ReplyCode("550 5.7.1 DKIM processing failed".into()),
        OnError::Tempfail => {
            Response::ReplyCode("451 4.7.1 DKIM processing failed, try again later".into())
        }
    }
}

impl Snapshot {
    /// Builds a snapshot from the store's state and the configuration.
    /// With `unserved-key = hold`, keys whose record names are in `held`
    /// (active keys DNS does not serve) do not sign.
    pub fn build(
        st: &State,
        m: &MilterConfig,
        held: &BTreeSet<String>,
    ) -> anyhow::Result<Snapshot> {
        let hold = st.settings.unserved_key == UnservedKey::Hold;
        let mut signers = HashMap::new();
        // Each stored key is parsed once and shared by every domain that
        // signs with it (the global keys sign for thousands).
        let mut parsed: HashMap<i64, dkim::SigningKey> = HashMap::new();
        if st.settings.signing {
            for (domain, d) in dkimd_core::manager::all_decisions(st) {
                if !d.signs {
                    continue;
                }
                let dn: dkim::DomainName = domain.parse().map_err(|e| anyhow!("{e}"))?;
                let mut cfgs = Vec::new();
                for k in st.keys_for(&domain) {
                    if hold && held.contains(&dkim::key_record_name(&k.selector, &domain)) {
                        continue;
                    }
                    let key = match parsed.get(&k.id) {
                        Some(key) => key.clone(),
                        None => {
                            let key = dkim::SigningKey::from_pem(k.pem.as_bytes())
                                .with_context(|| format!("stored key {} for {domain}", k.id))?;
                            parsed.insert(k.id, key.clone());
                            key
                        }
                    };
                    let sel: dkim::Selector = k.selector.parse().map_err(|e| anyhow!("{e}"))?;
                    cfgs.push(SignerConfig::new(dn.clone(), sel, key));
                }
                if !cfgs.is_empty() {
                    signers.insert(domain, dkim::Signer::new(cfgs, 0));
                }
            }
        }
        let wildcard_extras = st
            .settings
            .extra_domains
            .iter()
            .filter_map(|p| {
                p.strip_prefix("*.")
                    .map(|parent| (p.clone(), parent.to_string()))
            })
            .collect();
        let trusted = m
            .trusted_networks
            .iter()
            .filter_map(|n| {
                n.parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| n.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
            })
            .collect();
        Ok(Snapshot {
            settings: st.settings.clone(),
            signers,
            wildcard_extras,
            trusted,
            signing_daemons: m.signing_daemons.clone(),
            authserv_id: m
                .authserv_id
                .clone()
                .unwrap_or_else(dkimd_core::sys::hostname),
            on_error: error_response(m.on_error),
            max_signatures: m.max_signatures,
            lookup_timeout: Duration::from_secs(m.lookup_timeout.max(1)),
            use_sender: m.author_header == AuthorHeader::Sender,
            max_headers: m.max_headers,
            max_header_bytes: m.max_header_bytes,
            stored_domains: st.domains.len(),
        })
    }

    /// Domains in the store.
    pub fn stored_domains(&self) -> usize {
        self.stored_domains
    }

    /// Domains with keys that sign.
    pub fn signing_domains(&self) -> usize {
        self.signers.len()
    }

    /// The signing configurations for mail whose author domain is `domain`.
    pub fn signers_for(&self, domain: &str) -> Option<&dkim::Signer> {
        if let Some(s) = self.signers.get(domain) {
            return Some(s);
        }
        if self
            .settings
            .excluded_domains
            .iter()
            .any(|p| matches_pattern(p, domain))
        {
            return None;
        }
        self.wildcard_extras
            .iter()
            .find(|(p, _)| matches_pattern(p, domain))
            .and_then(|(_, parent)| self.signers.get(parent))
    }

    /// Is this client trusted to have its mail signed? Why, if so.
    pub fn trusted(&self, who: &Who<'_>) -> Option<&'static str> {
        if who.auth_authen.is_some_and(|a| !a.is_empty()) {
            return Some("authenticated");
        }
        if who
            .daemon_name
            .is_some_and(|d| self.signing_daemons.iter().any(|s| s == d))
        {
            return Some("signing service");
        }
        if who
            .addr
            .is_some_and(|a| self.trusted.iter().any(|n| n.contains(&a)))
        {
            return Some("trusted network");
        }
        None
    }

    /// What a message gets, decided at end of header from who sent it
    /// (`trusted`: why it is trusted, if it is) and its header.
    pub fn plan(&self, trusted: Option<&'static str>, headers: &[HeaderField]) -> Plan<'_> {
        if trusted.is_some() {
            if let Some(domain) = author_domain_of(headers, self.use_sender) {
                if let Some(signer) = self.signers_for(&domain) {
                    return Plan::Sign { domain, signer };
                }
            }
            return Plan::Pass;
        }
        if self.settings.verify {
            Plan::Verify
        } else {
            Plan::Pass
        }
    }
}

/// The current snapshot, swapped whole on reload.
pub type Shared = Arc<RwLock<Arc<Snapshot>>>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use dkimd_core::model::settings::Override;
    use dkimd_core::store::{Domain, KeyState, StoredKey};

    fn state(signing: bool, verify: bool) -> State {
        let key = dkim::SigningKey::generate_ed25519().unwrap();
        let mut st = State::default();
        st.settings.signing = signing;
        st.settings.verify = verify;
        st.settings.selector = "s1".into();
        st.settings.excluded_domains = vec!["quiet.example".into()];
        st.settings.extra_domains = vec!["*.lists.example".into()];
        for name in ["example.com", "quiet.example", "lists.example"] {
            st.domains.push(Domain {
                name: name.into(),
                dns: true,
                mail: true,
                dkim: Override::Default,
                delegate: None,
            });
        }
        st.keys.push(StoredKey {
            id: 1,
            domain: None,
            algorithm: dkim::KeyAlgorithm::Ed25519,
            bits: 256,
            selector: "s1-ed25519".into(),
            pem: key.to_pem().unwrap(),
            created: 0,
            state: KeyState::Active,
            since: 0,
            served: None,
            record: key.dns_record(),
        });
        st
    }

    fn from(addr: &str) -> Vec<HeaderField> {
        vec![HeaderField::parse(format!("From: Someone <someone@{addr}>").as_bytes()).unwrap()]
    }

    fn snap(signing: bool, verify: bool) -> Snapshot {
        Snapshot::build(
            &state(signing, verify),
            &MilterConfig::default(),
            &BTreeSet::new(),
        )
        .unwrap()
    }

    fn who(addr: &str, auth: Option<&'static str>, daemon: Option<&'static str>) -> Who<'static> {
        Who {
            addr: Some(addr.parse().unwrap()),
            auth_authen: auth,
            daemon_name: daemon,
        }
    }

    fn signs_for(p: &Plan<'_>) -> Option<String> {
        match p {
            Plan::Sign { domain, .. } => Some(domain.clone()),
            _ => None,
        }
    }

    #[test]
    fn trusted_clients_sign_others_are_verified() {
        let s = snap(true, true);
        let loopback = s.trusted(&who("127.0.0.1", None, None));
        assert_eq!(loopback, Some("trusted network"));
        assert_eq!(
            s.trusted(&who("192.0.2.7", Some("joe"), None)),
            Some("authenticated")
        );
        assert_eq!(
            s.trusted(&who("192.0.2.7", None, Some("ORIGINATING"))),
            Some("signing service")
        );
        assert_eq!(s.trusted(&who("192.0.2.7", Some(""), Some("smtpd"))), None);
        assert_eq!(
            signs_for(&s.plan(loopback, &from("example.com"))).as_deref(),
            Some("example.com")
        );
        assert!(matches!(s.plan(None, &from("example.com")), Plan::Verify));
    }

    #[test]
    fn what_is_not_ours_passes_unsigned() {
        let s = snap(true, true);
        let t = Some("authenticated");
        // A domain dkimd has no key for, an excluded one, no From at all.
        assert!(matches!(s.plan(t, &from("other.org")), Plan::Pass));
        assert!(matches!(s.plan(t, &from("quiet.example")), Plan::Pass));
        assert!(matches!(s.plan(t, &[]), Plan::Pass));
        // A subdomain of a `*.` extra signs, with its parent's signer.
        let sub = s.plan(t, &from("a.lists.example"));
        assert_eq!(signs_for(&sub).as_deref(), Some("a.lists.example"));
        let parent = s.plan(t, &from("lists.example"));
        match (sub, parent) {
            (Plan::Sign { signer: a, .. }, Plan::Sign { signer: b, .. }) => {
                assert!(std::ptr::eq(a, b), "the parent's signer");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signing_off_and_verification_off() {
        let off = snap(false, true);
        assert!(matches!(
            off.plan(Some("trusted network"), &from("example.com")),
            Plan::Pass
        ));
        assert!(matches!(off.plan(None, &from("example.com")), Plan::Verify));
        let no_verify = snap(true, false);
        assert!(matches!(
            no_verify.plan(None, &from("example.com")),
            Plan::Pass
        ));
    }
}
