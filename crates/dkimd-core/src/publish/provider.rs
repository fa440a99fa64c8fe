//! Publishing through a DNS provider's API (Cloudflare, DigitalOcean), with Stalwart's
//! `dns-update`. A change adds the new record before it removes the stale
//! ones, so that the name is never without a record: a failure in between
//! leaves both (status shows "multiple records", the next `enable`
//! repairs it), never neither. Each change is read back: a provider that
//! took a request but did not make the change is an error, not a success.

use super::api::{Outcome, Publisher};
use crate::config::{Backend, Config, Provider, ZoneConfig};
use crate::error::{bail, err, Context, Error};
use dns_update::{DnsRecord, DnsRecordType, DnsUpdater};
use std::path::PathBuf;
use std::time::Duration;

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A zone changed through a provider's API.
pub struct ProviderApi {
    updater: DnsUpdater,
    provider: Provider,
    /// The zone's apex, lower case, without the trailing dot.
    zone: String,
    credentials_file: PathBuf,
    ttl: u32,
}

impl ProviderApi {
    /// The publisher of a zone configured with `backend = "provider"`.
    pub fn new(_cfg: &Config, z: &ZoneConfig) -> crate::Result<ProviderApi> {
        let provider = z
            .provider
            .ok_or_else(|| err!("zone {}: no provider", z.name))?;
        let credentials_file = z
            .credentials_file
            .clone()
            .ok_or_else(|| err!("zone {}: no credentials_file", z.name))?;
        crate::sys::check_private(&credentials_file, "credentials file")?;
        let token = std::fs::read_to_string(&credentials_file)
            .with_context(|| {
                format!(
                    "cannot read the credentials file {}",
                    credentials_file.display()
                )
            })?
            .trim()
            .to_string();
        if token.is_empty() || token.bytes().any(|b| b.is_ascii_control() || b >= 0x80) {
            bail!(
                "the credentials file {} must hold the API token on one line, printable ASCII",
                credentials_file.display()
            );
        }
        let updater = match provider {
            Provider::Cloudflare => DnsUpdater::new_cloudflare(&token, Some(REQUEST_TIMEOUT)),
            Provider::DigitalOcean => DnsUpdater::new_digitalocean(&token, Some(REQUEST_TIMEOUT)),
        }
        .map_err(|e| err!("{}: {e}", provider.as_str()))?;
        Ok(ProviderApi {
            updater,
            provider,
            zone: z.name.trim_end_matches('.').to_ascii_lowercase(),
            credentials_file,
            ttl: z.ttl.unwrap_or(3600),
        })
    }

    /// `name` lower case, when in the zone.
    fn owner(&self, name: &str) -> crate::Result<String> {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        if n != self.zone && !n.ends_with(&format!(".{}", self.zone)) {
            bail!("{name} is not in zone {}", self.zone);
        }
        Ok(n)
    }

    /// What went wrong, in words an admin can act on, with the provider's
    /// own message.
    fn explain(&self, what: &str, e: dns_update::Error) -> Error {
        let p = self.provider.as_str();
        let token = || {
            format!(
                "check the API token in {}: it must be valid and allow DNS edits on zone {}",
                self.credentials_file.display(),
                self.zone
            )
        };
        match e {
            dns_update::Error::Unauthorized => {
                err!("{p} refused the API token ({what}: 401); {}", token())
            }
            dns_update::Error::Api(m)
                if m.starts_with("HTTP 401")
                    || m.starts_with("HTTP 403")
                    || m.contains("Authentication error")
                    || m.contains("Invalid request headers") =>
            {
                err!("{p} refused the API token ({what}: {m}); {}", token())
            }
            dns_update::Error::NotFound => err!(
                "{p} knows no zone {} for this token ({what}: 404): check the zone's name in dkimd.toml, and that the token may see it",
                self.zone
            ),
            dns_update::Error::Api(m) if m.contains("zone found") => err!(
                "{p} has no zone {} for this token ({what}: {m}): check the zone's name in dkimd.toml, and that the token's zone resources include it",
                self.zone
            ),
            dns_update::Error::Api(m) if m.starts_with("HTTP 429") || m.starts_with("HTTP 503") => {
                Error::Unreachable(format!(
                    "{p} is rate-limiting this account ({what}: {m}); the records not yet changed were not tried: run the command again later"
                ))
            }
            dns_update::Error::Api(m) if m.starts_with("Failed to send request") => {
                Error::Unreachable(format!("{p} did not answer ({what}): {m}"))
            }
            other => err!("{p} refused to {what}: {other}"),
        }
    }

    async fn current(&self, owner: &str) -> crate::Result<Vec<String>> {
        let records = self
            .updater
            .list_rrset(owner, DnsRecordType::TXT, self.zone.as_str())
            .await
            .map_err(|e| self.explain("list the TXT records", e))?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r {
                DnsRecord::TXT(t) => Some(t),
                _ => None,
            })
            .collect())
    }

    async fn change(&self, name: &str, value: Option<&str>) -> crate::Result<Outcome> {
        let owner = self.owner(name)?;
        let now = self.current(&owner).await?;
        let Some(value) = value else {
            if now.is_empty() {
                return Ok(Outcome::Absent);
            }
            // An empty RRset: every TXT record at the name is deleted by its
            // id, however it was written.
            self.set_exactly(&owner, None, "delete the TXT records")
                .await?;
            self.verify(&owner, None).await?;
            return Ok(Outcome::Removed(now.len()));
        };
        let present = now.iter().any(|v| v == value);
        let stale = now.iter().filter(|v| *v != value).count()
            + now.iter().filter(|v| *v == value).count().saturating_sub(1);
        if present && stale == 0 {
            return Ok(Outcome::AlreadyPresent);
        }
        if !present {
            self.updater
                .add_to_rrset(
                    owner.as_str(),
                    DnsRecordType::TXT,
                    self.ttl,
                    vec![DnsRecord::TXT(value.to_string())],
                    self.zone.as_str(),
                )
                .await
                .map_err(|e| self.explain("create the TXT record", e))?;
        }
        if stale > 0 {
            // The RRset made exactly ours: the crate deletes, by id, every
            // record that is not exactly what it would send (stale ones,
            // duplicates, ours written another way), and ours is there
            // already, so the name is never without a record.
            self.set_exactly(&owner, Some(value), "delete the stale TXT records")
                .await?;
        }
        self.verify(&owner, Some(value)).await?;
        Ok(if now.is_empty() {
            Outcome::Added
        } else {
            Outcome::Replaced(stale)
        })
    }

    /// Makes the TXT RRset at `owner` exactly `value` (or empty): the crate
    /// deletes, by id, every record that is not exactly what it would send.
    async fn set_exactly(&self, owner: &str, value: Option<&str>, what: &str) -> crate::Result<()> {
        self.updater
            .set_rrset(
                owner,
                DnsRecordType::TXT,
                self.ttl,
                value
                    .map(|v| DnsRecord::TXT(v.to_string()))
                    .into_iter()
                    .collect(),
                self.zone.as_str(),
            )
            .await
            .map_err(|e| self.explain(what, e))
    }

    /// Lists the name again: it must hold exactly `value` (or nothing), so
    /// that a change the provider took but did not make is not reported
    /// as made.
    async fn verify(&self, owner: &str, value: Option<&str>) -> crate::Result<()> {
        let after = self.current(owner).await?;
        let want: Vec<String> = value.map(str::to_string).into_iter().collect();
        if after != want {
            bail!(
                "{}: after the change, {owner} holds {} TXT record(s) ({}), not exactly the one dkimd publishes; run dkimd enable again, or look at the zone at the provider",
                self.provider.as_str(),
                after.len(),
                after
                    .iter()
                    .map(|v| crate::model::cut(v, 60))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        Ok(())
    }

    fn run<T>(&self, f: impl std::future::Future<Output = crate::Result<T>>) -> crate::Result<T> {
        crate::dns::block_on(f)?
    }
}

impl Publisher for ProviderApi {
    fn backend(&self) -> Backend {
        Backend::Provider
    }

    fn target(&self) -> String {
        format!("{} (zone {})", self.provider.as_str(), self.zone)
    }

    fn set(&self, name: &str, value: &str) -> crate::Result<Outcome> {
        self.run(self.change(name, Some(value)))
    }

    fn remove(&self, name: &str) -> crate::Result<Outcome> {
        self.run(self.change(name, None))
    }
}
