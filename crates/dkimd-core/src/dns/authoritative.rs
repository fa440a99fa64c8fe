//! The servers that are the truth for a zone: found from its NS records (or
//! named for the zone in the configuration), each asked directly and
//! without a cache. A key may sign only when every one of them serves its
//! record: a resolver somewhere may ask any of them.

use super::live::{compare, DnsState};
use super::{lookup_txt, resolver};
use crate::error::{Error, Result};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use std::net::SocketAddr;
use std::time::Duration;

/// One authoritative server and what it serves for a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    /// The server, as NS name and address (or the configured address).
    pub server: String,
    /// What it serves, compared with the key.
    pub state: DnsState,
}

/// The authoritative servers of `zone`: `configured` when the configuration
/// names them (a split horizon, servers on other ports), else every address
/// of every name in the zone's NS RRset, on port 53, looked up through
/// `resolver`.
pub async fn servers(
    resolver: &TokioResolver,
    zone: &str,
    configured: &[SocketAddr],
) -> Result<Vec<(String, SocketAddr)>> {
    if !configured.is_empty() {
        return Ok(configured.iter().map(|a| (a.to_string(), *a)).collect());
    }
    let fqdn = format!("{}.", zone.trim_end_matches('.'));
    let ns = resolver
        .lookup(fqdn.as_str(), RecordType::NS)
        .await
        .map_err(|e| Error::Dns(format!("the NS records of {zone}: {e}")))?;
    let mut names: Vec<String> = ns
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.to_ascii()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let ips = resolver.lookup_ip(name.as_str()).await.map_err(|e| {
            Error::Dns(format!(
                "the address of {name}, a nameserver of {zone}: {e}"
            ))
        })?;
        for ip in ips.iter() {
            let addr = SocketAddr::new(ip, 53);
            out.push((format!("{} ({addr})", name.trim_end_matches('.')), addr));
        }
    }
    if out.is_empty() {
        return Err(Error::Dns(format!(
            "{zone} has no nameserver with an address"
        )));
    }
    Ok(out)
}

/// What each authoritative server of `zone` serves at `name`, compared with
/// `record`, each asked directly (no cache) within `timeout`.
pub async fn check(
    resolver_for_ns: &TokioResolver,
    zone: &str,
    configured: &[SocketAddr],
    name: &str,
    record: &str,
    timeout: Duration,
) -> Result<Vec<ServerState>> {
    let mut out = Vec::new();
    for (server, addr) in servers(resolver_for_ns, zone, configured).await? {
        let direct = resolver(&[addr], timeout)?;
        let state = match lookup_txt(&direct, name).await {
            Err(dkim::LookupError::NotFound) => DnsState::Missing,
            Err(e) => DnsState::LookupFailed(e.to_string()),
            Ok(served) => compare(&served, record),
        };
        out.push(ServerState { server, state });
    }
    Ok(out)
}

/// The zone `name` is in: the nearest of it and its parents that has NS
/// records.
pub async fn zone_of(resolver: &TokioResolver, name: &str) -> Result<String> {
    let mut rest = name.trim_end_matches('.');
    loop {
        let fqdn = format!("{rest}.");
        if let Ok(ns) = resolver.lookup(fqdn.as_str(), RecordType::NS).await {
            if ns.answers().iter().any(|r| matches!(r.data, RData::NS(_))) {
                return Ok(rest.to_ascii_lowercase());
            }
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => {
                return Err(Error::Dns(format!(
                    "found no zone (NS records) above {name}"
                )))
            }
        }
    }
}

/// One record to check on every authoritative server of its zone.
#[derive(Clone, Debug)]
pub struct Query {
    /// The zone, when the configuration names it; else it is found from
    /// the NS records above `name`.
    pub zone: Option<String>,
    /// The zone's servers from the configuration (empty: its NS records).
    pub configured: Vec<SocketAddr>,
    /// The record's name.
    pub name: String,
    /// The record it must serve.
    pub record: String,
}

/// [`check`] for many records at once (at most 16 at a time), in order.
pub fn check_many(
    resolver_for_ns: &TokioResolver,
    queries: Vec<Query>,
    timeout: Duration,
) -> Result<Vec<Result<Vec<ServerState>>>> {
    let n = queries.len();
    super::block_on(async move {
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
        let mut set = tokio::task::JoinSet::new();
        for (i, q) in queries.into_iter().enumerate() {
            let (resolver, limit) = (resolver_for_ns.clone(), limit.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let zone = match &q.zone {
                    Some(z) => Ok(z.clone()),
                    None => zone_of(&resolver, &q.name).await,
                };
                let r = match zone {
                    Ok(zone) => {
                        check(&resolver, &zone, &q.configured, &q.name, &q.record, timeout).await
                    }
                    Err(e) => Err(e),
                };
                (i, r)
            });
        }
        let mut out: Vec<Result<Vec<ServerState>>> = (0..n)
            .map(|_| Err(Error::Dns("the check did not finish".into())))
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

/// True when there is at least one server and every one serves exactly the
/// key.
pub fn everywhere(states: &[ServerState]) -> bool {
    !states.is_empty() && states.iter().all(|s| s.state.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_everywhere_means_every_server_and_at_least_one() {
        let ok = |s: &str| ServerState {
            server: s.into(),
            state: DnsState::Ok,
        };
        assert!(!everywhere(&[]));
        assert!(everywhere(&[ok("a"), ok("b")]));
        assert!(!everywhere(&[
            ok("a"),
            ServerState {
                server: "b".into(),
                state: DnsState::Missing
            }
        ]));
    }
}
