//! Properties over random input: the parsers and the verifier never panic,
//! and what they accept survives a format → parse round trip. (The fuzz
//! targets in fuzz/ explore the same ground coverage-guided.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use proptest::prelude::*;
use std::collections::HashMap;

/// Bytes drawn from the DKIM grammar's alphabet, so that random input gets
/// past the first `=` and `;` often.
fn grammar_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tokens: Vec<&'static [u8]> = vec![
        b"v=1",
        b"a=rsa-sha256",
        b"a=ed25519-sha256",
        b"b=",
        b"bh=",
        b"c=relaxed/relaxed",
        b"c=simple",
        b"d=example.com",
        b"s=sel",
        b"h=from:to",
        b"i=@example.com",
        b"l=10",
        b"q=dns/txt",
        b"t=1700000000",
        b"x=1700000001",
        b"k=rsa",
        b"k=ed25519",
        b"p=",
        b"t=s:y",
        b"AAAA",
        b";",
        b"; ",
        b"\r\n\t",
        b" ",
        b"=",
        b":",
        b"\xc3\xa9",
        b"\x00",
    ];
    proptest::collection::vec(proptest::sample::select(tokens), 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn tag_list_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = dkim::parse_tag_list(&data);
    }

    #[test]
    fn signature_round_trips(data in grammar_bytes()) {
        if let Ok(sig) = dkim::DkimSignature::parse(&data) {
            let back = dkim::DkimSignature::parse(sig.format_value().as_bytes()).unwrap();
            prop_assert_eq!(back, sig);
        }
    }

    #[test]
    fn key_record_never_panics(data in grammar_bytes()) {
        let text = String::from_utf8_lossy(&data);
        if let Ok(r) = dkim::KeyRecord::parse(&text) {
            let back = dkim::KeyRecord::parse(&r.to_string()).unwrap();
            prop_assert_eq!(back.public_key, r.public_key);
        }
    }

    #[test]
    fn message_and_verifier_never_panic(
        head in proptest::collection::vec(proptest::sample::select(vec![
            &b"From: a@example.com\r\n"[..], b"DKIM-Signature: ", b"v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA; b=AAAA",
            b"; l=3", b"; x=1", b"\r\n", b" ", b"\r\n\r\n", b"X: y\r\n", b":", b"\n",
        ]), 0..20),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut data = head.concat();
        data.extend_from_slice(&body);
        if let Ok(msg) = dkim::Message::parse(&data) {
            let keys: HashMap<String, Vec<String>> = HashMap::new();
            let mut v = dkim::Verifier::default().start(msg.headers(), 1_700_000_000);
            v.body(msg.body());
            let r = v.finish(&keys);
            prop_assert!(!r.is_empty());
        }
    }
}
