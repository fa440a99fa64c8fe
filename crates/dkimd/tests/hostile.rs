//! Hostile traffic against the real `dkimd run` over its socket, as a
//! hostile sender (through the MTA) and a hostile local client would send
//! it. Each test states the bound it checks: the result a message gets, the
//! daemon's memory, the time a normal message alongside takes, the log line.
//!
//! - A header flood is no way around verification: over `max_headers` or
//!   `max_header_bytes` an untrusted message gets dkim=permerror and the
//!   strictest policy, and forged Authentication-Results are removed on
//!   every path (also through real Postfix, in `postfix_e2e`).
//! - Macro frames: only stage letters, bounded bytes and pairs per
//!   connection, memory back after the connections end.
//! - Idle connections: option negotiation and the time between messages
//!   have limits, and at the connection limit a new connection is served.
//! - What already held stays held: truncated and unknown frames, huge
//!   announced lengths, oversized frames, stages out of order, 100,000
//!   headers, a 1 MB header value, a slow sender, half-open connections,
//!   SIGKILL in the middle of a large body.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::have_named;
use common::env::MilterEnv;
use common::mta::{apply, as_milter, metric, mods_text, rss_kb};
use common::postfix::{have_postfix, smtp_send, Postfix};
use milter::client::{Client, Message};
use milter::{Command as C, MacroList, Reply, Stage};
use std::time::{Duration, Instant};

type Env = MilterEnv;

/// A signing setup whose `[milter]` section has `extra` lines as well.
fn setup(extra: &str) -> Env {
    MilterEnv::start(extra, "h1")
}

const RAW: &[u8] = b"From: Joe <joe@example.com>\r\nTo: Suzie <suzie@example.net>\r\nSubject: hostile test\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <h1@example.com>\r\n\r\nHello from the hostile test.\r\n";

/// `raw` with a forged result on top and `fillers` X-Filler fields after
/// the headers.
fn flooded(raw: &[u8], fillers: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut out =
        String::from("Authentication-Results: mx.test; dkim=pass header.d=example.com\r\n");
    out.push_str(head);
    out.push_str("\r\n");
    for i in 0..fillers {
        out.push_str(&format!("X-Filler-{i}: x\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

async fn connected(env: &Env, m: &Message, ip: &str) -> Client {
    let mut c = Client::connect(&env.addr()).await.unwrap();
    c.negotiate().await.unwrap();
    c.connect_stage(m, "client.test", ip).await.unwrap();
    c
}

async fn send(env: &Env, ip: &str, raw: &[u8]) -> milter::client::Outcome {
    let m = as_milter(raw, 4096);
    let mut c = connected(env, &m, ip).await;
    let out = c.message(&m).await.unwrap();
    c.quit().await.unwrap();
    out
}

/// Sends `m`'s header fields (with `pause` after each) and end of headers.
async fn headers(c: &mut Client, m: &Message, pause: Duration) {
    for (name, value) in &m.headers {
        c.stage(&C::Header {
            name: name.clone(),
            value: value.clone(),
        })
        .await
        .unwrap();
        tokio::time::sleep(pause).await;
    }
    c.stage(&C::EndOfHeaders).await.unwrap();
}

/// Sends `m`'s body and end of message; the headers inserted before the
/// final "continue".
async fn body_and_end(c: &mut Client, m: &Message) -> usize {
    for chunk in &m.body {
        c.body_stage(chunk).await.unwrap();
    }
    c.send(&C::EndOfMessage(vec![])).await.unwrap();
    let mut inserted = 0;
    loop {
        match c.read_reply().await.unwrap() {
            Reply::InsertHeader { .. } => inserted += 1,
            Reply::Continue => return inserted,
            other => panic!("{other:?}"),
        }
    }
}

fn inserted_results(mods: &[Reply]) -> Vec<String> {
    mods.iter()
        .filter_map(|m| match m {
            Reply::InsertHeader { name, value, .. } if name == "Authentication-Results" => {
                Some(String::from_utf8_lossy(value).into_owned())
            }
            _ => None,
        })
        .collect()
}

fn removed_results(mods: &[Reply]) -> Vec<u32> {
    mods.iter()
        .filter_map(|m| match m {
            Reply::ChangeHeader { index, name, value }
                if name == "Authentication-Results" && value.is_empty() =>
            {
                Some(*index)
            }
            _ => None,
        })
        .collect()
}

/// Bound: a message over the header limits from an untrusted client is
/// never passed on as verified: our Authentication-Results says
/// permerror, the forged one is removed, and the strictest of
/// policy-fail, policy-permerror and policy-none applies. Trusted clients'
/// over-limit mail goes on unsigned, logged and counted. Forged results
/// are removed with verification off and on the signing path too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_flood_is_no_way_around_verification() {
    if !have_named() {
        return;
    }
    let env = setup("");
    let daemon = env.daemon();

    // Sign a message, then tamper with it: under the limits it fails.
    let signed = apply(RAW, &send(&env, "127.0.0.1", RAW).await.modifications);
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("Hello from", "Hello frm")
        .into_bytes();
    let out = send(&env, "192.0.2.10", &flooded(&tampered, 10)).await;
    assert!(
        inserted_results(&out.modifications)[0].contains("dkim=fail"),
        "{}",
        mods_text(&out.modifications)
    );
    assert_eq!(removed_results(&out.modifications), vec![1]);

    // With 1000 more fields: permerror with its reason, forged one removed.
    let out = send(&env, "192.0.2.10", &flooded(&tampered, 1000)).await;
    let ar = inserted_results(&out.modifications);
    assert_eq!(ar.len(), 1, "{}", mods_text(&out.modifications));
    assert!(ar[0].starts_with(" mx.test;"), "{ar:?}");
    assert!(
        ar[0].contains("dkim=permerror reason=\"too many header fields\""),
        "{ar:?}"
    );
    assert_eq!(removed_results(&out.modifications), vec![1]);
    assert_eq!(out.reply, Reply::Continue);
    assert!(
        daemon.wait_log(
            "more than 1000 header fields (milter.max_headers); untrusted client: dkim=permerror",
            5
        ),
        "{}",
        daemon.log_text()
    );

    // policy-fail reject: the flood is rejected as the tampered message is.
    env.ok(&["set", "policy-fail", "reject"]);
    assert!(daemon.wait_log("reloaded (store changed)", 5));
    let out = send(&env, "192.0.2.10", &flooded(&tampered, 1000)).await;
    assert!(
        matches!(&out.reply, Reply::ReplyCode(c) if c.starts_with("550 5.7.1 DKIM permerror: too many header fields")),
        "{:?}",
        out.reply
    );
    env.ok(&["set", "policy-fail", "accept"]);
    // policy-none reject: an unsigned flood is rejected too.
    env.ok(&["set", "policy-none", "reject"]);
    std::thread::sleep(Duration::from_millis(1200));
    let out = send(&env, "192.0.2.10", &flooded(RAW, 1006)).await;
    assert!(
        matches!(&out.reply, Reply::ReplyCode(c) if c.starts_with("550 5.7.1")),
        "{:?}",
        out.reply
    );
    env.ok(&["set", "policy-none", "accept"]);
    std::thread::sleep(Duration::from_millis(1200));

    // Over max_header_bytes (1 MiB) with few fields: its own reason.
    let mut big = String::from("From: Joe <joe@example.com>\r\nSubject: big\r\n");
    for i in 0..3 {
        big.push_str(&format!("X-Big-{i}: {}\r\n", "b".repeat(400_000)));
    }
    big.push_str("\r\nbody\r\n");
    let out = send(&env, "192.0.2.10", big.as_bytes()).await;
    assert!(
        inserted_results(&out.modifications)[0]
            .contains("dkim=permerror reason=\"header fields too large\""),
        "{}",
        mods_text(&out.modifications)
    );

    // Trusted client over the limit: passed on unsigned, logged, counted;
    // the forged result is removed all the same.
    let out = send(&env, "127.0.0.1", &flooded(RAW, 1000)).await;
    assert_eq!(removed_results(&out.modifications), vec![1]);
    assert_eq!(
        out.modifications.len(),
        1,
        "{}",
        mods_text(&out.modifications)
    );
    assert!(
        daemon.wait_log("trusted client (trusted network): passed on unsigned", 5),
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        metric(env.mport(), "dkimd_over_limit_total{client=\"trusted\"}"),
        1
    );
    assert_eq!(
        metric(env.mport(), "dkimd_over_limit_total{client=\"untrusted\"}"),
        4
    );

    // The signing path: signed, and the forged result removed (two of
    // them, the last first).
    let two = flooded(&flooded(RAW, 0), 0);
    let out = send(&env, "127.0.0.1", &two).await;
    assert_eq!(removed_results(&out.modifications), vec![2, 1]);
    let delivered = apply(&two, &out.modifications);
    let text = String::from_utf8_lossy(&delivered);
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
    assert!(!text.contains("mx.test; dkim=pass"), "{text}");
    // A result of another host is left alone.
    let other = format!(
        "Authentication-Results: other.example; dkim=pass\r\n{}",
        String::from_utf8_lossy(RAW)
    );
    let out = send(&env, "192.0.2.10", other.as_bytes()).await;
    assert!(removed_results(&out.modifications).is_empty());

    // Verification off: nothing added, the forged result still removed.
    env.ok(&["set", "verify", "off"]);
    std::thread::sleep(Duration::from_millis(1200));
    for fillers in [0, 1000] {
        let out = send(&env, "192.0.2.10", &flooded(RAW, fillers)).await;
        assert_eq!(removed_results(&out.modifications), vec![1], "{fillers}");
        assert!(inserted_results(&out.modifications).is_empty());
    }
    assert!(metric(env.mport(), "dkimd_forged_results_removed_total ") >= 8);
}

/// Bound: macros only for the protocol's stage letters; a connection holds
/// at most `max_macro_bytes` and `max_macros`; a macro frame larger than
/// that is refused before it is read. 16 connections that each sent a
/// 1 MiB macro frame, and 200 that each hold 30 KB of tiny pairs, leave
/// the daemon under 60 MB, and it is back within 16 MB of its start after
/// they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macro_frames_are_bounded() {
    if !have_named() {
        return;
    }
    let env = setup("");
    let daemon = env.daemon();
    let m = as_milter(RAW, 4096);
    // Warm up: one message of each kind.
    send(&env, "127.0.0.1", RAW).await;
    send(&env, "192.0.2.10", RAW).await;
    let start = rss_kb(daemon.pid());

    // A stage byte that is not a stage letter: the connection ends, logged.
    let mut c = Client::connect(&env.addr()).await.unwrap();
    c.negotiate().await.unwrap();
    c.send_raw(&[0, 0, 0, 6, b'D', b'Z', b'a', 0, b'b', 0])
        .await
        .unwrap();
    assert!(c.read_reply().await.is_err());
    assert!(
        daemon.wait_log("macros for a stage that is not a protocol stage letter", 5),
        "{}",
        daemon.log_text()
    );

    // Macros for an unknown SMTP command (stage U), which Postfix sends
    // even with unknown commands negotiated away: taken, and the
    // connection goes on to sign a message.
    let mut c = connected(&env, &m, "127.0.0.1").await;
    c.send(&C::Macros {
        stage: Stage::Unknown,
        pairs: MacroList::from_pairs([("j", "mx.test")]),
    })
    .await
    .unwrap();
    assert_eq!(c.message(&m).await.unwrap().modifications.len(), 2);
    c.quit().await.unwrap();

    // 1 MiB of "a\0b\0" pairs: refused by its announced size.
    let tiny = |bytes: usize| MacroList::from_pairs(std::iter::repeat_n(("a", "b"), bytes / 4));
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut c = Client::connect(&env.addr()).await.unwrap();
        c.negotiate().await.unwrap();
        let _ = c
            .send(&C::Macros {
                stage: Stage::Connect,
                pairs: tiny((1 << 20) - 8),
            })
            .await;
        held.push(c);
    }
    assert!(
        daemon.wait_log(
            "D frame of 1048570 bytes exceeds the limit of 32770 for that command",
            5
        ),
        "{}",
        daemon.log_text()
    );
    // More pairs than max_macros (256), and more bytes than max_macro_bytes
    // over several stages: closed, logged.
    let mut c = connected(&env, &m, "127.0.0.1").await;
    c.send(&C::Macros {
        stage: Stage::Mail,
        pairs: tiny(2000),
    })
    .await
    .unwrap();
    assert!(c.read_reply().await.is_err());
    assert!(daemon.wait_log("macros held over the limit of 256 per connection", 5));
    let mut c = connected(&env, &m, "127.0.0.1").await;
    let long = MacroList::from_pairs([("{x}", "v".repeat(12_000))]);
    for stage in [Stage::Mail, Stage::Rcpt, Stage::Data] {
        let _ = c
            .send(&C::Macros {
                stage,
                pairs: long.clone(),
            })
            .await;
    }
    assert!(c.read_reply().await.is_err());
    assert!(daemon.wait_log("macro bytes held over the limit of 32768 per connection", 5));

    // 200 connections each holding 250 pairs (1 KB), and 200 holding one
    // 30 KB macro: all within the bounds, so all are kept.
    for i in 0..400 {
        let mut c = Client::connect(&env.addr()).await.unwrap();
        c.negotiate().await.unwrap();
        let pairs = if i % 2 == 0 {
            tiny(1000)
        } else {
            MacroList::from_pairs([("{y}", "w".repeat(30_000))])
        };
        c.send(&C::Macros {
            stage: Stage::Connect,
            pairs,
        })
        .await
        .unwrap();
        held.push(c);
    }
    // A normal message alongside is signed.
    assert_eq!(send(&env, "127.0.0.1", RAW).await.modifications.len(), 2);
    let during = rss_kb(daemon.pid());
    assert!(
        during < 60 * 1024,
        "RSS {during} kB with 416 connections holding macros (start {start} kB)"
    );
    drop(held);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kb(daemon.pid());
    assert!(
        after < start + 16 * 1024,
        "RSS {after} kB after the connections closed (start {start} kB, during {during} kB)"
    );
    eprintln!(
        "macro_frames_are_bounded: RSS start {start} kB, during {during} kB, after {after} kB"
    );
}

/// Bound: a connection that does not negotiate within negotiate_timeout,
/// or sits between messages longer than idle_timeout, is closed (logged
/// with the phase); a message in progress is not held to idle_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_limits_for_negotiation_and_between_messages() {
    if !have_named() {
        return;
    }
    let env = setup("negotiate_timeout = 2\nidle_timeout = 4");
    let daemon = env.daemon();
    let m = as_milter(RAW, 4096);

    // The time limits, with the phase in the log.
    let mut silent = Client::connect(&env.addr()).await.unwrap();
    let mut idle = connected(&env, &m, "127.0.0.1").await;
    let t = Instant::now();
    assert!(silent.read_reply().await.is_err());
    let silent_for = t.elapsed();
    assert!(idle.read_reply().await.is_err());
    let idle_for = t.elapsed();
    assert!(
        silent_for >= Duration::from_millis(1500) && idle_for >= Duration::from_millis(3500),
        "closed too early: {silent_for:?} {idle_for:?}"
    );
    assert!(daemon.wait_log("sent nothing in time (option negotiation, 2 s)", 5));
    assert!(daemon.wait_log("sent nothing in time (between messages, 4 s)", 5));
    // A message takes as long as it needs: idle_timeout is not a limit on
    // a message in progress (frames within read_timeout).
    let mut c = connected(&env, &m, "127.0.0.1").await;
    c.stage(&C::Mail(vec!["<joe@example.com>".into()]))
        .await
        .unwrap();
    headers(&mut c, &m, Duration::from_millis(700)).await;
    let mods = body_and_end(&mut c, &m).await;
    assert_eq!(mods, 2, "a slow message (3.5 s of headers) is signed");
    c.quit().await.unwrap();
}

/// Bound: with 600 connections open against max_connections 500 (half
/// silent, half negotiated and idle), a normal message is still served and
/// signed, directly and through real Postfix; the connections closed for
/// it are logged and counted. (The time is printed; the test's own limit
/// of 10 s only tells "served" from "starved until read_timeout".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_starve_the_mta() {
    if !have_named() {
        return;
    }
    let env = setup("");
    let daemon = env.daemon();

    // 600 connections: 300 that say nothing, 300 negotiated and idle.
    let mut hold = Vec::new();
    for i in 0..600 {
        let mut c = Client::connect(&env.addr()).await.unwrap();
        if i % 2 == 1 {
            let _ = c.negotiate().await;
        }
        hold.push(c);
    }
    // Connections that have not negotiated after a second are the first
    // to go (younger ones may have their options on the way).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(10), send(&env, "127.0.0.1", RAW))
        .await
        .expect("a normal message was not served with 600 connections held");
    let direct = t.elapsed();
    assert_eq!(out.modifications.len(), 2, "{out:?}");
    assert!(
        daemon.wait_log("closed at the connection limit to serve a new connection: it had been waiting for option negotiation", 5),
        "{}",
        daemon.log_text()
    );
    assert!(metric(env.mport(), "dkimd_connections_evicted_total ") >= 100);
    eprintln!("idle_connections: signed in {direct:?} with 600 connections held");
    drop(hold);

    // Through real Postfix: the same, with the MTA's own milter connection.
    if have_postfix() {
        let pf = Postfix::start(&format!("inet:127.0.0.1:{}", env.port()), "tempfail");
        let mut hold = Vec::new();
        for i in 0..600 {
            let mut c = Client::connect(&env.addr()).await.unwrap();
            if i % 2 == 1 {
                let _ = c.negotiate().await;
            }
            hold.push(c);
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let t = Instant::now();
        let a = smtp_send(
            pf.submission_port,
            "127.0.0.1",
            "joe@example.com",
            "suzie@example.net",
            RAW,
        )
        .await;
        let through_postfix = t.elapsed();
        assert!(a.starts_with("250"), "{a}\n{}", pf.log());
        let got = pf.delivered(20).expect("delivered");
        assert_eq!(
            String::from_utf8_lossy(&got)
                .matches("DKIM-Signature:")
                .count(),
            2,
            "{}",
            String::from_utf8_lossy(&got)
        );
        eprintln!(
            "idle_connections: through Postfix in {through_postfix:?} with 600 connections held"
        );
        drop(hold);
    }
}

/// Bound: at the limit with every connection inside a message, a new
/// connection waits (nothing is closed mid-message) and is served when one
/// ends; the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connections_are_never_closed_at_the_limit() {
    if !have_named() {
        return;
    }
    let env = setup("max_connections = 2");
    let daemon = env.daemon();
    let m = as_milter(RAW, 4096);
    let mut a = connected(&env, &m, "127.0.0.1").await;
    let mut b = connected(&env, &m, "127.0.0.1").await;
    for c in [&mut a, &mut b] {
        c.stage(&C::Mail(vec!["<joe@example.com>".into()]))
            .await
            .unwrap();
    }
    // MAIL is not answered (NR_MAIL): give the daemon time to read it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = env.addr();
    let pending = tokio::spawn(async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let n = c.negotiate().await.unwrap();
        (c, n)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !pending.is_finished(),
        "served by closing a busy connection"
    );
    assert!(
        daemon.wait_log("connection limit reached (milter.max_connections = 2) with every connection inside a message", 5),
        "{}",
        daemon.log_text()
    );
    // Both busy connections finish their messages unharmed.
    for c in [&mut a, &mut b] {
        headers(c, &m, Duration::ZERO).await;
        assert_eq!(body_and_end(c, &m).await, 2);
    }
    // Now idle: the waiting connection is served by closing one of them.
    let (mut third, _) = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the waiting connection was not served")
        .unwrap();
    third
        .connect_stage(&m, "client.test", "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(third.message(&m).await.unwrap().modifications.len(), 2);
    assert!(daemon.wait_log("it had been idle between messages", 5));
}

/// What held before stays held. Bound for each: the connection ends (or is
/// answered) with its log line, a normal message alongside is signed, and
/// the daemon stays under 64 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames() {
    if !have_named() {
        return;
    }
    let env = setup("read_timeout = 1");
    let daemon = env.daemon();
    let m = as_milter(RAW, 100);

    // End of message without a message, end of headers first, a body before
    // any header: answered, nothing changed, connection still usable.
    let mut c = connected(&env, &m, "127.0.0.1").await;
    c.send(&C::EndOfMessage(vec![])).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), Reply::Continue);
    c.stage(&C::EndOfHeaders).await.unwrap();
    assert_eq!(
        c.stage(&C::Body(b"early body".to_vec())).await.unwrap(),
        None
    );
    c.send(&C::EndOfMessage(vec![])).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), Reply::Continue);
    let out = c.message(&m).await.unwrap();
    assert_eq!(
        out.modifications.len(),
        2,
        "a proper message after the noise is signed"
    );
    c.quit().await.unwrap();

    // Announced lengths of 1 GiB and 4 GiB, and a 2 MiB header frame:
    // refused by their length, nothing allocated.
    for (len, what) in [
        (1u32 << 30, "frame of 1073741824 bytes exceeds the limit"),
        (u32::MAX, "frame of 4294967295 bytes exceeds the limit"),
    ] {
        let mut c = connected(&env, &m, "127.0.0.1").await;
        let mut frame = len.to_be_bytes().to_vec();
        frame.push(b'L');
        c.send_raw(&frame).await.unwrap();
        assert!(c.read_reply().await.is_err());
        assert!(daemon.wait_log(what, 5), "{}", daemon.log_text());
    }
    let mut c = connected(&env, &m, "127.0.0.1").await;
    c.stage(&C::Mail(vec!["<a@example.com>".into()]))
        .await
        .unwrap();
    let _ = c
        .send(&C::Header {
            name: "X-Big".into(),
            value: vec![b'x'; 2 << 20],
        })
        .await;
    assert!(c.read_reply().await.is_err(), "the connection is closed");
    assert!(daemon.wait_log("bytes exceeds the limit of 1048576", 5));
    // A MAIL frame over 64 KiB.
    let mut c = connected(&env, &m, "127.0.0.1").await;
    let _ = c.send(&C::Mail(vec!["x".repeat(100_000)])).await;
    assert!(c.read_reply().await.is_err());
    assert!(daemon.wait_log(
        "M frame of 100002 bytes exceeds the limit of 65536 for that command",
        5
    ));

    // Unknown command letter; truncated frames (a header without its
    // value's NUL, a connect frame cut short).
    let mut c = Client::connect(&env.addr()).await.unwrap();
    c.send_raw(&[0, 0, 0, 1, b'Z']).await.unwrap();
    assert!(c.read_reply().await.is_err());
    assert!(daemon.wait_log("unknown command", 5));
    let mut c = connected(&env, &m, "127.0.0.1").await;
    c.send_raw(&[0, 0, 0, 4, b'L', b'X', 0, b'v'])
        .await
        .unwrap();
    assert!(c.read_reply().await.is_err());
    assert!(
        daemon.wait_log("malformed L frame", 5),
        "{}",
        daemon.log_text()
    );

    // Half-open: a frame header promising bytes that never come; dropped
    // after read_timeout inside a message.
    let mut half = connected(&env, &m, "127.0.0.1").await;
    half.stage(&C::Mail(vec!["<a@example.com>".into()]))
        .await
        .unwrap();
    half.send_raw(&[0, 0, 0, 100, b'L', 0, 0]).await.unwrap();
    assert!(half.read_reply().await.is_err());
    assert!(daemon.wait_log("sent nothing in time (inside a message, 1 s)", 5));

    // A slow sender, 1 byte per 100 ms, within read_timeout per frame: a
    // whole small message comes through and is signed.
    let mut slow = Client::connect(&env.addr()).await.unwrap();
    slow.negotiate().await.unwrap();
    slow.connect_stage(&m, "client.test", "127.0.0.1")
        .await
        .unwrap();
    let (cmd, data) = C::Mail(vec!["<a@b>".into()]).encode();
    let mut frame = u32::try_from(data.len() + 1)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    frame.push(cmd);
    frame.extend_from_slice(&data);
    for b in frame {
        slow.send_raw(&[b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    headers(&mut slow, &m, Duration::ZERO).await;
    let mods = body_and_end(&mut slow, &m).await;
    assert_eq!(mods, 2, "the slow sender's message is signed");

    // 100,000 header fields and a 1 MB header value: kept within the
    // limits, the message gets its permerror, memory stays bounded.
    let mut c = connected(&env, &m, "192.0.2.20").await;
    c.stage(&C::Mail(vec!["<a@example.com>".into()]))
        .await
        .unwrap();
    for i in 0..100_000 {
        c.send(&C::Header {
            name: format!("X-H{i}"),
            value: b" v".to_vec(),
        })
        .await
        .unwrap();
    }
    c.send(&C::Header {
        name: "X-Long".into(),
        value: vec![b'l'; 1_000_000],
    })
    .await
    .unwrap();
    c.stage(&C::EndOfHeaders).await.unwrap();
    c.send(&C::EndOfMessage(vec![])).await.unwrap();
    let mut ar = String::new();
    loop {
        match c.read_reply().await.unwrap() {
            Reply::InsertHeader { value, .. } => ar = String::from_utf8_lossy(&value).into_owned(),
            Reply::Continue => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        ar.contains("dkim=permerror reason=\"too many header fields\""),
        "{ar}"
    );

    // Many connections with large header frames: memory stays bounded.
    for _ in 0..30 {
        let mut c = connected(&env, &m, "127.0.0.1").await;
        c.stage(&C::Mail(vec!["<a@example.com>".into()]))
            .await
            .unwrap();
        for _ in 0..5 {
            c.stage(&C::Header {
                name: "X-Pad".into(),
                value: vec![b'p'; 200_000],
            })
            .await
            .unwrap();
        }
        c.abort().await.unwrap();
        c.quit().await.unwrap();
    }
    let rss = rss_kb(daemon.pid());
    assert!(rss < 64 * 1024, "RSS {rss} kB");
    assert_eq!(send(&env, "127.0.0.1", RAW).await.modifications.len(), 2);
}

/// Bound: SIGKILL in the middle of a 40 MB body loses nothing that was
/// stored: the restarted daemon signs the next message with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_large_body() {
    if !have_named() {
        return;
    }
    let env = setup("");
    let mut daemon = env.daemon();
    let before = apply(RAW, &send(&env, "127.0.0.1", RAW).await.modifications);
    let m = as_milter(RAW, 4096);
    let mut c = connected(&env, &m, "127.0.0.1").await;
    c.stage(&C::Mail(vec!["<joe@example.com>".into()]))
        .await
        .unwrap();
    headers(&mut c, &m, Duration::ZERO).await;
    let chunk = vec![b'a'; 65_535];
    for i in 0..640 {
        if i == 320 {
            daemon.signal("KILL");
            assert!(daemon.wait_exit(10).is_some());
        }
        if c.body_stage(&chunk).await.is_err() {
            break;
        }
    }
    drop(c);
    let _daemon = env.daemon();
    let after = apply(RAW, &send(&env, "127.0.0.1", RAW).await.modifications);
    let selectors = |msg: &[u8]| {
        let t = String::from_utf8_lossy(msg).into_owned();
        t.split("s=")
            .skip(1)
            .map(|s| s.split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(selectors(&before), selectors(&after));
    assert_eq!(selectors(&after).len(), 2);
}
