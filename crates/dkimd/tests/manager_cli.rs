//! Manager commands that need no DNS: settings, rules, key import, store
//! safety, configuration errors.
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
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(state: &Path, args: &[&str]) -> Output {
    dkimd()
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn state() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let s = t.path().join("state");
    (t, s)
}

#[test]
fn settings_show_set_and_refuse_bad_values() {
    let (_t, s) = state();
    let o = run(&s, &["--json", "settings"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["signing"], "off", "signing is off on a fresh install");
    assert_eq!(v["verify"], "on", "verification is on on a fresh install");
    assert_eq!(v["default-domains"], "dns-and-mail");
    assert_eq!(v["algorithms"], "rsa,ed25519");
    assert_eq!(v["policy-fail"], "accept");
    assert!(run(&s, &["set", "policy-fail", "reject"]).status.success());
    assert!(run(
        &s,
        &["set", "excluded-domains", "*.test.example,private.org"]
    )
    .status
    .success());
    let v: serde_json::Value =
        serde_json::from_slice(&run(&s, &["--json", "settings"]).stdout).unwrap();
    assert_eq!(v["policy-fail"], "reject");
    assert_eq!(v["excluded-domains"], "*.test.example,private.org");
    for (k, val) in [
        ("policy-fail", "bounce"),
        ("rsa-bits", "1024"),
        ("selector", "x"),
        ("nonsense", "1"),
        ("extra-domains", "not_a_domain"),
    ] {
        let o = run(&s, &["set", k, val]);
        assert_eq!(o.status.code(), Some(2), "{k} {val}: {}", text(&o));
    }
}

#[test]
fn domain_rules_as_listed() {
    let (_t, s) = state();
    for args in [
        vec!["domain", "add", "both.com"],
        vec!["domain", "add", "dnsonly.com", "--mail", "off"],
        vec![
            "domain",
            "add",
            "neither.com",
            "--dns",
            "off",
            "--mail",
            "off",
        ],
        vec![
            "domain",
            "add",
            "forced.com",
            "--dns",
            "off",
            "--mail",
            "off",
            "--dkim",
            "always",
        ],
        vec!["domain", "add", "blocked.com", "--dkim", "never"],
        vec!["domain", "add", "a.skip.example"],
    ] {
        let o = run(&s, &args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    run(&s, &["set", "excluded-domains", "*.skip.example"]);
    let signs = |s: &Path| -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&run(s, &["--json", "domain", "list"]).stdout).unwrap();
        v["domains"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["signs"] == true)
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(signs(&s), ["both.com", "forced.com"]);
    run(&s, &["set", "default-domains", "all-dns"]);
    assert_eq!(signs(&s), ["both.com", "dnsonly.com", "forced.com"]);
    run(&s, &["set", "default-domains", "all"]);
    assert_eq!(
        signs(&s),
        ["both.com", "dnsonly.com", "forced.com", "neither.com"]
    );
    run(&s, &["set", "default-domains", "opt-in"]);
    assert_eq!(signs(&s), ["forced.com"]);
    // Duplicates and unknown domains are usage errors.
    assert_eq!(
        run(&s, &["domain", "add", "both.com"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&s, &["domain", "remove", "nope.com"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&s, &["domain", "add", "bad_name.com"]).status.code(),
        Some(2)
    );
}

#[test]
fn key_import_pkcs1_pkcs8_rsa_ed25519() {
    let (t, s) = state();
    assert!(run(&s, &["domain", "add", "example.com"]).status.success());
    let have_openssl = require_peer("openssl", Command::new("openssl").arg("version"));
    if !have_openssl {
        return;
    }
    for (name, args) in [
        ("pkcs1-rsa.pem", vec!["genrsa", "-traditional", "-out"]),
        (
            "pkcs8-rsa.pem",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ],
        ),
        (
            "pkcs8-ed.pem",
            vec!["genpkey", "-algorithm", "ED25519", "-out"],
        ),
    ] {
        let f = t.path().join(name);
        let mut a = args.clone();
        let fs = f.to_str().unwrap().to_string();
        a.push(&fs);
        if name == "pkcs1-rsa.pem" {
            a.push("2048");
        }
        let o = Command::new("openssl").args(&a).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            std::fs::read_to_string(&f)
                .unwrap()
                .contains("BEGIN RSA PRIVATE KEY"),
            name == "pkcs1-rsa.pem"
        );
        // Others can read it: refused.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = run(&s, &["key", "import", "example.com", &fs]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o).contains("must not be readable"), "{}", text(&o));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Each under its own selector, kept exactly (two keys that sign
        // for one domain cannot share a record name).
        let sel = name.trim_end_matches(".pem").to_string();
        let o = run(
            &s,
            &["key", "import", "example.com", &fs, "--selector", &sel],
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        let v: serde_json::Value =
            serde_json::from_slice(&run(&s, &["--json", "key", "show", "example.com"]).stdout)
                .unwrap();
        assert!(
            v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["selector"] == sel.as_str()),
            "{name}: {v}"
        );
        // The public key dkimd shows is openssl's.
        let pubder = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in", &fs])
            .output()
            .unwrap()
            .stdout;
        let v: serde_json::Value =
            serde_json::from_slice(&run(&s, &["--json", "key", "show", "example.com"]).stdout)
                .unwrap();
        let shown: Vec<String> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["public_key"].as_str().unwrap().to_string())
            .collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let expect = if name.contains("ed") {
            b64.encode(&pubder[pubder.len() - 32..])
        } else {
            b64.encode(&pubder)
        };
        assert!(shown.contains(&expect), "{name}: {shown:?}");
        // Never the private key.
        assert!(
            !String::from_utf8_lossy(&run(&s, &["key", "show", "example.com"]).stdout)
                .contains("PRIVATE")
        );
    }
}

#[test]
fn damaged_or_exposed_store_is_refused_and_left_alone() {
    let (_t, s) = state();
    assert!(run(&s, &["domain", "add", "example.com"]).status.success());
    let db = s.join("dkimd.sqlite");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&s, &["domain", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("must not be accessible to group or others"),
        "{}",
        text(&o)
    );
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Overwrite the store with garbage: a clear error, and the file is not touched.
    let _ = std::fs::remove_file(s.join("dkimd.sqlite-wal"));
    let _ = std::fs::remove_file(s.join("dkimd.sqlite-shm"));
    let garbage = b"garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage".repeat(20);
    std::fs::write(&db, &garbage).unwrap();
    for args in [
        vec!["domain", "list"],
        vec!["domain", "add", "x.com"],
        vec!["enable"],
    ] {
        let o = run(&s, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            text(&o).contains("damaged or not a dkimd store"),
            "{}",
            text(&o)
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            garbage,
            "the damaged store is left as it was"
        );
    }
}

#[test]
fn configuration_errors_name_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("dkimd.toml");
    std::fs::write(&cfg, "state_dir = \"/tmp/x\"\n[dns]\ntimeout = \"soon\"\n").unwrap();
    let o = dkimd()
        .arg("--config")
        .arg(&cfg)
        .args(["status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains(&format!("{}:3:", cfg.display())),
        "{}",
        text(&o)
    );
    let o = dkimd()
        .args(["--config", "/nonexistent/dkimd.toml", "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn sample_config_parses() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dkimd.toml");
    let t = tempfile::tempdir().unwrap();
    // The sample names /var/lib/dkimd; point the state at a temp dir.
    let o = dkimd()
        .arg("--config")
        .arg(&sample)
        .arg("--state-dir")
        .arg(t.path().join("s"))
        .args(["--json", "settings"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
