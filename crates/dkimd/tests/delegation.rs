//! Publishing by delegation, end to end in a real BIND: one zone is the
//! customer's (a zone file dkimd never writes, holding the two CNAMEs
//! `s1`/`s2._domainkey` → `s1`/`s2.customer.example.dkim.example.net`),
//! the other is the delegation zone, written by dkimd through RFC 2136.
//! Two full rotations alternate between the two selectors; mail signed
//! through a real Postfix passes dkimpy and dkimd (both resolving the
//! CNAME chain from BIND) before, during and after each switch. A missing
//! or misdirected CNAME holds a promotion back, and `status` says exactly
//! what the customer must publish.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::{have_named, zone_file, Named, Zone};
use common::daemon::Daemon;
use common::postfix::{have_postfix, smtp_send, Postfix};
use common::*;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

const DAY: u64 = 86_400;
const CUSTOMER: &str = "customer.example";
const ZONE: &str = "dkim.example.net";

struct Env {
    tmp: tempfile::TempDir,
    config: PathBuf,
    named: Named,
}

fn target(slot: &str) -> String {
    format!("{slot}.{CUSTOMER}.{ZONE}")
}

fn cname(slot: &str) -> String {
    format!(
        "{slot}._domainkey.{CUSTOMER}. 300 IN CNAME {}.",
        target(slot)
    )
}

impl Env {
    fn start() -> Env {
        let named = Named::start_zones_recursive(&[
            Zone {
                name: CUSTOMER.into(),
                text: zone_file(CUSTOMER, 1, &[cname("s1"), cname("s2")]),
                dynamic: false,
            },
            Zone {
                name: ZONE.into(),
                text: zone_file(ZONE, 1, &[]),
                dynamic: true,
            },
        ]);
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("dkimd.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{state}\"\n[dns]\nnameservers = [\"{addr}\"]\ntimeout = 2\npropagation_timeout = 15\n\
                 [milter]\nsocket = \"inet:127.0.0.1:0\"\nkey_step_interval = 86400\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\n\
                 [[publish.zone]]\nname = \"{ZONE}\"\nbackend = \"rfc2136\"\nserver = \"{addr}\"\ntsig_key_name = \"dkimd-key\"\ntsig_secret_file = \"{secret}\"\nttl = 300\nauthoritative = [\"{addr}\"]\n",
                state = tmp.path().join("state").display(),
                addr = named.addr(),
                secret = named.tsig_secret_file.display(),
            ),
        )
        .unwrap();
        Env { tmp, config, named }
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
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        text(&o)
    }

    fn step(&self, t: u64) -> String {
        self.ok(&["rotate", "--step", "--at", &at(t)])
    }

    fn status(&self) -> serde_json::Value {
        let o = self.run(&["--json", "status"]);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
    }

    /// The customer's keys in status: (selector, state, dns words, target).
    fn keys(&self) -> Vec<(String, String, String, serde_json::Value)> {
        let st = self.status();
        st["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == CUSTOMER)
            .unwrap_or_else(|| panic!("{st}"))["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["selector"].as_str().unwrap().to_string(),
                    k["state"].as_str().unwrap().to_string(),
                    k["dns"].as_str().unwrap().to_string(),
                    k["target"].clone(),
                )
            })
            .collect()
    }

    fn state_of(&self, selector: &str) -> String {
        self.keys()
            .into_iter()
            .find(|k| k.0 == selector)
            .map(|k| k.1)
            .unwrap_or_else(|| "gone".into())
    }

    /// Rewrites the customer's zone (as its owner would) and reloads it.
    fn customer_zone(&self, serial: u32, lines: &[String]) {
        std::fs::write(
            self.named.zone_file(CUSTOMER),
            zone_file(CUSTOMER, serial, lines),
        )
        .unwrap();
        let r = self.named.rndc_reload(CUSTOMER);
        let o = std::process::Command::new(&r[0])
            .args(&r[1..])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.named.serial(CUSTOMER) != Some(serial) {
            assert!(Instant::now() < deadline, "BIND did not reload {CUSTOMER}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The s= of each DKIM-Signature of a message.
fn selectors(msg: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .replace("\r\n\t", " ")
        .replace("\r\n ", " ");
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("dkim-signature:"))
        .filter_map(|l| {
            l.split(';')
                .map(str::trim)
                .find_map(|t| t.strip_prefix("s="))
                .map(str::to_string)
        })
        .collect()
}

/// Sends one message from the customer through Postfix's submission
/// service, waits until it is signed with `selector` (the daemon picks up
/// store changes on its own), and checks that dkimpy and dkimd, both
/// asking BIND, pass it. Returns the delivered message's file.
async fn mail_passes(env: &Env, pf: &Postfix, n: u32, selector: &str) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let raw = format!(
            "From: Ann <ann@{CUSTOMER}>\r\nTo: Bob <bob@example.org>\r\nSubject: delegated {n}\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <d{n}-{}@{CUSTOMER}>\r\n\r\nSigned by a delegated key.\r\n",
            now()
        );
        let a = smtp_send(
            pf.submission_port,
            "127.0.0.1",
            &format!("ann@{CUSTOMER}"),
            "bob@example.org",
            raw.as_bytes(),
        )
        .await;
        assert!(a.starts_with("250"), "{a}\n{}", pf.log());
        let signed = pf
            .delivered(20)
            .unwrap_or_else(|| panic!("nothing delivered\n{}", pf.log()));
        let sels = selectors(&signed);
        if sels != [selector] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        assert!(
            sels.iter().all(|s| s.starts_with(selector)) && !sels.is_empty(),
            "message {n}: signed with {sels:?}, expected {selector}"
        );
        let f = env.tmp.path().join(format!("mail-{n}.eml"));
        std::fs::write(&f, &signed).unwrap();
        assert_passes(env, &f);
        return f;
    }
}

/// dkimpy and dkimd, each resolving through BIND, pass every signature.
fn assert_passes(env: &Env, f: &std::path::Path) {
    if have_dkimpy() {
        let r = dkimpy_verify_live(&env.named.addr(), &[f.to_path_buf()]);
        assert!(r[0].1, "dkimpy fails {}: {}", f.display(), r[0].2);
    }
    let o = dkimd()
        .args(["--json", "verify", "--nameserver", &env.named.addr()])
        .stdin(std::fs::File::open(f).unwrap())
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let results = v["results"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(!results.is_empty(), "{v}");
    for r in results {
        assert_eq!(r["result"], "pass", "dkimd fails {}: {v}", f.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rotations_by_delegation_keep_mail_verifying() {
    if !have_named() || !have_postfix() {
        return;
    }
    let env = Env::start();
    env.ok(&["domain", "add", CUSTOMER]);
    // Before delegation the customer's zone is not dkimd's: the global
    // keys' records were published there by hand.
    env.ok(&["enable", "--selector", "g1"]);
    let mut by_hand = vec![cname("s1"), cname("s2")];
    for k in env.keys() {
        let st = env.status();
        let _ = st;
        assert_eq!(k.3, serde_json::Value::Null, "{k:?}");
    }
    let st = env.status();
    for k in st["domains"][0]["keys"].as_array().unwrap() {
        by_hand.push(k["zone_line"].as_str().unwrap().to_string());
    }
    env.customer_zone(2, &by_hand);
    let o = run_with_input(
        dkimd()
            .arg("--config")
            .arg(&env.config)
            .args(["admin", "passwd", "admin"]),
        b"a long enough password\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let daemon = Daemon::start_any_port(&env.config);
    let pf = Postfix::start(&format!("inet:127.0.0.1:{}", daemon.port), "tempfail");
    let before = mail_passes(&env, &pf, 1, "g1").await;

    // Delegate: s1 is made, pending, its record at its target; g1 signs on.
    let out = env.ok(&[
        "domain",
        "set",
        CUSTOMER,
        "--publish",
        "cname",
        "--delegate-zone",
        ZONE,
    ]);
    assert!(
        out.contains(&format!(
            "s1._domainkey.{CUSTOMER}. CNAME {}.",
            target("s1")
        )) && out.contains("selector s1: pending"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}: record added (rfc2136", target("s1"))),
        "{out}"
    );
    assert_eq!(env.named.dig_txt(&target("s1")).len(), 1);
    // The chain: the customer's name leads to the target's record.
    assert_eq!(
        env.named.dig_txt(&format!("s1._domainkey.{CUSTOMER}")),
        env.named.dig_txt(&target("s1"))
    );
    let during = mail_passes(&env, &pf, 2, "g1").await;

    // Rotation 0 → s1: promoted once served (through the CNAME) and
    // propagation-wait has passed.
    let mut t = now();
    let out = env.step(t + 60);
    assert!(out.contains("served everywhere since"), "{out}");
    t += 60 + 301;
    let out = env.step(t);
    assert!(
        out.contains(&format!("{CUSTOMER}: selector s1 signs now")),
        "{out}"
    );
    assert_eq!(env.state_of("s1"), "active");
    let s1_mail = mail_passes(&env, &pf, 3, "s1").await;
    assert_passes(&env, &before);
    assert_passes(&env, &during);

    // Two full rotations, alternating between the slots.
    let mut old_mail = s1_mail;
    for (round, (new, old)) in [("s2", "s1"), ("s1", "s2")].into_iter().enumerate() {
        let round = u32::try_from(round).unwrap();
        let out = env.ok(&["rotate", "--all"]);
        assert!(
            out.contains(&format!(
                "{CUSTOMER}: new rsa key, 2048 bits, selector {new}: pending"
            )),
            "round {round}: {out}"
        );
        assert_eq!(env.named.dig_txt(&target(new)).len(), 1, "round {round}");
        // During the switch the old slot signs.
        mail_passes(&env, &pf, 10 + round * 10, old).await;
        if round == 1 {
            // The customer's CNAME for the new slot went missing: the
            // promotion waits, and status says what to publish.
            env.customer_zone(10, &[cname("s2"), by_hand[2].clone()]);
            // (The key was made at today's time and the steps run weeks
            // later: not served, it is an alarm, exit code 1.)
            let out = text(&env.run(&["rotate", "--step", "--at", &at(t + 60)]));
            assert!(
                out.contains(&format!(
                    "the customer's CNAME is missing (publish s1._domainkey.{CUSTOMER}. CNAME {}.)",
                    target("s1")
                )),
                "{out}"
            );
            let k = env.keys().into_iter().find(|k| k.0 == "s1").unwrap();
            assert_eq!(k.1, "pending");
            assert!(
                k.2.contains(&format!(
                    "the customer's CNAME is missing: publish s1._domainkey.{CUSTOMER}. CNAME {}.",
                    target("s1")
                )),
                "{k:?}"
            );
            // Pointed elsewhere: said so.
            env.customer_zone(
                11,
                &[
                    cname("s2"),
                    format!("s1._domainkey.{CUSTOMER}. 300 IN CNAME elsewhere.example."),
                ],
            );
            let k = env.keys().into_iter().find(|k| k.0 == "s1").unwrap();
            assert!(
                k.2.contains("the customer's CNAME points elsewhere")
                    && k.2.contains("elsewhere.example"),
                "{k:?}"
            );
            assert_eq!(env.state_of("s1"), "pending");
            env.customer_zone(12, &[cname("s1"), cname("s2")]);
        }
        let out = env.step(t + 120);
        assert!(
            out.contains("served everywhere since"),
            "round {round}: {out}"
        );
        t += 120 + 301;
        let out = env.step(t);
        assert!(
            out.contains(&format!("{CUSTOMER}: selector {new} signs now")),
            "round {round}: {out}"
        );
        assert_eq!(env.state_of(new), "active");
        assert_eq!(env.state_of(old), "retired");
        if round == 0 {
            // Both selectors in use: a rotation asked for now is refused
            // with when it can start, and --all reports it as failed.
            let o = env.run(&["rotate", CUSTOMER]);
            assert!(
                !o.status.success()
                    && text(&o).contains("no free selector for a rotation by delegation")
                    && text(&o).contains("s1 is retired since"),
                "{}",
                text(&o)
            );
            // Mail signed by delegation keeps the delegation.
            let o = env.run(&["domain", "set", CUSTOMER, "--publish", "direct"]);
            assert!(
                !o.status.success()
                    && text(&o).contains("ending a delegation is not supported yet"),
                "{}",
                text(&o)
            );
        }
        let after = mail_passes(&env, &pf, 11 + round * 10, new).await;
        // Mail the old slot signed still verifies while it is retired.
        assert_passes(&env, &old_mail);
        // Past retire-after: the old target serves p= empty; past
        // revoke-for: gone, and the slot is free for the next rotation.
        t += 7 * DAY;
        let out = env.step(t);
        assert!(out.contains(&format!("selector {old}: revoked")), "{out}");
        let served = env.named.dig_txt(&target(old));
        assert_eq!(served.len(), 1);
        assert!(
            served[0].contains("p=;") || served[0].ends_with("p="),
            "{served:?}"
        );
        t += 30 * DAY;
        let out = env.step(t);
        assert!(out.contains(&format!("selector {old}: deleted")), "{out}");
        assert!(env.named.dig_txt(&target(old)).is_empty());
        assert_passes(&env, &after);
        old_mail = after;
    }
    // A chain through an alias of the customer's own is followed: served.
    let alias = format!("alias.{CUSTOMER}");
    env.customer_zone(
        18,
        &[
            format!("s1._domainkey.{CUSTOMER}. 300 IN CNAME {alias}."),
            format!("{alias}. 300 IN CNAME {}.", target("s1")),
        ],
    );
    let k = env.keys().into_iter().find(|k| k.0 == "s1").unwrap();
    assert_eq!(k.2, "ok", "{k:?}");
    // … and where it leads elsewhere, status names the end of the chain.
    env.customer_zone(
        19,
        &[
            format!("s1._domainkey.{CUSTOMER}. 300 IN CNAME {alias}."),
            format!("{alias}. 300 IN CNAME elsewhere.example."),
        ],
    );
    let k = env.keys().into_iter().find(|k| k.0 == "s1").unwrap();
    assert!(
        k.2.contains("the customer's CNAME points elsewhere") && k.2.contains("elsewhere.example"),
        "{k:?}"
    );
    // The customer removes the CNAME of the key that signs: status says
    // which record to publish, with an alarm.
    env.customer_zone(20, &[cname("s2")]);
    let st = env.status();
    let k = st["domains"][0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["selector"] == "s1")
        .unwrap()
        .clone();
    assert_eq!(k["state"], "active");
    let want = format!(
        "the customer's CNAME is missing: publish s1._domainkey.{CUSTOMER}. CNAME {}.",
        target("s1")
    );
    assert!(k["dns"].as_str().unwrap().contains(&want), "{k}");
    assert!(k["alarm"].as_str().unwrap_or("").contains(&want), "{k}");
    let o = env.run(&["status"]);
    assert!(!o.status.success(), "an alarm is exit code 1");
    assert!(
        text(&o).contains(&format!(
            "by delegation: the customer publishes s1._domainkey.{CUSTOMER}. IN CNAME {}.",
            target("s1")
        )),
        "{}",
        text(&o)
    );
    // The admin page says the same, with the CNAME to copy.
    let mut c = common::http::Client::new(daemon.admin_port());
    let r = c.login("admin", "a long enough password");
    assert!(r.status == 303 || r.status == 200, "{r:?}");
    let page = c.get(&format!("/domains/{CUSTOMER}"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!(
            "CNAME is missing: publish s1._domainkey.{CUSTOMER}. CNAME {}.",
            target("s1")
        )) && page.body.contains(&format!(
            "s1._domainkey.{CUSTOMER}. IN CNAME {}.",
            target("s1")
        )) && page.body.contains("must publish the CNAME shown"),
        "{}",
        page.body
    );
    drop(daemon);
}

#[test]
fn delegation_refuses_what_it_cannot_do() {
    if !have_named() {
        return;
    }
    let env = Env::start();
    env.ok(&["domain", "add", CUSTOMER]);
    env.ok(&["enable", "--selector", "g1"]);
    // A zone the configuration does not publish.
    let o = env.run(&[
        "domain",
        "set",
        CUSTOMER,
        "--publish",
        "cname",
        "--delegate-zone",
        "nowhere.example",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no [[publish.zone]] in the configuration holds nowhere.example"),
        "{}",
        text(&o)
    );
    // cname without a zone.
    let o = env.run(&["domain", "set", CUSTOMER, "--publish", "cname"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    env.ok(&[
        "domain",
        "set",
        CUSTOMER,
        "--publish",
        "cname",
        "--delegate-zone",
        ZONE,
    ]);
    // Its customer's CNAMEs name it: no rename.
    let o = env.run(&["domain", "rename", CUSTOMER, "other.example"]);
    assert!(
        !o.status.success() && text(&o).contains("add other.example as a domain of its own"),
        "{}",
        text(&o)
    );
    // The slots' selectors are not the global keys' to take.
    let o = env.run(&["enable", "--selector", "s2", "--new-key"]);
    assert!(
        !o.status.success()
            && text(&o).contains("belong to the domains that publish by delegation"),
        "{}",
        text(&o)
    );
    // Another delegation zone: not yet.
    let o = env.run(&[
        "domain",
        "set",
        CUSTOMER,
        "--publish",
        "cname",
        "--delegate-zone",
        "example.com",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    // Keys of a delegated domain come by rotation only.
    let o = env.run(&["key", "generate", CUSTOMER]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("publishes by delegation") && text(&o).contains("rotate"),
        "{}",
        text(&o)
    );
    // Back to direct before its key ever signed: the pending key is
    // dropped and its target removed from the delegation zone.
    assert_eq!(env.named.dig_txt(&target("s1")).len(), 1);
    let out = env.ok(&["domain", "set", CUSTOMER, "--publish", "direct"]);
    assert!(
        out.contains("pending key under selector s1 dropped"),
        "{out}"
    );
    assert!(env.named.dig_txt(&target("s1")).is_empty());
    // A global key under a slot's selector blocks a delegation.
    env.ok(&["enable", "--selector", "s1", "--new-key"]);
    let o = env.run(&[
        "domain",
        "set",
        CUSTOMER,
        "--publish",
        "cname",
        "--delegate-zone",
        ZONE,
    ]);
    assert!(
        !o.status.success() && text(&o).contains("the global key uses selector s1"),
        "{}",
        text(&o)
    );
    // The store remembers nothing of the delegation zone.
    let f = env.tmp.path().join("export.json");
    env.ok(&["export", f.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    assert_eq!(v["domains"][0]["delegate"], serde_json::Value::Null);
}
