//! The daemon's part in a fleet that shares one store: its local snapshot
//! of the store (for outages), what it serves (for `dkimd status` on this
//! node), and its heartbeat in the node registry, which also elects the
//! one worker that publishes DNS and runs the key steps.

use dkimd_core::config::Config;
use dkimd_core::store::snapshot::{self as file, Serving};
use dkimd_core::store::{NodeBeat, Shared, State, Store};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn now() -> i64 {
    i64::try_from(dkimd_core::clock::now()).unwrap_or(0)
}

/// What this node serves, kept current by the reload loop and the
/// heartbeat, and written to `STATE_DIR/serving.json` on every change.
pub struct Node {
    state_dir: std::path::PathBuf,
    /// Only a shared store has a snapshot file, a registry and a worker.
    shared: bool,
    started: i64,
    info: Mutex<Serving>,
}

impl Node {
    /// This node, serving store version `version` read at `saved`.
    pub fn new(cfg: &Config, shared: bool, version: i64, saved: i64) -> Arc<Node> {
        Arc::new(Node {
            state_dir: cfg.state_dir.clone(),
            shared,
            started: now(),
            info: Mutex::new(Serving {
                node: cfg.store.node(),
                pid: std::process::id(),
                snapshot: version,
                saved,
                unreachable_since: None,
                worker: !shared,
                updated: now(),
            }),
        })
    }

    fn update(&self, f: impl FnOnce(&mut Serving) -> bool) {
        if !self.shared {
            return;
        }
        let Ok(mut g) = self.info.lock() else {
            return;
        };
        if f(&mut g) {
            g.updated = now();
            let path = file::serving_path(&self.state_dir);
            if let Err(e) = file::write_serving(&path, &g) {
                tracing::warn!("cannot write {}: {e}", path.display());
            }
        }
    }

    fn get(&self) -> Serving {
        self.info.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// A state was read from the store: keep it as the local snapshot when
    /// it is newer than the one kept.
    pub fn loaded(&self, st: &State) {
        if !self.shared {
            return;
        }
        let had = self.get();
        if had.snapshot != st.version || !file::path_in(&self.state_dir).exists() {
            let path = file::path_in(&self.state_dir);
            if let Err(e) = file::save(&path, st, now()) {
                tracing::warn!("cannot write the local snapshot {}: {e}", path.display());
            }
        }
        if had.unreachable_since.is_some() {
            tracing::info!(
                "store reachable again; serving snapshot {} (was {})",
                st.version,
                had.snapshot
            );
        }
        self.update(|s| {
            let changed = s.snapshot != st.version || s.unreachable_since.is_some();
            s.snapshot = st.version;
            s.saved = now();
            s.unreachable_since = None;
            changed
        });
    }

    /// The store did not answer (since `since`, when known).
    pub fn unreachable(&self, since: Option<i64>, why: &str) {
        let had = self.get();
        if had.unreachable_since.is_none() {
            tracing::warn!(
                "store unreachable ({why}); signing and verifying from snapshot {} until it answers",
                had.snapshot
            );
        }
        self.update(|s| {
            if s.unreachable_since.is_none() {
                s.unreachable_since = Some(since.unwrap_or_else(now));
                true
            } else {
                false
            }
        });
    }

    fn set_worker(&self, worker: bool) {
        self.update(|s| {
            let changed = s.worker != worker;
            s.worker = worker;
            changed
        });
    }

    /// Writes the file now (at start).
    pub fn publish(&self) {
        self.update(|_| true);
    }
}

/// The state to start from: the store's, or, when a shared store does not
/// answer, the local snapshot (and a line saying so).
pub fn starting_state(
    cfg: &Config,
    store: &dyn Store,
) -> anyhow::Result<(State, i64, Option<String>)> {
    match store.load_signing() {
        Ok(st) => Ok((st, now(), None)),
        Err(e) if store.shared() => {
            let path = file::path_in(&cfg.state_dir);
            let saved = file::read(&path).map_err(|se| {
                anyhow::anyhow!(
                    "store {} does not answer ({e}), and there is no local snapshot to start from ({se})",
                    store.location()
                )
            })?;
            let note = format!(
                "store {} does not answer ({e}); starting from the local snapshot {} of {}",
                store.location(),
                saved.state.version,
                dkimd_core::clock::utc_timestamp(u64::try_from(saved.saved).unwrap_or(0))
            );
            Ok((saved.state, saved.saved, Some(note)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Heartbeats every `store.heartbeat` seconds (shared stores only), and
/// with each one tries to become, or stays, the fleet's worker; `wake` is
/// told when this node becomes the worker, so that it catches up at once.
pub async fn heartbeat(
    cfg: Config,
    store: Shared,
    node: Arc<Node>,
    wake: Arc<tokio::sync::Notify>,
) {
    let every = Duration::from_secs(cfg.store.heartbeat.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let version = env!("CARGO_PKG_VERSION").to_string();
    let host = dkimd_core::sys::hostname();
    loop {
        tick.tick().await;
        let serving = node.get();
        let mut s = store.clone();
        let beat = NodeBeat {
            name: serving.node.clone(),
            host: host.clone(),
            version: version.clone(),
            snapshot: serving.snapshot,
            started: node.started,
            worker: serving.worker,
        };
        let r = tokio::task::spawn_blocking(move || {
            let worker = s.try_worker()?;
            s.heartbeat(&NodeBeat { worker, ..beat })?;
            Ok::<bool, dkimd_core::Error>(worker)
        })
        .await;
        match r {
            Ok(Ok(worker)) => {
                if worker && !serving.worker {
                    tracing::info!(
                        "this node is now the fleet's worker (DNS publishing and key steps)"
                    );
                    wake.notify_one();
                } else if !worker && serving.worker {
                    tracing::info!("another node is the fleet's worker now");
                }
                node.set_worker(worker);
            }
            Ok(Err(e)) => {
                // The lock lives with the connection: without it, no
                // worker here.
                node.set_worker(false);
                node.unreachable(None, &e.to_string());
            }
            Err(_) => node.set_worker(false),
        }
    }
}
