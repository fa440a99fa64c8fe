//! Moving in (issue 18): the installed layout, where the CLI runs as root
//! and the daemon as the service user on one state directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::daemon::Daemon;
use common::http::Client;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The service user of these tests: Debian's `nobody`, which every
/// machine has, stands in for the `dkimd` user that install creates.
fn service_user() -> Option<(u32, u32)> {
    let root = euid() == 0;
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root (the CLI runs as root), and CI=true"
        );
        eprintln!("SKIPPED: not root; the installed-layout test needs root");
        return None;
    }
    let o = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let o = std::process::Command::new("id")
        .args(["-g", "nobody"])
        .output()
        .unwrap();
    let gid: u32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    Some((uid, gid))
}

/// The effective user id, from /proc (no libc call in tests).
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Every file and directory under `dir` whose owner is not `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<(PathBuf, u32)> {
    let mut bad = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.uid() != uid {
            bad.push((e.path(), meta.uid()));
        }
        if meta.is_dir() {
            bad.extend(not_owned_by(&e.path(), uid));
        }
    }
    bad
}

fn ok(config: &Path, args: &[&str], input: &[u8]) -> String {
    let o = run_with_input(dkimd().arg("--config").arg(config).args(args), input);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    text(&o)
}

/// Root's commands leave every file of the state directory to its owner,
/// also files an earlier root command left behind; the daemon, run as
/// that owner, then records a change made on the admin page in the audit
/// log. (Before the fix, the first root command made `audit.log` root's
/// 0600 file and the page's changes went unrecorded.)
#[test]
fn root_commands_keep_the_state_directory_the_service_users() {
    let Some((uid, gid)) = service_user() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The service user must reach the state directory, as under /var/lib.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).unwrap();
    let config = tmp.path().join("dkimd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[dns]\ntimeout = 1\n[milter]\nsocket = \"inet:127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            state.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    // The admin's commands, as root.
    ok(
        &config,
        &["admin", "passwd", "admin"],
        b"correct horse battery\n",
    );
    ok(&config, &["domain", "add", "example.com"], b"");
    assert!(state.join("audit.log").exists());
    assert_eq!(not_owned_by(&state, uid), vec![], "after root's commands");

    // What a crashed root command (or an older dkimd) left: a root-owned
    // audit log and temporary file. The next root command hands them over.
    let log = state.join("audit.log");
    std::os::unix::fs::chown(&log, Some(0), Some(0)).unwrap();
    std::fs::write(state.join(".snapshot.json.tmp4242"), b"{").unwrap();
    ok(&config, &["settings"], b"");
    assert_eq!(
        not_owned_by(&state, uid),
        vec![],
        "after a read-only command"
    );

    // The daemon as the service user; root changes something while it runs.
    let daemon = Daemon::start_any_port_as(&config, uid, gid);
    let port = daemon.admin_port();
    ok(&config, &["domain", "add", "example.net"], b"");
    assert_eq!(not_owned_by(&state, uid), vec![], "beside the daemon");

    let mut c = Client::new(port);
    assert_eq!(c.login("admin", "correct horse battery").status, 303);
    let csrf = c.csrf("/");
    let form = [
        ("csrf", csrf.as_str()),
        ("signing", "no"),
        ("selector", "s1"),
        ("verify", "yes"),
        ("policy_fail", "reject"),
        ("policy_permerror", "accept"),
        ("policy_temperror", "tempfail"),
        ("policy_none", "accept"),
        ("algorithms", "rsa,ed25519"),
        ("rsa_bits", "2048"),
        ("new_key", "no"),
        ("default_domains", "dns-and-mail"),
        ("extra_domains", ""),
        ("excluded_domains", ""),
    ];
    let r = c.post("/settings", &form);
    assert_eq!(r.status, 303, "{r:?}");
    let audit = std::fs::read_to_string(&log).unwrap();
    let last = audit.lines().last().unwrap();
    assert!(
        last.contains("\"action\":\"save settings\"") && last.contains("\"user\":\"admin\""),
        "the page's change is not in the audit log: {last}\n{}",
        daemon.log_text()
    );
    assert!(
        !daemon.log_text().contains("cannot open audit log"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(not_owned_by(&state, uid), vec![], "after the page's change");
}

/// A Postfix configuration directory of its own (main.cf with another
/// milter already set, and Debian's master.cf), for install to change.
fn postfix_dir(root: &Path) -> PathBuf {
    let dir = root.join("postfix");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.cf"),
        "smtpd_milters = inet:127.0.0.1:9999\nnon_smtpd_milters = inet:127.0.0.1:9999\nmilter_default_action = accept\n",
    )
    .unwrap();
    if Path::new("/etc/postfix/master.cf").exists() {
        std::fs::copy("/etc/postfix/master.cf", dir.join("master.cf")).unwrap();
    }
    dir
}

/// Install writes the commented sample configuration where the unit's
/// `--config` points and it is missing (with the state directory install
/// used), never overwrites one, and uninstall removes it only while it is
/// as written. A binary in a build directory is named loudly in the unit's
/// step and on standard error.
#[test]
fn install_writes_the_sample_configuration_and_warns_of_a_passing_binary() {
    if !require_peer(
        "Postfix's postconf",
        std::process::Command::new("postconf")
            .arg("-d")
            .arg("mail_version"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("etc/dkimd.toml");
    let state = tmp.path().join("state");
    let pf = postfix_dir(tmp.path());
    let units = tmp.path().join("systemd");
    let install = |cmd: &str| {
        dkimd()
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .arg(cmd)
            .arg("--postfix-config")
            .arg(&pf)
            .arg("--systemd-dir")
            .arg(&units)
            .arg("--no-user")
            .output()
            .unwrap()
    };
    let o = install("install");
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "config: wrote {} (the commented sample",
            config.display()
        )),
        "{out}"
    );
    let written = std::fs::read_to_string(&config).unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../dkimd.toml")).unwrap();
    // The sample, comments and all, with the state directory install used.
    assert_eq!(
        written,
        shipped.replacen(
            "state_dir = \"/var/lib/dkimd\"",
            &format!("state_dir = \"{}\"", state.display()),
            1
        )
    );
    assert!(written.lines().filter(|l| l.starts_with('#')).count() > 50);
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let unit = std::fs::read_to_string(units.join("dkimd.service")).unwrap();
    assert!(
        unit.contains(&format!("--config {} run", config.display())),
        "{unit}"
    );
    // The configuration written is the one the daemon runs with.
    let check = dkimd()
        .arg("--config")
        .arg(&config)
        .args(["run", "--check-config"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    // The test binary lives in cargo's target directory: said loudly.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("warning: the unit starts") && stderr.contains("a cargo build directory"),
        "{stderr}"
    );
    assert!(out.contains("systemd: warning: ExecStart is"), "{out}");

    // An edited configuration is never overwritten, nor removed.
    std::fs::write(&config, format!("{written}\n# edited by the admin\n")).unwrap();
    let o = install("install");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("exists; left as it is"), "{}", text(&o));
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .ends_with("# edited by the admin\n"));
    let o = install("uninstall");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("kept (edited since install)"),
        "{}",
        text(&o)
    );
    assert!(config.exists());

    // Unchanged since install: uninstall takes it away again.
    std::fs::remove_file(&config).unwrap();
    assert!(install("install").status.success());
    let o = install("uninstall");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("removed"), "{}", text(&o));
    assert!(!config.exists());
    let main_cf = std::fs::read_to_string(pf.join("main.cf")).unwrap();
    assert!(
        main_cf.contains("smtpd_milters = inet:127.0.0.1:9999\n"),
        "{main_cf}"
    );
}

/// `dkimd sign` without `--key` signs as the daemon would: with every
/// active key the store holds for the domain, under the store's selectors
/// (the quickstart's demonstration, with no second set of keys). dkimpy
/// accepts the message against the records `key show` gives.
#[test]
fn sign_without_a_key_uses_the_stores_keys() {
    if !have_dkimpy() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("dkimd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[dns]\ntimeout = 1\nnameservers = [\"127.0.0.1:9\"]\n",
            tmp.path().join("state").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str], input: &[u8]| {
        run_with_input(dkimd().arg("--config").arg(&config).args(args), input)
    };
    let message = b"From: Joe <joe@example.com>\nTo: x@example.net\nSubject: hi\nDate: Tue, 1 Dec 2026 10:00:00 +0000\nMessage-ID: <q@example.com>\n\nHello.\n";
    // No store yet: a clear error, nothing created.
    let o = run(&["sign", "--domain", "example.com"], message);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no store in"), "{}", text(&o));
    assert!(!tmp.path().join("state").exists());

    assert!(run(&["domain", "add", "example.com"], b"").status.success());
    let o = run(&["enable", "--selector", "qs"], b"");
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    let o = run(&["--json", "key", "show", "example.com"], b"");
    assert!(o.status.success(), "{}", text(&o));
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys = shown["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{shown}");
    let records: Vec<(String, String)> = keys
        .iter()
        .map(|k| {
            (
                k["record_name"].as_str().unwrap().to_string(),
                k["record"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dns = tmp.path().join("dns.txt");
    write_dns_file(&dns, &records);

    let o = run(&["sign", "--domain", "example.com"], message);
    assert!(o.status.success(), "{}", text(&o));
    let signed = tmp.path().join("signed.eml");
    std::fs::write(&signed, &o.stdout).unwrap();
    // The header fields, unfolded.
    let fields: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .replace("\r\n", "\n")
        .replace("\n\t", " ")
        .replace("\n ", " ")
        .lines()
        .filter(|l| l.starts_with("DKIM-Signature:"))
        .map(str::to_string)
        .collect();
    assert_eq!(fields.len(), 2, "{}", String::from_utf8_lossy(&o.stdout));
    for k in keys {
        let sel = k["selector"].as_str().unwrap();
        let tag = format!("s={sel};");
        assert!(
            fields.iter().any(|f| f.replace(' ', "").contains(&tag)),
            "no signature by selector {sel}: {fields:?}"
        );
    }
    for (file, pass, why) in dkimpy_verify(&dns, std::slice::from_ref(&signed)) {
        assert!(pass, "dkimpy: {} {why}", file.display());
    }
    let o = run_with_input(
        dkimd().args(["verify", "--dns-file"]).arg(&dns),
        &std::fs::read(&signed).unwrap(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches("dkim=pass").count(), 2, "{}", text(&o));

    // One selector only; an unknown one is a clear error.
    let one = keys[0]["selector"].as_str().unwrap();
    let o = run(
        &["sign", "--domain", "example.com", "--selector", one],
        message,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("DKIM-Signature:")
            .count(),
        1
    );
    let o = run(
        &["sign", "--domain", "example.com", "--selector", "nope"],
        message,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no active key for example.com with selector nope"),
        "{}",
        text(&o)
    );
}
