//! The pages and the form handlers of the admin page, one file per page;
//! this module holds what they share: rendering, the error page, the flash,
//! and running one change through the manager.

mod assets;
mod domain;
mod keys;
mod login;
mod nodes;
mod rows;
mod settings;

pub use assets::{favicon, not_found, script, style};
pub use domain::{
    domain_add, domain_dkim, domain_features, domain_page, domain_publish, domain_remove,
    domain_rename, purge_retired,
};
pub use keys::{
    domain_rotate, key_default, key_generate, key_import, key_import_confirm, rotate_all,
};
pub use login::{login, login_form, logout};
pub use settings::{index, save_settings};

use super::flash::{Flash, FlashLine};
use super::{App, Authed};
use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use dkimd_core::manager::{Manager, StepLine};
use dkimd_core::model::settings::Settings;
use dkimd_core::store::{AuditEntry, Store};
use rows::DomainRow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A form's fields.
type Fields = HashMap<String, String>;

pub(super) fn render<T: Template>(status: StatusCode, t: &T) -> Response {
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
pub(super) struct ErrorPage<'a> {
    title: &'a str,
    msg: &'a str,
    /// Empty: the page shows no logout form (base.html).
    user: &'a str,
    csrf: &'a str,
}

/// A refusal or failure as a page of its own (HTML, with the stylesheet
/// and a way back), never a bare text answer.
pub(crate) fn error_page(status: StatusCode, msg: &str) -> Response {
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

pub(super) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

pub(super) fn take_flash(app: &App, session: &str) -> Option<Flash> {
    app.sessions
        .lock()
        .ok()?
        .touch(session)
        .and_then(|s| s.flash.take())
}

/// Runs blocking manager work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("internal error: {e}")))
}

/// The settings, the domains `q` asks for (with how many match in all),
/// and how many retired keys the store keeps.
pub(super) async fn load_status(
    app: &App,
    q: dkimd_core::manager::StatusQuery,
) -> (Settings, Result<(Vec<DomainRow>, usize), String>, usize) {
    let store = app.handle();
    let r = blocking(move || {
        let m = crate::web::manager(&store)?;
        let st = m.load()?;
        let retired = st
            .keys
            .iter()
            .filter(|k| {
                matches!(
                    k.state,
                    dkimd_core::store::KeyState::Retired | dkimd_core::store::KeyState::Revoked
                )
            })
            .count();
        let page = m.status_query(&q).map_err(|e| e.chain());
        Ok((st.settings, page, retired))
    })
    .await;
    match r {
        Ok((s, page, retired)) => (
            s,
            page.map(|p| {
                (
                    p.rows.into_iter().map(DomainRow::from_status).collect(),
                    p.total,
                )
            }),
            retired,
        ),
        Err(e) => (Settings::default(), Err(format!("{e:#}")), 0),
    }
}

/// Applies one change through the manager, writes the audit log, keeps the
/// steps for the next page and redirects there.
pub(super) async fn change(
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
        let mut m = crate::web::manager(&store)?;
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
        tracing::info!("admin page: {}", e.chain());
        failures += 1;
        lines.push(StepLine {
            subject: Some("audit".into()),
            text: e.chain(),
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

/// Audits a change that was refused before it ran (invalid input).
pub(super) fn refused(app: &App, user: &str, peer: &SocketAddr, action: &str, detail: &str) {
    if let Err(e) = app.store.audit(&AuditEntry {
        user,
        remote: &peer.ip().to_string(),
        action: &format!("{action} (refused)"),
        detail,
        ok: false,
        steps: &[],
    }) {
        tracing::info!("admin page: {}", e.chain());
    }
}
