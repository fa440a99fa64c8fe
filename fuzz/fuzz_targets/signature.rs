//! DKIM-Signature values: never panic; what parses formats and parses back
//! to the same signature. Input bytes are mapped onto the grammar's alphabet
//! half of the time, so that the fuzzer reaches past the tag list.
#![no_main]
use libfuzzer_sys::fuzz_target;

const TOKENS: [&str; 32] = [
    "v=1", "a=rsa-sha256", "a=ed25519-sha256", "a=rsa-sha1", "b=", "bh=", "c=relaxed/relaxed",
    "c=simple", "d=example.com", "s=sel", "h=from:to", "h=From : Subject", "i=@example.com",
    "i=joe@sub.example.com", "l=10", "l=99999999999999999999999", "q=dns/txt", "t=1700000000",
    "x=1700000001", "z=From:a|To:b", "AAAA", "dGVzdA==", ";", "; ", "\r\n\t", " ", "=", ":",
    "x", "@", "\u{e9}", "",
];

fuzz_target!(|data: &[u8]| {
    let input: Vec<u8> = match data.split_first() {
        Some((first, rest)) if first & 1 == 1 => rest
            .iter()
            .flat_map(|b| TOKENS[usize::from(*b) % TOKENS.len()].bytes())
            .collect(),
        _ => data.to_vec(),
    };
    if let Ok(sig) = dkim::DkimSignature::parse(&input) {
        let formatted = sig.format_value();
        let back = dkim::DkimSignature::parse(formatted.as_bytes()).expect("formatted signature parses");
        assert_eq!(back, sig);
    }
});
