//! The main page: the settings form, the domains table, the recent
//! changes; and saving the settings.

use super::rows::DomainRow;
use super::*;
use axum::extract::{ConnectInfo, Query, State};
use axum::Extension;
use axum::Form;
use dkimd_core::manager::{check_settings, SettingsRequest};
use dkimd_core::model::settings::SettingName;

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
const UNSERVED: &[(&str, &str)] = &[
    ("sign", "Sign anyway, and raise the alarm"),
    (
        "hold",
        "Do not sign with it until DNS serves it, and raise the alarm",
    ),
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
    rotate_every: String,
    retire_after: String,
    revoke_for: String,
    propagation_wait: String,
    unserved_key: String,
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
            rotate_every: s
                .rotate_every
                .map_or_else(|| "off".into(), |p| p.to_string()),
            retire_after: s.retire_after.to_string(),
            revoke_for: s.revoke_for.to_string(),
            propagation_wait: s
                .propagation_wait
                .map_or_else(|| "ttl".into(), |p| p.to_string()),
            unserved_key: s.unserved_key.as_str().into(),
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
            rotate_every: t("rotate_every"),
            retire_after: t("retire_after"),
            revoke_for: t("revoke_for"),
            propagation_wait: t("propagation_wait"),
            unserved_key: t("unserved_key"),
        }
    }
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
    /// The fleet, when the store is shared.
    fleet: Option<super::nodes::FleetView>,
    domains: Vec<DomainRow>,
    /// The domain table's search text, page (from 1) and page count.
    search: String,
    page: usize,
    pages: usize,
    /// Domains matching the search.
    total: usize,
    /// Retired keys kept in the store (their records are no longer wanted).
    retired_keys: usize,
    audit: Vec<(String, String, String, String, bool)>,
    actions: &'static [(&'static str, &'static str)],
    algorithms: &'static [(&'static str, &'static str)],
    rsa_sizes: &'static [(&'static str, &'static str)],
    rules: &'static [(&'static str, &'static str)],
    unserved: &'static [(&'static str, &'static str)],
}

/// Domains per page of the domain table.
const PAGE_SIZE: usize = 50;

/// Which part of the domain table the front page shows: `?q=TEXT`
/// (domains whose name contains it), `&page=N`, and `&live=1` to look DNS
/// up now instead of using the daemon's background check.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    search: String,
    page: usize,
    live: bool,
}

impl ListQuery {
    fn from_fields(f: &HashMap<String, String>) -> ListQuery {
        ListQuery {
            search: f
                .get("q")
                .map(|s| s.trim().to_ascii_lowercase().chars().take(253).collect())
                .unwrap_or_default(),
            page: f.get("page").and_then(|p| p.parse().ok()).unwrap_or(1),
            live: f.get("live").is_some_and(|v| v == "1"),
        }
    }
}

async fn index_page(
    app: &Arc<App>,
    who: &Authed,
    status: StatusCode,
    form: Option<SettingsForm>,
    errors: HashMap<&'static str, String>,
) -> Response {
    index_list(app, who, status, form, errors, &ListQuery::default()).await
}

async fn index_list(
    app: &Arc<App>,
    who: &Authed,
    status: StatusCode,
    form: Option<SettingsForm>,
    errors: HashMap<&'static str, String>,
    list: &ListQuery,
) -> Response {
    let page = list.page.max(1);
    let q = dkimd_core::manager::StatusQuery {
        search: (!list.search.is_empty()).then(|| list.search.clone()),
        offset: (page - 1) * PAGE_SIZE,
        limit: Some(PAGE_SIZE),
        cached: !list.live,
    };
    let (settings, rows, retired_keys) = load_status(app, q).await;
    let fleet = super::nodes::fleet_view(app).await;
    let (domains, total, status_error) = match rows {
        Ok((r, total)) => (r, total, None),
        Err(e) => (Vec::new(), 0, Some(e)),
    };
    let pages = total.div_ceil(PAGE_SIZE).max(1);
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
        fleet,
        domains,
        search: list.search.clone(),
        page: page.min(pages),
        pages,
        total,
        retired_keys,
        audit: app.recent_audit(10),
        actions: ACTIONS,
        algorithms: ALGORITHMS,
        rsa_sizes: RSA_SIZES,
        rules: RULES,
        unserved: UNSERVED,
    };
    render(status, &page)
}

pub async fn index(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let list = ListQuery::from_fields(&q);
    index_list(&app, &who, StatusCode::OK, None, HashMap::new(), &list).await
}

/// The settings form as the core's request.
fn settings_request(form: &SettingsForm) -> SettingsRequest {
    use SettingName as N;
    let v = |name: N, value: &str| (name, value.to_string());
    // The lifecycle fields, when the form sent them (a form from before
    // they existed leaves them as they are).
    let lifecycle = [
        (N::RotateEvery, &form.rotate_every),
        (N::RetireAfter, &form.retire_after),
        (N::RevokeFor, &form.revoke_for),
        (N::PropagationWait, &form.propagation_wait),
        (N::UnservedKey, &form.unserved_key),
    ]
    .into_iter()
    .filter(|(_, val)| !val.is_empty())
    .map(|(n, val)| v(n, val));
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
        ]
        .into_iter()
        .chain(lifecycle)
        .collect(),
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

pub async fn save_settings(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Authed>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<Fields>,
) -> Response {
    let form = SettingsForm::from_fields(&f);
    let store = app.handle();
    let cur = match blocking(move || Ok(crate::web::manager(&store)?.load()?)).await {
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
}
