//! One domain's page, and the changes to a domain.

use super::rows::DomainRow;
use super::*;
use axum::extract::{ConnectInfo, Path, State};
use axum::Extension;
use axum::Form;
use dkimd_core::error::Field;

#[derive(Template)]
#[template(path = "domain.html")]
pub(super) struct DomainPage {
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

fn domain_of(name: &str) -> Option<String> {
    dkimd_core::model::names::domain_name(name, Field::Domain).ok()
}

async fn domain_row(app: &App, name: &str) -> Result<Option<DomainRow>, String> {
    let q = dkimd_core::manager::StatusQuery {
        search: Some(name.to_string()),
        ..Default::default()
    };
    let (_, rows, _) = load_status(app, q).await;
    Ok(rows?.0.into_iter().find(|r| r.name == name))
}

pub(super) async fn domain_view(
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
pub(super) async fn domain_view_with_plan(
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
pub(super) async fn known_domain(app: &App, name: &str) -> Option<String> {
    let name = domain_of(name)?;
    let store = app.handle();
    let n = name.clone();
    blocking(move || Ok(crate::web::manager(&store)?.load()?.domain(&n).is_some()))
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
    dkimd_core::model::names::domain_name(raw.trim(), field)
        .map_err(|e| (crate::web::cut(raw.trim(), 300), e.to_string()))
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
pub(super) async fn on_domain(
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
            let detail = format!("{} to {text}", crate::web::cut(&name, 300));
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
