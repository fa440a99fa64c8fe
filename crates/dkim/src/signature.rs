//! The DKIM-Signature header field (RFC 6376 §3.5): parsing and formatting.

use crate::canon::CanonicalizationPair;
use crate::crypto::KeyAlgorithm;
use crate::error::ParseError;
use crate::name::{DomainName, FieldName, Selector};
use crate::tag::{parse_tag_list, Tag};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fmt;
use std::str::FromStr;

/// A signing algorithm (`a=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `rsa-sha256` (RFC 6376).
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519Sha256,
    /// `rsa-sha1`: recognised so that it can be reported; RFC 8301 forbids
    /// treating it as valid.
    RsaSha1,
}

impl Algorithm {
    /// The name used in `a=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
            Algorithm::RsaSha1 => "rsa-sha1",
        }
    }

    /// The key type the algorithm needs.
    pub fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            Algorithm::RsaSha256 | Algorithm::RsaSha1 => KeyAlgorithm::Rsa,
            Algorithm::Ed25519Sha256 => KeyAlgorithm::Ed25519,
        }
    }

    /// The signing algorithm for a key type.
    pub fn for_key(k: KeyAlgorithm) -> Algorithm {
        match k {
            KeyAlgorithm::Rsa => Algorithm::RsaSha256,
            KeyAlgorithm::Ed25519 => Algorithm::Ed25519Sha256,
        }
    }

    /// The hash algorithm name as in a key record's `h=` (`sha256`, `sha1`).
    pub fn hash_name(self) -> &'static str {
        match self {
            Algorithm::RsaSha1 => "sha1",
            _ => "sha256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa-sha256" => Ok(Algorithm::RsaSha256),
            "ed25519-sha256" => Ok(Algorithm::Ed25519Sha256),
            "rsa-sha1" => Ok(Algorithm::RsaSha1),
            _ => Err(ParseError::InvalidTag {
                tag: "a".into(),
                reason: format!("unknown algorithm {s:?}"),
            }),
        }
    }
}

/// A parsed DKIM-Signature.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DkimSignature {
    /// `a=`
    pub algorithm: Algorithm,
    /// `b=`, decoded.
    pub signature: Vec<u8>,
    /// `bh=`, decoded.
    pub body_hash: Vec<u8>,
    /// `c=` (default `simple/simple`).
    pub canonicalization: CanonicalizationPair,
    /// `d=`
    pub domain: DomainName,
    /// `h=`, in order, repetitions kept.
    pub headers: Vec<FieldName>,
    /// `i=` as written (`[local-part]@domain`); `None` when absent.
    pub identity: Option<String>,
    /// The domain part of `i=`, or `d=` when `i=` is absent.
    pub identity_domain: DomainName,
    /// `l=`: the number of body bytes (after canonicalization) signed.
    pub body_length: Option<u64>,
    /// `q=` as written.
    pub query_methods: Option<String>,
    /// `s=`
    pub selector: Selector,
    /// `t=`
    pub timestamp: Option<u64>,
    /// `x=`
    pub expiration: Option<u64>,
    /// `z=` as written.
    pub copied_headers: Option<String>,
    /// Tags this implementation does not know, kept in order (RFC 6376 says
    /// they are to be ignored by verifiers).
    pub unknown: Vec<(String, String)>,
}

fn invalid(tag: &str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidTag {
        tag: tag.into(),
        reason: reason.into(),
    }
}

fn decimal(tag: &str, v: &str, max_digits: usize) -> Result<u64, ParseError> {
    if v.is_empty() || v.len() > max_digits || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            tag,
            format!("{v:?} is not a number of at most {max_digits} digits"),
        ));
    }
    v.parse()
        .map_err(|_| invalid(tag, format!("{v} is too large")))
}

fn base64(tag: &str, v: &str) -> Result<Vec<u8>, ParseError> {
    B64.decode(v)
        .map_err(|e| invalid(tag, format!("bad base64: {e}")))
}

impl DkimSignature {
    /// Parses the value of a DKIM-Signature field (everything after the colon).
    pub fn parse(value: &[u8]) -> Result<DkimSignature, ParseError> {
        Self::parse_with_tags(value).map(|(s, _)| s)
    }

    /// Like [`DkimSignature::parse`], also returning the tag list (a verifier
    /// needs the position of `b=` in the raw field).
    pub fn parse_with_tags(value: &[u8]) -> Result<(DkimSignature, Vec<Tag>), ParseError> {
        let tags = parse_tag_list(value)?;
        let get = |n: &str| tags.iter().find(|t| t.name == n);
        let need = |n: &'static str| get(n).ok_or(ParseError::MissingTag(n));

        let v = need("v")?;
        if v.value != "1" {
            return Err(invalid("v", format!("version {:?} is not 1", v.value)));
        }
        let algorithm: Algorithm = need("a")?.value.parse()?;
        let signature = base64("b", &need("b")?.value_no_ws())?;
        let body_hash = base64("bh", &need("bh")?.value_no_ws())?;
        let canonicalization = match get("c") {
            Some(t) => t.value.parse()?,
            None => "simple/simple".parse()?,
        };
        let domain: DomainName = need("d")?.value.parse().map_err(|_| {
            invalid(
                "d",
                format!(
                    "{:?} is not a domain name",
                    need("d").map(|t| t.value.as_str()).unwrap_or("")
                ),
            )
        })?;
        let h = need("h")?.value_no_ws();
        let headers = h
            .split(':')
            .map(|n| {
                n.parse::<FieldName>()
                    .map_err(|_| invalid("h", format!("{n:?} is not a header field name")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let selector: Selector = need("s")?
            .value_no_ws()
            .parse()
            .map_err(|e: ParseError| invalid("s", e.to_string()))?;
        let (identity, identity_domain) = match get("i") {
            Some(t) => {
                let (_, dom) = t
                    .value
                    .rsplit_once('@')
                    .ok_or_else(|| invalid("i", format!("{:?} has no @", t.value)))?;
                let dom: DomainName = dom
                    .parse()
                    .map_err(|_| invalid("i", format!("{dom:?} is not a domain name")))?;
                (Some(t.value.clone()), dom)
            }
            None => (None, domain.clone()),
        };
        let body_length = get("l").map(|t| decimal("l", &t.value, 76)).transpose()?;
        let timestamp = get("t").map(|t| decimal("t", &t.value, 12)).transpose()?;
        let expiration = get("x").map(|t| decimal("x", &t.value, 12)).transpose()?;
        let query_methods = get("q").map(|t| t.value.clone());
        let copied_headers = get("z").map(|t| t.value.clone());
        const KNOWN: [&str; 14] = [
            "v", "a", "b", "bh", "c", "d", "h", "i", "l", "q", "s", "t", "x", "z",
        ];
        let unknown = tags
            .iter()
            .filter(|t| !KNOWN.contains(&t.name.as_str()))
            .map(|t| (t.name.clone(), t.value.clone()))
            .collect();
        let sig = DkimSignature {
            algorithm,
            signature,
            body_hash,
            canonicalization,
            domain,
            headers,
            identity,
            identity_domain,
            body_length,
            query_methods,
            selector,
            timestamp,
            expiration,
            copied_headers,
            unknown,
        };
        Ok((sig, tags))
    }

    /// A new signature with the given parameters and empty `b=` and `bh=`.
    pub fn new(
        algorithm: Algorithm,
        domain: DomainName,
        selector: Selector,
        canonicalization: CanonicalizationPair,
        headers: Vec<FieldName>,
    ) -> DkimSignature {
        DkimSignature {
            algorithm,
            signature: Vec::new(),
            body_hash: Vec::new(),
            canonicalization,
            identity_domain: domain.clone(),
            domain,
            headers,
            identity: None,
            body_length: None,
            query_methods: None,
            selector,
            timestamp: None,
            expiration: None,
            copied_headers: None,
            unknown: Vec::new(),
        }
    }

    /// Formats the field value (what follows `DKIM-Signature:`), without a
    /// leading space, folded with CRLF + TAB so that no line of the field
    /// (counting the `DKIM-Signature: ` prefix) exceeds 78 characters. The
    /// `b=` tag comes last, so that the text up to and including `b=` does not
    /// depend on the signature value: that is what the signer signs.
    pub fn format_value(&self) -> String {
        let mut f = Folder::new("DKIM-Signature: ".len());
        f.item(&format!("v=1; a={};", self.algorithm));
        f.item(&format!("c={};", self.canonicalization));
        f.item(&format!("d={};", self.domain));
        f.item(&format!("s={};", self.selector));
        if let Some(t) = self.timestamp {
            f.item(&format!("t={t};"));
        }
        if let Some(x) = self.expiration {
            f.item(&format!("x={x};"));
        }
        if let Some(i) = &self.identity {
            f.item(&format!("i={i};"));
        }
        if let Some(l) = self.body_length {
            f.item(&format!("l={l};"));
        }
        if let Some(q) = &self.query_methods {
            f.item(&format!("q={q};"));
        }
        for (k, v) in &self.unknown {
            f.item(&format!("{k}={v};"));
        }
        let names: Vec<&str> = self.headers.iter().map(FieldName::as_str).collect();
        f.list("h=", &names, ":");
        f.item(&format!("bh={};", B64.encode(&self.body_hash)));
        if let Some(z) = &self.copied_headers {
            f.item(&format!("z={z};"));
        }
        f.item("b=");
        f.chunks(&B64.encode(&self.signature));
        f.out
    }
}

/// Builds a folded header value.
struct Folder {
    out: String,
    col: usize,
}

const WIDTH: usize = 78;

impl Folder {
    fn new(col: usize) -> Self {
        Folder {
            out: String::new(),
            col,
        }
    }

    fn sep(&mut self, len: usize) {
        if self.out.is_empty() {
            return;
        }
        if self.col + 1 + len > WIDTH {
            self.out.push_str("\r\n\t");
            self.col = 1;
        } else {
            self.out.push(' ');
            self.col += 1;
        }
    }

    fn item(&mut self, s: &str) {
        self.sep(s.len());
        self.out.push_str(s);
        self.col += s.len();
    }

    /// `prefix` then `parts` joined by `joiner`, folding after a joiner.
    fn list(&mut self, prefix: &str, parts: &[&str], joiner: &str) {
        let first = parts.first().copied().unwrap_or("");
        self.item(&format!("{prefix}{first}"));
        for p in parts.iter().skip(1) {
            if self.col + joiner.len() + p.len() + 1 > WIDTH {
                self.out.push_str(joiner);
                self.out.push_str("\r\n\t");
                self.out.push_str(p);
                self.col = 1 + p.len();
            } else {
                self.out.push_str(joiner);
                self.out.push_str(p);
                self.col += joiner.len() + p.len();
            }
        }
        self.out.push(';');
        self.col += 1;
    }

    /// Appends `s` directly, breaking it across lines where needed.
    fn chunks(&mut self, mut s: &str) {
        while !s.is_empty() {
            let room = WIDTH.saturating_sub(self.col);
            if room == 0 {
                self.out.push_str("\r\n\t");
                self.col = 1;
                continue;
            }
            let (head, tail) = s.split_at(room.min(s.len()));
            self.out.push_str(head);
            self.col += head.len();
            s = tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &[u8] = b" v=1; a=rsa-sha256; c=relaxed/simple; d=example.com;\r\n s=sel; t=1700000000; x=1700086400; h=From:To:Subject;\r\n i=joe@mail.example.com; l=100; q=dns/txt; foo=bar;\r\n bh=MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=;\r\n b=dGVzdA==";

    #[test]
    fn parses_all_tags() {
        let s = DkimSignature::parse(EXAMPLE).unwrap();
        assert_eq!(s.algorithm, Algorithm::RsaSha256);
        assert_eq!(s.canonicalization.to_string(), "relaxed/simple");
        assert_eq!(s.domain.as_str(), "example.com");
        assert_eq!(s.selector.as_str(), "sel");
        assert_eq!(s.headers.len(), 3);
        assert_eq!(s.timestamp, Some(1_700_000_000));
        assert_eq!(s.expiration, Some(1_700_086_400));
        assert_eq!(s.identity_domain.as_str(), "mail.example.com");
        assert_eq!(s.body_length, Some(100));
        assert_eq!(s.signature, b"test");
        assert_eq!(s.body_hash.len(), 32);
        assert_eq!(s.unknown, vec![("foo".to_string(), "bar".to_string())]);
    }

    #[test]
    fn missing_and_bad_tags() {
        let e =
            DkimSignature::parse(b"v=1; a=rsa-sha256; d=x.com; s=s; h=from; bh=AA==").unwrap_err();
        assert_eq!(e, ParseError::MissingTag("b"));
        let e = DkimSignature::parse(b"v=2; a=rsa-sha256; d=x.com; s=s; h=from; bh=AA==; b=AA==")
            .unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let e = DkimSignature::parse(b"v=1; a=rsa-md5; d=x.com; s=s; h=from; bh=AA==; b=AA==")
            .unwrap_err();
        assert!(e.to_string().contains("unknown algorithm"), "{e}");
        let e = DkimSignature::parse(b"v=1; a=rsa-sha256; d=x.com; s=s; h=from; bh=AA==; b=!!")
            .unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
        let e =
            DkimSignature::parse(b"v=1; a=rsa-sha256; d=x.com; s=s; h=from; bh=AA==; b=AA==; l=x")
                .unwrap_err();
        assert!(e.to_string().contains("l="), "{e}");
        let e = DkimSignature::parse(
            b"v=1; a=rsa-sha256; d=x.com; s=s; h=from; bh=AA==; b=AA==; i=nobody",
        )
        .unwrap_err();
        assert!(e.to_string().contains("i="), "{e}");
    }

    #[test]
    fn format_parses_back_and_folds() {
        let mut s = DkimSignature::parse(EXAMPLE).unwrap();
        s.signature = vec![7u8; 256];
        let v = s.format_value();
        for (n, line) in v.split("\r\n").enumerate() {
            let len = line.len() + if n == 0 { 16 } else { 0 };
            assert!(len <= 78, "line too long: {line:?}");
        }
        let back = DkimSignature::parse(v.as_bytes()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn prefix_independent_of_b() {
        let mut s = DkimSignature::parse(EXAMPLE).unwrap();
        s.signature.clear();
        let empty = s.format_value();
        assert!(empty.ends_with("b="));
        s.signature = vec![1u8; 64];
        assert!(s.format_value().starts_with(&empty));
    }
}
