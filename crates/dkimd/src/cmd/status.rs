//! `dkimd status`.
// Indexing here is serde_json::Value["key"], which yields Null for a missing
// key and never panics.
#![allow(clippy::indexing_slicing)]

use super::print_json;
use dkimd::outln;
use dkimd_core::manager::Manager;
use std::process::ExitCode;

/// One row per domain and key with its state, age and the live DNS state,
/// and each key's next step; exit code 1 on any alarm (an active key DNS
/// does not serve or older than rotate-every, a pending key not served
/// after a day).
pub fn show(m: &Manager, live: bool) -> anyhow::Result<ExitCode> {
    let st = m.load()?;
    let mut problems = 0usize;
    let page = m.status_query(&dkimd_core::manager::StatusQuery {
        cached: !live,
        ..Default::default()
    })?;
    let checked = page.checked;
    let rows: Vec<serde_json::Value> = page
        .rows
        .into_iter()
        .map(|d| {
            let keys: Vec<serde_json::Value> = d
                .keys
                .iter()
                .map(|k| {
                    if k.alarm.is_some() {
                        problems += 1;
                    }
                    let ts =
                        |t: i64| dkimd_core::clock::utc_timestamp(u64::try_from(t).unwrap_or(0));
                    serde_json::json!({
                        "selector": k.selector, "algorithm": k.algorithm.as_str(), "bits": k.bits,
                        "own_key": k.own_key, "record_name": k.record_name, "record": k.record,
                        "zone_line": k.zone_line, "dns": k.dns.to_string(),
                        "dns_state": k.dns.to_code(), "target": k.target,
                        "state": k.state.as_str(), "since": ts(k.since), "age_seconds": k.age,
                        "next": k.next.as_ref().map(|(what, _)| what.clone()),
                        "next_at": k.next.as_ref().and_then(|(_, at)| at.map(ts)),
                        "alarm": k.alarm,
                    })
                })
                .collect();
            serde_json::json!({ "domain": d.domain, "signs": d.signs, "why": d.why, "keys": keys })
        })
        .collect();
    let serving = serving_line(m, st.version);
    if m.out.is_json() {
        print_json(&serde_json::json!({
            "signing": st.settings.signing, "selector": st.settings.selector,
            "verify": st.settings.verify, "domains": rows,
            "store_version": st.version, "node": serving,
            "dns_checked_at": checked.map(|t| dkimd_core::clock::utc_timestamp(u64::try_from(t).unwrap_or(0))),
        }))?;
    } else {
        if let Some(l) = &serving {
            outln!("{l}");
        }
        if let Some(t) = checked {
            outln!(
                "DNS as the daemon checked it {} ago (--live to look now)",
                age(u64::try_from(
                    i64::try_from(dkimd_core::clock::now())
                        .unwrap_or(0)
                        .saturating_sub(t)
                )
                .unwrap_or(0))
            );
        }
        outln!(
            "signing {}, selector {}, verification {}",
            if st.settings.signing { "on" } else { "off" },
            if st.settings.selector.is_empty() {
                "-"
            } else {
                &st.settings.selector
            },
            if st.settings.verify { "on" } else { "off" }
        );
        outln!(
            "{:<28} {:<5} {:<18} {:<12} {:<8} {:<5} {:<20} WHY",
            "DOMAIN",
            "SIGNS",
            "SELECTOR",
            "KEY",
            "STATE",
            "AGE",
            "DNS"
        );
        for r in &rows {
            let signs = if r["signs"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            };
            let domain = r["domain"].as_str().unwrap_or("");
            let why = r["why"].as_str().unwrap_or("");
            let keys = r["keys"].as_array().cloned().unwrap_or_default();
            if keys.is_empty() {
                outln!(
                    "{domain:<28} {signs:<5} {:<18} {:<12} {:<8} {:<5} {:<20} {why}",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-"
                );
            }
            for k in keys {
                outln!(
                    "{domain:<28} {signs:<5} {:<18} {:<12} {:<8} {:<5} {:<20} {why}",
                    k["selector"].as_str().unwrap_or(""),
                    format!("{}-{}", k["algorithm"].as_str().unwrap_or(""), k["bits"]),
                    k["state"].as_str().unwrap_or(""),
                    age(k["age_seconds"].as_u64().unwrap_or(0)),
                    k["dns"].as_str().unwrap_or("")
                );
                if let Some(next) = k["next"].as_str() {
                    match k["next_at"].as_str() {
                        Some(at) => outln!("  next: {next} at {at}"),
                        None => outln!("  next: {next}"),
                    }
                }
                if let Some(t) = k["target"].as_str() {
                    outln!(
                        "  by delegation: the customer publishes {}; dkimd publishes the key at {t}",
                        k["zone_line"].as_str().unwrap_or("")
                    );
                }
                if let Some(a) = k["alarm"].as_str() {
                    outln!("  ALARM: {a}");
                }
            }
        }
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `dkimd status` on a node of a fleet whose store does not answer: what
/// this node's daemon serves (from `STATE_DIR/serving.json`); exit code 1.
pub fn unreachable(
    cfg: &dkimd_core::config::Config,
    e: &dkimd_core::Error,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use dkimd_core::store::snapshot;
    let serving = snapshot::read_serving(&snapshot::serving_path(&cfg.state_dir)).ok();
    let ts = |t: i64| dkimd_core::clock::utc_timestamp(u64::try_from(t).unwrap_or(0));
    let line = match &serving {
        Some(s) => format!(
            "store unreachable since {}, serving snapshot {} (read {}; daemon pid {} on node {})",
            ts(s.unreachable_since.unwrap_or(s.updated)),
            s.snapshot,
            ts(s.saved),
            s.pid,
            s.node
        ),
        None => "store unreachable, and no daemon on this node says what it serves".into(),
    };
    if json {
        print_json(&serde_json::json!({
            "store": "unreachable", "error": e.to_string(),
            "unreachable_since": serving.as_ref().map(|s| ts(s.unreachable_since.unwrap_or(s.updated))),
            "snapshot": serving.as_ref().map(|s| s.snapshot),
            "snapshot_read": serving.as_ref().map(|s| ts(s.saved)),
        }))?;
    } else {
        outln!("{line}");
        outln!("  the store: {e}");
    }
    Ok(ExitCode::from(1))
}

/// The line `status` adds on a node of a fleet: what its daemon serves.
fn serving_line(m: &Manager, version: i64) -> Option<String> {
    use dkimd_core::store::snapshot;
    if !m.store.shared() {
        return None;
    }
    let ts = |t: i64| dkimd_core::clock::utc_timestamp(u64::try_from(t).unwrap_or(0));
    Some(
        match snapshot::read_serving(&snapshot::serving_path(&m.cfg.state_dir)) {
            Ok(s) => match s.unreachable_since {
                Some(t) => format!(
                    "node {}: store unreachable since {} (for its daemon), serving snapshot {}; the store is at {version}",
                    s.node,
                    ts(t),
                    s.snapshot
                ),
                None => format!(
                    "node {}: daemon serves snapshot {}{}",
                    s.node,
                    s.snapshot,
                    if s.snapshot == version {
                        ", the store's latest".to_string()
                    } else {
                        format!(" (the store is at {version})")
                    }
                ),
            },
            Err(_) => "no daemon on this node has said what it serves".into(),
        },
    )
}

/// An age in the largest whole unit: `45s`, `3h`, `12d`.
pub(super) fn age(secs: u64) -> String {
    dkimd_core::clock::short_age(secs)
}
