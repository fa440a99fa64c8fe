//! RFC 8463 Appendix A and RFC 6376 §3.4.5 as data files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use base64::Engine;
use dkim::*;
use std::collections::HashMap;
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rfc8463_dns() -> HashMap<String, Vec<String>> {
    let text = String::from_utf8(data("rfc8463/dns.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, v) = l.split_once('\t').unwrap();
            (n.to_string(), vec![v.to_string()])
        })
        .collect()
}

/// The RFC's signing time.
const RFC8463_T: u64 = 1_528_637_909;

#[test]
fn rfc8463_both_signatures_verify() {
    let raw = data("rfc8463/signed.eml");
    let msg = Message::parse(&raw).unwrap();
    let mut v = Verifier::default().start(msg.headers(), RFC8463_T);
    v.body(msg.body());
    let results = v.finish(&rfc8463_dns());
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].result, DkimResult::Pass, "{:?}", results[0]);
    assert_eq!(results[0].algorithm.as_deref(), Some("ed25519-sha256"));
    assert_eq!(results[1].result, DkimResult::Pass, "{:?}", results[1]);
    assert_eq!(results[1].algorithm.as_deref(), Some("rsa-sha256"));
    assert_eq!(results[1].key_bits, Some(1024));
}

#[test]
fn rfc8463_tampered_fails() {
    let raw = data("rfc8463/signed.eml");
    let tampered = String::from_utf8(raw)
        .unwrap()
        .replace("Is dinner ready?", "Is dinner ready!");
    let msg = Message::parse(tampered.as_bytes()).unwrap();
    let mut v = Verifier::default().start(msg.headers(), RFC8463_T);
    v.body(msg.body());
    let results = v.finish(&rfc8463_dns());
    assert!(
        results.iter().all(|r| r.result == DkimResult::Fail),
        "{results:?}"
    );
}

fn published_b(headers: &[HeaderField], idx: usize) -> Vec<u8> {
    let tags = parse_tag_list(headers[idx].value()).unwrap();
    let b = tags.iter().find(|t| t.name == "b").unwrap().value_no_ws();
    base64::engine::general_purpose::STANDARD.decode(b).unwrap()
}

#[test]
fn rfc8463_ed25519_b_reproduced_byte_for_byte() {
    let raw = data("rfc8463/signed.eml");
    let msg = Message::parse(&raw).unwrap();
    let seed_b64 = String::from_utf8(data("rfc8463/ed25519.key.txt")).unwrap();
    let seed = base64::engine::general_purpose::STANDARD
        .decode(seed_b64.trim())
        .unwrap();
    let key = SigningKey::ed25519_from_seed(&seed).unwrap();
    assert_eq!(
        key.public_key_base64(),
        "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    );
    let signed_data = signed_header_data(msg.headers(), 0).unwrap();
    assert_eq!(
        key.sign(&signed_data).unwrap(),
        published_b(msg.headers(), 0)
    );
}

/// aws-lc-rs does not load 1024-bit private keys, so the RSA `b=` is made by
/// the `openssl` command from the bytes our engine says are signed.
#[test]
fn rfc8463_rsa_b_reproduced_byte_for_byte_with_openssl() {
    let Ok(_) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("openssl is not installed; the test setup must install it");
        }
        eprintln!("SKIPPED: openssl not installed");
        return;
    };
    let raw = data("rfc8463/signed.eml");
    let msg = Message::parse(&raw).unwrap();
    let signed_data = signed_header_data(msg.headers(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("data");
    std::fs::write(&input, &signed_data).unwrap();
    let key = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc8463/rsa.key.pem");
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&key)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, published_b(msg.headers(), 1));
}

#[test]
fn rfc8463_unsigned_signed_again_verifies() {
    // Our own signer with the RFC key and time: same body hash as published.
    let raw = data("rfc8463/unsigned.eml");
    let msg = Message::parse(&raw).unwrap();
    let seed_b64 = String::from_utf8(data("rfc8463/ed25519.key.txt")).unwrap();
    let seed = base64::engine::general_purpose::STANDARD
        .decode(seed_b64.trim())
        .unwrap();
    let key = SigningKey::ed25519_from_seed(&seed).unwrap();
    let cfg = SignerConfig::new(
        "football.example.com".parse().unwrap(),
        "brisbane".parse().unwrap(),
        key,
    );
    let mut s = Signer::new(vec![cfg], RFC8463_T)
        .start(msg.headers())
        .unwrap();
    s.body(msg.body());
    let sig = s.finish().unwrap().remove(0);
    assert!(
        sig.value
            .contains("bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="),
        "{}",
        sig.value
    );
    let mut signed = sig.to_field().into_bytes();
    signed.extend_from_slice(b"\r\n");
    signed.extend_from_slice(&raw);
    let msg = Message::parse(&signed).unwrap();
    let mut v = Verifier::default().start(msg.headers(), RFC8463_T);
    v.body(msg.body());
    assert_eq!(v.finish(&rfc8463_dns())[0].result, DkimResult::Pass);
}

/// Splits the §3.4.5 data file into its sections.
fn sections() -> HashMap<String, Vec<u8>> {
    let raw = data("rfc6376-3.4.6.txt");
    let mut out: HashMap<String, Vec<u8>> = HashMap::new();
    let mut current = String::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(rest.len(), |p| p + 2);
        let line = &rest[..end];
        rest = &rest[end..];
        if let Some(name) = line.strip_prefix(b"== ") {
            current = String::from_utf8_lossy(name).trim().to_string();
            out.insert(current.clone(), Vec::new());
        } else {
            out.get_mut(&current).unwrap().extend_from_slice(line);
        }
    }
    out
}

#[test]
fn rfc6376_canonicalization_example() {
    let s = sections();
    let input = &s["input"];
    let msg = Message::parse(input).unwrap();
    for (kind, hname, bname) in [
        (Canonicalization::Relaxed, "relaxed-headers", "relaxed-body"),
        (Canonicalization::Simple, "simple-headers", "simple-body"),
    ] {
        let mut h = Vec::new();
        for f in msg.headers() {
            match kind {
                Canonicalization::Relaxed => canonicalize_header_relaxed(f, &mut h),
                Canonicalization::Simple => canonicalize_header_simple(f, &mut h),
            }
        }
        assert_eq!(
            String::from_utf8_lossy(&h),
            String::from_utf8_lossy(&s[hname]),
            "{hname}"
        );
        let mut c = BodyCanonicalizer::new(kind);
        let mut b = Vec::new();
        c.update(msg.body(), &mut |x: &[u8]| b.extend_from_slice(x));
        c.finish(&mut |x: &[u8]| b.extend_from_slice(x));
        assert_eq!(
            String::from_utf8_lossy(&b),
            String::from_utf8_lossy(&s[bname]),
            "{bname}"
        );
    }
}
