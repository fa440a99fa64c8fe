//! Publishing through PowerDNS Authoritative's HTTP API: one GET of the
//! zone's TXT RRsets to learn what is there, then one PATCH that replaces
//! (`REPLACE`) or deletes (`DELETE`) the RRsets that must change. PowerDNS
//! applies a PATCH in one transaction and moves the zone's serial as its
//! SOA-EDIT-API metadata says.

use super::api::{copy_error, Outcome, PublishEnv, Publisher};
use super::http::{Endpoint, Response};
use crate::config::{Backend, Config, ZoneConfig};
use crate::error::{bail, err, Context, Error};
use hyper::Method;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long one API request may take (a PATCH of 500 RRsets included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The most RRsets in one PATCH (the manager sends at most this many).
const PATCH_CHUNK: usize = 500;

/// Up to this many names in a batch are read with one filtered GET each;
/// more, with one GET of the whole zone.
const PER_NAME_READS: usize = 50;

/// A zone changed through the PowerDNS API.
pub struct PowerDns {
    endpoint: Endpoint,
    /// "/api/v1/servers/{id}/zones/{zone}." (percent-free: checked names).
    zone_path: String,
    /// The zone's apex, lower case, without the trailing dot.
    zone: String,
    server_id: String,
    key: String,
    key_file: PathBuf,
    ttl: u32,
    env: PublishEnv,
    /// The SOA-EDIT-API warning was given already.
    warned: AtomicBool,
}

/// What the API says of a zone (the fields dkimd reads).
#[derive(Deserialize)]
struct Zone {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    soa_edit_api: String,
    #[serde(default)]
    rrsets: Vec<RrSet>,
}

#[derive(Deserialize)]
struct RrSet {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    records: Vec<Rec>,
}

#[derive(Deserialize)]
struct Rec {
    content: String,
    #[serde(default)]
    disabled: bool,
}

/// PowerDNS's error body.
#[derive(Deserialize)]
struct ApiError {
    error: String,
}

impl PowerDns {
    /// The publisher of a zone configured with `backend = "powerdns"`.
    pub fn new(_cfg: &Config, z: &ZoneConfig, env: PublishEnv) -> crate::Result<PowerDns> {
        let url = z
            .api_url
            .as_ref()
            .map(crate::config::ApiUrl::as_str)
            .ok_or_else(|| err!("zone {}: no api_url", z.name))?;
        let key_file = z
            .api_key_file
            .clone()
            .ok_or_else(|| err!("zone {}: no api_key_file", z.name))?;
        crate::sys::check_private(&key_file, "API key file")?;
        let key = std::fs::read_to_string(&key_file)
            .with_context(|| format!("cannot read the API key file {}", key_file.display()))?
            .trim()
            .to_string();
        if key.is_empty() || key.bytes().any(|b| b.is_ascii_control() || b >= 0x80) {
            bail!(
                "the API key file {} must hold the key on one line (pdns.conf's api-key), printable ASCII",
                key_file.display()
            );
        }
        let endpoint = Endpoint::new(
            url,
            z.ca_file.as_deref(),
            &format!("zone {}'s ca_file", z.name),
            REQUEST_TIMEOUT,
        )?;
        let server_id = z.server_id.clone().unwrap_or_default().to_string();
        let zone = z.name.trim_end_matches('.').to_ascii_lowercase();
        // The configured URL may end in /api/v1 or not.
        let base = endpoint.prefix().trim_end_matches("/api/v1").to_string();
        Ok(PowerDns {
            zone_path: format!("{base}/api/v1/servers/{server_id}/zones/{zone}."),
            endpoint,
            zone,
            server_id,
            key,
            key_file,
            ttl: z.ttl.unwrap_or(3600),
            env,
            warned: AtomicBool::new(false),
        })
    }

    /// `name` as PowerDNS writes it (absolute, lower case), when in the zone.
    fn owner(&self, name: &str) -> crate::Result<String> {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        if n != self.zone && !n.ends_with(&format!(".{}", self.zone)) {
            bail!("{name} is not in zone {}", self.zone);
        }
        if n.bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            bail!("{name}: not a name dkimd publishes at");
        }
        Ok(format!("{n}."))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> crate::Result<Response> {
        self.endpoint
            .request(method, path, &[("X-API-Key", self.key.as_str())], body)
            .await
    }

    /// Why a request failed, in PowerDNS's words and ours.
    fn refusal(&self, what: &str, r: &Response) -> Error {
        let said = match serde_json::from_slice::<ApiError>(&r.body) {
            Ok(e) => e.error,
            Err(_) => {
                let text = String::from_utf8_lossy(r.body.get(..200).unwrap_or(&r.body))
                    .trim()
                    .to_string();
                if text.is_empty() {
                    "no message".into()
                } else {
                    text
                }
            }
        };
        let at = self.endpoint.url();
        match r.status {
            401 | 403 => err!(
                "PowerDNS at {at} refused the API key ({}: {said}): the file {} must hold exactly the api-key of pdns.conf, and the webserver-allow-from of pdns.conf must let this host in",
                r.status,
                self.key_file.display()
            ),
            404 => err!(
                "PowerDNS at {at} has no zone {}. on server {:?} ({what}: 404 {said}): create the zone in PowerDNS, or correct the zone's name or server_id in dkimd.toml",
                self.zone,
                self.server_id
            ),
            502..=504 => Error::Unreachable(format!(
                "PowerDNS at {at} did not answer (a proxy in front of it said {}: {said})",
                r.status
            )),
            s if s >= 500 => err!("PowerDNS at {at} failed to {what} ({s}: {said}); its log tells why"),
            422 if said.contains("onflicts with") => err!(
                "PowerDNS at {at} refused to {what} (422: {said}): another record (a CNAME?) is at that name; remove it, or publish this domain's records elsewhere"
            ),
            s => err!("PowerDNS at {at} refused to {what} ({s}: {said})"),
        }
    }

    /// The TXT RRsets of the zone: all of them, or those at `name` only.
    async fn current(&self, name: Option<&str>) -> crate::Result<HashMap<String, Vec<Rec>>> {
        let path = match name {
            Some(n) => format!("{}?rrset_name={n}&rrset_type=TXT", self.zone_path),
            None => self.zone_path.clone(),
        };
        let r = self.call(Method::GET, &path, None).await?;
        if r.status != 200 {
            return Err(self.refusal("read the zone", &r));
        }
        let zone: Zone = serde_json::from_slice(&r.body).map_err(|e| {
            err!(
                "PowerDNS at {} answered the zone's GET with something else than a zone: {e}",
                self.endpoint.url()
            )
        })?;
        match zone.kind.to_ascii_lowercase().as_str() {
            "slave" | "secondary" | "consumer" => bail!(
                "zone {} is a {} zone in PowerDNS at {}: it is copied from elsewhere; publish on its primary instead",
                self.zone,
                zone.kind,
                self.endpoint.url()
            ),
            "master" | "primary"
                if zone.soa_edit_api.is_empty() && !self.warned.swap(true, Ordering::Relaxed) =>
            {
                (self.env.notice)(&format!(
                    "zone {} has no SOA-EDIT-API in PowerDNS: its serial will not move, so its secondaries will not see the change (pdnsutil set-meta {} SOA-EDIT-API DEFAULT)",
                    self.zone, self.zone
                ));
            }
            _ => {}
        }
        let mut by: HashMap<String, Vec<Rec>> = HashMap::new();
        for s in zone.rrsets {
            if s.rtype.eq_ignore_ascii_case("TXT") {
                let n = s.name.to_ascii_lowercase();
                if name.is_none_or(|want| want == n) {
                    by.entry(n).or_default().extend(s.records);
                }
            }
        }
        Ok(by)
    }

    /// What a change will do, and the RRset to PATCH for it (none when
    /// nothing is to be done).
    fn plan(
        &self,
        owner: &str,
        value: Option<&str>,
        now: &[Rec],
    ) -> (Outcome, Option<serde_json::Value>) {
        match value {
            None if now.is_empty() => (Outcome::Absent, None),
            None => (
                Outcome::Removed(now.len()),
                Some(serde_json::json!({"name": owner, "type": "TXT", "changetype": "DELETE"})),
            ),
            Some(v) => {
                if let [only] = now {
                    if !only.disabled && txt_value(&only.content) == v {
                        return (Outcome::AlreadyPresent, None);
                    }
                }
                let ours = now
                    .iter()
                    .filter(|r| !r.disabled && txt_value(&r.content) == v)
                    .count();
                let outcome = if now.is_empty() {
                    Outcome::Added
                } else {
                    Outcome::Replaced(now.len() - ours.min(1))
                };
                (
                    outcome,
                    Some(serde_json::json!({
                        "name": owner,
                        "type": "TXT",
                        "ttl": self.ttl,
                        "changetype": "REPLACE",
                        "records": [{"content": txt_content(v), "disabled": false}],
                    })),
                )
            }
        }
    }

    async fn patch(&self, rrsets: Vec<serde_json::Value>) -> crate::Result<()> {
        let body = serde_json::to_vec(&serde_json::json!({ "rrsets": rrsets }))
            .map_err(|e| err!("internal: {e}"))?;
        let r = self
            .call(Method::PATCH, &self.zone_path, Some(body))
            .await?;
        if r.status != 204 && r.status != 200 {
            return Err(self.refusal("change the zone", &r));
        }
        Ok(())
    }

    async fn change(&self, name: &str, value: Option<&str>) -> crate::Result<Outcome> {
        let owner = self.owner(name)?;
        let now = self.current(Some(&owner)).await?;
        let (outcome, rrset) = self.plan(&owner, value, now.get(&owner).map_or(&[], |v| v));
        if let Some(rrset) = rrset {
            self.patch(vec![rrset]).await?;
        }
        Ok(outcome)
    }

    fn run<T>(&self, f: impl std::future::Future<Output = crate::Result<T>>) -> crate::Result<T> {
        crate::dns::block_on(f)?
    }
}

impl Publisher for PowerDns {
    fn backend(&self) -> Backend {
        Backend::PowerDns
    }

    fn target(&self) -> String {
        format!(
            "{} (zone {}, server {})",
            self.endpoint.url(),
            self.zone,
            self.server_id
        )
    }

    fn set(&self, name: &str, value: &str) -> crate::Result<Outcome> {
        self.run(self.change(name, Some(value)))
    }

    fn remove(&self, name: &str) -> crate::Result<Outcome> {
        self.run(self.change(name, None))
    }

    /// One GET of the zone, then one PATCH per [`PATCH_CHUNK`] RRsets:
    /// each PATCH is one transaction in PowerDNS, so a chunk is made whole
    /// or not at all. A name given more than once gets its last change.
    fn apply_many(&self, changes: &[(String, Option<String>)]) -> Vec<crate::Result<Outcome>> {
        if let [(name, value)] = changes {
            return vec![self.run(self.change(name, value.as_deref()))];
        }
        let owners: Vec<crate::Result<String>> =
            changes.iter().map(|(n, _)| self.owner(n)).collect();
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, o) in owners.iter().enumerate() {
            if let Ok(o) = o {
                last.insert(o.as_str(), i);
            }
        }
        // A few names: one filtered GET each; many: the whole zone once.
        let now = if last.len() <= PER_NAME_READS {
            self.run(async {
                let mut all = HashMap::new();
                for owner in last.keys() {
                    all.extend(self.current(Some(owner)).await?);
                }
                Ok(all)
            })
        } else {
            self.run(self.current(None))
        };
        let now = match now {
            Ok(now) => now,
            Err(e) => return changes.iter().map(|_| Err(copy_error(&e))).collect(),
        };
        // The outcome of each last change, and the RRsets to send.
        let mut planned: HashMap<usize, Outcome> = HashMap::new();
        let mut sends: Vec<(usize, serde_json::Value)> = Vec::new();
        for (&owner, &i) in &last {
            let value = changes.get(i).and_then(|(_, v)| v.as_deref());
            let (outcome, rrset) = self.plan(owner, value, now.get(owner).map_or(&[], |v| v));
            planned.insert(i, outcome);
            if let Some(r) = rrset {
                sends.push((i, r));
            }
        }
        sends.sort_by_key(|(i, _)| *i);
        let mut failed: HashMap<usize, Error> = HashMap::new();
        let mut down: Option<String> = None;
        for chunk in sends.chunks(PATCH_CHUNK) {
            let r = match &down {
                Some(why) => Err(Error::Unreachable(format!("not tried: {why}"))),
                None => self.run(self.patch(chunk.iter().map(|(_, r)| r.clone()).collect())),
            };
            let Err(e) = r else { continue };
            if let Error::Unreachable(why) = e.root() {
                down.get_or_insert_with(|| why.clone());
                for (i, _) in chunk {
                    failed.insert(*i, copy_error(&e));
                }
                continue;
            }
            // PowerDNS refused the chunk, which changed nothing: send its
            // RRsets one at a time, so that each error is about its own
            // record and the others are made.
            for (i, rrset) in chunk {
                if let Some(why) = &down {
                    failed.insert(*i, Error::Unreachable(format!("not tried: {why}")));
                    continue;
                }
                if let Err(e) = self.run(self.patch(vec![rrset.clone()])) {
                    if let Error::Unreachable(why) = e.root() {
                        down.get_or_insert_with(|| why.clone());
                    }
                    failed.insert(*i, e);
                }
            }
        }
        owners
            .iter()
            .map(|o| {
                let o = match o {
                    Ok(o) => o,
                    Err(e) => return Err(copy_error(e)),
                };
                let Some(&j) = last.get(o.as_str()) else {
                    return Err(err!("internal: no change for {o}"));
                };
                match (failed.get(&j), planned.get(&j)) {
                    (Some(e), _) => Err(copy_error(e)),
                    (None, Some(outcome)) => Ok(outcome.clone()),
                    (None, None) => Err(err!("internal: no outcome for {o}")),
                }
            })
            .collect()
    }

    fn batches(&self) -> bool {
        true
    }
}

/// A record's value as PowerDNS's TXT content: strings of at most 255
/// bytes, each in double quotes, with '"' and '\' escaped and bytes outside
/// printable ASCII written as \DDD.
pub fn txt_content(value: &str) -> String {
    let mut out = String::new();
    for chunk in value.as_bytes().chunks(255) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push('"');
        for &b in chunk {
            match b {
                b'"' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x20..=0x7e => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        out.push('"');
    }
    if out.is_empty() {
        out.push_str("\"\"");
    }
    out
}

/// The value of TXT content as PowerDNS writes it: its strings (quoted,
/// with \X and \DDD escapes, or bare words) joined together.
pub fn txt_value(content: &str) -> String {
    let mut out: Vec<u8> = Vec::new();
    let b = content.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let quoted = c == b'"';
        if quoted {
            i += 1;
        }
        while let Some(&c) = b.get(i) {
            if quoted && c == b'"' {
                i += 1;
                break;
            }
            if !quoted && c.is_ascii_whitespace() {
                break;
            }
            if c == b'\\' {
                let digits = b
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(u8::is_ascii_digit));
                match digits {
                    Some(d) => {
                        let n = d.iter().fold(0u32, |n, x| n * 10 + u32::from(x - b'0'));
                        out.push(u8::try_from(n).unwrap_or(b'?'));
                        i += 4;
                    }
                    None => {
                        if let Some(&x) = b.get(i + 1) {
                            out.push(x);
                        }
                        i += 2;
                    }
                }
                continue;
            }
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips() {
        let long = "v=DKIM1; k=rsa; p=".to_string() + &"A".repeat(400);
        let c = txt_content(&long);
        assert_eq!(c.matches('"').count(), 4, "{c}");
        assert_eq!(txt_value(&c), long);
        let odd = "a\"b\\c\u{e9}";
        assert_eq!(txt_content(odd), "\"a\\\"b\\\\c\\195\\169\"");
        assert_eq!(txt_value(&txt_content(odd)), odd);
        // As PowerDNS 4.7 stored what the tests sent it.
        assert_eq!(
            txt_value("\"v=DKIM1; p=ab\\\"c\\\\d\" \"def\""),
            "v=DKIM1; p=ab\"c\\ddef"
        );
        assert_eq!(txt_value("bare words"), "barewords");
        assert_eq!(txt_value("\"unterminated"), "unterminated");
        assert_eq!(txt_value("\"\\"), "");
    }
}
