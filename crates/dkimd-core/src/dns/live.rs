//! The live check: what DNS serves at a key's record name, compared with
//! the key, as a [`DnsState`].

use super::lookup_txt;
use hickory_resolver::TokioResolver;
use std::fmt;

/// What DNS serves for one key's record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsState {
    /// Exactly one record, carrying the key.
    Ok,
    /// No record at the name.
    Missing,
    /// One record (or several), none carrying the key.
    Mismatch,
    /// Several records; one of them carries the key.
    Multiple(usize),
    /// Several records, none carrying the key.
    MultipleNoneMatches(usize),
    /// Our Ed25519 key, published wrapped in SubjectPublicKeyInfo (44
    /// bytes): receivers refuse it (RFC 8463 wants the bare key).
    WrongForm,
    /// The lookup failed (timeout, SERVFAIL …), with why.
    LookupFailed(String),
    /// Not looked up (the key does not sign).
    NotChecked,
    /// Publishing by delegation: the customer's name has no CNAME; it
    /// must point at this target.
    CnameMissing {
        /// The name receivers look up (`s1._domainkey.D`).
        name: String,
        /// Where its CNAME must point (`s1.D.ZONE`).
        target: String,
    },
    /// Publishing by delegation: the customer's CNAME points elsewhere.
    CnameElsewhere {
        /// The name receivers look up.
        name: String,
        /// Where it points.
        found: String,
        /// Where it must point.
        target: String,
    },
    /// Publishing by delegation: the customer's CNAME is right, but its
    /// target, in dkimd's zone, does not serve the key.
    TargetWrong {
        /// The target.
        target: String,
        /// What it serves ("missing", "mismatch" …).
        state: String,
    },
}

impl DnsState {
    /// True when DNS serves exactly the key.
    pub fn is_ok(&self) -> bool {
        matches!(self, DnsState::Ok)
    }
}

impl DnsState {
    /// The state as the live-check cache writes it.
    pub fn to_code(&self) -> String {
        match self {
            DnsState::Ok => "ok".into(),
            DnsState::Missing => "missing".into(),
            DnsState::Mismatch => "mismatch".into(),
            DnsState::Multiple(n) => format!("multiple:{n}"),
            DnsState::MultipleNoneMatches(n) => format!("multiple-none:{n}"),
            DnsState::WrongForm => "wrong-form".into(),
            DnsState::LookupFailed(why) => format!("failed:{why}"),
            DnsState::NotChecked => "not-checked".into(),
            DnsState::CnameMissing { name, target } => format!("cname-missing:{name}>{target}"),
            DnsState::CnameElsewhere {
                name,
                found,
                target,
            } => format!("cname-elsewhere:{name}>{found}>{target}"),
            DnsState::TargetWrong { target, state } => format!("target:{target}>{state}"),
        }
    }

    /// Reads what [`DnsState::to_code`] wrote; `None` for anything else.
    pub fn from_code(s: &str) -> Option<DnsState> {
        Some(match s {
            "ok" => DnsState::Ok,
            "missing" => DnsState::Missing,
            "mismatch" => DnsState::Mismatch,
            "wrong-form" => DnsState::WrongForm,
            "not-checked" => DnsState::NotChecked,
            _ => {
                if let Some(rest) = s.strip_prefix("cname-missing:") {
                    let (name, target) = rest.split_once('>')?;
                    DnsState::CnameMissing {
                        name: name.into(),
                        target: target.into(),
                    }
                } else if let Some(rest) = s.strip_prefix("cname-elsewhere:") {
                    let mut p = rest.splitn(3, '>');
                    DnsState::CnameElsewhere {
                        name: p.next()?.into(),
                        found: p.next()?.into(),
                        target: p.next()?.into(),
                    }
                } else if let Some(rest) = s.strip_prefix("target:") {
                    let (target, state) = rest.split_once('>')?;
                    DnsState::TargetWrong {
                        target: target.into(),
                        state: state.into(),
                    }
                } else if let Some(n) = s.strip_prefix("multiple:") {
                    DnsState::Multiple(n.parse().ok()?)
                } else if let Some(n) = s.strip_prefix("multiple-none:") {
                    DnsState::MultipleNoneMatches(n.parse().ok()?)
                } else {
                    DnsState::LookupFailed(s.strip_prefix("failed:")?.to_string())
                }
            }
        })
    }
}

/// The live check's results as a daemon keeps them for `dkimd status`:
/// (record name, record) → what DNS served, and when it was looked at.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    /// When the lookups ran (epoch seconds).
    pub checked: i64,
    /// By record name and [`Cache::digest`] of the record looked for.
    pub states: std::collections::HashMap<(String, String), DnsState>,
}

impl Cache {
    /// A short digest of a record (the cache keeps no copy of 20,000
    /// records of 400 bytes).
    pub fn digest(record: &str) -> String {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, record.as_bytes())
            .as_ref()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// What the cache says DNS served for `record` at `name`.
    pub fn get(&self, name: &str, record: &str) -> Option<&DnsState> {
        self.states.get(&(name.to_string(), Cache::digest(record)))
    }

    /// Remembers what DNS served for `record` at `name`.
    pub fn put(&mut self, name: &str, record: &str, state: DnsState) {
        self.states
            .insert((name.to_string(), Cache::digest(record)), state);
    }

    /// The cache file of a state directory.
    pub fn path_in(state_dir: &std::path::Path) -> std::path::PathBuf {
        state_dir.join("live.json")
    }

    /// Writes the cache (mode 0600, atomically).
    pub fn save(&self, path: &std::path::Path) -> crate::Result<()> {
        let rows: Vec<serde_json::Value> = self
            .states
            .iter()
            .map(|((n, r), st)| serde_json::json!([n, r, st.to_code()]))
            .collect();
        let v = serde_json::json!({ "checked": self.checked, "states": rows });
        crate::sys::write_atomic(path, serde_json::to_string(&v)?.as_bytes(), 0o600)
    }

    /// Reads a cache written at most `max_age` seconds before `now`;
    /// `None` when there is none, it is older, or it does not parse.
    pub fn load_fresh(path: &std::path::Path, now: i64, max_age: i64) -> Option<Cache> {
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let checked = v.get("checked")?.as_i64()?;
        if now.saturating_sub(checked) > max_age || checked > now + 60 {
            return None;
        }
        let mut states = std::collections::HashMap::new();
        for row in v.get("states")?.as_array()? {
            let a = row.as_array()?;
            let (n, r, c) = (
                a.first()?.as_str()?,
                a.get(1)?.as_str()?,
                a.get(2)?.as_str()?,
            );
            states.insert((n.to_string(), r.to_string()), DnsState::from_code(c)?);
        }
        Some(Cache { checked, states })
    }
}

/// The words of [`DnsState::WrongForm`].
pub const WRONG_FORM: &str = "wrong form: the Ed25519 key is published in SubjectPublicKeyInfo form (44 bytes), which receivers reject; RFC 8463 requires the bare 32-byte key: publish the record shown";

impl fmt::Display for DnsState {
    /// The words `dkimd status` prints (and `--json` carries).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsState::Ok => f.write_str("ok"),
            DnsState::Missing => f.write_str("missing"),
            DnsState::Mismatch => f.write_str("mismatch"),
            DnsState::Multiple(n) => write!(f, "multiple records ({n})"),
            DnsState::MultipleNoneMatches(n) => {
                write!(f, "multiple records ({n}), none matches")
            }
            DnsState::WrongForm => f.write_str(WRONG_FORM),
            DnsState::LookupFailed(why) if why.is_empty() => f.write_str("lookup failed"),
            DnsState::LookupFailed(why) => write!(f, "lookup failed: {why}"),
            DnsState::NotChecked => f.write_str(""),
            DnsState::CnameMissing { name, target } => write!(
                f,
                "the customer's CNAME is missing: publish {name}. CNAME {target}. in its zone"
            ),
            DnsState::CnameElsewhere {
                name,
                found,
                target,
            } => write!(
                f,
                "the customer's CNAME points elsewhere ({name} → {found}): change it to {name}. CNAME {target}."
            ),
            DnsState::TargetWrong { target, state } => write!(
                f,
                "the customer's CNAME is right, but its target {target} serves: {state} (dkimd publishes it: see `dkimd enable`)"
            ),
        }
    }
}

/// Compares the TXT records DNS served at a name with the record of our key.
pub fn compare(served: &[String], record: &str) -> DnsState {
    let want = dkim::KeyRecord::parse(record)
        .map(|r| r.public_key)
        .unwrap_or_default();
    let parsed: Vec<Option<dkim::KeyRecord>> = served
        .iter()
        .map(|r| dkim::KeyRecord::parse(r).ok())
        .collect();
    let matching = parsed
        .iter()
        .filter(|k| k.as_ref().map(|k| &k.public_key) == Some(&want))
        .count();
    let wrapped = parsed.iter().flatten().any(|k| {
        matches!(
            k.key_type,
            dkim::KeyType::Known(dkim::KeyAlgorithm::Ed25519)
        ) && dkim::ed25519_spki_inner(&k.public_key) == Some(&want[..])
    });
    if wrapped && matching == 0 {
        return DnsState::WrongForm;
    }
    match (served.len(), matching) {
        (1, 1) => DnsState::Ok,
        (n, m) if n > 1 && m > 0 => DnsState::Multiple(n),
        (n, _) if n > 1 => DnsState::MultipleNoneMatches(n),
        _ => DnsState::Mismatch,
    }
}

/// What DNS serves for one key, compared with the key.
pub async fn check(resolver: &TokioResolver, name: &str, record: &str) -> DnsState {
    match lookup_txt(resolver, name).await {
        Err(dkim::LookupError::NotFound) => DnsState::Missing,
        Err(e) => DnsState::LookupFailed(e.to_string()),
        Ok(records) => compare(&records, record),
    }
}

/// The live state of many records at once, in order: at most 32 lookups
/// run at a time, each under the resolver's timeout.
pub fn check_many(
    resolver: &TokioResolver,
    checks: Vec<(String, String)>,
) -> crate::Result<Vec<DnsState>> {
    let n = checks.len();
    super::block_on(async move {
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        let mut set = tokio::task::JoinSet::new();
        for (i, (name, record)) in checks.into_iter().enumerate() {
            let (resolver, limit) = (resolver.clone(), limit.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, check(&resolver, &name, &record).await)
            });
        }
        let mut out = vec![DnsState::LookupFailed(String::new()); n];
        while let Some(done) = set.join_next().await {
            if let Ok((i, state)) = done {
                if let Some(slot) = out.get_mut(i) {
                    *slot = state;
                }
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_before() {
        let key = dkim::SigningKey::generate_ed25519().unwrap();
        let rec = key.dns_record();
        assert_eq!(compare(std::slice::from_ref(&rec), &rec), DnsState::Ok);
        assert_eq!(
            compare(&[rec.clone(), "v=DKIM1; p=".into()], &rec).to_string(),
            "multiple records (2)"
        );
        assert_eq!(
            compare(&["v=DKIM1; k=ed25519; p=AAAA".into()], &rec),
            DnsState::Mismatch
        );
        assert_eq!(
            compare(&["a".into(), "b".into()], &rec).to_string(),
            "multiple records (2), none matches"
        );
        assert_eq!(
            DnsState::LookupFailed("timed out".into()).to_string(),
            "lookup failed: timed out"
        );
        assert_eq!(DnsState::Missing.to_string(), "missing");
        for s in [
            DnsState::CnameMissing {
                name: "s1._domainkey.c.example".into(),
                target: "s1.c.example.dkim.example.net".into(),
            },
            DnsState::CnameElsewhere {
                name: "s1._domainkey.c.example".into(),
                found: "elsewhere.example".into(),
                target: "s1.c.example.dkim.example.net".into(),
            },
            DnsState::TargetWrong {
                target: "s1.c.example.dkim.example.net".into(),
                state: "mismatch".into(),
            },
        ] {
            assert_eq!(DnsState::from_code(&s.to_code()), Some(s));
        }
    }
}
