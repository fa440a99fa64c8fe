//! The manager over an in-memory store, a fixed clock and a publisher that
//! records what it is asked to do: no DNS, no subprocess.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clock::FixedClock;
use crate::config::Backend;
use crate::error::{Error, Field};
use crate::model::settings::{Override, SettingName};
use crate::publish::{Outcome, PublishEnv, Publisher, Publishers};
use std::sync::{Arc, Mutex};

/// 2026-12-01T21:03:43Z.
const DEC_1: u64 = 1_796_159_023;

/// What the recording publisher was asked, in order: `set NAME VALUE` or
/// `remove NAME`.
#[derive(Default)]
struct Calls {
    seen: Mutex<Vec<String>>,
    /// Names whose server "does not answer".
    down: Mutex<Vec<String>>,
    /// How many times the publisher was asked at all.
    asked: Mutex<usize>,
}

struct RecordingPublisher(Arc<Calls>);

impl Publisher for RecordingPublisher {
    fn backend(&self) -> Backend {
        Backend::Rfc2136
    }
    fn target(&self) -> String {
        "test server".into()
    }
    fn set(&self, name: &str, value: &str) -> crate::Result<Outcome> {
        *self.0.asked.lock().unwrap() += 1;
        if self
            .0
            .down
            .lock()
            .unwrap()
            .iter()
            .any(|d| d == name || d == "*")
        {
            return Err(Error::Unreachable("test server did not answer".into()));
        }
        self.0
            .seen
            .lock()
            .unwrap()
            .push(format!("set {name} {value}"));
        Ok(Outcome::Added)
    }
    fn remove(&self, name: &str) -> crate::Result<Outcome> {
        self.0.seen.lock().unwrap().push(format!("remove {name}"));
        Ok(Outcome::Removed(1))
    }
}

struct Recording(Arc<Calls>);

impl Publishers for Recording {
    fn for_domain(
        &self,
        _cfg: &Config,
        _domain: &dkim::DomainName,
        _env: &PublishEnv,
    ) -> crate::Result<Box<dyn Publisher>> {
        Ok(Box::new(RecordingPublisher(self.0.clone())))
    }
}

struct Setup {
    m: Manager,
    calls: Arc<Calls>,
    sink: Arc<crate::steps::Recording>,
    clock: FixedClock,
    _tmp: tempfile::TempDir,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        state_dir: tmp.path().join("state"),
        ..Config::default()
    };
    let store = crate::store::in_memory(tmp.path().join("audit.log")).unwrap();
    let calls = Arc::new(Calls::default());
    let sink = Arc::new(crate::steps::Recording::default());
    let clock = FixedClock::at(DEC_1);
    let m = Manager::new(cfg, store, Steps::to(sink.clone()), Arc::new(clock.clone()))
        .with_publishers(Arc::new(Recording(calls.clone())));
    Setup {
        m,
        calls,
        sink,
        clock,
        _tmp: tmp,
    }
}

fn ed25519_only() -> EnableOptions {
    EnableOptions {
        algorithms: Some(vec![KeyAlgorithm::Ed25519]),
        ..EnableOptions::default()
    }
}

#[test]
fn the_default_selector_is_this_year_and_month_by_the_injected_clock() {
    let mut s = setup();
    s.m.domain_add("example.com", true, true, Override::Default)
        .unwrap();
    s.m.enable(&EnableOptions {
        algorithms: Some(vec![KeyAlgorithm::Rsa, KeyAlgorithm::Ed25519]),
        ..EnableOptions::default()
    })
    .unwrap();
    let st = s.m.load().unwrap();
    assert_eq!(st.settings.selector, "202612");
    let mut selectors: Vec<&str> = st.keys.iter().map(|k| k.selector.as_str()).collect();
    selectors.sort_unstable();
    assert_eq!(selectors, ["202612", "202612-ed25519"]);
    let seen = s.calls.seen.lock().unwrap().clone();
    assert!(seen
        .iter()
        .any(|c| c.starts_with("set 202612._domainkey.example.com v=DKIM1; k=rsa; p=")));
    assert!(
        seen.iter()
            .any(|c| c
                .starts_with("set 202612-ed25519._domainkey.example.com v=DKIM1; k=ed25519; p="))
    );
    // The publication time is the clock's.
    assert!(st.records.iter().all(|r| r.published == DEC_1 as i64));

    // A month later, a new key gets the new month's selector.
    s.clock.advance(31 * 86_400);
    assert_eq!(s.m.default_selector(), "202701");
}

#[test]
fn steps_say_what_happened_in_order() {
    let mut s = setup();
    s.m.enable(&ed25519_only()).unwrap();
    s.m.domain_add("example.com", true, true, Override::Default)
        .unwrap();
    let lines = s.sink.lines();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("Enabling DKIM signing with selector 202612")
    );
    assert!(lines.iter().any(|l| l
        == "  example.com: added (dns on, mail on, dkim default); signs: yes (rule dns-and-mail: dns on, mail on)"));
    assert!(
        lines.iter().any(|l| l
            == "  example.com: 202612-ed25519._domainkey.example.com: record added (rfc2136 test server)"),
        "{lines:#?}"
    );
    assert_eq!(s.m.out.failures, 0);
}

#[test]
fn disable_removes_every_record_it_published() {
    let mut s = setup();
    s.m.enable(&ed25519_only()).unwrap();
    s.m.domain_add("a.example", true, true, Override::Default)
        .unwrap();
    s.m.domain_add("b.example", true, true, Override::Default)
        .unwrap();
    s.m.disable(false).unwrap();
    let seen = s.calls.seen.lock().unwrap().clone();
    for d in ["a.example", "b.example"] {
        assert!(seen.contains(&format!("remove 202612-ed25519._domainkey.{d}")));
    }
    let st = s.m.load().unwrap();
    assert!(st.records.is_empty(), "{:?}", st.records);
    assert!(!st.settings.signing);
    assert_eq!(st.keys.len(), 1, "keys are kept without --purge-keys");
}

#[test]
fn validation_errors_name_their_field() {
    let mut s = setup();
    let e =
        s.m.domain_add("not a domain", true, true, Override::Default)
            .unwrap_err();
    assert_eq!(e.field().map(|f| f.0), Some(Field::Domain));
    s.m.domain_add("a.example", true, true, Override::Default)
        .unwrap();
    s.m.domain_add("b.example", true, true, Override::Default)
        .unwrap();
    let e = s.m.domain_rename("a.example", "b.example").unwrap_err();
    assert_eq!(e.field().map(|f| f.0), Some(Field::NewName));
    let e =
        s.m.enable(&EnableOptions {
            selector: Some("bad selector".into()),
            ..ed25519_only()
        })
        .unwrap_err();
    assert_eq!(e.field().map(|f| f.0), Some(Field::Selector));
    let e =
        s.m.enable(&EnableOptions {
            rsa_bits: Some(1024),
            ..EnableOptions::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("2048, 3072 or 4096"), "{e}");
    let e =
        s.m.set_settings(&[(SettingName::Verify, "maybe")])
            .unwrap_err();
    assert_eq!(e.field().map(|f| f.0), Some(Field::SettingValue));
    assert!(matches!(
        s.m.domain_remove("nowhere.example").unwrap_err().root(),
        Error::NotFound(_)
    ));
    // Nothing of that changed the store.
    let st = s.m.load().unwrap();
    assert_eq!(st.domains.len(), 2);
    assert!(!st.settings.signing);
}

#[test]
fn a_server_that_does_not_answer_is_not_asked_again_in_the_same_run() {
    let mut s = setup();
    s.calls
        .down
        .lock()
        .unwrap()
        .push("202612-ed25519._domainkey.a.example".into());
    s.m.domain_add("a.example", true, true, Override::Default)
        .unwrap();
    s.m.domain_add("b.example", true, true, Override::Default)
        .unwrap();
    s.m.enable(&ed25519_only()).unwrap();
    let lines = s.sink.lines();
    assert!(
        lines.iter().any(|l| l.contains("b.example: failed: 202612-ed25519._domainkey.b.example: not tried: test server did not answer earlier in this run")),
        "{lines:#?}"
    );
    assert!(s.m.out.failures >= 2);
    assert!(s.calls.seen.lock().unwrap().is_empty());
}

/// A regression test: the records of one domain were each tried (and each
/// waited the full timeout for) when the first did not answer.
#[test]
fn a_domain_s_other_records_are_not_tried_after_the_first_does_not_answer() {
    let mut s = setup();
    s.m.domain_add("example.com", true, true, Override::Default)
        .unwrap();
    s.calls.down.lock().unwrap().push("*".into());
    s.m.enable(&EnableOptions {
        algorithms: Some(vec![KeyAlgorithm::Rsa, KeyAlgorithm::Ed25519]),
        ..EnableOptions::default()
    })
    .unwrap();
    assert_eq!(*s.calls.asked.lock().unwrap(), 1, "{:#?}", s.sink.lines());
    let lines = s.sink.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("not tried: test server did not answer earlier in this run")),
        "{lines:#?}"
    );
    // One summary line for the domain, after its records.
    let summary: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("signs, but 2 of its records are not published"))
        .collect();
    assert_eq!(summary.len(), 1, "{lines:#?}");
}

#[test]
fn own_keys_keep_the_selector_they_are_published_under() {
    let mut s = setup();
    s.m.enable(&ed25519_only()).unwrap();
    s.m.domain_add("example.com", true, true, Override::Default)
        .unwrap();
    let pem = dkim::SigningKey::generate_ed25519()
        .unwrap()
        .to_pem()
        .unwrap();
    s.m.key_import_pem("example.com", &pem, Some("legacy"), false)
        .unwrap();
    let st = s.m.load().unwrap();
    let own: Vec<&str> = st
        .keys
        .iter()
        .filter(|k| k.domain.as_deref() == Some("example.com"))
        .map(|k| k.selector.as_str())
        .collect();
    assert_eq!(own, ["legacy"]);
    let seen = s.calls.seen.lock().unwrap().clone();
    assert!(seen
        .iter()
        .any(|c| c.starts_with("set legacy._domainkey.example.com ")));
    assert!(seen.contains(&"remove 202612-ed25519._domainkey.example.com".to_string()));
    let e =
        s.m.key_import_pem("example.com", "not a key", None, false)
            .unwrap_err();
    assert_eq!(e.field().map(|f| f.0), Some(Field::Key));
}
