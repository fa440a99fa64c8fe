//! The key lifecycle against real BIND, with `--at` moving time forward:
//! a rotation's pending record is served while the old key signs; the step
//! promotes it once every authoritative server serves it and
//! propagation-wait has passed, and retires the old key; past retire-after
//! the old record serves `p=` empty; past revoke-for it is gone and so is
//! the private key. Both publishing backends at once (a zone file and a
//! dynamic zone by RFC 2136), each stage checked with dig and the live
//! check. Also: a second authoritative server that withholds the record
//! holds the promotion back, and 50 kill -9 during rotations over 100
//! domains leave a consistent store and zone after each.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::{have_named, zone_file, Named};
use common::*;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

const DAY: u64 = 86_400;

struct Env {
    tmp: tempfile::TempDir,
    config: PathBuf,
    named: Named,
}

impl Env {
    /// BIND serving example.com from a file and dyn.example by dynamic
    /// update; dkimd publishes into both (TTL 300), asking BIND itself as
    /// the zones' only authoritative server.
    fn start() -> Env {
        let named = Named::start_file_and_dynamic();
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("dkimd.toml");
        std::fs::write(
            &config,
            named.dkimd_config(&tmp.path().join("state"), "", "ttl = 300"),
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
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.run(&a);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{a:?}: {e}: {}", text(&o)))
    }

    fn step(&self, t: u64) -> String {
        self.ok(&["rotate", "--step", "--at", &at(t)])
    }

    /// Every key of the store, from an export: (domain, selector, state, pem empty).
    fn keys(&self) -> Vec<(Option<String>, String, String, bool)> {
        self.keys_with_records()
            .into_iter()
            .map(|(d, s, st, e, _)| (d, s, st, e))
            .collect()
    }

    /// [`Env::keys`] with each key's public record.
    fn keys_with_records(&self) -> Vec<(Option<String>, String, String, bool, String)> {
        let f = self.tmp.path().join(format!("export-{}.json", now()));
        self.ok(&["export", f.to_str().unwrap()]);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        std::fs::remove_file(&f).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["domain"].as_str().map(str::to_string),
                    k["selector"].as_str().unwrap().to_string(),
                    k["state"].as_str().unwrap().to_string(),
                    k["pem"].as_str().unwrap_or("").is_empty(),
                    k["record"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn state(&self, selector: &str) -> String {
        self.keys()
            .into_iter()
            .find(|k| k.1 == selector)
            .map(|k| k.2)
            .unwrap_or_else(|| panic!("no key {selector}"))
    }

    /// The live check's (state, dns) of each key of a domain, by selector.
    fn live(&self, domain: &str) -> Vec<(String, String, String)> {
        let st = self.json(&["status"]);
        let d = st["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == domain)
            .unwrap_or_else(|| panic!("no {domain} in {st}"))
            .clone();
        d["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["selector"].as_str().unwrap().to_string(),
                    k["state"].as_str().unwrap().to_string(),
                    k["dns"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

#[test]
fn a_rotation_goes_pending_active_retired_revoked_deleted_in_both_backends() {
    if !have_named() {
        return;
    }
    let env = Env::start();
    let domains = ["shop.example.com", "mail.dyn.example"];
    // Two more, removed while their records are retired and revoked.
    for d in domains
        .iter()
        .chain(&["gone1.example.com", "gone2.dyn.example"])
    {
        env.ok(&["domain", "add", d]);
    }
    env.ok(&["enable", "--selector", "s1"]);
    let t0 = now();
    let old: Vec<String> = domains
        .iter()
        .map(|d| env.named.dig_txt(&format!("s1._domainkey.{d}"))[0].clone())
        .collect();

    // 1. Rotate: the pending record is served, the old key still signs.
    let out = env.ok(&["rotate", "--all", "--selector", "s2"]);
    assert!(
        out.contains("global key: new rsa key, 2048 bits, selector s2: pending"),
        "{out}"
    );
    for d in domains {
        for sel in ["s2", "s2-ed25519", "s1", "s1-ed25519"] {
            assert_eq!(
                env.named.dig_txt(&format!("{sel}._domainkey.{d}")).len(),
                1,
                "{sel} {d}"
            );
        }
        let live = env.live(d);
        assert!(
            live.contains(&("s2".into(), "pending".into(), "ok".into())),
            "{live:?}"
        );
        assert!(
            live.contains(&("s1".into(), "active".into(), "ok".into())),
            "{live:?}"
        );
    }
    assert_eq!(env.json(&["settings"])["selector"], "s1");
    let shown = env.json(&["key", "show", "shop.example.com"]);
    let signing: Vec<&str> = shown["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["selector"].as_str().unwrap())
        .collect();
    assert_eq!(signing, ["s1", "s1-ed25519"], "the old keys sign");
    // A rotation under way is not started twice.
    let out = env.ok(&["rotate", "--all"]);
    assert!(out.contains("under way already"), "{out}");

    // Served everywhere, but propagation-wait (the TTL, 300 s) has not
    // passed: not yet.
    let out = env.step(t0 + 60);
    assert!(out.contains("served everywhere since"), "{out}");
    assert_eq!(env.state("s2"), "pending");

    // 2. Step: the new keys are active, the old ones retired; both served.
    let t1 = t0 + 60 + 301;
    let out = env.step(t1);
    assert!(out.contains("global key: selector s2 signs now"), "{out}");
    assert_eq!(env.state("s2"), "active");
    assert_eq!(env.state("s2-ed25519"), "active");
    assert_eq!(env.state("s1"), "retired");
    assert_eq!(env.json(&["settings"])["selector"], "s2");
    for (i, d) in domains.iter().enumerate() {
        assert_eq!(
            env.named.dig_txt(&format!("s1._domainkey.{d}")),
            vec![old[i].clone()]
        );
        assert_eq!(env.named.dig_txt(&format!("s2._domainkey.{d}")).len(), 1);
        let live = env.live(d);
        assert!(
            live.contains(&("s2".into(), "active".into(), "ok".into())),
            "{live:?}"
        );
        assert!(
            live.contains(&("s1".into(), "retired".into(), "ok".into())),
            "{live:?}"
        );
    }
    // Removing a domain removes its retired key's record too.
    assert_eq!(
        env.named.dig_txt("s1._domainkey.gone1.example.com").len(),
        1
    );
    env.ok(&["domain", "remove", "gone1.example.com"]);
    for sel in ["s1", "s1-ed25519", "s2", "s2-ed25519"] {
        assert!(env
            .named
            .dig_txt(&format!("{sel}._domainkey.gone1.example.com"))
            .is_empty());
    }
    // Idempotent: the same step again changes nothing, and (as from cron
    // every few minutes) is not audited; the promoting one was.
    let audited = || {
        std::fs::read_to_string(env.tmp.path().join("state/audit.log"))
            .unwrap()
            .matches("\"action\":\"rotate step\"")
            .count()
    };
    let before = audited();
    assert!(before >= 1);
    let serial = env.named.serial("example.com");
    let out = env.step(t1);
    assert!(out.contains("nothing was due"), "{out}");
    assert_eq!(env.named.serial("example.com"), serial);
    assert_eq!(audited(), before, "an idle step is not audited");

    // 3a. Past retire-after (7 days): the old record serves p= empty.
    let t2 = t1 + 7 * DAY;
    let out = env.step(t2);
    assert!(out.contains("selector s1: revoked"), "{out}");
    for d in domains {
        let served = env.named.dig_txt(&format!("s1._domainkey.{d}"));
        assert_eq!(served.len(), 1, "{d}");
        assert_eq!(p_of(&served[0]), "", "{d}: {served:?}");
        assert!(served[0].contains("k=rsa"), "{served:?}");
        let live = env.live(d);
        assert!(
            live.contains(&("s1".into(), "revoked".into(), "ok".into())),
            "{live:?}"
        );
    }
    // Removing a domain removes its revoked key's record too.
    assert_eq!(
        p_of(&env.named.dig_txt("s1._domainkey.gone2.dyn.example")[0]),
        ""
    );
    env.ok(&["domain", "remove", "gone2.dyn.example"]);
    for sel in ["s1", "s1-ed25519", "s2", "s2-ed25519"] {
        assert!(env
            .named
            .dig_txt(&format!("{sel}._domainkey.gone2.dyn.example"))
            .is_empty());
    }
    // 3b. Past revoke-for (30 days): gone, and the private key with it.
    let out = env.step(t2 + 30 * DAY);
    assert!(
        out.contains("selector s1: deleted (private key destroyed)"),
        "{out}"
    );
    for d in domains {
        for sel in ["s1", "s1-ed25519"] {
            assert!(
                env.named
                    .dig_txt(&format!("{sel}._domainkey.{d}"))
                    .is_empty(),
                "{sel} {d}"
            );
        }
        let live = env.live(d);
        assert!(!live.iter().any(|k| k.0.starts_with("s1")), "{live:?}");
    }
    for k in env.keys() {
        if k.1.starts_with("s1") {
            assert_eq!(k.2, "deleted");
            assert!(k.3, "the private key of {} is still in the store", k.1);
        } else {
            assert_eq!(k.2, "active");
            assert!(!k.3);
        }
    }
    // Disable removes every record, whatever the keys' states.
    env.ok(&["disable"]);
    for d in domains {
        assert!(env.named.dig_txt(&format!("s2._domainkey.{d}")).is_empty());
    }
}

/// One of two authoritative servers does not serve the new record: the
/// key stays pending (and the old one signs) until it does.
#[test]
fn a_record_withheld_by_a_second_authoritative_server_holds_the_promotion() {
    if !have_named() {
        return;
    }
    let second = Named::start(&[("example.com", zone_file("example.com", 1, &[]))]);
    let env = Env::start();
    // Both servers are the zone's authoritative servers.
    let cfg = std::fs::read_to_string(&env.config).unwrap().replacen(
        &format!("authoritative = [\"{}\"]", env.named.addr()),
        &format!(
            "authoritative = [\"{}\", \"{}\"]",
            env.named.addr(),
            second.addr()
        ),
        1,
    );
    std::fs::write(&env.config, cfg).unwrap();
    env.ok(&["domain", "add", "example.com"]);
    env.ok(&["enable", "--selector", "w1", "--algorithms", "ed25519"]);
    env.ok(&["rotate", "--all", "--selector", "w2"]);
    let t0 = now();
    let out = env.step(t0 + 3600);
    assert!(out.contains("not served everywhere yet"), "{out}");
    assert!(
        out.contains(&format!("{}: missing", second.addr())),
        "the server that withholds it is named: {out}"
    );
    assert_eq!(env.state("w2-ed25519"), "pending");
    assert_eq!(env.state("w1-ed25519"), "active");
    // The second server catches up: served from then on, and promoted
    // propagation-wait later.
    std::fs::copy(
        env.named.zone_file("example.com"),
        second.zone_file("example.com"),
    )
    .unwrap();
    let r = std::process::Command::new(&second.rndc_reload("example.com")[0])
        .args(&second.rndc_reload("example.com")[1..])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(second.dig_txt("w2-ed25519._domainkey.example.com").len(), 1);
    let out = env.step(t0 + 3600);
    assert!(out.contains("served everywhere since"), "{out}");
    assert_eq!(env.state("w2-ed25519"), "pending");
    let out = env.step(t0 + 3600 + 301);
    assert!(out.contains("selector w2 signs now"), "{out}");
    assert_eq!(env.state("w2-ed25519"), "active");
    assert_eq!(env.state("w1-ed25519"), "retired");
}

/// 50 kill -9 at random points of rotations and steps over 100 domains
/// (RFC 2136): after each, the store opens, no owner has two active keys
/// of one algorithm, and DNS serves every active key's record; at the
/// end the steps finish the work.
#[test]
fn fifty_kills_during_rotations_leave_store_and_zone_consistent() {
    if !have_named() {
        return;
    }
    let env = Env::start();
    for i in 0..100 {
        env.ok(&["domain", "add", &format!("d{i}.dyn.example")]);
    }
    env.ok(&["enable", "--selector", "k0"]);
    let mut seed: u64 = 0x0107_a7e5_eed5;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut t = now();
    let check = |round: usize, what: &[String]| {
        let st = env.run(&["--json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&st.stdout)
            .unwrap_or_else(|e| panic!("round {round} ({what:?}): status: {e}: {}", text(&st)));
        let mut active: Vec<(String, String)> = Vec::new();
        for d in v["domains"].as_array().unwrap() {
            for k in d["keys"].as_array().unwrap() {
                if k["state"] == "active" {
                    assert_eq!(
                        k["dns"], "ok",
                        "round {round} ({what:?}): an active key without its record: {}: {k}",
                        d["domain"]
                    );
                    active.push((
                        d["domain"].as_str().unwrap().into(),
                        k["algorithm"].as_str().unwrap().into(),
                    ));
                }
            }
        }
        let n = active.len();
        active.sort();
        active.dedup();
        assert_eq!(
            n,
            active.len(),
            "round {round}: two active keys of one algorithm"
        );
        assert_eq!(
            n, 200,
            "round {round}: every domain signs with one key of each algorithm"
        );
    };
    for round in 0..50 {
        let args: Vec<String> = if rnd(3) == 0 {
            vec!["rotate".into(), "--all".into()]
        } else {
            t += [60, 400, 3 * DAY, 8 * DAY][rnd(4) as usize];
            vec!["rotate".into(), "--step".into(), "--at".into(), at(t)]
        };
        run_killed(&env.config, &args, Duration::from_millis(20 + rnd(800)));
        check(round, &args);
    }
    // Finish: steps far enough apart promote, revoke and delete everything due.
    for _ in 0..4 {
        t += 40 * DAY;
        env.step(t);
    }
    check(50, &[]);
    let keys = env.keys();
    assert!(
        keys.iter().all(|k| k.2 == "active" || k.2 == "deleted"),
        "{keys:?}"
    );
    assert!(keys.iter().filter(|k| k.2 == "deleted").all(|k| k.3));
    // No deleted key's record is served any more (a selector whose record
    // is gone may be taken again by a later rotation, with another key).
    for k in env.keys_with_records().iter().filter(|k| k.2 == "deleted") {
        for d in ["d7.dyn.example", "d63.dyn.example"] {
            let served = env.named.dig_txt(&format!("{}._domainkey.{d}", k.1));
            assert!(
                !served.contains(&k.4),
                "{} is deleted but its record is still served at {d}",
                k.1
            );
        }
    }
}
