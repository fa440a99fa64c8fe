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

/// The service user of most of these tests: Debian's `nobody`, which every
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
    let check = check_config(&config);
    assert!(check.status.success(), "{}", text(&check));
    // A check writes nothing, not even a store it finds missing.
    let elsewhere = tmp.path().join("no-state-yet");
    let check = dkimd()
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&elsewhere)
        .args(["run", "--check-config"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("no store yet in"), "{}", text(&check));
    assert!(
        !elsewhere.exists(),
        "run --check-config created {}",
        elsewhere.display()
    );
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

/// A dkimd configuration in `dir` with its state in `dir/state`, asking
/// `named` for DNS.
fn dns_config(dir: &Path, named: &common::bind::Named) -> PathBuf {
    let config = dir.join("dkimd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[dns]\nnameservers = [\"{}\"]\ntimeout = 2\n",
            dir.join("state").display(),
            named.addr()
        ),
    )
    .unwrap();
    config
}

/// `dkimd --config CONFIG ARGS…`, run to its end.
fn dkimd_with(config: &Path, args: &[&str]) -> std::process::Output {
    dkimd()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// An OpenDKIM setup as an admin has it: Debian's packaged opendkim.conf
/// with a KeyTable, a refile: SigningTable and a TrustedHosts file, and
/// keys made by `opendkim-genkey` for three domains under three
/// selectors; also a per-user line and a 1024-bit key, which cannot move.
struct OpenDkimSetup {
    dir: PathBuf,
    conf: PathBuf,
    /// (domain, selector, the zone file line opendkim-genkey printed).
    keys: Vec<(String, String, String)>,
}

fn genkey(dir: &Path, domain: &str, selector: &str, bits: u32) -> String {
    let kd = dir.join("keys").join(domain);
    std::fs::create_dir_all(&kd).unwrap();
    let o = std::process::Command::new("opendkim-genkey")
        .arg(format!("--bits={bits}"))
        .arg(format!("--domain={domain}"))
        .arg(format!("--selector={selector}"))
        .arg(format!("--directory={}", kd.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "opendkim-genkey: {}", text(&o));
    std::fs::read_to_string(kd.join(format!("{selector}.txt"))).unwrap()
}

/// The p= of a zone file stub that opendkim-genkey wrote.
fn stub_record(stub: &str) -> String {
    stub.split('"').skip(1).step_by(2).collect::<String>()
}

fn opendkim_setup(root: &Path) -> OpenDkimSetup {
    let dir = root.join("opendkim");
    std::fs::create_dir_all(&dir).unwrap();
    let mut keys = Vec::new();
    let mut keytable = String::from("# keyname  domain:selector:keyfile\n");
    let mut signing = String::from("# sender pattern  keyname\n");
    for (domain, selector) in [
        ("a.example", "sel-a"),
        ("b.example", "mail2024"),
        ("c.example", "dkim"),
    ] {
        let stub = genkey(&dir, domain, selector, 2048);
        let name = format!("{selector}._domainkey.{domain}");
        keytable.push_str(&format!(
            "{name}\t{domain}:{selector}:{}\n",
            dir.join("keys")
                .join(domain)
                .join(format!("{selector}.private"))
                .display()
        ));
        signing.push_str(&format!("*@{domain}\t{name}\n"));
        keys.push((domain.to_string(), selector.to_string(), stub));
    }
    genkey(&dir, "old.example", "legacy", 1024);
    keytable.push_str(&format!(
        "legacy._domainkey.old.example old.example:legacy:{}\n",
        dir.join("keys/old.example/legacy.private").display()
    ));
    signing.push_str("*@old.example legacy._domainkey.old.example\n");
    signing.push_str("joe@b.example sel-a._domainkey.a.example\n");
    std::fs::write(dir.join("KeyTable"), keytable).unwrap();
    std::fs::write(dir.join("SigningTable"), signing).unwrap();
    std::fs::write(
        dir.join("TrustedHosts"),
        "127.0.0.1\n::1\nlocalhost\n192.168.10.0/24\nmail.example.net\n",
    )
    .unwrap();
    // Debian's packaged configuration, with the tables an admin adds.
    let debian = std::fs::read_to_string("/etc/opendkim.conf").unwrap();
    let conf = dir.join("opendkim.conf");
    std::fs::write(
        &conf,
        format!(
            "{debian}\n# Added by the admin\nKeyTable\t\tfile:{d}/KeyTable\nSigningTable\t\trefile:{d}/SigningTable\nInternalHosts\t\trefile:{d}/TrustedHosts\nExternalIgnoreList\trefile:{d}/TrustedHosts\nOn-BadSignature\t\treject\nAuthservID\t\tmx.example.net\n",
            d = dir.display()
        ),
    )
    .unwrap();
    OpenDkimSetup { dir, conf, keys }
}

/// BIND serving the zones of the setup's domains with the records
/// opendkim-genkey printed, except c.example, which serves another key's
/// record (a record that does not match what would be imported).
fn opendkim_zones(setup: &OpenDkimSetup, mismatch: bool) -> common::bind::Named {
    let zones: Vec<(&str, String)> = setup
        .keys
        .iter()
        .map(|(domain, selector, stub)| {
            let line = if mismatch && domain == "c.example" {
                genkey(&setup.dir.join("other"), domain, selector, 2048)
            } else {
                stub.clone()
            };
            (domain.as_str(), common::bind::zone_file(domain, 1, &[line]))
        })
        .collect();
    common::bind::Named::start(&zones)
}

/// `dkimd migrate opendkim` on Debian's opendkim.conf with opendkim-genkey
/// keys: the plan names every domain, key and selector, the trusted
/// networks, the actions and what cannot move (a per-user key, a 1024-bit
/// key with its replacement); `--dry-run` changes nothing; applied, the
/// keys sign under their own selectors and OpenDKIM's own verifier and
/// dkimd accept them against the records BIND serves; the record that
/// does not match is reported; and a second run changes nothing.
#[test]
fn migrate_opendkim_keeps_selectors_and_keys() {
    if !require_peer(
        "OpenDKIM (opendkim-tools)",
        std::process::Command::new("opendkim-genkey").arg("--help"),
    ) || !common::bind::have_named()
        || !have_opendkim()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let setup = opendkim_setup(tmp.path());
    let named = opendkim_zones(&setup, true);
    let config = dns_config(tmp.path(), &named);
    let state = tmp.path().join("state");
    let dkimd_cmd = |args: &[&str]| dkimd_with(&config, args);
    let conf = setup.conf.to_str().unwrap();

    // The plan, and nothing else.
    let o = dkimd_cmd(&["migrate", "opendkim", "--config", conf, "--dry-run"]);
    let plan = text(&o);
    assert!(o.status.success(), "{plan}");
    assert!(
        plan.contains("3 domain(s): a.example, b.example, c.example"),
        "{plan}"
    );
    for (domain, selector, _) in &setup.keys {
        assert!(
            plan.contains(&format!(
                "key: {domain} selector {selector} (rsa 2048 bits)"
            )),
            "{plan}"
        );
    }
    assert!(
        plan.contains("SigningTable joe@b.example") && plan.contains("one sender's own key"),
        "{plan}"
    );
    assert!(
        plan.contains("old.example key of selector legacy")
            && plan.contains("under 2048 bits")
            && plan.contains("dkimd key generate old.example"),
        "{plan}"
    );
    assert!(
        plan.contains("dkimd.toml: [milter] trusted_networks = [\"127.0.0.1/32\", \"::1/128\", \"192.168.10.0/24\"]"),
        "{plan}"
    );
    assert!(
        plan.contains("InternalHosts entry mail.example.net"),
        "{plan}"
    );
    assert!(
        plan.contains("dkimd.toml: [milter] authserv_id = \"mx.example.net\""),
        "{plan}"
    );
    assert!(
        plan.contains("setting: policy-fail = reject (from On-BadSignature reject at"),
        "{plan}"
    );
    assert!(plan.contains("setting: policy-temperror = tempfail (from On-DNSError unset (OpenDKIM's default tempfail))"), "{plan}");
    assert!(
        plan.contains("milter: OpenDKIM serves Postfix at unix:/run/opendkim/opendkim.sock"),
        "{plan}"
    );
    assert!(
        plan.contains("note: Canonicalization relaxed/simple at")
            && plan.contains("dkimd signs relaxed/relaxed"),
        "{plan}"
    );
    assert!(plan.contains("dry run: nothing was changed"), "{plan}");
    assert!(!state.exists(), "a dry run made {}", state.display());

    // Applied: one transaction, then the live check.
    let o = dkimd_cmd(&["migrate", "opendkim", "--config", conf]);
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the mismatching record fails the run: {out}"
    );
    assert!(out.contains("change(s) made in one transaction"), "{out}");
    assert!(
        out.contains("DNS serves sel-a._domainkey.a.example"),
        "{out}"
    );
    assert!(
        out.contains("DNS serves mail2024._domainkey.b.example"),
        "{out}"
    );
    assert!(out.contains("DNS at dkim._domainkey.c.example: "), "{out}");
    assert!(
        out.contains("in dkimd.toml set [milter] trusted_networks"),
        "{out}"
    );
    let shown = |domain: &str| -> serde_json::Value {
        let o = dkimd_cmd(&["--json", "key", "show", domain]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    for (domain, selector, stub) in &setup.keys {
        let keys = shown(domain);
        let keys = keys["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(keys[0]["selector"], selector.as_str());
        // The very key opendkim-genkey made: its record's p= is the same.
        let want = stub_record(stub);
        let p = |r: &str| r.split("p=").nth(1).unwrap().trim().to_string();
        assert_eq!(p(keys[0]["record"].as_str().unwrap()), p(&want), "{domain}");
    }
    let settings = text(&dkimd_cmd(&["settings"]));
    assert!(
        settings.contains("policy-fail") && settings.contains("reject"),
        "{settings}"
    );

    // dkimd signs with the imported key; OpenDKIM's own verifier and dkimd
    // (asking BIND) accept it.
    let message = b"From: Ann <ann@a.example>\r\nTo: bob@example.net\r\nSubject: moved\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@a.example>\r\n\r\nSame key, same selector.\r\n";
    let o = run_with_input(
        dkimd()
            .arg("--config")
            .arg(&config)
            .args(["sign", "--domain", "a.example"]),
        message,
    );
    assert!(o.status.success(), "{}", text(&o));
    let signed = tmp.path().join("signed.eml");
    std::fs::write(&signed, &o.stdout).unwrap();
    let o = run_with_input(
        dkimd().args(["verify", "--nameserver", &named.addr()]),
        &std::fs::read(&signed).unwrap(),
    );
    assert!(
        text(&o).contains("pass d=a.example s=sel-a"),
        "{}",
        text(&o)
    );
    let dns = tmp.path().join("dns.txt");
    write_dns_file(
        &dns,
        &[(
            "sel-a._domainkey.a.example".to_string(),
            stub_record(&setup.keys[0].2),
        )],
    );
    std::fs::create_dir_all(tmp.path().join("verify")).unwrap();
    let (ok, said) = opendkim_verify(&tmp.path().join("verify"), &dns, &signed);
    assert!(ok, "OpenDKIM: {said}");

    // Twice: nothing changes.
    let before = text(&dkimd_cmd(&["--json", "status"]));
    let o = dkimd_cmd(&["migrate", "opendkim", "--config", conf]);
    let out = text(&o);
    assert!(out.contains("nothing to change: already moved in"), "{out}");
    assert!(
        out.contains("key of selector sel-a already imported"),
        "{out}"
    );
    assert_eq!(text(&dkimd_cmd(&["--json", "status"])), before);
}

/// Sends `message` through Postfix's plain smtpd from 127.0.0.1 and
/// returns it as delivered.
fn through_postfix(pf: &common::postfix::Postfix, from: &str, message: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(common::postfix::smtp_send(
            pf.port,
            "127.0.0.1",
            from,
            "bob@example.net",
            message,
        ))
    }))
    .unwrap_or_else(|_| panic!("SMTP failed; Postfix's log:\n{}", pf.log()));
    assert!(answer.starts_with("250"), "{answer}\n{}", pf.log());
    pf.delivered(30)
        .unwrap_or_else(|| panic!("nothing delivered: {}", pf.log()))
}

/// The tags of the one DKIM-Signature of a delivered message.
fn signature_tags(msg: &[u8]) -> std::collections::BTreeMap<String, String> {
    let text = String::from_utf8_lossy(msg);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .replace("\r\n\t", " ")
        .replace("\r\n ", " ");
    let fields: Vec<&str> = head
        .lines()
        .filter(|l| l.starts_with("DKIM-Signature:"))
        .collect();
    assert_eq!(fields.len(), 1, "{head}");
    fields[0]["DKIM-Signature:".len()..]
        .split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.split_whitespace().collect::<String>(),
            )
        })
        .collect()
}

/// The move, through the real Postfix: OpenDKIM (Debian's package) signs
/// first; `migrate opendkim` and `install --replace opendkim` switch to
/// dkimd, keeping every other milter and the order; mail before and after
/// carries the same d= and s= and passes dkimpy and OpenDKIM's own
/// verifier against the records BIND serves; `uninstall` puts OpenDKIM
/// back exactly, and it signs again.
#[test]
fn opendkim_to_dkimd_through_postfix_and_back() {
    if !common::postfix::have_postfix()
        || !common::bind::have_named()
        || !have_opendkim()
        || !have_dkimpy()
        || !require_peer(
            "OpenDKIM (opendkim-tools)",
            std::process::Command::new("opendkim-genkey").arg("--help"),
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let setup = opendkim_setup(tmp.path());
    let named = opendkim_zones(&setup, false);
    // OpenDKIM listens where its configuration says; here on loopback, as
    // root (the test's keys are root's), in the foreground. Its safe-key
    // check refuses keys under /tmp (a world-writable directory), where
    // the test keeps them.
    let od_port = free_port();
    let conf_text = std::fs::read_to_string(&setup.conf).unwrap();
    let conf_text: String = conf_text
        .lines()
        .filter(|l| {
            let k = l.split_whitespace().next().unwrap_or("");
            !["Socket", "PidFile", "UserID"].contains(&k)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &setup.conf,
        format!(
            "{conf_text}RequireSafeKeys\t\tno\nSocket\t\t\tinet:{od_port}@127.0.0.1\nPidFile\t\t\t{}/opendkim.pid\nSyslog\t\t\tno\n",
            setup.dir.display()
        ),
    )
    .unwrap();
    let mut opendkim = std::process::Command::new("opendkim")
        .arg("-f")
        .arg("-x")
        .arg(&setup.conf)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", od_port)).is_err() {
        if let Some(st) = opendkim.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            opendkim
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("opendkim exited ({st}): {err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "opendkim did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _opendkim = Kill(opendkim);

    // Postfix with OpenDKIM, and another milter after it (with its own
    // settings) that must stay where it is.
    let od_socket = format!("inet:127.0.0.1:{od_port}");
    let pf = common::postfix::Postfix::start(&od_socket, "tempfail");
    let other = "{ inet:127.0.0.1:9, default_action=accept }";
    pf.postconf(&format!("smtpd_milters = {od_socket}, {other}"));
    pf.postconf(&format!("non_smtpd_milters = {od_socket}, {other}"));
    let postconf_n = || {
        text(
            &std::process::Command::new("postconf")
                .arg("-c")
                .arg(&pf.dir)
                .arg("-n")
                .output()
                .unwrap(),
        )
    };
    let before = postconf_n();

    // dkimpy and OpenDKIM's verifier read the records BIND serves (as
    // dig gets them); dkimd asks BIND itself.
    let dns = tmp.path().join("dns.txt");
    let records: Vec<(String, String)> = setup
        .keys
        .iter()
        .map(|(d, s, _)| {
            let name = format!("{s}._domainkey.{d}");
            let served = named.dig_txt(&name);
            assert_eq!(served.len(), 1, "{name}: {served:?}");
            (name, served[0].clone())
        })
        .collect();
    write_dns_file(&dns, &records);
    let verify_dir = tmp.path().join("verify");
    std::fs::create_dir_all(&verify_dir).unwrap();
    let check = |msg: &[u8], n: usize, canon: &str| {
        let tags = signature_tags(msg);
        assert_eq!(tags["d"], "a.example", "{tags:?}");
        assert_eq!(tags["s"], "sel-a", "{tags:?}");
        assert_eq!(tags["c"], canon, "who signed: {tags:?}");
        let f = tmp.path().join(format!("delivered{n}.eml"));
        std::fs::write(&f, msg).unwrap();
        for (file, pass, why) in dkimpy_verify(&dns, std::slice::from_ref(&f)) {
            assert!(pass, "dkimpy: {} {why}", file.display());
        }
        let (ok, said) = opendkim_verify(&verify_dir, &dns, &f);
        assert!(ok, "OpenDKIM's verifier: {said}");
        let o = run_with_input(dkimd().args(["verify", "--nameserver", &named.addr()]), msg);
        assert!(
            text(&o).contains("pass d=a.example s=sel-a"),
            "{}",
            text(&o)
        );
    };
    let message = |n: usize| {
        format!(
            "From: Ann <ann@a.example>\r\nTo: Bob <bob@example.net>\r\nSubject: move {n}\r\nDate: Tue, 1 Dec 2026 10:00:0{n} +0000\r\nMessage-ID: <move{n}@a.example>\r\n\r\nMessage {n} of the move.\r\n"
        )
        .into_bytes()
    };
    // 1. OpenDKIM signs (Debian's relaxed/simple).
    check(
        &through_postfix(&pf, "ann@a.example", &message(1)),
        1,
        "relaxed/simple",
    );

    // 2. Move in, start dkimd, switch Postfix over.
    let d_port = free_port();
    let state = tmp.path().join("state");
    let config = tmp.path().join("dkimd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[dns]\nnameservers = [\"{}\"]\ntimeout = 2\n[milter]\nsocket = \"inet:127.0.0.1:{d_port}\"\n",
            state.display(),
            named.addr()
        ),
    )
    .unwrap();
    let dk = |args: &[&str]| {
        dkimd()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let o = dk(&[
        "migrate",
        "opendkim",
        "--config",
        setup.conf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let _daemon = Daemon::start(&config, d_port);
    let pf_dir = pf.dir.to_str().unwrap().to_string();
    let install = |cmd: &str, replace: bool| {
        let mut a = vec![
            cmd,
            "--postfix-config",
            &pf_dir,
            "--no-systemd",
            "--no-user",
        ];
        let conf = setup.conf.to_str().unwrap();
        if replace {
            a.extend(["--replace", "opendkim", "--replace-config", conf]);
        }
        let o = dk(&a);
        assert!(o.status.success(), "{cmd}: {}", text(&o));
        text(&o)
    };
    let out = install("install", true);
    let d_socket = format!("inet:127.0.0.1:{d_port}");
    assert!(
        out.contains(&format!("dkimd answers on {d_socket}")),
        "{out}"
    );
    let now = postconf_n();
    assert!(
        now.contains(&format!("smtpd_milters = {d_socket}, {other}\n")),
        "{now}"
    );
    assert!(
        now.contains(&format!("non_smtpd_milters = {d_socket}, {other}\n")),
        "{now}"
    );
    assert!(now.contains("milter_default_action = tempfail"), "{now}");
    assert!(out.contains("stop opendkim yourself"), "{out}");
    // 3. dkimd signs: the same d= and s=, its own relaxed/relaxed.
    check(
        &through_postfix(&pf, "ann@a.example", &message(2)),
        2,
        "relaxed/relaxed",
    );

    // 4. Uninstall: OpenDKIM back where it was, and it signs again.
    let out = install("uninstall", false);
    assert!(out.contains(&format!("{od_socket} answers again")), "{out}");
    assert_eq!(postconf_n(), before);
    check(
        &through_postfix(&pf, "ann@a.example", &message(3)),
        3,
        "relaxed/simple",
    );
}

/// `rspamadm dkim_keygen` (rspamd's Debian package): a key file and the
/// zone file stub it prints.
fn rspamd_keygen(file: &Path, selector: &str, kind: &str, bits: Option<u32>) -> String {
    let mut cmd = std::process::Command::new("rspamadm");
    cmd.args([
        "dkim_keygen",
        "-s",
        selector,
        "-d",
        "example",
        "-t",
        kind,
        "-k",
    ])
    .arg(file);
    if let Some(b) = bits {
        cmd.args(["-b", &b.to_string()]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "rspamadm: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// `dkimd migrate rspamd` on an admin's `local.d/dkim_signing.conf` with
/// keys from `rspamadm dkim_keygen`: a key found by the path template, a
/// domain block with an RSA and an Ed25519 key under two selectors, a
/// selector_map entry, and a 1024-bit key (rspamadm's default size),
/// which is reported with its replacement. Applied, the store's keys sign
/// under rspamd's selectors and dkimpy accepts both signatures against
/// the records BIND serves; a second run changes nothing.
#[test]
fn migrate_rspamd_keeps_selectors_and_keys() {
    if !require_peer(
        "rspamd (Debian package rspamd)",
        std::process::Command::new("rspamadm").arg("--version"),
    ) || !common::bind::have_named()
        || !have_dkimpy()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("dkim");
    std::fs::create_dir_all(&keys).unwrap();
    let k = |name: &str| keys.join(name);
    let r1 = rspamd_keygen(&k("r1.example.dkim.key"), "dkim", "rsa", Some(2048));
    let r2rsa = rspamd_keygen(&k("r2.example.rsa.key"), "rsa2026", "rsa", Some(2048));
    let r2ed = rspamd_keygen(&k("r2.example.ed.key"), "ed2026", "ed25519", None);
    let r3 = rspamd_keygen(&k("r3.example.s3.key"), "s3", "rsa", Some(2048));
    rspamd_keygen(&k("r4.example.dkim.key"), "dkim", "rsa", None);
    std::fs::write(
        tmp.path().join("selectors.map"),
        "# domain selector\nr3.example s3\n",
    )
    .unwrap();
    let local = tmp.path().join("local.d");
    std::fs::create_dir_all(&local).unwrap();
    let conf = local.join("dkim_signing.conf");
    std::fs::write(
        &conf,
        format!(
            "# local.d/dkim_signing.conf, as an admin writes it\npath = \"{d}/$domain.$selector.key\";\nselector = \"dkim\";\n\
             sign_networks = \"192.168.20.0/24\";\nselector_map = \"{m}\";\n\
             .include(try=true,priority=1,duplicate=merge) \"$LOCAL_CONFDIR/local.d/no-such-file.conf\"\n\
             domain {{\n  r2.example {{\n    selectors [\n      {{ path = \"{d}/r2.example.rsa.key\"; selector = \"rsa2026\"; }},\n      {{ path = \"{d}/r2.example.ed.key\"; selector = \"ed2026\"; }}\n    ]\n  }}\n}}\n",
            d = keys.display(),
            m = tmp.path().join("selectors.map").display()
        ),
    )
    .unwrap();
    let named = common::bind::Named::start(&[
        (
            "r1.example",
            common::bind::zone_file("r1.example", 1, std::slice::from_ref(&r1)),
        ),
        (
            "r2.example",
            common::bind::zone_file("r2.example", 1, &[r2rsa.clone(), r2ed.clone()]),
        ),
        (
            "r3.example",
            common::bind::zone_file("r3.example", 1, std::slice::from_ref(&r3)),
        ),
    ]);
    let config = dns_config(tmp.path(), &named);
    let dk = |args: &[&str]| dkimd_with(&config, args);
    let conf_s = conf.to_str().unwrap();

    let o = dk(&["migrate", "rspamd", "--config", conf_s, "--dry-run"]);
    let plan = text(&o);
    assert!(o.status.success(), "{plan}");
    assert!(
        plan.contains("3 domain(s): r1.example, r2.example, r3.example"),
        "{plan}"
    );
    assert!(
        plan.contains("key: r1.example selector dkim (rsa 2048 bits)"),
        "{plan}"
    );
    assert!(
        plan.contains("key: r2.example selector rsa2026 (rsa 2048 bits)"),
        "{plan}"
    );
    assert!(
        plan.contains("key: r2.example selector ed2026 (ed25519 256 bits)"),
        "{plan}"
    );
    assert!(
        plan.contains("key: r3.example selector s3 (rsa 2048 bits)"),
        "{plan}"
    );
    assert!(
        plan.contains("r4.example key of selector dkim")
            && plan.contains("under 2048 bits")
            && plan.contains("dkimd key generate r4.example"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "[milter] trusted_networks = [\"127.0.0.0/8\", \"::1/128\", \"192.168.20.0/24\"]"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("milter: rspamd serves Postfix at inet:localhost:11332"),
        "{plan}"
    );
    assert!(plan.contains("its spam filtering too"), "{plan}");

    let o = dk(&["migrate", "rspamd", "--config", conf_s]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for name in [
        "dkim._domainkey.r1.example",
        "rsa2026._domainkey.r2.example",
        "ed2026._domainkey.r2.example",
        "s3._domainkey.r3.example",
    ] {
        assert!(out.contains(&format!("DNS serves {name}")), "{name}: {out}");
    }
    // The store's keys sign r2.example's mail under rspamd's selectors.
    let message = b"From: Rita <rita@r2.example>\r\nTo: bob@example.net\r\nSubject: from rspamd\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <r1@r2.example>\r\n\r\nSame keys.\r\n";
    let o = run_with_input(
        dkimd()
            .arg("--config")
            .arg(&config)
            .args(["sign", "--domain", "r2.example"]),
        message,
    );
    assert!(o.status.success(), "{}", text(&o));
    let signed = tmp.path().join("signed.eml");
    std::fs::write(&signed, &o.stdout).unwrap();
    let rec = |stub: &str| stub.split('"').skip(1).step_by(2).collect::<String>();
    let dns = tmp.path().join("dns.txt");
    write_dns_file(
        &dns,
        &[
            ("rsa2026._domainkey.r2.example".to_string(), rec(&r2rsa)),
            ("ed2026._domainkey.r2.example".to_string(), rec(&r2ed)),
        ],
    );
    for (file, pass, why) in dkimpy_verify(&dns, std::slice::from_ref(&signed)) {
        assert!(pass, "dkimpy: {} {why}", file.display());
    }
    let o = run_with_input(
        dkimd().args(["verify", "--nameserver", &named.addr()]),
        &o.stdout,
    );
    let v = text(&o);
    assert!(
        v.contains("pass d=r2.example s=rsa2026") && v.contains("pass d=r2.example s=ed2026"),
        "{v}"
    );

    let o = dk(&["migrate", "rspamd", "--config", conf_s]);
    assert!(
        text(&o).contains("nothing to change: already moved in"),
        "{}",
        text(&o)
    );
}

/// A key as Virtualmin makes one (`openssl genrsa -out FILE`, dkim-lib.pl
/// `generate_dkim_key`), and its DKIM record (the SubjectPublicKeyInfo
/// from `openssl rsa -pubout`).
fn openssl_genrsa(file: &Path, bits: u32) -> String {
    let o = std::process::Command::new("openssl")
        .arg("genrsa")
        .arg("-out")
        .arg(file)
        .arg(bits.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl genrsa: {}", text(&o));
    let o = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl rsa: {}", text(&o));
    use base64::Engine;
    format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(&o.stdout)
    )
}

/// A TXT line for a zone file, the record cut into 255-byte strings.
fn txt_line(name: &str, record: &str) -> String {
    let parts: Vec<String> = record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("{name} IN TXT ( {} )", parts.join(" "))
}

/// `dkimd migrate virtualmin` on files in Virtualmin's formats (each fact
/// cited in dkimd-core's migrate/virtualmin.rs): the module configuration
/// (DKIM on, an extra domain, which domains sign), five domain files (one
/// excluded, one without mail, one without DNS, one with its own key, an
/// alias without DNS records), and the OpenDKIM files Virtualmin writes
/// (Selector and KeyFile, a refile: SigningTable with `*@DOMAIN ID` and
/// `* default`, the KeyTable, DAEMON_OPTS with -b s). Applied: the
/// default key is a global key under Virtualmin's selector, the domains
/// keep their features, the live check covers every domain that signs,
/// and a second run changes nothing.
#[test]
fn migrate_virtualmin_keeps_the_selector_and_the_domains() {
    if !common::bind::have_named()
        || !require_peer(
            "openssl",
            std::process::Command::new("openssl").arg("version"),
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    let vs = etc.join("webmin/virtual-server");
    std::fs::create_dir_all(vs.join("domains")).unwrap();
    // The module configuration: other settings beside the DKIM ones, a
    // comment, and a value holding '='.
    std::fs::write(
        vs.join("config"),
        "# Virtualmin module configuration\nhome_base=/home\nmail_system=0\ndkim_enabled=1\ndkim_extra=extra.example\ndkim_alldns=0\nbw_template=a=b\n",
    )
    .unwrap();
    let domain = |id: &str, lines: &str| {
        std::fs::write(vs.join("domains").join(id), format!("id={id}\n{lines}")).unwrap();
    };
    domain("1700000001", "dom=v1.example\ndns=1\nmail=1\nweb=1\n");
    domain(
        "1700000002",
        "dom=v2.example\ndns=1\nmail=1\ndkim_enabled=0\n",
    );
    domain("1700000003", "dom=v3.example\ndns=1\nmail=0\n");
    domain("1700000004", "dom=v4.example\ndns=1\nmail=1\n");
    domain("1700000005", "dom=nodns.example\ndns=0\nmail=1\n");
    domain(
        "1700000006",
        "dom=alias.example\ndns=1\nmail=1\nalias=1700000001\naliasdns=\n",
    );
    std::fs::write(
        vs.join("domains").join("1700000004.bak"),
        "dom=backup.example\n",
    )
    .unwrap();
    // The OpenDKIM files Virtualmin writes (dkim-lib.pl).
    let global = openssl_genrsa(&etc.join("dkim.key"), 2048);
    let own = openssl_genrsa(&etc.join("1700000004.dkim-key"), 2048);
    std::fs::write(
        etc.join("dkim-domains.txt"),
        "v1.example\nv3.example\nv4.example\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("dkim-signingtable"),
        "*@v4.example\t1700000004\n*\tdefault\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("dkim-keytable"),
        format!(
            "1700000004\tv4.example:v4sel:{e}/1700000004.dkim-key\ndefault\t%:202611:{e}/dkim.key\n",
            e = etc.display()
        ),
    )
    .unwrap();
    let od_conf = etc.join("opendkim.conf");
    std::fs::write(
        &od_conf,
        format!(
            "Syslog\t\t\tyes\nSelector 202611\nKeyFile {e}/dkim.key\nDomain {e}/dkim-domains.txt\nSocket inet:8891@127.0.0.1\nSigningTable refile:{e}/dkim-signingtable\nKeyTable {e}/dkim-keytable\n",
            e = etc.display()
        ),
    )
    .unwrap();
    let defaults = etc.join("default-opendkim");
    std::fs::write(
        &defaults,
        "RUNDIR=/run/opendkim\nDAEMON_OPTS=\"-x /etc/opendkim.conf -b s\"\n",
    )
    .unwrap();
    // The records Virtualmin published in BIND.
    let zone = |d: &str, sel: &str, rec: &str| {
        (
            d.to_string(),
            common::bind::zone_file(d, 1, &[txt_line(&format!("{sel}._domainkey"), rec)]),
        )
    };
    let zones = [
        zone("v1.example", "202611", &global),
        zone("extra.example", "202611", &global),
        zone("v4.example", "v4sel", &own),
    ];
    let zones: Vec<(&str, String)> = zones.iter().map(|(d, t)| (d.as_str(), t.clone())).collect();
    let named = common::bind::Named::start(&zones);
    let config = dns_config(tmp.path(), &named);
    let dk = |args: &[&str]| dkimd_with(&config, args);
    let args = |dry: bool| {
        let mut a = vec![
            "migrate".to_string(),
            "virtualmin".into(),
            "--config".into(),
            vs.display().to_string(),
            "--opendkim-config".into(),
            od_conf.display().to_string(),
            "--opendkim-defaults".into(),
            defaults.display().to_string(),
        ];
        if dry {
            a.push("--dry-run".into());
        }
        a
    };
    let run = |dry: bool| {
        let a = args(dry);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        dk(&a)
    };
    let o = run(true);
    let plan = text(&o);
    assert!(o.status.success(), "{plan}");
    for line in [
        "6 domain(s): alias.example, nodns.example, v1.example, v2.example, v3.example, v4.example",
        "domain: v1.example (dns on, mail on, dkim default)",
        "domain: v2.example (dns on, mail on, dkim never)",
        "domain: v3.example (dns on, mail off, dkim default)",
        "domain: nodns.example (dns off, mail on, dkim default)",
        "domain: alias.example (dns on, mail on, dkim never)",
        "key: every domain (global key) selector 202611 (rsa 2048 bits)",
        "key: v4.example selector v4sel (rsa 2048 bits)",
        "setting: signing = on (from dkim_enabled=1",
        "setting: verify = off (from DAEMON_OPTS -b s",
        "setting: default-domains = dns-and-mail",
        "setting: extra-domains = extra.example",
        "setting: selector = 202611",
    ] {
        assert!(plan.contains(line), "{line}: {plan}");
    }
    assert!(!plan.contains("backup.example"), "{plan}");
    assert!(
        plan.contains("alias.example is an alias of v1.example"),
        "{plan}"
    );

    let o = run(false);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for name in [
        "202611._domainkey.v1.example",
        "202611._domainkey.extra.example",
        "v4sel._domainkey.v4.example",
    ] {
        assert!(out.contains(&format!("DNS serves {name}")), "{name}: {out}");
    }
    assert!(
        !out.contains("v2.example._domainkey")
            && !out.contains("DNS serves 202611._domainkey.v3.example"),
        "{out}"
    );
    // What signs now, as dkimd's own status says.
    let o = dk(&["--json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let signs = |d: &str| {
        status["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["domain"] == d)
            .map(|r| r["signs"] == true)
    };
    assert_eq!(signs("v1.example"), Some(true), "{status}");
    assert_eq!(signs("v4.example"), Some(true), "{status}");
    assert_eq!(signs("v2.example"), Some(false), "{status}");
    assert_eq!(signs("v3.example"), Some(false), "{status}");
    // The global key signs v1.example's mail under Virtualmin's selector.
    let message = b"From: Vic <vic@v1.example>\r\nTo: bob@example.net\r\nSubject: from Virtualmin\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <v1@v1.example>\r\n\r\nSame key.\r\n";
    let o = run_with_input(
        dkimd()
            .arg("--config")
            .arg(&config)
            .args(["sign", "--domain", "v1.example"]),
        message,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run_with_input(
        dkimd().args(["verify", "--nameserver", &named.addr()]),
        &o.stdout,
    );
    assert!(
        text(&o).contains("pass d=v1.example s=202611"),
        "{}",
        text(&o)
    );

    let o = run(false);
    assert!(
        text(&o).contains("nothing to change: already moved in"),
        "{}",
        text(&o)
    );
}

fn sh(cmd: &mut std::process::Command) -> std::process::Output {
    cmd.output().unwrap()
}

/// The Debian package: `scripts/deb` builds it (from this test build),
/// lintian reports no error, and on this machine install, `dkimd install`
/// (on a private Postfix directory), `dkimd uninstall`, remove and purge
/// leave it as it was: the binary, unit, man pages, completions,
/// configuration and state go; only the dkimd system user stays, as
/// Debian leaves system users (the test removes it when it made it).
#[test]
fn the_debian_package_installs_and_purges_cleanly() {
    if euid() != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the package test needs root"
        );
        eprintln!("SKIPPED: not root; the package test installs a .deb");
        return;
    }
    if !require_peer(
        "cargo-deb",
        std::process::Command::new("cargo").args(["deb", "--version"]),
    ) || !require_peer(
        "lintian",
        std::process::Command::new("lintian").arg("--version"),
    ) || !require_peer(
        "Postfix's postconf",
        std::process::Command::new("postconf")
            .arg("-d")
            .arg("mail_version"),
    ) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // A package left by an earlier, interrupted run goes first.
    let _ = sh(std::process::Command::new("dpkg").args(["--purge", "dkimd"]));
    let user_before = sh(std::process::Command::new("getent").args(["passwd", "dkimd"]))
        .status
        .success();
    // The target directory this test binary was built in (…/target/debug/dkimd).
    let target = Path::new(env!("CARGO_BIN_EXE_dkimd"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let o = sh(std::process::Command::new("bash")
        .arg(root.join("scripts/deb"))
        .arg("--debug")
        .env("CARGO_TARGET_DIR", &target));
    assert!(o.status.success(), "scripts/deb: {}", text(&o));
    let deb = target.join("debian/dkimd_0.1.0-1_amd64.deb");
    assert!(deb.exists(), "{}", text(&o));
    let o = sh(std::process::Command::new("lintian").arg(&deb));
    let said = text(&o);
    assert!(
        !said.lines().any(|l| l.starts_with("E: ")),
        "lintian errors: {said}"
    );

    let paths = [
        "/usr/bin/dkimd",
        "/usr/lib/systemd/system/dkimd.service",
        "/etc/dkimd/dkimd.toml",
        "/var/lib/dkimd",
        "/usr/share/man/man1/dkimd.1.gz",
        "/usr/share/man/man1/dkimd-migrate-opendkim.1.gz",
        "/usr/share/man/man7/dkimd.7.gz",
        "/usr/share/bash-completion/completions/dkimd",
    ];
    // State and configuration of a dkimd installed another way (or left
    // by a test) are moved aside, and put back at the end.
    struct Aside(Vec<(PathBuf, PathBuf)>);
    impl Drop for Aside {
        fn drop(&mut self) {
            for (p, a) in &self.0 {
                let _ = std::fs::rename(a, p);
            }
        }
    }
    let mut aside = Aside(Vec::new());
    for p in ["/var/lib/dkimd", "/etc/dkimd"] {
        if Path::new(p).exists() {
            let a = PathBuf::from(format!("{p}.before-package-test"));
            std::fs::rename(p, &a).unwrap();
            aside.0.push((PathBuf::from(p), a));
        }
    }
    for p in paths {
        assert!(
            !Path::new(p).exists(),
            "{p} exists before the package is installed"
        );
    }
    let o = sh(std::process::Command::new("dpkg").arg("-i").arg(&deb));
    assert!(o.status.success(), "dpkg -i: {}", text(&o));
    let listed = text(&sh(std::process::Command::new("dpkg").args(["-L", "dkimd"])));
    for p in paths {
        assert!(Path::new(p).exists(), "{p} missing after install");
    }
    let conffiles = text(&sh(std::process::Command::new("dpkg-query").args([
        "-W",
        "-f=${Conffiles}",
        "dkimd",
    ])));
    assert!(conffiles.contains("/etc/dkimd/dkimd.toml"), "{conffiles}");
    let meta = std::fs::metadata("/var/lib/dkimd").unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let uid: u32 = text(&sh(std::process::Command::new("id").args(["-u", "dkimd"])))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(meta.uid(), uid);
    let o = sh(std::process::Command::new("/usr/bin/dkimd").arg("--version"));
    assert!(
        o.status.success() && text(&o).starts_with("dkimd 0.1.0"),
        "{}",
        text(&o)
    );
    // The packaged configuration, as the packaged service user.
    let o = sh(std::process::Command::new("runuser").args([
        "-u",
        "dkimd",
        "--",
        "/usr/bin/dkimd",
        "--config",
        "/etc/dkimd/dkimd.toml",
        "run",
        "--check-config",
    ]));
    assert!(o.status.success(), "check-config as dkimd: {}", text(&o));
    assert!(text(&o).contains("configuration ok"), "{}", text(&o));

    // dkimd install from the package: the package's user and unit serve.
    let tmp = tempfile::tempdir().unwrap();
    let pf = postfix_dir(tmp.path());
    let main_cf = std::fs::read_to_string(pf.join("main.cf")).unwrap();
    let o = sh(std::process::Command::new("/usr/bin/dkimd")
        .arg("install")
        .arg("--postfix-config")
        .arg(&pf));
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("dkimd exists"), "{out}");
    assert!(
        out.contains("the package's unit /lib/systemd/system/dkimd.service runs dkimd")
            || out.contains("the package's unit /usr/lib/systemd/system/dkimd.service runs dkimd"),
        "{out}"
    );
    assert!(
        out.contains("/etc/dkimd/dkimd.toml exists; left as it is"),
        "{out}"
    );
    assert!(!out.contains("warning: ExecStart"), "{out}");
    assert!(!Path::new("/etc/systemd/system/dkimd.service").exists());
    let o = sh(std::process::Command::new("/usr/bin/dkimd")
        .arg("uninstall")
        .arg("--postfix-config")
        .arg(&pf));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(pf.join("main.cf")).unwrap(),
        main_cf
    );

    // Remove keeps the configuration and the state; purge takes them.
    let o = sh(std::process::Command::new("dpkg").args(["-r", "dkimd"]));
    assert!(o.status.success(), "dpkg -r: {}", text(&o));
    assert!(!Path::new("/usr/bin/dkimd").exists());
    assert!(Path::new("/etc/dkimd/dkimd.toml").exists() && Path::new("/var/lib/dkimd").exists());
    let o = sh(std::process::Command::new("dpkg").args(["-P", "dkimd"]));
    assert!(o.status.success(), "dpkg -P: {}", text(&o));
    for p in listed.lines().filter(|l| l.contains("dkimd")) {
        assert!(!Path::new(p).exists(), "{p} left after purge");
    }
    for p in paths {
        assert!(!Path::new(p).exists(), "{p} left after purge");
    }
    assert!(
        !Path::new("/etc/dkimd").exists(),
        "/etc/dkimd left after purge"
    );
    assert!(
        sh(std::process::Command::new("dpkg").args(["-s", "dkimd"]))
            .status
            .code()
            != Some(0)
    );
    // The system user stays (Debian's way); the machine gets back to how
    // the test found it.
    assert!(
        sh(std::process::Command::new("getent").args(["passwd", "dkimd"]))
            .status
            .success()
    );
    if !user_before {
        let _ = sh(std::process::Command::new("gpasswd").args(["-d", "postfix", "dkimd"]));
        assert!(sh(std::process::Command::new("userdel").arg("dkimd"))
            .status
            .success());
        let _ = sh(std::process::Command::new("groupdel").arg("dkimd"));
    }
    drop(aside);
}

/// `install --replace` and `uninstall` on lists as admins write them:
/// `non_smtpd_milters = $smtpd_milters` (dkimd is not added twice), and a
/// milter in one list only (uninstall does not put it into the other).
/// `postconf -n` is the same after uninstall as before install.
#[test]
fn replace_keeps_list_references_and_restores_each_list() {
    if !require_peer(
        "Postfix's postconf",
        std::process::Command::new("postconf")
            .arg("-d")
            .arg("mail_version"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The old milter: anything that answers on its port.
    let old = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let old_port = old.local_addr().unwrap().port();
    let od_conf = tmp.path().join("opendkim.conf");
    std::fs::write(&od_conf, format!("Socket inet:{old_port}@localhost\n")).unwrap();
    let d_port = free_port();
    let config = tmp.path().join("dkimd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[milter]\nsocket = \"inet:127.0.0.1:{d_port}\"\n",
            tmp.path().join("state").display()
        ),
    )
    .unwrap();
    let _daemon = Daemon::start(&config, d_port);
    for (case, main_cf) in [
        ("a reference", format!("smtpd_milters = inet:localhost:{old_port}\nnon_smtpd_milters = $smtpd_milters\nmilter_default_action = accept\n")),
        ("one list", format!("smtpd_milters = inet:localhost:{old_port}\nmilter_default_action = tempfail\n")),
    ] {
        let pf = tmp.path().join(case.replace(' ', "-"));
        std::fs::create_dir_all(&pf).unwrap();
        std::fs::write(pf.join("main.cf"), &main_cf).unwrap();
        let postconf_n = || text(&std::process::Command::new("postconf").arg("-c").arg(&pf).arg("-n").output().unwrap());
        let before = postconf_n();
        let run = |cmd: &str| {
            let mut c = dkimd();
            c.arg("--config").arg(&config).arg(cmd).arg("--postfix-config").arg(&pf).args(["--no-systemd", "--no-user"]);
            if cmd == "install" {
                c.args(["--replace", "opendkim", "--replace-config"]).arg(&od_conf);
            }
            let o = c.output().unwrap();
            assert!(o.status.success(), "{case}: {cmd}: {}", text(&o));
            text(&o)
        };
        let out = run("install");
        let now = postconf_n();
        assert!(now.contains(&format!("smtpd_milters = inet:127.0.0.1:{d_port}\n")), "{case}: {now}\n{out}");
        if case == "a reference" {
            assert!(now.contains("non_smtpd_milters = $smtpd_milters\n"), "{case}: {now}");
            assert!(out.contains("non_smtpd_milters takes in $smtpd_milters"), "{out}");
        } else {
            assert!(now.contains(&format!("non_smtpd_milters = inet:127.0.0.1:{d_port}\n")), "{case}: {now}");
        }
        run("uninstall");
        assert_eq!(postconf_n(), before, "{case}");
    }
    drop(old);
}

/// `dkimd install` as the CLI runs it: `dkimd --config CFG --state-dir
/// STATE install|uninstall --postfix-config PF --systemd-dir UNITS ...`.
fn install_cmd(config: &Path, state: &Path, pf: &Path, units: &Path, cmd: &str) -> Command {
    let mut c = dkimd();
    c.arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .arg(cmd)
        .arg("--postfix-config")
        .arg(pf)
        .arg("--systemd-dir")
        .arg(units);
    c
}

use std::process::Command;

/// The unit's `ProtectSystem=full` leaves /etc read-only, where BIND's zone
/// files often are: install writes a drop-in that lets the unit (its own,
/// or the package's) write the directories of the bind-zone-file zones,
/// removes it when there are none, and uninstall takes it away.
/// `run --check-config` says when a zone file's directory is missing.
#[test]
fn install_lets_the_unit_write_the_zone_directories() {
    if !require_peer(
        "Postfix's postconf",
        Command::new("postconf").arg("-d").arg("mail_version"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let pf = postfix_dir(tmp.path());
    let units = tmp.path().join("systemd");
    let zones = tmp.path().join("zone's 1");
    std::fs::create_dir(&zones).unwrap();
    std::fs::write(zones.join("example.com.zone"), "").unwrap();
    std::fs::write(zones.join("example.net.zone"), "").unwrap();
    let config = tmp.path().join("dkimd.toml");
    let zone = |name: &str, file: &Path| {
        format!(
            "[[publish.zone]]\nname = \"{name}\"\nbackend = \"bind-zone-file\"\nfile = \"{}\"\nreload_command = [\"true\"]\n",
            file.display()
        )
    };
    let with_zones = format!(
        "state_dir = \"{}\"\n{}{}{}",
        state.display(),
        zone("example.com", &zones.join("example.com.zone")),
        zone("example.net", &zones.join("example.net.zone")),
        zone("example.org", &tmp.path().join("other/example.org.zone")),
    );
    std::fs::write(&config, &with_zones).unwrap();
    let run = |cmd: &str| {
        let o = install_cmd(&config, &state, &pf, &units, cmd)
            .arg("--no-user")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    let out = run("install");
    let drop_in = units.join("dkimd.service.d/zone-files.conf");
    assert!(
        out.contains(&format!("systemd: wrote {}", drop_in.display())),
        "{out}"
    );
    let written = std::fs::read_to_string(&drop_in).unwrap();
    // One line per directory, quoted where it has a space.
    let lines: Vec<&str> = written
        .lines()
        .filter(|l| l.starts_with("ReadWritePaths="))
        .collect();
    assert_eq!(
        lines,
        vec![
            format!("ReadWritePaths=-{}", tmp.path().join("other").display()),
            format!("ReadWritePaths=\"-{}\"", zones.display()),
        ],
        "{written}"
    );
    assert!(written.contains("\n[Service]\n"), "{written}");
    assert!(run("install").contains("is up to date"));
    // systemd reads the drop-in without a complaint (and does complain of a
    // line it cannot use, so the check can fail).
    if require_peer(
        "systemd-analyze (Debian package systemd)",
        Command::new("systemd-analyze").arg("--version"),
    ) {
        let complaints = || {
            let o = Command::new("systemd-analyze")
                .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
                .arg("verify")
                .arg(units.join("dkimd.service"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter(|l| l.contains("zone-files.conf"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(complaints(), Vec::<String>::new());
        std::fs::write(&drop_in, format!("{written}ReadWritePaths=-relative/dir\n")).unwrap();
        let c = complaints();
        assert!(c.len() == 1 && c[0].contains("not absolute"), "{c:?}");
        // Install puts it right again.
        assert!(run("install").contains(&format!("wrote {}", drop_in.display())));
        assert_eq!(complaints(), Vec::<String>::new());
    }
    // The check says what is missing: example.org's directory.
    let o = check_config(&config);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "warning: {} does not exist",
            tmp.path().join("other").display()
        )),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains(&zones.display().to_string()),
        "{}",
        text(&o)
    );
    // No zone files any more: the drop-in goes.
    std::fs::write(&config, format!("state_dir = \"{}\"\n", state.display())).unwrap();
    let out = run("install");
    assert!(
        out.contains(&format!("removed {} (no zone files", drop_in.display())),
        "{out}"
    );
    assert!(!drop_in.parent().unwrap().exists());
    // Back, then uninstall: gone with its directory.
    std::fs::write(&config, &with_zones).unwrap();
    run("install");
    assert!(drop_in.exists());
    let out = run("uninstall");
    assert!(
        out.contains(&format!("removed {}", drop_in.display())),
        "{out}"
    );
    assert!(!drop_in.parent().unwrap().exists());
    assert!(!units.join("dkimd.service").exists());
    // A drop-in of that name that the admin wrote is neither replaced nor
    // removed.
    std::fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
    std::fs::write(&drop_in, "[Service]\nReadWritePaths=/srv/zones\n").unwrap();
    let out = run("install");
    assert!(
        out.contains(&format!(
            "systemd: warning: {} exists and was not written by install: left as it is",
            drop_in.display()
        )),
        "{out}"
    );
    run("uninstall");
    assert_eq!(
        std::fs::read_to_string(&drop_in).unwrap(),
        "[Service]\nReadWritePaths=/srv/zones\n"
    );
}

/// With a service user, install says what the daemon could not do as it:
/// enter the zone's directory, write there, keep the zone file's owner,
/// read rndc's key and a TSIG secret of root's, each with the command that
/// fixes it. With those commands run, install finds nothing, and the
/// service user does publish a key into the zone that BIND serves.
#[test]
fn install_says_what_the_service_user_cannot_reach_and_the_fixes_work() {
    use common::bind::have_named;
    use common::env::SigningEnv;
    if !have_named() || service_user().is_none() {
        return;
    }
    // A user of its own (install creates it, with its group), removed
    // again however the test ends.
    let user = "dkimdzonetest";
    struct Gone(&'static str);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("gpasswd")
                .args(["-d", "postfix", self.0])
                .output();
            let _ = Command::new("userdel").arg(self.0).output();
        }
    }
    drop(Gone(user));
    let _gone = Gone(user);
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "w1");
    let tmp = env.tmp.path();
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = tmp.join("state");
    let pf = postfix_dir(tmp);
    let units = tmp.join("systemd");
    // A second zone, by RFC 2136, whose TSIG secret is root's (0600).
    let secret = tmp.join("tsig.secret");
    std::fs::write(&secret, "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    cfg.push_str(&format!(
        "[[publish.zone]]\nname = \"example.net\"\nbackend = \"rfc2136\"\nserver = \"{}\"\ntsig_key_name = \"k\"\ntsig_secret_file = \"{}\"\n",
        env.named.addr(),
        secret.display()
    ));
    std::fs::write(&env.config, &cfg).unwrap();
    let install = || {
        let o = install_cmd(&env.config, &state, &pf, &units, "install")
            .args(["--user", user])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        o
    };
    let named_dir = env.named.dir.clone();
    let zone_file = env.named.zone_file("example.com");
    std::fs::set_permissions(&named_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sh = |cmd: &str| {
        let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
        assert!(o.status.success(), "{cmd}: {}", text(&o));
    };
    let says = |out: &str, line: String| assert!(out.contains(&line), "wanted: {line}\n{out}");
    let nd = named_dir.display().to_string();
    let o = install();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("access: warning:"))
        .collect();
    assert_eq!(warnings.len(), 3, "{out}");
    // The zone's directory: its owner (named, root without capabilities
    // here, reads it as its owner) keeps it; the group becomes the user's.
    let dir_fix = format!("chgrp {user} {nd} && chmod g+wx {nd}");
    says(&out, format!("access: warning: {user} cannot create files in {nd} (root:root, mode 0700): {dir_fix} (which lets"));
    // rndc's configuration is in there too.
    says(&out, format!("access: warning: {user} cannot enter {nd} (root:root, mode 0700): chmod o+x {nd} (rndc reloads the zone with it)"));
    // The TSIG secret: the daemon takes only its own, mode 0600.
    let s = secret.display();
    let secret_fix = format!("chown {user} {s} && chmod 600 {s}");
    says(&out, format!("access: warning: {user} cannot use the secret {s} (root:root, mode 0600; dkimd accepts a secret only when no one but its owner may read it): {secret_fix} (zone example.net: tsig_secret_file)"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    says(
        &stderr,
        format!("warning: dkimd runs as {user}, who cannot reach 3 thing(s)"),
    );
    sh(&dir_fix);
    sh(&secret_fix);
    // Then the zone file, whose owner and group the new one must get.
    let out = text(&install());
    let zf = zone_file.display();
    let fix = format!("chown {user}:{user} {zf}");
    says(&out, format!("access: warning: {user} cannot give the new {zf} the old one's owner and group (root:root, mode 0644; only root may give a file away, and only to a group it is in): {fix}"));
    assert_eq!(out.matches("access: warning").count(), 1, "{out}");
    sh(&fix);
    let out = text(&install());
    assert!(!out.contains("access: warning"), "{out}");
    says(
        &out,
        format!(
            "access: {user} can edit the zone files and read the files the configuration names"
        ),
    );
    // The daemon's own check, as the user, finds nothing either.
    let o = Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(env!("CARGO_BIN_EXE_dkimd"))
        .arg("--config")
        .arg(&env.config)
        .args(["run", "--check-config"])
        .output()
        .unwrap();
    assert!(
        o.status.success() && !text(&o).contains("warning"),
        "{}",
        text(&o)
    );
    // What install now calls fine is: the service user publishes a new key.
    let o = Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(env!("CARGO_BIN_EXE_dkimd"))
        .arg("--config")
        .arg(&env.config)
        .args(["key", "generate", "example.com"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        env.named.dig_txt("w1-2._domainkey.example.com").len(),
        1,
        "the new key's record is served: {}",
        text(&o)
    );
    let meta = std::fs::metadata(&zone_file).unwrap();
    assert_eq!(meta.uid(), uzers_uid(user), "the zone file keeps its owner");
    assert_eq!(meta.mode() & 0o777, 0o644, "and its mode");
    let o = install_cmd(&env.config, &state, &pf, &units, "uninstall")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

fn uzers_uid(user: &str) -> u32 {
    let o = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// `dkimd --config CONFIG run --check-config`.
fn check_config(config: &Path) -> std::process::Output {
    dkimd()
        .arg("--config")
        .arg(config)
        .args(["run", "--check-config"])
        .output()
        .unwrap()
}
