//! `dkimd verify --nameserver` against a real BIND serving the key records
//! exactly as `dkimd keygen` writes them for a zone file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::{have_named, zone_file, Named};
use common::*;

const MSG: &[u8] =
    b"From: Joe <joe@example.com>\r\nTo: x@example.net\r\nSubject: dns\r\n\r\nHello over DNS\r\n";

#[test]
fn verify_fetches_keys_from_a_real_nameserver() {
    if !have_named() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut zone_lines = Vec::new();
    let mut records = Vec::new();
    for (alg, sel) in [("rsa", "rsa2026"), ("ed25519", "ed2026")] {
        let k = keygen(dir.path(), alg, sel);
        zone_lines.push(k.zone_line);
        records.push((sel, k.record, k.path.display().to_string()));
    }
    let named = Named::start(&[("example.com", zone_file("example.com", 1, &zone_lines))]);

    // named serves the zone-file text keygen printed, joined back to the record.
    for (sel, record, _) in &records {
        let served = named.dig_txt(&format!("{sel}._domainkey.example.com"));
        assert_eq!(served, vec![record.clone()], "{sel}");
    }

    // Sign with both keys, verify through DNS.
    let mut signed = MSG.to_vec();
    for (sel, _, key) in &records {
        let o = run_with_input(
            dkimd().args([
                "sign",
                "--domain",
                "example.com",
                "--selector",
                sel,
                "--key",
                key,
            ]),
            &signed,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        signed = o.stdout;
    }
    let o = run_with_input(
        dkimd().args(["verify", "--json", "--nameserver", &named.addr()]),
        &signed,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["result"] == "pass"), "{v}");

    // A selector with no record: permerror, exit 1.
    let o = run_with_input(
        dkimd().args([
            "sign",
            "--domain",
            "example.com",
            "--selector",
            "missing",
            "--key",
            &records[1].2,
        ]),
        MSG,
    );
    let o = run_with_input(
        dkimd().args(["verify", "--nameserver", &named.addr()]),
        &o.stdout,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.starts_with("permerror d=example.com s=missing"),
        "{out}"
    );
    assert!(
        out.contains("no key record at missing._domainkey.example.com"),
        "{out}"
    );
}

#[test]
fn verify_reports_temperror_when_dns_does_not_answer() {
    // A UDP socket that never answers, and no TCP listener on its port.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let k = keygen(dir.path(), "ed25519", "s");
    let key = k.path.to_str().unwrap();
    let signed = run_with_input(
        dkimd().args([
            "sign",
            "--domain",
            "example.com",
            "--selector",
            "s",
            "--key",
            key,
        ]),
        MSG,
    )
    .stdout;
    let o = run_with_input(
        dkimd().args(["verify", "--dns-timeout", "1", "--nameserver", &addr]),
        &signed,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.starts_with("temperror"), "{out}");
    assert!(out.contains("dkim=temperror"), "{out}");
}
