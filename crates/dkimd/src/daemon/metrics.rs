//! The daemon's counters, in a prometheus-client registry, and the
//! loopback HTTP endpoint that serves them (`GET /metrics`).

use dkim::DkimResult;
use dkimd_core::model::settings::Action;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `result` label of `dkimd_signatures_verified_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// The `action` label of `dkimd_policy_actions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// The `client` label of `dkimd_over_limit_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabel {
    client: &'static str,
}

/// The milter server's own counters (shared atomics the server updates),
/// read at each scrape.
#[derive(Debug, Default)]
struct ServerStats {
    active: Arc<AtomicUsize>,
    limit_reached: Arc<AtomicUsize>,
    evicted: Arc<AtomicUsize>,
}

fn load(a: &AtomicUsize) -> u64 {
    u64::try_from(a.load(Ordering::Relaxed)).unwrap_or(u64::MAX)
}

impl Collector for ServerStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let evicted = ConstCounter::new(load(&self.evicted));
        evicted.encode(encoder.encode_descriptor(
            "dkimd_connections_evicted",
            "Connections closed at milter.max_connections to serve a new one (waiting for negotiation or idle between messages)",
            None,
            evicted.metric_type(),
        )?)?;
        let active = ConstGauge::new(i64::try_from(load(&self.active)).unwrap_or(i64::MAX));
        active.encode(encoder.encode_descriptor(
            "dkimd_active_connections",
            "Milter connections open now",
            None,
            active.metric_type(),
        )?)?;
        let limit = ConstCounter::new(load(&self.limit_reached));
        limit.encode(encoder.encode_descriptor(
            "dkimd_connection_limit_reached",
            "Times milter.max_connections was reached with every connection inside a message (new connections waited)",
            None,
            limit.metric_type(),
        )?)?;
        Ok(())
    }
}

/// One key as the lifecycle gauges show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGauge {
    /// The owning domain, or "global".
    pub owner: String,
    /// Its selector.
    pub selector: String,
    /// Its algorithm.
    pub algorithm: &'static str,
    /// Its state.
    pub state: &'static str,
    /// Seconds since it was made.
    pub age: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    domain: String,
    selector: String,
    algorithm: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The key lifecycle's gauges, as the daemon's last step and check saw
/// them: replaced whole, so that deleted keys leave no stale series.
#[derive(Debug, Default)]
struct KeyStats {
    keys: std::sync::Mutex<KeySnapshot>,
}

/// Each key, the count per state, the number of alarms.
type KeySnapshot = (Vec<KeyGauge>, Vec<(&'static str, i64)>, i64);

impl Collector for KeyStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (keys, states, alarms) = match self.keys.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut e = encoder.encode_descriptor(
            "dkimd_key_age_seconds",
            "Age of each key that has a record (pending, active, retired, revoked)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for k in &keys {
            let labels = KeyLabels {
                domain: k.owner.clone(),
                selector: k.selector.clone(),
                algorithm: k.algorithm.into(),
                state: k.state.into(),
            };
            ConstGauge::new(i64::try_from(k.age).unwrap_or(i64::MAX))
                .encode(e.encode_family(&labels)?)?;
        }
        let mut e = encoder.encode_descriptor(
            "dkimd_keys",
            "Keys in each state of their life",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (state, n) in &states {
            ConstGauge::new(*n).encode(e.encode_family(&StateLabel { state })?)?;
        }
        let g = ConstGauge::new(alarms);
        g.encode(encoder.encode_descriptor(
            "dkimd_key_alarms",
            "Key alarms: active keys DNS does not serve or older than rotate-every, pending keys not served after a day",
            None,
            g.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Counters for the metrics endpoint.
pub struct Metrics {
    keys: Arc<KeyStats>,
    registry: Registry,
    signed: Counter,
    signatures_made: Counter,
    verified: Family<ResultLabel, Counter>,
    actions: Family<ActionLabel, Counter>,
    errors: Counter,
    over_limit: Family<ClientLabel, Counter>,
    forged_removed: Counter,
    bodies_threaded: Counter,
    lookups: Histogram,
    server: Arc<ServerStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Every verification result, so that each has a line from the start.
const RESULTS: [DkimResult; 7] = [
    DkimResult::None,
    DkimResult::Pass,
    DkimResult::Fail,
    DkimResult::Neutral,
    DkimResult::Policy,
    DkimResult::TempError,
    DkimResult::PermError,
];

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            signed: Counter::default(),
            signatures_made: Counter::default(),
            verified: Family::default(),
            actions: Family::default(),
            errors: Counter::default(),
            over_limit: Family::default(),
            forged_removed: Counter::default(),
            bodies_threaded: Counter::default(),
            lookups: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            server: Arc::new(ServerStats::default()),
            keys: Arc::new(KeyStats::default()),
            registry: Registry::default(),
        };
        // Every label value is shown from the start, at zero.
        for r in RESULTS {
            let _ = m.verified.get_or_create(&ResultLabel {
                result: r.to_string(),
            });
        }
        for a in [Action::Accept, Action::Reject, Action::Tempfail] {
            let _ = m.actions.get_or_create(&ActionLabel { action: a.as_str() });
        }
        for client in ["trusted", "untrusted"] {
            let _ = m.over_limit.get_or_create(&ClientLabel { client });
        }
        registry.register("dkimd_messages_signed", "Messages signed", m.signed.clone());
        registry.register(
            "dkimd_signatures_made",
            "DKIM-Signature fields added",
            m.signatures_made.clone(),
        );
        registry.register(
            "dkimd_signatures_verified",
            "Verification results, one per signature (none: unsigned message)",
            m.verified.clone(),
        );
        registry.register(
            "dkimd_policy_actions",
            "What verified messages got",
            m.actions.clone(),
        );
        registry.register(
            "dkimd_errors",
            "Messages dkimd failed on (answered with milter.on_error)",
            m.errors.clone(),
        );
        registry.register(
            "dkimd_over_limit",
            "Messages over milter.max_headers or milter.max_header_bytes (trusted: passed on unsigned; untrusted: dkim=permerror)",
            m.over_limit.clone(),
        );
        registry.register(
            "dkimd_forged_results_removed",
            "Authentication-Results fields removed because they claimed our authserv-id",
            m.forged_removed.clone(),
        );
        registry.register(
            "dkimd_bodies_hashed_on_thread",
            "Large bodies hashed on a thread of their own (milter.body_thread)",
            m.bodies_threaded.clone(),
        );
        registry.register(
            "dkimd_key_lookup_seconds",
            "Time to fetch the keys of one message",
            m.lookups.clone(),
        );
        registry.register_collector(Box::new(m.server.clone()));
        registry.register_collector(Box::new(m.keys.clone()));
        Metrics { registry, ..m }
    }

    /// The milter server's counters, for [`milter::server::Stats`].
    pub fn server_stats(&self) -> milter::server::Stats {
        milter::server::Stats {
            active: self.server.active.clone(),
            limit_reached: self.server.limit_reached.clone(),
            evicted: self.server.evicted.clone(),
        }
    }

    /// How often the connection limit held connections back so far.
    pub fn limit_reached(&self) -> Arc<AtomicUsize> {
        self.server.limit_reached.clone()
    }

    /// A message signed with `signatures` signatures.
    pub fn signed(&self, signatures: usize) {
        self.signed.inc();
        self.signatures_made
            .inc_by(u64::try_from(signatures).unwrap_or(u64::MAX));
    }

    /// A message dkimd failed on.
    pub fn error(&self) {
        self.errors.inc();
    }

    /// One signature's verification result.
    pub fn verified(&self, r: DkimResult) {
        self.verified
            .get_or_create(&ResultLabel {
                result: r.to_string(),
            })
            .inc();
    }

    /// What a verified message got.
    pub fn action(&self, a: Action) {
        self.actions
            .get_or_create(&ActionLabel { action: a.as_str() })
            .inc();
    }

    /// A message over the header limits.
    pub fn over_limit(&self, trusted: bool) {
        let client = if trusted { "trusted" } else { "untrusted" };
        self.over_limit.get_or_create(&ClientLabel { client }).inc();
    }

    /// Forged Authentication-Results fields removed from a message.
    pub fn forged_removed(&self, n: usize) {
        self.forged_removed
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// A body hashed on a thread of its own.
    pub fn body_threaded(&self) {
        self.bodies_threaded.inc();
    }

    /// The key lookups of one message took `d`.
    pub fn lookup(&self, d: Duration) {
        self.lookups.observe(d.as_secs_f64());
    }

    /// The keys as the last lifecycle step saw them: each key with a
    /// record, the count per state, and the number of alarms.
    pub fn set_keys(&self, keys: Vec<KeyGauge>, states: Vec<(&'static str, i64)>, alarms: usize) {
        let v = (keys, states, i64::try_from(alarms).unwrap_or(i64::MAX));
        match self.keys.keys.lock() {
            Ok(mut g) => *g = v,
            Err(p) => *p.into_inner() = v,
        }
    }

    /// Everything, in the Prometheus (OpenMetrics) text format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

/// Serves `GET /metrics` on `listener` (HTTP/1.1 through axum and hyper),
/// until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("metrics endpoint stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_as_before() {
        let m = Metrics::new();
        m.signed(2);
        m.verified(DkimResult::Pass);
        m.over_limit(false);
        m.lookup(Duration::from_millis(3));
        let text = m.render();
        for line in [
            "dkimd_messages_signed_total 1",
            "dkimd_signatures_made_total 2",
            "dkimd_signatures_verified_total{result=\"pass\"} 1",
            "dkimd_signatures_verified_total{result=\"fail\"} 0",
            "dkimd_over_limit_total{client=\"untrusted\"} 1",
            "dkimd_policy_actions_total{action=\"reject\"} 0",
            "dkimd_errors_total 0",
            "dkimd_forged_results_removed_total 0",
            "dkimd_connections_evicted_total 0",
            "dkimd_bodies_hashed_on_thread_total 0",
            "dkimd_key_lookup_seconds_count 1",
            "dkimd_active_connections 0",
            "dkimd_connection_limit_reached_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
