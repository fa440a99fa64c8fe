//! A domain's own keys: generate, import (a plan, then a confirmation),
//! back to the global key.

use super::domain::{domain_view, domain_view_with_plan, known_domain, on_domain};
use super::*;
use axum::extract::{ConnectInfo, Path, State};
use axum::Extension;
use axum::Form;
use dkimd_core::error::Field;
use dkimd_core::manager::RotateTarget;

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

/// `POST /domains/{name}/rotate`: "Rotate now" for one domain's own keys.
pub async fn domain_rotate(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    on_domain(
        &app,
        (&who, peer),
        &name,
        "rotate",
        str::to_string,
        None,
        |m, n| m.rotate(&RotateTarget::Domains(vec![n.to_string()]), None, None),
    )
    .await
}

/// `POST /keys/rotate`: "Rotate now" for the global keys and every own key.
pub async fn rotate_all(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    change(&app, &who, peer, "rotate", "--all".into(), "/", move |m| {
        m.rotate(&RotateTarget::All, None, None)
    })
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
        let mut m = crate::web::manager(&store)?;
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
        p.retain(|_, v| v.at.elapsed() < crate::web::PENDING_FOR);
        p.insert(
            who.session.clone(),
            crate::web::PendingImport {
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
        .filter(|p| p.domain == name && p.at.elapsed() < crate::web::PENDING_FOR);
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
