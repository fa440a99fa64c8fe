//! Publishing through PowerDNS Authoritative's HTTP API, against a real
//! pdns_server (SQLite backend) whose zones were loaded with pdnsutil:
//! enable, stale repair, rename, disable and a full rotation, each checked
//! with dig against that server; serials that move in Native and Master
//! zones; and the errors (wrong key, no such zone, a secondary zone, a key
//! file others can read, nothing listening), each with nothing published.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::pdns::{have_pdns, Pdns, PdnsZone};
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

const DAY: u64 = 86_400;

struct Env {
    tmp: tempfile::TempDir,
    config: PathBuf,
    pdns: Pdns,
}

fn zones() -> Vec<PdnsZone<'static>> {
    vec![
        PdnsZone {
            name: "native.example",
            kind: "NATIVE",
            soa_edit_api: "DEFAULT",
        },
        PdnsZone {
            name: "master.example",
            kind: "MASTER",
            soa_edit_api: "DEFAULT",
        },
        PdnsZone {
            name: "plain.example",
            kind: "MASTER",
            soa_edit_api: "",
        },
        PdnsZone {
            name: "copy.example",
            kind: "SLAVE",
            soa_edit_api: "",
        },
    ]
}

impl Env {
    /// pdns_server with [`zones`]; dkimd publishing each through the API
    /// (and `missing.example`, which PowerDNS does not have), with
    /// `extra` lines in each zone's section.
    fn start(extra: &str) -> Env {
        let pdns = Pdns::start(&zones());
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("dkimd.toml");
        let mut text = format!(
            "state_dir = \"{}\"\n\n[dns]\nnameservers = [\"{}\"]\ntimeout = 2\npropagation_timeout = 15\n\n",
            tmp.path().join("state").display(),
            pdns.addr()
        );
        for z in [
            "native.example",
            "master.example",
            "plain.example",
            "copy.example",
            "missing.example",
        ] {
            text.push_str(&pdns.zone_section(z, extra));
        }
        std::fs::write(&config, text).unwrap();
        Env { tmp, config, pdns }
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

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.run(&a);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{a:?}: {e}: {}", text(&o)))
    }

    /// (record name, record) of each key of `domain` that the store says
    /// is published.
    fn records(&self, domain: &str) -> Vec<(String, String)> {
        self.json(&["key", "show", domain])["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["record_name"].as_str().unwrap().to_string(),
                    k["record"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The live check's dns verdict of every key of `domain`.
    fn live(&self, domain: &str) -> Vec<(String, String, String)> {
        let st = self.json(&["status"]);
        st["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == domain)
            .unwrap_or_else(|| panic!("no {domain} in {st}"))["keys"]
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
fn enable_repair_rename_disable_through_the_api() {
    if !have_pdns() {
        return;
    }
    let env = Env::start("");
    let native0 = env.pdns.serial("native.example");
    let master0 = env.pdns.serial("master.example");
    let plain0 = env.pdns.serial("plain.example");
    for d in [
        "shop.native.example",
        "mail.master.example",
        "plain.example",
    ] {
        env.ok(&["domain", "add", d]);
    }
    let out = env.ok(&["enable", "--selector", "k1"]);
    assert!(
        out.contains("k1._domainkey.shop.native.example: record added (powerdns http://127.0.0.1:"),
        "{out}"
    );
    // A Master zone without SOA-EDIT-API is published, with a warning
    // that its serial does not move.
    assert!(
        out.contains("zone plain.example has no SOA-EDIT-API in PowerDNS")
            && out.contains("pdnsutil set-meta plain.example SOA-EDIT-API DEFAULT"),
        "{out}"
    );
    for d in [
        "shop.native.example",
        "mail.master.example",
        "plain.example",
    ] {
        let recs = env.records(d);
        assert_eq!(recs.len(), 2, "{d}: {recs:?}");
        for (name, record) in recs {
            // RSA-2048 records are over 255 bytes: several strings.
            assert_eq!(env.pdns.dig_txt(&name), vec![record], "{name}");
        }
        for (sel, _, dns) in env.live(d) {
            assert_eq!(dns, "ok", "{d} {sel}");
        }
    }
    // The serial moved as SOA-EDIT-API says, in a Native and a Master
    // zone; without SOA-EDIT-API it stays.
    assert!(env.pdns.serial("native.example") > native0);
    assert!(env.pdns.serial("master.example") > master0);
    assert_eq!(env.pdns.serial("plain.example"), plain0);

    // Run again: nothing changes, and the serial stays.
    let native1 = env.pdns.serial("native.example");
    let out = env.ok(&["enable"]);
    assert!(
        out.contains("k1._domainkey.shop.native.example: already present"),
        "{out}"
    );
    assert_eq!(env.pdns.serial("native.example"), native1);

    // Stale records put beside ours behind dkimd's back are replaced.
    let name = "k1._domainkey.shop.native.example";
    let ours = env.pdns.dig_txt(name)[0].clone();
    env.pdns.put_txt(
        "native.example",
        name,
        &["\"v=DKIM1; k=rsa; p=STALE\"", "\"v=DKIM1; p=OLDER\""],
    );
    assert_eq!(env.pdns.dig_txt(name).len(), 2);
    let out = env.ok(&["enable"]);
    assert!(
        out.contains("k1._domainkey.shop.native.example: replaced 2 stale records"),
        "{out}"
    );
    assert_eq!(env.pdns.dig_txt(name), vec![ours.clone()]);
    // Ours and a stale one: one stale record replaced, ours counted apart.
    let quoted = ours
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ");
    env.pdns
        .put_txt("native.example", name, &[&quoted, "\"v=DKIM1; p=STALE\""]);
    let out = env.ok(&["enable"]);
    assert!(
        out.contains("k1._domainkey.shop.native.example: replaced a stale record"),
        "{out}"
    );
    assert_eq!(env.pdns.dig_txt(name), vec![ours]);

    // Rename: the new name's records are served, the old name's gone.
    let old = env.records("shop.native.example");
    env.ok(&[
        "domain",
        "rename",
        "shop.native.example",
        "store.native.example",
    ]);
    for (name, _) in &old {
        assert!(env.pdns.dig_txt(name).is_empty(), "{name} still served");
    }
    let new = env.records("store.native.example");
    assert_eq!(new.len(), 2);
    for (name, record) in new {
        assert!(name.ends_with("store.native.example"), "{name}");
        assert_eq!(env.pdns.dig_txt(&name), vec![record], "{name}");
    }

    // Disable: every record is gone.
    env.ok(&["disable"]);
    for d in [
        "store.native.example",
        "mail.master.example",
        "plain.example",
    ] {
        for sel in ["k1", "k1-ed25519"] {
            let n = format!("{sel}._domainkey.{d}");
            assert!(env.pdns.dig_txt(&n).is_empty(), "{n} still served");
        }
    }
    // The other records of the zones are untouched.
    assert_eq!(env.pdns.dig("ns1.native.example", "A").trim(), "127.0.0.1");
}

#[test]
fn a_full_rotation_through_the_api() {
    if !have_pdns() {
        return;
    }
    let env = Env::start("");
    let d = "shop.native.example";
    env.ok(&["domain", "add", d]);
    // Enough domains that the batch reads the whole zone with one GET
    // (a few names are read one filtered GET each).
    for i in 0..30 {
        env.ok(&["domain", "add", &format!("d{i}.native.example")]);
    }
    env.ok(&["enable", "--selector", "s1"]);
    for i in 0..30 {
        for sel in ["s1", "s1-ed25519"] {
            assert_eq!(
                env.pdns
                    .dig_txt(&format!("{sel}._domainkey.d{i}.native.example"))
                    .len(),
                1,
                "d{i} {sel}"
            );
        }
    }
    let t0 = now();
    let old = env.pdns.dig_txt(&format!("s1._domainkey.{d}"));
    assert_eq!(old.len(), 1);

    // Rotate: the pending record is served beside the active one.
    let out = env.ok(&["rotate", "--all", "--selector", "s2"]);
    assert!(out.contains("selector s2: pending"), "{out}");
    for sel in ["s1", "s1-ed25519", "s2", "s2-ed25519"] {
        assert_eq!(
            env.pdns.dig_txt(&format!("{sel}._domainkey.{d}")).len(),
            1,
            "{sel}"
        );
    }
    let live = env.live(d);
    assert!(
        live.contains(&("s2".into(), "pending".into(), "ok".into())),
        "{live:?}"
    );

    // Past propagation-wait (the TTL, 300 s): s2 signs, s1 is retired and
    // still served.
    // Served everywhere, but propagation-wait has not passed: not yet.
    let out = env.ok(&["rotate", "--step", "--at", &at(t0 + 60)]);
    assert!(out.contains("served everywhere since"), "{out}");
    let t1 = t0 + 60 + 301;
    let out = env.ok(&["rotate", "--step", "--at", &at(t1)]);
    assert!(out.contains("selector s2 signs now"), "{out}");
    assert_eq!(env.pdns.dig_txt(&format!("s1._domainkey.{d}")), old);
    let live = env.live(d);
    assert!(
        live.contains(&("s2".into(), "active".into(), "ok".into()))
            && live.contains(&("s1".into(), "retired".into(), "ok".into())),
        "{live:?}"
    );

    // Past retire-after (7 days): s1 serves an empty p=.
    let t2 = t1 + 7 * DAY;
    let out = env.ok(&["rotate", "--step", "--at", &at(t2)]);
    assert!(out.contains("selector s1: revoked"), "{out}");
    let served = env.pdns.dig_txt(&format!("s1._domainkey.{d}"));
    assert_eq!(served.len(), 1);
    assert_eq!(p_of(&served[0]), "", "{served:?}");

    // Past revoke-for (30 days): gone from DNS, the private key destroyed.
    let out = env.ok(&["rotate", "--step", "--at", &at(t2 + 30 * DAY)]);
    assert!(
        out.contains("selector s1: deleted (private key destroyed)"),
        "{out}"
    );
    for sel in ["s1", "s1-ed25519"] {
        assert!(env
            .pdns
            .dig_txt(&format!("{sel}._domainkey.{d}"))
            .is_empty());
    }
    for sel in ["s2", "s2-ed25519"] {
        assert_eq!(
            env.pdns.dig_txt(&format!("{sel}._domainkey.{d}")).len(),
            1,
            "{sel}"
        );
    }
}

#[test]
fn errors_name_what_to_check_and_publish_nothing() {
    if !have_pdns() {
        return;
    }
    let env = Env::start("");
    let serial = env.pdns.serial("native.example");

    // A wrong key: PowerDNS's 401, and what the file must hold.
    std::fs::write(&env.pdns.key_file, "not-the-key\n").unwrap();
    env.ok(&["domain", "add", "shop.native.example"]);
    let o = env.run(&["enable", "--selector", "k1"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("refused the API key (401") && t.contains("api-key of pdns.conf"),
        "{t}"
    );
    assert!(env
        .pdns
        .dig_txt("k1._domainkey.shop.native.example")
        .is_empty());
    assert_eq!(env.pdns.serial("native.example"), serial);

    // A key file that others can read is refused before any request.
    std::fs::write(&env.pdns.key_file, format!("{}\n", common::pdns::API_KEY)).unwrap();
    std::fs::set_permissions(&env.pdns.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let t = text(&env.run(&["enable"]));
    assert!(
        t.contains("has mode 0644") && t.contains("chmod 600"),
        "{t}"
    );
    std::fs::set_permissions(&env.pdns.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(env
        .pdns
        .dig_txt("k1._domainkey.shop.native.example")
        .is_empty());

    // Now it works.
    let out = env.ok(&["enable"]);
    assert!(out.contains("record added"), "{out}");
    assert_eq!(
        env.pdns.dig_txt("k1._domainkey.shop.native.example").len(),
        1
    );

    // A zone PowerDNS does not have: its 404, and what to correct.
    let t = text(&env.run(&["domain", "add", "missing.example"]));
    assert!(
        t.contains("has no zone missing.example. on server \"localhost\"")
            && t.contains("server_id"),
        "{t}"
    );

    // A secondary zone is refused: its records come from its primary.
    env.run(&["domain", "remove", "missing.example"]);
    let t = text(&env.run(&["domain", "add", "copy.example"]));
    assert!(
        t.contains("zone copy.example is a Slave zone in PowerDNS") && t.contains("primary"),
        "{t}"
    );
    env.run(&["domain", "remove", "copy.example"]);

    // A change PowerDNS rejects comes back in its own words: a CNAME at
    // the record's name (a customer's delegation, say) conflicts with TXT.
    let (status, body) = env.pdns.api(
        "PATCH",
        &env.pdns.zone_path("native.example"),
        Some(
            &serde_json::json!({"rrsets": [{"name": "k1._domainkey.cname.native.example.", "type": "CNAME", "ttl": 300, "changetype": "REPLACE", "records": [{"content": "elsewhere.example.", "disabled": false}]}]})
                .to_string(),
        ),
    );
    assert_eq!(status, 204, "{body}");
    let t = text(&env.run(&["domain", "add", "cname.native.example"]));
    assert!(
        t.contains("k1._domainkey.cname.native.example: PowerDNS at")
            && t.contains("refused to change the zone (422: RRset k1._domainkey.cname.native.example. IN TXT: Conflicts with pre-existing RRset)")
            && t.contains("(a CNAME?)"),
        "{t}"
    );
    // The other record of the batch, which PowerDNS had no quarrel with,
    // is made.
    assert!(
        t.contains("k1-ed25519._domainkey.cname.native.example: record added"),
        "{t}"
    );
    assert_eq!(
        env.pdns
            .dig("k1._domainkey.cname.native.example", "CNAME")
            .trim(),
        "elsewhere.example."
    );
    assert_eq!(
        env.pdns
            .dig_txt("k1-ed25519._domainkey.cname.native.example")
            .len(),
        1
    );
    env.ok(&["domain", "remove", "cname.native.example"]);

    // Nothing listening: the change waits for a retry, and says so.
    let dead = free_port();
    let text_cfg = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&env.pdns.api_url(), &format!("http://127.0.0.1:{dead}"));
    std::fs::write(&env.config, text_cfg).unwrap();
    let t = text(&env.run(&["domain", "add", "late.master.example"]));
    assert!(
        t.contains(&format!("cannot connect to http://127.0.0.1:{dead}")),
        "{t}"
    );
    assert!(env
        .pdns
        .dig_txt("k1._domainkey.late.master.example")
        .is_empty());
    let _ = &env.tmp;
}

#[test]
fn https_with_the_zones_ca_file() {
    if !have_pdns() {
        return;
    }
    let env = Env::start("");
    let front = env.pdns.tls_front();
    let url = format!("https://127.0.0.1:{}", front.port);
    let configure = |ca: Option<&std::path::Path>| {
        let mut text = format!(
            "state_dir = \"{}\"\n\n[dns]\nnameservers = [\"{}\"]\ntimeout = 2\npropagation_timeout = 15\n\n",
            env.tmp.path().join("state").display(),
            env.pdns.addr()
        );
        let extra = ca.map_or(String::new(), |c| format!("ca_file = \"{}\"", c.display()));
        text.push_str(
            &env.pdns
                .zone_section("native.example", &extra)
                .replace(&env.pdns.api_url(), &url),
        );
        std::fs::write(&env.config, text).unwrap();
    };
    // A CA that did not sign the server's certificate: refused, nothing
    // published.
    configure(Some(&front.other_ca_file));
    env.ok(&["domain", "add", "shop.native.example"]);
    let t = text(&env.run(&["enable", "--selector", "k1"]));
    assert!(
        t.contains(&format!("TLS with {url}: invalid peer certificate"))
            && t.contains(&format!(
                "is not one that zone native.example's ca_file {} vouches for",
                front.other_ca_file.display()
            )),
        "{t}"
    );
    // Without ca_file, the system's CAs do not know the test CA either.
    configure(None);
    let t = text(&env.run(&["enable"]));
    assert!(
        t.contains(&format!("TLS with {url}")) && t.contains("the system's CA certificates"),
        "{t}"
    );
    assert!(env
        .pdns
        .dig_txt("k1._domainkey.shop.native.example")
        .is_empty());
    // The right CA: published over https.
    configure(Some(&front.ca_file));
    let out = env.ok(&["enable"]);
    assert!(
        out.contains(&format!(
            "k1._domainkey.shop.native.example: record added (powerdns {url}"
        )),
        "{out}"
    );
    for (name, record) in env.records("shop.native.example") {
        assert_eq!(env.pdns.dig_txt(&name), vec![record], "{name}");
    }
}
