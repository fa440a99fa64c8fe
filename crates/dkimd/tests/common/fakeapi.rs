//! A provider's API stood in for on loopback: an HTTP proxy that answers
//! `CONNECT HOST:443`, terminates TLS with a certificate for HOST from a
//! CA of its own, and hands each HTTP/1.1 request to a handler. dkimd
//! reaches it through HTTPS_PROXY and trusts the CA through SSL_CERT_FILE,
//! exactly as it would reach the provider. Stopped when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One request: method, target (path and query), headers (lower-case
/// names), body. The answer: status, extra header lines, JSON body.
pub type Handler =
    Arc<dyn Fn(&str, &str, &HashMap<String, String>, &[u8]) -> (u16, String, String) + Send + Sync>;

pub struct FakeApi {
    /// The HTTP proxy's port.
    pub port: u16,
    /// The CA that signed the fake's certificate.
    pub ca_file: PathBuf,
    /// Requests that went to another host than the fake's.
    pub strays: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl FakeApi {
    /// Serves `host` (e.g. "api.cloudflare.com") with `handler`.
    pub fn start(host: &str, handler: Handler) -> FakeApi {
        let tmp = tempfile::tempdir().unwrap();
        let acceptor = test_tls(tmp.path(), &format!("DNS:{host}"), true);
        let d = tmp.path();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let strays = Arc::new(Mutex::new(Vec::new()));
        let (want, strays2) = (format!("{host}:443"), strays.clone());
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
                    let (acceptor, handler) = (acceptor.clone(), handler.clone());
                    let (want, strays) = (want.clone(), strays2.clone());
                    tokio::spawn(async move {
                        let _ = proxy(tcp, acceptor, handler, want, strays).await;
                    });
                }
            });
        });
        FakeApi {
            port,
            ca_file: d.join("ca.crt"),
            strays,
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

impl Drop for FakeApi {
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
    handler: Handler,
    want: String,
    strays: Arc<Mutex<Vec<String>>>,
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
    if !line.starts_with("CONNECT ") || target != want {
        strays.lock().unwrap().push(line.trim().to_string());
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
        let (status, extra, reply) = handler(&method, &target, &headers, &body);
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

/// A TLS acceptor (aws-lc-rs, HTTP/1.1 by ALPN when `alpn`) with a
/// certificate for `san` ("DNS:host" or "IP:addr") signed by a new CA,
/// whose certificate is `dir/ca.crt`; `dir/other.crt` is another CA's,
/// which signed nothing.
pub fn test_tls(dir: &std::path::Path, san: &str, alpn: bool) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    let sh = format!(
        "set -e; cd {d}; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.crt 2>/dev/null; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.crt 2>/dev/null; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=test-server -keyout server.key -out server.csr 2>/dev/null; \
         printf 'subjectAltName={san}\\n' > ext; \
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt 2>/dev/null",
        d = dir.display()
    );
    let o = std::process::Command::new("sh")
        .args(["-c", &sh])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "certificates: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
        rustls_pki_types::CertificateDer::pem_file_iter(dir.join("server.crt"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    if alpn {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The path and the decoded query parameters of a request target.
pub fn query_of(target: &str) -> (String, HashMap<String, String>) {
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
