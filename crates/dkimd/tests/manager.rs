//! The manager against a real BIND: domains, enable/disable, records added,
//! replaced and removed in a zone file and in a dynamic zone (RFC 2136 with
//! TSIG), checked with dig and with `dkimd status`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::{have_named, Named};
use common::*;
use std::path::PathBuf;
use std::process::Output;

struct Env {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    named: Named,
}

impl Env {
    fn start() -> Env {
        let named = Named::start_file_and_dynamic();
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("dkimd.toml");
        std::fs::write(
            &config,
            named.dkimd_config(&tmp.path().join("state"), "", ""),
        )
        .unwrap();
        Env {
            _tmp: tmp,
            config,
            named,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        dkimd()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "dkimd {args:?} failed:\n{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.run(&a);
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
    }

    /// The record text dkimd derives from the key that signs for `domain`.
    fn records(&self, domain: &str) -> Vec<(String, String)> {
        let v = self.json(&["key", "show", domain]);
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["record_name"].as_str().unwrap().to_string(),
                    k["record"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

#[test]
fn enable_publish_replace_rename_disable_with_real_bind() {
    if !have_named() {
        return;
    }
    let env = Env::start();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["domain", "add", "shop.example.com", "--mail", "off"]);
    env.ok(&["domain", "add", "dyn.example", "--dns", "--mail"]);
    let list = env.json(&["domain", "list"]);
    let shop = list["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "shop.example.com")
        .unwrap()
        .clone();
    assert_eq!(shop["signs"], false, "{list}");
    assert!(shop["why"].as_str().unwrap().contains("mail off"), "{shop}");

    let serial_before = env.named.serial("example.com").unwrap();
    let out = env.ok(&["enable", "--selector", "202611"]);
    assert!(
        out.contains("Enabling DKIM signing with selector 202611"),
        "{out}"
    );
    assert!(out.contains("domains: 3 found, 2 sign"), "{out}");
    assert!(
        out.contains("key: generated rsa 2048 bits, selector 202611"),
        "{out}"
    );
    assert!(
        out.contains("key: generated ed25519 256 bits, selector 202611-ed25519"),
        "{out}"
    );
    assert!(
        out.contains("example.com: 202611._domainkey.example.com: record added (bind-zone-file"),
        "{out}"
    );
    assert!(
        out.contains("dyn.example: 202611-ed25519._domainkey.dyn.example: record added (rfc2136"),
        "{out}"
    );
    assert!(env.named.serial("example.com").unwrap() > serial_before);

    // DNS serves exactly the records of the keys in use.
    for d in ["example.com", "dyn.example"] {
        let recs = env.records(d);
        assert_eq!(recs.len(), 2);
        for (name, value) in recs {
            assert_eq!(env.named.dig_txt(&name), vec![value], "{name}");
        }
    }
    assert!(env
        .named
        .dig_txt("202611._domainkey.shop.example.com")
        .is_empty());
    let status = env.json(&["status"]);
    for d in status["domains"].as_array().unwrap() {
        for k in d["keys"].as_array().unwrap() {
            assert_eq!(k["dns"], "ok", "{status}");
        }
    }

    // Enabling twice leaves one record each.
    let out = env.ok(&["enable"]);
    assert!(
        out.contains("key: kept rsa 2048 bits, selector 202611"),
        "{out}"
    );
    assert_eq!(out.matches("already present").count(), 4, "{out}");
    assert_eq!(env.named.dig_txt("202611._domainkey.example.com").len(), 1);

    // A stale record for the same selector is replaced, not duplicated:
    // in the dynamic zone (added with nsupdate) and in the zone file.
    env.named
        .nsupdate("update add 202611._domainkey.dyn.example 300 TXT \"v=DKIM1; k=rsa; p=STALE\"");
    assert_eq!(env.named.dig_txt("202611._domainkey.dyn.example").len(), 2);
    let status = env.json(&["status"]);
    let dynrow = status["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == "dyn.example")
        .unwrap()
        .clone();
    assert!(
        dynrow["keys"][0]["dns"]
            .as_str()
            .unwrap()
            .starts_with("multiple records"),
        "{dynrow}"
    );
    let o = env.run(&["status"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "status exits 1 when DNS does not match"
    );
    let out = env.ok(&["enable"]);
    assert!(
        out.contains("202611._domainkey.dyn.example: replaced 2 stale records"),
        "{out}"
    );
    let (name, value) = env
        .records("dyn.example")
        .into_iter()
        .find(|(n, _)| n.starts_with("202611."))
        .unwrap();
    assert_eq!(env.named.dig_txt(&name), vec![value]);

    // The selector cannot change while signing is on without a new key.
    let o = env.run(&["enable", "--selector", "202612"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--new-key"));

    // Turning the mail feature on makes shop.example.com sign: published at once.
    let out = env.ok(&["domain", "set", "shop.example.com", "--mail", "on"]);
    assert!(
        out.contains("202611._domainkey.shop.example.com: record added"),
        "{out}"
    );
    // Renaming moves the records.
    let out = env.ok(&["domain", "rename", "shop.example.com", "store.example.com"]);
    assert!(
        out.contains("202611._domainkey.shop.example.com: 1 records removed")
            || out.contains("202611._domainkey.shop.example.com: record removed"),
        "{out}"
    );
    assert!(env
        .named
        .dig_txt("202611._domainkey.shop.example.com")
        .is_empty());
    assert_eq!(
        env.named
            .dig_txt("202611._domainkey.store.example.com")
            .len(),
        1
    );
    // A domain's own key replaces the global one in DNS.
    let before = env.records("dyn.example");
    env.ok(&["key", "generate", "dyn.example"]);
    let after = env.records("dyn.example");
    assert_ne!(before, after);
    for (name, value) in &after {
        assert_eq!(&env.named.dig_txt(name), &vec![value.clone()]);
    }
    env.ok(&["key", "default", "dyn.example"]);
    for (name, value) in &before {
        assert_eq!(&env.named.dig_txt(name), &vec![value.clone()]);
    }

    // Disable removes every public key from every domain; keys stay.
    let out = env.ok(&["disable"]);
    assert!(out.contains("signing: turned off"), "{out}");
    for d in ["example.com", "store.example.com", "dyn.example"] {
        for sel in ["202611", "202611-ed25519"] {
            assert!(
                env.named
                    .dig_txt(&format!("{sel}._domainkey.{d}"))
                    .is_empty(),
                "{sel} {d}"
            );
        }
    }
    assert!(out.contains("keys: "), "{out}");
    let zone = std::fs::read_to_string(env.named.zone_file("example.com")).unwrap();
    assert!(!zone.contains("_domainkey"), "{zone}");
    // named still loads the edited file (its serial went up each time).
    assert!(env.named.serial("example.com").unwrap() > 2026010101);
}

#[test]
fn export_import_round_trip_republishes() {
    if !have_named() {
        return;
    }
    let env = Env::start();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["set", "extra-domains", "dyn.example"]);
    env.ok(&["enable", "--selector", "s1", "--algorithms", "ed25519"]);
    let keys_before = env.records("example.com");
    let export = env._tmp.path().join("backup.json");
    env.ok(&["export", export.to_str().unwrap()]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&export).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Lose the state and the records; restore.
    env.ok(&["disable", "--purge-keys"]);
    assert!(env.named.dig_txt(&keys_before[0].0).is_empty());
    std::fs::remove_dir_all(env._tmp.path().join("state")).unwrap();
    let out = env.ok(&["import", export.to_str().unwrap()]);
    assert!(out.contains("1 domains and 1 keys restored"), "{out}");
    assert_eq!(env.records("example.com"), keys_before);
    assert_eq!(
        env.named.dig_txt(&keys_before[0].0),
        vec![keys_before[0].1.clone()]
    );
    assert_eq!(
        env.named.dig_txt("s1-ed25519._domainkey.dyn.example").len(),
        1,
        "extra domain republished"
    );
    let settings = env.json(&["settings"]);
    assert_eq!(settings["extra-domains"], "dyn.example");
    assert_eq!(settings["signing"], "on");
}

/// kill -9 in the middle of `enable` over many domains, while the zone
/// file has been rewritten but not yet reloaded (the reload is made slow):
/// the file holds every new record or none (never half), the store opens
/// and is consistent, and a second `enable` finishes the job (reloads and
/// waits until DNS serves them) with one record per key and domain.
#[test]
fn crash_during_enable_then_enable_again_finishes() {
    if !have_named() {
        return;
    }
    let env = Env::start();
    let n = 30;
    for i in 0..n {
        env.ok(&["domain", "add", &format!("d{i}.example.com")]);
    }
    let good = std::fs::read_to_string(&env.config).unwrap();
    let slow: String = good
        .lines()
        .map(|l| match l.strip_prefix("reload_command = [") {
            Some(rest) => format!(
                "reload_command = [\"sh\", \"-c\", \"sleep 5; exec \\\"$@\\\"\", \"sh\", {rest}"
            ),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(slow, good);
    std::fs::write(&env.config, slow).unwrap();
    let zone = env.named.zone_file("example.com");
    let count = || {
        std::fs::read_to_string(&zone)
            .unwrap_or_default()
            .matches("crash._domainkey")
            .count()
    };
    assert_eq!(count(), 0);
    let mut child = dkimd()
        .arg("--config")
        .arg(&env.config)
        .args(["enable", "--selector", "crash"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "enable made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "enable finished before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, during the slow reload
    child.wait().unwrap();
    assert_eq!(count(), n, "the zone file holds every new record or none");
    assert!(
        env.named
            .dig_txt("crash._domainkey.d0.example.com")
            .is_empty(),
        "killed before the reload"
    );
    std::fs::write(&env.config, &good).unwrap();

    // The store is intact: signing is on with the new keys (that transaction
    // came before any publishing), and it answers every command.
    let settings = env.json(&["settings"]);
    assert_eq!(settings["signing"], "on");
    assert_eq!(settings["selector"], "crash");
    let keys = env.records("d0.example.com");
    assert_eq!(keys.len(), 2);

    let out = env.ok(&["enable"]);
    assert!(
        out.contains(
            "in the zone file but not served (an earlier reload failed): zone reloaded, now served"
        ),
        "{out}"
    );
    for i in 0..n {
        for (name, value) in env.records(&format!("d{i}.example.com")) {
            assert_eq!(env.named.dig_txt(&name), vec![value], "{name}");
        }
    }
    let text = std::fs::read_to_string(&zone).unwrap();
    assert_eq!(
        text.matches("_domainkey").count(),
        2 * n,
        "one record per key and domain, no duplicates"
    );
}

#[test]
fn default_selector_is_year_and_month() {
    if !have_named() {
        return;
    }
    let env = Env::start();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["enable", "--algorithms", "rsa"]);
    let ym = String::from_utf8(
        std::process::Command::new("date")
            .arg("+%Y%m")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let settings = env.json(&["settings"]);
    assert_eq!(settings["selector"], ym.trim());
    assert_eq!(settings["algorithms"], "rsa");
    assert_eq!(
        env.named
            .dig_txt(&format!("{}._domainkey.example.com", ym.trim()))
            .len(),
        1
    );
    // Switching to a new selector needs --new-key, and is a rotation: the
    // new key is pending and published, the old one signs until a step
    // promotes the new one (its record is served), and then it is retired.
    let out = env.ok(&["enable", "--selector", "next", "--new-key"]);
    assert!(out.contains("selector next (in "), "{out}");
    assert!(out.contains(": pending; the current key signs"), "{out}");
    assert_eq!(env.named.dig_txt("next._domainkey.example.com").len(), 1);
    assert_eq!(env.json(&["settings"])["selector"], ym.trim());
}
