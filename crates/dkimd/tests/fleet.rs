//! A fleet on one real PostgreSQL (a private cluster: initdb, pg_ctl on
//! loopback, stopped by PID) with real BIND behind RFC 2136:
//! - the store on PostgreSQL seals private keys (a pg_dump holds none of
//!   the PEMs), migrates from SQLite and back without loss, refuses a
//!   non-empty target and a node with the wrong key file, and changes its
//!   key-encryption key;
//! - two nodes running `enable` and `rotate --all` at the same moment
//!   leave a consistent store and one record per name;
//! - three daemons: a change through node A's command line and one through
//!   node B's page are used by node C for signing; with PostgreSQL stopped
//!   all three keep signing and verifying (real Postfix in front of A),
//!   changes fail cleanly, `status` says what is served, a node restarted
//!   meanwhile signs from its snapshot; PostgreSQL back, they catch up;
//! - kill -9 of the elected worker while it publishes revocations: the
//!   other node takes over and the zone ends with exactly what the store
//!   says.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::{have_named, Named};
use common::daemon::Daemon;
use common::fleet::*;
use common::mta::as_milter;
use common::pg::{have_postgres, Pg};
use common::*;
use milter::client::Client;
use milter::server::ListenAddr;
use milter::Reply;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// The base64 lines of every private key an export holds.
fn pem_lines(export: &serde_json::Value) -> Vec<String> {
    export["keys"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| {
            k["pem"]
                .as_str()
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 40)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn postgresql_store_seals_keys_and_migrates_both_ways() {
    if !have_postgres() {
        return;
    }
    let pg = Pg::start();
    let db = pg.new_db("seal");
    let tmp = tempfile::tempdir().unwrap();
    // A machine on SQLite with two domains, keys and an admin user.
    let lite = tmp.path().join("lite.toml");
    std::fs::write(
        &lite,
        format!("state_dir = \"{}\"\n", tmp.path().join("lite").display()),
    )
    .unwrap();
    ok(&lite, &["domain", "add", "a.example"]);
    ok(&lite, &["domain", "add", "b.example", "--dkim", "always"]);
    ok(&lite, &["enable", "--selector", "s1"]);
    ok(
        &lite,
        &["key", "generate", "b.example", "--selector", "own1"],
    );
    ok(&lite, &["set", "verify", "off"]);
    let o = run_with_input(
        dkimd()
            .arg("--config")
            .arg(&lite)
            .args(["admin", "passwd", "ops"]),
        b"a long enough password\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let before = export(&lite, &tmp.path().join("before.json"));
    assert_eq!(before["keys"].as_array().unwrap().len(), 4);

    // Copied into PostgreSQL: the same state, read through a PostgreSQL node.
    let kek = tmp.path().join("store.key");
    ok(&lite, &["store", "new-key-file", kek.to_str().unwrap()]);
    let node = tmp.path().join("pg.toml");
    std::fs::write(
        &node,
        format!(
            "state_dir = \"{}\"\n{}",
            tmp.path().join("pgnode").display(),
            pg.store_section(&db, &kek, "n1")
        ),
    )
    .unwrap();
    // Migrate takes the target's password and key file from the
    // configuration it runs with: without them, a clear refusal.
    let o = run(&lite, &["store", "migrate", "--to", &pg.url(&db)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("store.key_file"), "{}", text(&o));
    std::fs::write(
        &lite,
        format!(
            "state_dir = \"{}\"\n[store]\npassword_file = \"{}\"\nkey_file = \"{}\"\n",
            tmp.path().join("lite").display(),
            pg.password_file.display(),
            kek.display()
        ),
    )
    .unwrap();
    let out = ok(&lite, &["store", "migrate", "--to", &pg.url(&db)]);
    assert!(out.contains("4 keys"), "{out}");
    let out = ok(&node, &["domain", "list"]);
    assert!(
        out.contains("a.example") && out.contains("b.example"),
        "{out}"
    );
    let mid = export(&node, &tmp.path().join("mid.json"));
    assert_eq!(mid["keys"], before["keys"]);
    assert_eq!(mid["settings"], before["settings"]);
    assert_eq!(mid["domains"], before["domains"]);
    assert_eq!(ok(&node, &["admin", "list"]).trim(), "ops");

    // A dump of the database holds no private key material.
    let lines = pem_lines(&before);
    assert!(lines.len() > 10);
    let dump = pg.dump(&db);
    assert!(dump.contains("enc1:"), "sealed keys are in the dump");
    assert!(!dump.contains("PRIVATE KEY"));
    for l in &lines {
        assert!(!dump.contains(l.as_str()), "a PEM line is in the dump: {l}");
    }

    // Into a store that is not empty: refused, nothing changed.
    let o = run(&lite, &["store", "migrate", "--to", &pg.url(&db)]);
    assert!(!o.status.success());
    let again = ok(&node, &["--json", "settings"]);
    assert!(again.contains("\"verify\""), "{again}");

    // A node with another key file: a clear error, not a wrong key.
    let other = tmp.path().join("other.key");
    ok(&lite, &["store", "new-key-file", other.to_str().unwrap()]);
    let wrong = tmp.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        format!(
            "state_dir = \"{}\"\n{}",
            tmp.path().join("wrongnode").display(),
            pg.store_section(&db, &other, "n2")
        ),
    )
    .unwrap();
    let o = run(&wrong, &["key", "show", "a.example"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("key-encryption key"), "{}", text(&o));

    // Changing the key-encryption key: the new file current, the old one
    // previous; rekey; then the new file alone opens every key.
    let both = tmp.path().join("both.toml");
    std::fs::write(
        &both,
        format!(
            "state_dir = \"{}\"\n{}previous_key_file = \"{}\"\n",
            tmp.path().join("pgnode").display(),
            pg.store_section(&db, &other, "n1"),
            kek.display()
        ),
    )
    .unwrap();
    let out = ok(&both, &["store", "rekey"]);
    assert!(out.starts_with("4 private keys sealed again"), "{out}");
    let after = export(&wrong, &tmp.path().join("after.json"));
    assert_eq!(after["keys"], before["keys"]);
    let o = run(&node, &["key", "show", "a.example"]);
    assert!(
        !o.status.success(),
        "the old key file alone no longer opens"
    );

    // And back to SQLite: the same state again.
    let back_file = tmp.path().join("back/dkimd.sqlite");
    let out = ok(
        &wrong,
        &[
            "store",
            "migrate",
            "--to",
            &format!("sqlite:{}", back_file.display()),
        ],
    );
    assert!(
        out.contains("4 keys") && out.contains("1 admin users"),
        "{out}"
    );
    let back = tmp.path().join("back.toml");
    std::fs::write(
        &back,
        format!("state_dir = \"{}\"\n", tmp.path().join("back").display()),
    )
    .unwrap();
    let end = export(&back, &tmp.path().join("end.json"));
    assert_eq!(end["keys"], before["keys"]);
    assert_eq!(end["domains"], before["domains"]);
    assert_eq!(end["settings"], before["settings"]);
    assert_eq!(ok(&back, &["admin", "list"]).trim(), "ops");
}

/// With `sslmode=require` (always, off loopback) the connection is TLS
/// and the server's certificate is checked against `store.ca_file`: the
/// right CA connects, another CA is refused.
#[test]
fn tls_to_postgresql_checks_the_certificate() {
    if !have_postgres() {
        return;
    }
    let pg = Pg::start();
    let db = pg.new_db("tls");
    pg.stop();
    let ca = pg.enable_tls();
    pg.start_again();
    let tmp = tempfile::tempdir().unwrap();
    let kek = tmp.path().join("store.key");
    let o = dkimd()
        .args(["store", "new-key-file"])
        .arg(&kek)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let config = |ca: &Path| {
        let c = tmp.path().join("tls.toml");
        let section = pg
            .store_section(&db, &kek, "t")
            .replace(&pg.url(&db), &format!("{}?sslmode=require", pg.url(&db)));
        std::fs::write(
            &c,
            format!(
                "state_dir = \"{}\"\n{section}ca_file = \"{}\"\n",
                tmp.path().join("state").display(),
                ca.display()
            ),
        )
        .unwrap();
        c
    };
    let good = config(&ca);
    ok(&good, &["domain", "add", "tls.example"]);
    assert!(ok(&good, &["domain", "list"]).contains("tls.example"));
    // Another CA: refused, with the reason.
    let other = tmp.path().join("other-ca.crt");
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=other",
        ])
        .arg("-keyout")
        .arg(tmp.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&config(&other), &["domain", "list"]);
    assert!(!o.status.success());
    assert!(
        text(&o).to_lowercase().contains("certificate"),
        "{}",
        text(&o)
    );
}

/// The TXT records BIND serves under each key name of every domain, as
/// the store wants them: exactly one record per name, the wanted value.
fn zone_matches_store(config: &Path, named: &Named) -> Result<usize, String> {
    let v = json(config, &["status"]);
    let mut names = 0;
    for d in v["domains"].as_array().unwrap() {
        for k in d["keys"].as_array().unwrap() {
            let name = k["record_name"].as_str().unwrap();
            let served = named.dig_txt(name);
            let want = match k["state"].as_str().unwrap() {
                "revoked" => format!("v=DKIM1; k={}; p=", k["algorithm"].as_str().unwrap()),
                _ => k["record"].as_str().unwrap().replace(['"', ' '], ""),
            };
            let served: Vec<String> = served.iter().map(|s| s.replace(' ', "")).collect();
            if served.len() != 1 || served[0] != want.replace(' ', "") {
                return Err(format!(
                    "{name}: served {served:?}, the store wants {want:?}"
                ));
            }
            names += 1;
        }
    }
    Ok(names)
}

#[test]
fn two_nodes_enabling_and_rotating_at_once_stay_consistent() {
    if !have_postgres() || !have_named() {
        return;
    }
    let f = Fleet::start("race");
    let a = f.node("a", "");
    let b = f.node("b", "");
    for i in 0..10 {
        ok(&a, &["domain", "add", &format!("r{i}.dyn.example")]);
    }
    let at_once = |args: &[&str]| -> Vec<Output> {
        let kids: Vec<_> = [&a, &b]
            .iter()
            .map(|c| {
                dkimd()
                    .arg("--config")
                    .arg(c)
                    .args(args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        kids.into_iter()
            .map(|k| k.wait_with_output().unwrap())
            .collect()
    };
    for (round, args) in [
        vec!["enable", "--selector", "k1"],
        vec!["rotate", "--all", "--selector", "k2"],
    ]
    .iter()
    .enumerate()
    {
        let outs = at_once(args);
        let won = outs.iter().filter(|o| o.status.success()).count();
        eprintln!("round {round}: {won} of 2 succeeded");
        assert!(
            won >= 1,
            "round {round}: {}",
            outs.iter().map(text).collect::<String>()
        );
        for o in outs.iter().filter(|o| !o.status.success()) {
            assert!(
                text(o).contains("changed meanwhile") || text(o).contains("under way"),
                "round {round}: the loser fails cleanly: {}",
                text(o)
            );
        }
        // One key per algorithm and state for the global owner.
        let st = json(&a, &["status"]);
        for d in st["domains"].as_array().unwrap() {
            let mut seen: Vec<(String, String)> = d["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    (
                        k["state"].as_str().unwrap().to_string(),
                        k["algorithm"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let n = seen.len();
            seen.sort();
            seen.dedup();
            assert_eq!(n, seen.len(), "round {round}: {d}");
        }
        let names =
            zone_matches_store(&a, &f.named).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(names, if round == 0 { 20 } else { 40 }, "round {round}");
    }
}

/// Sends a message signed for `dyn.example` by dkimd itself from an
/// outside client through a node's milter: the Authentication-Results it
/// adds.
async fn verify_at(port: u16, signed: &[u8]) -> Result<String, String> {
    let addr = ListenAddr::Tcp(format!("127.0.0.1:{port}").parse().unwrap());
    let mut c = Client::connect(&addr).await.map_err(|e| e.to_string())?;
    c.negotiate().await.map_err(|e| e.to_string())?;
    let m = as_milter(signed, 4096);
    c.connect_stage(&m, "outside.test", "192.0.2.7")
        .await
        .map_err(|e| e.to_string())?;
    let out = c.message(&m).await.map_err(|e| e.to_string())?;
    let _ = c.quit().await;
    Ok(out
        .modifications
        .iter()
        .filter_map(|r| match r {
            Reply::InsertHeader { name, value, .. } | Reply::AddHeader { name, value }
                if name == "Authentication-Results" =>
            {
                Some(String::from_utf8_lossy(value).into_owned())
            }
            _ => None,
        })
        .collect())
}

/// Seconds of mail while PostgreSQL is stopped (`DKIMD_OUTAGE_SECS`).
fn outage_secs() -> u64 {
    std::env::var("DKIMD_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_a_store_and_sign_through_an_outage() {
    if !have_postgres() || !have_named() || !postfix::have_postfix() {
        return;
    }
    let f = Fleet::start("three");
    let a = f.node("a", NODE_SECTIONS);
    let b = f.node(
        "b",
        &format!("{NODE_SECTIONS}\n[admin]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let c = f.node("c", NODE_SECTIONS);
    ok(&a, &["domain", "add", "dyn.example"]);
    ok(&a, &["enable", "--selector", "f1"]);
    let o = run_with_input(
        dkimd()
            .arg("--config")
            .arg(&b)
            .args(["admin", "passwd", "ops"]),
        b"a long enough password\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let da = Daemon::start_any_port(&a);
    let db = Daemon::start_any_port(&b);
    let mut dc = Daemon::start_any_port(&c);
    for d in [&da, &db, &dc] {
        assert_eq!(
            sign_at(d.port, "dyn.example").await.unwrap(),
            ["f1", "f1-ed25519"]
        );
    }
    // Postfix in front of node A.
    let mta = postfix::Postfix::start(&format!("inet:127.0.0.1:{}", da.port), "tempfail");

    // A change through A's command line, used by C.
    ok(&a, &["domain", "add", "fresh1.dyn.example"]);
    let t1 = signs_within(dc.port, "fresh1.dyn.example", 20).await;
    // A change through B's page, used by C.
    let mut page = http::Client::new(db.admin_port());
    page.login("ops", "a long enough password");
    let csrf = page.csrf("/");
    let r = page.post(
        "/domains",
        &[
            ("csrf", &csrf),
            ("name", "fresh2.dyn.example"),
            ("dns", "on"),
            ("mail", "on"),
        ],
    );
    assert!(r.status == 303 || r.status == 200, "{r:?}");
    let t2 = signs_within(dc.port, "fresh2.dyn.example", 20).await;
    eprintln!("propagation to node C: CLI on A {t1:?}, page on B {t2:?}");

    // The registry: three nodes, one worker, all on the latest snapshot.
    let mut nodes = serde_json::Value::Null;
    for _ in 0..50 {
        nodes = json(&a, &["nodes"]);
        let rows = nodes["nodes"].as_array().unwrap();
        if rows.len() == 3
            && rows.iter().filter(|r| r["worker"] == true).count() == 1
            && rows.iter().all(|r| r["snapshot"] == nodes["store_version"])
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rows = nodes["nodes"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{nodes}");
    assert_eq!(
        rows.iter().filter(|r| r["worker"] == true).count(),
        1,
        "{nodes}"
    );
    assert!(rows.iter().all(|r| r["problem"].is_null()), "{nodes}");
    // The page lists them too.
    let front = page.get("/");
    for n in ["a", "b", "c"] {
        assert!(
            front.body.contains(&format!("id=\"node-{n}\"")),
            "{}",
            front.body
        );
    }

    // A message signed for dyn.example, to verify at each node later.
    let signed = {
        let raw = b"From: Joe <joe@dyn.example>\r\nTo: x@example.net\r\nSubject: v\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <v@dyn.example>\r\n\r\nVerify me.\r\n";
        let key = tempfile::NamedTempFile::new().unwrap();
        let st = export(&a, &f.tmp.path().join("keys.json"));
        let pem = st["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["selector"] == "f1-ed25519")
            .unwrap()["pem"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::write(key.path(), pem).unwrap();
        let o = run_with_input(
            dkimd()
                .args([
                    "sign",
                    "--domain",
                    "dyn.example",
                    "--selector",
                    "f1-ed25519",
                    "--key",
                ])
                .arg(key.path()),
            raw,
        );
        assert!(o.status.success(), "{}", text(&o));
        o.stdout
    };
    for d in [&da, &db, &dc] {
        let ar = verify_at(d.port, &signed).await.unwrap();
        assert!(ar.contains("dkim=pass"), "{ar}");
    }

    // The outage.
    f.pg.stop();
    let started = Instant::now();
    let secs = outage_secs();
    let mut mails = 0;
    let mut restarted = false;
    let mut failed_cleanly = false;
    while started.elapsed() < Duration::from_secs(secs) {
        // Through real Postfix on A: delivered, signed.
        let raw = format!(
            "From: Joe <joe@dyn.example>\r\nTo: x@example.net\r\nSubject: outage {mails}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <o{mails}@dyn.example>\r\n\r\nDuring the outage.\r\n"
        );
        let answer = postfix::smtp_send(
            mta.submission_port,
            "127.0.0.1",
            "joe@dyn.example",
            "x@example.net",
            raw.as_bytes(),
        )
        .await;
        assert!(answer.starts_with("250"), "{answer}\n{}", mta.log());
        let got = mta
            .delivered(30)
            .unwrap_or_else(|| panic!("mail {mails} not delivered: {}", mta.log()));
        let got = String::from_utf8_lossy(&got).into_owned();
        assert!(
            got.contains("DKIM-Signature:") && got.contains("s=f1"),
            "{got}"
        );
        // B and C through the milter, signing and verifying.
        for d in [&db, &dc] {
            assert_eq!(
                sign_at(d.port, "fresh2.dyn.example").await.unwrap(),
                ["f1", "f1-ed25519"]
            );
            assert!(verify_at(d.port, &signed)
                .await
                .unwrap()
                .contains("dkim=pass"));
        }
        mails += 1;
        if !failed_cleanly && started.elapsed() > Duration::from_secs(5) {
            // A change while the store is away: a clear failure, nothing half done.
            let o = run(&a, &["domain", "add", "meanwhile.dyn.example"]);
            assert!(!o.status.success());
            assert!(text(&o).contains("unreachable"), "{}", text(&o));
            // status on C says what its daemon serves.
            let o = run(&c, &["status"]);
            assert_eq!(o.status.code(), Some(1), "{}", text(&o));
            let t = text(&o);
            assert!(
                t.contains("store unreachable since") && t.contains("serving snapshot"),
                "{t}"
            );
            failed_cleanly = true;
        }
        if !restarted && started.elapsed() > Duration::from_secs(secs / 2) {
            // A node started while PostgreSQL is down signs from its snapshot.
            drop(dc);
            dc = Daemon::start_any_port(&c);
            assert!(
                dc.wait_log("starting from the local snapshot", 10),
                "{}",
                dc.log_text()
            );
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(restarted && failed_cleanly);
    eprintln!("{mails} rounds of mail during a {secs} s outage");

    // PostgreSQL back: the nodes catch up, and new changes reach them.
    f.pg.start_again();
    ok(&a, &["domain", "add", "after.dyn.example"]);
    for d in [&da, &db, &dc] {
        signs_within(d.port, "after.dyn.example", 60).await;
    }
    assert!(
        !ok(&a, &["domain", "list"]).contains("meanwhile.dyn.example"),
        "the change made during the outage was not applied later"
    );
    let o = run(&c, &["status"]);
    assert!(!text(&o).contains("store unreachable"), "{}", text(&o));
}

#[test]
fn killing_the_worker_while_it_publishes_hands_over_cleanly() {
    if !have_postgres() || !have_named() {
        return;
    }
    let f = Fleet::start("handover");
    let sections = "[milter]\nsocket = \"inet:127.0.0.1:0\"\nkey_step_interval = 1\n";
    let a = f.node("a", sections);
    let b = f.node("b", sections);
    let n = 150;
    for i in 0..n {
        ok(&a, &["domain", "add", &format!("h{i}.dyn.example")]);
    }
    ok(&a, &["set", "propagation-wait", "1s"]);
    ok(&a, &["set", "retire-after", "20s"]);
    ok(&a, &["enable", "--selector", "old"]);
    let da = Daemon::start_any_port(&a);
    let db = Daemon::start_any_port(&b);
    // Which one is the worker.
    let mut worker = None;
    for _ in 0..100 {
        let v = json(&a, &["nodes"]);
        worker = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["worker"] == true)
            .map(|r| r["name"].as_str().unwrap().to_string());
        if worker.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let worker = worker.expect("a worker is elected");
    let (mut dying, survivor) = if worker == "a" { (da, db) } else { (db, da) };
    // A rotation: the worker promotes it, and 20 s later revokes the old
    // keys at every domain, one update each.
    ok(&a, &["rotate", "--all", "--selector", "new"]);
    let first = "old._domainkey.h0.dyn.example";
    let last = format!("old._domainkey.h{}.dyn.example", n - 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let served = f.named.dig_txt(first);
        if served.iter().any(|s| s.ends_with("p=")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never revoked: {}",
            dying.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    dying.signal("KILL");
    let _ = dying.wait_exit(10);
    let half = f.named.dig_txt(&last);
    assert!(
        half.iter().all(|s| !s.ends_with("p=")),
        "killed mid-publish: the last domain was not revoked yet ({half:?})"
    );
    assert!(
        survivor.wait_log("this node is now the fleet's worker", 30),
        "{}",
        survivor.log_text()
    );
    // The new worker finishes: the zone holds exactly what the store says.
    let until = Instant::now() + Duration::from_secs(60);
    let names = loop {
        match zone_matches_store(&a, &f.named) {
            Ok(names) => break names,
            Err(e) if Instant::now() > until => panic!("{e}\n{}", survivor.log_text()),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    assert_eq!(names, 4 * n, "active and revoked keys of both algorithms");
}

/// One node of the fleet publishes DNS at a time: while another session
/// holds the publishing turn, `enable` waits for it (seen in pg_locks),
/// then publishes once it is free.
#[test]
fn publishing_waits_for_the_other_nodes_turn() {
    if !have_postgres() || !have_named() {
        return;
    }
    let f = Fleet::start("turns");
    let a = f.node("a", "");
    ok(&a, &["domain", "add", "t.dyn.example"]);
    // Another "node" takes the turn for 4 s.
    let key = 0x646b_696d_6404_i64;
    let holder = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &f.pg.port.to_string(),
            "-U",
            "dkimd",
            "-d",
            &f.db,
        ])
        .args([
            "-c",
            &format!("SELECT pg_advisory_lock({key}); SELECT pg_sleep(4);"),
        ])
        .env("PGPASSWORD", common::pg::PASSWORD)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let enable = dkimd()
        .arg("--config")
        .arg(&a)
        .args(["enable", "--selector", "t1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = false;
    for _ in 0..40 {
        let n = f.pg.psql(
            &f.db,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        );
        if n.trim() != "0" {
            waited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        f.named.dig_txt("t1._domainkey.t.dyn.example").is_empty(),
        "published during the other turn"
    );
    let out = enable.wait_with_output().unwrap();
    let _ = holder.wait_with_output();
    assert!(waited, "enable did not wait for the turn");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(f.named.dig_txt("t1._domainkey.t.dyn.example").len(), 1);
}
