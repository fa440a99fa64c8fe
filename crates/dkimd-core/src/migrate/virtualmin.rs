//! Virtualmin's DKIM setup as a plan. The formats are those of
//! Virtualmin's public source (virtualmin/virtualmin-gpl) and Webmin's
//! (webmin/webmin):
//!
//! - The module configuration `/etc/webmin/virtual-server/config` and each
//!   domain's file `domains/ID` are Webmin `read_file` files: `key=value`
//!   lines split at the first `=`, a line starting with `#` skipped, a
//!   line without `=` ignored, the last of a repeated key kept
//!   (web-lib-funcs.pl, `read_file`).
//! - DKIM keys in the module configuration (dkim-lib.pl): `dkim_enabled`
//!   (0/1), `dkim_extra` and the older `dkim_exclude` (names separated by
//!   spaces, `get_dkim_config`, `enable_dkim`; postinstall.pl moves them
//!   into the domains' own `dkim_enabled`), `dkim_alldns` (0: domains with
//!   mail, 1: every DNS domain, 2: none unless enabled; `can_dkim_domain`).
//! - A domain file's `dom`, its features `dns` and `mail` (`mail` missing
//!   counts as on, `complete_domain`), `alias`/`aliasdns`, and its own
//!   `dkim_enabled` override (`has_dkim_domain`: no DNS, no DKIM; `0` off,
//!   `1` on; otherwise the `dkim_alldns` rule).
//! - The selector, key file and verification live in OpenDKIM's files,
//!   which Virtualmin writes (`get_dkim_config`, `save_domain_dkim_key`):
//!   `Selector` and `KeyFile` in opendkim.conf, or a `*` SigningTable line
//!   naming KeyTable entry `default` (`%:SELECTOR:KEYFILE`); per-domain
//!   keys as `*@DOMAIN ID` lines with `ID DOMAIN:SELECTOR:FILE` entries;
//!   verification as `-b s|v|sv` in `DAEMON_OPTS` of
//!   `/etc/default/opendkim` on Debian.

use super::{opendkim, read_text, Plan, PlannedDomain, PlannedKey, Source};
use crate::model::settings::{Override, SettingName};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Virtualmin's module configuration directory.
pub const DEFAULT_DIR: &str = "/etc/webmin/virtual-server";
/// Where Debian keeps OpenDKIM's daemon options.
pub const DEFAULT_OPENDKIM_DEFAULTS: &str = "/etc/default/opendkim";

/// A Webmin `read_file` file: key → value.
fn webmin_file(path: &Path, what: &str) -> crate::Result<HashMap<String, String>> {
    let text = read_text(path, what)?;
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        }
    }
    Ok(out)
}

/// Names Webmin's `list_domains` passes over in the domains directory.
fn not_a_domain_file(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || [".lock", ".bak", ".rpmsave", ".sav", ".swp", ".webmintmp"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Reads Virtualmin's DKIM settings and domains from `dir` (its module
/// configuration directory) and OpenDKIM's files it points at.
pub fn read(dir: &Path, opendkim_conf: &Path, opendkim_defaults: &Path) -> crate::Result<Plan> {
    let config_path = dir.join("config");
    let config = webmin_file(&config_path, "Virtualmin configuration")?;
    // Keys and policies come from the OpenDKIM setup Virtualmin wrote.
    let od = opendkim::read(opendkim_conf)?;
    let mut plan = Plan::new(Source::Virtualmin);
    plan.domains_authoritative = true;
    plan.files.push(config_path.clone());
    plan.files.extend(od.files.iter().cloned());
    plan.config = od.config;
    plan.notes = od.notes;
    plan.milter = od.milter;
    plan.settings = od.settings;
    plan.skipped = od
        .skipped
        .into_iter()
        .filter(|s| !s.what.starts_with("SigningTable * "))
        .collect();
    let said = |k: &str| {
        config
            .get(k)
            .map(|v| format!("{k}={v} in {}", config_path.display()))
            .unwrap_or_else(|| format!("{k} unset in {}", config_path.display()))
    };
    let on = config.get("dkim_enabled").is_some_and(|v| v == "1");
    plan.set(
        SettingName::Signing,
        if on { "on" } else { "off" },
        said("dkim_enabled"),
    );
    verification(opendkim_defaults, &mut plan)?;
    let rule = match config.get("dkim_alldns").map(String::as_str) {
        Some("1") => "all-dns",
        Some("2") => "opt-in",
        _ => "dns-and-mail",
    };
    plan.set(SettingName::DefaultDomains, rule, said("dkim_alldns"));
    let domains = domains(dir, &mut plan)?;
    let listed = |key: &str| -> Vec<String> {
        config
            .get(key)
            .map(|v| v.split_whitespace().map(str::to_ascii_lowercase).collect())
            .unwrap_or_default()
    };
    let extra = listed("dkim_extra");
    let exclude = listed("dkim_exclude");
    let mut extra_domains = Vec::new();
    for mut d in domains {
        // The older lists, as postinstall.pl moves them into the domains.
        if d.dkim == Override::Default && d.dns {
            if extra.contains(&d.name) {
                d.dkim = Override::Always;
            } else if exclude.contains(&d.name) {
                d.dkim = Override::Never;
            }
        }
        plan.put_domain(d);
    }
    for e in &extra {
        if !plan.domains.iter().any(|d| &d.name == e) {
            match e.parse::<dkim::DomainName>() {
                Ok(_) => extra_domains.push(e.clone()),
                Err(_) => plan.skip(format!("dkim_extra {e}"), "not a domain name"),
            }
        }
    }
    if config.contains_key("dkim_extra") {
        plan.set(
            SettingName::ExtraDomains,
            &extra_domains.join(","),
            said("dkim_extra"),
        );
    }
    let excluded: Vec<String> = exclude
        .iter()
        .filter(|e| !plan.domains.iter().any(|d| &d.name == *e))
        .cloned()
        .collect();
    if config.contains_key("dkim_exclude") {
        plan.set(
            SettingName::ExcludedDomains,
            &excluded.join(","),
            said("dkim_exclude"),
        );
    }
    // The default key signs for every domain; the per-domain keys
    // (`*@DOMAIN ID` lines) for theirs. A domain OpenDKIM lists with the
    // default key itself (`Domain` with `KeyFile`) needs no key of its own.
    default_key(opendkim_conf, &mut plan)?;
    let global: Option<String> = plan
        .keys
        .iter()
        .find(|k| k.domain.is_none())
        .map(|k| k.key.public_key_base64());
    for k in od.keys {
        if Some(k.key.public_key_base64()) != global {
            plan.add_key(k);
        }
    }
    Ok(plan)
}

/// `-b` in `DAEMON_OPTS` (Virtualmin on Debian), else OpenDKIM's Mode.
fn verification(defaults: &Path, plan: &mut Plan) -> crate::Result<()> {
    if !defaults.exists() {
        return Ok(());
    }
    let text = read_text(defaults, "OpenDKIM defaults")?;
    plan.files.push(defaults.to_path_buf());
    for line in text.lines() {
        let Some(v) = line.trim().strip_prefix("DAEMON_OPTS=") else {
            continue;
        };
        let words: Vec<&str> = v.trim_matches(['"', '\'']).split_whitespace().collect();
        if let Some(mode) = words
            .windows(2)
            .find(|w| w.first() == Some(&"-b"))
            .and_then(|w| w.get(1))
        {
            let from = format!("DAEMON_OPTS -b {mode} in {}", defaults.display());
            plan.set(
                SettingName::Verify,
                if mode.contains('v') { "on" } else { "off" },
                from,
            );
        }
    }
    Ok(())
}

/// The one key Virtualmin signs every domain with: a global key.
fn default_key(opendkim_conf: &Path, plan: &mut Plan) -> crate::Result<()> {
    let Some((selector, file, at)) = opendkim::default_key(opendkim_conf)? else {
        plan.skip(
            "the default key",
            "OpenDKIM's configuration names no Selector and KeyFile (and no * SigningTable line): Virtualmin has not set DKIM up",
        );
        return Ok(());
    };
    let what = format!("the default key of selector {selector} ({at})");
    let key = match read_text(&file, "private key")
        .and_then(|pem| dkim::SigningKey::from_pem(pem.as_bytes()).map_err(Into::into))
    {
        Ok(k) => k,
        Err(e) => {
            let why = if e.to_string().contains("2048") {
                format!("an RSA key under 2048 bits, which dkimd cannot sign with (RFC 8301). Replace it: `dkimd enable --new-key` makes 2048-bit keys under a new selector and publishes them ({e})")
            } else {
                e.to_string()
            };
            plan.skip(what, why);
            return Ok(());
        }
    };
    if let Err(e) = selector.parse::<dkim::Selector>() {
        plan.skip(what, format!("selector: {e}"));
        return Ok(());
    }
    plan.set(SettingName::Selector, &selector, at.clone());
    if key.algorithm() == dkim::KeyAlgorithm::Rsa && [2048, 3072, 4096].contains(&key.bits()) {
        plan.set(
            SettingName::RsaBits,
            &key.bits().to_string(),
            format!("the size of {}", file.display()),
        );
    }
    plan.set(
        SettingName::Algorithms,
        key.algorithm().as_str(),
        format!("the type of {}", file.display()),
    );
    plan.add_key(PlannedKey {
        domain: None,
        selector,
        key,
        from: file.display().to_string(),
    });
    Ok(())
}

/// Every domain file of `dir/domains`, sorted by name.
fn domains(dir: &Path, plan: &mut Plan) -> crate::Result<Vec<PlannedDomain>> {
    let ddir = dir.join("domains");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ddir)
        .map_err(|e| {
            crate::Error::Usage(format!(
                "cannot read Virtualmin's domains {}: {e}",
                ddir.display()
            ))
        })?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| !not_a_domain_file(n))
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut by_id: HashMap<String, HashMap<String, String>> = HashMap::new();
    for f in &files {
        let id = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        by_id.insert(id, webmin_file(f, "Virtualmin domain")?);
    }
    plan.files.push(ddir.clone());
    let mut out = Vec::new();
    for f in files {
        let id = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let Some(d) = by_id.get(&id) else { continue };
        let Some(name) = d.get("dom") else {
            plan.skip(
                format!("{}", f.display()),
                "no dom= line: not a domain file",
            );
            continue;
        };
        let Ok(parsed) = name.parse::<dkim::DomainName>() else {
            plan.skip(
                format!("domain {name} ({})", f.display()),
                "not a domain name",
            );
            continue;
        };
        let dns = d.get("dns").is_some_and(|v| v == "1");
        let mail = d.get("mail").is_none_or(|v| v != "0");
        let mut dkim = match d.get("dkim_enabled").map(String::as_str) {
            Some("1") if dns => Override::Always,
            Some("0") => Override::Never,
            _ => Override::Default,
        };
        // An alias without DNS records of its own gets no DKIM.
        let alias = d.get("alias").filter(|a| !a.is_empty());
        if alias.is_some() && d.get("aliasdns").is_none_or(String::is_empty) {
            let target = alias.and_then(|a| by_id.get(a)).and_then(|t| t.get("dom"));
            plan.notes.push(format!(
                "{name} is an alias of {} without DNS records of its own: Virtualmin gives it no DKIM, nor does dkimd (dkim never)",
                target.map(String::as_str).unwrap_or("another domain")
            ));
            dkim = Override::Never;
        }
        out.push(PlannedDomain {
            name: parsed.to_lowercase(),
            dns,
            mail,
            dkim,
        });
    }
    Ok(out)
}
