//! The milter daemon as a function: `dkimd::daemon::run` in this process,
//! on a listener bound to port 0 (no port probed and dropped), over a store
//! the manager filled, with the clock fixed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dkimd_core::clock::{Clock, FixedClock};
use dkimd_core::config::Config;
use dkimd_core::manager::{EnableOptions, Manager, Steps};
use dkimd_core::model::settings::Override;
use milter::client::{Client, Message};
use milter::server::{ListenAddr, Listener};
use milter::Reply;
use std::collections::HashMap;
use std::sync::Arc;

/// 2026-12-01T21:03:43Z.
const DEC_1: u64 = 1_796_159_023;

fn message(from: &str) -> Message {
    let headers: Vec<(String, Vec<u8>)> = [
        ("From", format!("Joe <joe@{from}>")),
        ("To", "rcpt@example.net".to_string()),
        ("Subject", "in-process".to_string()),
        ("Date", "Tue, 01 Dec 2026 21:03:43 +0000".to_string()),
        ("Message-ID", "<inproc@example.com>".to_string()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.into_bytes()))
    .collect();
    Message {
        macros: vec![(b'M', vec![("i".into(), "INPROC1".into())])],
        mail_from: vec![format!("<joe@{from}>")],
        rcpt_to: vec!["<rcpt@example.net>".into()],
        headers,
        body: vec![b"Hello from a test that needs no subprocess.\r\n".to_vec()],
    }
}

/// The message as the receiver gets it: the inserted header fields on top.
fn delivered(msg: &Message, mods: &[Reply]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in mods {
        if let Reply::InsertHeader { name, value, .. } = m {
            out.extend_from_slice(format!("{name}: ").as_bytes());
            out.extend_from_slice(
                &String::from_utf8_lossy(value)
                    .replace('\n', "\r\n")
                    .into_bytes(),
            );
            out.extend_from_slice(b"\r\n");
        }
    }
    for (n, v) in &msg.headers {
        out.extend_from_slice(format!("{n}: ").as_bytes());
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    for c in &msg.body {
        out.extend_from_slice(c);
    }
    out
}

#[test]
fn the_daemon_runs_in_process_on_port_zero_signs_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        state_dir: tmp.path().join("state"),
        ..Config::default()
    };
    // Manual publishing checks DNS; port 9 (discard) answers nothing, fast.
    cfg.dns.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
    cfg.dns.timeout = 1;
    cfg.milter.trusted_networks = vec!["127.0.0.1/32".into()];
    cfg.milter.authserv_id = Some("mx.test".into());
    let clock = FixedClock::at(DEC_1);
    let mut m = Manager::new(
        cfg.clone(),
        dkimd_core::store::open(&cfg).unwrap(),
        Steps::collecting(),
        Arc::new(clock.clone()),
    );
    m.domain_add("example.com", true, true, Override::Default)
        .unwrap();
    m.enable(&EnableOptions {
        algorithms: Some(vec![dkim::KeyAlgorithm::Ed25519]),
        ..EnableOptions::default()
    })
    .unwrap();
    let st = m.load().unwrap();
    let key = st.keys.first().unwrap();
    assert_eq!(key.selector, "202612-ed25519", "the injected clock's month");
    let record = dkim::SigningKey::from_pem(key.pem.as_bytes())
        .unwrap()
        .dns_record();
    drop(m);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = Listener::bind(&ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let addr = listener.postfix_addr();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let store = dkimd_core::store::open(&cfg).unwrap();
        let resolver = dkimd::daemon::verify_resolver(&cfg).unwrap();
        let run_cfg = cfg.clone();
        let daemon_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let daemon = tokio::spawn(async move {
            dkimd::daemon::run(&run_cfg, listener, store, resolver, daemon_clock, async {
                let _ = stopped.await;
            })
            .await
        });

        let mut c = Client::connect(&ListenAddr::Tcp(
            format!("127.0.0.1:{port}").parse().unwrap(),
        ))
        .await
        .unwrap();
        c.negotiate().await.unwrap();
        let connect = Message::default();
        c.connect_stage(&connect, "client.test", "127.0.0.1")
            .await
            .unwrap();
        let msg = message("example.com");
        let out = c.message(&msg).await.unwrap();
        assert_eq!(out.reply, Reply::Continue);
        let sig = out
            .modifications
            .iter()
            .find_map(|r| match r {
                Reply::InsertHeader { name, value, .. } if name == "DKIM-Signature" => {
                    Some(String::from_utf8_lossy(value).into_owned())
                }
                _ => None,
            })
            .expect("a DKIM-Signature");
        assert!(sig.contains("d=example.com"), "{sig}");
        assert!(sig.contains("s=202612-ed25519"), "{sig}");
        assert!(
            sig.contains(&format!("t={DEC_1}")),
            "the injected clock signs: {sig}"
        );

        // The signature verifies against the key's record.
        let raw = delivered(&msg, &out.modifications);
        let parsed = dkim::Message::parse(&raw).unwrap();
        let mut v = dkim::Verifier::new(dkim::VerifierConfig::default())
            .start(parsed.headers(), DEC_1 + 60);
        v.body(parsed.body());
        let mut dns = HashMap::new();
        dns.insert(
            "202612-ed25519._domainkey.example.com".to_string(),
            vec![record],
        );
        let results = v.finish(&dns);
        assert!(
            results.iter().any(|r| r.result == dkim::DkimResult::Pass),
            "{results:?}"
        );
        let _ = c.quit().await;

        stop.send(()).unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), daemon)
            .await
            .expect("the daemon stops when its shutdown future completes");
        r.unwrap().unwrap();
    });
}
