//! RFC 2136 publishing against Knot DNS (the BIND case is in manager.rs):
//! records added, a stale one replaced, all removed on disable, and a key
//! statement file as the TSIG secret.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::knot::{have_knot, Knot};
use common::*;
use std::process::Command;

#[test]
fn enable_replace_disable_with_knot() {
    if !have_knot() {
        return;
    }
    let knot = Knot::start(
        "knot.example",
        "$TTL 300\n@ IN SOA ns1.knot.example. hostmaster.knot.example. 1 3600 600 86400 300\n  IN NS ns1.knot.example.\nns1 IN A 127.0.0.1\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("dkimd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[dns]\nnameservers = [\"{addr}\"]\ntimeout = 2\n\
             [[publish.zone]]\nname = \"knot.example\"\nbackend = \"rfc2136\"\nserver = \"{addr}\"\ntsig_key_name = \"dkimd-key\"\ntsig_secret_file = \"{}\"\n",
            tmp.path().join("state").display(),
            knot.tsig_secret_file.display(),
            addr = knot.addr(),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = dkimd()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{args:?}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    run(&["domain", "add", "knot.example"]);
    let out = run(&["enable", "--selector", "k1"]);
    assert!(
        out.contains("k1._domainkey.knot.example: record added (rfc2136"),
        "{out}"
    );
    let keys: serde_json::Value = serde_json::from_slice(
        &dkimd()
            .arg("--config")
            .arg(&config)
            .args(["--json", "key", "show", "knot.example"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for k in keys["keys"].as_array().unwrap() {
        let name = k["record_name"].as_str().unwrap();
        assert_eq!(
            knot.dig_txt(name),
            vec![k["record"].as_str().unwrap().to_string()],
            "{name}"
        );
    }
    // A stale record beside ours (added with nsupdate) is replaced.
    let mut child = Command::new("nsupdate")
        .args([
            "-y",
            &format!("hmac-sha256:dkimd-key:{}", common::bind::TSIG_SECRET),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("server 127.0.0.1 {}\nupdate add k1._domainkey.knot.example 300 TXT \"v=DKIM1; p=STALE\"\nsend\n", knot.port).as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(knot.dig_txt("k1._domainkey.knot.example").len(), 2);
    let out = run(&["enable"]);
    assert!(
        out.contains("k1._domainkey.knot.example: replaced 2 stale records"),
        "{out}"
    );
    assert_eq!(knot.dig_txt("k1._domainkey.knot.example").len(), 1);
    let status: serde_json::Value = serde_json::from_slice(
        &dkimd()
            .arg("--config")
            .arg(&config)
            .args(["--json", "status"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for k in status["domains"][0]["keys"].as_array().unwrap() {
        assert_eq!(k["dns"], "ok", "{status}");
    }
    run(&["disable"]);
    assert!(knot.dig_txt("k1._domainkey.knot.example").is_empty());
    assert!(knot
        .dig_txt("k1-ed25519._domainkey.knot.example")
        .is_empty());

    // A wrong secret: the step fails with a reason, and nothing is published.
    use std::os::unix::fs::PermissionsExt;
    let wrong = tmp.path().join("wrong.secret");
    std::fs::write(&wrong, "d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdCBrZXkhISE=\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &knot.tsig_secret_file.display().to_string(),
        &wrong.display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let o = dkimd()
        .arg("--config")
        .arg(&config)
        .args(["enable"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("k1._domainkey.knot.example: ") && out.contains("failed"),
        "{out}"
    );
    // The reason names what to check, not the client library's words.
    assert!(
        out.contains("the key name (tsig_key_name), the secret (tsig_secret_file) or the algorithm (HMAC-SHA256) does not match"),
        "{out}"
    );
    assert!(!out.contains("Please file an issue"), "{out}");
    assert!(knot.dig_txt("k1._domainkey.knot.example").is_empty());
}
