//! The manager over an in-memory store, a fixed clock and a publisher that
//! records what it is asked to do: no DNS, no subprocess.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clock::{Clock, FixedClock};
use crate::config::Backend;
use crate::error::{Error, Field};
use crate::model::settings::{Override, SettingName};
use crate::publish::{Outcome, PublishEnv, Publisher, Publishers};
use crate::store::{Change, KeyState, NewKey};
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
    // The global key's record stays for the overlap: not removed.
    assert!(!seen.contains(&"remove 202612-ed25519._domainkey.example.com".to_string()));
    let e =
        s.m.key_import_pem("example.com", "not a key", None, false)
            .unwrap_err();
    assert_eq!(e.field().map(|f| f.0), Some(Field::Key));
}

/// What the store remembers publishing at `name`.
fn record(s: &Setup, name: &str) -> Option<String> {
    s.m.load()
        .unwrap()
        .records
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.value.clone())
}

/// A setup with these domains, signing with Ed25519 only.
fn signing(domains: &[&str]) -> Setup {
    let mut s = setup();
    for d in domains {
        s.m.domain_add(d, true, true, Override::Default).unwrap();
    }
    s.m.enable(&ed25519_only()).unwrap();
    s
}

fn state_of(s: &Setup, selector: &str) -> KeyState {
    s.m.load()
        .unwrap()
        .keys
        .iter()
        .find(|k| k.selector == selector)
        .unwrap_or_else(|| panic!("no key {selector}"))
        .state
}

/// `enable --new-key` is a rotation: the new key is pending under a new
/// selector (this month's is taken), both records are published, and the
/// old key goes on signing; nothing that has signed is overwritten.
#[test]
fn a_new_key_is_pending_and_never_overwrites_a_record_that_signed() {
    let mut s = signing(&["example.com"]);
    // An explicit selector in use is refused, not overwritten.
    let e =
        s.m.enable(&EnableOptions {
            new_key: true,
            selector: Some("202612".into()),
            ..ed25519_only()
        })
        .unwrap_err();
    assert!(e.to_string().contains("selector 202612 is in use"), "{e}");
    s.m.enable(&EnableOptions {
        new_key: true,
        ..ed25519_only()
    })
    .unwrap();
    let st = s.m.load().unwrap();
    assert_eq!(state_of(&s, "202612-ed25519"), KeyState::Active);
    assert_eq!(state_of(&s, "202612-2-ed25519"), KeyState::Pending);
    assert_eq!(st.settings.selector, "202612", "the signing selector stays");
    assert_eq!(st.keys_for("example.com")[0].selector, "202612-ed25519");
    let names: Vec<&str> = st.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "202612-2-ed25519._domainkey.example.com",
            "202612-ed25519._domainkey.example.com"
        ]
    );
    // A second rotation while one is under way makes no third key, by
    // rotate or by --new-key.
    s.m.rotate(&RotateTarget::All, None, None).unwrap();
    assert_eq!(s.m.load().unwrap().keys.len(), 2);
    s.m.enable(&EnableOptions {
        new_key: true,
        ..ed25519_only()
    })
    .unwrap();
    assert_eq!(s.m.load().unwrap().keys.len(), 2);
    assert!(s
        .sink
        .lines()
        .iter()
        .any(|l| l.contains("a rotation of its ed25519 key is under way already")));
}

/// Retired keys keep their record for retire-after, are served revoked
/// (p= empty) for revoke-for, then lose it and their private key; the
/// public record stays for the audit. Each transition happens once.
#[test]
fn retired_keys_are_revoked_then_deleted_on_time() {
    let mut s = signing(&["example.com"]);
    s.m.key_generate("example.com", Some("own1")).unwrap();
    s.m.key_default("example.com").unwrap();
    let name = "own1-ed25519._domainkey.example.com";
    let value = |s: &Setup| record(s, name);
    assert_eq!(state_of(&s, "own1-ed25519"), KeyState::Retired);
    assert!(
        value(&s).unwrap().len() > 40,
        "the overlap keeps the record"
    );
    s.clock.advance(7 * 86_400 - 1);
    s.m.step().unwrap();
    assert_eq!(state_of(&s, "own1-ed25519"), KeyState::Retired);
    s.clock.advance(1);
    s.m.step().unwrap();
    assert_eq!(state_of(&s, "own1-ed25519"), KeyState::Revoked);
    assert_eq!(value(&s).as_deref(), Some("v=DKIM1; k=ed25519; p="));
    let calls = s.calls.seen.lock().unwrap().len();
    s.m.step().unwrap();
    assert_eq!(
        s.calls.seen.lock().unwrap().len(),
        calls,
        "a step with nothing due changes nothing in DNS"
    );
    s.clock.advance(30 * 86_400);
    s.m.step().unwrap();
    let st = s.m.load().unwrap();
    let k = st
        .keys
        .iter()
        .find(|k| k.selector == "own1-ed25519")
        .unwrap();
    assert_eq!(k.state, KeyState::Deleted);
    assert!(k.pem.is_empty(), "the private key is destroyed");
    assert!(k.record.starts_with("v=DKIM1; k=ed25519; p="));
    assert!(k.record.len() > 40, "the public key stays for the audit");
    assert_eq!(value(&s), None);
    assert!(s
        .calls
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|c| c == &format!("remove {name}")));
}

/// The store refuses a change list that would leave two active keys of
/// one owner and algorithm, or move a key back in its life.
#[test]
fn the_store_keeps_one_active_key_and_never_moves_a_key_back() {
    let mut s = signing(&["example.com"]);
    s.m.enable(&EnableOptions {
        new_key: true,
        ..ed25519_only()
    })
    .unwrap();
    let st = s.m.load().unwrap();
    let pending = st
        .keys
        .iter()
        .find(|k| k.state == KeyState::Pending)
        .unwrap();
    let e =
        s.m.store
            .apply(&[Change::KeyState(pending.id, KeyState::Active, 0)])
            .unwrap_err();
    assert!(e.to_string().contains("two active ed25519 keys"), "{e}");
    let active = st
        .keys
        .iter()
        .find(|k| k.state == KeyState::Active)
        .unwrap();
    s.m.store
        .apply(&[Change::KeyState(active.id, KeyState::Revoked, 0)])
        .unwrap();
    let e =
        s.m.store
            .apply(&[Change::KeyState(active.id, KeyState::Retired, 0)])
            .unwrap_err();
    assert!(e.to_string().contains("cannot become retired"), "{e}");
}

/// Rotating a domain that signs with the shared global key says how to
/// rotate that one instead.
#[test]
fn rotating_a_domain_on_the_global_key_says_what_to_do() {
    let mut s = setup();
    s.m.domain_add("example.com", true, true, Override::Default)
        .unwrap();
    let e =
        s.m.rotate(
            &RotateTarget::Domains(vec!["example.com".into()]),
            None,
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("signing is off"), "{e}");
    s.m.enable(&ed25519_only()).unwrap();
    let e =
        s.m.rotate(
            &RotateTarget::Domains(vec!["example.com".into()]),
            None,
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("dkimd rotate --all"), "{e}");
    s.m.key_generate("example.com", None).unwrap();
    s.m.rotate(
        &RotateTarget::Domains(vec!["example.com".into()]),
        None,
        None,
    )
    .unwrap();
    let st = s.m.load().unwrap();
    let own: Vec<(&str, KeyState)> = st
        .keys
        .iter()
        .filter(|k| k.domain.is_some())
        .map(|k| (k.selector.as_str(), k.state))
        .collect();
    assert_eq!(
        own,
        [
            ("202612-2-ed25519", KeyState::Active),
            ("202612-3-ed25519", KeyState::Pending)
        ]
    );
}

/// A global key an own key replaces at one domain keeps its record there
/// for retire-after, then serves it revoked for revoke-for, then loses it
/// there, while it goes on signing (and keeps its record) elsewhere.
#[test]
fn a_global_key_replaced_at_one_domain_keeps_an_overlap_there() {
    let mut s = signing(&["a.example", "b.example"]);
    s.m.key_generate("a.example", None).unwrap();
    let value = record;
    let at_a = "202612-ed25519._domainkey.a.example";
    let at_b = "202612-ed25519._domainkey.b.example";
    assert!(value(&s, at_a).unwrap().len() > 40, "kept at a.example");
    s.clock.advance(7 * 86_400);
    s.m.step().unwrap();
    assert_eq!(value(&s, at_a).as_deref(), Some("v=DKIM1; k=ed25519; p="));
    assert!(
        value(&s, at_b).unwrap().len() > 40,
        "still signs for b.example"
    );
    s.clock.advance(30 * 86_400);
    s.m.step().unwrap();
    assert_eq!(value(&s, at_a), None, "gone from a.example");
    assert!(value(&s, at_b).unwrap().len() > 40);
    assert_eq!(
        s.m.load().unwrap().keys_for("a.example")[0].selector,
        "202612-2-ed25519"
    );
}

/// A rotation of an algorithm no longer used, or of own keys the domain
/// gives up, is dropped: its pending keys are deleted and never sign.
#[test]
fn pending_keys_go_with_the_choice_that_made_them() {
    let mut s = setup();
    s.m.domain_add("example.com", true, true, Override::Default)
        .unwrap();
    s.m.enable(&EnableOptions {
        algorithms: Some(vec![KeyAlgorithm::Rsa, KeyAlgorithm::Ed25519]),
        ..EnableOptions::default()
    })
    .unwrap();
    s.m.rotate(&RotateTarget::All, None, None).unwrap();
    s.m.enable(&EnableOptions {
        algorithms: Some(vec![KeyAlgorithm::Rsa]),
        ..EnableOptions::default()
    })
    .unwrap();
    assert_eq!(state_of(&s, "202612-2-ed25519"), KeyState::Deleted);
    assert_eq!(state_of(&s, "202612-2"), KeyState::Pending);
    // Own keys: key default drops the domain's own rotation too.
    s.m.key_generate("example.com", Some("own")).unwrap();
    s.m.rotate(
        &RotateTarget::Domains(vec!["example.com".into()]),
        Some("own2"),
        None,
    )
    .unwrap();
    s.m.key_default("example.com").unwrap();
    assert_eq!(state_of(&s, "own2"), KeyState::Deleted);
    assert_eq!(state_of(&s, "own"), KeyState::Retired);
}

/// A named selector under which a record of the domain may still verify
/// mail is refused; the store refuses two rotations of one owner and
/// algorithm at once.
#[test]
fn selectors_in_use_and_concurrent_rotations_are_refused() {
    let mut s = signing(&["example.com"]);
    s.m.key_generate("example.com", Some("own")).unwrap();
    s.m.key_generate("example.com", Some("own2")).unwrap();
    assert_eq!(state_of(&s, "own-ed25519"), KeyState::Retired);
    let e = s.m.key_generate("example.com", Some("own")).unwrap_err();
    assert!(
        e.to_string().contains("selector own-ed25519 is in use"),
        "{e}"
    );
    // Two rotations started from the same state: the second is refused.
    s.m.rotate(&RotateTarget::All, Some("r1"), None).unwrap();
    let key = dkim::SigningKey::generate_ed25519().unwrap();
    let e =
        s.m.store
            .apply(&[Change::AddKey(
                NewKey::from_key(None, &key, "r2-ed25519".into(), KeyState::Pending, 0).unwrap(),
            )])
            .unwrap_err();
    assert!(e.to_string().contains("under way already"), "{e}");
}

/// The global key's overlap at a domain is counted from the domain's first
/// own key: a later own rotation does not bring the global record back.
#[test]
fn a_later_own_rotation_does_not_bring_the_global_record_back() {
    let mut s = signing(&["a.example"]);
    s.m.key_generate("a.example", Some("o1")).unwrap();
    let at_a = "202612-ed25519._domainkey.a.example";
    let has = |s: &Setup| record(s, at_a).is_some();
    s.clock.advance(40 * 86_400);
    s.m.step().unwrap();
    assert!(!has(&s), "gone after retire-after and revoke-for");
    s.m.rotate(
        &RotateTarget::Domains(vec!["a.example".into()]),
        Some("o2"),
        None,
    )
    .unwrap();
    s.clock.advance(86_400);
    // The recording publisher's records count as served only through DNS,
    // so the promotion itself is proven against BIND; here the store is
    // moved on as the step would.
    let st = s.m.load().unwrap();
    let (p, a) = (
        st.keys
            .iter()
            .find(|k| k.selector == "o2-ed25519")
            .unwrap()
            .id,
        st.keys
            .iter()
            .find(|k| k.selector == "o1-ed25519")
            .unwrap()
            .id,
    );
    let now = i64::try_from(s.clock.now()).unwrap();
    s.m.store
        .apply(&[
            Change::KeyState(a, KeyState::Retired, now),
            Change::KeyState(p, KeyState::Active, now),
        ])
        .unwrap();
    s.m.step().unwrap();
    assert!(!has(&s), "the global record stays gone");
}

/// A key imported once is never imported again, also after the key
/// lifecycle retired it: a second `migrate` after a rotation changes
/// nothing (it used to add the retired key back as active).
#[test]
fn migrate_does_not_bring_back_a_key_the_lifecycle_moved_on() {
    let mut s = setup();
    // No DNS here: the live check asks a port that does not answer.
    s.m.cfg.dns.nameservers = vec!["127.0.0.1:9".parse().unwrap()];
    s.m.cfg.dns.timeout = 1;
    let key = dkim::SigningKey::generate_ed25519().unwrap();
    let mut plan = crate::migrate::Plan::new(crate::migrate::Source::OpenDkim);
    plan.add_key(crate::migrate::PlannedKey {
        domain: Some("example.com".into()),
        selector: "old".into(),
        key,
        from: "test".into(),
    });
    s.m.migrate(&plan, false).unwrap();
    let st = s.m.load().unwrap();
    assert_eq!(st.keys.len(), 1);
    let id = st.keys[0].id;
    s.m.store
        .apply(&[Change::KeyState(id, KeyState::Retired, 1)])
        .unwrap();
    s.m.migrate(&plan, false).unwrap();
    let st = s.m.load().unwrap();
    assert_eq!(st.keys.len(), 1, "{:?}", st.keys);
    assert_eq!(st.keys[0].state, KeyState::Retired);
}
