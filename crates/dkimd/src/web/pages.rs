//! The pages and the form handlers of the admin page.

use super::flash::{Flash, FlashLine};
use super::{auth, cookie, App, Authed, LOGIN_COOKIE, SESSION_COOKIE};
use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use dkimd_core::dns::DnsState;
use dkimd_core::error::Field;
use dkimd_core::manager::{check_settings, DomainStatus, Manager, SettingsRequest, StepLine};
use dkimd_core::model::settings::{SettingName, Settings};
use dkimd_core::store::{AuditEntry, Store};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

type Fields = HashMap<String, String>;

const ACTIONS: &[(&str, &str)] = &[
    ("accept", "Accept (the result is in Authentication-Results)"),
    ("reject", "Bounce (refuse with 550)"),
    ("tempfail", "Delay (refuse with 451, the sender retries)"),
];
const ALGORITHMS: &[(&str, &str)] = &[
    ("rsa", "RSA"),
    ("ed25519", "Ed25519"),
    ("rsa,ed25519", "RSA and Ed25519 (two signatures)"),
];
const RSA_SIZES: &[(&str, &str)] = &[
    ("2048", "2048 bits"),
    ("3072", "3072 bits"),
    ("4096", "4096 bits"),
];
const RULES: &[(&str, &str)] = &[
    ("dns-and-mail", "Domains with DNS and email enabled"),
    ("all-dns", "All domains with DNS enabled"),
    ("all", "All domains"),
    ("opt-in", "Only domains set to always sign"),
];

/// The settings form's values (as shown, or as sent back with errors).
#[derive(Clone, Debug)]
pub struct SettingsForm {
    signing: bool,
    selector: String,
    verify: bool,
    policy_fail: String,
    policy_permerror: String,
    policy_temperror: String,
    policy_none: String,
    algorithms: String,
    rsa_bits: String,
    new_key: bool,
    default_domains: String,
    extra_domains: String,
    excluded_domains: String,
}

impl SettingsForm {
    fn from_settings(s: &Settings) -> SettingsForm {
        SettingsForm {
            signing: s.signing,
            selector: s.selector.clone(),
            verify: s.verify,
            policy_fail: s.policy_fail.as_str().into(),
            policy_permerror: s.policy_permerror.as_str().into(),
            policy_temperror: s.policy_temperror.as_str().into(),
            policy_none: s.policy_none.as_str().into(),
            algorithms: s
                .algorithms
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
            rsa_bits: s.rsa_bits.to_string(),
            new_key: false,
            default_domains: s.default_rule.as_str().into(),
            extra_domains: s.extra_domains.join("\n"),
            excluded_domains: s.excluded_domains.join("\n"),
        }
    }

    fn from_fields(f: &Fields) -> SettingsForm {
        let t = |k: &str| f.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        SettingsForm {
            signing: t("signing") == "yes",
            selector: t("selector"),
            verify: t("verify") == "yes",
            policy_fail: t("policy_fail"),
            policy_permerror: t("policy_permerror"),
            policy_temperror: t("policy_temperror"),
            policy_none: t("policy_none"),
            algorithms: t("algorithms"),
            rsa_bits: t("rsa_bits"),
            new_key: t("new_key") == "yes",
            default_domains: t("default_domains"),
            extra_domains: t("extra_domains"),
            excluded_domains: t("excluded_domains"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct KeyRow {
    selector: String,
    alg: String,
    own: bool,
    record_name: String,
    record: String,
    dns: String,
    dns_ok: bool,
    /// What the DNS state means and what to do, in words.
    dns_help: String,
}

/// What a key's DNS state means, and what the admin does about it.
fn dns_help(state: &DnsState, record_name: &str) -> String {
    match state {
        DnsState::Ok | DnsState::NotChecked => String::new(),
        DnsState::Missing => format!("DNS serves no record at {record_name}: press Publish (for a zone dkimd writes), or publish the record shown in the domain's zone."),
        DnsState::Mismatch => {
            "DNS serves another key here: press Publish to replace it with the record shown.".into()
        }
        DnsState::Multiple(_) | DnsState::MultipleNoneMatches(_) => {
            "DNS serves several records at this name: receivers may pick any. Press Publish (it leaves only the one shown), or remove the others by hand.".into()
        }
        DnsState::WrongForm => {
            "Publish the record shown instead (press Publish for a zone dkimd writes).".into()
        }
        DnsState::LookupFailed(why) if why.contains("Refused") => {
            "The name server asked refused to answer for this name: it does not serve this domain's zone. Check [dns] nameservers, and that the zone is published where the world looks for it.".into()
        }
        DnsState::LookupFailed(_) => {
            "The check could not ask DNS: see that [dns] nameservers points at a server that answers, then reload this page.".into()
        }
        _ => String::new(),
    }
}

#[derive(Clone, Debug)]
pub struct DomainRow {
    name: String,
    known: bool,
    signs: bool,
    why: String,
    dkim: String,
    features: String,
    dns_on: bool,
    mail_on: bool,
    /// Where its records are published.
    backend: String,
    keys: Vec<KeyRow>,
}

impl DomainRow {
    fn from_status(d: DomainStatus) -> DomainRow {
        let (known, dkim, features) = match d.known {
            Some((dns, mail, ovr)) => (
                true,
                ovr.as_str().to_string(),
                format!(
                    "DNS {}, email {}",
                    if dns { "on" } else { "off" },
                    if mail { "on" } else { "off" }
                ),
            ),
            None => (false, String::new(), "extra domain".to_string()),
        };
        DomainRow {
            name: d.domain,
            known,
            signs: d.signs,
            why: d.why,
            dkim,
            features,
            dns_on: d.known.is_some_and(|(dns, _, _)| dns),
            mail_on: d.known.is_some_and(|(_, mail, _)| mail),
            backend: d.backend,
            keys: d
                .keys
                .into_iter()
                .map(|k| KeyRow {
                    dns_ok: k.dns.is_ok(),
                    dns_help: dns_help(&k.dns, &k.record_name),
                    selector: k.selector,
                    alg: format!("{}-{}", k.algorithm.as_str(), k.bits),
                    own: k.own_key,
                    record: k.zone_line,
                    record_name: k.record_name,
                    dns: k.dns.to_string(),
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    title: &'static str,
    user: String,
    csrf: String,
    error: Option<String>,
    username: String,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    title: &'static str,
    user: String,
    csrf: String,
    flash: Option<Flash>,
    form: SettingsForm,
    errors: HashMap<&'static str, String>,
    default_selector: String,
    signing_on: bool,
    selector: String,
    status_error: Option<String>,
    domains: Vec<DomainRow>,
    /// Retired keys kept in the store (their records are no longer wanted).
    retired_keys: usize,
    audit: Vec<(String, String, String, String, bool)>,
    actions: &'static [(&'static str, &'static str)],
    algorithms: &'static [(&'static str, &'static str)],
    rsa_sizes: &'static [(&'static str, &'static str)],
    rules: &'static [(&'static str, &'static str)],
}

#[derive(Template)]
#[template(path = "domain.html")]
struct DomainPage {
    title: String,
    user: String,
    csrf: String,
    flash: Option<Flash>,
    row: DomainRow,
    pem_error: Option<String>,
    selector_error: Option<String>,
    key_selector: String,
    /// A key import waiting for confirmation: what it will do.
    plan: Option<Vec<String>>,
}

fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the page: {e}"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    msg: &'a str,
    /// Empty: the page shows no logout form (base.html).
    user: &'a str,
    csrf: &'a str,
}

/// A refusal or failure as a page of its own (HTML, with the stylesheet
/// and a way back), never a bare text answer.
pub(super) fn error_page(status: StatusCode, msg: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    render(
        status,
        &ErrorPage {
            title,
            msg,
            user: "",
            csrf: "",
        },
    )
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

fn take_flash(app: &App, session: &str) -> Option<Flash> {
    app.sessions
        .lock()
        .ok()?
        .touch(session)
        .and_then(|s| s.flash.take())
}

/// Runs blocking manager work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("internal error: {e}")))
}

/// Settings and every domain's live state.
/// The settings, every domain's row, and how many retired keys the store
/// keeps.
async fn load_status(app: &App) -> (Settings, Result<Vec<DomainRow>, String>, usize) {
    let store = app.handle();
    let r = blocking(move || {
        let m = super::manager(&store)?;
        let st = m.load()?;
        let retired = st
            .keys
            .iter()
            .filter(|k| k.state == dkimd_core::store::KeyState::Retired)
            .count();
        let rows = m.status().map_err(|e| format!("{e:#}"));
        Ok((st.settings, rows, retired))
    })
    .await;
    match r {
        Ok((s, rows, retired)) => (
            s,
            rows.map(|r| r.into_iter().map(DomainRow::from_status).collect()),
            retired,
        ),
        Err(e) => (Settings::default(), Err(format!("{e:#}")), 0),
    }
}

/// Applies one change through the manager, writes the audit log, keeps the
/// steps for the next page and redirects there.
async fn change(
    app: &Arc<App>,
    who: &Authed,
    remote: SocketAddr,
    action: &str,
    detail: String,
    back: &str,
    f: impl FnOnce(&mut Manager) -> dkimd_core::Result<()> + Send + 'static,
) -> Response {
    let _one_at_a_time = app.busy.lock().await;
    let store = app.handle();
    let result = blocking(move || {
        let mut m = super::manager(&store)?;
        m.begin_batch();
        let r = f(&mut m);
        let r = match m.flush_batch() {
            Ok(()) => r,
            Err(e) => r.and(Err(e)),
        };
        Ok((r, m.out.take_lines(), m.out.failures))
    })
    .await;
    let (mut lines, mut failures) = (Vec::new(), 0);
    match result {
        Ok((r, l, n)) => {
            lines = l;
            failures = n;
            if let Err(e) = r {
                failures += 1;
                lines.push(StepLine {
                    subject: Some("error".into()),
                    text: e.chain(),
                    ok: false,
                });
            }
        }
        Err(e) => {
            failures += 1;
            lines.push(StepLine {
                subject: Some("error".into()),
                text: format!("{e:#}"),
                ok: false,
            });
        }
    }
    let remote = remote.ip().to_string();
    let steps: Vec<String> = lines.iter().map(ToString::to_string).collect();
    if let Err(e) = app.store.audit(&AuditEntry {
        user: &who.user,
        remote: &remote,
        action,
        detail: &detail,
        ok: failures == 0,
        steps: &steps,
    }) {
        tracing::error!("admin page: {e:#}");
        failures += 1;
        lines.push(StepLine {
            subject: Some("audit".into()),
            text: format!("{e:#}"),
            ok: false,
        });
    }
    tracing::info!(
        "admin page: {} from {remote}: {action} {detail}: {}",
        who.user,
        if failures == 0 {
            "ok".to_string()
        } else {
            format!("{failures} step(s) failed")
        }
    );
    let flash = Flash {
        title: format!("{action}: {detail}"),
        lines: lines
            .iter()
            .map(|l| FlashLine {
                text: l.to_string(),
                ok: l.ok,
                heading: l.subject.is_none(),
            })
            .collect(),
        failures,
    };
    if let Ok(mut s) = app.sessions.lock() {
        if let Some(s) = s.touch(&who.session) {
            s.flash = Some(flash);
        }
    }
    see_other(back)
}

// ---- login ------------------------------------------------------------------

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
        .map(|u| super::cut(u.trim(), super::MAX_USER_NAME))
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
            tracing::error!("admin page: login check failed: {e:#}");
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
        tracing::error!("admin page: {e:#}");
    }
    if !ok {
        if let Ok(mut l) = app.limiter.lock() {
            l.failed(&addr, &user);
        }
        tracing::warn!("admin page: failed login for {user:?} from {addr}");
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

// ---- the main page ------------------------------------------------------------

async fn index_page(
    app: &Arc<App>,
    who: &Authed,
    status: StatusCode,
    form: Option<SettingsForm>,
    errors: HashMap<&'static str, String>,
) -> Response {
    let (settings, rows, retired_keys) = load_status(app).await;
    let (domains, status_error) = match rows {
        Ok(r) => (r, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let page = IndexPage {
        title: "DKIM",
        user: who.user.clone(),
        csrf: who.csrf.clone(),
        flash: take_flash(app, &who.session),
        form: form.unwrap_or_else(|| SettingsForm::from_settings(&settings)),
        errors,
        default_selector: dkimd_core::clock::year_month(dkimd_core::clock::now()),
        signing_on: settings.signing,
        selector: settings.selector.clone(),
        status_error,
        domains,
        retired_keys,
        audit: app.recent_audit(10),
        actions: ACTIONS,
        algorithms: ALGORITHMS,
        rsa_sizes: RSA_SIZES,
        rules: RULES,
    };
    render(status, &page)
}

pub async fn index(State(app): State<Arc<App>>, Extension(who): Extension<Authed>) -> Response {
    index_page(&app, &who, StatusCode::OK, None, HashMap::new()).await
}

/// The settings form as the core's request.
fn settings_request(form: &SettingsForm) -> SettingsRequest {
    use SettingName as N;
    let v = |name: N, value: &str| (name, value.to_string());
    SettingsRequest {
        values: vec![
            v(N::Verify, if form.verify { "on" } else { "off" }),
            v(N::PolicyFail, &form.policy_fail),
            v(N::PolicyPermerror, &form.policy_permerror),
            v(N::PolicyTemperror, &form.policy_temperror),
            v(N::PolicyNone, &form.policy_none),
            v(N::Algorithms, &form.algorithms),
            v(N::RsaBits, &form.rsa_bits),
            v(N::DefaultDomains, &form.default_domains),
            v(N::ExtraDomains, &form.extra_domains),
            v(N::ExcludedDomains, &form.excluded_domains),
        ],
        signing: form.signing,
        selector: form.selector.clone(),
        new_key: form.new_key,
    }
}

/// The core's validation errors by form field.
fn field_errors(e: &dkimd_core::Error) -> HashMap<&'static str, String> {
    e.fields()
        .into_iter()
        .map(|(f, m)| (f.form_name(), m.to_string()))
        .collect()
}

/// Audits a change that was refused before it ran (invalid input).
fn refused(app: &App, user: &str, peer: &SocketAddr, action: &str, detail: &str) {
    if let Err(e) = app.store.audit(&AuditEntry {
        user,
        remote: &peer.ip().to_string(),
        action: &format!("{action} (refused)"),
        detail,
        ok: false,
        steps: &[],
    }) {
        tracing::error!("admin page: {e:#}");
    }
}

pub async fn save_settings(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<Fields>,
) -> Response {
    let form = SettingsForm::from_fields(&f);
    let store = app.handle();
    let cur = match blocking(move || Ok(super::manager(&store)?.load()?)).await {
        Ok(st) => st.settings,
        Err(e) => {
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"));
        }
    };
    let default_selector = dkimd_core::clock::year_month(app.clock.now());
    let c = match check_settings(&cur, &settings_request(&form), &default_selector) {
        Ok(c) => c,
        Err(e) => {
            let errors = field_errors(&e);
            let mut fields: Vec<&str> = errors.keys().copied().collect();
            fields.sort_unstable();
            refused(
                &app,
                &who.user,
                &peer,
                "save settings",
                &format!("invalid: {}", fields.join(", ")),
            );
            return index_page(&app, &who, StatusCode::BAD_REQUEST, Some(form), errors).await;
        }
    };
    let mut detail = vec![format!("signing {}", if c.signing { "on" } else { "off" })];
    if c.signing {
        detail.push(format!("selector {}", c.selector));
        detail.push(format!(
            "algorithms {}",
            c.algorithms
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
        if c.new_key {
            detail.push("new key".into());
        }
    }
    detail.extend(c.pairs.iter().map(|(k, v)| format!("{k}={v}")));
    change(
        &app,
        &who,
        peer,
        "save settings",
        detail.join(", "),
        "/",
        move |m| m.save_settings(&c),
    )
    .await
}

// ---- one domain ----------------------------------------------------------------

fn domain_of(name: &str) -> Option<String> {
    dkimd_core::model::names::domain_name(name, Field::Domain).ok()
}

async fn domain_row(app: &App, name: &str) -> Result<Option<DomainRow>, String> {
    let (_, rows, _) = load_status(app).await;
    Ok(rows?.into_iter().find(|r| r.name == name))
}

async fn domain_view(
    app: &Arc<App>,
    who: &Authed,
    name: &str,
    status: StatusCode,
    pem_error: Option<String>,
    selector_error: Option<String>,
    key_selector: String,
) -> Response {
    let row = match domain_row(app, name).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found().await,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    render(
        status,
        &DomainPage {
            title: row.name.clone(),
            user: who.user.clone(),
            csrf: who.csrf.clone(),
            flash: take_flash(app, &who.session),
            row,
            pem_error,
            selector_error,
            key_selector,
            plan: None,
        },
    )
}

/// The domain page with a key import's plan and its Confirm button.
async fn domain_view_with_plan(
    app: &Arc<App>,
    who: &Authed,
    name: &str,
    plan: Vec<String>,
    key_selector: String,
) -> Response {
    let row = match domain_row(app, name).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found().await,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    render(
        StatusCode::OK,
        &DomainPage {
            title: row.name.clone(),
            user: who.user.clone(),
            csrf: who.csrf.clone(),
            flash: None,
            row,
            pem_error: None,
            selector_error: None,
            key_selector,
            plan: Some(plan),
        },
    )
}

pub async fn domain_page(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    Path(name): Path<String>,
) -> Response {
    let Some(name) = domain_of(&name) else {
        return not_found().await;
    };
    domain_view(&app, &who, &name, StatusCode::OK, None, None, String::new()).await
}

/// The domain of a per-domain action: it must be in the store.
async fn known_domain(app: &App, name: &str) -> Option<String> {
    let name = domain_of(name)?;
    let store = app.handle();
    let n = name.clone();
    blocking(move || Ok(super::manager(&store)?.load()?.domain(&n).is_some()))
        .await
        .ok()?
        .then_some(name)
}

pub async fn domain_dkim(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let Some(name) = known_domain(&app, &name).await else {
        return not_found().await;
    };
    let value = f.get("dkim").map(String::as_str).unwrap_or("");
    let ovr = match dkimd_core::model::settings::Override::parse(value) {
        Ok(o) => o,
        Err(e) => {
            refused(
                &app,
                &who.user,
                &peer,
                "set domain dkim",
                &format!("{name}: {e}"),
            );
            return error_page(StatusCode::BAD_REQUEST, &format!("dkim: {e}"));
        }
    };
    let back = format!("/domains/{name}");
    let n = name.clone();
    change(
        &app,
        &who,
        peer,
        "set domain",
        format!("{name} dkim={}", ovr.as_str()),
        if f.contains_key("from_list") {
            "/"
        } else {
            &back
        },
        move |m| m.domain_set(&n, None, None, Some(ovr)),
    )
    .await
}

/// True when a checkbox was sent checked.
fn checked(f: &Fields, key: &str) -> bool {
    f.get(key).is_some_and(|v| v == "on")
}

/// A domain name from a form field, in lower case; `Err` with the field's
/// text (cut) when it is not one.
fn domain_field(f: &Fields, key: &str, field: Field) -> Result<String, (String, String)> {
    let raw = f.get(key).map(String::as_str).unwrap_or_default();
    dkimd_core::model::names::domain_name(raw, field)
        .map_err(|e| (super::cut(raw.trim(), 300), e.to_string()))
}

/// The answer to a field that is not a domain name: the core's message.
fn not_a_domain(msg: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, msg)
}

/// `POST /domains`: adds a domain (name, DNS and mail features).
pub async fn domain_add(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<Fields>,
) -> Response {
    let name = match domain_field(&f, "name", Field::Domain) {
        Ok(n) => n,
        Err((text, msg)) => {
            refused(&app, &who.user, &peer, "add domain", &text);
            return not_a_domain(&msg);
        }
    };
    let (dns, mail) = (checked(&f, "dns"), checked(&f, "mail"));
    let n = name.clone();
    change(
        &app,
        &who,
        peer,
        "add domain",
        format!("{name} dns={dns} mail={mail}"),
        &format!("/domains/{name}"),
        move |m| {
            m.domain_add(
                &n,
                dns,
                mail,
                dkimd_core::model::settings::Override::Default,
            )
        },
    )
    .await
}

/// One change to a domain in the store: a 404 for a domain dkimd does not
/// know, else the change through [`change`], back to `back` (None: the
/// domain's page).
async fn on_domain(
    app: &Arc<App>,
    (who, peer): (&Authed, SocketAddr),
    name: &str,
    action: &str,
    detail: impl FnOnce(&str) -> String,
    back: Option<String>,
    f: impl FnOnce(&mut Manager, &str) -> dkimd_core::Result<()> + Send + 'static,
) -> Response {
    let Some(name) = known_domain(app, name).await else {
        return not_found().await;
    };
    let back = back.unwrap_or_else(|| format!("/domains/{name}"));
    let n = name.clone();
    change(app, who, peer, action, detail(&name), &back, move |m| {
        f(m, &n)
    })
    .await
}

/// `POST /domains/{name}/features`: its DNS and mail features.
pub async fn domain_features(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let (dns, mail) = (checked(&f, "dns"), checked(&f, "mail"));
    on_domain(
        &app,
        (&who, peer),
        &name,
        "set domain",
        |n| format!("{n} dns={dns} mail={mail}"),
        None,
        move |m, n| m.domain_set(n, Some(dns), Some(mail), None),
    )
    .await
}

/// `POST /domains/{name}/rename`: a new name; its records move with it.
pub async fn domain_rename(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let to = match domain_field(&f, "to", Field::NewName) {
        Ok(n) => n,
        Err((text, msg)) => {
            let detail = format!("{} to {text}", super::cut(&name, 300));
            refused(&app, &who.user, &peer, "rename domain", &detail);
            return not_a_domain(&msg);
        }
    };
    let back = Some(format!("/domains/{to}"));
    let detail = format!(" to {to}");
    on_domain(
        &app,
        (&who, peer),
        &name,
        "rename domain",
        move |n| format!("{n}{detail}"),
        back,
        move |m, n| m.domain_rename(n, &to),
    )
    .await
}

/// `POST /domains/{name}/remove`: the domain, its own keys and its records.
pub async fn domain_remove(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    on_domain(
        &app,
        (&who, peer),
        &name,
        "remove domain",
        str::to_string,
        Some("/".into()),
        |m, n| m.domain_remove(n),
    )
    .await
}

/// `POST /domains/{name}/publish`: publish or repair its records.
pub async fn domain_publish(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    on_domain(
        &app,
        (&who, peer),
        &name,
        "publish domain",
        str::to_string,
        None,
        |m, n| m.repair_domain(n),
    )
    .await
}

/// `POST /keys/purge-retired`: deletes every retired key; records that
/// were kept for them are removed.
pub async fn purge_retired(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    change(
        &app,
        &who,
        peer,
        "delete retired keys",
        String::new(),
        "/",
        move |m| m.purge_retired(),
    )
    .await
}

pub async fn key_generate(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    on_domain(
        &app,
        (&who, peer),
        &name,
        "generate key",
        str::to_string,
        None,
        |m, n| m.key_generate(n, None),
    )
    .await
}

pub async fn key_default(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    on_domain(
        &app,
        (&who, peer),
        &name,
        "use default key",
        str::to_string,
        None,
        |m, n| m.key_default(n),
    )
    .await
}

pub async fn key_import(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let Some(name) = known_domain(&app, &name).await else {
        return not_found().await;
    };
    let pem = f
        .get("pem")
        .map(|p| p.trim().to_string())
        .unwrap_or_default();
    let selector = f
        .get("selector")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let n = name.clone();
    // First the plan: which keys sign afterwards, which records are
    // published or removed. The core checks the key and the selector; the
    // key waits on the server (never sent back) until the admin confirms.
    let store = app.handle();
    let (pem2, sel2) = (pem.clone(), selector.clone());
    let plan = blocking(move || {
        let mut m = super::manager(&store)?;
        match m.key_import_pem(&n, &pem2, (!sel2.is_empty()).then_some(sel2.as_str()), true) {
            Ok(()) => Ok(Ok(m.out.take_lines())),
            Err(e) => Ok(Err(e)),
        }
    })
    .await;
    let plan = match plan {
        Ok(Ok(lines)) => lines,
        Ok(Err(e)) => {
            // The reason, never the key text; next to the field it is about.
            refused(
                &app,
                &who.user,
                &peer,
                "import key",
                &format!("{name}: {}", e.chain()),
            );
            let (pem_error, sel_error) = match e.field() {
                Some((Field::Key, m)) => (Some(m.to_string()), None),
                Some((_, m)) => (None, Some(m.to_string())),
                None => (None, Some(e.chain())),
            };
            return domain_view(
                &app,
                &who,
                &name,
                StatusCode::BAD_REQUEST,
                pem_error,
                sel_error,
                selector,
            )
            .await;
        }
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    if let Ok(mut p) = app.pending.lock() {
        p.retain(|_, v| v.at.elapsed() < super::PENDING_FOR);
        p.insert(
            who.session.clone(),
            super::PendingImport {
                domain: name.clone(),
                pem,
                selector: selector.clone(),
                at: std::time::Instant::now(),
            },
        );
    }
    domain_view_with_plan(
        &app,
        &who,
        &name,
        plan.iter()
            .filter(|l| !l.text.starts_with("dry run"))
            .map(|l| l.text.clone())
            .collect(),
        selector,
    )
    .await
}

/// Confirms the key import the plan showed (the key waited on the server).
pub async fn key_import_confirm(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    let Some(name) = known_domain(&app, &name).await else {
        return not_found().await;
    };
    let pending = app
        .pending
        .lock()
        .ok()
        .and_then(|mut p| p.remove(&who.session))
        .filter(|p| p.domain == name && p.at.elapsed() < super::PENDING_FOR);
    let Some(p) = pending else {
        refused(
            &app,
            &who.user,
            &peer,
            "import key",
            &format!("{name}: nothing to confirm"),
        );
        return domain_view(
            &app,
            &who,
            &name,
            StatusCode::BAD_REQUEST,
            Some("Nothing to confirm (the plan expired after 10 minutes, or was for another domain): paste the key again.".into()),
            None,
            String::new(),
        )
        .await;
    };
    let detail = if p.selector.is_empty() {
        name.clone()
    } else {
        format!("{name} selector {}", p.selector)
    };
    let n = name.clone();
    change(
        &app,
        &who,
        peer,
        "import key",
        detail,
        &format!("/domains/{name}"),
        move |m| {
            m.key_import_pem(
                &n,
                &p.pem,
                (!p.selector.is_empty()).then_some(p.selector.as_str()),
                false,
            )
        },
    )
    .await
}

// ---- the rest -------------------------------------------------------------------

/// No icon: an empty answer rather than a redirect to the login page.
pub async fn favicon() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub async fn not_found() -> Response {
    error_page(StatusCode::NOT_FOUND, "no such page or domain")
}

pub async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form through the core's check, errors by form field.
    fn check_settings_form(
        cur: &Settings,
        form: &SettingsForm,
    ) -> Result<dkimd_core::manager::SettingsChange, HashMap<&'static str, String>> {
        check_settings(cur, &settings_request(form), "202612").map_err(|e| field_errors(&e))
    }

    /// The core checks the form (its own tests say how); here: each form
    /// field reaches the core, and each error comes back to its field.
    #[test]
    fn settings_form_errors_name_their_field() {
        let cur = Settings::default();
        let mut form = SettingsForm::from_settings(&cur);
        assert!(check_settings_form(&cur, &form).is_ok());
        form.signing = true;
        form.selector = "bad selector!".into();
        form.extra_domains = "ok.example\nbad..example".into();
        form.excluded_domains = "exa mple.com".into();
        form.rsa_bits = "1024".into();
        form.policy_none = "maybe".into();
        let e = check_settings_form(&cur, &form).err().unwrap();
        let mut fields: Vec<&str> = e.keys().copied().collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "excluded_domains",
                "extra_domains",
                "policy_none",
                "rsa_bits",
                "selector"
            ]
        );
    }

    #[test]
    fn dns_states_are_explained() {
        let n = "s._domainkey.example.com";
        assert_eq!(dns_help(&DnsState::Ok, n), "");
        assert!(dns_help(&DnsState::Missing, n)
            .contains("DNS serves no record at s._domainkey.example.com: press Publish"));
        assert!(dns_help(&DnsState::Mismatch, n).contains("another key"));
        assert!(dns_help(&DnsState::Multiple(2), n).contains("several records"));
        assert!(
            dns_help(&DnsState::LookupFailed("request timed out".into()), n)
                .contains("[dns] nameservers")
        );
        assert!(dns_help(&DnsState::LookupFailed("Query Refused".into()), n)
            .contains("does not serve this domain"));
    }
}
