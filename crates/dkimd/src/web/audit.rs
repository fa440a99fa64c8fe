//! The audit log: one JSON object per line for every change and login,
//! appended to a file only root (or the service user) can read.

use crate::manage::StepLine;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// The most of the log's end that the "recent changes" view reads.
pub const TAIL_BYTES: u64 = 256 * 1024;

/// The longest detail or step line written to the log.
const MAX_FIELD: usize = 2000;

/// The longest field shown in the "recent changes" view.
const SHOWN_FIELD: usize = 200;

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
        // Every field is bounded, whatever a request carried.
        let v = serde_json::json!({
            "time": crate::publish::utc_timestamp(now),
            "user": super::cut(e.user, super::MAX_USER_NAME),
            "remote": super::cut(e.remote, 64),
            "action": super::cut(e.action, 64),
            "detail": super::cut(e.detail, MAX_FIELD),
            "ok": e.ok,
            "steps": e.steps.iter().map(|s| super::cut(&s.to_string(), MAX_FIELD)).collect::<Vec<_>>(),
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

    /// The last `n` entries, newest first, as (time, user, action, detail,
    /// ok). Only the log's last [`TAIL_BYTES`] are read, and every field is
    /// cut, so that the page stays small whatever the log holds.
    pub fn tail(&self, n: usize) -> Vec<(String, String, String, String, bool)> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(TAIL_BYTES);
        if f.seek(SeekFrom::Start(start)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        if f.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(&bytes);
        // A line cut by the start of the window is not an entry.
        let mut lines: Vec<&str> = text.lines().collect();
        if start > 0 && !lines.is_empty() {
            lines.remove(0);
        }
        lines
            .into_iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .take(n)
            .map(|v| {
                let s = |k: &str| {
                    super::cut(v.get(k).and_then(|x| x.as_str()).unwrap_or(""), SHOWN_FIELD)
                };
                let ok = v
                    .get("ok")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                (s("time"), s("user"), s("action"), s("detail"), ok)
            })
            .collect()
    }
}
