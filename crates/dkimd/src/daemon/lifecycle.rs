//! The daemon's own key lifecycle: every `milter.key_step_interval`
//! seconds it runs the step `dkimd rotate --step` runs (promote, retire,
//! revoke, delete, scheduled rotations), checks what DNS serves for every
//! key, logs what changed and every alarm, updates the key gauges, and,
//! with `unserved-key = hold`, tells the snapshot which active keys not to
//! sign with until DNS serves their records.
//!
//! On a shared store only the fleet's worker (see `fleet`) takes the
//! steps; every node still checks DNS for its own gauges and hold list.

use super::metrics::{KeyGauge, Metrics};
use dkimd_core::clock::SharedClock;
use dkimd_core::config::Config;
use dkimd_core::manager::{Manager, Steps};
use dkimd_core::model::settings::UnservedKey;
use dkimd_core::store::{KeyState, Shared, Store};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Record names of active keys whose record DNS did not serve at the last
/// check (used only with `unserved-key = hold`).
pub type Held = Arc<RwLock<BTreeSet<String>>>;

/// What one round found.
struct Round {
    /// Lines to log: transitions (info) and alarms (warning).
    changed: Vec<String>,
    alarms: Vec<String>,
    /// Active keys DNS does not serve, by record name.
    unserved: BTreeSet<String>,
    hold: bool,
    gauges: Vec<KeyGauge>,
    states: Vec<(&'static str, i64)>,
}

/// What wakes a round besides the interval, and what it needs.
pub struct Wake {
    /// The clock steps run on.
    pub clock: SharedClock,
    /// Told when this node becomes the fleet's worker: it catches up at
    /// once (a worker that died may have left DNS half done).
    pub became_worker: Arc<tokio::sync::Notify>,
}

/// One round on the daemon's store connection (blocking: DNS and the
/// store are synchronous on the manager's side). The step runs only when
/// this node is the worker; on a shared store, the worker lock is held by
/// this very connection.
fn round(cfg: &Config, mut store: Shared, clock: SharedClock) -> anyhow::Result<Round> {
    let worker = store.try_worker()?;
    let mut m = Manager::new(
        cfg.clone(),
        Box::new(store),
        Steps::collecting(),
        clock.clone(),
    );
    let report = if worker {
        m.step()?
    } else {
        Default::default()
    };
    let failed: Vec<String> = m
        .out
        .take_lines()
        .into_iter()
        .filter(|l| !l.ok && l.subject.as_deref() != Some("alarm"))
        .map(|l| l.to_string())
        .collect();
    // The gauges need the keys, not the published records.
    let st = m.load_signing()?;
    let now = i64::try_from(clock.now()).unwrap_or(0);
    let mut alarms = report.alarms;
    alarms.extend(failed);
    let mut unserved = BTreeSet::new();
    let mut gauges = Vec::new();
    // Page by page; the DNS states are kept for `dkimd status`, which
    // answers from them while they are fresh.
    m.check_all(|d| {
        for k in &d.keys {
            if let Some(a) = &k.alarm {
                alarms.push(format!(
                    "{}: {} key, selector {} ({}): {a}",
                    d.domain, k.algorithm, k.selector, k.state
                ));
            }
            if k.state == KeyState::Active && !k.dns.is_ok() {
                unserved.insert(k.record_name.clone());
            }
        }
    })?;
    for k in st.keys.iter().filter(|k| k.state.has_record()) {
        gauges.push(KeyGauge {
            owner: k.owner().to_string(),
            selector: k.selector.clone(),
            algorithm: k.algorithm.as_str(),
            state: k.state.as_str(),
            age: u64::try_from(now.saturating_sub(k.created)).unwrap_or(0),
        });
    }
    let states = KeyState::ALL
        .iter()
        .map(|s| {
            let n = st.keys.iter().filter(|k| k.state == *s).count();
            (s.as_str(), i64::try_from(n).unwrap_or(i64::MAX))
        })
        .collect();
    Ok(Round {
        changed: report.changed,
        alarms,
        unserved,
        hold: st.settings.unserved_key == UnservedKey::Hold,
        gauges,
        states,
    })
}

/// Runs a round every `milter.key_step_interval` seconds (the first after
/// at most 30 s), until the process ends. `reload` is told when the keys
/// held back from signing change.
pub async fn run(
    cfg: Config,
    store: Shared,
    wake: Wake,
    metrics: Arc<Metrics>,
    held: Held,
    reload: Arc<tokio::sync::Notify>,
) {
    let every = Duration::from_secs(cfg.milter.key_step_interval.max(1));
    tokio::select! {
        () = tokio::time::sleep(every.min(Duration::from_secs(30))) => {}
        () = wake.became_worker.notified() => {}
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = wake.became_worker.notified() => {
                tracing::info!("key lifecycle: catching up as the new worker");
            }
        }
        let (c, k, s) = (cfg.clone(), wake.clock.clone(), store.clone());
        let r = match tokio::task::spawn_blocking(move || round(&c, s, k)).await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("the key lifecycle step stopped: {e}")),
        };
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("key lifecycle step failed (tried again in {every:?}): {e:#}");
                continue;
            }
        };
        for c in &r.changed {
            tracing::info!("key lifecycle: {c}");
        }
        for a in &r.alarms {
            tracing::warn!("key alarm: {a}");
        }
        metrics.set_keys(r.gauges, r.states, r.alarms.len());
        let want = if r.hold { r.unserved } else { BTreeSet::new() };
        let changed = match held.write() {
            Ok(mut h) if *h != want => {
                *h = want.clone();
                true
            }
            _ => false,
        };
        if changed {
            if !want.is_empty() {
                tracing::warn!(
                    "unserved-key = hold: not signing with {} until DNS serves them",
                    want.iter().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            reload.notify_one();
        }
    }
}
