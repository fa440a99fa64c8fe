//! What a first-time admin tripped over (issue 14), against the real BIND
//! of the test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::have_named;
use common::env::SigningEnv;
use common::*;

fn run(env: &SigningEnv, args: &[&str]) -> std::process::Output {
    dkimd()
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A reload that failed leaves the record in the zone file but not served.
/// The next `enable` must not call that "already present": it reloads the
/// zone, waits until DNS serves the record, and says so; `status` is ok.
#[test]
fn a_failed_reload_is_retried_not_called_present() {
    if !have_named() {
        return;
    }
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "r1");
    // The own key gets the next free selector: the global key's record at
    // r1 signed mail and is never overwritten.
    let name = "r1-2._domainkey.example.com";
    let before = env.named.dig_txt(name);
    assert!(before.is_empty());
    assert_eq!(env.named.dig_txt("r1._domainkey.example.com").len(), 1);
    let good = std::fs::read_to_string(&env.config).unwrap();
    let bad: String = good
        .lines()
        .map(|l| {
            if l.starts_with("reload_command") {
                "reload_command = [\"false\"]".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&env.config, bad).unwrap();
    // New keys: the zone file gets the new records, the reload fails.
    let o = run(&env, &["key", "generate", "example.com"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("reload"), "{}", text(&o));
    assert_eq!(
        env.named.dig_txt(name),
        before,
        "the new record is not served"
    );
    // The admin fixes the configuration and runs enable again.
    std::fs::write(&env.config, &good).unwrap();
    let o = run(&env, &["enable"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    // The first record reloads the zone; the second is then served.
    assert!(
        out.contains("r1-2._domainkey.example.com: in the zone file but not served (an earlier reload failed): zone reloaded, now served"),
        "{out}"
    );
    assert_eq!(env.named.dig_txt(name).len(), 1, "the new record is served");
    assert_eq!(
        env.named.dig_txt("r1._domainkey.example.com").len(),
        1,
        "the global key's record stays for the overlap"
    );
    let o = run(&env, &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Run again: now it is present, and nothing is reloaded.
    let o = run(&env, &["enable"]);
    assert!(text(&o).contains("already present"), "{}", text(&o));
    assert!(!text(&o).contains("reloaded"), "{}", text(&o));
}

/// Smaller things: `key show` uses the zone's TTL; `settings` on a new
/// machine creates no store; `enable` says which daemon sees the change,
/// and what is missing of Postfix.
#[test]
fn key_show_ttl_read_only_settings_and_which_daemon() {
    if !have_named() {
        return;
    }
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "t1");
    let mut text_cfg = std::fs::read_to_string(&env.config).unwrap();
    text_cfg.push_str("ttl = 300\n");
    std::fs::write(&env.config, &text_cfg).unwrap();
    let o = run(&env, &["key", "show", "example.com"]);
    assert!(
        text(&o).contains("t1._domainkey.example.com. 300 IN TXT ("),
        "{}",
        text(&o)
    );

    // Another configuration whose state directory does not exist yet.
    let other_state = env.tmp.path().join("other-state");
    let other = env.tmp.path().join("other.toml");
    std::fs::write(
        &other,
        text_cfg.replace(
            &format!("{}", env.tmp.path().join("state").display()),
            &other_state.display().to_string(),
        ),
    )
    .unwrap();
    let o = dkimd()
        .arg("--config")
        .arg(&other)
        .arg("settings")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("policy-fail"));
    assert!(text(&o).contains("no store yet"), "{}", text(&o));
    assert!(!other_state.exists(), "settings created a store");

    // A daemon on this store, and enable on each store.
    let daemon = env.daemon();
    let o = run(&env, &["enable"]);
    assert!(
        text(&o).contains(&format!(
            "the running dkimd (pid {}) picks up the change",
            daemon.pid()
        )),
        "{}",
        text(&o)
    );
    let o = dkimd()
        .arg("--config")
        .arg(&other)
        .args(["enable", "--selector", "t2"])
        .output()
        .unwrap();
    assert!(
        text(&o).contains("but on another store than"),
        "{}",
        text(&o)
    );
    // Postfix: installed here without a main.cf (the tests run their own
    // instances), or not installed at all.
    let postfix = if std::path::Path::new("/etc/postfix/main.cf").exists() {
        "smtpd_milters"
    } else if std::process::Command::new("postconf")
        .arg("-d")
        .output()
        .is_ok()
    {
        "Postfix is installed but /etc/postfix/main.cf does not exist"
    } else {
        "Postfix not found: no postconf command"
    };
    assert!(text(&o).contains(postfix), "{}", text(&o));
}

/// reload_command takes ZONE and FILE as check_command does; a failed zone
/// check names the zone file, not the temporary copy it ran on.
#[test]
fn reload_placeholders_and_check_errors_name_the_zone_file() {
    if !have_named() {
        return;
    }
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "z1");
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    assert!(cfg.contains("\"reload\", \"example.com\"]"), "{cfg}");
    let cfg = cfg.replace("\"reload\", \"example.com\"]", "\"reload\", \"ZONE\"]");
    std::fs::write(&env.config, &cfg).unwrap();
    assert!(env.named.dig_txt("z1-2._domainkey.example.com").is_empty());
    let o = run(&env, &["key", "generate", "example.com"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The own key's record (under the next free selector) is served: the
    // reload ran with ZONE replaced.
    assert_eq!(env.named.dig_txt("z1-2._domainkey.example.com").len(), 1);

    let zone_file = env.named.zone_file("example.com");
    let mut bad = cfg.clone();
    bad.push_str(
        "check_command = [\"sh\", \"-c\", \"echo \\\"$0: bad zone\\\"; exit 1\", \"FILE\"]\n",
    );
    std::fs::write(&env.config, bad).unwrap();
    let o = run(&env, &["key", "generate", "example.com"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{} (as edited): bad zone", zone_file.display())),
        "{}",
        text(&o)
    );
    // The check ran on a temporary copy; its name is not what the admin sees.
    let copy = format!(".{}.tmp", zone_file.file_name().unwrap().to_string_lossy());
    assert!(!text(&o).contains(&copy), "{}", text(&o));
}

/// A zone whose DNS does not answer is waited for once per run: its other
/// records are reported "not tried", and each domain left unpublished says
/// that it signs without its records. With DNS back, one `enable` finishes.
#[test]
fn a_zone_whose_dns_does_not_answer_is_tried_once() {
    if !have_named() {
        return;
    }
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "u1");
    for d in ["a.example.com", "b.example.com", "c.example.com"] {
        let o = run(&env, &["domain", "add", d]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let good = std::fs::read_to_string(&env.config).unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bad = good
        .replace(&env.named.addr(), &silent.local_addr().unwrap().to_string())
        .replace("timeout = 2\n", "timeout = 1\npropagation_timeout = 2\n");
    assert_ne!(bad, good);
    std::fs::write(&env.config, bad).unwrap();
    let o = run(&env, &["enable", "--selector", "u2", "--new-key"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    // One edit of the zone for all 16 records (the new keys' and, kept,
    // the old ones': a rotation), and one wait for DNS.
    assert_eq!(
        out.matches("did not answer for zone example.com's SOA")
            .count(),
        16,
        "{out}"
    );
    assert_eq!(
        out.matches("dkimd: waiting up to 2 s for DNS to serve serial")
            .count(),
        1,
        "{out}"
    );
    assert_eq!(
        out.matches("signs, but 4 of its records are not published")
            .count(),
        4,
        "{out}"
    );
    // DNS back: one enable publishes what is missing, and all is served.
    std::fs::write(&env.config, &good).unwrap();
    let o = run(&env, &["enable"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&env, &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for d in ["example.com", "a.example.com", "c.example.com"] {
        assert_eq!(
            env.named.dig_txt(&format!("u2._domainkey.{d}")).len(),
            1,
            "{d}"
        );
    }
}

/// An import replaces the store in one transaction and brings DNS in line:
/// a domain the export lacks loses its records (they are not left behind
/// for `disable` to miss); keys keep their creation time.
#[test]
fn import_removes_what_it_no_longer_wants_and_keeps_key_times() {
    if !have_named() {
        return;
    }
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "i1");
    let e1 = env.tmp.path().join("e1.json");
    let o = run(&env, &["export", e1.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&env, &["domain", "add", "gone.example.com"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let gone = "i1._domainkey.gone.example.com";
    assert_eq!(env.named.dig_txt(gone).len(), 1);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = run(&env, &["import", e1.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("not in the export, so removed: gone.example.com"),
        "{out}"
    );
    assert!(
        env.named.dig_txt(gone).is_empty(),
        "orphan record left: {out}"
    );
    assert!(env
        .named
        .dig_txt("i1-ed25519._domainkey.gone.example.com")
        .is_empty());
    assert_eq!(env.named.dig_txt("i1._domainkey.example.com").len(), 1);
    // The keys' creation times survived the round trip.
    let e2 = env.tmp.path().join("e2.json");
    run(&env, &["export", e2.to_str().unwrap()]);
    let created = |p: &std::path::Path| {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["created"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(created(&e1), created(&e2));
    // Again: nothing changes.
    let o = run(&env, &["import", e1.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("record added"), "{}", text(&o));
    // And disable leaves nothing behind.
    let o = run(&env, &["disable"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for name in [
        "i1._domainkey.example.com",
        "i1-ed25519._domainkey.example.com",
        gone,
    ] {
        assert!(env.named.dig_txt(name).is_empty(), "{name}");
    }
}

/// A key moved in from elsewhere signs under exactly the selector given,
/// replaces only the domain's key of its algorithm, and `--dry-run` shows
/// the plan (keys that sign, records published or removed) changing nothing.
#[test]
fn key_import_keeps_the_selector_and_the_other_algorithm() {
    if !have_named() {
        return;
    }
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "g1");
    let key = keygen(env.tmp.path(), "ed25519", "ed1");
    let path = key.path.to_str().unwrap();
    let o = run(
        &env,
        &[
            "key",
            "import",
            "example.com",
            path,
            "--selector",
            "ed1",
            "--dry-run",
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for line in [
        "afterwards example.com signs with: ed25519 256 bits, selector ed1 (new key); rsa 2048 bits, selector g1 (global key)",
        "record ed1._domainkey.example.com: published (the new key)",
        "record g1._domainkey.example.com: kept",
        "record g1-ed25519._domainkey.example.com: kept for retire-after (7d), then served revoked for revoke-for (30d), then removed here",
        "dry run: nothing was changed",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(env.named.dig_txt("ed1._domainkey.example.com").is_empty());
    assert_eq!(
        env.named.dig_txt("g1-ed25519._domainkey.example.com").len(),
        1
    );

    let o = run(
        &env,
        &["key", "import", "example.com", path, "--selector", "ed1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        env.named.dig_txt("ed1._domainkey.example.com"),
        vec![key.record.clone()]
    );
    assert_eq!(env.named.dig_txt("g1._domainkey.example.com").len(), 1);
    // The global Ed25519 key no longer signs here; its record stays for
    // the overlap (retire-after, then revoked for revoke-for).
    assert_eq!(
        env.named.dig_txt("g1-ed25519._domainkey.example.com").len(),
        1
    );
    let v: serde_json::Value =
        serde_json::from_slice(&run(&env, &["--json", "status"]).stdout).unwrap();
    let mut sels: Vec<String> = v["domains"][0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            format!(
                "{}={}={}",
                k["selector"].as_str().unwrap(),
                k["state"].as_str().unwrap(),
                k["dns"].as_str().unwrap()
            )
        })
        .collect();
    sels.sort();
    // The global Ed25519 key is listed in its overlap here, retired.
    assert_eq!(
        sels,
        ["ed1=active=ok", "g1-ed25519=retired=ok", "g1=active=ok"],
        "{v}"
    );
    // A selector that another signing key uses is refused.
    let rsa = keygen(env.tmp.path(), "rsa", "x");
    let o = run(
        &env,
        &[
            "key",
            "import",
            "example.com",
            rsa.path.to_str().unwrap(),
            "--selector",
            "ed1",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("selector ed1 is in use at example.com"),
        "{}",
        text(&o)
    );
}

/// One command edits a zone file once: 21 domains of one zone (42
/// records) under a new selector are one edit, one serial step, one check,
/// one reload and one wait, and every record is served.
#[test]
fn a_zone_file_is_edited_once_per_command() {
    if !have_named() {
        return;
    }
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "b1");
    let domains: Vec<String> = (0..20).map(|i| format!("d{i}.example.com")).collect();
    for d in &domains {
        let o = run(&env, &["domain", "add", d]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let before = env.named.serial("example.com").unwrap();
    let o = run(&env, &["enable", "--selector", "b2", "--new-key"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        out.matches(": record added (bind-zone-file").count(),
        42,
        "{out}"
    );
    assert_eq!(
        env.named.serial("example.com").unwrap(),
        before + 1,
        "one serial step for the whole command"
    );
    assert!(out.matches("dkimd: waiting up to").count() <= 1, "{out}");
    for d in domains.iter().map(String::as_str).chain(["example.com"]) {
        for sel in ["b2", "b2-ed25519"] {
            assert_eq!(
                env.named.dig_txt(&format!("{sel}._domainkey.{d}")).len(),
                1,
                "{sel} {d}"
            );
        }
    }
    let o = run(&env, &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// An RFC 2136 server that does not answer, with a command's updates sent
/// several at a time: only the first few wait for it; the rest are
/// reported "not tried", and the command ends. With the server back, one
/// `enable` publishes them all.
#[test]
fn a_silent_rfc2136_server_is_waited_for_once_per_batch() {
    if !have_named() {
        return;
    }
    let named = common::bind::Named::start_file_and_dynamic();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("dkimd.toml");
    let good = named.dkimd_config(&tmp.path().join("state"), "", "");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bad = good
        .replace(
            &format!("server = \"{}\"", named.addr()),
            &format!("server = \"{}\"", silent.local_addr().unwrap()),
        )
        .replace("timeout = 2\n", "timeout = 1\n");
    assert_ne!(bad, good);
    std::fs::write(&config, &bad).unwrap();
    let run = |args: &[&str]| {
        dkimd()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    for i in 0..40 {
        let o = run(&["domain", "add", &format!("q{i}.dyn.example")]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = run(&["enable", "--selector", "q1"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let skipped = out.matches("not tried").count();
    let waited = out.matches("did not answer").count() - skipped;
    assert_eq!(waited + skipped, 80, "{out}");
    assert!(
        waited <= 16,
        "at most one batch in flight waited: {waited}\n{out}"
    );
    std::fs::write(&config, &good).unwrap();
    let o = run(&["enable"]);
    assert!(o.status.success(), "{}", text(&o));
    for i in [0, 17, 39] {
        assert_eq!(
            named
                .dig_txt(&format!("q1._domainkey.q{i}.dyn.example"))
                .len(),
            1
        );
    }
}

/// A long publishing run reports its progress on standard error (plain
/// lines when that is not a terminal), and every record is published.
#[test]
fn long_publishing_shows_progress() {
    if !have_named() {
        return;
    }
    let named = common::bind::Named::start_file_and_dynamic();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("dkimd.toml");
    std::fs::write(
        &config,
        named.dkimd_config(&tmp.path().join("state"), "", ""),
    )
    .unwrap();
    let domains: Vec<serde_json::Value> = (0..300)
        .map(|i| serde_json::json!({"name": format!("g{i}.dyn.example"), "dns": true, "mail": true, "dkim": "default"}))
        .collect();
    let file = tmp.path().join("domains.json");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .unwrap();
        use std::io::Write;
        f.write_all(
            serde_json::json!({"format": "dkimd-export-2", "settings": {}, "domains": domains, "keys": []})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    }
    let run = |args: &[&str]| {
        dkimd()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["import", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["enable", "--selector", "g1"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    // A line at most every 5 s, and the last one always.
    assert!(
        err.contains("dkimd: records published: 600 of 600 (100%)"),
        "{err}"
    );
    assert!(err.contains("/s, about "), "{err}");
    for i in [0, 150, 299] {
        assert_eq!(
            named
                .dig_txt(&format!("g1._domainkey.g{i}.dyn.example"))
                .len(),
            1
        );
    }
}
