//! A small HTTP/1.1 client for the API backends, on hyper: one request per
//! connection (a publishing command makes a handful), http or https
//! (rustls with aws-lc-rs), the whole exchange under one timeout, and the
//! response body read with a size limit.

use crate::error::{err, Error};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The most of a response body that is read (a zone of 100,000 domains'
/// records is about 60 MB of JSON).
const MAX_BODY: usize = 256 << 20;

/// Where an API lives: scheme, host, port and the path prefix.
#[derive(Clone)]
pub(crate) struct Endpoint {
    tls: Option<Arc<rustls::ClientConfig>>,
    host: String,
    port: u16,
    /// The URL's path without a trailing slash ("" for none).
    prefix: String,
    /// For messages: the URL as written.
    url: String,
    /// For messages: where the CA certificates come from.
    roots: String,
    timeout: Duration,
}

/// An HTTP response: status and body.
pub(crate) struct Response {
    /// The status code.
    pub status: u16,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

impl Endpoint {
    /// The endpoint of `url` (checked by `config::check_api_url`);
    /// `ca_file` holds the CAs to check an https server with (default:
    /// the system's). `setting` names the CA file's setting in messages.
    pub(crate) fn new(
        url: &str,
        ca_file: Option<&Path>,
        setting: &str,
        timeout: Duration,
    ) -> crate::Result<Endpoint> {
        crate::config::check_api_url(url).map_err(|e| err!("{url:?}: {e}"))?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err!("{url:?}: no scheme"))?;
        let https = scheme.eq_ignore_ascii_case("https");
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = split_authority(authority, if https { 443 } else { 80 })
            .map_err(|e| err!("{url:?}: {e}"))?;
        let roots = match ca_file {
            Some(f) => format!("{setting} {}", f.display()),
            None => format!("the system's CA certificates (set {setting} for a private CA)"),
        };
        let tls = if https {
            Some(Arc::new(crate::sys::tls_client_config(
                ca_file,
                setting,
                &format!("the server at {url}"),
            )?))
        } else {
            None
        };
        Ok(Endpoint {
            tls,
            host,
            port,
            prefix: path.trim_end_matches('/').to_string(),
            url: url.to_string(),
            roots,
            timeout,
        })
    }

    /// The URL's path, without a trailing slash.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL as configured, for messages.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request to `path` (which starts with '/'), with the
    /// headers given and an optional JSON body; waits for the whole
    /// response. Failing to connect, or no answer within the timeout, is
    /// [`Error::Unreachable`].
    pub(crate) async fn request(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> crate::Result<Response> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unreachable(format!(
                "{} did not answer within {} s",
                self.url,
                self.timeout.as_secs()
            ))),
        }
    }

    async fn exchange(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> crate::Result<Response> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Error::Unreachable(format!("cannot connect to {}: {e}", self.url)))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => {
                self.send(TokioIo::new(tcp), method, path, headers, body)
                    .await
            }
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| err!("{}: host {:?}: {e}", self.url, self.host))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        let text = e.to_string();
                        if text.contains("certificate") {
                            err!(
                                "TLS with {}: {text}: the server's certificate is not one that {} vouches for, or not for {:?}",
                                self.url,
                                self.roots,
                                self.host
                            )
                        } else {
                            err!("TLS with {}: {text}", self.url)
                        }
                    })?;
                self.send(TokioIo::new(tls), method, path, headers, body)
                    .await
            }
        }
    }

    async fn send<T>(
        &self,
        io: TokioIo<T>,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> crate::Result<Response>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| err!("HTTP with {}: {e}", self.url))?;
        let driver = tokio::spawn(conn);
        let host = if (self.tls.is_some() && self.port == 443)
            || (self.tls.is_none() && self.port == 80)
        {
            bracket(&self.host)
        } else {
            format!("{}:{}", bracket(&self.host), self.port)
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(
                hyper::header::USER_AGENT,
                concat!("dkimd/", env!("CARGO_PKG_VERSION")),
            )
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| err!("request to {}: {e}", self.url))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Unreachable(format!("{} closed the connection: {e}", self.url)))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| err!("reading {}'s answer: {e}", self.url))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(Response { status, body })
    }
}

/// An IPv6 literal in brackets, other hosts as they are.
fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// "host", "host:port", "[v6]" or "[v6]:port".
fn split_authority(a: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address without its closing ']'")?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("unexpected {after:?} after the address")),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("127.0.0.1:8081", 80),
            Ok(("127.0.0.1".into(), 8081))
        );
        assert_eq!(
            split_authority("dns.example", 443),
            Ok(("dns.example".into(), 443))
        );
        assert_eq!(split_authority("[::1]:8081", 80), Ok(("::1".into(), 8081)));
        assert_eq!(split_authority("[::1]", 80), Ok(("::1".into(), 80)));
        assert!(split_authority("host:0", 80).is_err());
        assert!(split_authority("host:http", 80).is_err());
        assert!(split_authority("[::1", 80).is_err());
        assert!(split_authority(":80", 80).is_err());
    }

    #[test]
    fn endpoints_keep_their_path() {
        let e = Endpoint::new(
            "http://127.0.0.1:8081/api/v1/",
            None,
            "ca_file",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(e.prefix(), "/api/v1");
        assert_eq!(e.port, 8081);
        assert!(Endpoint::new("ftp://x", None, "ca_file", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind, learn the port, close: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Endpoint::new(
            &format!("http://127.0.0.1:{port}"),
            None,
            "ca_file",
            Duration::from_secs(2),
        )
        .unwrap();
        let r = crate::dns::block_on(e.request(hyper::Method::GET, "/", &[], None)).unwrap();
        assert!(matches!(r, Err(Error::Unreachable(_))), "{:?}", r.err());
    }
}
