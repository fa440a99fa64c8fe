//! The `provider` backend's contract with Cloudflare's API v4 and
//! DigitalOcean's API v2, each tested against a local stand-in that checks
//! every request against the provider's documentation (see
//! common/cloudflare.rs and common/digitalocean.rs for the facts and their
//! sources): dkimd reaches it through HTTPS_PROXY and trusts its CA
//! through SSL_CERT_FILE, as it would reach api.cloudflare.com. Publishing,
//! stale repair (the new record made before the stale one goes), disable;
//! then a bad token, a zone the account does not have, a rate limit and a
//! credentials file others can read, each with a clear error and nothing
//! half-done.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::cloudflare::{unquote, FakeCloudflare};
use common::digitalocean::FakeDigitalOcean;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

const TOKEN: &str = "test-token-0123456789abcdef0123456789";

/// What the tests need of a provider's stand-in.
trait Fake {
    const PROVIDER: &'static str;
    fn start(token: &str, zones: &[&str]) -> Self;
    fn env(&self) -> Vec<(String, String)>;
    /// The TXT values served at `name`, strings joined.
    fn served(&self, name: &str) -> Vec<String>;
    fn records(&self) -> usize;
    /// Adds a TXT record behind dkimd's back.
    fn add(&self, zone: &str, name: &str, value: &str);
    /// Sets every TXT record at `name` to `value`.
    fn rewrite(&self, name: &str, value: &str);
    /// Adds stale records as others leave them: twice the same one, and
    /// (where the provider keeps content as written) one not quoted.
    fn add_untidy(&self, zone: &str, name: &str);
    fn rate_limit(&self, n: u32);
    fn log(&self) -> Vec<String>;
    fn clear_log(&self);
    fn violations(&self) -> Vec<String>;
}

impl Fake for FakeCloudflare {
    const PROVIDER: &'static str = "cloudflare";
    fn start(token: &str, zones: &[&str]) -> Self {
        FakeCloudflare::start(token, zones)
    }
    fn env(&self) -> Vec<(String, String)> {
        FakeCloudflare::env(self)
    }
    fn served(&self, name: &str) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.txt_at(name).iter().map(|c| unquote(c)).collect()
    }
    fn records(&self) -> usize {
        self.state.lock().unwrap().records.len()
    }
    fn add(&self, zone: &str, name: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        let zid = s.zones[zone].clone();
        let id = format!("{:032x}", 0xf000 + s.records.len());
        s.records.push(common::cloudflare::Record {
            id,
            zone_id: zid,
            name: name.into(),
            rtype: "TXT".into(),
            content: format!("\"{value}\""),
            ttl: 300,
        });
    }
    fn rewrite(&self, name: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        for r in s.records.iter_mut().filter(|r| r.name == name) {
            r.content = format!("\"{value}\"");
        }
    }
    fn add_untidy(&self, zone: &str, name: &str) {
        self.add(zone, name, "v=DKIM1; k=rsa; p=TWICE");
        self.add(zone, name, "v=DKIM1; k=rsa; p=TWICE");
        // Entered without quotes (as a dashboard may keep it).
        let mut s = self.state.lock().unwrap();
        let zid = s.zones[zone].clone();
        s.records.push(common::cloudflare::Record {
            id: "e".repeat(32),
            // (distinct from the ids above)
            zone_id: zid,
            name: name.into(),
            rtype: "TXT".into(),
            content: "v=DKIM1; k=rsa; p=UNQUOTED".into(),
            ttl: 300,
        });
    }
    fn rate_limit(&self, n: u32) {
        self.state.lock().unwrap().rate_limit_next = n;
    }
    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
    fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
    fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

impl Fake for FakeDigitalOcean {
    const PROVIDER: &'static str = "digitalocean";
    fn start(token: &str, zones: &[&str]) -> Self {
        FakeDigitalOcean::start(token, zones)
    }
    fn env(&self) -> Vec<(String, String)> {
        FakeDigitalOcean::env(self)
    }
    fn served(&self, name: &str) -> Vec<String> {
        self.state.lock().unwrap().txt_at(name)
    }
    fn records(&self) -> usize {
        self.state.lock().unwrap().records.len()
    }
    fn add(&self, zone: &str, name: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        let rel = name.strip_suffix(&format!(".{zone}")).unwrap().to_string();
        let id = 500_000 + i64::try_from(s.records.len()).unwrap();
        s.records.push(common::digitalocean::Record {
            id,
            domain: zone.into(),
            name: rel,
            rtype: "TXT".into(),
            data: value.into(),
            ttl: 300,
        });
    }
    fn rewrite(&self, name: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        for r in s.records.iter_mut() {
            if format!("{}.{}", r.name, r.domain) == name {
                r.data = value.into();
            }
        }
    }
    fn add_untidy(&self, zone: &str, name: &str) {
        self.add(zone, name, "v=DKIM1; k=rsa; p=TWICE");
        self.add(zone, name, "v=DKIM1; k=rsa; p=TWICE");
    }
    fn rate_limit(&self, n: u32) {
        self.state.lock().unwrap().rate_limit_next = n;
    }
    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
    fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
    fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
}

struct Env<F: Fake> {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    token_file: PathBuf,
    fake: F,
}

impl<F: Fake> Env<F> {
    fn start() -> Env<F> {
        let fake = F::start(TOKEN, &["cf.example"]);
        let tmp = tempfile::tempdir().unwrap();
        let token_file = tmp.path().join("api.token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = tmp.path().join("dkimd.toml");
        let zone = |name: &str| {
            format!(
                "[[publish.zone]]\nname = \"{name}\"\nbackend = \"provider\"\nprovider = \"{}\"\ncredentials_file = \"{}\"\nttl = 300\n",
                F::PROVIDER,
                token_file.display()
            )
        };
        // No DNS server answers here: the live check is not what is tested.
        let dead = free_port();
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\n[dns]\nnameservers = [\"127.0.0.1:{dead}\"]\ntimeout = 1\n{}{}",
                tmp.path().join("state").display(),
                zone("cf.example"),
                zone("nozone.example"),
            ),
        )
        .unwrap();
        Env {
            _tmp: tmp,
            config,
            token_file,
            fake,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = dkimd();
        c.arg("--config").arg(&self.config).args(args);
        for (k, v) in self.fake.env() {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        text(&o)
    }

    /// (record name, record) of each key of `domain`.
    fn records(&self, domain: &str) -> Vec<(String, String)> {
        let o = self.run(&["--json", "key", "show", domain]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["keys"]
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

    fn no_violations(&self) {
        let v = self.fake.violations();
        assert!(
            v.is_empty(),
            "requests outside the provider's documented API: {v:?}\n{:?}",
            self.fake.log()
        );
    }
}

fn publish_repair_and_disable<F: Fake>() {
    let env = Env::<F>::start();
    env.ok(&["domain", "add", "shop.cf.example"]);
    let out = env.ok(&["enable", "--selector", "k1"]);
    assert!(
        out.contains(&format!(
            "k1._domainkey.shop.cf.example: record added (provider {} (zone cf.example))",
            F::PROVIDER
        )),
        "{out}"
    );
    let recs = env.records("shop.cf.example");
    assert_eq!(recs.len(), 2);
    for (name, record) in &recs {
        assert_eq!(env.fake.served(name), vec![record.clone()], "{name}");
    }
    env.no_violations();
    // Once more: nothing is sent but reads.
    let writes = |env: &Env<F>| {
        env.fake
            .log()
            .iter()
            .filter(|l| !l.starts_with("GET "))
            .count()
    };
    let before = writes(&env);
    let out = env.ok(&["enable"]);
    assert!(
        out.contains("k1._domainkey.shop.cf.example: already present"),
        "{out}"
    );
    assert_eq!(writes(&env), before);

    // A stale record beside ours: removed, ours kept.
    let (name, record) = recs[0].clone();
    env.fake.add("cf.example", &name, "v=DKIM1; k=rsa; p=STALE");
    let out = env.ok(&["enable"]);
    assert!(
        out.contains(&format!("{name}: replaced a stale record")),
        "{out}"
    );
    assert_eq!(env.fake.served(&name), vec![record.clone()]);
    // Only a stale record: ours is made before the stale one goes, so the
    // name is never without a record.
    env.fake.rewrite(&name, "v=DKIM1; k=rsa; p=OLD");
    env.fake.clear_log();
    let out = env.ok(&["enable"]);
    assert!(
        out.contains(&format!("{name}: replaced a stale record")),
        "{out}"
    );
    assert_eq!(env.fake.served(&name), vec![record.clone()]);
    let log = env.fake.log();
    let post = log.iter().position(|l| l.starts_with("POST ")).unwrap();
    let delete = log.iter().position(|l| l.starts_with("DELETE ")).unwrap();
    assert!(post < delete, "the new record first: {log:?}");
    env.no_violations();
    // Stale records as others leave them (twice the same; not quoted):
    // all gone, and said so only once they are.
    env.fake.add_untidy("cf.example", &name);
    let out = env.ok(&["enable"]);
    assert!(out.contains(&format!("{name}: replaced")), "{out}");
    assert_eq!(env.fake.served(&name), vec![record.clone()]);
    env.no_violations();

    // Disable: every record of ours is gone.
    env.ok(&["disable"]);
    for (name, _) in &recs {
        assert!(env.fake.served(name).is_empty(), "{name}");
    }
    env.no_violations();
}

/// `refused`: what the provider's refusal of a token says; `no_zone`: the
/// words for a zone the token cannot see.
fn failures_are_clear<F: Fake>(refused: &[&str], no_zone: &str) {
    let env = Env::<F>::start();
    env.ok(&["domain", "add", "shop.cf.example"]);

    // A token the provider refuses.
    std::fs::write(&env.token_file, "not-the-token\n").unwrap();
    let o = env.run(&["enable", "--selector", "k1"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&format!("{} refused the API token", F::PROVIDER))
            && refused.iter().all(|r| t.contains(r))
            && t.contains(&env.token_file.display().to_string()),
        "{t}"
    );
    assert_eq!(env.fake.records(), 0);

    // A credentials file others can read is refused before any request.
    std::fs::write(&env.token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&env.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.fake.clear_log();
    let t = text(&env.run(&["enable"]));
    assert!(
        t.contains("has mode 0644") && t.contains("chmod 600"),
        "{t}"
    );
    assert!(env.fake.log().is_empty());
    std::fs::set_permissions(&env.token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Rate limited past the retries: a clear error, the other record not
    // tried, nothing made.
    env.fake.rate_limit(100);
    let o = env.run(&["enable"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(&format!("{} is rate-limiting this account", F::PROVIDER)),
        "{t}"
    );
    assert!(t.contains("not tried"), "{t}");
    assert_eq!(env.fake.records(), 0);

    // The limit lifted, one enable publishes everything.
    env.fake.rate_limit(0);
    let out = env.ok(&["enable"]);
    assert!(out.contains("record added"), "{out}");
    assert_eq!(env.fake.records(), 2);

    // A zone the account does not have.
    let t = text(&env.run(&["domain", "add", "mail.nozone.example"]));
    assert!(t.contains(no_zone), "{t}");
    assert_eq!(env.fake.records(), 2);
    env.no_violations();
}

#[test]
fn cloudflare_publish_repair_and_disable_follow_the_documented_api() {
    publish_repair_and_disable::<FakeCloudflare>();
}

#[test]
fn cloudflare_failures_are_clear_and_leave_nothing_half_done() {
    // Cloudflare refuses a token with 403, code 10000.
    failures_are_clear::<FakeCloudflare>(
        &["HTTP 403", "Authentication error"],
        "cloudflare has no zone nozone.example for this token",
    );
}

#[test]
fn digitalocean_publish_repair_and_disable_follow_the_documented_api() {
    publish_repair_and_disable::<FakeDigitalOcean>();
}

#[test]
fn digitalocean_failures_are_clear_and_leave_nothing_half_done() {
    // DigitalOcean refuses a token with 401, and a domain it does not
    // hold with 404.
    failures_are_clear::<FakeDigitalOcean>(
        &["401"],
        "digitalocean knows no zone nozone.example for this token",
    );
}
