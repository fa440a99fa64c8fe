//! dkimd against independent DKIM implementations: what dkimd signs, dkimpy
//! and OpenDKIM accept; what dkimpy signs, dkimd accepts; tampering makes all
//! of them fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

struct Key {
    path: PathBuf,
    selector: &'static str,
    record: String,
}

fn keygen(dir: &std::path::Path, alg: &str, selector: &'static str) -> Key {
    let k = common::keygen(dir, alg, selector);
    Key {
        path: k.path,
        selector,
        record: k.record,
    }
}

fn dkimd_verify(dns: &std::path::Path, msg: &[u8]) -> (bool, String) {
    let out = run_with_input(
        dkimd()
            .args(["verify", "--time", "1795500000", "--dns-file"])
            .arg(dns),
        msg,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "dkimd verify crashed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code() == Some(0), text)
}

#[test]
fn dkimd_signatures_pass_dkimpy_and_opendkim_and_tampering_fails() {
    let dkimpy = have_dkimpy();
    let opendkim = have_opendkim();
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        keygen(dir.path(), "rsa", "rsa2026"),
        keygen(dir.path(), "ed25519", "ed2026"),
    ];
    let dns = dir.path().join("dns.txt");
    write_dns_file(
        &dns,
        &keys
            .iter()
            .map(|k| {
                (
                    format!("{}._domainkey.example.com", k.selector),
                    k.record.clone(),
                )
            })
            .collect::<Vec<_>>(),
    );
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for key in &keys {
        for canon in ["relaxed/relaxed", "simple/simple"] {
            for (name, body) in test_bodies() {
                let msg = test_message(name, &body);
                let out = run_with_input(
                    dkimd()
                        .args([
                            "sign",
                            "--domain",
                            "example.com",
                            "--selector",
                            key.selector,
                            "-c",
                            canon,
                            "--time",
                            "1795500000",
                            "--key",
                        ])
                        .arg(&key.path),
                    &msg,
                );
                assert!(
                    out.status.success(),
                    "sign {name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let signed = out.stdout;
                assert!(
                    signed.ends_with(&msg),
                    "the message follows the signature unchanged"
                );
                let tag = format!("{}-{}-{}", key.selector, canon.replace('/', "-"), name);
                let f = dir.path().join(format!("{tag}.eml"));
                std::fs::write(&f, &signed).unwrap();
                good.push(f);
                for (what, t) in tampered(&signed) {
                    let f = dir.path().join(format!("{tag}-tampered-{what}.eml"));
                    std::fs::write(&f, &t).unwrap();
                    bad.push(f);
                }
            }
        }
    }
    assert_eq!(good.len(), 2 * 2 * 7);

    // dkimd itself.
    for f in &good {
        let (ok, text) = dkimd_verify(&dns, &std::fs::read(f).unwrap());
        assert!(ok, "dkimd rejects its own {}: {text}", f.display());
    }
    for f in &bad {
        let (ok, text) = dkimd_verify(&dns, &std::fs::read(f).unwrap());
        assert!(!ok, "dkimd accepts tampered {}: {text}", f.display());
        assert!(text.starts_with("fail"), "{text}");
    }
    if dkimpy {
        for (f, ok, reason) in dkimpy_verify(&dns, &good) {
            assert!(ok, "dkimpy rejects {}: {reason}", f.display());
        }
        for (f, ok, _) in dkimpy_verify(&dns, &bad) {
            assert!(!ok, "dkimpy accepts tampered {}", f.display());
        }
    }
    if opendkim {
        for f in &good {
            let (ok, text) = opendkim_verify(dir.path(), &dns, f);
            assert!(ok, "opendkim rejects {}: {text}", f.display());
        }
        for f in &bad {
            let (ok, text) = opendkim_verify(dir.path(), &dns, f);
            assert!(!ok, "opendkim accepts tampered {}: {text}", f.display());
        }
    }
}

#[test]
fn dkimpy_signatures_pass_dkimd_and_tampering_fails() {
    if !have_dkimpy() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    let mut keys = Vec::new();
    for (ktype, sel, alg) in [
        ("rsa", "pyrsa", "rsa-sha256"),
        ("ed25519", "pyed", "ed25519-sha256"),
    ] {
        let out = Command::new("/usr/bin/dknewkey")
            .current_dir(dir.path())
            .args(["--ktype", ktype, sel])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dknewkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record = std::fs::read_to_string(dir.path().join(format!("{sel}.dns"))).unwrap();
        records.push((
            format!("{sel}._domainkey.example.com"),
            record.trim().to_string(),
        ));
        keys.push((dir.path().join(format!("{sel}.key")), sel, alg));
    }
    let dns = dir.path().join("dns.txt");
    write_dns_file(&dns, &records);
    let mut count = 0;
    for (key, sel, alg) in &keys {
        for canon in ["relaxed/relaxed", "simple/simple"] {
            for (name, body) in test_bodies() {
                let input = dir.path().join(format!("{name}.in"));
                std::fs::write(&input, test_message(name, &body)).unwrap();
                let output = dir
                    .path()
                    .join(format!("{sel}-{}-{name}.eml", canon.replace('/', "-")));
                let st = Command::new("/usr/bin/python3")
                    .arg(dkimpy_tool())
                    .args(["sign"])
                    .arg(key)
                    .args(["example.com", sel, alg, canon])
                    .arg(&input)
                    .arg(&output)
                    .output()
                    .unwrap();
                assert!(
                    st.status.success(),
                    "dkimpy sign: {}",
                    String::from_utf8_lossy(&st.stderr)
                );
                let signed = std::fs::read(&output).unwrap();
                let (ok, text) = dkimd_verify(&dns, &signed);
                assert!(ok, "dkimd rejects dkimpy's {}: {text}", output.display());
                assert!(text.contains(&format!("a={alg}")), "{text}");
                for (what, t) in tampered(&signed) {
                    let (ok, text) = dkimd_verify(&dns, &t);
                    assert!(
                        !ok,
                        "dkimd accepts dkimpy's {} tampered in the {what}: {text}",
                        output.display()
                    );
                }
                count += 1;
            }
        }
    }
    assert_eq!(count, 28);
}
