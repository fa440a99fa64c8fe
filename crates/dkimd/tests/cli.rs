//! The command line: exit codes, error messages, files written.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const MSG: &[u8] =
    b"From: Joe <joe@example.com>\r\nTo: x@example.net\r\nSubject: cli\r\n\r\nHello\r\n";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn keygen(dir: &std::path::Path, alg: &str) -> (std::path::PathBuf, String) {
    let k = common::keygen(dir, alg, "s1");
    (k.path, k.record)
}

#[test]
fn keygen_writes_0600_key_openssl_reads_and_refuses_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    for alg in ["rsa", "ed25519"] {
        let (key, record) = keygen(&out, alg);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(
            record.starts_with(&format!("v=DKIM1; k={alg}; p=")),
            "{record}"
        );
        let o = std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&key)
            .output();
        if let Ok(o) = o {
            assert!(
                o.status.success(),
                "openssl cannot read {}: {}",
                key.display(),
                stderr(&o)
            );
        }
        let again = dkimd()
            .args([
                "keygen",
                "--algorithm",
                alg,
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(1));
        assert!(
            stderr(&again).contains("already exists"),
            "{}",
            stderr(&again)
        );
    }
    // The zone-file line splits the RSA record into strings of at most 255 bytes.
    let txt = std::fs::read_to_string(out.join("example.com.s1.rsa.txt")).unwrap();
    assert!(
        txt.starts_with("s1._domainkey.example.com. 3600 IN TXT ( \""),
        "{txt}"
    );
    for part in txt.split('"').skip(1).step_by(2) {
        assert!(part.len() <= 255);
    }
}

#[test]
fn keygen_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "keygen",
            "--algorithm",
            "rsa",
            "--bits",
            "1024",
            "--domain",
            "example.com",
            "--selector",
            "s",
        ],
        vec!["keygen", "--domain", "bad_domain", "--selector", "s"],
        vec![
            "keygen",
            "--domain",
            "example.com",
            "--selector",
            "bad selector",
        ],
        vec![
            "keygen",
            "--algorithm",
            "dsa",
            "--domain",
            "example.com",
            "--selector",
            "s",
        ],
        vec!["keygen", "--domain", "example.com"],
    ] {
        let o = dkimd()
            .args(&args)
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

#[test]
fn sign_refuses_bad_keys_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "ed25519");
    // Readable by others.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_with_input(
        dkimd()
            .args([
                "sign",
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--key",
            ])
            .arg(&key),
        MSG,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("must not be readable"),
        "{}",
        stderr(&o)
    );
    // Not a key.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello\n").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run_with_input(
        dkimd()
            .args([
                "sign",
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--key",
            ])
            .arg(&junk),
        MSG,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a PEM file"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    // A 1024-bit RSA key (RFC 8463's example key) is too small to sign with.
    let small = dir.path().join("small.pem");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../dkim/tests/data/rfc8463/rsa.key.pem"),
        &small,
    )
    .unwrap();
    std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run_with_input(
        dkimd()
            .args([
                "sign",
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--key",
            ])
            .arg(&small),
        MSG,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("too small"), "{}", stderr(&o));
    // Missing file.
    let o = run_with_input(
        dkimd().args([
            "sign",
            "--domain",
            "example.com",
            "--selector",
            "s1",
            "--key",
            "/nonexistent",
        ]),
        MSG,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent"), "{}", stderr(&o));
}

#[test]
fn sign_rejects_non_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "ed25519");
    for (input, want) in [
        (&b"this is not a mail message\n"[..], "not a mail message"),
        (b"%PDF-1.4\x00\x01\x02", "not a mail message"),
        (b"Subject: no from\r\n\r\nbody\r\n", "no From"),
        (b"", "no message"),
    ] {
        let o = run_with_input(
            dkimd()
                .args([
                    "sign",
                    "--domain",
                    "example.com",
                    "--selector",
                    "s1",
                    "--key",
                ])
                .arg(&key),
            input,
        );
        assert_ne!(o.status.code(), Some(0), "{input:?}");
        assert!(stderr(&o).contains(want), "{input:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
        assert!(o.stdout.is_empty(), "nothing is written on error");
    }
}

#[test]
fn sign_keeps_unix_line_ends_and_verify_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = keygen(dir.path(), "rsa");
    let unix = b"From: joe@example.com\nSubject: unix\n\nbody line\n";
    let o = run_with_input(
        dkimd()
            .args([
                "sign",
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--time",
                "1795500000",
                "--key",
            ])
            .arg(&key),
        unix,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!o.stdout.contains(&b'\r'));
    assert!(o.stdout.ends_with(unix));
    let dns = dir.path().join("dns.txt");
    write_dns_file(&dns, &[("s1._domainkey.example.com".into(), record)]);
    let v = run_with_input(dkimd().args(["verify", "--dns-file"]).arg(&dns), &o.stdout);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

#[test]
fn verify_exit_codes_json_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = keygen(dir.path(), "ed25519");
    let dns = dir.path().join("dns.txt");
    write_dns_file(&dns, &[("s1._domainkey.example.com".into(), record)]);
    let signed = run_with_input(
        dkimd()
            .args([
                "sign",
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--time",
                "1000000000",
                "--expire",
                "86400",
                "--key",
            ])
            .arg(&key),
        MSG,
    )
    .stdout;
    // As of signing time: pass, exit 0.
    let o = run_with_input(
        dkimd()
            .args([
                "verify",
                "--time",
                "1000000100",
                "--authserv-id",
                "mx.test",
                "--dns-file",
            ])
            .arg(&dns),
        &signed,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.starts_with("pass d=example.com s=s1 a=ed25519-sha256"),
        "{out}"
    );
    assert!(
        out.contains(
            "Authentication-Results: mx.test;\r\n\tdkim=pass header.d=example.com header.s=s1"
        ),
        "{out}"
    );
    // Now: expired, exit 1.
    let o = run_with_input(
        dkimd().args(["verify", "--json", "--dns-file"]).arg(&dns),
        &signed,
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"][0]["result"], "fail");
    assert_eq!(v["results"][0]["reason"], "signature expired");
    // Unsigned: dkim=none, exit 1.
    let o = run_with_input(dkimd().args(["verify", "--dns-file"]).arg(&dns), MSG);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("dkim=none"));
}

/// An Ed25519 record that carries the key wrapped in SubjectPublicKeyInfo
/// (44 bytes, as `openssl pkey -pubout` writes it) instead of RFC 8463's
/// bare 32 bytes: dkimd says permerror and names the form, as dkimpy
/// refuses it too; the bare form of the same key passes.
#[test]
fn ed25519_record_in_spki_form_is_a_permerror() {
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = keygen(dir.path(), "ed25519");
    let der = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(der.status.success(), "{}", stderr(&der));
    assert_eq!(der.stdout.len(), 44);
    use base64::Engine;
    let wrapped = format!(
        "v=DKIM1; k=ed25519; p={}",
        base64::engine::general_purpose::STANDARD.encode(&der.stdout)
    );
    let signed = run_with_input(
        dkimd()
            .args([
                "sign",
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--key",
            ])
            .arg(&key),
        MSG,
    )
    .stdout;
    let msg = dir.path().join("signed.eml");
    std::fs::write(&msg, &signed).unwrap();
    for (rec, want) in [(record, "pass"), (wrapped, "permerror")] {
        let dns = dir.path().join("dns.txt");
        write_dns_file(&dns, &[("s1._domainkey.example.com".into(), rec.clone())]);
        let o = run_with_input(
            dkimd().args(["verify", "--json", "--dns-file"]).arg(&dns),
            &signed,
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["results"][0]["result"], want, "{rec}: {v}");
        if want == "permerror" {
            assert_eq!(o.status.code(), Some(1));
            let reason = v["results"][0]["reason"].as_str().unwrap();
            assert!(
                reason.contains(
                    "SubjectPublicKeyInfo form (44 bytes); RFC 8463 requires the bare 32-byte key"
                ),
                "{reason}"
            );
        }
        if have_dkimpy() {
            let r = dkimpy_verify(&dns, std::slice::from_ref(&msg));
            assert_eq!(r[0].1, want == "pass", "dkimpy on {rec}: {}", r[0].2);
        }
    }
}

#[test]
fn verify_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "# comment\n\nname-without-tab value\n").unwrap();
    let o = run_with_input(dkimd().args(["verify", "--dns-file"]).arg(&bad), MSG);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.txt:3:"), "{}", stderr(&o));
    // A byte that is not UTF-8 on line 2: exit 2, file and line.
    std::fs::write(&bad, b"a\tb\nname\t\xff\n").unwrap();
    let o = run_with_input(dkimd().args(["verify", "--dns-file"]).arg(&bad), MSG);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bad.txt:2: not UTF-8 text"),
        "{}",
        stderr(&o)
    );
    // Nothing on standard input: a usage error, exit 2, as documented.
    std::fs::write(&bad, "a\tb\n").unwrap();
    let o = run_with_input(dkimd().args(["verify", "--dns-file"]).arg(&bad), b"");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no message on standard input"));
    let o = run_with_input(
        dkimd().args([
            "verify",
            "--dns-file",
            "/nonexistent",
            "--nameserver",
            "127.0.0.1:53",
        ]),
        MSG,
    );
    assert_eq!(o.status.code(), Some(2));
    let o = run_with_input(
        dkimd().args(["verify", "--nameserver", "not-an-address"]),
        MSG,
    );
    assert_eq!(o.status.code(), Some(2));
    let o = run_with_input(dkimd().args(["frobnicate"]), MSG);
    assert_eq!(o.status.code(), Some(2));
}

/// Every subcommand and long flag that `--help` shows is in the guide.
#[test]
fn man_page_documents_every_flag() {
    let man = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dkimd.7"),
    )
    .unwrap()
    .replace("\\-", "-");
    for sub in ["keygen", "sign", "verify"] {
        assert!(
            man.contains(&format!(".B {sub}")) || man.contains(&format!("dkimd {sub}")),
            "{sub}"
        );
        let help = dkimd().args([sub, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        for word in text.split_whitespace() {
            let flag = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            if flag.starts_with("--") && flag.len() > 2 {
                assert!(
                    man.contains(flag),
                    "docs/dkimd.7 does not mention {sub} {flag}"
                );
            }
        }
    }
}

/// `dkimd generate man` writes a page for dkimd and for every subcommand
/// `--help` lists (down to `migrate opendkim`), each naming every long
/// flag of that subcommand's `--help`; `generate completions` writes
/// bash, zsh and fish completions that know the subcommands.
#[test]
fn generated_man_pages_and_completions_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let o = dkimd()
        .args(["generate", "man"])
        .arg(&man)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // The subcommands as `--help` lists them, one level down too.
    let subs = |args: &[&str]| -> Vec<String> {
        let o = dkimd().args(args).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let Some(list) = text.split("Commands:\n").nth(1) else {
            return Vec::new();
        };
        list.lines()
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(str::to_string)
            .collect()
    };
    let top = subs(&[]);
    assert!(top.contains(&"migrate".to_string()), "{top:?}");
    let mut pages = vec![Vec::<String>::new()];
    for t in &top {
        pages.push(vec![t.clone()]);
        for s in subs(&[t]) {
            pages.push(vec![t.clone(), s]);
        }
    }
    assert!(pages
        .iter()
        .any(|p| p == &["migrate".to_string(), "opendkim".to_string()]));
    for p in pages {
        let name = std::iter::once("dkimd".to_string())
            .chain(p.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let page = std::fs::read_to_string(man.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"))
            .replace("\\-", "-");
        let args: Vec<&str> = p.iter().map(String::as_str).collect();
        let help = dkimd().args(&args).arg("--help").output().unwrap();
        for word in String::from_utf8_lossy(&help.stdout).split_whitespace() {
            let flag = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            if flag.starts_with("--") && flag.len() > 2 {
                assert!(page.contains(flag), "{name}.1 lacks {flag}");
            }
        }
    }
    let comp = dir.path().join("completions");
    let o = dkimd()
        .args(["generate", "completions"])
        .arg(&comp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    for f in ["dkimd.bash", "_dkimd", "dkimd.fish"] {
        let text = std::fs::read_to_string(comp.join(f)).unwrap();
        assert!(text.contains("migrate") && text.contains("opendkim"), "{f}");
    }
}
