//! The `provider` backend's contract with Cloudflare's API v4, tested
//! against a local stand-in that checks each request against Cloudflare's
//! documentation (see common/cloudflare.rs for the facts and their
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

use common::cloudflare::{unquote, FakeCloudflare, Record};
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

const TOKEN: &str = "cf-test-token-0123456789abcdef0123456789";

struct Env {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    token_file: PathBuf,
    fake: FakeCloudflare,
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Env {
    fn start() -> Env {
        let fake = FakeCloudflare::start(TOKEN, &["cf.example"]);
        let tmp = tempfile::tempdir().unwrap();
        let token_file = tmp.path().join("cloudflare.token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = tmp.path().join("dkimd.toml");
        let zone = |name: &str| {
            format!(
                "[[publish.zone]]\nname = \"{name}\"\nbackend = \"provider\"\nprovider = \"cloudflare\"\ncredentials_file = \"{}\"\nttl = 300\n",
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

    /// What the fake serves at `name`, strings joined.
    fn served(&self, name: &str) -> Vec<String> {
        self.fake
            .state
            .lock()
            .unwrap()
            .txt_at(name)
            .iter()
            .map(|c| unquote(c))
            .collect()
    }

    fn no_violations(&self) {
        let s = self.fake.state.lock().unwrap();
        assert!(
            s.violations.is_empty(),
            "requests outside Cloudflare's documented API: {:?}\n{:?}",
            s.violations,
            s.log
        );
    }
}

#[test]
fn cloudflare_publish_repair_and_disable_follow_the_documented_api() {
    let env = Env::start();
    env.ok(&["domain", "add", "shop.cf.example"]);
    let out = env.ok(&["enable", "--selector", "k1"]);
    assert!(
        out.contains(
            "k1._domainkey.shop.cf.example: record added (provider cloudflare (zone cf.example))"
        ),
        "{out}"
    );
    let recs = env.records("shop.cf.example");
    assert_eq!(recs.len(), 2);
    for (name, record) in &recs {
        // A 2048-bit RSA record is over 255 bytes: Cloudflare is sent
        // quoted strings, which DNS serves joined.
        assert_eq!(env.served(name), vec![record.clone()], "{name}");
    }
    env.no_violations();
    // Once more: nothing is sent but reads.
    let writes = |env: &Env| {
        env.fake
            .state
            .lock()
            .unwrap()
            .log
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
    {
        let mut s = env.fake.state.lock().unwrap();
        let zid = s.zones["cf.example"].clone();
        s.records.push(Record {
            id: "f".repeat(32),
            zone_id: zid,
            name: name.clone(),
            rtype: "TXT".into(),
            content: "\"v=DKIM1; k=rsa; p=STALE\"".into(),
            ttl: 300,
        });
    }
    let out = env.ok(&["enable"]);
    assert!(
        out.contains(&format!("{name}: replaced a stale record")),
        "{out}"
    );
    assert_eq!(env.served(&name), vec![record.clone()]);
    // Only the stale record: ours is made before the stale one goes, so
    // the name is never without a record.
    {
        let mut s = env.fake.state.lock().unwrap();
        for r in s.records.iter_mut().filter(|r| r.name == name) {
            r.content = "\"v=DKIM1; k=rsa; p=OLD\"".into();
        }
        s.log.clear();
    }
    let out = env.ok(&["enable"]);
    assert!(
        out.contains(&format!("{name}: replaced a stale record")),
        "{out}"
    );
    assert_eq!(env.served(&name), vec![record]);
    let log = env.fake.state.lock().unwrap().log.clone();
    let post = log.iter().position(|l| l.starts_with("POST ")).unwrap();
    let delete = log.iter().position(|l| l.starts_with("DELETE ")).unwrap();
    assert!(post < delete, "the new record first: {log:?}");
    env.no_violations();

    // Disable: every record of ours is gone.
    env.ok(&["disable"]);
    for (name, _) in &recs {
        assert!(env.served(name).is_empty(), "{name}");
    }
    env.no_violations();
}

#[test]
fn cloudflare_failures_are_clear_and_leave_nothing_half_done() {
    let env = Env::start();
    env.ok(&["domain", "add", "shop.cf.example"]);

    // A token Cloudflare refuses.
    std::fs::write(&env.token_file, "not-the-token\n").unwrap();
    let o = env.run(&["enable", "--selector", "k1"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("cloudflare refused the API token")
            && t.contains("HTTP 403")
            && t.contains("Authentication error")
            && t.contains(&env.token_file.display().to_string()),
        "{t}"
    );
    assert!(env.fake.state.lock().unwrap().records.is_empty());

    // A credentials file others can read is refused before any request.
    std::fs::write(&env.token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&env.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.fake.state.lock().unwrap().log.clear();
    let t = text(&env.run(&["enable"]));
    assert!(
        t.contains("has mode 0644") && t.contains("chmod 600"),
        "{t}"
    );
    assert!(env.fake.state.lock().unwrap().log.is_empty());
    std::fs::set_permissions(&env.token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Rate limited past the retries: a clear error, the other record not
    // tried, nothing made.
    env.fake.state.lock().unwrap().rate_limit_next = 100;
    let o = env.run(&["enable"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("cloudflare is rate-limiting this account"),
        "{t}"
    );
    assert!(t.contains("not tried"), "{t}");
    assert!(env.fake.state.lock().unwrap().records.is_empty());

    // The limit lifted, one enable publishes everything.
    env.fake.state.lock().unwrap().rate_limit_next = 0;
    let out = env.ok(&["enable"]);
    assert!(out.contains("record added"), "{out}");
    assert_eq!(env.fake.state.lock().unwrap().records.len(), 2);

    // A zone the account does not have.
    let t = text(&env.run(&["domain", "add", "mail.nozone.example"]));
    assert!(
        t.contains("cloudflare has no zone nozone.example for this token"),
        "{t}"
    );
    assert_eq!(env.fake.state.lock().unwrap().records.len(), 2);
    env.no_violations();
}
