//! End to end through a real Postfix: mail submitted on the ORIGINATING
//! service arrives signed and passes dkimpy and dkimd; mail from an outside
//! client gets Authentication-Results and the policy for bad signatures;
//! Postfix falls back to its default action when dkimd is down; `dkimd
//! install` hooks the milter into Postfix's configuration and `uninstall`
//! takes it out again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::have_named;
use common::daemon::Daemon;
use common::env::SigningEnv;
use common::postfix::{have_postfix, smtp_send, Postfix};
use common::*;
use std::process::Command;

fn setup() -> SigningEnv {
    let tmp = tempfile::tempdir().unwrap();
    // An Ed25519 key made by dkimpy's dknewkey, published beside dkimd's.
    let mut extra = Vec::new();
    if have_dkimpy() {
        let o = Command::new("/usr/bin/dknewkey")
            .current_dir(tmp.path())
            .args(["--ktype", "ed25519", "py"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "dknewkey: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let record = std::fs::read_to_string(tmp.path().join("py.dns")).unwrap();
        extra.push(format!(
            "py._domainkey.example.com. 300 IN TXT \"{}\"",
            record.trim()
        ));
    }
    let milter = "trusted_networks = []\nsigning_daemons = [\"ORIGINATING\"]\nauthserv_id = \"mx.test\"\nshutdown_grace = 5";
    SigningEnv::start(tmp, milter, &extra, "pf")
}

const RAW: &[u8] = b"From: Joe <joe@example.com>\r\nTo: Suzie <suzie@example.net>\r\nSubject: through postfix\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <pf1@example.com>\r\n\r\nHello through Postfix.\r\n.leading dot line\r\n";

/// `dkimd verify` through the test's BIND finds two passing signatures.
fn assert_two_passes(env: &SigningEnv, msg: &[u8]) {
    let o = run_with_input(
        dkimd().args(["verify", "--nameserver", &env.named.addr()]),
        msg,
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("pass")).count(),
        2,
        "{text}"
    );
}

fn header_count(msg: &[u8], name: &str) -> usize {
    let m = dkim::Message::parse(msg).unwrap();
    m.headers().iter().filter(|h| h.is(name)).count()
}

fn ar_values(msg: &[u8]) -> Vec<String> {
    let m = dkim::Message::parse(msg).unwrap();
    m.headers()
        .iter()
        .filter(|h| h.is("Authentication-Results"))
        .map(|h| String::from_utf8_lossy(h.value()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_postfix_signs_verifies_and_applies_policy() {
    if !have_named() || !have_postfix() {
        return;
    }
    let env = setup();
    let daemon = env.daemon();
    let pf = Postfix::start(&format!("inet:127.0.0.1:{}", env.port()), "tempfail");
    let dns = env.dns_file();

    // Submission service (ORIGINATING): signed twice.
    let a = smtp_send(
        pf.submission_port,
        "127.0.0.1",
        "joe@example.com",
        "suzie@example.net",
        RAW,
    )
    .await;
    assert!(a.starts_with("250"), "{a}\n{}", pf.log());
    let signed = pf
        .delivered(20)
        .unwrap_or_else(|| panic!("nothing delivered\n{}\n{}", pf.log(), daemon.log_text()));
    assert_eq!(
        header_count(&signed, "DKIM-Signature"),
        2,
        "{}",
        String::from_utf8_lossy(&signed)
    );
    assert_two_passes(&env, &signed);
    if have_dkimpy() {
        let f = env.tmp.path().join("delivered.eml");
        std::fs::write(&f, &signed).unwrap();
        let r = dkimpy_verify(&dns, &[f]);
        assert!(r[0].1, "dkimpy rejects what Postfix delivered: {}", r[0].2);
    }
    assert!(
        daemon.wait_log("mode=sign trust=signing service d=example.com", 5),
        "{}",
        daemon.log_text()
    );

    // A 2.7 MB body: Postfix sends it in 64 KB chunks without waiting for
    // replies (NR_BODY); after its first MiB dkimd hashes the rest on a
    // thread of its own, several 512 KB batches; the signature covers all
    // of it.
    let mut big = b"From: Joe <joe@example.com>\r\nTo: Suzie <suzie@example.net>\r\nSubject: large\r\nDate: Tue, 24 Nov 2026 10:30:00 +0000\r\nMessage-ID: <big1@example.com>\r\n\r\n".to_vec();
    for i in 0..45_000 {
        big.extend_from_slice(
            format!("Line {i:05} of a large body, long enough for several chunks.\r\n").as_bytes(),
        );
    }
    let a = smtp_send(
        pf.submission_port,
        "127.0.0.1",
        "joe@example.com",
        "suzie@example.net",
        &big,
    )
    .await;
    assert!(a.starts_with("250"), "{a}\n{}", pf.log());
    let got = pf.delivered(20).expect("the large message was delivered");
    assert!(got.len() > 2_700_000, "{}", got.len());
    assert_eq!(header_count(&got, "DKIM-Signature"), 2);
    assert_two_passes(&env, &got);

    // The plain service from an outside address: verified, not signed.
    let a = smtp_send(
        pf.port,
        "127.0.0.2",
        "joe@example.com",
        "suzie@example.net",
        &signed,
    )
    .await;
    assert!(a.starts_with("250"), "{a}");
    let got = pf.delivered(20).expect("delivered");
    assert_eq!(
        header_count(&got, "DKIM-Signature"),
        2,
        "no third signature for an outside client"
    );
    let ar = ar_values(&got);
    assert_eq!(ar.len(), 1, "{ar:?}");
    assert!(ar[0].starts_with(" mx.test;"), "{ar:?}");
    assert_eq!(ar[0].matches("dkim=pass").count(), 2, "{ar:?}");

    // A message dkimpy signed, from outside: dkim=pass for dkimpy's signature.
    if have_dkimpy() {
        let input = env.tmp.path().join("py-in.eml");
        let output = env.tmp.path().join("py-out.eml");
        let raw = b"From: Ann <ann@example.com>\r\nTo: Suzie <suzie@example.net>\r\nSubject: signed by dkimpy\r\nDate: Tue, 24 Nov 2026 11:00:00 +0000\r\nMessage-ID: <py1@example.com>\r\n\r\nSigned elsewhere.\r\n";
        std::fs::write(&input, raw).unwrap();
        let o = Command::new("/usr/bin/python3")
            .arg(dkimpy_tool())
            .arg("sign")
            .arg(env.tmp.path().join("py.key"))
            .args(["example.com", "py", "ed25519-sha256", "relaxed/relaxed"])
            .arg(&input)
            .arg(&output)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let a = smtp_send(
            pf.port,
            "127.0.0.2",
            "ann@example.com",
            "suzie@example.net",
            &std::fs::read(&output).unwrap(),
        )
        .await;
        assert!(a.starts_with("250"), "{a}");
        let got = pf.delivered(20).expect("delivered");
        let ar = ar_values(&got);
        assert!(ar[0].contains("dkim=pass header.d=example.com"), "{ar:?}");
        assert!(
            ar[0].contains("header.s=py header.a=ed25519-sha256"),
            "{ar:?}"
        );
    }

    // From our domain but from outside and unsigned: not signed, dkim=none.
    let a = smtp_send(
        pf.port,
        "127.0.0.2",
        "joe@example.com",
        "suzie@example.net",
        RAW,
    )
    .await;
    assert!(a.starts_with("250"), "{a}");
    let got = pf.delivered(20).expect("delivered");
    assert_eq!(header_count(&got, "DKIM-Signature"), 0);
    assert!(
        ar_values(&got)[0].contains("dkim=none"),
        "{:?}",
        ar_values(&got)
    );

    // Tampered: accepted and marked by default; 550 when the policy says reject.
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("Hello through", "Hello thru")
        .into_bytes();
    let a = smtp_send(
        pf.port,
        "127.0.0.2",
        "joe@example.com",
        "suzie@example.net",
        &tampered,
    )
    .await;
    assert!(a.starts_with("250"), "{a}");
    let got = pf.delivered(20).expect("delivered");
    assert!(
        ar_values(&got)[0].contains("dkim=fail reason=\"body hash did not verify\""),
        "{:?}",
        ar_values(&got)
    );
    env.ok(&["set", "policy-fail", "reject"]);
    assert!(daemon.wait_log("reloaded (store changed)", 5));
    let a = smtp_send(
        pf.port,
        "127.0.0.2",
        "joe@example.com",
        "suzie@example.net",
        &tampered,
    )
    .await;
    assert!(a.starts_with("550 5.7.1"), "{a}");
    // The same tampered message with a forged result on top and 1000 more
    // fields: no way around the policy (permerror, the strictest policy).
    let flood = |msg: &[u8]| {
        let mut out =
            b"Authentication-Results: mx.test; dkim=pass header.d=example.com\r\n".to_vec();
        let text = String::from_utf8_lossy(msg).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(b"\r\n");
        for i in 0..1000 {
            out.extend_from_slice(format!("X-Filler-{i}: x\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    };
    let a = smtp_send(
        pf.port,
        "127.0.0.2",
        "joe@example.com",
        "suzie@example.net",
        &flood(&tampered),
    )
    .await;
    assert!(a.starts_with("550 5.7.1 DKIM permerror"), "{a}");
    // Under accept, the flood is delivered with our result only: the
    // forged one never reaches the mailbox.
    env.ok(&["set", "policy-fail", "accept"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let a = smtp_send(
        pf.port,
        "127.0.0.2",
        "joe@example.com",
        "suzie@example.net",
        &flood(RAW),
    )
    .await;
    assert!(a.starts_with("250"), "{a}");
    let got = pf.delivered(20).expect("delivered");
    let ar = ar_values(&got);
    assert_eq!(ar.len(), 1, "{ar:?}");
    assert!(
        ar[0].contains("dkim=permerror reason=\"too many header fields\""),
        "{ar:?}"
    );
    assert!(!ar[0].contains("dkim=pass"), "{ar:?}");
    env.ok(&["set", "policy-fail", "tempfail"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let a = smtp_send(
        pf.port,
        "127.0.0.2",
        "joe@example.com",
        "suzie@example.net",
        &tampered,
    )
    .await;
    assert!(a.starts_with("451 4.7.1"), "{a}");
    assert!(pf.delivered(2).is_none(), "rejected mail is not delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_falls_back_when_dkimd_is_down() {
    if !have_named() || !have_postfix() {
        return;
    }
    let env = setup();
    // Postfix is set up while dkimd is down: the milter's port is fixed
    // first.
    let port = env.pin_port();
    let pf = Postfix::start(&format!("inet:127.0.0.1:{port}"), "tempfail");
    // dkimd is not running: tempfail keeps the message with the sender.
    let a = smtp_send(
        pf.submission_port,
        "127.0.0.1",
        "joe@example.com",
        "suzie@example.net",
        RAW,
    )
    .await;
    assert!(a.starts_with("451"), "{a}");
    assert!(pf.delivered(2).is_none());
    // With accept, mail flows unsigned.
    pf.postconf("milter_default_action=accept");
    let a = smtp_send(
        pf.submission_port,
        "127.0.0.1",
        "joe@example.com",
        "suzie@example.net",
        RAW,
    )
    .await;
    assert!(a.starts_with("250"), "{a}");
    let got = pf.delivered(20).expect("delivered");
    assert_eq!(header_count(&got, "DKIM-Signature"), 0);
    // dkimd back: signed again.
    let _daemon = Daemon::start(&env.config, port);
    let a = smtp_send(
        pf.submission_port,
        "127.0.0.1",
        "joe@example.com",
        "suzie@example.net",
        RAW,
    )
    .await;
    assert!(a.starts_with("250"), "{a}");
    assert_eq!(
        header_count(&pf.delivered(20).expect("delivered"), "DKIM-Signature"),
        2
    );
}

#[test]
fn install_hooks_into_postfix_and_uninstall_undoes_it() {
    if !have_named() || !have_postfix() {
        return;
    }
    let env = setup();
    // install writes the milter's address into Postfix: a fixed one.
    env.pin_port();
    let pf = Postfix::start("inet:127.0.0.1:9999", "tempfail");
    let postconf_n = || {
        String::from_utf8(
            Command::new("postconf")
                .arg("-c")
                .arg(&pf.dir)
                .arg("-n")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    // The admin's own milter stays; the admin's default action stays.
    let units = env.tmp.path().join("systemd");
    let args = |cmd: &str| -> Vec<String> {
        vec![
            cmd.into(),
            "--postfix-config".into(),
            pf.dir.display().to_string(),
            "--systemd-dir".into(),
            units.display().to_string(),
            "--no-user".into(),
        ]
    };
    let run = |a: Vec<String>| {
        let o = dkimd()
            .arg("--config")
            .arg(&env.config)
            .args(&a)
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{a:?}: {t}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        t
    };
    let out = run(args("install"));
    let want = format!("inet:127.0.0.1:9999, inet:127.0.0.1:{}", env.port());
    assert!(
        out.contains(&format!(
            "smtpd_milters: \"inet:127.0.0.1:9999\" → \"{want}\""
        )),
        "{out}"
    );
    assert!(
        out.contains("milter_default_action stays tempfail"),
        "{out}"
    );
    assert!(out.contains("postfix: reloaded"), "{out}");
    let n = postconf_n();
    assert!(n.contains(&format!("smtpd_milters = {want}")), "{n}");
    assert!(n.contains(&format!("non_smtpd_milters = {want}")), "{n}");
    let unit = std::fs::read_to_string(units.join("dkimd.service")).unwrap();
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    assert!(
        unit.contains(&format!("--config {} run", env.config.display())),
        "{unit}"
    );
    // Twice: nothing changes.
    let out = run(args("install"));
    assert!(out.contains("smtpd_milters already has"), "{out}");
    assert!(out.contains("configuration unchanged"), "{out}");
    assert_eq!(postconf_n(), n);
    // enable reports the hook-up.
    let out = env.ok(&["enable"]);
    assert!(
        out.contains(&format!(
            "postfix: smtpd_milters has inet:127.0.0.1:{}",
            env.port()
        )),
        "{out}"
    );
    // Uninstall: back to what it was.
    let out = run(args("uninstall"));
    assert!(out.contains("removed"), "{out}");
    let after = postconf_n();
    assert!(
        after.contains("smtpd_milters = inet:127.0.0.1:9999\n"),
        "{after}"
    );
    assert!(!units.join("dkimd.service").exists());
    // A fresh default: milter_default_action is set to accept and removed again.
    Command::new("postconf")
        .arg("-c")
        .arg(&pf.dir)
        .args(["-X", "milter_default_action"])
        .output()
        .unwrap();
    let out = run(args("install"));
    assert!(
        out.contains("milter_default_action: (default) → \"accept\""),
        "{out}"
    );
    assert!(postconf_n().contains("milter_default_action = accept"));
    run(args("uninstall"));
    assert!(!postconf_n().contains("milter_default_action"));

    // With a service user: created, owns the state directory, Postfix joins
    // its group for the socket. (Needs root; removed again afterwards.)
    if running_as_root() {
        let user = "dkimdtest";
        let _ = Command::new("userdel").arg(user).output();
        let mut a = args("install");
        a.retain(|x| x != "--no-user");
        a.extend(["--user".to_string(), user.to_string()]);
        let out = run(a);
        assert!(
            out.contains(&format!("created system user {user}")),
            "{out}"
        );
        let id = Command::new("id").arg(user).output().unwrap();
        assert!(id.status.success());
        use std::os::unix::fs::MetadataExt;
        let uid: u32 = String::from_utf8_lossy(
            &Command::new("id")
                .args(["-u", user])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .parse()
        .unwrap();
        assert_eq!(
            std::fs::metadata(env.tmp.path().join("state"))
                .unwrap()
                .uid(),
            uid
        );
        let groups = String::from_utf8_lossy(
            &Command::new("id")
                .args(["-Gn", "postfix"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        assert!(groups.split_whitespace().any(|g| g == user), "{groups}");
        let unit = std::fs::read_to_string(units.join("dkimd.service")).unwrap();
        assert!(unit.contains(&format!("User={user}")), "{unit}");
        run(args("uninstall"));
        let _ = Command::new("gpasswd")
            .args(["-d", "postfix", user])
            .output();
        let _ = Command::new("userdel").arg(user).output();
    }
}

/// Root, by asking `id -u` (no libc call needed).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// The DKIM-Signature `s=` tags of a message, in order.
fn selectors(msg: &[u8]) -> Vec<String> {
    let m = dkim::Message::parse(msg).unwrap();
    m.headers()
        .iter()
        .filter(|h| h.is("DKIM-Signature"))
        .filter_map(|h| {
            String::from_utf8_lossy(h.value())
                .split(';')
                .map(str::trim)
                .find_map(|t| t.strip_prefix("s=").map(str::to_string))
        })
        .collect()
}

/// Times the daemon has reloaded its state so far.
fn reloads(d: &Daemon) -> usize {
    d.log_text().matches("reloaded (").count()
}

/// Waits (up to `secs`) for the daemon to reload after `before`.
fn wait_reload(d: &Daemon, before: usize, secs: u64) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if reloads(d) > before {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// A key rotation through real Postfix, with `--at` moving time: mail
/// signed before the switch still passes dkimd and dkimpy during the
/// overlap; the running daemon signs with the new selector right after the
/// step, without a restart; once the old key is revoked, mail it signed
/// gets permerror "key revoked" from dkimd and dkimpy rejects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_through_postfix_keeps_old_mail_verifying_until_revoked() {
    if !have_named() || !have_postfix() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let milter = "trusted_networks = []\nsigning_daemons = [\"ORIGINATING\"]\nauthserv_id = \"mx.test\"\nshutdown_grace = 5";
    let env = SigningEnv::start(tmp, milter, &[], "r1");
    let daemon = env.daemon();
    let pf = Postfix::start(&format!("inet:127.0.0.1:{}", env.port()), "tempfail");
    let pf = &pf;
    let send = |id: &'static str| async move {
        let raw = format!("From: Joe <joe@example.com>\r\nTo: Suzie <suzie@example.net>\r\nSubject: rotation {id}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{id}@example.com>\r\n\r\nSigned during a rotation.\r\n");
        let a = smtp_send(
            pf.submission_port,
            "127.0.0.1",
            "joe@example.com",
            "suzie@example.net",
            raw.as_bytes(),
        )
        .await;
        assert!(a.starts_with("250"), "{a}\n{}", pf.log());
        pf.delivered(20)
            .unwrap_or_else(|| panic!("nothing delivered\n{}", pf.log()))
    };
    // What DNS serves for every selector of the test, as dkimpy's table.
    let dns_table = |name: &str| {
        let mut recs = Vec::new();
        for sel in ["r1", "r1-ed25519", "r2", "r2-ed25519"] {
            let n = format!("{sel}._domainkey.example.com");
            for v in env.named.dig_txt(&n) {
                recs.push((n.clone(), v));
            }
        }
        let p = env.tmp.path().join(name);
        write_dns_file(&p, &recs);
        p
    };
    let verify = |msg: &[u8]| {
        let o = run_with_input(
            dkimd().args(["verify", "--nameserver", &env.named.addr()]),
            msg,
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let old = send("before").await;
    assert_eq!(selectors(&old), ["r1", "r1-ed25519"]);

    // Rotate: the new records are published; the daemon still signs with r1.
    let before = reloads(&daemon);
    env.ok(&["rotate", "--all", "--selector", "r2"]);
    assert!(wait_reload(&daemon, before, 5), "{}", daemon.log_text());
    assert_eq!(env.named.dig_txt("r2._domainkey.example.com").len(), 1);
    assert_eq!(selectors(&send("pending").await), ["r1", "r1-ed25519"]);

    // The step: the running daemon switches to r2 within a second.
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = |secs: u64| {
        let o = Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    // First seen served everywhere; promoted a TTL (3600 s) later.
    let out = env.ok(&["rotate", "--step", "--at", &at(t0 + 60)]);
    assert!(out.contains("served everywhere since"), "{out}");
    let before = reloads(&daemon);
    let out = env.ok(&["rotate", "--step", "--at", &at(t0 + 3661)]);
    assert!(out.contains("selector r2 signs now"), "{out}");
    assert!(wait_reload(&daemon, before, 1), "{}", daemon.log_text());
    // The step commits several times; the daemon may have reloaded
    // between two of them, and takes the last one at its next check.
    let mut new = send("after").await;
    for _ in 0..20 {
        if selectors(&new) == ["r2", "r2-ed25519"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        new = send("after").await;
    }
    assert_eq!(selectors(&new), ["r2", "r2-ed25519"]);
    assert_eq!(
        verify(&new)
            .lines()
            .filter(|l| l.starts_with("pass"))
            .count(),
        2
    );

    // The overlap: mail signed before the switch still passes.
    let text = verify(&old);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("pass")).count(),
        2,
        "{text}"
    );
    if have_dkimpy() {
        let f = env.tmp.path().join("old.eml");
        std::fs::write(&f, &old).unwrap();
        let r = dkimpy_verify(&dns_table("dns-overlap.txt"), &[f]);
        assert!(
            r[0].1,
            "dkimpy rejects old mail during the overlap: {}",
            r[0].2
        );
    }

    // Past retire-after: r1 is revoked; its mail is permerror "key revoked".
    let out = env.ok(&["rotate", "--step", "--at", &at(t0 + 3661 + 7 * 86_400)]);
    assert!(out.contains("selector r1: revoked"), "{out}");
    let text = verify(&old);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("permerror") && l.contains("key revoked"))
            .count(),
        2,
        "{text}"
    );
    if have_dkimpy() {
        let f = env.tmp.path().join("old-revoked.eml");
        std::fs::write(&f, &old).unwrap();
        let r = dkimpy_verify(&dns_table("dns-revoked.txt"), &[f]);
        assert!(!r[0].1, "dkimpy accepts mail signed with a revoked key");
    }
    // New mail still signs and passes.
    assert_eq!(selectors(&send("later").await), ["r2", "r2-ed25519"]);
}
