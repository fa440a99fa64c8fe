//! rspamd's DKIM signing as a plan: `local.d/dkim_signing.conf` (UCL) with
//! its `path` and `selector` templates, `domain` blocks (with `selectors`
//! lists), `selector_map` and `path_map` files, and the keys
//! `rspamadm dkim_keygen` makes (RSA PEM; Ed25519 as base64 of the seed or
//! of libsodium's 64-byte secret key). Keys in Redis or Vault are named as
//! not importable.

use super::ucl::{parse_file, Ucl};
use super::{network, plain_domain, read_text, table, toml_list, Plan, Source};
use crate::model::settings::SettingName;
use std::path::{Path, PathBuf};

/// Where Debian's package reads the admin's DKIM signing settings.
pub const DEFAULT_CONFIG: &str = "/etc/rspamd/local.d/dkim_signing.conf";
/// rspamd's default key path template (`$DBDIR/dkim/$domain.$selector.key`).
const DEFAULT_PATH: &str = "/var/lib/rspamd/dkim/$domain.$selector.key";
/// rspamd's default selector.
const DEFAULT_SELECTOR: &str = "dkim";
/// Where rspamd's proxy worker (its milter) listens by default.
pub const DEFAULT_MILTER: &str = "inet:localhost:11332";

/// Reads rspamd's DKIM signing configuration at `path` (with its
/// includes, and `override.d/dkim_signing.conf` beside a `local.d` one)
/// into a plan.
pub fn read(path: &Path) -> crate::Result<Plan> {
    let mut plan = Plan::new(Source::Rspamd);
    let (mut conf, files) = parse_file(path)?;
    plan.files.extend(files);
    if let Some(over) = override_of(path).filter(|p| p.exists()) {
        let (o, files) = parse_file(&over)?;
        plan.files.extend(files);
        if let (Ucl::Obj(a), Ucl::Obj(b)) = (&mut conf, o) {
            a.extend(b);
        }
    }
    // The module's own block, when the file wraps it (`dkim_signing { … }`).
    let conf = conf.get("dkim_signing").cloned().unwrap_or(conf);
    let enabled = conf.bool("enabled").unwrap_or(true);
    plan.set(
        SettingName::Signing,
        if enabled { "on" } else { "off" },
        format!(
            "enabled = {}",
            if enabled { "true (default)" } else { "false" }
        ),
    );
    for (key, name) in [("use_redis", "Redis"), ("use_vault", "Vault")] {
        if conf.bool(key) == Some(true) {
            plan.skip(
                format!("{key} = true"),
                format!("keys kept in {name} cannot be read from files: export each key to a file and add a domain block with its path, then run migrate again"),
            );
        }
    }
    let selector = conf.str("selector").unwrap_or(DEFAULT_SELECTOR).to_string();
    let template = conf.str("path").unwrap_or(DEFAULT_PATH).to_string();
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    // Explicit domains first: `domain { name { path; selector; selectors [ … ] } }`.
    if let Some(domains) = conf.get("domain") {
        for (name, block) in domains.entries() {
            let Some(domain) = plain_domain(name) else {
                plan.skip(
                    format!("domain {name}"),
                    "not a domain name dkimd can sign for",
                );
                continue;
            };
            let mut pairs = Vec::new();
            if let Some(list) = block.get("selectors") {
                for item in list.items() {
                    pairs.push((
                        item.str("selector").unwrap_or(&selector).to_string(),
                        item.str("path").unwrap_or(&template).to_string(),
                    ));
                }
            }
            if block.get("selector").is_some() || block.get("path").is_some() || pairs.is_empty() {
                pairs.push((
                    block.str("selector").unwrap_or(&selector).to_string(),
                    block.str("path").unwrap_or(&template).to_string(),
                ));
            }
            for (sel, p) in pairs {
                add_key(&mut plan, &domain, &sel, &fill(&p, &domain, &sel));
            }
        }
    }
    // The maps: domain → selector, domain → path.
    let selectors = map(&conf, "selector_map", &dir, &mut plan)?;
    let paths = map(&conf, "path_map", &dir, &mut plan)?;
    let mut mapped: Vec<String> = selectors
        .iter()
        .chain(&paths)
        .map(|(d, _)| d.clone())
        .collect();
    mapped.sort();
    mapped.dedup();
    for domain in mapped {
        if plan
            .keys
            .iter()
            .any(|k| k.domain.as_deref() == Some(domain.as_str()))
        {
            continue;
        }
        let sel = selectors
            .iter()
            .find(|(d, _)| *d == domain)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| selector.clone());
        let p = paths
            .iter()
            .find(|(d, _)| *d == domain)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| template.clone());
        add_key(&mut plan, &domain, &sel, &fill(&p, &domain, &sel));
    }
    // The key files the global template names, one per domain.
    if conf.bool("try_fallback") != Some(false) {
        template_keys(&template, &selector, &mut plan);
    }
    signers(&conf, &mut plan);
    plan.milter = Some(milter_socket());
    plan.notes.push(
        "`install --replace rspamd` takes rspamd out of Postfix altogether, its spam filtering too; to keep rspamd for spam, run plain `dkimd install` and set enabled = false in local.d/dkim_signing.conf".into(),
    );
    Ok(plan)
}

/// `…/local.d/X` → `…/override.d/X`.
fn override_of(path: &Path) -> Option<PathBuf> {
    let parent = path.parent()?;
    if parent.file_name()? != "local.d" {
        return None;
    }
    Some(parent.parent()?.join("override.d").join(path.file_name()?))
}

fn fill(template: &str, domain: &str, selector: &str) -> String {
    template
        .replace("$domain", domain)
        .replace("$selector", selector)
}

/// A map file (`domain value` per line, `#` comments): `selector_map` or
/// `path_map`, written as a path or `file://PATH`.
fn map(conf: &Ucl, key: &str, dir: &Path, plan: &mut Plan) -> crate::Result<Vec<(String, String)>> {
    let Some(value) = conf.str(key) else {
        return Ok(Vec::new());
    };
    let file = value.strip_prefix("file://").unwrap_or(value);
    if file.contains("://") {
        plan.skip(
            format!("{key} = {value}"),
            "a map fetched over the network; copy it into a file and point the setting there",
        );
        return Ok(Vec::new());
    }
    let path = if Path::new(file).is_absolute() {
        PathBuf::from(file)
    } else {
        dir.join(file)
    };
    let entries = table(&path, key)?;
    plan.files.push(path.clone());
    let mut out = Vec::new();
    for (d, v, at) in entries {
        if v.is_empty() {
            return Err(crate::Error::Usage(format!(
                "{at}: {d:?} is not DOMAIN VALUE"
            )));
        }
        match plain_domain(&d) {
            Some(d) => out.push((d, v)),
            None => plan.skip(
                format!("{key} line {d} ({at})"),
                "not a domain name dkimd can sign for",
            ),
        }
    }
    Ok(out)
}

/// The key files the template names for any domain: its directory is
/// listed and each file name matched (with the global selector).
fn template_keys(template: &str, selector: &str, plan: &mut Plan) {
    let filled = template.replace("$selector", selector);
    let path = Path::new(&filled);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    if dir.to_string_lossy().contains('$') {
        return;
    }
    let Some((before, after)) = name.split_once("$domain") else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            let d = n.strip_prefix(before)?.strip_suffix(after)?.to_string();
            Some((plain_domain(&d)?, e.path()))
        })
        .collect();
    found.sort();
    for (domain, file) in found {
        if plan
            .keys
            .iter()
            .any(|k| k.domain.as_deref() == Some(domain.as_str()))
        {
            continue;
        }
        add_key(plan, &domain, selector, &file.display().to_string());
    }
}

/// An rspamd key file: PEM (RSA or Ed25519), or base64 of an Ed25519 seed
/// (32 bytes) or libsodium secret key (64 bytes: the seed, then the
/// public key), as `rspamadm dkim_keygen -t ed25519` writes it.
fn load_key(text: &str) -> Result<dkim::SigningKey, dkim::KeyError> {
    if text.trim_start().starts_with("-----BEGIN") {
        return dkim::SigningKey::from_pem(text.as_bytes());
    }
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.split_whitespace().collect::<String>())
        .map_err(|e| dkim::KeyError::Decode(format!("neither PEM nor base64: {e}")))?;
    match raw.len() {
        32 => dkim::SigningKey::ed25519_from_seed(&raw),
        64 => {
            let key = dkim::SigningKey::ed25519_from_seed(raw.get(..32).unwrap_or_default())?;
            // The second half is the public key: it must be this seed's.
            let public =
                base64::engine::general_purpose::STANDARD.encode(raw.get(32..).unwrap_or_default());
            if key.public_key_base64() != public {
                return Err(dkim::KeyError::Decode(
                    "the Ed25519 key's public half does not match its seed".into(),
                ));
            }
            Ok(key)
        }
        _ => dkim::SigningKey::from_pkcs8_der(&raw),
    }
}

fn add_key(plan: &mut Plan, domain: &str, selector: &str, file: &str) {
    let text = match read_text(Path::new(file), "private key") {
        Ok(t) => t,
        Err(e) => {
            plan.skip(
                format!("{domain} key of selector {selector} ({file})"),
                e.to_string(),
            );
            return;
        }
    };
    plan.add_read_key(
        domain,
        selector,
        load_key(&text),
        file.to_string(),
        " (rspamadm dkim_keygen makes 1024 unless told -b 2048)",
    );
}

/// Who gets signed: `sign_networks` (and `sign_local`) as trusted
/// networks; the domain choice noted where dkimd differs.
fn signers(conf: &Ucl, plan: &mut Plan) {
    let mut nets: Vec<String> = Vec::new();
    let mut from = Vec::new();
    if conf.bool("sign_local") != Some(false) {
        nets.extend(["127.0.0.0/8".to_string(), "::1/128".to_string()]);
        from.push("sign_local (default true)".to_string());
    }
    if let Some(v) = conf.get("sign_networks") {
        from.push("sign_networks".to_string());
        for item in v.items() {
            if let Ucl::Str(s) = item {
                for entry in s.split([',', ' ']).filter(|e| !e.is_empty()) {
                    match network(entry) {
                        Ok(found) => {
                            for n in found {
                                if !nets.contains(&n) {
                                    nets.push(n);
                                }
                            }
                        }
                        Err(why) => plan.skip(format!("sign_networks entry {entry}"), why),
                    }
                }
            }
        }
    }
    plan.config.push(super::ConfigLine {
        section: "milter",
        key: "trusted_networks",
        value: toml_list(&nets),
        from: from.join("; "),
    });
    if conf.bool("sign_authenticated").or(conf.bool("auth_only")) == Some(false) {
        plan.skip(
            "sign_authenticated = false",
            "dkimd always signs mail of SASL-authenticated clients",
        );
    }
    if conf.bool("use_esld") != Some(false) {
        plan.notes.push(
            "use_esld (default true): rspamd signed mail from sub.example.com with d=example.com; dkimd signs with the From domain, so add each subdomain that sends mail as a domain".into(),
        );
    }
    if let Some(d) = conf.str("use_domain").filter(|d| *d != "header") {
        plan.skip(
            format!("use_domain = {d}"),
            "dkimd signs for the From header's domain (author_header = \"sender\" uses Sender)",
        );
    }
}

/// The proxy worker's socket in Postfix's notation: `bind_socket` from
/// `local.d`/`override.d/worker-proxy.inc`, else rspamd's default.
pub fn milter_socket() -> String {
    for f in [
        "/etc/rspamd/override.d/worker-proxy.inc",
        "/etc/rspamd/local.d/worker-proxy.inc",
    ] {
        let p = Path::new(f);
        if let Ok((v, _)) = parse_file(p) {
            if let Some(s) = v.str("bind_socket").and_then(postfix_socket) {
                return s;
            }
        }
    }
    DEFAULT_MILTER.into()
}

/// rspamd's `bind_socket` (`localhost:11332`, `*:11332`, `/path`) in
/// Postfix's notation.
pub fn postfix_socket(s: &str) -> Option<String> {
    let s = s.trim();
    if s.starts_with('/') {
        return Some(format!("unix:{}", s.split_whitespace().next().unwrap_or(s)));
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = match host {
        "*" | "" | "*v4" => "localhost",
        h => h,
    };
    Some(format!("inet:{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_sockets_in_postfix_notation() {
        assert_eq!(
            postfix_socket("localhost:11332").as_deref(),
            Some("inet:localhost:11332")
        );
        assert_eq!(
            postfix_socket("*:11332").as_deref(),
            Some("inet:localhost:11332")
        );
        assert_eq!(
            postfix_socket("/var/lib/rspamd/milter.sock mode=0666").as_deref(),
            Some("unix:/var/lib/rspamd/milter.sock")
        );
        assert_eq!(postfix_socket("localhost"), None);
    }

    #[test]
    fn ed25519_keys_as_rspamadm_writes_them() {
        use base64::Engine;
        let key = dkim::SigningKey::generate_ed25519().unwrap();
        let seed = [7u8; 32];
        let k = dkim::SigningKey::ed25519_from_seed(&seed).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(
            load_key(&b64.encode(seed)).unwrap().public_key_base64(),
            k.public_key_base64()
        );
        let mut full = seed.to_vec();
        full.extend(b64.decode(k.public_key_base64()).unwrap());
        assert_eq!(
            load_key(&b64.encode(&full)).unwrap().public_key_base64(),
            k.public_key_base64()
        );
        // A public half that is not the seed's is refused.
        let mut wrong = seed.to_vec();
        wrong.extend(b64.decode(key.public_key_base64()).unwrap());
        assert!(load_key(&b64.encode(&wrong)).is_err());
        assert!(load_key("not a key at all!").is_err());
    }
}
