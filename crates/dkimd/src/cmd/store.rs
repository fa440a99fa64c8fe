//! `dkimd store …` and `dkimd nodes`: copying the store, its
//! key-encryption key, and the daemons that share it.
// Indexing here is serde_json::Value["key"], which yields Null for a missing
// key and never panics.
#![allow(clippy::indexing_slicing)]

use super::{print_json, usage};
use crate::cli::StoreCmd;
use dkimd::outln;
use dkimd_core::config::{Config, StoreUrl};
use dkimd_core::store::{kek::Kek, AuditEntry};
use std::process::ExitCode;

/// Runs a `dkimd store` subcommand.
pub fn run(cmd: StoreCmd, cfg: Config, json: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCmd::NewKeyFile { path } => {
            let k = Kek::create(&path)?;
            if json {
                return print_json(&serde_json::json!({ "file": path, "id": k.id() }));
            }
            outln!(
                "key-encryption key {} written to {} (mode 0600)",
                k.id(),
                path.display()
            );
            outln!("  copy it to every node (store.key_file), and keep a backup apart from the database's");
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Rekey => {
            let mut store = dkimd_core::store::open(&cfg)?;
            let n = store.rekey()?;
            audit(
                store.as_ref(),
                "store rekey",
                &format!("{n} keys sealed again"),
            );
            if json {
                return print_json(&serde_json::json!({ "resealed": n }));
            }
            outln!(
                "{n} private keys sealed again with {}; once every node has the new key_file, remove store.previous_key_file",
                cfg.store
                    .key_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Migrate { to } => {
            let target = match StoreUrl::parse(&to) {
                Ok(u) => u,
                Err(e) => return usage(format!("--to: {e}")),
            };
            let source = cfg.store.url_in(&cfg.state_dir);
            if source == target {
                return usage(format!("--to {to} is the configured store itself"));
            }
            let from = dkimd_core::store::open(&cfg)?;
            let mut into = dkimd_core::store::open_url(&cfg, &target)?;
            let c = dkimd_core::store::copy_into(from.as_ref(), into.as_mut())?;
            let what = format!(
                "{} settings, {} domains, {} keys, {} published records and {} admin users copied from {} to {}",
                c.settings,
                c.domains,
                c.keys,
                c.records,
                c.admins,
                from.location(),
                into.location()
            );
            audit(from.as_ref(), "store migrate", &what);
            audit(into.as_ref(), "store migrate", &what);
            if json {
                return print_json(&serde_json::json!({
                    "settings": c.settings, "domains": c.domains, "keys": c.keys,
                    "records": c.records, "admins": c.admins, "to": target.display(),
                }));
            }
            outln!("{what}");
            outln!(
                "  to use it, set [store] url = \"{}\" in the configuration of every node and restart their daemons",
                target.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn audit(store: &dyn dkimd_core::store::Store, action: &str, detail: &str) {
    let _ = store.audit(&AuditEntry {
        user: &format!("cli:{}", dkimd_core::sys::current_user()),
        remote: "local",
        action,
        detail,
        ok: true,
        steps: &[],
    });
}

/// `dkimd nodes`: every daemon that heartbeats in the store, flagged when
/// silent (no heartbeat for three intervals) or serving an old snapshot
/// (the store changed two intervals ago and it still reports an older
/// version); exit code 1 when one is flagged.
pub fn nodes(cfg: Config, json: bool) -> anyhow::Result<ExitCode> {
    let store = dkimd_core::store::open(&cfg)?;
    let Some(n) = store.nodes()? else {
        if json {
            return print_json(&serde_json::json!({ "shared": false, "nodes": [] }));
        }
        outln!(
            "the store {} is this machine's alone (SQLite): there is no fleet to list",
            store.location()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let mut flagged = 0;
    let rows: Vec<serde_json::Value> = n
        .rows
        .iter()
        .map(|r| {
            let quiet = n.now.saturating_sub(r.seen);
            let problem = n.problem(r, cfg.store.heartbeat);
            if problem.is_some() {
                flagged += 1;
            }
            serde_json::json!({
                "name": r.beat.name, "host": r.beat.host, "version": r.beat.version,
                "snapshot": r.beat.snapshot, "seen_seconds_ago": quiet,
                "worker": n.is_worker(r, cfg.store.heartbeat), "problem": problem,
            })
        })
        .collect();
    if json {
        print_json(&serde_json::json!({
            "shared": true, "store_version": n.version, "nodes": rows,
        }))?;
    } else {
        outln!(
            "{:<20} {:<20} {:<8} {:<9} {:<9} {:<6} STATE",
            "NODE",
            "HOST",
            "VERSION",
            "SNAPSHOT",
            "SEEN",
            "WORKER"
        );
        for r in &rows {
            outln!(
                "{:<20} {:<20} {:<8} {:<9} {:<9} {:<6} {}",
                r["name"].as_str().unwrap_or(""),
                r["host"].as_str().unwrap_or(""),
                r["version"].as_str().unwrap_or(""),
                r["snapshot"].as_i64().unwrap_or(0),
                format!(
                    "{} ago",
                    super::status::age(r["seen_seconds_ago"].as_u64().unwrap_or(0))
                ),
                if r["worker"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                r["problem"].as_str().unwrap_or("ok")
            );
        }
        outln!("store version {}", n.version);
    }
    Ok(if flagged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
