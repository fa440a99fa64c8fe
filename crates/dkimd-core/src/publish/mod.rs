//! Publishing DKIM key records: into BIND zone files ([`bind`]), by RFC 2136
//! dynamic update ([`rfc2136`]), through PowerDNS's HTTP API
//! ([`powerdns`]), through a DNS provider's API ([`provider`]), or by
//! telling the admin what to publish ([`manual`]). One file per backend behind the [`Publisher`] trait; this
//! module only chooses among them.

pub mod api;
pub mod bind;
mod http;
pub mod manual;
pub mod powerdns;
pub mod provider;
pub mod rfc2136;
pub mod zonefile;

pub use api::{Notice, Outcome, PublishEnv, Publisher};

use crate::config::{Backend, Config};
use crate::dns;
use hickory_resolver::TokioResolver;
use std::time::Duration;

/// Chooses the publisher of a domain's records: the configured backends,
/// or a recording one in tests.
pub trait Publishers: Send + Sync {
    /// The publisher responsible for `domain`'s records.
    fn for_domain(
        &self,
        cfg: &Config,
        domain: &dkim::DomainName,
        env: &PublishEnv,
    ) -> crate::Result<Box<dyn Publisher>>;
}

/// The backends the configuration names ([`publisher_for`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Configured;

impl Publishers for Configured {
    fn for_domain(
        &self,
        cfg: &Config,
        domain: &dkim::DomainName,
        env: &PublishEnv,
    ) -> crate::Result<Box<dyn Publisher>> {
        publisher_for(cfg, domain, env)
    }
}

/// The publisher responsible for `domain`'s records.
pub fn publisher_for(
    cfg: &Config,
    domain: &dkim::DomainName,
    env: &PublishEnv,
) -> crate::Result<Box<dyn Publisher>> {
    let resolver = live_resolver(cfg)?;
    match cfg.zone_for(domain) {
        Some(z) if z.backend == Backend::BindZoneFile => Ok(Box::new(bind::ZoneFile::new(
            cfg,
            z,
            resolver,
            env.clone(),
        )?)),
        Some(z) if z.backend == Backend::Rfc2136 => Ok(Box::new(rfc2136::Rfc2136::new(cfg, z)?)),
        Some(z) if z.backend == Backend::Provider => {
            Ok(Box::new(provider::ProviderApi::new(cfg, z)?))
        }
        Some(z) if z.backend == Backend::PowerDns => {
            Ok(Box::new(powerdns::PowerDns::new(cfg, z, env.clone())?))
        }
        _ => Ok(Box::new(manual::Manual {
            resolver,
            ttl: cfg.ttl_for(domain),
        })),
    }
}

/// The resolver of live checks (configured nameservers, no cache).
pub fn live_resolver(cfg: &Config) -> crate::Result<TokioResolver> {
    dns::resolver(
        &cfg.dns.nameservers,
        Duration::from_secs(cfg.dns.timeout.max(1)),
    )
}
