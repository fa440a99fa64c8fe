//! `dkimd run`: the milter daemon Postfix calls for every message.
//!
//! Each connection takes the current [`Snapshot`] (settings, keys, rules) and
//! keeps it for its life; SIGHUP and store changes build a new one and swap
//! it in whole. When `shutdown` completes, dkimd stops accepting and lets
//! messages in flight finish.
//!
//! The daemon is a function over a listener, a store, a resolver and a
//! shutdown future ([`run`]), so that tests run it in-process on a listener
//! bound to port 0.

mod bodyhash;
mod fleet;
mod handler;
mod headers;
mod lifecycle;
pub mod metrics;
mod snapshot;

pub use headers::author_domain_of;
pub use snapshot::{Plan, Snapshot, Who};

use anyhow::Context;
use bodyhash::Threads;
use dkimd_core::clock::SharedClock;
use dkimd_core::config::Config;
use dkimd_core::store::{State, Store};
use handler::DkimHandler;
use hickory_resolver::TokioResolver;
use metrics::Metrics;
use milter::server::{ListenAddr, Listener};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A resolver for verification: the configured servers, with a cache that
/// honours TTLs (positive and negative).
pub fn verify_resolver(cfg: &Config) -> anyhow::Result<TokioResolver> {
    Ok(dkimd_core::dns::resolver_cached(
        &cfg.dns.nameservers,
        Duration::from_secs(cfg.dns.timeout.max(1)),
    )?)
}

/// Binds the configured milter socket: a Unix socket gets its directory,
/// its mode (`milter.socket_mode`) and its group (`milter.socket_group`).
pub async fn listen(cfg: &Config) -> anyhow::Result<Listener> {
    let addr = match cfg.milter.socket.addr() {
        ListenAddr::Unix(p, _) => {
            let mode = cfg.milter.socket_mode.bits();
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            ListenAddr::Unix(p, mode)
        }
        other => other,
    };
    let listener = Listener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.milter.socket))?;
    if let (ListenAddr::Unix(path, _), Some(group)) = (&addr, &cfg.milter.socket_group) {
        let gid = dkimd_core::sys::group_id(group)
            .ok_or_else(|| anyhow::anyhow!("milter.socket_group: no group {group:?}"))?;
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {group}", path.display()))?;
    }
    Ok(listener)
}

/// The snapshot the daemon starts with, built (and so checked) before any
/// socket is bound.
pub struct Checked {
    snap: Arc<Snapshot>,
    state: Arc<State>,
    /// When the state was read (epoch seconds).
    saved: i64,
    /// Set when a shared store did not answer and the local snapshot is
    /// served instead.
    note: Option<String>,
}

impl Checked {
    /// What `run --check-config` reports.
    pub fn summary(&self, cfg: &Config) -> String {
        let snap = &self.snap;
        format!(
            "socket {}, state {}, signing {} ({} domains stored, {} with keys that sign), verification {}",
            cfg.milter.socket,
            cfg.state_dir.display(),
            if snap.settings.signing { "on" } else { "off" },
            snap.stored_domains(),
            snap.signing_domains(),
            if snap.settings.verify { "on" } else { "off" }
        )
    }
}

/// Builds the snapshot the daemon would start with from the store, or,
/// when a shared store does not answer, from the local snapshot file.
pub fn check(cfg: &Config, store: &dyn Store) -> anyhow::Result<Checked> {
    let (st, saved, note) = fleet::starting_state(cfg, store)?;
    Ok(Checked {
        snap: Arc::new(Snapshot::build(&st, &cfg.milter, &Default::default())?),
        state: Arc::new(st),
        saved,
        note,
    })
}

/// Serves milter connections on `listener` with the state in `store`
/// until `shutdown` completes, then gives messages in flight
/// `milter.shutdown_grace` to finish.
pub async fn run(
    cfg: &Config,
    listener: Listener,
    store: Box<dyn Store>,
    resolver: TokioResolver,
    clock: SharedClock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let checked = check(cfg, store.as_ref())?;
    run_checked(cfg, listener, store, checked, resolver, clock, shutdown).await
}

/// [`run`] starting from a snapshot [`check`] already built.
pub async fn run_checked(
    cfg: &Config,
    listener: Listener,
    store: Box<dyn Store>,
    checked: Checked,
    resolver: TokioResolver,
    clock: SharedClock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = dkimd_core::store::Shared::new(store);
    let node = fleet::Node::new(cfg, store.shared(), checked.state.version, checked.saved);
    match &checked.note {
        Some(note) => {
            tracing::warn!("{note}");
            node.unreachable(None, "at start");
        }
        None => node.loaded(&checked.state),
    }
    node.publish();
    let last = checked.state;
    let shared: snapshot::Shared = Arc::new(RwLock::new(checked.snap));
    let metrics = Arc::new(Metrics::new());
    {
        let snap = shared.read().map(|s| s.clone()).ok();
        let on = |f: fn(&Snapshot) -> bool| {
            if snap.as_deref().is_some_and(f) {
                "on"
            } else {
                "off"
            }
        };
        tracing::info!(
            "listening on {} (signing {}, verification {}); Postfix: smtpd_milters = {}",
            listener.postfix_addr(),
            on(|s| s.settings.signing),
            on(|s| s.settings.verify),
            listener.postfix_addr()
        );
    }
    if let Some(addr) = cfg.milter.metrics {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let bound = l.local_addr().unwrap_or(addr);
        tracing::info!("metrics on http://{bound}/metrics");
        tokio::spawn(metrics::serve(l, metrics.clone()));
    }
    let held: lifecycle::Held = Arc::default();
    let reload = Arc::new(tokio::sync::Notify::new());
    let wake = Arc::new(tokio::sync::Notify::new());
    if store.shared() {
        tokio::spawn(fleet::heartbeat(
            cfg.clone(),
            store.clone(),
            node.clone(),
            wake.clone(),
        ));
    }
    if cfg.milter.key_step_interval > 0 {
        tokio::spawn(lifecycle::run(
            cfg.clone(),
            store.clone(),
            lifecycle::Wake {
                clock: clock.clone(),
                became_worker: wake,
            },
            metrics.clone(),
            held.clone(),
            reload.clone(),
        ));
    }
    tokio::spawn(reload_on_change(
        store,
        cfg.milter.clone(),
        shared.clone(),
        (held, reload),
        node,
        last,
    ));
    tokio::spawn(warn_at_limit(
        metrics.limit_reached(),
        cfg.milter.max_connections,
    ));
    let threads = Threads::new(cfg.milter.body_thread);
    let stats = metrics.server_stats();
    let factory = move || {
        let snap = shared
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        DkimHandler::new(
            snap,
            resolver.clone(),
            metrics.clone(),
            threads.clone(),
            clock.clone(),
        )
    };
    let on_error = |e: milter::codec::FrameError| tracing::info!("connection ended: {e}");
    milter::server::serve(
        listener,
        server_config(cfg),
        factory,
        on_error,
        async move {
            shutdown.await;
            tracing::info!("shutting down; finishing messages in flight");
        },
        Duration::from_secs(cfg.milter.shutdown_grace),
        stats,
    )
    .await
    .context("milter server")?;
    tracing::info!("stopped");
    Ok(())
}

/// The milter server's limits from `[milter]`.
fn server_config(cfg: &Config) -> milter::ServerConfig {
    let m = &cfg.milter;
    milter::ServerConfig {
        read_timeout: Duration::from_secs(m.read_timeout.max(1)),
        negotiate_timeout: Duration::from_secs(m.negotiate_timeout.max(1)),
        idle_timeout: Duration::from_secs(m.idle_timeout.max(1)),
        max_macro_bytes: m.max_macro_bytes,
        max_macros: m.max_macros,
        max_connections: m.max_connections,
        ..milter::ServerConfig::default()
    }
    .with_body_replies(m.body_replies)
}

/// Builds a new snapshot on SIGHUP, when the store changed (checked
/// twice a second) and when the keys held back from signing changed, and
/// swaps it in; a failed reload keeps the old one. A shared store's state
/// is also kept as the local snapshot, and a store that does not answer is
/// reported as such while the old state goes on serving.
async fn reload_on_change(
    store: dkimd_core::store::Shared,
    m: dkimd_core::config::MilterConfig,
    shared: snapshot::Shared,
    (held, reload): (lifecycle::Held, Arc<tokio::sync::Notify>),
    node: Arc<fleet::Node>,
    mut last: Arc<State>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut watch = store.watch().ok();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let why = tokio::select! {
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
            () = reload.notified() => HELD,
            _ = tick.tick() => {
                let Some(w) = watch.as_mut() else { continue };
                if let Some(since) = w.unreachable_since() {
                    node.unreachable(Some(since), "no connection");
                }
                match w.changed() {
                    Ok(true) => "store changed",
                    _ => continue,
                }
            }
        };
        if why != HELD {
            let s = store.clone();
            // Signing needs no record of what is published (20,000
            // records at 10,000 domains).
            match tokio::task::spawn_blocking(move || s.load_signing()).await {
                Ok(Ok(st)) => {
                    node.loaded(&st);
                    last = Arc::new(st);
                }
                Ok(Err(e)) => {
                    node.unreachable(None, &e.to_string());
                    tracing::info!("reload ({why}) failed, keeping the previous state: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::info!("reload ({why}) failed, keeping the previous state: {e}");
                    continue;
                }
            }
        }
        let held_now = held.read().map(|h| h.clone()).unwrap_or_default();
        match Snapshot::build(&last, &m, &held_now) {
            Ok(s) => {
                if let Ok(mut w) = shared.write() {
                    *w = Arc::new(s);
                }
                tracing::info!("reloaded ({why}); snapshot {}", last.version);
            }
            Err(e) => {
                tracing::info!("reload ({why}) failed, keeping the previous state: {e:#}")
            }
        }
    }
}

/// Why a reload ran when only the keys held back from signing changed.
const HELD: &str = "keys held back from signing changed";

/// Says so (at most once a second) when the connection limit holds
/// connections back.
async fn warn_at_limit(hits: Arc<std::sync::atomic::AtomicUsize>, limit: usize) {
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = hits.load(Ordering::Relaxed);
        if now > seen {
            tracing::warn!(
                "connection limit reached (milter.max_connections = {limit}) with every connection inside a message; new connections wait until one ends"
            );
            seen = now;
        }
    }
}
