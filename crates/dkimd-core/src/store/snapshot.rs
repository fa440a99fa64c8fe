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
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// The file as written: borrowed from the state, streamed to the file, so
/// that a snapshot of 10,000 domains never sits in memory twice.
#[derive(Serialize)]
struct Out<'a> {
    format: &'a str,
    version: i64,
    saved: i64,
    settings: BTreeMap<String, String>,
    domains: Vec<DomainOut<'a>>,
    keys: Vec<KeyOut<'a>>,
    records: Vec<RecordOut<'a>>,
}

#[derive(Serialize)]
struct DomainOut<'a> {
    name: &'a str,
    dns: bool,
    mail: bool,
    dkim: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    delegate: Option<&'a str>,
}

#[derive(Serialize)]
struct KeyOut<'a> {
    id: i64,
    domain: Option<&'a str>,
    algorithm: &'a str,
    bits: usize,
    selector: &'a str,
    pem: &'a str,
    created: i64,
    state: &'a str,
    since: i64,
    served: Option<i64>,
    record: &'a str,
}

#[derive(Serialize)]
struct RecordOut<'a> {
    domain: &'a str,
    name: &'a str,
    value: &'a str,
    backend: &'a str,
    published: i64,
}

/// The file as read back (the same fields, owned).
#[derive(Deserialize)]
struct In {
    version: i64,
    saved: i64,
    settings: BTreeMap<String, String>,
    #[serde(default)]
    domains: Vec<DomainIn>,
    #[serde(default)]
    keys: Vec<KeyIn>,
    #[serde(default)]
    records: Vec<RecordIn>,
}

#[derive(Deserialize)]
struct DomainIn {
    name: String,
    #[serde(default)]
    dns: bool,
    #[serde(default)]
    mail: bool,
    dkim: String,
    #[serde(default)]
    delegate: Option<String>,
}

#[derive(Deserialize)]
struct KeyIn {
    id: i64,
    domain: Option<String>,
    algorithm: String,
    bits: usize,
    selector: String,
    pem: String,
    created: i64,
    state: String,
    since: i64,
    served: Option<i64>,
    record: String,
}

#[derive(Deserialize)]
struct RecordIn {
    domain: String,
    name: String,
    value: String,
    backend: String,
    published: i64,
}

/// Only the format, read first so that another file gets a plain answer.
#[derive(Deserialize)]
struct Head {
    format: Option<String>,
}

/// Writes `state` to `path` (mode 0600, atomically).
pub fn save(path: &Path, state: &State, saved: i64) -> crate::Result<()> {
    let out = Out {
        format: FORMAT,
        version: state.version,
        saved,
        settings: state
            .settings
            .to_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        domains: state
            .domains
            .iter()
            .map(|d| DomainOut {
                name: &d.name,
                dns: d.dns,
                mail: d.mail,
                dkim: d.dkim.as_str(),
                delegate: d.delegate.as_deref(),
            })
            .collect(),
        keys: state
            .keys
            .iter()
            .map(|k| KeyOut {
                id: k.id,
                domain: k.domain.as_deref(),
                algorithm: k.algorithm.as_str(),
                bits: k.bits,
                selector: &k.selector,
                pem: &k.pem,
                created: k.created,
                state: k.state.as_str(),
                since: k.since,
                served: k.served,
                record: &k.record,
            })
            .collect(),
        records: state
            .records
            .iter()
            .map(|r| RecordOut {
                domain: &r.domain,
                name: &r.name,
                value: &r.value,
                backend: &r.backend,
                published: r.published,
            })
            .collect(),
    };
    crate::sys::write_atomic_from(
        path,
        crate::sys::NewFile::mode(0o600),
        |w| Ok(serde_json::to_writer(w, &out)?),
        |_| Ok(()),
    )
}

/// Reads a snapshot [`save`] wrote.
pub fn read(path: &Path) -> crate::Result<Saved> {
    crate::sys::check_private(path, "snapshot")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read snapshot {}", path.display()))?;
    let bad = |what: String| err!("snapshot {}: {what}", path.display());
    let json = |e: serde_json::Error| bad(format!("line {}: {e}", e.line()));
    let head: Head = serde_json::from_str(&text).map_err(json)?;
    if head.format.as_deref() != Some(FORMAT) {
        return Err(bad(format!(
            "not a dkimd snapshot (format is not {FORMAT})"
        )));
    }
    let v: In = serde_json::from_str(&text).map_err(json)?;
    drop(text);
    let mut state = State {
        version: v.version,
        ..State::default()
    };
    for (k, val) in &v.settings {
        state
            .settings
            .set_named(k, val, true)
            .map_err(|e| bad(format!("setting {k}: {e}")))?;
    }
    for d in v.domains {
        state.domains.push(Domain {
            dkim: Override::parse(&d.dkim).map_err(|e| bad(format!("{}: {e}", d.name)))?,
            name: d.name,
            dns: d.dns,
            mail: d.mail,
            delegate: d.delegate,
        });
    }
    for k in v.keys {
        state.keys.push(StoredKey {
            id: k.id,
            domain: k.domain,
            algorithm: k
                .algorithm
                .parse()
                .map_err(|e| bad(format!("key {}: {e}", k.id)))?,
            bits: k.bits,
            selector: k.selector,
            pem: k.pem,
            created: k.created,
            state: KeyState::parse(&k.state).map_err(|e| bad(format!("key {}: {e}", k.id)))?,
            since: k.since,
            served: k.served,
            record: k.record,
        });
    }
    state.records = v
        .records
        .into_iter()
        .map(|r| PublishedRecord {
            domain: r.domain,
            name: r.name,
            value: r.value,
            backend: r.backend,
            published: r.published,
        })
        .collect();
    Ok(Saved {
        state,
        saved: v.saved,
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
            delegate: Some("dkim.example.net".into()),
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
        st.records.push(PublishedRecord {
            domain: "a.example".into(),
            name: "s1._domainkey.a.example".into(),
            value: key.dns_record(),
            backend: "manual".into(),
            published: 4,
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
        assert_eq!(back.state.records, st.records);
        assert!(back.state.settings.signing);
        std::fs::write(&p, "{\"format\": \"x\"}").unwrap();
        let e = read(&p).unwrap_err();
        assert!(e.to_string().contains("not a dkimd snapshot"), "{e}");
    }
}
