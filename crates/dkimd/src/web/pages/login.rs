//! The login form, logging in and out.

use super::*;
use crate::web::{auth, cookie, LOGIN_COOKIE, SESSION_COOKIE};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::Extension;
use axum::Form;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    title: &'static str,
    user: String,
    csrf: String,
    error: Option<String>,
    username: String,
}

/// The login form's token: the browser's current one when it has one (so
/// that two login pages open at once, or a favicon request, do not void
/// each other), else a new one.
fn login_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    username: &str,
) -> Response {
    let token = cookie(headers, LOGIN_COOKIE)
        .filter(|t| {
            t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or_else(auth::random_token);
    let mut r = render(
        status,
        &LoginPage {
            title: "Log in",
            user: String::new(),
            csrf: token.clone(),
            error,
            username: username.to_string(),
        },
    );
    if let Ok(v) = format!(
        "{LOGIN_COOKIE}={token}; Path=/login; Max-Age=900{}",
        app.cookie_attrs()
    )
    .parse()
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn login_form(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    login_page(&app, &headers, StatusCode::OK, None, "")
}

pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    // A name longer than any user's is cut before it is echoed, logged,
    // counted or audited (the password check then simply fails).
    let user = f
        .get("user")
        .map(|u| crate::web::cut(u.trim(), crate::web::MAX_USER_NAME))
        .unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let sent = f.get("csrf").cloned().unwrap_or_default();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !auth::same_secret(&sent, &expected) {
        refused(
            &app,
            &user,
            &peer,
            "login",
            "missing or stale login form token",
        );
        return login_page(
            &app,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The login form was out of date; please try again.".into()),
            &user,
        );
    }
    let addr = peer.ip().to_string();
    let wait = app
        .limiter
        .lock()
        .ok()
        .and_then(|mut l| l.blocked(&addr, &user));
    if let Some(wait) = wait {
        refused(
            &app,
            &user,
            &peer,
            "login",
            &format!("rate limit: {wait} s to wait"),
        );
        let mut r = login_page(
            &app,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed logins: try again in {wait} seconds."
            )),
            &user,
        );
        if let Ok(v) = wait.to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let store = app.handle();
    let dummy = app.dummy_hash.clone();
    let name = user.clone();
    let Ok(_hashing) = app.hashing.acquire().await else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let ok = blocking(move || {
        let hash = dkimd_core::store::Store::admin_hash(&store.store, &name)?;
        let matched = auth::check_password(&password, hash.as_deref().unwrap_or(&dummy));
        Ok(hash.filter(|_| matched))
    })
    .await;
    let hash = match ok {
        Ok(h) => h,
        Err(e) => {
            tracing::info!("admin page: login check failed: {e:#}");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store cannot be read; see the daemon's log",
            );
        }
    };
    let entry = |ok: bool| AuditEntry {
        user: &user,
        remote: &addr,
        action: if ok { "login" } else { "login failed" },
        detail: "",
        ok,
        steps: &[],
    };
    let ok = hash.is_some();
    if let Err(e) = app.store.audit(&entry(ok)) {
        tracing::info!("admin page: {}", e.chain());
    }
    if !ok {
        if let Ok(mut l) = app.limiter.lock() {
            l.failed(&addr, &user);
        }
        tracing::info!("admin page: failed login for {user:?} from {addr}");
        return login_page(
            &app,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Wrong user name or password.".into()),
            &user,
        );
    }
    if let Ok(mut l) = app.limiter.lock() {
        l.succeeded(&addr);
    }
    let hash = hash.unwrap_or_default();
    let Ok(id) = app.sessions.lock().map(|mut s| s.start(&user, &hash)) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "session table poisoned");
    };
    let mut r = see_other("/");
    let h = r.headers_mut();
    for c in [
        format!("{SESSION_COOKIE}={id}; Path=/{}", app.cookie_attrs()),
        format!(
            "{LOGIN_COOKIE}=; Path=/login; Max-Age=0{}",
            app.cookie_attrs()
        ),
    ] {
        if let Ok(v) = c.parse() {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

pub async fn logout(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if let Ok(mut s) = app.sessions.lock() {
        s.end(&who.session);
    }
    let _ = app.store.audit(&AuditEntry {
        user: &who.user,
        remote: &peer.ip().to_string(),
        action: "logout",
        detail: "",
        ok: true,
        steps: &[],
    });
    let mut r = see_other("/login");
    if let Ok(v) = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0{}", app.cookie_attrs()).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
