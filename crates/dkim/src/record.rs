//! DKIM key records (RFC 6376 §3.6.1), as published in DNS TXT records.

use crate::crypto::{KeyAlgorithm, SigningKey};
use crate::error::ParseError;
use crate::tag::parse_tag_list;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fmt;

/// `k=` of a key record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// A key type this implementation knows.
    Known(KeyAlgorithm),
    /// Any other value; a signature using such a key cannot be verified.
    Unknown(String),
}

/// `s=` of a key record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceType {
    /// `*`: all services.
    All,
    /// `email`.
    Email,
    /// Something else; ignored.
    Other(String),
}

/// A parsed key record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRecord {
    /// `h=`: acceptable hash algorithms; `None` means all.
    pub hash_algorithms: Option<Vec<String>>,
    /// `k=` (default `rsa`).
    pub key_type: KeyType,
    /// `n=` notes.
    pub notes: Option<String>,
    /// `p=`, decoded; empty means the key has been revoked.
    pub public_key: Vec<u8>,
    /// `s=` (default `*`).
    pub services: Vec<ServiceType>,
    /// `t=y`: the domain is testing DKIM.
    pub testing: bool,
    /// `t=s`: the `i=` domain must equal `d=` exactly.
    pub strict: bool,
}

impl KeyRecord {
    /// Parses the text of a TXT record (character-strings already joined).
    ///
    /// ```
    /// let r = dkim::KeyRecord::parse("v=DKIM1; k=ed25519; t=s:y; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=").unwrap();
    /// assert_eq!(r.public_key.len(), 32);
    /// assert!(r.strict && r.testing);
    /// assert!(dkim::KeyRecord::parse("k=rsa; v=DKIM1; p=").is_err()); // v= must come first
    /// assert!(dkim::KeyRecord::parse("v=DKIM1; p=").unwrap().is_revoked());
    /// ```
    pub fn parse(text: &str) -> Result<KeyRecord, ParseError> {
        let tags = parse_tag_list(text.as_bytes())?;
        if let Some(pos) = tags.iter().position(|t| t.name == "v") {
            let v = tags.get(pos).map(|t| t.value.as_str()).unwrap_or("");
            if pos != 0 {
                return Err(ParseError::InvalidTag {
                    tag: "v".into(),
                    reason: "v= must be the first tag of a key record".into(),
                });
            }
            if v != "DKIM1" {
                return Err(ParseError::InvalidTag {
                    tag: "v".into(),
                    reason: format!("version {v:?} is not DKIM1"),
                });
            }
        }
        let get = |n: &str| tags.iter().find(|t| t.name == n);
        let list = |v: String| -> Vec<String> {
            v.split(':')
                .filter(|s| !s.is_empty())
                .map(|s| s.to_ascii_lowercase())
                .collect()
        };
        let p = get("p").ok_or(ParseError::MissingTag("p"))?;
        let public_key = B64
            .decode(p.value_no_ws())
            .map_err(|e| ParseError::InvalidTag {
                tag: "p".into(),
                reason: format!("bad base64: {e}"),
            })?;
        let key_type = match get("k") {
            None => KeyType::Known(KeyAlgorithm::Rsa),
            Some(t) => match t.value.parse::<KeyAlgorithm>() {
                Ok(k) => KeyType::Known(k),
                Err(_) => KeyType::Unknown(t.value.clone()),
            },
        };
        let services = match get("s") {
            None => vec![ServiceType::All],
            Some(t) => list(t.value_no_ws())
                .into_iter()
                .map(|s| match s.as_str() {
                    "*" => ServiceType::All,
                    "email" => ServiceType::Email,
                    _ => ServiceType::Other(s),
                })
                .collect(),
        };
        let flags = get("t").map(|t| list(t.value_no_ws())).unwrap_or_default();
        Ok(KeyRecord {
            hash_algorithms: get("h").map(|t| list(t.value_no_ws())),
            key_type,
            notes: get("n").map(|t| t.value.clone()),
            public_key,
            services,
            testing: flags.iter().any(|f| f == "y"),
            strict: flags.iter().any(|f| f == "s"),
        })
    }

    /// The record for a signing key: `v=DKIM1; k=…; p=…`.
    pub fn for_key(key: &SigningKey) -> KeyRecord {
        KeyRecord {
            hash_algorithms: None,
            key_type: KeyType::Known(key.algorithm()),
            notes: None,
            public_key: key.public_key_bytes(),
            services: vec![ServiceType::All],
            testing: false,
            strict: false,
        }
    }

    /// True when `p=` is empty (the key has been revoked).
    pub fn is_revoked(&self) -> bool {
        self.public_key.is_empty()
    }

    /// True when the record allows use for email (`s=` is `*` or has `email`).
    pub fn allows_email(&self) -> bool {
        self.services
            .iter()
            .any(|s| matches!(s, ServiceType::All | ServiceType::Email))
    }

    /// The record as one zone-file line at `name` (absolute, with its
    /// trailing dot), with `ttl`, its text in strings of at most 255 bytes:
    /// what `named-checkzone` takes as it is.
    ///
    /// ```
    /// let r = dkim::KeyRecord::parse("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=").unwrap();
    /// assert_eq!(
    ///     r.zone_line("s1._domainkey.example.com", 300),
    ///     "s1._domainkey.example.com. 300 IN TXT ( \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\" )"
    /// );
    /// ```
    pub fn zone_line(&self, name: &str, ttl: u32) -> String {
        format!(
            "{}. {ttl} IN TXT ( {} )",
            name.trim_end_matches('.'),
            self.to_zone_rdata()
        )
    }

    /// The record as zone-file TXT data: the text split into quoted strings
    /// of at most 255 bytes, e.g. `"v=DKIM1; k=rsa; p=MIIB…" "…"`.
    pub fn to_zone_rdata(&self) -> String {
        split_txt_strings(&self.to_string())
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for KeyRecord {
    /// The TXT text: `v=DKIM1; k=…; [h=…; ][t=…; ]p=…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=DKIM1;")?;
        match &self.key_type {
            KeyType::Known(k) => write!(f, " k={k};")?,
            KeyType::Unknown(k) => write!(f, " k={k};")?,
        }
        if let Some(h) = &self.hash_algorithms {
            write!(f, " h={};", h.join(":"))?;
        }
        let mut flags = Vec::new();
        if self.testing {
            flags.push("y");
        }
        if self.strict {
            flags.push("s");
        }
        if !flags.is_empty() {
            write!(f, " t={};", flags.join(":"))?;
        }
        write!(f, " p={}", B64.encode(&self.public_key))
    }
}

/// Splits TXT record text into character-strings of at most 255 bytes, as a
/// zone file or an RFC 2136 update needs them. Splits never fall inside a
/// UTF-8 sequence (key records are ASCII anyway).
///
/// ```
/// let long = "x".repeat(600);
/// let parts = dkim::split_txt_strings(&long);
/// assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![255, 255, 90]);
/// assert_eq!(parts.concat(), long);
/// ```
pub fn split_txt_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if cur.len() + c.len_utf8() > 255 {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknowns() {
        let r = KeyRecord::parse("p=AAAA; foo=bar").unwrap();
        assert_eq!(r.key_type, KeyType::Known(KeyAlgorithm::Rsa));
        assert!(r.allows_email());
        assert!(!r.strict);
        let r = KeyRecord::parse("v=DKIM1; k=dsa; s=tls; h=sha1; p=AAAA").unwrap();
        assert_eq!(r.key_type, KeyType::Unknown("dsa".into()));
        assert!(!r.allows_email());
        assert_eq!(r.hash_algorithms, Some(vec!["sha1".to_string()]));
    }

    #[test]
    fn errors() {
        assert_eq!(
            KeyRecord::parse("v=DKIM1; k=rsa").unwrap_err(),
            ParseError::MissingTag("p")
        );
        assert!(KeyRecord::parse("v=DKIM2; p=AAAA").is_err());
        assert!(KeyRecord::parse("v=DKIM1; p=@@@").is_err());
        assert!(KeyRecord::parse("v=spf1 -all").is_err());
    }

    #[test]
    fn format_round_trip() {
        let k = SigningKey::generate_ed25519().unwrap();
        let r = KeyRecord::for_key(&k);
        assert_eq!(r.to_string(), k.dns_record());
        assert_eq!(KeyRecord::parse(&r.to_string()).unwrap(), r);
        assert!(r.to_zone_rdata().starts_with("\"v=DKIM1; k=ed25519; p="));
    }
}
