//! `dkimd export` and `dkimd import`: the store to one file and back,
//! through the manager.
//!
//! An import is one transaction: settings, domains and keys (with their
//! creation times and states) replace the store's, while the store's record
//! of what is published in DNS is kept. Every domain is then brought in
//! line, so that records the import no longer wants, of domains it drops
//! too, are removed from DNS rather than left behind.
// Indexing here is serde_json::Value["key"], which yields Null for a missing
// key and never panics.
#![allow(clippy::indexing_slicing)]

use crate::error::Context;
use crate::manager::Manager;
use crate::model::settings::Override;
use crate::store::{Change, Domain, KeyState, NewKey};
use std::path::Path;

/// The export format's name, checked at import.
const EXPORT_FORMAT: &str = "dkimd-export-2";
/// Exports made before the key lifecycle: no since, served or record.
const EXPORT_FORMAT_1: &str = "dkimd-export-1";

impl Manager {
    /// Writes settings, domains and keys to `file` (mode 0600).
    pub fn export(&mut self, file: &Path) -> crate::Result<()> {
        let st = self.load()?;
        let v = serde_json::json!({
            "format": EXPORT_FORMAT,
            "settings": st.settings.to_pairs().into_iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                .collect::<serde_json::Map<_, _>>(),
            "domains": st.domains.iter().map(|d| serde_json::json!({
                "name": d.name, "dns": d.dns, "mail": d.mail, "dkim": d.dkim.as_str(),
                "delegate": d.delegate }))
                .collect::<Vec<_>>(),
            "keys": st.keys.iter().map(|k| serde_json::json!({
                "domain": k.domain, "algorithm": k.algorithm.as_str(), "bits": k.bits,
                "selector": k.selector, "pem": k.pem, "created": k.created,
                "state": k.state.as_str(), "since": k.since, "served": k.served,
                "record": k.record }))
                .collect::<Vec<_>>(),
        });
        crate::sys::write_atomic(file, serde_json::to_string_pretty(&v)?.as_bytes(), 0o600)?;
        self.out.step(
            "export",
            &format!(
                "{} settings, {} domains, {} keys written to {} (mode 0600)",
                st.settings.to_pairs().len(),
                st.domains.len(),
                st.keys.len(),
                file.display()
            ),
            true,
        );
        Ok(())
    }

    /// Replaces the store with an export, in one transaction, then brings
    /// every domain's records in line (publishing what is wanted, removing
    /// what is not, domains the export lacks included).
    pub fn import(&mut self, file: &Path) -> crate::Result<()> {
        crate::sys::check_private(file, "export file")?;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let now = i64::try_from(self.clock.now()).unwrap_or(0);
        let changes = parse_export(&text, file, now)?;
        let before = self.load()?;
        self.store.apply(&changes)?;
        let st = self.load()?;
        let dropped: Vec<&str> = before
            .domains
            .iter()
            .filter(|d| !st.domains.iter().any(|n| n.name == d.name))
            .map(|d| d.name.as_str())
            .collect();
        self.out.step(
            "import",
            &format!(
                "{} domains and {} keys restored from {}{}",
                st.domains.len(),
                st.keys.len(),
                file.display(),
                if dropped.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; not in the export, so removed: {} (their records go too)",
                        dropped.join(", ")
                    )
                }
            ),
            true,
        );
        self.resync_everything()
    }
}

/// The changes an export stands for, all checked before any is applied;
/// `now` stands in for times an older export does not have.
fn parse_export(text: &str, file: &Path, now: i64) -> crate::Result<Vec<Change>> {
    let bad = |what: &str| crate::Error::Usage(format!("{}: {what}", file.display()));
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| crate::Error::Usage(format!("{}:{}: {e}", file.display(), e.line())))?;
    if v["format"] != EXPORT_FORMAT && v["format"] != EXPORT_FORMAT_1 {
        return Err(bad(&format!(
            "not a dkimd export (format is not {EXPORT_FORMAT} or {EXPORT_FORMAT_1})"
        )));
    }
    let mut changes = vec![Change::ClearAll];
    let mut settings = crate::model::settings::Settings::default();
    for (k, val) in v["settings"]
        .as_object()
        .ok_or_else(|| bad("no settings"))?
    {
        let val = val
            .as_str()
            .ok_or_else(|| bad(&format!("setting {k} is not text")))?;
        settings
            .set_named(k, val, true)
            .map_err(|e| bad(&format!("setting {k}: {e}")))?;
    }
    for (k, val) in settings.to_pairs() {
        changes.push(Change::Setting(k, val));
    }
    for d in v["domains"].as_array().ok_or_else(|| bad("no domains"))? {
        let name = d["name"]
            .as_str()
            .ok_or_else(|| bad("a domain without a name"))?;
        name.parse::<dkim::DomainName>()
            .map_err(|e| bad(&e.to_string()))?;
        changes.push(Change::PutDomain(Domain {
            name: name.to_ascii_lowercase(),
            dns: d["dns"].as_bool().unwrap_or(true),
            mail: d["mail"].as_bool().unwrap_or(true),
            dkim: Override::parse(d["dkim"].as_str().unwrap_or("default")).map_err(|e| bad(&e))?,
            delegate: match d.get("delegate").and_then(|z| z.as_str()) {
                Some(z) => Some(
                    crate::model::names::domain_name(z, crate::error::Field::Domain)
                        .map_err(|e| bad(&format!("{name}: delegate: {e}")))?,
                ),
                None => None,
            },
        }));
    }
    for (i, k) in v["keys"]
        .as_array()
        .ok_or_else(|| bad("no keys"))?
        .iter()
        .enumerate()
    {
        let state = KeyState::parse(k["state"].as_str().unwrap_or("active"))
            .map_err(|e| bad(&format!("key {}: {e}", i + 1)))?;
        let selector = k["selector"]
            .as_str()
            .ok_or_else(|| bad(&format!("key {} has no selector", i + 1)))?;
        let pem = k["pem"].as_str().unwrap_or_default();
        let (algorithm, bits, record) = if state == KeyState::Deleted {
            // Its private key is gone: what the audit keeps is its record.
            let record = k["record"]
                .as_str()
                .ok_or_else(|| bad(&format!("deleted key {} has no record", i + 1)))?;
            dkim::KeyRecord::parse(record)
                .map_err(|e| bad(&format!("key {}: record: {e}", i + 1)))?;
            let algorithm = k["algorithm"]
                .as_str()
                .unwrap_or("rsa")
                .parse::<dkim::KeyAlgorithm>()
                .map_err(|e| bad(&format!("key {}: {e}", i + 1)))?;
            let bits = usize::try_from(k["bits"].as_u64().unwrap_or(0)).unwrap_or(0);
            (algorithm, bits, record.to_string())
        } else {
            if pem.is_empty() {
                return Err(bad(&format!("key {} has no pem", i + 1)));
            }
            let key = dkim::SigningKey::from_pem(pem.as_bytes())
                .map_err(|e| bad(&format!("key {}: {e}", i + 1)))?;
            (key.algorithm(), key.bits(), key.dns_record())
        };
        changes.push(Change::AddKey(NewKey {
            domain: k["domain"].as_str().map(str::to_string),
            algorithm,
            bits,
            selector: selector.to_string(),
            pem: pem.to_string(),
            record,
            // Exports made before creation times were kept have none: now.
            created: Some(k["created"].as_i64().unwrap_or(now)),
            state,
            // dkimd-export-1 has no since: an active key entered its state
            // when it was made, a retired one now (its overlap starts now).
            since: k["since"].as_i64().or(match state {
                KeyState::Retired => Some(now),
                _ => None,
            }),
            served: k["served"].as_i64(),
        }));
    }
    Ok(changes)
}
