//! Publishing by RFC 2136 dynamic update, signed with TSIG (RFC 8945).

use super::api::{Outcome, Publisher};
use crate::config::Backend;
use crate::config::{Config, ZoneConfig};
use crate::error::Error;
use crate::error::{bail, err, Context};
use base64::Engine;
use hickory_resolver::net::client::{Client, ClientHandle};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::FirstAnswer;
use hickory_resolver::net::DnsHandle;
use hickory_resolver::proto::op::{
    update_message, DnsRequest, Message, ResponseCode, UpdateMessage,
};
use hickory_resolver::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A zone changed by dynamic update.
pub struct Rfc2136 {
    zone: Name,
    server: SocketAddr,
    signer: TSigner,
    ttl: u32,
    timeout: Duration,
}

/// Reads a TSIG secret: the base64 alone, or a BIND `key` statement with a
/// `secret "…";` clause. The file must not be readable by others.
fn read_secret(path: &Path) -> crate::Result<Vec<u8>> {
    crate::sys::check_private(path, "TSIG secret file")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let b64 = match text.find("secret") {
        Some(i) => text
            .get(i..)
            .and_then(|t| t.split('"').nth(1))
            .ok_or_else(|| err!("{}: secret without a quoted value", path.display()))?
            .to_string(),
        None => text.trim().to_string(),
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| err!("{}: the TSIG secret is not base64: {e}", path.display()))
}

/// Updates in flight at once in one batch.
const IN_FLIGHT: usize = 16;

impl Rfc2136 {
    /// The publisher of a zone configured with `backend = "rfc2136"`.
    pub fn new(cfg: &Config, z: &ZoneConfig) -> crate::Result<Rfc2136> {
        let server = z.server.ok_or_else(|| err!("zone {}: no server", z.name))?;
        let key_name = z
            .tsig_key_name
            .clone()
            .ok_or_else(|| err!("zone {}: no tsig_key_name", z.name))?;
        let secret_file = z
            .tsig_secret_file
            .clone()
            .ok_or_else(|| err!("zone {}: no tsig_secret_file", z.name))?;
        let secret = read_secret(&secret_file)?;
        let algorithm = match z.tsig_algorithm.unwrap_or_default() {
            crate::config::TsigAlgorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            crate::config::TsigAlgorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
            crate::config::TsigAlgorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        };
        let signer = TSigner::new(
            secret,
            algorithm,
            Name::from_ascii(&key_name).map_err(|e| err!("tsig_key_name {key_name:?}: {e}"))?,
            300,
        )
        .map_err(|e| err!("TSIG key {key_name}: {e}"))?;
        Ok(Rfc2136 {
            zone: Name::from_ascii(format!("{}.", z.name.trim_end_matches('.')))
                .map_err(|e| err!("zone {}: {e}", z.name))?,
            server,
            signer,
            ttl: z.ttl.unwrap_or(3600),
            timeout: Duration::from_secs(cfg.dns.timeout.max(1)),
        })
    }

    fn name(&self, name: &str) -> crate::Result<Name> {
        let n = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|e| err!("{name}: {e}"))?;
        // hickory asserts on names outside the zone: check first.
        if !self.zone.zone_of(&n) {
            bail!("{name} is not in zone {}", self.zone);
        }
        Ok(n)
    }

    async fn client(&self) -> crate::Result<Client<TokioRuntimeProvider>> {
        let stream = UdpClientStream::builder(self.server, TokioRuntimeProvider::new())
            .with_timeout(Some(self.timeout))
            .with_signer(Some(self.signer.clone()))
            .build();
        let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(bg);
        Ok(client)
    }

    async fn current(
        &self,
        client: &mut Client<TokioRuntimeProvider>,
        name: &Name,
    ) -> crate::Result<Vec<String>> {
        let resp = client
            .query(name.clone(), DNSClass::IN, RecordType::TXT)
            .await
            .map_err(|e| self.explain(e))?;
        let code = resp.metadata.response_code;
        if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
            bail!("{} answered {code} to a query for {name}", self.server);
        }
        Ok(resp
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    fn explain(&self, e: impl std::fmt::Display) -> crate::Error {
        let s = e.to_string();
        if s.to_ascii_lowercase().contains("hmac") || s.to_ascii_lowercase().contains("tsig") {
            // The client library reports a refused signature as a protocol
            // error of its own ("truncated HMACs"), which says nothing
            // useful: name the three things that can be wrong instead.
            err!(
                "{} did not accept the TSIG-signed update: the key name (tsig_key_name), the secret (tsig_secret_file) or the algorithm (HMAC-SHA256) does not match a key of the server; its log tells which (BADKEY: unknown key name or algorithm, BADSIG: wrong secret)",
                self.server
            )
        } else if [
            "timed out",
            "timeout",
            "refused",
            "no connections available",
        ]
        .iter()
        .any(|w| s.to_ascii_lowercase().contains(w))
        {
            Error::Unreachable(format!("{} did not answer ({s})", self.server))
        } else {
            err!("dynamic update via {}: {s}", self.server)
        }
    }

    async fn send(
        &self,
        client: &mut Client<TokioRuntimeProvider>,
        msg: Message,
    ) -> crate::Result<()> {
        let resp = client
            .send(DnsRequest::from(msg))
            .first_answer()
            .await
            .map_err(|e| self.explain(e))?;
        let code = resp.metadata.response_code;
        if code != ResponseCode::NoError {
            bail!("{} refused the update: {code}", self.server);
        }
        Ok(())
    }

    /// Makes `value` the only TXT record at `name` (`None`: no TXT record
    /// there), unless it is so already.
    async fn change(
        &self,
        client: &mut Client<TokioRuntimeProvider>,
        name: &str,
        value: Option<&str>,
    ) -> crate::Result<Outcome> {
        let owner = self.name(name)?;
        let now = self.current(client, &owner).await?;
        let Some(value) = value else {
            if now.is_empty() {
                return Ok(Outcome::Absent);
            }
            let msg = update_message::delete_rrset(
                Record::update0(owner.clone(), 0, RecordType::TXT),
                self.zone.clone(),
                true,
            );
            self.send(client, msg).await?;
            return Ok(Outcome::Removed(now.len()));
        };
        if now.len() == 1 && now.first().is_some_and(|v| v == value) {
            return Ok(Outcome::AlreadyPresent);
        }
        // One message: delete the TXT RRset, add the new record.
        let mut msg = update_message::delete_rrset(
            Record::update0(owner.clone(), 0, RecordType::TXT),
            self.zone.clone(),
            true,
        );
        let chunks: Vec<&[u8]> = value.as_bytes().chunks(255).collect();
        msg.add_update(Record::from_rdata(
            owner.clone(),
            self.ttl,
            RData::TXT(TXT::from_bytes(chunks)),
        ));
        self.send(client, msg).await?;
        Ok(if now.is_empty() {
            Outcome::Added
        } else {
            Outcome::Replaced(now.len())
        })
    }

    fn run<T>(&self, f: impl std::future::Future<Output = crate::Result<T>>) -> crate::Result<T> {
        crate::dns::block_on(f)?
    }
}

impl Publisher for Rfc2136 {
    fn backend(&self) -> Backend {
        Backend::Rfc2136
    }

    fn target(&self) -> String {
        format!("{} (zone {})", self.server, self.zone)
    }

    fn set(&self, name: &str, value: &str) -> crate::Result<Outcome> {
        self.run(async {
            let mut client = self.client().await?;
            self.change(&mut client, name, Some(value)).await
        })
    }

    fn remove(&self, name: &str) -> crate::Result<Outcome> {
        self.run(async {
            let mut client = self.client().await?;
            self.change(&mut client, name, None).await
        })
    }

    /// A command's changes, [`IN_FLIGHT`] at a time on one client. When a
    /// name comes more than once, only its last change is made (the others
    /// report its outcome); once the server does not answer, the changes
    /// not yet sent are not tried.
    fn apply_many(&self, changes: &[(String, Option<String>)]) -> Vec<crate::Result<Outcome>> {
        use futures_util::stream::{self, StreamExt};
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, (n, _)) in changes.iter().enumerate() {
            last.insert(n.as_str(), i);
        }
        let todo: Vec<usize> = (0..changes.len())
            .filter(|i| changes.get(*i).and_then(|(n, _)| last.get(n.as_str())) == Some(i))
            .collect();
        let down: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let made: Vec<(usize, crate::Result<Outcome>)> = match self.run(async {
            let client = self.client().await?;
            Ok(stream::iter(todo.iter().copied())
                .map(|i| {
                    let mut client = client.clone();
                    let down = &down;
                    async move {
                        if let Some(why) = down.lock().ok().and_then(|d| d.clone()) {
                            return (i, Err(Error::Unreachable(format!("not tried: {why}"))));
                        }
                        let Some((name, value)) = changes.get(i) else {
                            return (i, Err(err!("internal: no change {i}")));
                        };
                        let r = self.change(&mut client, name, value.as_deref()).await;
                        if let Err(e) = &r {
                            if let Error::Unreachable(why) = e.root() {
                                if let Ok(mut d) = down.lock() {
                                    d.get_or_insert_with(|| why.clone());
                                }
                            }
                        }
                        (i, r)
                    }
                })
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await)
        }) {
            Ok(v) => v,
            Err(e) => todo
                .iter()
                .map(|&i| (i, Err(super::api::copy_error(&e))))
                .collect(),
        };
        let mut by: HashMap<usize, crate::Result<Outcome>> = made.into_iter().collect();
        let copies: Vec<Option<crate::Result<Outcome>>> = changes
            .iter()
            .enumerate()
            .map(|(i, (n, _))| match last.get(n.as_str()) {
                Some(&j) if j != i => Some(match by.get(&j) {
                    Some(Ok(o)) => Ok(o.clone()),
                    Some(Err(e)) => Err(super::api::copy_error(e)),
                    None => Err(err!("internal: no outcome for {n}")),
                }),
                _ => None,
            })
            .collect();
        copies
            .into_iter()
            .enumerate()
            .map(|(i, c)| match c {
                Some(c) => c,
                None => by
                    .remove(&i)
                    .unwrap_or_else(|| Err(err!("internal: no outcome"))),
            })
            .collect()
    }

    fn batches(&self) -> bool {
        true
    }
}
