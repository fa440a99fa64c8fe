//! Checked names: domains, selectors and header field names.

use crate::error::ParseError;
use std::fmt;
use std::str::FromStr;

/// Longest domain name in presentation form without the final dot (RFC 1035).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

fn valid_label(label: &str, allow_underscore: bool) -> bool {
    let bytes = label.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let inner_ok =
        |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || (allow_underscore && *b == b'_');
    let edge_ok = |b: &u8| b.is_ascii_alphanumeric() || (allow_underscore && *b == b'_');
    bytes.len() <= MAX_LABEL_LEN && edge_ok(first) && edge_ok(last) && bytes.iter().all(inner_ok)
}

fn valid_dotted(s: &str, allow_underscore: bool) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.split('.').all(|l| valid_label(l, allow_underscore))
}

/// A domain name as used in `d=` and `i=` (RFC 6376 `domain-name`): dot-separated
/// labels of letters, digits and hyphens. Comparison ignores ASCII case; the
/// spelling given is kept for output.
///
/// ```
/// use dkim::DomainName;
/// assert!("example.com".parse::<DomainName>().is_ok());
/// assert!("mail.EXAMPLE.org".parse::<DomainName>().is_ok());
/// assert!("bad_domain.com".parse::<DomainName>().is_err());
/// assert!("example..com".parse::<DomainName>().is_err());
/// assert!("-lead.example".parse::<DomainName>().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct DomainName(String);

impl DomainName {
    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name in lower case.
    pub fn to_lowercase(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// True when `self` is `parent` or a subdomain of it (case-insensitive).
    ///
    /// ```
    /// use dkim::DomainName;
    /// let d: DomainName = "example.com".parse().unwrap();
    /// let s: DomainName = "mail.Example.com".parse().unwrap();
    /// let o: DomainName = "badexample.com".parse().unwrap();
    /// assert!(s.is_subdomain_of(&d));
    /// assert!(d.is_subdomain_of(&d));
    /// assert!(!o.is_subdomain_of(&d));
    /// ```
    pub fn is_subdomain_of(&self, parent: &DomainName) -> bool {
        let me = self.0.to_ascii_lowercase();
        let p = parent.0.to_ascii_lowercase();
        me == p || me.strip_suffix(&p).is_some_and(|rest| rest.ends_with('.'))
    }
}

impl FromStr for DomainName {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        if valid_dotted(trimmed, false) {
            Ok(DomainName(trimmed.to_string()))
        } else {
            Err(ParseError::Domain(s.to_string()))
        }
    }
}

impl PartialEq for DomainName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for DomainName {}

impl std::hash::Hash for DomainName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_ascii_lowercase().hash(state);
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A selector (`s=`, RFC 6376 §3.1): one or more dot-separated labels. Letters,
/// digits, hyphens and (for compatibility with selectors seen in the wild)
/// underscores.
///
/// ```
/// use dkim::Selector;
/// assert!("202611".parse::<Selector>().is_ok());
/// assert!("mail.2026".parse::<Selector>().is_ok());
/// assert!("brisbane".parse::<Selector>().is_ok());
/// assert!("".parse::<Selector>().is_err());
/// assert!("with space".parse::<Selector>().is_err());
/// assert!("a;b".parse::<Selector>().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Selector(String);

impl Selector {
    /// The selector as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Selector {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if valid_dotted(s, true) {
            Ok(Selector(s.to_string()))
        } else {
            Err(ParseError::Selector(s.to_string()))
        }
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for Selector {}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A header field name (RFC 5322 `field-name`: printable US-ASCII except the
/// colon). Comparison ignores ASCII case.
///
/// ```
/// use dkim::FieldName;
/// assert!("From".parse::<FieldName>().is_ok());
/// assert!("X-Custom-Header".parse::<FieldName>().is_ok());
/// assert!("Bad:Name".parse::<FieldName>().is_err());
/// assert!("Bad Name".parse::<FieldName>().is_err());
/// assert!("".parse::<FieldName>().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct FieldName(String);

impl FieldName {
    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when this names the field `name` (case-insensitive).
    pub fn matches(&self, name: &[u8]) -> bool {
        self.0.as_bytes().eq_ignore_ascii_case(name)
    }
}

/// True for the bytes allowed in a field name (RFC 5322 `ftext`).
pub(crate) fn is_ftext(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

impl FromStr for FieldName {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if !s.is_empty() && s.len() <= 998 && s.bytes().all(is_ftext) {
            Ok(FieldName(s.to_string()))
        } else {
            Err(ParseError::FieldName(s.to_string()))
        }
    }
}

impl PartialEq for FieldName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for FieldName {}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The DNS name of a key record (RFC 6376 §3.6.2.1):
/// `selector._domainkey.domain`, without a final dot, as given (DNS names
/// compare without regard to case; lower-case them to use one as a key).
///
/// ```
/// assert_eq!(dkim::key_record_name("s1", "example.com"), "s1._domainkey.example.com");
/// ```
pub fn key_record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}")
}
