//! The web admin page: settings, domains and live DNS state, served by
//! `dkimd run` when `[admin] listen` is set. Every change goes through the
//! same [`Manager`] as the command line, over one store opened at start.
//!
//! Security: a login (argon2 hashes set with `dkimd admin passwd`) guards
//! every route but the login page and the stylesheet; the session cookie is
//! HttpOnly, SameSite=Strict and Secure under TLS; every POST carries the
//! session's CSRF token, checked here before any handler runs; failed
//! logins are rate-limited per address and per user; requests must name an
//! allowed Host (DNS rebinding); every change and login goes to the audit log.

pub mod auth;
pub mod flash;
mod pages;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dkimd_core::clock::SharedClock;
use dkimd_core::config::Config;
use dkimd_core::manager::{Manager, Steps};
use dkimd_core::store::{AuditEntry, Store};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// The largest request body accepted (a PEM key fits many times over).
pub const MAX_BODY: usize = 256 * 1024;

/// The largest login form accepted (user name, password, token).
pub const MAX_LOGIN_BODY: usize = 8 * 1024;

/// User names are cut to this many characters before they are shown,
/// logged or audited.
pub use dkimd_core::store::audit::MAX_USER_NAME;

pub use dkimd_core::model::cut;

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "dkimd_session";
/// The login form's own CSRF cookie.
pub const LOGIN_COOKIE: &str = "dkimd_login";

/// Everything the handlers share.
pub struct App {
    /// The configuration.
    pub cfg: Config,
    /// The logged-in sessions.
    pub sessions: Mutex<auth::Sessions>,
    /// Failed logins, per address and per user.
    pub limiter: Mutex<auth::Limiter>,
    /// One change at a time (the store is one transaction per change, but
    /// two publishes into one zone must not interleave).
    pub busy: tokio::sync::Mutex<()>,
    /// The store, opened and checked once, shared by every request.
    pub store: dkimd_core::store::Shared,
    /// The clock of every change.
    pub clock: SharedClock,
    /// True when the page is served over TLS.
    pub tls: bool,
    allowed_hosts: Vec<String>,
    /// Checked for unknown user names (same cost as a wrong password).
    pub dummy_hash: String,
    /// Password checks running at once (each takes ~19 MiB and tens of ms).
    pub hashing: tokio::sync::Semaphore,
    /// Key imports shown as a plan and waiting for confirmation, one per
    /// session (so at most as many as sessions), for [`PENDING_FOR`].
    pub pending: Mutex<std::collections::HashMap<String, PendingImport>>,
}

/// How long a key import's plan waits for its confirmation.
pub const PENDING_FOR: Duration = Duration::from_secs(600);

/// A pasted key, checked, waiting for the admin to confirm its plan. Never
/// sent back to the browser.
pub struct PendingImport {
    /// The domain the key is for.
    pub domain: String,
    /// The key (PEM).
    pub pem: String,
    /// The selector it will sign under.
    pub selector: String,
    /// When the plan was shown.
    pub at: std::time::Instant,
}

/// The logged-in admin of one request (set by the login check).
#[derive(Clone, Debug)]
pub struct Authed {
    /// The user name.
    pub user: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// The session id.
    pub session: String,
}

impl App {
    /// The shared state of a page listening on `listen`.
    pub fn new(
        cfg: Config,
        listen: SocketAddr,
        store: dkimd_core::store::Shared,
        clock: SharedClock,
    ) -> Arc<App> {
        let a = &cfg.admin;
        // Host names without their port: a tunnel (ssh -L 9000:…) may use
        // another local port; DNS rebinding needs a name of the attacker's,
        // which is never one of these.
        let mut allowed_hosts = vec![
            listen.ip().to_string(),
            format!("[{}]", listen.ip()),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "[::1]".to_string(),
        ];
        for h in &a.hostnames {
            allowed_hosts.push(h.to_ascii_lowercase());
        }
        Arc::new(App {
            sessions: Mutex::new(auth::Sessions::new(
                Duration::from_secs(a.session_idle),
                Duration::from_secs(a.session_lifetime),
            )),
            limiter: Mutex::new(auth::Limiter::new(
                a.login_attempts,
                Duration::from_secs(a.login_window),
            )),
            busy: tokio::sync::Mutex::new(()),
            store,
            clock,
            tls: a.tls(),
            allowed_hosts,
            dummy_hash: auth::dummy_hash(),
            hashing: tokio::sync::Semaphore::new(2),
            pending: Mutex::new(Default::default()),
            cfg,
        })
    }

    /// What a blocking handler needs to make a manager.
    pub fn handle(&self) -> Handle {
        Handle {
            cfg: self.cfg.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The newest audit entries as the page shows them: (time, user,
    /// action, detail, ok).
    pub fn recent_audit(&self, n: usize) -> Vec<(String, String, String, String, bool)> {
        self.store
            .recent_audit(n)
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.time, r.user, r.action, r.detail, r.ok))
            .collect()
    }

    /// Audits a request refused before anyone was known (Origin check).
    pub fn audit_refused(&self, remote: &str, path: &str, why: &str) {
        let _ = self.store.audit(&AuditEntry {
            user: "-",
            remote,
            action: "refused",
            detail: &format!("{path}: {why}"),
            ok: false,
            steps: &[],
        });
    }

    /// Audits a logged-in user's request that was refused.
    fn audit_refused_user(&self, user: &str, parts: &axum::http::request::Parts, why: &str) {
        let remote = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        let _ = self.store.audit(&AuditEntry {
            user,
            remote: &remote,
            action: "refused",
            detail: &format!("{}: {why}", parts.uri.path()),
            ok: false,
            steps: &[],
        });
    }

    /// The `Set-Cookie` attributes every cookie of ours carries.
    pub fn cookie_attrs(&self) -> &'static str {
        if self.tls {
            "; HttpOnly; SameSite=Strict; Secure"
        } else {
            "; HttpOnly; SameSite=Strict"
        }
    }
}

/// What a blocking handler needs to make a manager.
#[derive(Clone)]
pub struct Handle {
    cfg: Config,
    store: dkimd_core::store::Shared,
    clock: SharedClock,
}

/// The page's step sink: the lines are collected for the flash and the
/// audit trail; notices ("waiting up to 30 s for DNS …") go to the log.
struct LogNotices;

impl dkimd_core::manager::StepSink for LogNotices {
    fn line(&self, _line: &dkimd_core::manager::StepLine) {}
    fn notice(&self, text: &str) {
        tracing::info!("{text}");
    }
}

/// A manager over the page's shared store, collecting its steps.
fn manager(h: &Handle) -> anyhow::Result<Manager> {
    Ok(Manager::new(
        h.cfg.clone(),
        Box::new(h.store.clone()),
        Steps::to(Arc::new(LogNotices)),
        h.clock.clone(),
    ))
}

/// The routes, with the login check on all but `/login` and the static files.
pub fn router(app: Arc<App>) -> Router {
    let protected = Router::new()
        .route("/", get(pages::index))
        .route("/settings", post(pages::save_settings))
        .route("/domains", post(pages::domain_add))
        .route("/keys/purge-retired", post(pages::purge_retired))
        .route("/keys/rotate", post(pages::rotate_all))
        .route("/domains/{name}/rotate", post(pages::domain_rotate))
        .route("/domains/{name}", get(pages::domain_page))
        .route("/domains/{name}/features", post(pages::domain_features))
        .route("/domains/{name}/rename", post(pages::domain_rename))
        .route("/domains/{name}/remove", post(pages::domain_remove))
        .route("/domains/{name}/publish", post(pages::domain_publish))
        .route("/domains/{name}/dkim", post(pages::domain_dkim))
        .route("/domains/{name}/key/generate", post(pages::key_generate))
        .route("/domains/{name}/key/import", post(pages::key_import))
        .route(
            "/domains/{name}/key/import/confirm",
            post(pages::key_import_confirm),
        )
        .route("/domains/{name}/key/default", post(pages::key_default))
        .route("/logout", post(pages::logout))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(app.clone(), require_login));
    Router::new()
        .route(
            "/login",
            get(pages::login_form)
                .post(pages::login)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route("/static/style.css", get(pages::style))
        .route("/static/app.js", get(pages::script))
        .route("/favicon.ico", get(pages::favicon))
        .merge(protected)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// A Host header without its port (`[::1]:8443` → `[::1]`).
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => name,
        _ => host,
    }
}

/// A cookie's value from the request.
pub fn cookie(req_headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    req_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.to_string(),
    )
        .into_response()
}

/// On every request: the Host check, a bounded body, POSTs only from our
/// own pages (Origin), and the security headers on every response.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mut resp = if !app.allowed_hosts.contains(&host_name(&host).to_string()) {
        plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this admin page is not served under that host name (add it to [admin] hostnames)",
        )
    } else if req.method() == Method::POST
        && req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| {
                // Scheme and host both: an https origin is not ours on
                // plain http, nor the other way round.
                let scheme = if app.tls { "https" } else { "http" };
                o.split_once("://").is_none_or(|(s, rest)| {
                    !s.eq_ignore_ascii_case(scheme) || rest.to_ascii_lowercase() != host
                })
            })
    {
        app.audit_refused(&peer, &path, "POST from another origin");
        plain(
            StatusCode::FORBIDDEN,
            "the form was sent from another site; nothing was changed",
        )
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    for (k, v) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // "no-referrer" would make browsers send `Origin: null` on our own forms.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    tracing::info!(
        "admin page: {peer} {method} {path} {}",
        resp.status().as_u16()
    );
    let h = resp.headers_mut();
    if app.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

/// The login check and, for POSTs, the CSRF check (before any handler).
async fn require_login(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let id = cookie(req.headers(), SESSION_COOKIE).unwrap_or_default();
    let authed = {
        let Ok(mut sessions) = app.sessions.lock() else {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "session table poisoned");
        };
        sessions.touch(&id).map(|s| {
            (
                Authed {
                    user: s.user.clone(),
                    csrf: s.csrf.clone(),
                    session: id.clone(),
                },
                s.hash.clone(),
            )
        })
    };
    let Some((authed, hash)) = authed else {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    };
    // A removed user or a changed password ends the session.
    let store = app.store.clone();
    let user = authed.user.clone();
    let current = tokio::task::spawn_blocking(move || store.admin_hash(&user)).await;
    if !matches!(&current, Ok(Ok(Some(h))) if *h == hash) {
        if let Ok(mut s) = app.sessions.lock() {
            s.end(&authed.session);
        }
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    }
    let (mut parts, body) = req.into_parts();
    let body = if parts.method == Method::POST {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
            app.audit_refused_user(&authed.user, &parts, "form over the size limit");
            return pages::error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "The form is larger than the {} KiB a form may send (a field holds far more than any setting or key needs).",
                    MAX_BODY / 1024
                ),
            );
        };
        let token = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !auth::same_secret(&token, &authed.csrf) {
            app.audit_refused_user(&authed.user, &parts, "missing or stale CSRF token");
            return plain(
                StatusCode::FORBIDDEN,
                "the form's security token is missing or out of date (reload the page and try again); nothing was changed",
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(authed);
    next.run(Request::from_parts(parts, body)).await
}

/// Loads the TLS certificate and key (the key must be private).
fn tls_acceptor(cfg: &Config) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&cfg.admin.tls_cert, &cfg.admin.tls_key) else {
        return Ok(None);
    };
    dkimd_core::sys::check_private(key, "admin TLS key")?;
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("admin.tls_cert {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("admin.tls_cert {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("admin.tls_cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("admin.tls_key {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("admin.tls_cert and admin.tls_key do not make a usable pair")?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// The admin page, bound and ready to serve.
pub struct Prepared {
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Checks the TLS files and binds the admin page's address (before the
/// daemon says it is ready, so that mistakes stop it at startup). The page
/// works on `store` for its life.
pub async fn bind(
    cfg: &Config,
    store: dkimd_core::store::Shared,
    clock: SharedClock,
) -> anyhow::Result<Option<Prepared>> {
    let Some(addr) = cfg.admin.listen else {
        return Ok(None);
    };
    let tls = tls_acceptor(cfg)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the admin page on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    Ok(Some(Prepared {
        listener,
        app: App::new(cfg.clone(), local, store, clock),
        tls,
    }))
}

/// Checks the admin page's TLS files (for `dkimd run --check-config`).
pub fn check(cfg: &Config) -> anyhow::Result<()> {
    tls_acceptor(cfg).map(|_| ())
}

/// Serves the admin page until the task is dropped.
pub async fn serve(p: Prepared) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let Prepared { listener, app, tls } = p;
    let local = listener.local_addr()?;
    let users = {
        let store = app.store.clone();
        tokio::task::spawn_blocking(move || store.admin_names())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))??
    };
    tracing::info!(
        "admin page on {}://{local}/ ({})",
        if tls.is_some() { "https" } else { "http" },
        if users.is_empty() {
            "no admin user yet: set one with `dkimd admin passwd`".to_string()
        } else {
            format!("users: {}", users.join(", "))
        }
    );
    let router = router(app);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::info!("admin page: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(req.map(Body::new))
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(64 * 1024);
            let limit = Duration::from_secs(300);
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    let _ =
                        tokio::time::timeout(limit, builder.serve_connection(TokioIo::new(s), svc))
                            .await;
                }
                None => {
                    let _ = tokio::time::timeout(
                        limit,
                        builder.serve_connection(TokioIo::new(stream), svc),
                    )
                    .await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:8443"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("mail.example.com:443"), "mail.example.com");
    }
}
