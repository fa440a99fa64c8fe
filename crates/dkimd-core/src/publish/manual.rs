//! Manual publishing: nothing is changed; the admin is shown the line to
//! publish, and a record counts as published when DNS serves it.

use super::api::{Outcome, Publisher};
use crate::config::Backend;
use crate::dns;
use hickory_resolver::TokioResolver;

/// Manual publishing of the records of one domain.
pub struct Manual {
    pub(super) resolver: TokioResolver,
    /// The TTL of the line to publish.
    pub(super) ttl: u32,
}

impl Publisher for Manual {
    fn backend(&self) -> Backend {
        Backend::Manual
    }

    fn target(&self) -> String {
        "by hand".into()
    }

    fn set(&self, name: &str, value: &str) -> crate::Result<Outcome> {
        match dns::lookup_txt_blocking(&self.resolver, name) {
            Ok(records) if records.len() == 1 && records.first().is_some_and(|r| r == value) => {
                Ok(Outcome::AlreadyPresent)
            }
            _ => Ok(Outcome::Pending(match dkim::KeyRecord::parse(value) {
                Ok(r) => r.zone_line(name, self.ttl),
                Err(_) => format!("{name}. {} IN TXT ( \"{value}\" )", self.ttl),
            })),
        }
    }

    fn remove(&self, name: &str) -> crate::Result<Outcome> {
        match dns::lookup_txt_blocking(&self.resolver, name) {
            Ok(records) if !records.is_empty() => {
                Ok(Outcome::Pending(format!("remove the TXT record at {name}")))
            }
            _ => Ok(Outcome::Absent),
        }
    }
}
