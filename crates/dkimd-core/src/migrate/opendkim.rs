//! OpenDKIM's configuration as a plan: `opendkim.conf` (opendkim.conf(5)),
//! its KeyTable and SigningTable as `file:` or `refile:` data sets, the
//! single-key `Domain`/`Selector`/`KeyFile` setup, host lists, modes and
//! actions, and the socket Postfix reaches it on.

use super::{network, plain_domain, read_text, table, toml_list, Plan, Source};
use crate::model::settings::SettingName;
use std::path::{Path, PathBuf};

/// Where Debian's package keeps the configuration.
pub const DEFAULT_CONFIG: &str = "/etc/opendkim.conf";

/// One `Name value` line of opendkim.conf.
#[derive(Clone, Debug)]
struct Param {
    /// The value, trimmed.
    value: String,
    /// `file:line`, for messages.
    at: String,
}

/// The parameters of opendkim.conf by lower-case name (the last line of a
/// name wins).
struct Conf {
    params: std::collections::HashMap<String, Param>,
    dir: PathBuf,
    /// The files `Include` read, in order.
    included: Vec<PathBuf>,
}

/// How deep `Include` nests (opendkim.conf(5): at most five levels).
const MAX_INCLUDE: usize = 5;

impl Conf {
    fn parse(path: &Path) -> crate::Result<Conf> {
        let mut params = std::collections::HashMap::new();
        let mut files = Vec::new();
        Conf::read_into(path, 0, &mut params, &mut files)?;
        Ok(Conf {
            params,
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            included: files,
        })
    }

    /// Reads one file's lines into `params`, following `Include`.
    fn read_into(
        path: &Path,
        depth: usize,
        params: &mut std::collections::HashMap<String, Param>,
        files: &mut Vec<PathBuf>,
    ) -> crate::Result<()> {
        let text = read_text(path, "OpenDKIM configuration")?;
        for (n, raw) in text.lines().enumerate() {
            // opendkim.conf(5): a hash truncates the line.
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = format!("{}:{}", path.display(), n + 1);
            let (name, value) = match line.split_once(char::is_whitespace) {
                Some((k, v)) => (k, v.trim()),
                None => {
                    return Err(crate::Error::Usage(format!(
                        "{at}: {line:?} has no value (opendkim.conf lines are NAME VALUE)"
                    )))
                }
            };
            if name.eq_ignore_ascii_case("Include") {
                if depth + 1 > MAX_INCLUDE {
                    return Err(crate::Error::Usage(format!(
                        "{at}: Include nests deeper than {MAX_INCLUDE} levels"
                    )));
                }
                let inc = resolve(path.parent().unwrap_or(Path::new("/")), value);
                files.push(inc.clone());
                Conf::read_into(&inc, depth + 1, params, files)?;
                continue;
            }
            params.insert(
                name.to_ascii_lowercase(),
                Param {
                    value: value.to_string(),
                    at,
                },
            );
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&Param> {
        self.params.get(&name.to_ascii_lowercase())
    }

    /// `name`'s value as "Name value" for the plan.
    fn said(&self, name: &str) -> String {
        self.get(name)
            .map(|p| format!("{name} {} at {}", p.value, p.at))
            .unwrap_or_else(|| format!("{name} unset"))
    }
}

/// The kinds of data set (opendkim(8), DATA SETS).
enum Dataset {
    /// `file:PATH` or a path: key and value per line, exact keys.
    File(PathBuf),
    /// `refile:PATH`: wildcard patterns and values.
    Refile(PathBuf),
    /// The value itself, a comma-separated list.
    List(Vec<String>),
    /// A kind dkimd cannot read (SQL, LDAP, Lua, …), named.
    Unreadable(&'static str),
}

fn dataset(value: &str, dir: &Path) -> Dataset {
    let path = |p: &str| resolve(dir, p);
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    for (prefix, kind) in [
        ("dsn:", "an SQL database (dsn:)"),
        ("ldap:", "LDAP"),
        ("ldaps:", "LDAP"),
        ("ldapi:", "LDAP"),
        ("lua:", "a Lua script"),
        ("memcache:", "memcached"),
        ("redis:", "Redis"),
        ("db:", "a Sleepycat DB"),
        ("mdb:", "an LMDB database"),
        ("erlang:", "Erlang"),
    ] {
        if lower.starts_with(prefix) {
            return Dataset::Unreadable(kind);
        }
    }
    if let Some(p) = v.strip_prefix("file:") {
        Dataset::File(path(p))
    } else if let Some(p) = v.strip_prefix("refile:") {
        Dataset::Refile(path(p))
    } else if lower.ends_with(".db") {
        Dataset::Unreadable("a Sleepycat DB")
    } else if v.starts_with('/') {
        Dataset::File(path(v))
    } else {
        let v = v.strip_prefix("csl:").unwrap_or(v);
        Dataset::List(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

/// The lines of a data set that is a plain list (a hosts file, a list of
/// domains): (entry, where).
fn list(conf: &Conf, name: &str, plan: &mut Plan) -> crate::Result<Option<Vec<(String, String)>>> {
    let Some(p) = conf.get(name) else {
        return Ok(None);
    };
    Ok(Some(match dataset(&p.value, &conf.dir) {
        Dataset::List(items) => items.into_iter().map(|i| (i, p.at.clone())).collect(),
        Dataset::File(f) | Dataset::Refile(f) => {
            if !plan.files.contains(&f) {
                plan.files.push(f.clone());
            }
            table(&f, name)?
                .into_iter()
                .map(|(k, _, at)| (k, at))
                .collect()
        }
        Dataset::Unreadable(kind) => {
            plan.skip(
                format!("{name} ({})", p.at),
                format!("{kind} data set: dkimd reads files and lists only; copy its entries into a file"),
            );
            return Ok(None);
        }
    }))
}

/// Reads OpenDKIM's configuration at `path` (and every file it names)
/// into a plan.
pub fn read(path: &Path) -> crate::Result<Plan> {
    let conf = Conf::parse(path)?;
    let mut plan = Plan::new(Source::OpenDkim);
    plan.files.push(path.to_path_buf());
    plan.files.extend(conf.included.iter().cloned());
    modes(&conf, &mut plan);
    keys(&conf, &mut plan)?;
    algorithms(&conf, &mut plan);
    trusted(&conf, &mut plan)?;
    actions(&conf, &mut plan);
    if let Some(p) = conf.get("AuthservID") {
        if p.value.eq_ignore_ascii_case("HOSTNAME") {
            plan.notes.push(
                "AuthservID HOSTNAME: dkimd's authserv-id is the host name by default too".into(),
            );
        } else {
            plan.config.push(super::ConfigLine {
                section: "milter",
                key: "authserv_id",
                value: toml::Value::String(p.value.clone()).to_string(),
                from: conf.said("AuthservID"),
            });
        }
    }
    if let Some(p) = conf.get("Socket") {
        match postfix_socket(&p.value) {
            Some(s) => plan.milter = Some(s),
            None => plan.skip(
                format!("Socket {} ({})", p.value, p.at),
                "not a socket Postfix can name (local:/path or inet:PORT@HOST)",
            ),
        }
    }
    Ok(plan)
}

/// The socket OpenDKIM serves Postfix on, in Postfix's notation, from its
/// configuration's `Socket` (Debian's default when unset).
pub fn socket_of(path: &Path) -> crate::Result<String> {
    let conf = Conf::parse(path)?;
    let value = conf
        .get("Socket")
        .map(|p| p.value.clone())
        .unwrap_or_else(|| "local:/run/opendkim/opendkim.sock".into());
    postfix_socket(&value).ok_or_else(|| {
        crate::Error::Usage(format!(
            "{}: Socket {value} is not a socket Postfix can name",
            conf.get("Socket")
                .map(|p| p.at.clone())
                .unwrap_or_else(|| path.display().to_string())
        ))
    })
}

/// The one key a `*` SigningTable line names (Virtualmin's `default`
/// entry, `%:SELECTOR:KEYFILE`), else `Selector` with `KeyFile`: the
/// selector, the key file and where it was said.
pub fn default_key(path: &Path) -> crate::Result<Option<(String, PathBuf, String)>> {
    let conf = Conf::parse(path)?;
    if let (Some(kt), Some(st)) = (conf.get("KeyTable"), conf.get("SigningTable")) {
        let file = |d: Dataset| match d {
            Dataset::File(f) | Dataset::Refile(f) => Some(f),
            _ => None,
        };
        if let (Some(kt), Some(st)) = (
            file(dataset(&kt.value, &conf.dir)),
            file(dataset(&st.value, &conf.dir)),
        ) {
            let keys = table(&kt, "KeyTable")?;
            for (pattern, value, _) in table(&st, "SigningTable")? {
                if pattern != "*" {
                    continue;
                }
                let name = value.split([':', ' ', '\t']).next().unwrap_or("");
                if let Some((_, entry, at)) = keys.iter().find(|(k, _, _)| k == name) {
                    let mut parts = entry.splitn(3, ':');
                    if let (Some(_), Some(sel), Some(key)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        return Ok(Some((
                            sel.trim().to_string(),
                            resolve(&conf.dir, key),
                            at.clone(),
                        )));
                    }
                }
            }
        }
    }
    Ok(match (conf.get("Selector"), conf.get("KeyFile")) {
        (Some(sel), Some(file)) => Some((
            sel.value.clone(),
            resolve(&conf.dir, &file.value),
            file.at.clone(),
        )),
        _ => None,
    })
}

/// `Mode`: s signs, v verifies (default sv).
fn modes(conf: &Conf, plan: &mut Plan) {
    let mode = conf
        .get("Mode")
        .map(|p| p.value.to_ascii_lowercase())
        .unwrap_or_else(|| "sv".into());
    let said = conf
        .get("Mode")
        .map(|_| conf.said("Mode"))
        .unwrap_or_else(|| "Mode unset (OpenDKIM's default sv)".into());
    let on = |b: bool| if b { "on" } else { "off" };
    plan.set(SettingName::Signing, on(mode.contains('s')), said.clone());
    plan.set(SettingName::Verify, on(mode.contains('v')), said);
}

/// The keys: KeyTable with SigningTable, else Domain, Selector and KeyFile.
fn keys(conf: &Conf, plan: &mut Plan) -> crate::Result<()> {
    if conf
        .get("SubDomains")
        .is_some_and(|p| p.value.starts_with(['y', 'Y', 't', 'T', '1']))
    {
        plan.skip(
            conf.said("SubDomains"),
            "dkimd signs a subdomain's mail with the subdomain's own d=: add each subdomain that sends mail as a domain",
        );
    }
    if let Some(kt) = conf.get("KeyTable") {
        let keytable = match dataset(&kt.value, &conf.dir) {
            Dataset::File(f) | Dataset::Refile(f) => {
                plan.files.push(f.clone());
                table(&f, "KeyTable")?
            }
            Dataset::List(_) => {
                plan.skip(conf.said("KeyTable"), "a KeyTable is a file (file:PATH)");
                return Ok(());
            }
            Dataset::Unreadable(kind) => {
                plan.skip(
                    conf.said("KeyTable"),
                    format!(
                        "{kind} data set: dkimd reads KeyTable files only; no key was imported"
                    ),
                );
                return Ok(());
            }
        };
        let Some(st) = conf.get("SigningTable") else {
            plan.skip(
                conf.said("KeyTable"),
                "no SigningTable says which mail its keys sign",
            );
            return Ok(());
        };
        let (signing, wildcards) = match dataset(&st.value, &conf.dir) {
            Dataset::File(f) => {
                plan.files.push(f.clone());
                (table(&f, "SigningTable")?, false)
            }
            Dataset::Refile(f) => {
                plan.files.push(f.clone());
                (table(&f, "SigningTable")?, true)
            }
            Dataset::List(_) => {
                plan.skip(
                    conf.said("SigningTable"),
                    "a SigningTable is a file (file: or refile:)",
                );
                return Ok(());
            }
            Dataset::Unreadable(kind) => {
                plan.skip(
                    conf.said("SigningTable"),
                    format!(
                        "{kind} data set: dkimd reads SigningTable files only; no key was imported"
                    ),
                );
                return Ok(());
            }
        };
        for (pattern, value, at) in signing {
            signing_entry(&conf.dir, &keytable, &pattern, &value, &at, wildcards, plan);
        }
        return Ok(());
    }
    // The single-key setup: Domain, Selector, KeyFile.
    let (Some(sel), Some(file)) = (conf.get("Selector"), conf.get("KeyFile")) else {
        if plan
            .settings
            .iter()
            .any(|s| s.name == SettingName::Signing && s.value == "on")
        {
            plan.skip(
                "signing keys",
                "neither KeyTable nor Domain, Selector and KeyFile are set: no key to import",
            );
        }
        return Ok(());
    };
    let Some(domains) = list(conf, "Domain", plan)? else {
        plan.skip(
            conf.said("KeyFile"),
            "no Domain says which domains it signs for",
        );
        return Ok(());
    };
    let path = resolve(&conf.dir, &file.value);
    for (d, at) in domains {
        let Some(domain) = plain_domain(&d) else {
            plan.skip(
                format!("Domain {d} ({at})"),
                "not a domain name dkimd can sign for",
            );
            continue;
        };
        add_key_file(plan, &domain, &sel.value, &path, &file.at);
    }
    Ok(())
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p.trim());
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// The domain a SigningTable pattern stands for, or why it has none.
fn pattern_domain(pattern: &str, wildcards: bool) -> Result<String, String> {
    let p = pattern.trim();
    if wildcards {
        if let Some(d) = p.strip_prefix("*@") {
            if !d.contains('*') {
                if let Some(d) = plain_domain(d) {
                    return Ok(d);
                }
            }
        }
        if !p.contains('*') {
            if let Some((_, d)) = p.split_once('@') {
                if plain_domain(d).is_some() {
                    return Err("one sender's own key; dkimd signs per domain".into());
                }
            }
            if let Some(d) = plain_domain(p) {
                return Ok(d);
            }
        }
        return Err(
            "a wildcard beyond *@DOMAIN; dkimd signs listed domains (add each, or use extra-domains *.DOMAIN for subdomains with their own d=)"
                .into(),
        );
    }
    if let Some(d) = p.strip_prefix('@') {
        if let Some(d) = plain_domain(d) {
            return Ok(d);
        }
    }
    if p.contains('@') {
        return Err("one sender's own key; dkimd signs per domain".into());
    }
    if p.starts_with('.') || p == "*" {
        return Err("every subdomain (or everything); dkimd signs listed domains".into());
    }
    plain_domain(p).ok_or_else(|| "not a domain name".into())
}

fn signing_entry(
    dir: &Path,
    keytable: &[(String, String, String)],
    pattern: &str,
    value: &str,
    at: &str,
    wildcards: bool,
    plan: &mut Plan,
) {
    let what = format!("SigningTable {pattern} ({at})");
    let domain = match pattern_domain(pattern, wildcards) {
        Ok(d) => d,
        Err(why) => {
            plan.skip(what, why);
            return;
        }
    };
    // The value: a key name, then an optional signer for i=.
    let Some(name) = value
        .split([':', ' ', '\t'])
        .next()
        .filter(|n| !n.is_empty())
    else {
        plan.skip(what, "names no key");
        return;
    };
    let Some((_, entry, kat)) = keytable.iter().find(|(k, _, _)| k == name) else {
        plan.skip(what, format!("key name {name} is not in the KeyTable"));
        return;
    };
    let kwhat = format!("KeyTable {name} ({kat})");
    let mut parts = entry.splitn(3, ':');
    let (Some(d), Some(sel), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        plan.skip(kwhat, "not DOMAIN:SELECTOR:KEY");
        return;
    };
    let d = d.trim();
    if d != "%" && !d.eq_ignore_ascii_case(&domain) {
        plan.skip(
            format!("{what} with {kwhat}"),
            format!("signs {domain}'s mail with d={d}; dkimd signs with the From domain's d= (add {d}'s own senders instead)"),
        );
        return;
    }
    let key = key.trim().replace('%', &domain);
    if key.starts_with('/') || key.starts_with("./") || key.starts_with("../") {
        add_key_file(plan, &domain, sel.trim(), &resolve(dir, &key), kat);
    } else {
        // The key itself: PEM, or base64 DER.
        let parsed = dkim::SigningKey::from_pem(key.as_bytes()).or_else(|_| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(key.as_bytes())
                .map_err(|e| dkim::KeyError::Decode(e.to_string()))
                .and_then(|der| dkim::SigningKey::from_pkcs8_der(&der))
        });
        plan.add_read_key(&domain, sel.trim(), parsed, kat.to_string(), "");
    }
}

fn add_key_file(plan: &mut Plan, domain: &str, selector: &str, path: &Path, at: &str) {
    let parsed = match read_text(path, "private key") {
        Ok(pem) => dkim::SigningKey::from_pem(pem.as_bytes()),
        Err(e) => {
            plan.skip(
                format!("{domain} key of selector {selector} ({at})"),
                e.to_string(),
            );
            return;
        }
    };
    plan.add_read_key(domain, selector, parsed, path.display().to_string(), "");
}

/// `SignatureAlgorithm`, `Canonicalization`, `SignHeaders`,
/// `OversignHeaders` and `MinimumKeyBits`: dkimd's are fixed, so they are
/// noted where they differ.
fn algorithms(conf: &Conf, plan: &mut Plan) {
    if let Some(p) = conf.get("SignatureAlgorithm") {
        match p.value.to_ascii_lowercase().as_str() {
            "rsa-sha256" | "ed25519-sha256" => {}
            "rsa-sha1" => plan.skip(
                conf.said("SignatureAlgorithm"),
                "dkimd signs rsa-sha256 (RFC 8301 forbids signing with rsa-sha1); the same keys serve",
            ),
            _ => plan.skip(conf.said("SignatureAlgorithm"), "not an algorithm dkimd knows"),
        }
    }
    if let Some(p) = conf.get("Canonicalization") {
        if !p.value.eq_ignore_ascii_case("relaxed/relaxed") {
            plan.notes.push(format!(
                "{}: dkimd signs relaxed/relaxed, which every verifier accepts",
                conf.said("Canonicalization")
            ));
        }
    }
    if conf.get("SignHeaders").is_some() {
        plan.skip(
            conf.said("SignHeaders"),
            "dkimd signs its own list (From, To, Cc, Subject, Date, Message-ID, Reply-To, In-Reply-To, References, MIME-Version, Content-Type, Content-Transfer-Encoding, List-*)",
        );
    }
    if let Some(p) = conf.get("OversignHeaders") {
        let others: Vec<&str> = p
            .value
            .split([',', ':'])
            .map(str::trim)
            .filter(|h| !h.is_empty() && !h.eq_ignore_ascii_case("from"))
            .collect();
        if others.is_empty() {
            plan.notes.push(format!(
                "{}: dkimd oversigns From too",
                conf.said("OversignHeaders")
            ));
        } else {
            plan.skip(
                conf.said("OversignHeaders"),
                format!("dkimd oversigns From only, not {}", others.join(", ")),
            );
        }
    }
    if let Some(p) = conf.get("MinimumKeyBits") {
        if p.value.trim() != "1024" {
            plan.skip(
                conf.said("MinimumKeyBits"),
                "dkimd accepts RSA keys of 1024 bits and more, as RFC 8301 requires",
            );
        }
    }
}

/// `InternalHosts` (default 127.0.0.1), `ExternalIgnoreList` and
/// `TrustedHosts` become `[milter] trusted_networks`.
fn trusted(conf: &Conf, plan: &mut Plan) -> crate::Result<()> {
    let mut nets: Vec<String> = Vec::new();
    let mut from = Vec::new();
    for name in ["InternalHosts", "ExternalIgnoreList", "TrustedHosts"] {
        let entries = match list(conf, name, plan)? {
            Some(e) => {
                from.push(conf.said(name));
                e
            }
            None if name == "InternalHosts" => {
                from.push("InternalHosts unset (OpenDKIM's default 127.0.0.1)".into());
                vec![("127.0.0.1".to_string(), "default".to_string())]
            }
            None => continue,
        };
        for (entry, at) in entries {
            match network(&entry) {
                Ok(found) => {
                    for n in found {
                        if !nets.contains(&n) {
                            nets.push(n);
                        }
                    }
                }
                Err(why) => plan.skip(format!("{name} entry {entry} ({at})"), why),
            }
        }
    }
    if conf.get("ExternalIgnoreList").is_some() {
        plan.notes.push(
            "ExternalIgnoreList hosts are trusted: dkimd signs their mail from signing domains (OpenDKIM only let it pass unverified)".into(),
        );
    }
    plan.config.push(super::ConfigLine {
        section: "milter",
        key: "trusted_networks",
        value: toml_list(&nets),
        from: from.join("; "),
    });
    Ok(())
}

/// The `On-…` actions onto dkimd's policy classes; `On-InternalError` onto
/// `[milter] on_error`.
fn actions(conf: &Conf, plan: &mut Plan) {
    let default = conf.get("On-Default");
    let action = |name: &str, opendkim_default: &str| -> (String, String) {
        match conf.get(name).or(default) {
            Some(p) => (
                p.value.to_ascii_lowercase(),
                format!(
                    "{} {} at {}",
                    if conf.get(name).is_some() {
                        name
                    } else {
                        "On-Default"
                    },
                    p.value,
                    p.at
                ),
            ),
            None => (
                opendkim_default.to_string(),
                format!("{name} unset (OpenDKIM's default {opendkim_default})"),
            ),
        }
    };
    let word = |v: &str| -> Option<&'static str> {
        match v {
            "a" | "accept" => Some("accept"),
            "r" | "reject" => Some("reject"),
            "t" | "tempfail" => Some("tempfail"),
            _ => None,
        }
    };
    for (name, setting, opendkim_default) in [
        ("On-BadSignature", SettingName::PolicyFail, "accept"),
        ("On-KeyNotFound", SettingName::PolicyPermerror, "accept"),
        ("On-DNSError", SettingName::PolicyTemperror, "tempfail"),
        ("On-NoSignature", SettingName::PolicyNone, "accept"),
    ] {
        let (v, said) = action(name, opendkim_default);
        match word(&v) {
            Some(w) => plan.set(setting, w, said),
            None => plan.skip(
                said,
                format!("dkimd's {setting} is accept, reject or tempfail (no discard or quarantine); it stays as it is"),
            ),
        }
    }
    let (v, said) = action("On-InternalError", "tempfail");
    match word(&v) {
        Some(w) => plan.config.push(super::ConfigLine {
            section: "milter",
            key: "on_error",
            value: toml::Value::String(w.to_string()).to_string(),
            from: said,
        }),
        None => plan.skip(said, "dkimd's on_error is accept, reject or tempfail"),
    }
}

/// OpenDKIM's `Socket` in Postfix's notation: `local:/path` (or a bare
/// path) is `unix:/path`; `inet:PORT@HOST` is `inet:HOST:PORT` (no host:
/// every address, which Postfix reaches on localhost).
pub fn postfix_socket(s: &str) -> Option<String> {
    let s = s.trim();
    if let Some(p) = s.strip_prefix("local:").or_else(|| s.strip_prefix("unix:")) {
        return p.starts_with('/').then(|| format!("unix:{p}"));
    }
    if s.starts_with('/') {
        return Some(format!("unix:{s}"));
    }
    for (prefix, family) in [("inet:", "inet"), ("inet6:", "inet6")] {
        if let Some(rest) = s.strip_prefix(prefix) {
            let (port, host) = rest.split_once('@').unwrap_or((rest, "localhost"));
            let port: u16 = port.parse().ok()?;
            let host = if host.is_empty() { "localhost" } else { host };
            return Some(format!("{family}:{host}:{port}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_in_postfix_notation() {
        assert_eq!(
            postfix_socket("local:/run/opendkim/opendkim.sock").as_deref(),
            Some("unix:/run/opendkim/opendkim.sock")
        );
        assert_eq!(
            postfix_socket("inet:8891@localhost").as_deref(),
            Some("inet:localhost:8891")
        );
        assert_eq!(
            postfix_socket("inet:8891@127.0.0.1").as_deref(),
            Some("inet:127.0.0.1:8891")
        );
        assert_eq!(
            postfix_socket("inet:8891").as_deref(),
            Some("inet:localhost:8891")
        );
        assert_eq!(postfix_socket("inet:x@localhost"), None);
    }

    #[test]
    fn signing_table_patterns() {
        assert_eq!(
            pattern_domain("*@Example.COM", true).unwrap(),
            "example.com"
        );
        assert_eq!(pattern_domain("example.com", true).unwrap(), "example.com");
        assert!(pattern_domain("joe@example.com", true)
            .unwrap_err()
            .contains("one sender"));
        assert!(pattern_domain("*@*.example.com", true)
            .unwrap_err()
            .contains("wildcard"));
        assert!(pattern_domain("*", true).is_err());
        assert_eq!(pattern_domain("example.org", false).unwrap(), "example.org");
        assert!(pattern_domain("joe@example.org", false).is_err());
        assert!(pattern_domain(".example.org", false).is_err());
    }

    #[test]
    fn a_line_without_a_value_is_an_error_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opendkim.conf");
        std::fs::write(&p, "# comment\nMode sv\nKeyTable\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("opendkim.conf:3: \"KeyTable\" has no value"),
            "{e}"
        );
    }

    #[test]
    fn include_is_followed_to_five_levels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opendkim.conf");
        std::fs::write(&p, "Mode sv\nInclude part.conf\n").unwrap();
        std::fs::write(
            dir.path().join("part.conf"),
            "AuthservID mx.included.example\n",
        )
        .unwrap();
        let plan = read(&p).unwrap();
        assert!(
            plan.config
                .iter()
                .any(|c| c.key == "authserv_id" && c.value.contains("mx.included.example")),
            "{:?}",
            plan.config
        );
        assert_eq!(plan.files.len(), 2);
        // A file that includes itself stops at the limit, with file and line.
        std::fs::write(dir.path().join("part.conf"), "Include part.conf\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("part.conf:1: Include nests deeper than 5"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_data_sets_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opendkim.conf");
        std::fs::write(
            &p,
            "KeyTable dsn:mysql://u:p@3306+db/odkim/table=keys?keycol=id?datacol=d,s,k\nSigningTable refile:/x\nInternalHosts ldap://ldap.example/dc=x\nOn-BadSignature quarantine\n",
        )
        .unwrap();
        let plan = read(&p).unwrap();
        let text = plan.lines().join("\n");
        assert!(text.contains("an SQL database (dsn:) data set"), "{text}");
        assert!(
            text.contains("InternalHosts") && text.contains("LDAP data set"),
            "{text}"
        );
        assert!(text.contains("no discard or quarantine"), "{text}");
        assert!(plan.keys.is_empty());
    }
}
