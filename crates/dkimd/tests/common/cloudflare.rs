//! A stand-in for Cloudflare's API v4, for the contract tests of the
//! `provider` backend: the machines here cannot reach Cloudflare. It is
//! served at api.cloudflare.com through [`FakeApi`] and checks every
//! request against what Cloudflare documents. Each fact names its source:
//!
//! - [records-list] <https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/list/>
//! - [records-create] <https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/create/>
//! - [records-delete] <https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/delete/>
//! - [zones-list] <https://developers.cloudflare.com/api/resources/zones/methods/list/>
//! - [limits] <https://developers.cloudflare.com/fundamentals/api/reference/limits/>
//! - [auth-error] Cloudflare documents no error codes; a bad or
//!   insufficient token gets HTTP 403 with code 10000 "Authentication
//!   error", as reported in cloudflare/terraform-provider-cloudflare#913
//!   and noted in favonia/cloudflare-ddns#897.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::fakeapi::{query_of, FakeApi};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One record as the fake keeps it.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub zone_id: String,
    pub name: String,
    pub rtype: String,
    pub content: String,
    pub ttl: u64,
}

/// What the fake knows and what it was asked.
#[derive(Default)]
pub struct State {
    pub token: String,
    /// Zone name → id.
    pub zones: HashMap<String, String>,
    pub records: Vec<Record>,
    /// "METHOD PATH?QUERY" of every request, in order.
    pub log: Vec<String>,
    /// Requests that broke the documented contract, with why.
    pub violations: Vec<String>,
    /// Answer the next this many requests with 429 (rate limited).
    pub rate_limit_next: u32,
    next_id: u64,
}

impl State {
    /// The record contents at `name` (TXT), as stored.
    pub fn txt_at(&self, name: &str) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| r.rtype == "TXT" && r.name == name)
            .map(|r| r.content.clone())
            .collect()
    }
}

pub struct FakeCloudflare {
    pub api: FakeApi,
    pub state: Arc<Mutex<State>>,
}

impl FakeCloudflare {
    /// A fake account holding `zones`, reachable with `token`.
    pub fn start(token: &str, zones: &[&str]) -> FakeCloudflare {
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            zones: zones
                .iter()
                .enumerate()
                .map(|(i, z)| (z.to_string(), format!("{:032x}", i + 1)))
                .collect(),
            ..State::default()
        }));
        let st = state.clone();
        let api = FakeApi::start(
            "api.cloudflare.com",
            Arc::new(move |m, t, h, b| {
                let (status, extra, v) = answer(&st, m, t, h, b);
                (status, extra, v.to_string())
            }),
        );
        FakeCloudflare { api, state }
    }

    /// The environment dkimd runs in to reach the fake.
    pub fn env(&self) -> Vec<(String, String)> {
        self.api.env()
    }
}

/// The quoted strings of TXT content, joined (as DNS serves them); content
/// without quotes as it is.
pub fn unquote(content: &str) -> String {
    if !content.contains('"') {
        return content.to_string();
    }
    let mut out = String::new();
    let mut inside = false;
    let mut chars = content.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => inside = !inside,
            '\\' if inside => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c if inside => out.push(c),
            _ => {}
        }
    }
    out
}

fn envelope(result: serde_json::Value) -> serde_json::Value {
    // Every answer is wrapped in { success, errors, messages, result }
    // [records-list] [records-create].
    serde_json::json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn failure(code: u32, message: &str) -> serde_json::Value {
    serde_json::json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

fn record_json(r: &Record, zone: &str) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "zone_id": r.zone_id, "zone_name": zone, "name": r.name,
        "type": r.rtype, "content": r.content, "ttl": r.ttl, "proxied": false,
        "proxiable": false, "locked": false
    })
}

/// The name of the zone with id `zid`; a request for another is a
/// violation.
fn zone_named(s: &mut State, zid: &str) -> Option<String> {
    let zone = s
        .zones
        .iter()
        .find(|(_, id)| *id == zid)
        .map(|(n, _)| n.clone());
    if zone.is_none() {
        s.violations.push(format!("no zone with id {zid}"));
    }
    zone
}

/// The fake's answer to one request: status, extra header lines, body.
fn answer(
    st: &Arc<Mutex<State>>,
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, String, serde_json::Value) {
    let mut s = st.lock().unwrap();
    s.log.push(format!("{method} {target}"));
    // Over the limit: HTTP 429, with Retry-After in seconds [limits].
    if s.rate_limit_next > 0 {
        s.rate_limit_next -= 1;
        return (
            429,
            "Retry-After: 1\r\n".into(),
            failure(
                0,
                "rate limited (the fake's words; Cloudflare documents only the status)",
            ),
        );
    }
    // API tokens go in "Authorization: Bearer TOKEN" [records-create];
    // a wrong one is 403, code 10000 [auth-error].
    let bearer = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    if bearer != s.token {
        return (403, String::new(), failure(10000, "Authentication error"));
    }
    let (path, q) = query_of(target);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        // GET /zones?name=… lists the zones of that name [zones-list].
        ("GET", ["client", "v4", "zones"]) => {
            let name = q.get("name").cloned().unwrap_or_default();
            let result: Vec<serde_json::Value> = s
                .zones
                .iter()
                .filter(|(n, _)| name.is_empty() || **n == name)
                .map(|(n, id)| serde_json::json!({"id": id, "name": n, "status": "active"}))
                .collect();
            (200, String::new(), envelope(serde_json::json!(result)))
        }
        // GET /zones/{zone_id}/dns_records with name, type, match and
        // per_page filters [records-list].
        ("GET", ["client", "v4", "zones", zid, "dns_records"]) => {
            let Some(zone) = zone_named(&mut s, zid) else {
                return (
                    404,
                    String::new(),
                    failure(0, "no such zone (the fake's words)"),
                );
            };
            for k in q.keys() {
                if !["name", "type", "match", "per_page", "page", "content"].contains(&k.as_str()) {
                    s.violations.push(format!("list: unknown parameter {k}"));
                }
            }
            if let Some(pp) = q.get("per_page") {
                if pp.parse::<u64>().is_err() {
                    s.violations.push(format!("list: per_page {pp}"));
                }
            }
            let result: Vec<serde_json::Value> = s
                .records
                .iter()
                .filter(|r| r.zone_id == *zid)
                .filter(|r| q.get("name").is_none_or(|n| *n == r.name))
                .filter(|r| q.get("type").is_none_or(|t| *t == r.rtype))
                .map(|r| record_json(r, &zone))
                .collect();
            (200, String::new(), envelope(serde_json::json!(result)))
        }
        // POST /zones/{zone_id}/dns_records with name (complete, in the
        // zone), type, content, ttl (1 = automatic, else 60 to 86400) and
        // proxied [records-create].
        ("POST", ["client", "v4", "zones", zid, "dns_records"]) => {
            let Some(zone) = zone_named(&mut s, zid) else {
                return (
                    404,
                    String::new(),
                    failure(0, "no such zone (the fake's words)"),
                );
            };
            let v: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    s.violations.push(format!("create: body is not JSON: {e}"));
                    return (
                        400,
                        String::new(),
                        failure(0, "Request body is invalid. (the fake's words)"),
                    );
                }
            };
            let name = v["name"].as_str().unwrap_or("").to_string();
            let ttl = v["ttl"].as_u64().unwrap_or(1);
            let mut bad = Vec::new();
            if name != zone && !name.ends_with(&format!(".{zone}")) {
                bad.push(format!("create: name {name:?} is not in zone {zone}"));
            }
            if v["type"] != "TXT" {
                bad.push(format!("create: type {}", v["type"]));
            }
            if ttl != 1 && !(60..=86400).contains(&ttl) {
                bad.push(format!("create: ttl {ttl}"));
            }
            if v["proxied"].as_bool() == Some(true) {
                bad.push("create: a TXT record cannot be proxied".into());
            }
            let Some(content) = v["content"].as_str().map(str::to_string) else {
                bad.push("create: no content".into());
                s.violations.extend(bad);
                return (
                    400,
                    String::new(),
                    failure(0, "Content for TXT record is invalid. (the fake's words)"),
                );
            };
            if !bad.is_empty() {
                s.violations.extend(bad);
                return (
                    400,
                    String::new(),
                    failure(0, "DNS name is invalid. (the fake's words)"),
                );
            }
            s.next_id += 1;
            let r = Record {
                id: format!("{:032x}", 0x1000 + s.next_id),
                zone_id: zid.to_string(),
                name,
                rtype: "TXT".into(),
                content,
                ttl,
            };
            let out = record_json(&r, &zone);
            s.records.push(r);
            (200, String::new(), envelope(out))
        }
        // DELETE /zones/{zone_id}/dns_records/{dns_record_id} answers the
        // id [records-delete].
        ("DELETE", ["client", "v4", "zones", zid, "dns_records", rid]) => {
            let before = s.records.len();
            s.records.retain(|r| !(r.zone_id == *zid && r.id == *rid));
            if s.records.len() == before {
                return (
                    404,
                    String::new(),
                    failure(0, "Record does not exist. (the fake's words)"),
                );
            }
            (200, String::new(), envelope(serde_json::json!({"id": rid})))
        }
        _ => {
            s.violations
                .push(format!("unexpected request {method} {target}"));
            (
                404,
                String::new(),
                failure(0, "No route for that URI (the fake's words)"),
            )
        }
    }
}
