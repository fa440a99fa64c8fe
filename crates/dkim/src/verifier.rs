//! Verification (RFC 6376 §6, RFC 8301, RFC 8463).

use crate::body::BodyHasher;
use crate::crypto::{self, KeyAlgorithm, VerifyError};
use crate::error::ParseError;
use crate::header::HeaderField;
use crate::record::{KeyRecord, KeyType};
use crate::signature::{Algorithm, DkimSignature};
use crate::signer::{append_signature_field, hash_selected_headers};
use crate::tag::{parse_tag_list, Tag};
use std::collections::HashMap;
use std::fmt;

/// The result of one signature, as RFC 8601 names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DkimResult {
    /// The message carries no signature.
    None,
    /// The signature verified.
    Pass,
    /// The signature (or body hash) did not verify, or it has expired.
    Fail,
    /// A failure that must not count against the message: the key is in
    /// testing mode (`t=y`).
    Neutral,
    /// Verified or not, the signature is not acceptable: `rsa-sha1` or an RSA
    /// key under 1024 bits (RFC 8301).
    Policy,
    /// The key could not be fetched for now (DNS timeout, SERVFAIL).
    TempError,
    /// The signature or its key record is broken, missing or revoked.
    PermError,
}

impl DkimResult {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimResult::None => "none",
            DkimResult::Pass => "pass",
            DkimResult::Fail => "fail",
            DkimResult::Neutral => "neutral",
            DkimResult::Policy => "policy",
            DkimResult::TempError => "temperror",
            DkimResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for DkimResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of checking one DKIM-Signature field.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerificationResult {
    /// The result.
    pub result: DkimResult,
    /// Why, for anything but a pass.
    pub reason: Option<String>,
    /// `d=`, when it could be read.
    pub domain: Option<String>,
    /// `s=`, when it could be read.
    pub selector: Option<String>,
    /// `a=`, when it could be read.
    pub algorithm: Option<String>,
    /// `i=`, when present.
    pub identity: Option<String>,
    /// The `b=` value (white space removed), when it could be read.
    pub signature_b64: Option<String>,
    /// The key record says the domain is testing (`t=y`).
    pub testing: bool,
    /// Size of the key that was used, in bits, when one was used.
    pub key_bits: Option<u32>,
}

impl VerificationResult {
    fn new(result: DkimResult, reason: Option<String>) -> Self {
        VerificationResult {
            result,
            reason,
            domain: None,
            selector: None,
            algorithm: None,
            identity: None,
            signature_b64: None,
            testing: false,
            key_bits: None,
        }
    }

    /// The result of a message without any signature.
    pub fn none() -> Self {
        Self::new(DkimResult::None, None)
    }

    /// A permanent error for the message as a whole, before any signature
    /// was looked at (for example a message over the verifier's limits).
    ///
    /// ```
    /// let r = dkim::VerificationResult::permerror("too many header fields");
    /// assert_eq!(r.to_resinfo(), "dkim=permerror reason=\"too many header fields\"");
    /// ```
    pub fn permerror(reason: impl Into<String>) -> Self {
        Self::new(DkimResult::PermError, Some(reason.into()))
    }
}

/// Why a key lookup did not return records.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LookupError {
    /// The name does not exist or has no TXT records (NXDOMAIN, NODATA).
    NotFound,
    /// A temporary failure (timeout, SERVFAIL); the message says which.
    Temporary(String),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NotFound => f.write_str("no such record"),
            LookupError::Temporary(e) => f.write_str(e),
        }
    }
}

/// Where the verifier gets key records from: DNS in the daemon, a file on the
/// command line, a table in tests. `name` is `selector._domainkey.domain`
/// without a final dot; the answer is the TXT records found, each with its
/// character-strings joined.
pub trait KeyLookup {
    /// Looks up the TXT records at `name`.
    fn lookup_txt(&self, name: &str) -> Result<Vec<String>, LookupError>;
}

impl KeyLookup for HashMap<String, Vec<String>> {
    fn lookup_txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.get(&name.to_ascii_lowercase())
            .or_else(|| self.get(name))
            .cloned()
            .ok_or(LookupError::NotFound)
    }
}

impl<F> KeyLookup for F
where
    F: Fn(&str) -> Result<Vec<String>, LookupError>,
{
    fn lookup_txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self(name)
    }
}

/// Verifier settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifierConfig {
    /// At most this many DKIM-Signature fields are checked per message (the
    /// first ones from the top); the rest are ignored. Default 10.
    pub max_signatures: usize,
    /// At most this many TXT records are tried for one key name. Default 3.
    pub max_key_records: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            max_signatures: 10,
            max_key_records: 3,
        }
    }
}

impl VerifierConfig {
    /// Settings with the given signature limit.
    pub fn with_max_signatures(mut self, n: usize) -> Self {
        self.max_signatures = n;
        self
    }
}

/// Verifies messages.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    config: VerifierConfig,
}

enum Entry {
    Done(VerificationResult),
    Pending {
        sig: Box<DkimSignature>,
        base: VerificationResult,
        header_data: Vec<u8>,
        hasher: usize,
    },
}

/// A message being verified: feed the body with [`Verification::body`] then
/// call [`Verification::finish`].
pub struct Verification {
    entries: Vec<Entry>,
    hashers: Vec<BodyHasher>,
    config: VerifierConfig,
}

fn lenient_tags(value: &[u8], base: &mut VerificationResult) {
    if let Ok(tags) = parse_tag_list(value) {
        for t in tags {
            match t.name.as_str() {
                "d" => base.domain = Some(t.value.clone()),
                "s" => base.selector = Some(t.value.clone()),
                "a" => base.algorithm = Some(t.value.clone()),
                "i" => base.identity = Some(t.value.clone()),
                "b" => base.signature_b64 = Some(t.value_no_ws()),
                _ => {}
            }
        }
    }
}

fn perm(mut base: VerificationResult, reason: impl Into<String>) -> Entry {
    base.result = DkimResult::PermError;
    base.reason = Some(reason.into());
    Entry::Done(base)
}

impl Verifier {
    /// A verifier with these settings.
    pub fn new(config: VerifierConfig) -> Self {
        Verifier { config }
    }

    /// Starts verifying a message with these header fields, as of `now`
    /// (seconds since the epoch; used for `x=`).
    pub fn start(&self, headers: &[HeaderField], now: u64) -> Verification {
        let mut entries = Vec::new();
        let mut hashers: Vec<BodyHasher> = Vec::new();
        for (idx, field) in headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.is("DKIM-Signature"))
            .take(self.config.max_signatures)
        {
            let mut base = VerificationResult::new(DkimResult::PermError, None);
            lenient_tags(field.value(), &mut base);
            let (sig, tags) = match DkimSignature::parse_with_tags(field.value()) {
                Ok(x) => x,
                Err(e) => {
                    entries.push(perm(base, format!("bad signature: {e}")));
                    continue;
                }
            };
            base.algorithm = Some(sig.algorithm.to_string());
            if let Some(e) = check_signature(&sig, now) {
                entries.push(match e {
                    (DkimResult::PermError, r) => perm(base, r),
                    (res, r) => {
                        base.result = res;
                        base.reason = Some(r);
                        Entry::Done(base)
                    }
                });
                continue;
            }
            let header_data = match header_data_for(headers, idx, &sig, &tags) {
                Ok(d) => d,
                Err(e) => {
                    entries.push(perm(base, format!("bad signature field: {e}")));
                    continue;
                }
            };
            let hasher = match hashers
                .iter()
                .position(|h| h.kind == sig.canonicalization.body && h.limit() == sig.body_length)
            {
                Some(p) => p,
                None => {
                    hashers.push(BodyHasher::new(sig.canonicalization.body, sig.body_length));
                    hashers.len() - 1
                }
            };
            entries.push(Entry::Pending {
                sig: Box::new(sig),
                base,
                header_data,
                hasher,
            });
        }
        Verification {
            entries,
            hashers,
            config: self.config.clone(),
        }
    }
}

/// The exact bytes that the DKIM-Signature field at `index` of `headers`
/// signs: the fields named in its `h=`, canonicalized and chosen bottom-up,
/// then the signature field itself with the `b=` value removed and no final
/// CRLF (RFC 6376 §3.7). Useful to debug a signature that does not verify,
/// and to check an implementation against published vectors.
pub fn signed_header_data(headers: &[HeaderField], index: usize) -> Result<Vec<u8>, ParseError> {
    let field = headers
        .get(index)
        .ok_or_else(|| ParseError::Message(format!("there is no header field number {index}")))?;
    let (sig, tags) = DkimSignature::parse_with_tags(field.value())?;
    header_data_for(headers, index, &sig, &tags)
}

fn header_data_for(
    headers: &[HeaderField],
    idx: usize,
    sig: &DkimSignature,
    tags: &[Tag],
) -> Result<Vec<u8>, ParseError> {
    let field = headers
        .get(idx)
        .ok_or_else(|| ParseError::Message("signature field out of range".into()))?;
    let b_tag = tags
        .iter()
        .find(|t| t.name == "b")
        .ok_or(ParseError::MissingTag("b"))?;
    let raw = field.as_bytes();
    let value_offset = raw.len() - field.value().len();
    let start = value_offset + b_tag.raw_span.start;
    let end = value_offset + b_tag.raw_span.end;
    let mut stripped = raw.get(..start).unwrap_or_default().to_vec();
    stripped.extend_from_slice(raw.get(end..).unwrap_or_default());
    let stripped = HeaderField::parse(&stripped)?;
    // The signature being verified never selects itself (RFC 6376 §3.7).
    let mut data = Vec::new();
    hash_selected_headers(
        headers,
        Some(idx),
        &sig.headers,
        sig.canonicalization.header,
        &mut data,
    );
    append_signature_field(&stripped, sig.canonicalization.header, &mut data);
    Ok(data)
}

/// Checks that do not need the body or the key. `Some` is a final result.
fn check_signature(sig: &DkimSignature, now: u64) -> Option<(DkimResult, String)> {
    let perm = |r: &str| Some((DkimResult::PermError, r.to_string()));
    if sig.algorithm == Algorithm::RsaSha1 {
        return Some((
            DkimResult::Policy,
            "rsa-sha1 is not accepted (RFC 8301)".into(),
        ));
    }
    if !sig.headers.iter().any(|h| h.matches(b"from")) {
        return perm("the From field is not signed (h= lacks from)");
    }
    if !sig.identity_domain.is_subdomain_of(&sig.domain) {
        return perm("i= is not in the d= domain");
    }
    if let Some(q) = &sig.query_methods {
        if !q
            .split(':')
            .any(|m| m.trim().eq_ignore_ascii_case("dns/txt"))
        {
            return perm("q= does not offer dns/txt");
        }
    }
    if let (Some(t), Some(x)) = (sig.timestamp, sig.expiration) {
        if x < t {
            return perm("x= is earlier than t=");
        }
    }
    if let Some(x) = sig.expiration {
        if x < now {
            return Some((DkimResult::Fail, "signature expired".into()));
        }
    }
    None
}

impl Verification {
    /// Feeds a chunk of the body (any size).
    pub fn body(&mut self, chunk: &[u8]) {
        for h in &mut self.hashers {
            h.update(chunk);
        }
    }

    /// True when more body cannot change any result: there is no signature
    /// left to check, or every one has `l=` and has seen that much body. A
    /// milter may then answer SKIP.
    pub fn body_done(&self) -> bool {
        self.hashers.iter().all(BodyHasher::done)
    }

    /// The key names (`selector._domainkey.domain`) the pending signatures
    /// need, without duplicates, so that a caller can look them up in
    /// parallel before calling [`Verification::finish`].
    pub fn key_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for e in &self.entries {
            if let Entry::Pending { sig, .. } = e {
                let n = key_name(sig);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names
    }

    /// Ends the body and checks every signature, looking keys up through
    /// `lookup`. Returns one result per signature checked, in header order;
    /// a message without signatures gives a single `none`.
    pub fn finish(self, lookup: &dyn KeyLookup) -> Vec<VerificationResult> {
        let digests: Vec<(Vec<u8>, u64)> =
            self.hashers.into_iter().map(BodyHasher::finish).collect();
        if self.entries.is_empty() {
            return vec![VerificationResult::none()];
        }
        let max_records = self.config.max_key_records;
        self.entries
            .into_iter()
            .map(|e| match e {
                Entry::Done(r) => r,
                Entry::Pending {
                    sig,
                    base,
                    header_data,
                    hasher,
                } => {
                    let (digest, seen) = digests.get(hasher).cloned().unwrap_or_default();
                    verify_one(&sig, base, &header_data, &digest, seen, lookup, max_records)
                }
            })
            .collect()
    }
}

fn key_name(sig: &DkimSignature) -> String {
    crate::name::key_record_name(sig.selector.as_str(), sig.domain.as_str()).to_ascii_lowercase()
}

fn with(
    mut base: VerificationResult,
    result: DkimResult,
    reason: impl Into<String>,
) -> VerificationResult {
    base.result = result;
    base.reason = Some(reason.into());
    base
}

fn verify_one(
    sig: &DkimSignature,
    base: VerificationResult,
    header_data: &[u8],
    body_digest: &[u8],
    body_seen: u64,
    lookup: &dyn KeyLookup,
    max_records: usize,
) -> VerificationResult {
    if let Some(l) = sig.body_length {
        if body_seen < l {
            return with(
                base,
                DkimResult::Fail,
                format!("l={l} is longer than the body ({body_seen} bytes)"),
            );
        }
    }
    if body_digest != sig.body_hash.as_slice() {
        return with(base, DkimResult::Fail, "body hash did not verify");
    }
    let name = key_name(sig);
    let records = match lookup.lookup_txt(&name) {
        Ok(r) => r,
        Err(LookupError::NotFound) => {
            return with(
                base,
                DkimResult::PermError,
                format!("no key record at {name}"),
            )
        }
        Err(LookupError::Temporary(e)) => {
            return with(
                base,
                DkimResult::TempError,
                format!("key lookup for {name} failed: {e}"),
            )
        }
    };
    let mut first_problem: Option<VerificationResult> = None;
    let mut tried = 0usize;
    for text in &records {
        let record = match KeyRecord::parse(text) {
            Ok(r) => r,
            Err(e) => {
                first_problem.get_or_insert_with(|| {
                    with(
                        base.clone(),
                        DkimResult::PermError,
                        format!("bad key record: {e}"),
                    )
                });
                continue;
            }
        };
        tried += 1;
        if tried > max_records {
            break;
        }
        let r = check_with_record(sig, base.clone(), header_data, &record);
        if r.result == DkimResult::Pass {
            return r;
        }
        first_problem.get_or_insert(r);
    }
    first_problem.unwrap_or_else(|| {
        with(
            base,
            DkimResult::PermError,
            format!("no key record at {name}"),
        )
    })
}

fn check_with_record(
    sig: &DkimSignature,
    mut base: VerificationResult,
    header_data: &[u8],
    record: &KeyRecord,
) -> VerificationResult {
    base.testing = record.testing;
    let key_alg = match &record.key_type {
        KeyType::Known(k) => *k,
        KeyType::Unknown(k) => {
            return with(
                base,
                DkimResult::PermError,
                format!("unknown key type k={k}"),
            )
        }
    };
    if key_alg != sig.algorithm.key_algorithm() {
        return with(
            base,
            DkimResult::PermError,
            format!("key type k={key_alg} does not match a={}", sig.algorithm),
        );
    }
    if let Some(h) = &record.hash_algorithms {
        if !h.iter().any(|x| x == sig.algorithm.hash_name()) {
            return with(
                base,
                DkimResult::PermError,
                format!("key record h= does not allow {}", sig.algorithm.hash_name()),
            );
        }
    }
    if !record.allows_email() {
        return with(
            base,
            DkimResult::PermError,
            "key record s= does not allow email",
        );
    }
    if record.strict && sig.identity_domain != sig.domain {
        return with(
            base,
            DkimResult::PermError,
            "key record t=s requires i= to be in d= exactly",
        );
    }
    if record.is_revoked() {
        return with(base, DkimResult::PermError, "key revoked (empty p=)");
    }
    if key_alg == KeyAlgorithm::Rsa {
        base.key_bits = crypto::rsa_bits(&record.public_key);
    } else {
        base.key_bits = Some(256);
    }
    match crypto::verify(key_alg, &record.public_key, header_data, &sig.signature) {
        Ok(()) => {
            base.result = DkimResult::Pass;
            base.reason = None;
            base
        }
        Err(VerifyError::KeyTooSmall(bits)) => with(
            base,
            DkimResult::Policy,
            format!("RSA key of {bits} bits is too small (RFC 8301 requires 1024)"),
        ),
        Err(VerifyError::BadKey(e)) => {
            with(base, DkimResult::PermError, format!("bad public key: {e}"))
        }
        Err(VerifyError::Mismatch) => {
            if record.testing {
                with(
                    base,
                    DkimResult::Neutral,
                    "signature did not verify (key in testing mode, t=y)",
                )
            } else {
                with(base, DkimResult::Fail, "signature did not verify")
            }
        }
    }
}
