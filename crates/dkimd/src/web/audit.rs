//! The audit log: one JSON object per line for every change and login,
//! appended to a file only root (or the service user) can read.

use crate::manage::StepLine;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// Appends entries to the audit log.
#[derive(Clone, Debug)]
pub struct Audit {
    path: PathBuf,
}

/// One entry: who, from where, what, and how it went.
pub struct Entry<'a> {
    pub user: &'a str,
    pub remote: &'a str,
    pub action: &'a str,
    pub detail: &'a str,
    pub ok: bool,
    pub steps: &'a [StepLine],
}

impl Audit {
    pub fn new(path: PathBuf) -> Audit {
        Audit { path }
    }

    /// Writes one entry (one `write` of one line, so concurrent writers
    /// never interleave). Failing to write is reported, not fatal.
    pub fn write(&self, e: &Entry<'_>) -> anyhow::Result<()> {
        let now = crate::cli::now();
        let v = serde_json::json!({
            "time": crate::publish::utc_timestamp(now),
            "user": e.user,
            "remote": e.remote,
            "action": e.action,
            "detail": e.detail,
            "ok": e.ok,
            "steps": e.steps.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        let mut line = serde_json::to_string(&v)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|err| {
                anyhow::anyhow!("cannot open audit log {}: {err}", self.path.display())
            })?;
        f.write_all(line.as_bytes())
            .map_err(|err| anyhow::anyhow!("cannot write audit log {}: {err}", self.path.display()))
    }

    /// The last `n` entries, newest first, as (time, user, action, detail, ok).
    pub fn tail(&self, n: usize) -> Vec<(String, String, String, String, bool)> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .take(n)
            .map(|v| {
                let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                let ok = v
                    .get("ok")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                (s("time"), s("user"), s("action"), s("detail"), ok)
            })
            .collect()
    }
}
