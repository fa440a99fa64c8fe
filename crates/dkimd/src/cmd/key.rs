//! `dkimd key show`.
// Indexing here is serde_json::Value["key"], which yields Null for a missing
// key and never panics.
#![allow(clippy::indexing_slicing)]

use super::{print_json, usage};
use anyhow::Context;
use dkimd::outln;
use dkimd_core::manager::Manager;
use dkimd_core::model::names::record_name;
use std::process::ExitCode;

/// The public key, record name and record of a domain's keys.
pub fn show(m: &Manager, domain: &str) -> anyhow::Result<ExitCode> {
    let parsed = match domain.parse::<dkim::DomainName>() {
        Ok(d) => d,
        Err(e) => return usage(e.to_string()),
    };
    let domain = parsed.to_lowercase();
    // The zone's own TTL, as the zone file backend writes it.
    let ttl = m.cfg.ttl_for(&parsed);
    let st = m.load()?;
    let keys = st.keys_for(&domain);
    if keys.is_empty() {
        anyhow::bail!("no key for {domain}: run `dkimd enable` or `dkimd key generate {domain}`");
    }
    let mut rows = Vec::new();
    for k in keys {
        let key = dkim::SigningKey::from_pem(k.pem.as_bytes())
            .with_context(|| format!("stored key {}", k.id))?;
        let record = dkim::KeyRecord::for_key(&key);
        let name = record_name(&k.selector, &domain);
        // A delegated key's record is at its target, behind the
        // customer's CNAME at `name`.
        let location = st.record_location(k, &domain);
        let target = (location != name).then(|| location.clone());
        rows.push(serde_json::json!({
            "domain": domain,
            "own_key": k.domain.is_some(),
            "algorithm": k.algorithm.as_str(),
            "bits": k.bits,
            "selector": k.selector,
            "public_key": key.public_key_base64(),
            "record_name": name,
            "record": record.to_string(),
            "zone_line": record.zone_line(&location, ttl),
            "target": target,
            "cname_line": target.as_ref().map(|t| format!("{name}. IN CNAME {t}.")),
        }));
    }
    if m.out.is_json() {
        return print_json(&serde_json::json!({ "keys": rows }));
    }
    for r in rows {
        outln!(
            "{} key, {} {} bits, selector {}",
            if r["own_key"].as_bool() == Some(true) {
                "own"
            } else {
                "global"
            },
            r["algorithm"].as_str().unwrap_or(""),
            r["bits"],
            r["selector"].as_str().unwrap_or("")
        );
        outln!("  record name: {}", r["record_name"].as_str().unwrap_or(""));
        outln!("  record:      {}", r["record"].as_str().unwrap_or(""));
        outln!("  zone line:   {}", r["zone_line"].as_str().unwrap_or(""));
        if let Some(c) = r["cname_line"].as_str() {
            outln!("  by delegation: the customer publishes {c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
