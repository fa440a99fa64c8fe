//! A node's local snapshot of a shared store: the last state it read,
//! keys included (mode 0600, written atomically), so that a daemon keeps
//! signing and verifying while the store's server is unreachable, and
//! starts from it when the server is down at boot.
// Indexing here is serde_json::Value["key"], which yields Null for a
// missing key and never panics.
#![allow(clippy::indexing_slicing)]

use super::{Domain, KeyState, PublishedRecord, State, StoredKey};
use crate::error::{err, Context};
use crate::model::settings::Override;
use std::path::{Path, PathBuf};

const FORMAT: &str = "dkimd-snapshot-1";

/// The snapshot file of a state directory.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("snapshot.json")
}

/// A snapshot as read back.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The state.
    pub state: State,
    /// When it was written (epoch seconds).
    pub saved: i64,
}

/// Writes `state` to `path` (mode 0600, atomically).
pub fn save(path: &Path, state: &State, saved: i64) -> crate::Result<()> {
    let v = serde_json::json!({
        "format": FORMAT,
        "version": state.version,
        "saved": saved,
        "settings": state.settings.to_pairs().into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect::<serde_json::Map<_, _>>(),
        "domains": state.domains.iter().map(|d| serde_json::json!({
            "name": d.name, "dns": d.dns, "mail": d.mail, "dkim": d.dkim.as_str() }))
            .collect::<Vec<_>>(),
        "keys": state.keys.iter().map(|k| serde_json::json!({
            "id": k.id, "domain": k.domain, "algorithm": k.algorithm.as_str(), "bits": k.bits,
            "selector": k.selector, "pem": k.pem, "created": k.created,
            "state": k.state.as_str(), "since": k.since, "served": k.served,
            "record": k.record }))
            .collect::<Vec<_>>(),
        "records": state.records.iter().map(|r| serde_json::json!({
            "domain": r.domain, "name": r.name, "value": r.value,
            "backend": r.backend, "published": r.published }))
            .collect::<Vec<_>>(),
    });
    crate::sys::write_atomic(path, serde_json::to_string(&v)?.as_bytes(), 0o600)
}

/// Reads a snapshot [`save`] wrote.
pub fn read(path: &Path) -> crate::Result<Saved> {
    crate::sys::check_private(path, "snapshot")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read snapshot {}", path.display()))?;
    let bad = |what: String| err!("snapshot {}: {what}", path.display());
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("line {}: {e}", e.line())))?;
    if v["format"] != FORMAT {
        return Err(bad(format!(
            "not a dkimd snapshot (format is not {FORMAT})"
        )));
    }
    let int = |x: &serde_json::Value, what: &str| {
        x.as_i64()
            .ok_or_else(|| bad(format!("{what} is not a number")))
    };
    let text = |x: &serde_json::Value, what: &str| {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(format!("{what} is not text")))
    };
    let mut state = State {
        version: int(&v["version"], "version")?,
        ..State::default()
    };
    for (k, val) in v["settings"]
        .as_object()
        .ok_or_else(|| bad("no settings".into()))?
    {
        let val = text(val, k)?;
        state
            .settings
            .set_named(k, &val, true)
            .map_err(|e| bad(format!("setting {k}: {e}")))?;
    }
    for d in v["domains"].as_array().into_iter().flatten() {
        state.domains.push(Domain {
            name: text(&d["name"], "domain name")?,
            dns: d["dns"].as_bool().unwrap_or(false),
            mail: d["mail"].as_bool().unwrap_or(false),
            dkim: Override::parse(&text(&d["dkim"], "dkim")?).map_err(|e| bad(e.to_string()))?,
        });
    }
    for k in v["keys"].as_array().into_iter().flatten() {
        state.keys.push(StoredKey {
            id: int(&k["id"], "key id")?,
            domain: k["domain"].as_str().map(str::to_string),
            algorithm: text(&k["algorithm"], "algorithm")?
                .parse()
                .map_err(|e| bad(format!("{e}")))?,
            bits: usize::try_from(int(&k["bits"], "bits")?).unwrap_or(0),
            selector: text(&k["selector"], "selector")?,
            pem: text(&k["pem"], "pem")?,
            created: int(&k["created"], "created")?,
            state: KeyState::parse(&text(&k["state"], "state")?).map_err(|e| bad(e.to_string()))?,
            since: int(&k["since"], "since")?,
            served: k["served"].as_i64(),
            record: text(&k["record"], "record")?,
        });
    }
    for r in v["records"].as_array().into_iter().flatten() {
        state.records.push(PublishedRecord {
            domain: text(&r["domain"], "record domain")?,
            name: text(&r["name"], "record name")?,
            value: text(&r["value"], "record value")?,
            backend: text(&r["backend"], "backend")?,
            published: int(&r["published"], "published")?,
        });
    }
    Ok(Saved {
        state,
        saved: int(&v["saved"], "saved")?,
    })
}

/// What a node's daemon serves, written beside its snapshot for
/// `dkimd status` on that node (which may not reach the store either).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serving {
    /// The node's name.
    pub node: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The store version of the snapshot it signs from.
    pub snapshot: i64,
    /// When that snapshot was read from the store (epoch seconds).
    pub saved: i64,
    /// Since when the store has not answered; `None` while it does.
    pub unreachable_since: Option<i64>,
    /// Whether it is the fleet's worker.
    pub worker: bool,
    /// When this was written (epoch seconds).
    pub updated: i64,
}

/// The file [`Serving`] is written to in a state directory.
pub fn serving_path(state_dir: &Path) -> PathBuf {
    state_dir.join("serving.json")
}

/// Writes what the daemon serves (mode 0600, atomically).
pub fn write_serving(path: &Path, s: &Serving) -> crate::Result<()> {
    let v = serde_json::json!({
        "node": s.node, "pid": s.pid, "snapshot": s.snapshot, "saved": s.saved,
        "unreachable_since": s.unreachable_since, "worker": s.worker, "updated": s.updated,
    });
    crate::sys::write_atomic(path, serde_json::to_string(&v)?.as_bytes(), 0o600)
}

/// Reads what [`write_serving`] wrote.
pub fn read_serving(path: &Path) -> crate::Result<Serving> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| err!("{}: line {}: {e}", path.display(), e.line()))?;
    Ok(Serving {
        node: v["node"].as_str().unwrap_or("").to_string(),
        pid: u32::try_from(v["pid"].as_u64().unwrap_or(0)).unwrap_or(0),
        snapshot: v["snapshot"].as_i64().unwrap_or(0),
        saved: v["saved"].as_i64().unwrap_or(0),
        unreachable_since: v["unreachable_since"].as_i64(),
        worker: v["worker"].as_bool().unwrap_or(false),
        updated: v["updated"].as_i64().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_in(dir.path());
        let key = dkim::SigningKey::generate_ed25519().unwrap();
        let mut st = State {
            version: 42,
            ..State::default()
        };
        st.settings.signing = true;
        st.domains.push(Domain {
            name: "a.example".into(),
            dns: true,
            mail: true,
            dkim: Override::Always,
        });
        st.keys.push(StoredKey {
            id: 7,
            domain: Some("a.example".into()),
            algorithm: key.algorithm(),
            bits: key.bits(),
            selector: "s1".into(),
            pem: key.to_pem().unwrap(),
            created: 1,
            state: KeyState::Active,
            since: 2,
            served: Some(3),
            record: key.dns_record(),
        });
        save(&p, &st, 99).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = read(&p).unwrap();
        assert_eq!(back.saved, 99);
        assert_eq!(back.state.version, 42);
        assert_eq!(back.state.domains, st.domains);
        assert_eq!(back.state.keys, st.keys);
        assert!(back.state.settings.signing);
        std::fs::write(&p, "{\"format\": \"x\"}").unwrap();
        let e = read(&p).unwrap_err();
        assert!(e.to_string().contains("not a dkimd snapshot"), "{e}");
    }
}
