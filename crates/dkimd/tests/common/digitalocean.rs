//! A stand-in for DigitalOcean's API v2 (domain records), for the
//! contract tests of the `provider` backend, served at api.digitalocean.com
//! through [`FakeApi`]. It checks every request against what DigitalOcean
//! documents; each fact names its source:
//!
//! - [records] <https://docs.digitalocean.com/products/networking/dns/reference/api/domain-records>
//!   (list, create and delete a domain's records; bearer token; the
//!   domain:read, domain:create and domain:delete scopes)
//! - [scopes] <https://docs.digitalocean.com/reference/api/reference/ssh-keys/>
//!   (GET needs `<resource>:read`, POST `<resource>:create`, DELETE
//!   `<resource>:delete`)
//! - [errors] <https://docs.digitalocean.com/reference/api/intro/> (return
//!   statuses, the error body `{"id", "message", "request_id"}`, rate
//!   limiting with 429)
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::fakeapi::{query_of, FakeApi};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Record {
    pub id: i64,
    pub domain: String,
    /// Relative to the domain ("@" for the apex), as DigitalOcean keeps it.
    pub name: String,
    pub rtype: String,
    pub data: String,
    pub ttl: u64,
}

#[derive(Default)]
pub struct State {
    pub token: String,
    /// Scopes the token has ("domain:read" …).
    pub scopes: Vec<String>,
    pub domains: Vec<String>,
    pub records: Vec<Record>,
    pub log: Vec<String>,
    pub violations: Vec<String>,
    pub rate_limit_next: u32,
    next_id: i64,
}

impl State {
    /// The TXT data at a fully qualified `name`.
    pub fn txt_at(&self, name: &str) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| r.rtype == "TXT" && fqdn(r) == name)
            .map(|r| r.data.clone())
            .collect()
    }
}

fn fqdn(r: &Record) -> String {
    if r.name == "@" {
        r.domain.clone()
    } else {
        format!("{}.{}", r.name, r.domain)
    }
}

pub struct FakeDigitalOcean {
    pub api: FakeApi,
    pub state: Arc<Mutex<State>>,
}

impl FakeDigitalOcean {
    /// An account holding `domains`, reachable with `token` (all scopes).
    pub fn start(token: &str, domains: &[&str]) -> FakeDigitalOcean {
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            scopes: ["domain:read", "domain:create", "domain:delete"]
                .map(String::from)
                .to_vec(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            ..State::default()
        }));
        let st = state.clone();
        let api = FakeApi::start(
            "api.digitalocean.com",
            Arc::new(move |m, t, h, b| {
                let (status, extra, v) = answer(&st, m, t, h, b);
                (status, extra, v.map(|v| v.to_string()).unwrap_or_default())
            }),
        );
        FakeDigitalOcean { api, state }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.api.env()
    }
}

fn error(id: &str, message: &str) -> Option<serde_json::Value> {
    // Errors carry an id and a message [errors].
    Some(serde_json::json!({"id": id, "message": message, "request_id": "fake"}))
}

fn record_json(r: &Record) -> serde_json::Value {
    serde_json::json!({"id": r.id, "type": r.rtype, "name": r.name, "data": r.data,
        "priority": null, "port": null, "ttl": r.ttl, "weight": null, "flags": null, "tag": null})
}

fn answer(
    st: &Arc<Mutex<State>>,
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, String, Option<serde_json::Value>) {
    let mut s = st.lock().unwrap();
    s.log.push(format!("{method} {target}"));
    if s.rate_limit_next > 0 {
        s.rate_limit_next -= 1;
        return (
            429,
            "Retry-After: 1\r\n".into(),
            error("too_many_requests", "API Rate limit exceeded."),
        );
    }
    // A bearer token [records]; a wrong one is 401 [errors].
    let bearer = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    if bearer != s.token {
        return (
            401,
            String::new(),
            error("Unauthorized", "Unable to authenticate you"),
        );
    }
    let (path, q) = query_of(target);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let scope = match method {
        "GET" => "domain:read",
        "POST" => "domain:create",
        "DELETE" => "domain:delete",
        _ => "",
    };
    // Each verb needs its scope [scopes].
    if !s.scopes.iter().any(|x| x == scope) {
        return (
            403,
            String::new(),
            error(
                "Forbidden",
                "You are not authorized to perform this operation",
            ),
        );
    }
    let domain = segments.get(2).map(|d| d.to_string()).unwrap_or_default();
    if segments.len() >= 4 && !s.domains.contains(&domain) {
        return (
            404,
            String::new(),
            error(
                "not_found",
                "The resource you were accessing could not be found.",
            ),
        );
    }
    match (method, segments.as_slice()) {
        // GET /v2/domains/{domain_name}/records, with the name (fully
        // qualified) and type filters and per_page/page [records].
        ("GET", ["v2", "domains", _, "records"]) => {
            for k in q.keys() {
                if !["name", "type", "per_page", "page"].contains(&k.as_str()) {
                    s.violations.push(format!("list: unknown parameter {k}"));
                }
            }
            if let Some(n) = q.get("name") {
                if n != &domain && !n.ends_with(&format!(".{domain}")) {
                    s.violations.push(format!(
                        "list: name {n:?} is not fully qualified in {domain}"
                    ));
                }
            }
            let list: Vec<serde_json::Value> = s
                .records
                .iter()
                .filter(|r| r.domain == domain)
                .filter(|r| q.get("name").is_none_or(|n| *n == fqdn(r)))
                .filter(|r| q.get("type").is_none_or(|t| *t == r.rtype))
                .map(record_json)
                .collect();
            let total = list.len();
            (
                200,
                String::new(),
                Some(
                    serde_json::json!({"domain_records": list, "links": {}, "meta": {"total": total}}),
                ),
            )
        }
        // POST /v2/domains/{domain_name}/records with type, name (the host
        // relative to the domain, "@" for the apex), data and ttl; 201 and
        // the record [records].
        ("POST", ["v2", "domains", _, "records"]) => {
            let v: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    s.violations.push(format!("create: body is not JSON: {e}"));
                    return (
                        400,
                        String::new(),
                        error("bad_request", "bad body (the fake's words)"),
                    );
                }
            };
            let name = v["name"].as_str().unwrap_or("").to_string();
            let mut bad = Vec::new();
            if name.is_empty() || name.ends_with('.') || name.ends_with(&domain) {
                bad.push(format!("create: name {name:?} is not relative to {domain}"));
            }
            if v["type"] != "TXT" {
                bad.push(format!("create: type {}", v["type"]));
            }
            let Some(data) = v["data"].as_str().map(str::to_string) else {
                bad.push("create: no data".into());
                s.violations.extend(bad);
                return (
                    422,
                    String::new(),
                    error("unprocessable_entity", "no data (the fake's words)"),
                );
            };
            if !bad.is_empty() {
                s.violations.extend(bad);
                return (
                    422,
                    String::new(),
                    error("unprocessable_entity", "bad record (the fake's words)"),
                );
            }
            s.next_id += 1;
            let r = Record {
                id: 1000 + s.next_id,
                domain: domain.clone(),
                name,
                rtype: "TXT".into(),
                data,
                ttl: v["ttl"].as_u64().unwrap_or(1800),
            };
            let out = record_json(&r);
            s.records.push(r);
            (
                201,
                String::new(),
                Some(serde_json::json!({"domain_record": out})),
            )
        }
        // DELETE /v2/domains/{domain_name}/records/{domain_record_id}:
        // 204, no body [records].
        ("DELETE", ["v2", "domains", _, "records", id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let before = s.records.len();
            s.records.retain(|r| !(r.domain == domain && r.id == id));
            if s.records.len() == before {
                return (
                    404,
                    String::new(),
                    error(
                        "not_found",
                        "The resource you were accessing could not be found.",
                    ),
                );
            }
            (204, String::new(), None)
        }
        _ => {
            s.violations
                .push(format!("unexpected request {method} {target}"));
            (
                404,
                String::new(),
                error("not_found", "no route (the fake's words)"),
            )
        }
    }
}
