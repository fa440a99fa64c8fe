//! Names with a grammar: domains as stored, selectors per algorithm, and the
//! DNS name of a key record.

use crate::error::{Error, Field, Result};
use dkim::KeyAlgorithm;

/// A domain name as the store keeps it (checked, lower case), or a
/// validation error about `field`.
pub fn domain_name(s: &str, field: Field) -> Result<String> {
    s.parse::<dkim::DomainName>()
        .map(|d| d.to_lowercase())
        .map_err(|e| {
            Error::invalid(
                field,
                format!("{:?} is not a domain name ({e})", super::cut(s, 300)),
            )
        })
}

/// The message of a selector that does not fit RFC 6376's grammar.
pub fn selector_error(selector: &str) -> String {
    format!(
        "{:?} is not a valid selector: use letters, digits, hyphens and underscores, in labels separated by dots (e.g. 202612)",
        super::cut(selector, 300)
    )
}

/// A selector checked against RFC 6376's grammar, or a validation error.
pub fn selector(s: &str) -> Result<String> {
    s.parse::<dkim::Selector>()
        .map(|s| s.as_str().to_string())
        .map_err(|_| Error::invalid(Field::Selector, selector_error(s)))
}

/// The selector of a key of `alg` under the base selector: RSA uses the
/// base, Ed25519 the base with `-ed25519`.
pub fn selector_for(base: &str, alg: KeyAlgorithm) -> String {
    match alg {
        KeyAlgorithm::Rsa => base.to_string(),
        KeyAlgorithm::Ed25519 => format!("{base}-ed25519"),
    }
}

/// The DNS name of a key record: `selector._domainkey.domain` (the domain
/// lower case as the store keeps it, the selector as written), without a
/// final dot.
pub fn record_name(selector: &str, domain: &str) -> String {
    dkim::key_record_name(selector, domain)
}

/// Where a domain's key records are published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publishing {
    /// At the domain: `SELECTOR._domainkey.DOMAIN` (the default).
    Direct,
    /// By delegation: the customer's `s1`/`s2._domainkey.DOMAIN` CNAMEs
    /// point at targets in this zone of dkimd's.
    Cname(String),
}

/// The two selectors a domain that publishes by delegation alternates
/// between; its customer points `s1._domainkey.D` and `s2._domainkey.D`
/// at their targets once.
pub const SLOTS: [&str; 2] = ["s1", "s2"];

/// True when `selector` is one of the delegation [`SLOTS`].
pub fn is_slot(selector: &str) -> bool {
    SLOTS.iter().any(|s| s.eq_ignore_ascii_case(selector))
}

/// The target of a delegated selector: `SELECTOR.DOMAIN.ZONE`, where dkimd
/// publishes the key record the customer's CNAME points at.
pub fn delegated_name(selector: &str, domain: &str, zone: &str) -> String {
    format!("{selector}.{domain}.{}", zone.trim_end_matches('.'))
}

/// The name whose zone publishes `name` for `domain`: the delegation zone
/// when `name` is a delegated target (`SEL.DOMAIN.ZONE`), else the domain.
pub fn publishing_name<'a>(domain: &'a str, name: &'a str) -> &'a str {
    if name.contains("._domainkey.") {
        return domain;
    }
    name.split_once('.')
        .and_then(|(_, rest)| rest.strip_prefix(domain))
        .and_then(|r| r.strip_prefix('.'))
        .filter(|z| !z.is_empty())
        .unwrap_or(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            record_name("S1", "example.com"),
            "S1._domainkey.example.com"
        );
        assert_eq!(
            selector_for("202612", KeyAlgorithm::Ed25519),
            "202612-ed25519"
        );
        assert_eq!(selector_for("202612", KeyAlgorithm::Rsa), "202612");
        assert_eq!(
            domain_name("Example.COM", Field::Domain).unwrap(),
            "example.com"
        );
        assert!(domain_name(" example.com", Field::Domain).is_err());
        let e = domain_name("not a domain", Field::NewName).unwrap_err();
        assert_eq!(e.field().map(|f| f.0), Some(Field::NewName));
        assert!(selector("a b").is_err());
        assert_eq!(selector("s-1").unwrap(), "s-1");
        assert_eq!(
            delegated_name("s2", "shop.example", "dkim.example.net."),
            "s2.shop.example.dkim.example.net"
        );
        assert_eq!(
            publishing_name("shop.example", "s2.shop.example.dkim.example.net"),
            "dkim.example.net"
        );
        assert_eq!(
            publishing_name("shop.example", "s2._domainkey.shop.example"),
            "shop.example"
        );
        assert!(is_slot("S1") && !is_slot("s3"));
    }
}
