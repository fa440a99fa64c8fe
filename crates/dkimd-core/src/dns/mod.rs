//! Key lookups: from a file of records, or from DNS through hickory-resolver.

pub mod authoritative;
pub mod live;

pub use live::DnsState;

use crate::error::Context;
use dkim::LookupError;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Key records answered from memory: a file, or the results of lookups made
/// ahead of verification.
#[derive(Debug, Default)]
pub struct KeyTable(HashMap<String, Result<Vec<String>, LookupError>>);

impl KeyTable {
    /// Reads `NAME<TAB>VALUE` lines; several lines for one name are several
    /// records. Blank lines and lines starting with `#` are skipped.
    pub fn from_file(path: &Path) -> crate::Result<KeyTable> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let line = e
                    .as_bytes()
                    .get(..at)
                    .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
                    + 1;
                return crate::error::usage(format!(
                    "{}:{line}: not UTF-8 text (byte {at} of the file)",
                    path.display()
                ));
            }
        };
        let mut map: HashMap<String, Result<Vec<String>, LookupError>> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('\t') else {
                return crate::error::usage(format!(
                    "{}:{}: expected NAME<TAB>TXT-VALUE, found no tab",
                    path.display(),
                    n + 1
                ));
            };
            let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return crate::error::usage(format!("{}:{}: empty name", path.display(), n + 1));
            }
            let value = unquote(value.trim());
            if let Ok(v) = map.entry(name).or_insert_with(|| Ok(Vec::new())) {
                v.push(value);
            }
        }
        Ok(KeyTable(map))
    }

    /// Looks every name up in DNS, in parallel, each with the resolver's timeout.
    pub async fn resolve(resolver: &TokioResolver, names: Vec<String>) -> KeyTable {
        let mut set = tokio::task::JoinSet::new();
        for name in names {
            let r = resolver.clone();
            set.spawn(async move {
                let res = lookup_txt(&r, &name).await;
                (name, res)
            });
        }
        let mut map = HashMap::new();
        while let Some(joined) = set.join_next().await {
            if let Ok((name, res)) = joined {
                map.insert(name, res);
            }
        }
        KeyTable(map)
    }
}

impl KeyTable {
    /// A table in which every name failed temporarily.
    pub fn temporary(names: &[String], why: &str) -> KeyTable {
        KeyTable(
            names
                .iter()
                .map(|n| (n.clone(), Err(LookupError::Temporary(why.to_string()))))
                .collect(),
        )
    }
}

impl dkim::KeyLookup for KeyTable {
    fn lookup_txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        self.0
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or(Err(LookupError::NotFound))
    }
}

/// Accepts a value written in zone-file style, `"part1" "part2"`, as well as
/// the plain text.
fn unquote(v: &str) -> String {
    if !v.starts_with('"') {
        return v.to_string();
    }
    let mut out = String::new();
    let mut in_q = false;
    let mut esc = false;
    for c in v.chars() {
        match (in_q, esc, c) {
            (true, true, _) => {
                out.push(c);
                esc = false;
            }
            (true, false, '\\') => esc = true,
            (true, false, '"') => in_q = false,
            (true, false, _) => out.push(c),
            (false, _, '"') => in_q = true,
            _ => {}
        }
    }
    out
}

fn builder(
    servers: &[SocketAddr],
) -> crate::Result<hickory_resolver::ResolverBuilder<TokioRuntimeProvider>> {
    if servers.is_empty() {
        return TokioResolver::builder_tokio()
            .context("cannot read the system's DNS configuration");
    }
    let ns = servers
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    let config = ResolverConfig::from_parts(None, vec![], ns);
    Ok(TokioResolver::builder_with_config(
        config,
        TokioRuntimeProvider::default(),
    ))
}

fn build(
    servers: &[SocketAddr],
    timeout: Duration,
    cache_size: u64,
) -> crate::Result<TokioResolver> {
    let mut b = builder(servers)?;
    let opts = b.options_mut();
    opts.timeout = timeout;
    opts.attempts = 2;
    opts.cache_size = cache_size;
    opts.ndots = 0;
    b.build().context("cannot set up the DNS resolver")
}

/// A resolver that asks `servers` (UDP, then TCP) or, with none, the
/// system's configured resolvers. No cache: every lookup asks a server, as
/// the live check and publishing need.
pub fn resolver(servers: &[SocketAddr], timeout: Duration) -> crate::Result<TokioResolver> {
    build(servers, timeout, 0)
}

/// A resolver with a cache that honours record TTLs and negative answers,
/// for the daemon's verification.
pub fn resolver_cached(servers: &[SocketAddr], timeout: Duration) -> crate::Result<TokioResolver> {
    build(servers, timeout, 4096)
}

/// Looks up the TXT records at `name`, joining each record's strings.
pub async fn lookup_txt(resolver: &TokioResolver, name: &str) -> Result<Vec<String>, LookupError> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.lookup(fqdn.as_str(), RecordType::TXT).await {
        Ok(lookup) => {
            let records: Vec<String> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                Err(LookupError::NotFound)
            } else {
                Ok(records)
            }
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Err(LookupError::NotFound),
        Err(e) => Err(LookupError::Temporary(e.to_string())),
    }
}

/// The target of the CNAME at `name` (lower case, no final dot), `None`
/// when there is none.
pub async fn lookup_cname(
    resolver: &TokioResolver,
    name: &str,
) -> Result<Option<String>, LookupError> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.lookup(fqdn.as_str(), RecordType::CNAME).await {
        Ok(lookup) => Ok(lookup.answers().iter().find_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(None),
        Err(e) => Err(LookupError::Temporary(e.to_string())),
    }
}

/// [`lookup_cname`] for many names at once, in order (at most 32 at a time).
pub fn lookup_cnames(
    resolver: &TokioResolver,
    names: Vec<String>,
) -> crate::Result<Vec<Result<Option<String>, LookupError>>> {
    let n = names.len();
    block_on(async move {
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        let mut set = tokio::task::JoinSet::new();
        for (i, name) in names.into_iter().enumerate() {
            let (resolver, limit) = (resolver.clone(), limit.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, lookup_cname(&resolver, &name).await)
            });
        }
        let mut out: Vec<Result<Option<String>, LookupError>> = (0..n)
            .map(|_| Err(LookupError::Temporary(String::new())))
            .collect();
        while let Some(done) = set.join_next().await {
            if let Ok((i, r)) = done {
                if let Some(slot) = out.get_mut(i) {
                    *slot = r;
                }
            }
        }
        out
    })
}

/// Where the CNAMEs at `names` lead, each toward `targets[i]`: the
/// target once a hop names it, else the last name the chain reached
/// (at most 8 hops); `None` when the first name has no CNAME.
pub fn follow_cnames(
    resolver: &TokioResolver,
    names: Vec<String>,
    targets: &[String],
) -> crate::Result<Vec<Result<Option<String>, LookupError>>> {
    let mut found = lookup_cnames(resolver, names)?;
    for _ in 0..7 {
        let hops: Vec<(usize, String)> = found
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match (f, targets.get(i)) {
                (Ok(Some(t)), Some(want)) if !t.eq_ignore_ascii_case(want) => Some((i, t.clone())),
                _ => None,
            })
            .collect();
        if hops.is_empty() {
            break;
        }
        let next = lookup_cnames(resolver, hops.iter().map(|(_, n)| n.clone()).collect())?;
        let mut moved = false;
        for ((i, _), r) in hops.into_iter().zip(next) {
            if let (Ok(Some(t)), Some(slot)) = (r, found.get_mut(i)) {
                *slot = Ok(Some(t));
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    Ok(found)
}

/// The runtime of the synchronous side's DNS (the manager's commands are
/// synchronous; DNS is not): one per process, made on first use.
static RUNTIME: std::sync::OnceLock<std::io::Result<tokio::runtime::Runtime>> =
    std::sync::OnceLock::new();

/// Runs a future to completion on the process's DNS runtime. Safe to call
/// from several threads at once (the web page's blocking handlers).
pub fn block_on<F: std::future::Future>(f: F) -> crate::Result<F::Output> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dkimd-dns")
            .enable_all()
            .build()
    });
    match rt {
        Ok(rt) => Ok(rt.block_on(f)),
        Err(e) => Err(crate::Error::Dns(format!(
            "cannot start the async runtime: {e}"
        ))),
    }
}

/// Looks up TXT records synchronously.
pub fn lookup_txt_blocking(
    resolver: &TokioResolver,
    name: &str,
) -> Result<Vec<String>, LookupError> {
    block_on(lookup_txt(resolver, name))
        .unwrap_or_else(|e| Err(LookupError::Temporary(e.to_string())))
}

/// The SOA serial a server gives for `zone`.
pub fn soa_serial_blocking(resolver: &TokioResolver, zone: &str) -> Option<u32> {
    let fqdn = format!("{}.", zone.trim_end_matches('.'));
    block_on(async {
        let lookup = resolver.lookup(fqdn.as_str(), RecordType::SOA).await.ok()?;
        lookup.answers().iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquotes_zone_strings() {
        assert_eq!(unquote("\"v=DKIM1; \" \"p=AB\""), "v=DKIM1; p=AB");
        assert_eq!(unquote("v=DKIM1; p=AB"), "v=DKIM1; p=AB");
        assert_eq!(unquote(r#""a\"b""#), "a\"b");
    }
}
