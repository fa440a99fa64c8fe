//! Every subcommand with its standard output closed (`dkimd … | head -0`):
//! none panics, and a changing command finishes its change and writes its
//! audit entry. `enable` through a closed pipe publishes every record into
//! the real BIND of the test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::have_named;
use common::daemon::free_port;
use common::env::SigningEnv;
use common::*;
use std::io::Write;
use std::process::{Output, Stdio};

const MSG: &[u8] =
    b"From: Joe <joe@example.com>\r\nTo: x@example.net\r\nSubject: pipe\r\n\r\nbody\r\n";

/// A pipe whose reading end is already closed.
fn closed_stdout() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// Runs dkimd with `args`, its standard output closed, `input` on its
/// standard input.
fn run_closed(config: &std::path::Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = dkimd()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(closed_stdout())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn every_subcommand_survives_a_closed_pipe() {
    if !have_named() {
        return;
    }
    let env = SigningEnv::start(tempfile::tempdir().unwrap(), "", &[], "p1");
    let dir = env.tmp.path();
    let key = keygen(dir, "ed25519", "k1");
    let signed = {
        let o = run_with_input(
            dkimd()
                .args([
                    "sign",
                    "--domain",
                    "example.com",
                    "--selector",
                    "k1",
                    "--key",
                ])
                .arg(&key.path),
            MSG,
        );
        assert!(o.status.success());
        o.stdout
    };
    let dns = dir.join("dns.txt");
    write_dns_file(
        &dns,
        &[("k1._domainkey.example.com".into(), key.record.clone())],
    );
    let export = dir.join("export.json");
    let pem = key.path.display().to_string();
    let keydir = dir.join("keys");
    std::fs::create_dir_all(&keydir).unwrap();
    let postfix_dir = dir.join("no-postfix");
    let milter_port = free_port().to_string();
    let bench_socket = format!("inet:127.0.0.1:{milter_port}");
    let dns_s = dns.display().to_string();
    let export_s = export.display().to_string();
    let keydir_s = keydir.display().to_string();
    let postfix_s = postfix_dir.display().to_string();
    let systemd_s = dir.display().to_string();
    // Each command with its input; the changing ones change the store.
    let commands: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["--help"], b""),
        (vec!["--version"], b""),
        (
            vec![
                "keygen",
                "--algorithm",
                "ed25519",
                "--domain",
                "example.com",
                "--selector",
                "k2",
                "--out",
                &keydir_s,
            ],
            b"",
        ),
        (
            vec![
                "keygen",
                "--json",
                "--algorithm",
                "ed25519",
                "--domain",
                "example.com",
                "--selector",
                "k3",
                "--out",
                &keydir_s,
            ],
            b"",
        ),
        (
            vec![
                "sign",
                "--domain",
                "example.com",
                "--selector",
                "k1",
                "--key",
                &pem,
            ],
            MSG,
        ),
        (vec!["verify", "--dns-file", &dns_s], &signed),
        (vec!["verify", "--json", "--dns-file", &dns_s], &signed),
        (vec!["settings"], b""),
        (vec!["settings", "--json"], b""),
        (vec!["set", "policy-fail", "reject"], b""),
        (vec!["status"], b""),
        (vec!["status", "--json"], b""),
        (vec!["domain", "add", "pipe.test", "--dns", "off"], b""),
        (vec!["domain", "list"], b""),
        (vec!["domain", "set", "pipe.test", "--mail", "off"], b""),
        (vec!["domain", "rename", "pipe.test", "pipe2.test"], b""),
        (vec!["domain", "remove", "pipe2.test"], b""),
        (vec!["key", "show", "example.com"], b""),
        (vec!["key", "generate", "example.com"], b""),
        (vec!["key", "default", "example.com"], b""),
        (vec!["export", &export_s], b""),
        (vec!["import", &export_s], b""),
        (
            vec!["admin", "passwd", "pipeadmin"],
            b"a long enough password\n",
        ),
        (vec!["admin", "list"], b""),
        (vec!["admin", "remove", "pipeadmin"], b""),
        (vec!["run", "--check-config"], b""),
        (
            vec!["bench", "--socket", &bench_socket, "--messages", "1"],
            b"",
        ),
        (
            vec![
                "install",
                "--postfix-config",
                &postfix_s,
                "--systemd-dir",
                &systemd_s,
            ],
            b"",
        ),
        (
            vec![
                "uninstall",
                "--postfix-config",
                &postfix_s,
                "--systemd-dir",
                &systemd_s,
            ],
            b"",
        ),
        (vec!["disable"], b""),
        (vec!["enable", "--selector", "pipe2"], b""),
    ];
    for (args, input) in &commands {
        let o = run_closed(&env.config, args, input);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && o.status.code() != Some(101),
            "{args:?} panicked on a closed pipe: {err}"
        );
        assert!(
            o.status.code().is_some(),
            "{args:?} was killed: {:?}",
            o.status
        );
    }
    // sign says why it failed: its output is the message itself.
    let o = run_closed(
        &env.config,
        &[
            "sign",
            "--domain",
            "example.com",
            "--selector",
            "k1",
            "--key",
            &pem,
        ],
        MSG,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot write the signed message"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The changes were made: the setting, the domain gone, both records of
    // the new selector served by BIND, and the audit entries written.
    let settings = env.ok(&["settings"]);
    assert!(
        settings.contains("policy-fail") && settings.contains("reject"),
        "{settings}"
    );
    assert!(!env.ok(&["domain", "list"]).contains("pipe"));
    for name in [
        "pipe2._domainkey.example.com",
        "pipe2-ed25519._domainkey.example.com",
    ] {
        assert_eq!(env.named.dig_txt(name).len(), 1, "{name} not served");
    }
    let status = env.ok(&["status"]);
    assert!(
        !status.contains("missing") && !status.contains("mismatch"),
        "{status}"
    );
    let audit = std::fs::read_to_string(env.tmp.path().join("state").join("audit.log")).unwrap();
    for action in [
        "\"set\"",
        "\"add domain\"",
        "\"remove domain\"",
        "\"disable\"",
        "\"enable\"",
    ] {
        assert!(
            audit.contains(action),
            "no audit entry for {action}: {audit}"
        );
    }
    // The daemon can still start from this store.
    let _d = env.daemon();
}
