//! `dkimd status`.
// Indexing here is serde_json::Value["key"], which yields Null for a missing
// key and never panics.
#![allow(clippy::indexing_slicing)]

use super::print_json;
use dkimd::outln;
use dkimd_core::manager::Manager;
use std::process::ExitCode;

/// One row per domain and key with the live DNS state; exit code 1 when
/// DNS does not serve every key.
pub fn show(m: &Manager) -> anyhow::Result<ExitCode> {
    let st = m.load()?;
    let mut problems = 0usize;
    let rows: Vec<serde_json::Value> = m
        .status()?
        .into_iter()
        .map(|d| {
            let keys: Vec<serde_json::Value> = d
                .keys
                .iter()
                .map(|k| {
                    if !k.dns.is_ok() {
                        problems += 1;
                    }
                    serde_json::json!({
                        "selector": k.selector, "algorithm": k.algorithm.as_str(), "bits": k.bits,
                        "own_key": k.own_key, "record_name": k.record_name, "record": k.record,
                        "zone_line": k.zone_line, "dns": k.dns.to_string(),
                    })
                })
                .collect();
            serde_json::json!({ "domain": d.domain, "signs": d.signs, "why": d.why, "keys": keys })
        })
        .collect();
    if m.out.is_json() {
        print_json(&serde_json::json!({
            "signing": st.settings.signing, "selector": st.settings.selector,
            "verify": st.settings.verify, "domains": rows,
        }))?;
    } else {
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
            "{:<28} {:<5} {:<18} {:<12} {:<20} WHY",
            "DOMAIN",
            "SIGNS",
            "SELECTOR",
            "KEY",
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
                    "{domain:<28} {signs:<5} {:<18} {:<12} {:<20} {why}",
                    "-",
                    "-",
                    "-"
                );
            }
            for k in keys {
                outln!(
                    "{domain:<28} {signs:<5} {:<18} {:<12} {:<20} {why}",
                    k["selector"].as_str().unwrap_or(""),
                    format!("{}-{}", k["algorithm"].as_str().unwrap_or(""), k["bits"]),
                    k["dns"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
