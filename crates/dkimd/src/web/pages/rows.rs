//! A domain and its keys as the pages show them, with what a key's DNS
//! state means.

use dkimd_core::dns::DnsState;
use dkimd_core::manager::DomainStatus;

#[derive(Clone, Debug)]
pub struct KeyRow {
    pub(super) selector: String,
    pub(super) alg: String,
    pub(super) own: bool,
    pub(super) record_name: String,
    pub(super) record: String,
    pub(super) dns: String,
    pub(super) dns_ok: bool,
    /// What the DNS state means and what to do, in words.
    pub(super) dns_help: String,
    /// Where it is in its life (pending, active, retired, revoked).
    pub(super) state: String,
    /// Its place on the timeline: since when, and the next step with its date.
    pub(super) timeline: String,
    /// What is wrong, if anything.
    pub(super) alarm: String,
}

/// What a key's DNS state means, and what the admin does about it.
pub(super) fn dns_help(state: &DnsState, record_name: &str) -> String {
    match state {
        DnsState::Ok | DnsState::NotChecked => String::new(),
        DnsState::Missing => format!("DNS serves no record at {record_name}: press Publish (for a zone dkimd writes), or publish the record shown in the domain's zone."),
        DnsState::Mismatch => {
            "DNS serves another key here: press Publish to replace it with the record shown.".into()
        }
        DnsState::Multiple(_) | DnsState::MultipleNoneMatches(_) => {
            "DNS serves several records at this name: receivers may pick any. Press Publish (it leaves only the one shown), or remove the others by hand.".into()
        }
        DnsState::WrongForm => {
            "Publish the record shown instead (press Publish for a zone dkimd writes).".into()
        }
        DnsState::LookupFailed(why) if why.contains("Refused") => {
            "The name server asked refused to answer for this name: it does not serve this domain's zone. Check [dns] nameservers, and that the zone is published where the world looks for it.".into()
        }
        DnsState::LookupFailed(_) => {
            "The check could not ask DNS: see that [dns] nameservers points at a server that answers, then reload this page.".into()
        }
        DnsState::CnameMissing { .. } | DnsState::CnameElsewhere { .. } => {
            "This domain publishes by delegation: its owner must publish the CNAME shown in the domain's zone (once; dkimd rotates behind it).".into()
        }
        DnsState::TargetWrong { .. } => {
            "The customer's CNAME is right; the record at its target is dkimd's to publish: press Publish.".into()
        }
        _ => String::new(),
    }
}

/// A key's place on its timeline, in words: made when, in its state since
/// when, and what comes next and when.
fn timeline(k: &dkimd_core::manager::KeyStatus) -> String {
    let day = |t: i64| {
        let s = dkimd_core::clock::utc_timestamp(u64::try_from(t).unwrap_or(0));
        s.get(..16).unwrap_or(&s).replace('T', " ")
    };
    let mut s = format!(
        "{} since {}, made {} days ago",
        k.state,
        day(k.since),
        k.age / 86_400
    );
    if let Some((what, at)) = &k.next {
        s.push_str(&format!("; next: {what}"));
        if let Some(t) = at {
            s.push_str(&format!(" on {}", day(*t)));
        }
    }
    s
}

#[derive(Clone, Debug)]
pub struct DomainRow {
    pub(super) name: String,
    pub(super) known: bool,
    pub(super) signs: bool,
    pub(super) why: String,
    pub(super) dkim: String,
    pub(super) features: String,
    pub(super) dns_on: bool,
    pub(super) mail_on: bool,
    /// Where its records are published.
    pub(super) backend: String,
    pub(super) keys: Vec<KeyRow>,
}

impl DomainRow {
    pub(super) fn from_status(d: DomainStatus) -> DomainRow {
        let (known, dkim, features) = match d.known {
            Some((dns, mail, ovr)) => (
                true,
                ovr.as_str().to_string(),
                format!(
                    "DNS {}, email {}",
                    if dns { "on" } else { "off" },
                    if mail { "on" } else { "off" }
                ),
            ),
            None => (false, String::new(), "extra domain".to_string()),
        };
        DomainRow {
            name: d.domain,
            known,
            signs: d.signs,
            why: d.why,
            dkim,
            features,
            dns_on: d.known.is_some_and(|(dns, _, _)| dns),
            mail_on: d.known.is_some_and(|(_, mail, _)| mail),
            backend: d.backend,
            keys: d
                .keys
                .into_iter()
                .map(|k| KeyRow {
                    state: k.state.as_str().into(),
                    timeline: timeline(&k),
                    alarm: k.alarm.clone().unwrap_or_default(),
                    dns_ok: k.dns.is_ok(),
                    dns_help: dns_help(&k.dns, &k.record_name),
                    selector: k.selector,
                    alg: format!("{}-{}", k.algorithm.as_str(), k.bits),
                    own: k.own_key,
                    record: k.zone_line,
                    record_name: k.record_name,
                    dns: k.dns.to_string(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_states_are_explained() {
        let n = "s._domainkey.example.com";
        assert_eq!(dns_help(&DnsState::Ok, n), "");
        assert!(dns_help(&DnsState::Missing, n)
            .contains("DNS serves no record at s._domainkey.example.com: press Publish"));
        assert!(dns_help(&DnsState::Mismatch, n).contains("another key"));
        assert!(dns_help(&DnsState::Multiple(2), n).contains("several records"));
        assert!(
            dns_help(&DnsState::LookupFailed("request timed out".into()), n)
                .contains("[dns] nameservers")
        );
        assert!(dns_help(&DnsState::LookupFailed("Query Refused".into()), n)
            .contains("does not serve this domain"));
        let missing = DnsState::CnameMissing {
            name: n.into(),
            target: "s.example.com.dkim.example.net".into(),
        };
        assert!(dns_help(&missing, n).contains("must publish the CNAME shown"));
        assert!(missing
            .to_string()
            .contains("publish s._domainkey.example.com. CNAME s.example.com.dkim.example.net."));
    }
}
