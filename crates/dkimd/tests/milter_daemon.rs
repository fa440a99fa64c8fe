//! `dkimd run` driven over the milter protocol by the milter crate's client:
//! signing, verifying, policies, ABORT, connection reuse, chunking, garbage.
//! Keys are published into a real BIND by `dkimd enable` and read back from
//! it by the daemon.
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
use common::env::MilterEnv;
use common::mta::{apply, as_milter, metric, metrics, mods_text};
use common::*;
use milter::client::{Client, Message};
use milter::server::ListenAddr;
use milter::Reply;
use std::path::Path;

type Env = MilterEnv;

fn setup() -> Env {
    MilterEnv::start("", "m1")
}

const RAW: &[u8] = b"From: Joe <joe@example.com>\r\nTo: Suzie <suzie@example.net>\r\nSubject: milter test\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n\r\nHello from the milter test.\r\nSecond  line \r\n";

/// A connection that has negotiated and sent the connect stage for `ip`.
async fn connected(env: &Env, m: &Message, ip: &str) -> Client {
    let mut c = Client::connect(&env.addr()).await.unwrap();
    c.negotiate().await.unwrap();
    c.connect_stage(m, "client.test", ip).await.unwrap();
    c
}

async fn send(env: &Env, client_ip: &str, raw: &[u8], chunk: usize) -> milter::client::Outcome {
    let mut c = Client::connect(&env.addr()).await.unwrap();
    let n = c.negotiate().await.unwrap();
    assert!(n.leading_space());
    let m = as_milter(raw, chunk);
    c.connect_stage(&m, "client.test", client_ip).await.unwrap();
    let out = c.message(&m).await.unwrap();
    c.quit().await.unwrap();
    out
}

fn verify_with_dkimd(dns: &Path, msg: &[u8]) -> (bool, String) {
    let o = run_with_input(dkimd().args(["verify", "--dns-file"]).arg(dns), msg);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_trusted_mail_and_verifies_the_rest() {
    if !have_named() {
        return;
    }
    let env = setup();
    let daemon = env.daemon();
    let dns = env.dns_file();

    // Trusted client: two signatures inserted at the top, and they verify
    // with dkimd and dkimpy as the message Postfix would deliver.
    let out = send(&env, "127.0.0.1", RAW, 65535).await;
    assert_eq!(out.reply, Reply::Continue);
    assert_eq!(out.modifications.len(), 2, "{:?}", out.modifications);
    for m in &out.modifications {
        let Reply::InsertHeader { index, name, value } = m else {
            panic!("{m:?}")
        };
        assert_eq!((*index, name.as_str()), (0, "DKIM-Signature"));
        assert!(
            value.starts_with(b" v=1; a="),
            "leading space for HDR_LEADSPC: {value:?}"
        );
        assert!(!value.contains(&b'\r'), "folds are LF for Postfix");
    }
    let signed = apply(RAW, &out.modifications);
    let (ok, text) = verify_with_dkimd(&dns, &signed);
    assert!(ok, "{text}");
    assert_eq!(text.matches("pass").count(), 2 + 2, "{text}");
    if have_dkimpy() {
        let f = env.tmp.path().join("signed.eml");
        std::fs::write(&f, &signed).unwrap();
        let r = dkimpy_verify(&dns, &[f]);
        assert!(r[0].1, "dkimpy: {}", r[0].2);
    }
    assert!(
        daemon.wait_log(
            "mode=sign trust=trusted network d=example.com s=m1,m1-ed25519",
            5
        ),
        "{}",
        daemon.log_text()
    );

    // Every chunk size gives a good signature.
    for chunk in 1..=RAW.len() - 150 {
        let out = send(&env, "127.0.0.1", RAW, chunk).await;
        let (ok, text) = verify_with_dkimd(&dns, &apply(RAW, &out.modifications));
        assert!(ok, "chunk {chunk}: {text}");
    }

    // An outside client with a good signature: Authentication-Results pass.
    let out = send(&env, "192.0.2.10", &signed, 65535).await;
    assert_eq!(out.reply, Reply::Continue);
    let ar: Vec<&Reply> = out
        .modifications
        .iter()
        .filter(
            |m| matches!(m, Reply::InsertHeader { name, .. } if name == "Authentication-Results"),
        )
        .collect();
    assert_eq!(ar.len(), 1);
    let Reply::InsertHeader { value, .. } = ar[0] else {
        unreachable!()
    };
    let v = String::from_utf8_lossy(value);
    assert!(v.starts_with(" mx.test;"), "{v}");
    assert_eq!(v.matches("dkim=pass").count(), 2, "{v}");

    // An outside client cannot get its mail signed even with our From.
    let out = send(&env, "192.0.2.10", RAW, 65535).await;
    assert!(out
        .modifications
        .iter()
        .all(|m| !matches!(m, Reply::InsertHeader { name, .. } if name == "DKIM-Signature")));
    let text = mods_text(&out.modifications);
    assert!(text.contains("dkim=none"), "{text}");

    // A SASL-authenticated client is trusted wherever it comes from.
    let mut c = Client::connect(&env.addr()).await.unwrap();
    c.negotiate().await.unwrap();
    let mut m = as_milter(RAW, 100);
    m.macros
        .push((b'M', vec![("{auth_authen}".into(), "joe".into())]));
    m.macros
        .retain(|(st, pairs)| *st != b'M' || pairs.iter().any(|(k, _)| k == "{auth_authen}"));
    c.connect_stage(&m, "client.test", "192.0.2.20")
        .await
        .unwrap();
    let out = c.message(&m).await.unwrap();
    assert_eq!(
        out.modifications
            .iter()
            .filter(|x| matches!(x, Reply::InsertHeader { name, .. } if name == "DKIM-Signature"))
            .count(),
        2,
        "{}",
        mods_text(&out.modifications)
    );
    assert!(
        daemon.wait_log("mode=sign trust=authenticated", 5),
        "{}",
        daemon.log_text()
    );

    // Forged results that claim our authserv-id are removed; others stay.
    let mut forged = b"Authentication-Results: mx.test; dkim=pass header.d=example.com\r\nAuthentication-Results: other.example; spf=pass\r\n".to_vec();
    forged.extend_from_slice(RAW);
    let out = send(&env, "192.0.2.10", &forged, 65535).await;
    assert!(
        out.modifications.contains(&Reply::ChangeHeader {
            index: 1,
            name: "Authentication-Results".into(),
            value: vec![]
        }),
        "{:?}",
        out.modifications
    );
    assert!(!out
        .modifications
        .iter()
        .any(|m| matches!(m, Reply::ChangeHeader { index: 2, .. })));

    // The metrics endpoint counts what happened.
    let m = metrics(env.mport());
    assert!(m.starts_with("HTTP/1.0 200 OK"), "{m}");
    let value = |name: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(value("dkimd_messages_signed_total ") >= 2, "{m}");
    assert!(
        value("dkimd_signatures_verified_total{result=\"pass\"}") >= 2,
        "{m}"
    );
    assert!(
        value("dkimd_signatures_verified_total{result=\"none\"}") >= 1,
        "{m}"
    );
    assert!(m.contains("dkimd_active_connections "), "{m}");
    assert!(value("dkimd_key_lookup_seconds_count ") >= 1, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_for_bad_signatures() {
    if !have_named() {
        return;
    }
    let env = setup();
    let _daemon = env.daemon();
    let out = send(&env, "127.0.0.1", RAW, 65535).await;
    let signed = apply(RAW, &out.modifications);
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("Second  line", "Second  lime")
        .into_bytes();

    // Default: accept, marked fail.
    let out = send(&env, "192.0.2.10", &tampered, 65535).await;
    assert_eq!(out.reply, Reply::Continue);
    assert!(
        mods_text(&out.modifications).contains("dkim=fail"),
        "{}",
        mods_text(&out.modifications)
    );
    // Reject: 550; tempfail: 451. The daemon sees the store change itself.
    env.ok(&["set", "policy-fail", "reject"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let out = send(&env, "192.0.2.10", &tampered, 65535).await;
    match &out.reply {
        Reply::ReplyCode(c) => assert!(
            c.starts_with("550 5.7.1 DKIM fail: body hash did not verify"),
            "{c}"
        ),
        other => panic!("{other:?}"),
    }
    env.ok(&["set", "policy-fail", "tempfail"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let out = send(&env, "192.0.2.10", &tampered, 65535).await;
    match &out.reply {
        Reply::ReplyCode(c) => assert!(c.starts_with("451 4.7.1 DKIM fail"), "{c}"),
        other => panic!("{other:?}"),
    }
    // Unsigned mail with policy-none reject.
    env.ok(&["set", "policy-none", "reject"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let out = send(
        &env,
        "192.0.2.10",
        b"From: x@example.org\r\nSubject: unsigned\r\n\r\nbody\r\n",
        100,
    )
    .await;
    assert!(
        matches!(&out.reply, Reply::ReplyCode(c) if c.starts_with("550 5.7.1 DKIM none")),
        "{:?}",
        out.reply
    );
    // Disabling signing reaches the daemon too: trusted mail goes out unsigned.
    env.ok(&["set", "policy-none", "accept"]);
    env.ok(&["disable"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let out = send(&env, "127.0.0.1", RAW, 65535).await;
    assert!(out.modifications.is_empty(), "{:?}", out.modifications);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_reuse_and_garbage() {
    if !have_named() {
        return;
    }
    let env = setup();
    let daemon = env.daemon();
    let dns = env.dns_file();

    // Many messages on one connection, with an ABORT in the middle of one.
    let m = as_milter(RAW, 10);
    let mut c = connected(&env, &m, "127.0.0.1").await;
    for i in 0..5 {
        if i == 2 {
            // Headers of a message that never ends.
            c.stage(&milter::Command::Mail(vec!["<x@example.com>".into()]))
                .await
                .unwrap();
            c.stage(&milter::Command::Header {
                name: "From".into(),
                value: b" x@example.com".to_vec(),
            })
            .await
            .unwrap();
            c.stage(&milter::Command::EndOfHeaders).await.unwrap();
            c.stage(&milter::Command::Body(b"half a body".to_vec()))
                .await
                .unwrap();
            c.abort().await.unwrap();
        }
        let out = c.message(&m).await.unwrap();
        let (ok, text) = verify_with_dkimd(&dns, &apply(RAW, &out.modifications));
        assert!(ok, "message {i}: {text}");
    }
    c.quit().await.unwrap();

    // A message from a trusted client with more header fields than
    // max_headers passes on unsigned, and the connection goes on.
    let mut many = Vec::new();
    for i in 0..1500 {
        many.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(20)).as_bytes());
    }
    many.extend_from_slice(RAW);
    let m = as_milter(&many, 1000);
    let mut c = connected(&env, &m, "127.0.0.1").await;
    let out = c.message(&m).await.unwrap();
    assert!(out.modifications.is_empty());
    assert_eq!(out.reply, Reply::Continue);
    let out = c.message(&as_milter(RAW, 1000)).await.unwrap();
    assert_eq!(
        out.modifications.len(),
        2,
        "the next message on the connection is signed"
    );
    c.quit().await.unwrap();
    assert!(
        daemon.wait_log("more than 1000 header fields (milter.max_headers); trusted client (trusted network): passed on unsigned", 5),
        "{}",
        daemon.log_text()
    );

    // Garbage, a truncated frame and an oversized frame: those connections
    // end, the daemon keeps serving.
    for bad in [
        b"this is not a milter frame at all".to_vec(),
        vec![0, 0, 0, 10, b'O', 0, 0],
        vec![0x7f, 0xff, 0xff, 0xff, b'B'],
        vec![0, 0, 0, 1, b'Z'],
    ] {
        let mut c = Client::connect(&env.addr()).await.unwrap();
        c.send_raw(&bad).await.unwrap();
        drop(c);
    }
    let out = send(&env, "127.0.0.1", RAW, 65535).await;
    assert_eq!(out.modifications.len(), 2);
    assert!(
        daemon.wait_log("connection ended", 5),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn sigterm_finishes_and_exits() {
    if !have_named() {
        return;
    }
    let env = setup();
    let mut daemon = env.daemon();
    let o = dkimd()
        .arg("--config")
        .arg(&env.config)
        .args(["run", "--check-config"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("signing on (1 domains stored, 1 with keys that sign)"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    daemon.signal("HUP");
    assert!(
        daemon.wait_log("reloaded (SIGHUP)", 5),
        "{}",
        daemon.log_text()
    );
    daemon.signal("TERM");
    let st = daemon.wait_exit(10).expect("dkimd exits after SIGTERM");
    assert!(st.success(), "{st}");
    assert!(daemon.log_text().contains("dkimd: stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_with_mode_replaces_a_stale_socket() {
    if !have_named() {
        return;
    }
    let env = setup();
    let sock = env.tmp.path().join("run").join("dkimd.sock");
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    // A stale socket file from a crashed daemon.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        &env.socket_line(),
        &format!(
            "socket = \"unix:{}\"\nsocket_mode = \"0660\"",
            sock.display()
        ),
    );
    std::fs::write(&env.config, text).unwrap();
    let daemon = Daemon::start_unix(&env.config, &sock);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let mut c = Client::connect(&ListenAddr::Unix(sock.clone(), 0))
        .await
        .unwrap();
    c.negotiate().await.unwrap();
    let m = as_milter(RAW, 100);
    c.connect_stage(&m, "client.test", "127.0.0.1")
        .await
        .unwrap();
    let out = c.message(&m).await.unwrap();
    assert_eq!(out.modifications.len(), 2);
    assert!(
        daemon
            .log_text()
            .contains(&format!("smtpd_milters = unix:{}", sock.display())),
        "{}",
        daemon.log_text()
    );
    // A second daemon on the same live socket refuses to start.
    let o = dkimd()
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `dkimd bench` drives a real `dkimd run` and checks every message.
#[test]
fn bench_tool_counts_signed_and_verified_messages() {
    if !have_named() {
        return;
    }
    let env = setup();
    let daemon = env.daemon();
    let sock = format!("inet:127.0.0.1:{}", env.port());
    let pid = daemon.pid().to_string();
    let o = dkimd()
        .args([
            "bench",
            "--socket",
            &sock,
            "--pid",
            &pid,
            "--messages",
            "60",
            "--concurrency",
            "4",
            "--per-connection",
            "7",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("signed: 60 of 60"), "{out}");
    assert!(out.contains("ms CPU per message"), "{out}");
    // Verification: a message signed with a key the daemon finds in DNS.
    let keydir = env.tmp.path().join("benchkey");
    let o = dkimd()
        .args([
            "keygen",
            "--algorithm",
            "ed25519",
            "--domain",
            "example.com",
            "--selector",
            "m1-ed25519",
            "--out",
        ])
        .arg(&keydir)
        .output()
        .unwrap();
    assert!(o.status.success());
    // Not published: every message must come back without dkim=pass, and the run fails.
    let o = dkimd()
        .args([
            "bench",
            "--socket",
            &sock,
            "--messages",
            "5",
            "--mode",
            "verify",
            "--selector",
            "m1-ed25519",
            "--key",
        ])
        .arg(keydir.join("example.com.m1-ed25519.ed25519.pem"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("dkim=pass: 0 of 5"));
    // The published key (from an export of the store): every message passes.
    let export = env.tmp.path().join("export.json");
    env.ok(&["export", export.to_str().unwrap()]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    let pem = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["selector"] == "m1-ed25519")
        .unwrap()["pem"]
        .as_str()
        .unwrap()
        .to_string();
    let keyfile = env.tmp.path().join("published.pem");
    std::fs::write(&keyfile, pem).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = dkimd()
        .args([
            "bench",
            "--socket",
            &sock,
            "--messages",
            "20",
            "--concurrency",
            "2",
            "--mode",
            "verify",
            "--selector",
            "m1-ed25519",
            "--key",
        ])
        .arg(&keyfile)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("dkim=pass: 20 of 20"), "{out}");
    // Mixed traffic: signing, good and bad signatures, aborts.
    let o = dkimd()
        .args([
            "bench",
            "--socket",
            &sock,
            "--messages",
            "100",
            "--concurrency",
            "3",
            "--mode",
            "mixed",
            "--selector",
            "m1-ed25519",
            "--key",
        ])
        .arg(&keyfile)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("as expected: 100 of 100 (signed 50, dkim=pass 30, dkim=fail 10, aborted 10)"),
        "{out}"
    );
}

/// Key lookups that never answer: the daemon answers within lookup_timeout
/// with temperror and applies policy-temperror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_dns_does_not_hold_the_message() {
    if !have_named() {
        return;
    }
    let env = setup();
    let out = send_signed_then_break_dns(&env).await;
    assert!(out.0 < std::time::Duration::from_secs(6), "{:?}", out.0);
    assert!(out.1.contains("dkim=temperror"), "{}", out.1);
}

async fn send_signed_then_break_dns(env: &Env) -> (std::time::Duration, String) {
    // Sign with the daemon first, then point it at a server that never answers.
    let daemon = env.daemon();
    let out = send(env, "127.0.0.1", RAW, 100).await;
    let signed = apply(RAW, &out.modifications);
    drop(daemon);
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text = text
        .replace(&env.named.addr(), &silent.local_addr().unwrap().to_string())
        .replace(
            "shutdown_grace = 5",
            "shutdown_grace = 5\nlookup_timeout = 2",
        );
    std::fs::write(&env.config, text).unwrap();
    let _daemon = env.daemon();
    let t = std::time::Instant::now();
    let out = send(env, "192.0.2.30", &signed, 100).await;
    (t.elapsed(), mods_text(&out.modifications))
}

/// By default the body streams without replies (NR_BODY, no SKIP); with
/// `body_replies = true` every chunk is answered and a body dkimd does not
/// need (no signature to check) is cut short with SKIP. Either way the
/// message gets its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_streamed_or_answered_with_skip() {
    if !have_named() {
        return;
    }
    let env = setup();
    let unsigned_result = |out: &milter::client::Outcome| {
        let text = mods_text(&out.modifications);
        assert!(text.contains("dkim=none"), "{text}");
    };
    {
        let _daemon = env.daemon();
        let (n, out) = unsigned_from_outside(&env).await;
        assert_ne!(n.protocol & milter::proto::NR_BODY, 0, "{n:?}");
        assert_eq!(n.protocol & milter::proto::SKIP, 0, "{n:?}");
        assert!(!out.skipped);
        unsigned_result(&out);
        // Trusted mail in many chunks is still signed over the whole body.
        let signed = send(&env, "127.0.0.1", RAW, 7).await;
        let msg = apply(RAW, &signed.modifications);
        let (ok, why) = verify_with_dkimd(&env.dns_file(), &msg);
        assert!(ok, "{why}");
    }
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "shutdown_grace = 5",
        "shutdown_grace = 5\nbody_replies = true",
    );
    std::fs::write(&env.config, text).unwrap();
    let _daemon = env.daemon();
    let (n, out) = unsigned_from_outside(&env).await;
    assert_eq!(n.protocol & milter::proto::NR_BODY, 0, "{n:?}");
    assert_ne!(n.protocol & milter::proto::SKIP, 0, "{n:?}");
    assert!(
        out.skipped,
        "an unsigned body is skipped after its first chunk"
    );
    unsigned_result(&out);
}

/// RAW from an outside address in 10-byte body chunks on a new connection:
/// what was negotiated and what came back.
async fn unsigned_from_outside(env: &Env) -> (milter::Negotiated, milter::client::Outcome) {
    let mut c = Client::connect(&env.addr()).await.unwrap();
    let n = c.negotiate().await.unwrap();
    let m = as_milter(RAW, 10);
    c.connect_stage(&m, "client.test", "192.0.2.10")
        .await
        .unwrap();
    let out = c.message(&m).await.unwrap();
    c.quit().await.unwrap();
    (n, out)
}

/// A body of `lines` lines with what relaxed canonicalization changes:
/// tabs, runs of spaces, trailing spaces, long lines.
fn large_message(lines: usize, id: &str) -> Vec<u8> {
    let mut m = format!("From: Joe <joe@example.com>\r\nTo: Suzie <suzie@example.net>\r\nSubject: large\r\nDate: Tue, 24 Nov 2026 10:30:00 +0000\r\nMessage-ID: <{id}@example.com>\r\n\r\n").into_bytes();
    for i in 0..lines {
        let line = match i % 4 {
            0 => format!("Line {i:07} of a large body, long enough for many chunks.\r\n"),
            1 => format!("\tindented\t{i}  with  double  spaces   \r\n"),
            2 => format!("{}\r\n", "abcdefghij".repeat(1 + i % 90)),
            _ => "\r\n".to_string(),
        };
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// Bodies over 1 MiB are hashed on a thread of their own after their first
/// MiB: what is signed that way verifies with dkimd and dkimpy, verifying
/// that way passes a good body and fails one changed near its end, and an
/// ABORT half-way through leaves the connection and the threads usable.
/// More large messages at once than there are threads are hashed inline.
/// With `body_thread = false` every body is hashed inline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_hashed_on_a_thread() {
    if !have_named() {
        return;
    }
    let env = setup();
    let dns = env.dns_file();
    let raw = large_message(60_000, "large1");
    assert!(raw.len() > 3_000_000, "{}", raw.len());
    let signed = {
        let _daemon = env.daemon();
        // Four at once, on separate connections, in Postfix-sized chunks.
        let (a, b, c, d) = tokio::join!(
            send(&env, "127.0.0.1", &raw, 65535),
            send(&env, "127.0.0.1", &raw, 65535),
            send(&env, "127.0.0.1", &raw, 65535),
            send(&env, "127.0.0.1", &raw, 65535)
        );
        let outs = [a, b, c, d];
        for out in &outs {
            assert_eq!(out.modifications.len(), 2, "{:?}", out.reply);
            let (ok, text) = verify_with_dkimd(&dns, &apply(&raw, &out.modifications));
            assert!(ok, "{text}");
        }
        let signed = apply(&raw, &outs[0].modifications);
        if have_dkimpy() {
            let f = env.tmp.path().join("large.eml");
            std::fs::write(&f, &signed).unwrap();
            let r = dkimpy_verify(&dns, &[f]);
            assert!(r[0].1, "dkimpy: {}", r[0].2);
        }
        let threaded = metric(env.mport(), "dkimd_bodies_hashed_on_thread_total ");
        assert!((1..=4).contains(&threaded), "{threaded}");

        // Verified from outside: pass, and fail with one byte changed in
        // the last MiB.
        let out = send(&env, "192.0.2.10", &signed, 65535).await;
        let text = mods_text(&out.modifications);
        assert_eq!(text.matches("dkim=pass").count(), 2, "{text}");
        let mut bad = signed.clone();
        let at = bad.len() - 100_000;
        let byte = bad.get_mut(at).unwrap();
        *byte = if *byte == b'x' { b'y' } else { b'x' };
        let out = send(&env, "192.0.2.10", &bad, 65535).await;
        let text = mods_text(&out.modifications);
        assert_eq!(text.matches("dkim=fail").count(), 2, "{text}");
        assert!(text.contains("body hash"), "{text}");

        // ABORT after 2 MB of body, then the whole message on the same
        // connection.
        let m = as_milter(&raw, 65535);
        let mut c = connected(&env, &m, "127.0.0.1").await;
        c.stage(&milter::Command::Mail(vec!["<joe@example.com>".into()]))
            .await
            .unwrap();
        for (name, value) in &m.headers {
            c.stage(&milter::Command::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .await
            .unwrap();
        }
        c.stage(&milter::Command::EndOfHeaders).await.unwrap();
        for chunk in m.body.iter().take(32) {
            c.body_stage(chunk).await.unwrap();
        }
        c.abort().await.unwrap();
        let out = c.message(&m).await.unwrap();
        let (ok, text) = verify_with_dkimd(&dns, &apply(&raw, &out.modifications));
        assert!(ok, "after an abort: {text}");
        c.quit().await.unwrap();
        assert!(metric(env.mport(), "dkimd_bodies_hashed_on_thread_total ") >= threaded + 3);
        assert_eq!(metric(env.mport(), "dkimd_errors_total "), 0);
        signed
    };

    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "shutdown_grace = 5",
        "shutdown_grace = 5\nbody_thread = false",
    );
    std::fs::write(&env.config, text).unwrap();
    let _daemon = env.daemon();
    let out = send(&env, "127.0.0.1", &raw, 65535).await;
    let (ok, text) = verify_with_dkimd(&dns, &apply(&raw, &out.modifications));
    assert!(ok, "{text}");
    let out = send(&env, "192.0.2.10", &signed, 65535).await;
    let text = mods_text(&out.modifications);
    assert_eq!(text.matches("dkim=pass").count(), 2, "{text}");
    assert_eq!(
        metric(env.mport(), "dkimd_bodies_hashed_on_thread_total "),
        0
    );
}

/// The selectors a signing answer inserts, sorted.
fn signed_selectors(out: &milter::client::Outcome) -> Vec<String> {
    let mut v: Vec<String> = out
        .modifications
        .iter()
        .filter_map(|m| match m {
            Reply::InsertHeader { name, value, .. } if name == "DKIM-Signature" => {
                String::from_utf8_lossy(value)
                    .split(';')
                    .map(str::trim)
                    .find_map(|t| t.strip_prefix("s=").map(str::to_string))
            }
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Waits up to `secs` for `f` to hold.
async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    f()
}

/// The daemon runs the key lifecycle by itself: it promotes a rotation once
/// BIND serves it (no cron, no restart) and exports the key gauges; with
/// `unserved-key = hold` it stops signing with an active key whose record
/// DNS lost, says so, counts the alarm, and signs with it again once
/// `sign` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_steps_the_lifecycle_and_holds_unserved_keys() {
    if !have_named() {
        return;
    }
    let env = MilterEnv::start("key_step_interval = 1", "h1");
    env.ok(&["set", "propagation-wait", "1s"]);
    let daemon = env.daemon();
    let port = env.mport();
    assert!(
        eventually(15, || metrics(port)
            .contains("dkimd_keys{state=\"active\"} 2"))
        .await,
        "{}",
        metrics(port)
    );
    assert!(metrics(port).contains(
        "dkimd_key_age_seconds{domain=\"global\",selector=\"h1\",algorithm=\"rsa\",state=\"active\"}"
    ));

    // A rotation: the daemon's own step promotes it.
    env.ok(&["rotate", "--all", "--selector", "h2"]);
    assert!(
        eventually(20, || daemon
            .log_text()
            .contains("key lifecycle: global key: selector h2 signs now"))
        .await,
        "{}",
        daemon.log_text()
    );
    assert!(
        eventually(5, || metrics(port)
            .contains("dkimd_keys{state=\"retired\"} 2"))
        .await,
        "{}",
        metrics(port)
    );
    let mut sels = Vec::new();
    for _ in 0..20 {
        sels = signed_selectors(&send(&env, "127.0.0.1", RAW, 65535).await);
        if sels == ["h2", "h2-ed25519"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sels, ["h2", "h2-ed25519"]);

    // DNS loses the active RSA key's record behind dkimd's back.
    env.ok(&["set", "unserved-key", "hold"]);
    let zf = env.named.zone_file("example.com");
    let kept: String = std::fs::read_to_string(&zf)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("h2._domainkey"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&zf, kept).unwrap();
    let r = std::process::Command::new(&env.named.rndc_reload("example.com")[0])
        .args(&env.named.rndc_reload("example.com")[1..])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(env.named.dig_txt("h2._domainkey.example.com").is_empty());
    assert!(
        eventually(20, || daemon.log_text().contains(
            "unserved-key = hold: not signing with h2._domainkey.example.com"
        ))
        .await,
        "{}",
        daemon.log_text()
    );
    assert!(daemon.log_text().contains("warning: key alarm: example.com: rsa key, selector h2 (active): it signs, but DNS does not serve its record (missing)"));
    assert!(
        eventually(5, || metric(port, "dkimd_key_alarms") >= 1).await,
        "{}",
        metrics(port)
    );
    assert_eq!(
        signed_selectors(&send(&env, "127.0.0.1", RAW, 65535).await),
        ["h2-ed25519"],
        "the held key does not sign"
    );
    // status says so too (exit 1).
    let o = dkimd()
        .arg("--config")
        .arg(&env.config)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout)
        .contains("ALARM: it signs, but DNS does not serve its record"));

    // sign: the key signs again, alarm or not.
    env.ok(&["set", "unserved-key", "sign"]);
    let mut sels = Vec::new();
    for _ in 0..50 {
        sels = signed_selectors(&send(&env, "127.0.0.1", RAW, 65535).await);
        if sels.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(sels, ["h2", "h2-ed25519"]);
}
