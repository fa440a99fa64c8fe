//! Signing (RFC 6376 §5, RFC 8463).

use crate::body::BodyHasher;
use crate::canon::{canonicalize_header_relaxed, canonicalize_header_simple};
use crate::canon::{Canonicalization, CanonicalizationPair};
use crate::crypto::SigningKey;
use crate::error::Error;
use crate::header::HeaderField;
use crate::name::{DomainName, FieldName, Selector};
use crate::signature::{Algorithm, DkimSignature};
use std::sync::{Arc, LazyLock};

/// The header fields dkimd signs by default when they are present, in this
/// order. A name ending in `*` matches every field with that prefix (`List-*`).
pub const DEFAULT_SIGNED_HEADERS: [&str; 13] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-*",
];

/// [`DEFAULT_SIGNED_HEADERS`] as field names.
pub fn default_signed_headers() -> Vec<FieldName> {
    DEFAULT_SIGNED_HEADERS
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// [`default_signed_headers`], made once and shared by every configuration.
static DEFAULT_HEADERS: LazyLock<Arc<[FieldName]>> =
    LazyLock::new(|| default_signed_headers().into());

/// From alone, the default of [`SignerConfig::oversign`].
static OVERSIGN_FROM: LazyLock<Arc<[FieldName]>> =
    LazyLock::new(|| "From".parse().into_iter().collect());

/// What one signature is made with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SignerConfig {
    /// `d=`
    pub domain: DomainName,
    /// `s=`
    pub selector: Selector,
    /// The private key; `a=` follows from its type.
    pub key: SigningKey,
    /// `c=` (default relaxed/relaxed).
    pub canonicalization: CanonicalizationPair,
    /// Header fields to sign when present (a trailing `*` is a prefix
    /// match). Shared: a daemon holds one configuration per signing domain
    /// and key, and they all use the same list.
    pub headers: Arc<[FieldName]>,
    /// Header fields listed once more than they occur, so that none can be
    /// added after signing (default: From).
    pub oversign: Arc<[FieldName]>,
    /// `i=`, when set.
    pub identity: Option<String>,
    /// Seconds after `t=` at which the signature expires (`x=`), when set.
    pub expire_after: Option<u64>,
}

impl SignerConfig {
    /// A configuration with dkimd's defaults: relaxed/relaxed, the default
    /// header list, From oversigned, no `i=`, no `x=`.
    pub fn new(domain: DomainName, selector: Selector, key: SigningKey) -> Self {
        SignerConfig {
            domain,
            selector,
            key,
            canonicalization: CanonicalizationPair::default(),
            headers: DEFAULT_HEADERS.clone(),
            oversign: OVERSIGN_FROM.clone(),
            identity: None,
            expire_after: None,
        }
    }
}

/// Signs messages with one or more keys at a fixed time. Cheap to clone (the
/// configurations are shared).
#[derive(Clone, Debug)]
pub struct Signer {
    configs: Arc<[SignerConfig]>,
    timestamp: u64,
}

/// One signature made by [`Signing::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeader {
    /// The field value (no leading space; folded with CRLF + TAB).
    pub value: String,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// `d=`
    pub domain: String,
    /// `s=`
    pub selector: String,
}

impl SignedHeader {
    /// The field name, `DKIM-Signature`.
    pub const NAME: &'static str = "DKIM-Signature";

    /// The whole field as it goes at the top of the message: the name, a
    /// colon, one space and the value (no final CRLF). The signature covers
    /// exactly this text.
    pub fn to_field(&self) -> String {
        format!("{}: {}", Self::NAME, self.value)
    }
}

struct Pending {
    config: usize,
    headers: Vec<FieldName>,
    header_data: Vec<u8>,
    hasher: usize,
}

/// A message being signed: feed the body with [`Signing::body`], then call
/// [`Signing::finish`].
pub struct Signing {
    signer: Signer,
    pending: Vec<Pending>,
    hashers: Vec<BodyHasher>,
}

impl Signer {
    /// A signer that makes one signature per configuration, all with `t=timestamp`.
    pub fn new(configs: Vec<SignerConfig>, timestamp: u64) -> Signer {
        Signer {
            configs: configs.into(),
            timestamp,
        }
    }

    /// The same signer with another `t=` (shares the configurations).
    pub fn at(&self, timestamp: u64) -> Signer {
        Signer {
            configs: self.configs.clone(),
            timestamp,
        }
    }

    /// Starts signing a message with these header fields (in message order).
    /// Fails when there is no key or the message has no single From field.
    pub fn start(&self, headers: &[HeaderField]) -> Result<Signing, Error> {
        if self.configs.is_empty() {
            return Err(Error::NoSigners);
        }
        match headers.iter().filter(|h| h.is("From")).count() {
            0 => return Err(Error::NoFrom),
            1 => {}
            n => return Err(Error::MultipleFrom(n)),
        }
        let mut hashers: Vec<BodyHasher> = Vec::new();
        let mut pending = Vec::new();
        for (i, cfg) in self.configs.iter().enumerate() {
            let names = choose_headers(headers, &cfg.headers, &cfg.oversign);
            let mut header_data = Vec::new();
            hash_selected_headers(
                headers,
                None,
                &names,
                cfg.canonicalization.header,
                &mut header_data,
            );
            let hasher = match hashers
                .iter()
                .position(|h| h.kind == cfg.canonicalization.body)
            {
                Some(p) => p,
                None => {
                    hashers.push(BodyHasher::new(cfg.canonicalization.body, None));
                    hashers.len() - 1
                }
            };
            pending.push(Pending {
                config: i,
                headers: names,
                header_data,
                hasher,
            });
        }
        Ok(Signing {
            signer: self.clone(),
            pending,
            hashers,
        })
    }
}

impl Signing {
    /// Feeds a chunk of the body (any size).
    pub fn body(&mut self, chunk: &[u8]) {
        for h in &mut self.hashers {
            h.update(chunk);
        }
    }

    /// Finishes the body and makes the signatures, in configuration order.
    pub fn finish(self) -> Result<Vec<SignedHeader>, Error> {
        let hashes: Vec<Vec<u8>> = self.hashers.into_iter().map(|h| h.finish().0).collect();
        let mut out = Vec::with_capacity(self.pending.len());
        for p in self.pending {
            let Some(cfg) = self.signer.configs.get(p.config) else {
                continue;
            };
            let mut sig = DkimSignature::new(
                Algorithm::for_key(cfg.key.algorithm()),
                cfg.domain.clone(),
                cfg.selector.clone(),
                cfg.canonicalization,
                p.headers,
            );
            sig.body_hash = hashes.get(p.hasher).cloned().unwrap_or_default();
            sig.timestamp = Some(self.signer.timestamp);
            sig.expiration = cfg
                .expire_after
                .map(|e| self.signer.timestamp.saturating_add(e));
            sig.identity = cfg.identity.clone();
            let unsigned = format!("{}: {}", SignedHeader::NAME, sig.format_value());
            let field = HeaderField::parse(unsigned.as_bytes())?;
            let mut data = p.header_data;
            append_signature_field(&field, cfg.canonicalization.header, &mut data);
            sig.signature = cfg.key.sign(&data)?;
            out.push(SignedHeader {
                value: sig.format_value(),
                algorithm: sig.algorithm,
                domain: cfg.domain.to_string(),
                selector: cfg.selector.to_string(),
            });
        }
        Ok(out)
    }
}

/// The `h=` list for a message: each wanted field once per occurrence (bottom
/// to top is how they are hashed; the names are the same), wildcard entries
/// expanded to the fields present, and oversigned names once more.
fn choose_headers(
    headers: &[HeaderField],
    wanted: &[FieldName],
    oversign: &[FieldName],
) -> Vec<FieldName> {
    let mut names: Vec<FieldName> = Vec::new();
    let push_name = |names: &mut Vec<FieldName>, n: &[u8]| {
        let count = headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(n))
            .count();
        let already = names.iter().any(|x| x.matches(n));
        if !already {
            if let Ok(f) = String::from_utf8_lossy(n).parse::<FieldName>() {
                names.extend(std::iter::repeat_n(f, count));
            }
        }
    };
    for w in wanted {
        match w.as_str().strip_suffix('*') {
            Some(prefix) => {
                for h in headers {
                    let n = h.name();
                    if n.len() >= prefix.len()
                        && n.get(..prefix.len())
                            .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
                    {
                        push_name(&mut names, n);
                    }
                }
            }
            None => push_name(&mut names, w.as_str().as_bytes()),
        }
    }
    for o in oversign {
        if o.as_str().ends_with('*') {
            continue;
        }
        // Insert right after the last occurrence so the list stays grouped.
        let at = names
            .iter()
            .rposition(|n| n == o)
            .map_or(names.len(), |p| p + 1);
        names.insert(at, o.clone());
    }
    names
}

/// Appends the canonical form of the fields named in `names`, choosing for a
/// repeated name the instances from the bottom up (RFC 6376 §5.4.2); a name
/// with no instance left contributes nothing.
pub(crate) fn hash_selected_headers(
    headers: &[HeaderField],
    skip: Option<usize>,
    names: &[FieldName],
    canon: Canonicalization,
    out: &mut Vec<u8>,
) {
    let mut used: Vec<(String, usize)> = Vec::new();
    for name in names {
        let key = name.as_str().to_ascii_lowercase();
        let n_used = match used.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => {
                *n += 1;
                *n - 1
            }
            None => {
                used.push((key, 1));
                0
            }
        };
        let field = headers
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, h)| Some(*i) != skip && name.matches(h.name()))
            .map(|(_, h)| h)
            .nth(n_used);
        if let Some(f) = field {
            match canon {
                Canonicalization::Simple => canonicalize_header_simple(f, out),
                Canonicalization::Relaxed => canonicalize_header_relaxed(f, out),
            }
        }
    }
}

/// Appends the DKIM-Signature field itself (with `b=` already empty),
/// canonicalized, without its final CRLF.
pub(crate) fn append_signature_field(
    field: &HeaderField,
    canon: Canonicalization,
    out: &mut Vec<u8>,
) {
    match canon {
        Canonicalization::Simple => canonicalize_header_simple(field, out),
        Canonicalization::Relaxed => canonicalize_header_relaxed(field, out),
    }
    out.truncate(out.len().saturating_sub(2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Message;

    #[test]
    fn header_choice_counts_wildcards_and_oversigns() {
        let m = Message::parse(
            b"From: a@x.com\r\nTo: b@y\r\nTo: c@y\r\nList-Id: l\r\nlist-unsubscribe: u\r\nX-Other: o\r\nSubject: s\r\n\r\n",
        )
        .unwrap();
        let names = choose_headers(
            m.headers(),
            &default_signed_headers(),
            &["From".parse().unwrap()],
        );
        let s: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        assert_eq!(
            s,
            [
                "From",
                "From",
                "To",
                "To",
                "Subject",
                "List-Id",
                "list-unsubscribe"
            ]
        );
    }

    #[test]
    fn bottom_up_selection() {
        let m = Message::parse(b"From: f\r\nX: 1\r\nX: 2\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let names: Vec<FieldName> = vec![
            "x".parse().unwrap(),
            "X".parse().unwrap(),
            "x".parse().unwrap(),
        ];
        hash_selected_headers(
            m.headers(),
            None,
            &names,
            Canonicalization::Simple,
            &mut out,
        );
        assert_eq!(out, b"X: 2\r\nX: 1\r\n");
    }

    #[test]
    fn refuses_without_single_from() {
        let k = SigningKey::generate_ed25519().unwrap();
        let s = Signer::new(
            vec![SignerConfig::new(
                "x.com".parse().unwrap(),
                "s".parse().unwrap(),
                k,
            )],
            1,
        );
        let m = Message::parse(b"Subject: x\r\n\r\n").unwrap();
        assert_eq!(s.start(m.headers()).err(), Some(Error::NoFrom));
        let m = Message::parse(b"From: a\r\nFrom: b\r\n\r\n").unwrap();
        assert_eq!(s.start(m.headers()).err(), Some(Error::MultipleFrom(2)));
        assert_eq!(
            Signer::new(vec![], 1).start(m.headers()).err(),
            Some(Error::NoSigners)
        );
    }
}
