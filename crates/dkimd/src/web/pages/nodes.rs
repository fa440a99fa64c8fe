//! The fleet on the front page: when the store is shared, the nodes that
//! heartbeat in it (flagged when silent or on an old snapshot), and, when
//! the store does not answer, what this node serves meanwhile.

use super::{blocking, App};
use dkimd_core::store::snapshot;
use dkimd_core::store::Store;

/// One node as the page lists it.
pub(super) struct NodeView {
    pub name: String,
    pub host: String,
    pub version: String,
    pub snapshot: i64,
    pub seen: String,
    pub worker: bool,
    pub problem: Option<String>,
}

/// The fleet part of the front page.
pub(super) struct FleetView {
    /// "store unreachable since …, serving snapshot N" while it is.
    pub banner: Option<String>,
    pub nodes: Vec<NodeView>,
    pub version: i64,
}

/// The fleet view; `None` for a store of one machine.
pub(super) async fn fleet_view(app: &App) -> Option<FleetView> {
    if !app.store.shared() {
        return None;
    }
    let store = app.store.clone();
    let heartbeat = app.cfg.store.heartbeat;
    let nodes = blocking(move || Ok(store.nodes()?)).await;
    let ts = |t: i64| dkimd_core::clock::utc_timestamp(u64::try_from(t).unwrap_or(0));
    let serving = snapshot::read_serving(&snapshot::serving_path(&app.cfg.state_dir)).ok();
    let banner = |why: String| {
        Some(match &serving {
            Some(s) => format!(
                "store unreachable since {}, serving snapshot {} ({why}); changes wait until it answers",
                ts(s.unreachable_since.unwrap_or(s.updated)),
                s.snapshot
            ),
            None => format!("store unreachable ({why})"),
        })
    };
    Some(match nodes {
        Ok(Some(n)) => FleetView {
            banner: serving
                .as_ref()
                .and_then(|s| s.unreachable_since)
                .and_then(|_| banner("for this node's daemon".into())),
            nodes: n
                .rows
                .iter()
                .map(|r| NodeView {
                    name: r.beat.name.clone(),
                    host: r.beat.host.clone(),
                    version: r.beat.version.clone(),
                    snapshot: r.beat.snapshot,
                    seen: format!(
                        "{} ago",
                        dkimd_core::clock::short_age(
                            u64::try_from(n.now.saturating_sub(r.seen)).unwrap_or(0)
                        )
                    ),
                    worker: n.is_worker(r, heartbeat),
                    problem: n.problem(r, heartbeat),
                })
                .collect(),
            version: n.version,
        },
        Ok(None) => return None,
        Err(e) => FleetView {
            banner: banner(format!("{e:#}")),
            nodes: Vec::new(),
            version: serving.as_ref().map_or(0, |s| s.snapshot),
        },
    })
}
