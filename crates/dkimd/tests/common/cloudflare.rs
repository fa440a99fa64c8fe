//! A stand-in for Cloudflare's API v4, for the contract tests of the
//! `provider` backend: the machines here cannot reach Cloudflare. dkimd
//! runs with HTTPS_PROXY pointing at [`FakeCloudflare`], which answers
//! CONNECT api.cloudflare.com:443, terminates TLS with a certificate from
//! a CA of its own (dkimd trusts it through SSL_CERT_FILE), and checks
//! every request against what Cloudflare documents. Each fact names its
//! source:
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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
    /// The HTTP proxy's port (HTTPS_PROXY=http://127.0.0.1:PORT).
    pub port: u16,
    /// The CA that signed the fake's certificate (SSL_CERT_FILE).
    pub ca_file: PathBuf,
    pub state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

/// The quoted strings of TXT content, joined (as DNS serves them).
pub fn unquote(content: &str) -> String {
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
    if !content.contains('"') {
        return content.to_string();
    }
    out
}

impl FakeCloudflare {
    /// A fake account holding `zones`, reachable with `token`.
    pub fn start(token: &str, zones: &[&str]) -> FakeCloudflare {
        use tokio_rustls::rustls;
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let sh = format!(
            "set -e; cd {d}; \
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=fake-cloudflare-ca -keyout ca.key -out ca.crt 2>/dev/null; \
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=api.cloudflare.com -keyout server.key -out server.csr 2>/dev/null; \
             printf 'subjectAltName=DNS:api.cloudflare.com\\n' > ext; \
             openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt 2>/dev/null",
            d = d.display()
        );
        let o = std::process::Command::new("sh")
            .args(["-c", &sh])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::CertificateDer::pem_file_iter(d.join("server.crt"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(d.join("server.key")).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            zones: zones
                .iter()
                .enumerate()
                .map(|(i, z)| (z.to_string(), format!("{:032x}", i + 1)))
                .collect(),
            ..State::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    let (acceptor, st) = (acceptor.clone(), st.clone());
                    tokio::spawn(async move {
                        let _ = proxy(tcp, acceptor, st).await;
                    });
                }
            });
        });
        FakeCloudflare {
            port,
            ca_file: d.join("ca.crt"),
            state,
            stop: Some(stop),
            thread: Some(thread),
            _tmp: tmp,
        }
    }

    /// The environment dkimd runs in to reach the fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "HTTPS_PROXY".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            (
                "https_proxy".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("SSL_CERT_FILE".into(), self.ca_file.display().to_string()),
            ("NO_PROXY".into(), String::new()),
        ]
    }
}

impl Drop for FakeCloudflare {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One proxied connection: CONNECT, then TLS, then HTTP/1.1 requests.
async fn proxy(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    st: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let mut tcp = BufReader::new(tcp);
    let mut line = String::new();
    tcp.read_line(&mut line).await?;
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    loop {
        let mut h = String::new();
        if tcp.read_line(&mut h).await? == 0 || h == "\r\n" {
            break;
        }
    }
    if !line.starts_with("CONNECT ") || target != "api.cloudflare.com:443" {
        st.lock()
            .unwrap()
            .violations
            .push(format!("the proxy was asked {line:?}"));
        tcp.get_mut()
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    tcp.get_mut()
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    let tls = acceptor.accept(tcp.into_inner()).await?;
    let mut tls = BufReader::new(tls);
    loop {
        let mut request = String::new();
        if tls.read_line(&mut request).await? == 0 {
            return Ok(());
        }
        let mut headers: HashMap<String, String> = HashMap::new();
        loop {
            let mut h = String::new();
            if tls.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        tls.read_exact(&mut body).await?;
        let mut parts = request.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let (status, extra, reply) = answer(&st, &method, &target, &headers, &body);
        let reply = reply.to_string();
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            if status < 300 { "OK" } else { "Error" },
            reply.len()
        );
        tls.get_mut().write_all(head.as_bytes()).await?;
        tls.get_mut().write_all(reply.as_bytes()).await?;
        tls.get_mut().flush().await?;
    }
}

fn envelope(result: serde_json::Value) -> serde_json::Value {
    // Every answer is wrapped in { success, errors, messages, result }
    // [records-list] [records-create].
    serde_json::json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn failure(code: u32, message: &str) -> serde_json::Value {
    serde_json::json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

fn query_of(target: &str) -> (String, HashMap<String, String>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let params = q
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect();
    (path.to_string(), params)
}

fn decode(v: &str) -> String {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn record_json(r: &Record, zone: &str) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "zone_id": r.zone_id, "zone_name": zone, "name": r.name,
        "type": r.rtype, "content": r.content, "ttl": r.ttl, "proxied": false,
        "proxiable": false, "locked": false
    })
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
            let Some(zone) = s
                .zones
                .iter()
                .find(|(_, id)| id == zid)
                .map(|(n, _)| n.clone())
            else {
                s.violations.push(format!("no zone with id {zid}"));
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
            let Some(zone) = s
                .zones
                .iter()
                .find(|(_, id)| id == zid)
                .map(|(n, _)| n.clone())
            else {
                s.violations.push(format!("no zone with id {zid}"));
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
