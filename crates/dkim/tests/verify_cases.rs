//! Verifier behaviour, one case per rule of RFC 6376 / RFC 8301 that it applies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use aws_lc_rs::digest;
use dkim::*;
use std::collections::HashMap;
use std::sync::OnceLock;

const NOW: u64 = 1_800_000_000;
const MSG: &[u8] = b"From: Joe <joe@example.com>\r\nTo: a@example.net\r\nSubject: test\r\n\r\nHello world\r\nSecond line\r\n";

fn rsa_key() -> SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate_rsa(2048).unwrap())
        .clone()
}

fn ed_key() -> SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate_ed25519().unwrap())
        .clone()
}

fn dns(records: &[(&str, String)]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for (n, v) in records {
        m.entry(n.to_string()).or_default().push(v.clone());
    }
    m
}

fn default_dns() -> HashMap<String, Vec<String>> {
    dns(&[
        ("rsa._domainkey.example.com", rsa_key().dns_record()),
        ("ed._domainkey.example.com", ed_key().dns_record()),
    ])
}

/// Builds a signature by hand so that tests can set tags the signer never
/// writes (l=, i=, x=, a=rsa-sha1, an h= without From).
fn custom_signed(
    msg: &[u8],
    key: &SigningKey,
    selector: &str,
    mutate: impl Fn(&mut DkimSignature),
) -> Vec<u8> {
    let parsed = Message::parse(msg).unwrap();
    let mut sig = DkimSignature::new(
        Algorithm::for_key(key.algorithm()),
        "example.com".parse().unwrap(),
        selector.parse().unwrap(),
        CanonicalizationPair::default(),
        vec!["From".parse().unwrap(), "Subject".parse().unwrap()],
    );
    sig.timestamp = Some(NOW - 100);
    mutate(&mut sig);
    let mut canon = Vec::new();
    let mut c = BodyCanonicalizer::new(sig.canonicalization.body);
    c.update(parsed.body(), &mut |s: &[u8]| canon.extend_from_slice(s));
    c.finish(&mut |s: &[u8]| canon.extend_from_slice(s));
    if let Some(l) = sig.body_length {
        canon.truncate(l as usize);
    }
    sig.body_hash = digest::digest(&digest::SHA256, &canon).as_ref().to_vec();
    let with_field = |s: &DkimSignature| {
        let mut m = format!("DKIM-Signature: {}\r\n", s.format_value()).into_bytes();
        m.extend_from_slice(msg);
        m
    };
    let unsigned = with_field(&sig);
    let headers = Message::parse(&unsigned).unwrap().headers().to_vec();
    let data = signed_header_data(&headers, 0).unwrap();
    sig.signature = key.sign(&data).unwrap();
    with_field(&sig)
}

fn sign(msg: &[u8], keys: &[(&SigningKey, &str)]) -> Vec<u8> {
    let parsed = Message::parse(msg).unwrap();
    let cfgs = keys
        .iter()
        .map(|(k, s)| {
            SignerConfig::new(
                "example.com".parse().unwrap(),
                s.parse().unwrap(),
                (*k).clone(),
            )
        })
        .collect();
    let mut s = Signer::new(cfgs, NOW - 100)
        .start(parsed.headers())
        .unwrap();
    s.body(parsed.body());
    let mut out = Vec::new();
    for h in s.finish().unwrap() {
        out.extend_from_slice(h.to_field().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(msg);
    out
}

fn verify_with(msg: &[u8], lookup: &dyn KeyLookup) -> Vec<VerificationResult> {
    let parsed = Message::parse(msg).unwrap();
    let mut v = Verifier::default().start(parsed.headers(), NOW);
    v.body(parsed.body());
    v.finish(lookup)
}

fn verify(msg: &[u8]) -> Vec<VerificationResult> {
    verify_with(msg, &default_dns())
}

fn one(msg: &[u8]) -> VerificationResult {
    let r = verify(msg);
    assert_eq!(r.len(), 1, "{r:?}");
    r.into_iter().next().unwrap()
}

fn reason(r: &VerificationResult) -> &str {
    r.reason.as_deref().unwrap_or("")
}

#[test]
fn unsigned_message_is_none() {
    let r = verify(MSG);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].result, DkimResult::None);
    assert_eq!(authentication_results("mx", &r), "mx; dkim=none");
}

#[test]
fn dual_signature_both_pass_and_share_one_body_hash() {
    let signed = sign(MSG, &[(&rsa_key(), "rsa"), (&ed_key(), "ed")]);
    let r = verify(&signed);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|x| x.result == DkimResult::Pass), "{r:?}");
    assert_eq!(r[0].algorithm.as_deref(), Some("rsa-sha256"));
    assert_eq!(r[1].algorithm.as_deref(), Some("ed25519-sha256"));
    let ar = authentication_results("mx.example.net", &r);
    assert!(ar.starts_with("mx.example.net;\r\n\tdkim=pass header.d=example.com header.s=rsa header.a=rsa-sha256 header.b="), "{ar}");
    assert!(ar.contains("header.s=ed header.a=ed25519-sha256"), "{ar}");
}

#[test]
fn oversigned_from_blocks_an_added_from() {
    let signed = sign(MSG, &[(&ed_key(), "ed")]);
    let text = String::from_utf8(signed).unwrap();
    assert!(text.contains("h=From:From:"), "{text}");
    let forged = text.replacen(
        "Subject: test",
        "Subject: test\r\nFrom: evil@example.org",
        1,
    );
    assert_eq!(one(forged.as_bytes()).result, DkimResult::Fail);
}

#[test]
fn body_length_limit_is_honoured() {
    let signed = custom_signed(MSG, &ed_key(), "ed", |s| s.body_length = Some(13));
    assert_eq!(one(&signed).result, DkimResult::Pass);
    // Content appended after the signed length does not break the signature.
    let mut appended = signed.clone();
    appended.extend_from_slice(b"appended by a mailing list\r\n");
    assert_eq!(one(&appended).result, DkimResult::Pass);
    // A change inside the signed length does.
    let changed = String::from_utf8(signed)
        .unwrap()
        .replacen("Hello", "Jello", 1);
    assert_eq!(one(changed.as_bytes()).result, DkimResult::Fail);
    // l= longer than the body fails.
    let long = custom_signed(MSG, &ed_key(), "ed", |s| s.body_length = Some(10_000));
    let r = one(&long);
    assert_eq!(r.result, DkimResult::Fail);
    assert!(reason(&r).contains("longer than the body"), "{r:?}");
}

#[test]
fn body_done_once_every_l_is_reached() {
    let signed = custom_signed(MSG, &ed_key(), "ed", |s| s.body_length = Some(5));
    let parsed = Message::parse(&signed).unwrap();
    let mut v = Verifier::default().start(parsed.headers(), NOW);
    assert!(!v.body_done());
    v.body(b"Hello world");
    assert!(v.body_done());
    // Without signatures there is nothing to hash.
    let parsed = Message::parse(MSG).unwrap();
    assert!(Verifier::default().start(parsed.headers(), NOW).body_done());
    // Without l= the whole body is needed.
    let signed = sign(MSG, &[(&ed_key(), "ed")]);
    let parsed = Message::parse(&signed).unwrap();
    let mut v = Verifier::default().start(parsed.headers(), NOW);
    v.body(parsed.body());
    assert!(!v.body_done());
    assert_eq!(v.key_names(), vec!["ed._domainkey.example.com".to_string()]);
}

#[test]
fn rsa_sha1_is_policy() {
    let signed = custom_signed(MSG, &rsa_key(), "rsa", |s| s.algorithm = Algorithm::RsaSha1);
    let r = one(&signed);
    assert_eq!(r.result, DkimResult::Policy);
    assert!(reason(&r).contains("RFC 8301"));
}

#[test]
fn h_without_from_is_permerror() {
    let signed = custom_signed(MSG, &ed_key(), "ed", |s| {
        s.headers = vec!["Subject".parse().unwrap()]
    });
    let r = one(&signed);
    assert_eq!(r.result, DkimResult::PermError);
    assert!(reason(&r).contains("From"), "{r:?}");
}

#[test]
fn identity_must_be_within_domain() {
    let ok = custom_signed(MSG, &ed_key(), "ed", |s| {
        s.identity = Some("joe@mail.example.com".into());
        s.identity_domain = "mail.example.com".parse().unwrap();
    });
    assert_eq!(one(&ok).result, DkimResult::Pass);
    let bad = custom_signed(MSG, &ed_key(), "ed", |s| {
        s.identity = Some("joe@example.org".into());
        s.identity_domain = "example.org".parse().unwrap();
    });
    let r = one(&bad);
    assert_eq!(r.result, DkimResult::PermError);
    assert!(reason(&r).contains("i="), "{r:?}");
}

#[test]
fn strict_key_flag_requires_exact_identity_domain() {
    let sub = custom_signed(MSG, &ed_key(), "strict", |s| {
        s.identity = Some("@mail.example.com".into());
        s.identity_domain = "mail.example.com".parse().unwrap();
    });
    let record = format!(
        "v=DKIM1; k=ed25519; t=s; p={}",
        ed_key().public_key_base64()
    );
    let r = verify_with(
        &sub,
        &dns(&[("strict._domainkey.example.com", record.clone())]),
    );
    assert_eq!(r[0].result, DkimResult::PermError, "{r:?}");
    let exact = custom_signed(MSG, &ed_key(), "strict", |_| {});
    let r = verify_with(&exact, &dns(&[("strict._domainkey.example.com", record)]));
    assert_eq!(r[0].result, DkimResult::Pass, "{r:?}");
}

#[test]
fn expiry_against_the_injected_clock() {
    let signed = custom_signed(MSG, &ed_key(), "ed", |s| s.expiration = Some(NOW - 1));
    let r = one(&signed);
    assert_eq!(r.result, DkimResult::Fail);
    assert!(reason(&r).contains("expired"));
    let parsed = Message::parse(&signed).unwrap();
    let mut v = Verifier::default().start(parsed.headers(), NOW - 10);
    v.body(parsed.body());
    assert_eq!(v.finish(&default_dns())[0].result, DkimResult::Pass);
    let backwards = custom_signed(MSG, &ed_key(), "ed", |s| s.expiration = Some(NOW - 200));
    assert_eq!(one(&backwards).result, DkimResult::PermError);
}

#[test]
fn key_record_rules() {
    let signed = sign(MSG, &[(&ed_key(), "ed")]);
    let p = ed_key().public_key_base64();
    let cases: Vec<(String, DkimResult, &str)> = vec![
        (
            "v=DKIM1; k=ed25519; p=".into(),
            DkimResult::PermError,
            "revoked",
        ),
        (
            format!("v=DKIM1; k=rsa; p={p}"),
            DkimResult::PermError,
            "does not match",
        ),
        (
            format!("v=DKIM1; k=ed25519; h=sha1; p={p}"),
            DkimResult::PermError,
            "h=",
        ),
        (
            format!("v=DKIM1; k=ed25519; s=tls; p={p}"),
            DkimResult::PermError,
            "s=",
        ),
        (
            format!("v=DKIM1; k=foo; p={p}"),
            DkimResult::PermError,
            "unknown key type",
        ),
        (
            "v=DKIM1; k=ed25519; p=AAAA".into(),
            DkimResult::PermError,
            "bad public key",
        ),
        (
            "not a key record".into(),
            DkimResult::PermError,
            "bad key record",
        ),
        (
            format!("v=DKIM1; k=ed25519; h=sha256; s=email; p={p}"),
            DkimResult::Pass,
            "",
        ),
    ];
    for (record, want, why) in cases {
        let r = verify_with(
            &signed,
            &dns(&[("ed._domainkey.example.com", record.clone())]),
        );
        assert_eq!(r[0].result, want, "{record}: {r:?}");
        assert!(reason(&r[0]).contains(why), "{record}: {r:?}");
    }
}

#[test]
fn testing_mode_failure_is_neutral() {
    let signed = sign(MSG, &[(&ed_key(), "ed")]);
    let other = SigningKey::generate_ed25519().unwrap();
    let record = format!("v=DKIM1; k=ed25519; t=y; p={}", other.public_key_base64());
    let r = verify_with(&signed, &dns(&[("ed._domainkey.example.com", record)]));
    assert_eq!(r[0].result, DkimResult::Neutral, "{r:?}");
    assert!(r[0].testing);
}

#[test]
fn lookup_failures() {
    let signed = sign(MSG, &[(&ed_key(), "ed")]);
    let r = verify_with(&signed, &HashMap::<String, Vec<String>>::new());
    assert_eq!(r[0].result, DkimResult::PermError);
    assert!(reason(&r[0]).contains("no key record"));
    let temp = |_: &str| -> Result<Vec<String>, LookupError> {
        Err(LookupError::Temporary("timed out".into()))
    };
    let r = verify_with(&signed, &temp);
    assert_eq!(r[0].result, DkimResult::TempError);
    assert!(reason(&r[0]).contains("timed out"));
}

#[test]
fn several_records_one_valid_passes() {
    let signed = sign(MSG, &[(&ed_key(), "ed")]);
    let stale = SigningKey::generate_ed25519().unwrap();
    let r = verify_with(
        &signed,
        &dns(&[
            ("ed._domainkey.example.com", "v=spf1 -all".into()),
            ("ed._domainkey.example.com", stale.dns_record()),
            ("ed._domainkey.example.com", ed_key().dns_record()),
        ]),
    );
    assert_eq!(r[0].result, DkimResult::Pass, "{r:?}");
}

#[test]
fn legacy_1024_bit_rsa_verifies_and_tiny_keys_are_policy() {
    // RFC 8463's 1024-bit example key passes (tests/rfc_vectors.rs); a 512-bit
    // key does not, whatever the signature.
    let tiny = "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMS3UaU7d2glRWHGqkGOQw5RW0v1S+JJXFkGgRrZ5eeJm0mc2HJuAuuC4dfG87dVRUFvUkNr5b7pLgEnbRmAL9UCAwEAAQ==";
    let signed = sign(MSG, &[(&rsa_key(), "rsa")]);
    let r = verify_with(
        &signed,
        &dns(&[(
            "rsa._domainkey.example.com",
            format!("v=DKIM1; k=rsa; p={tiny}"),
        )]),
    );
    assert_eq!(r[0].result, DkimResult::Policy, "{r:?}");
    assert_eq!(r[0].key_bits, Some(512));
}

#[test]
fn signature_limit() {
    let signed = sign(
        MSG,
        &[(&ed_key(), "ed"), (&ed_key(), "ed"), (&rsa_key(), "rsa")],
    );
    let parsed = Message::parse(&signed).unwrap();
    let mut v = Verifier::new(VerifierConfig::default().with_max_signatures(2))
        .start(parsed.headers(), NOW);
    v.body(parsed.body());
    let r = v.finish(&default_dns());
    assert_eq!(r.len(), 2);
}

#[test]
fn malformed_signatures_are_permerrors_not_panics() {
    for bad in [
        "DKIM-Signature: garbage",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; h=from; bh=AAAA; b=",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; h=from; bh=AAAA; b=AAAA; b=AAAA",
        "DKIM-Signature: v=1; a=hmac; d=example.com; s=rsa; h=from; bh=AAAA; b=AAAA",
        "DKIM-Signature: v=1; a=rsa-sha256; d=exa mple.com; s=rsa; h=from; bh=AAAA; b=AAAA",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; h=from; bh=AAAA; b=AAAA; q=dns/other",
    ] {
        let mut m = bad.as_bytes().to_vec();
        m.extend_from_slice(b"\r\n");
        m.extend_from_slice(MSG);
        let r = one(&m);
        assert!(matches!(r.result, DkimResult::PermError | DkimResult::Fail), "{bad}: {r:?}");
        assert!(r.reason.is_some());
        let ar = authentication_results("mx", &[r]);
        assert!(ar.contains("reason=\""), "{ar}");
    }
}
