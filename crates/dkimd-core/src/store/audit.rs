//! The audit trail of the embedded store: one JSON object per line for
//! every change and login, appended to a file only root (or the service
//! user) can read.

use crate::model::cut;
use std::io::Write;
use std::path::PathBuf;

/// The most of the log's end that the "recent changes" view reads.
pub const TAIL_BYTES: u64 = 256 * 1024;

/// The longest detail or step line written to the log.
pub(crate) const MAX_FIELD: usize = 2000;

/// The longest field shown in the "recent changes" view.
pub(crate) const SHOWN_FIELD: usize = 200;

/// The longest user name written to the log.
pub const MAX_USER_NAME: usize = 64;

/// Appends entries to the audit log file.
#[derive(Clone, Debug)]
pub(crate) struct AuditFile {
    path: PathBuf,
}

/// One entry: who, from where, what, and how it went.
#[derive(Clone, Copy, Debug)]
pub struct AuditEntry<'a> {
    /// The admin (a web user, or the Unix user of a command).
    pub user: &'a str,
    /// Where the change came from (an address, "cli").
    pub remote: &'a str,
    /// What was done (`enable`, `login`, …).
    pub action: &'a str,
    /// The arguments, in words.
    pub detail: &'a str,
    /// Whether it worked.
    pub ok: bool,
    /// The steps it reported, each as the command line prints it.
    pub steps: &'a [String],
}

/// One entry as the "recent changes" view shows it (every field cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    /// RFC 3339 UTC time.
    pub time: String,
    /// Who.
    pub user: String,
    /// What.
    pub action: String,
    /// The arguments.
    pub detail: String,
    /// Whether it worked.
    pub ok: bool,
}

impl AuditFile {
    pub(crate) fn new(path: PathBuf) -> AuditFile {
        AuditFile { path }
    }

    /// Writes one entry (one `write` of one line, so concurrent writers
    /// never interleave). Failing to write is reported, not fatal.
    pub(crate) fn write(&self, e: &AuditEntry<'_>) -> crate::Result<()> {
        let now = crate::clock::now();
        // Every field is bounded, whatever a request carried.
        let v = serde_json::json!({
            "time": crate::clock::utc_timestamp(now),
            "user": cut(e.user, MAX_USER_NAME),
            "remote": cut(e.remote, 64),
            "action": cut(e.action, 64),
            "detail": cut(e.detail, MAX_FIELD),
            "ok": e.ok,
            "steps": e.steps.iter().map(|s| cut(s, MAX_FIELD)).collect::<Vec<_>>(),
        });
        let mut line = serde_json::to_string(&v)?;
        line.push('\n');
        let mut f = crate::sys::open_append_no_links(&self.path, 0o600).map_err(|err| {
            crate::error::err!("cannot open audit log {}: {err}", self.path.display())
        })?;
        // Run as root, a command leaves the log to the state directory's
        // owner, or the daemon could no longer write it.
        if let Some((uid, gid)) = self.path.parent().and_then(crate::sys::state_owner) {
            use std::os::unix::fs::MetadataExt;
            if f.metadata().is_ok_and(|m| m.uid() != uid) {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|err| {
                    crate::error::err!(
                        "cannot give audit log {} to the state directory's owner: {err}",
                        self.path.display()
                    )
                })?;
            }
        }
        f.write_all(line.as_bytes()).map_err(|err| {
            crate::error::err!("cannot write audit log {}: {err}", self.path.display())
        })
    }

    /// The last `n` entries, newest first, as (time, user, action, detail,
    /// ok). Only the log's last [`TAIL_BYTES`] are read, and every field is
    /// cut, so that the page stays small whatever the log holds.
    pub(crate) fn recent(&self, n: usize) -> crate::Result<Vec<AuditRow>> {
        Ok(self.tail(n))
    }

    fn tail(&self, n: usize) -> Vec<AuditRow> {
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
                let s = |k: &str| cut(v.get(k).and_then(|x| x.as_str()).unwrap_or(""), SHOWN_FIELD);
                let ok = v
                    .get("ok")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                AuditRow {
                    time: s("time"),
                    user: s("user"),
                    action: s("action"),
                    detail: s("detail"),
                    ok,
                }
            })
            .collect()
    }
}
