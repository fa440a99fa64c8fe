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
    // --dns-timeout is the total: the lookups are given up after it, not
    // after each of the resolver's tries.
    assert!(out.contains("key lookups timed out after 1 s"), "{out}");
}

/// A published Ed25519 record whose key is wrapped in SubjectPublicKeyInfo
/// (as `openssl pkey -pubout` writes it) is flagged by `dkimd status` as
/// being in the wrong form, with the record to publish instead.
#[test]
fn status_flags_an_ed25519_record_in_spki_form() {
    if !have_named() {
        return;
    }
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let env = common::env::SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "w1");
    let rsa_name = "w1._domainkey.example.com";
    let ed_name = "w1-ed25519._domainkey.example.com";
    let rsa = env.named.dig_txt(rsa_name).remove(0);
    let ed = env.named.dig_txt(ed_name).remove(0);
    let raw = ed.rsplit_once("p=").unwrap().1.to_string();
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(&b64.decode(&raw).unwrap());
    let wrapped = ed.replace(&raw, &b64.encode(&spki));
    // The zone again, with the wrapped record and a higher serial.
    let serial = env.named.serial("example.com").unwrap();
    let quoted = |v: &str| {
        v.as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let text = zone_file(
        "example.com",
        serial + 1,
        &[
            format!("{rsa_name}. 300 IN TXT {}", quoted(&rsa)),
            format!("{ed_name}. 300 IN TXT {}", quoted(&wrapped)),
        ],
    );
    std::fs::write(env.named.zone_file("example.com"), text).unwrap();
    let reload = env.named.rndc_reload("example.com");
    assert!(std::process::Command::new(&reload[0])
        .args(&reload[1..])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while env.named.serial("example.com") != Some(serial + 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the zone was not reloaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(env.named.dig_txt(ed_name), vec![wrapped]);
    let o = dkimd()
        .arg("--config")
        .arg(&env.config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    let keys = v["domains"][0]["keys"].as_array().unwrap();
    let state = |sel: &str| {
        let k = keys.iter().find(|k| k["selector"] == sel).unwrap();
        (
            k["dns"].as_str().unwrap().to_string(),
            k["record"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(state("w1").0, "ok");
    let (dns, record) = state("w1-ed25519");
    assert!(
        dns.starts_with("wrong form: the Ed25519 key is published in SubjectPublicKeyInfo form"),
        "{dns}"
    );
    assert_eq!(record, ed, "the record to publish is the bare form");
    assert_eq!(o.status.code(), Some(1), "a problem: exit 1");
}
