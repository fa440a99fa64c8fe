//! DNS faults during verification: SERVFAIL, garbage, truncated answers,
//! several TXT records, silence. Results follow RFC 6376 §6.1.2 and
//! nothing waits past its timeout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::fakedns::{FakeDns, Fault};
use common::*;
use std::time::{Duration, Instant};

const MSG: &[u8] =
    b"From: Joe <joe@example.com>\r\nTo: x@example.net\r\nSubject: faults\r\n\r\nbody\r\n";

fn signed() -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let k = keygen(dir.path(), "ed25519", "s");
    let key = k.path.display().to_string();
    let record = k.record;
    let s = run_with_input(
        dkimd().args([
            "sign",
            "--domain",
            "example.com",
            "--selector",
            "s",
            "--key",
            &key,
        ]),
        MSG,
    )
    .stdout;
    (s, record)
}

fn verify(dns: &str, msg: &[u8]) -> (Option<i32>, String, Duration) {
    let t = Instant::now();
    let o = run_with_input(
        dkimd().args(["verify", "--dns-timeout", "1", "--nameserver", dns]),
        msg,
    );
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        t.elapsed(),
    )
}

#[test]
fn faults_map_to_temperror_and_permerror() {
    let (msg, record) = signed();
    for (fault, want) in [
        (Fault::ServFail, "temperror"),
        (Fault::Garbage, "temperror"),
        (Fault::Truncated, "temperror"),
        (Fault::Txt(vec!["not a dkim key".into()]), "permerror"),
        (
            Fault::Txt(vec!["v=DKIM1; k=ed25519; p=".into()]),
            "permerror",
        ),
        (
            Fault::Txt(vec!["v=spf1 -all".into(), record.clone()]),
            "pass",
        ),
        (Fault::Txt(vec![record.clone(), record.clone()]), "pass"),
    ] {
        let dns = FakeDns::start(fault.clone());
        let (code, out, took) = verify(&dns.addr, &msg);
        assert!(out.starts_with(want), "{fault:?}: {out}");
        assert_eq!(
            code,
            Some(if want == "pass" { 0 } else { 1 }),
            "{fault:?}: {out}"
        );
        assert!(took < Duration::from_secs(10), "{fault:?} took {took:?}");
    }
}

#[test]
fn silence_ends_in_temperror_within_the_timeout() {
    let (msg, _) = signed();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (code, out, took) = verify(&addr, &msg);
    assert_eq!(code, Some(1));
    assert!(out.starts_with("temperror"), "{out}");
    // --dns-timeout 1, two attempts over UDP and TCP: well under 10 s.
    assert!(took < Duration::from_secs(10), "{took:?}");
}
