//! Moving in from another DKIM signer: each importer reads that program's
//! real files and returns a [`Plan`] (domains, keys with their selectors,
//! settings, configuration lines, and what cannot be carried over and
//! why); `Manager::migrate` applies it in one transaction. Nothing here
//! writes anything.

pub mod opendkim;
pub mod rspamd;
mod ucl;
pub mod virtualmin;

use crate::model::settings::SettingName;
use std::path::{Path, PathBuf};

/// The most of one file an importer reads: their configuration and
/// tables are text of a few kilobytes, so anything larger is not one.
pub const MAX_FILE: u64 = 16 * 1024 * 1024;

/// The program a plan moves in from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// OpenDKIM (opendkim.conf, its KeyTable and SigningTable).
    OpenDkim,
    /// rspamd's DKIM signing module.
    Rspamd,
    /// Virtualmin (its DKIM settings and domains, over OpenDKIM).
    Virtualmin,
}

impl Source {
    /// The program's name as the plan and the audit log write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::OpenDkim => "OpenDKIM",
            Source::Rspamd => "rspamd",
            Source::Virtualmin => "Virtualmin",
        }
    }
}

/// A key to import: it signs for `domain` under exactly `selector`, the
/// selector its record is already published under.
#[derive(Clone, Debug)]
pub struct PlannedKey {
    /// Lower-case domain (d=); None: a global key, which signs for every
    /// signing domain without a key of its own (Virtualmin's one key).
    pub domain: Option<String>,
    /// The selector (s=), as published.
    pub selector: String,
    /// The private key.
    pub key: dkim::SigningKey,
    /// Where it was read from (a file, or a table's line).
    pub from: String,
}

/// A store setting the plan sets, with what in the old program said so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedSetting {
    /// The setting.
    pub name: SettingName,
    /// Its new value, as `dkimd set` takes it.
    pub value: String,
    /// The old program's words (e.g. `Mode sv`).
    pub from: String,
}

/// A line of dkimd.toml that carries an old setting over: the
/// configuration file is the admin's, so the plan says what to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigLine {
    /// The section (`milter`).
    pub section: &'static str,
    /// The setting in it.
    pub key: &'static str,
    /// The TOML value.
    pub value: String,
    /// The old program's words.
    pub from: String,
}

/// Something that cannot be carried over, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// What (a file and line, a setting, a key).
    pub what: String,
    /// Why not, and what to do instead.
    pub why: String,
}

/// A domain to add, with its features and override (as `dkimd domain
/// add` takes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedDomain {
    /// Lower-case name.
    pub name: String,
    /// The DNS feature.
    pub dns: bool,
    /// The mail feature.
    pub mail: bool,
    /// The signing override.
    pub dkim: crate::model::settings::Override,
}

/// What an importer found, to show and then apply.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Where it comes from.
    pub source: Source,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// The domains (sorted by name, each once).
    pub domains: Vec<PlannedDomain>,
    /// The keys, each with its domain and selector.
    pub keys: Vec<PlannedKey>,
    /// Store settings.
    pub settings: Vec<PlannedSetting>,
    /// Lines for dkimd.toml.
    pub config: Vec<ConfigLine>,
    /// What cannot be carried over.
    pub skipped: Vec<Skipped>,
    /// Differences that need nothing done (said so the admin knows).
    pub notes: Vec<String>,
    /// The old milter's socket in Postfix's notation (`unix:/path`,
    /// `inet:host:port`), for `install --replace`.
    pub milter: Option<String>,
    /// The source says what each domain's features are (Virtualmin): a
    /// domain already in the store takes them. Otherwise a domain already
    /// in the store keeps its rules.
    pub domains_authoritative: bool,
}

impl Plan {
    /// An empty plan for `source`.
    pub fn new(source: Source) -> Plan {
        Plan {
            source,
            files: Vec::new(),
            domains: Vec::new(),
            keys: Vec::new(),
            settings: Vec::new(),
            config: Vec::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
            milter: None,
            domains_authoritative: false,
        }
    }

    /// Notes something that cannot be carried over.
    pub fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            what: what.into(),
            why: why.into(),
        });
    }

    /// Adds a domain that signs whatever the rules say (`dkim always`,
    /// no DNS feature: its records are published elsewhere), once.
    pub fn add_domain(&mut self, domain: &str) {
        self.put_domain(PlannedDomain {
            name: domain.to_ascii_lowercase(),
            dns: false,
            mail: true,
            dkim: crate::model::settings::Override::Always,
        });
    }

    /// Adds a domain with its features; a domain already planned keeps
    /// its first entry.
    pub fn put_domain(&mut self, d: PlannedDomain) {
        if let Err(at) = self.domains.binary_search_by(|x| x.name.cmp(&d.name)) {
            self.domains.insert(at, d);
        }
    }

    /// Who a key signs for, in words.
    fn owner(k: &PlannedKey) -> &str {
        k.domain.as_deref().unwrap_or("every domain (global key)")
    }

    /// Adds a key unless the domain already has one of its algorithm or
    /// one under its selector (the rest is skipped with the reason).
    pub fn add_key(&mut self, k: PlannedKey) {
        if let Some(other) = self
            .keys
            .iter()
            .find(|o| o.domain == k.domain && o.key.algorithm() == k.key.algorithm())
        {
            let why = format!(
                "{} already has the {} key of selector {} (from {}); dkimd signs with one key per algorithm and domain",
                Plan::owner(&k),
                k.key.algorithm(),
                other.selector,
                other.from
            );
            self.skip(
                format!(
                    "{} key of selector {} ({})",
                    Plan::owner(&k),
                    k.selector,
                    k.from
                ),
                why,
            );
            return;
        }
        if let Some(other) = self
            .keys
            .iter()
            .find(|o| o.domain == k.domain && o.selector.eq_ignore_ascii_case(&k.selector))
        {
            let why = format!(
                "selector {} of {} already names the key from {}: one record name holds one key",
                k.selector,
                Plan::owner(&k),
                other.from
            );
            self.skip(format!("{} key from {}", Plan::owner(&k), k.from), why);
            return;
        }
        if let Some(d) = &k.domain {
            if !self.domains.iter().any(|x| &x.name == d) {
                self.add_domain(d);
            }
        }
        self.keys.push(k);
    }

    /// Adds a key read for `domain` under `selector` from `from`, or says
    /// why it cannot move: a bad selector, a key that does not load, an
    /// RSA key under 2048 bits (`small_hint` says where those come from),
    /// with the command that replaces it.
    pub(crate) fn add_read_key(
        &mut self,
        domain: &str,
        selector: &str,
        parsed: Result<dkim::SigningKey, dkim::KeyError>,
        from: String,
        small_hint: &str,
    ) {
        let what = format!("{domain} key of selector {selector} ({from})");
        if let Err(e) = selector.parse::<dkim::Selector>() {
            self.skip(what, format!("selector: {e}"));
            return;
        }
        match parsed {
            Ok(key) => self.add_key(PlannedKey {
                domain: Some(domain.to_string()),
                selector: selector.to_string(),
                key,
                from,
            }),
            Err(dkim::KeyError::TooSmall) => self.skip(
                what,
                format!(
                    "an RSA key under 2048 bits{small_hint}, which dkimd cannot sign with (RFC 8301). Replace it: `dkimd key generate {domain}` makes a 2048-bit key under a new selector and prints its record; publish it, and the old record can go once mail signed with {selector} has been delivered"
                ),
            ),
            Err(e) => self.skip(what, format!("not a usable private key: {e}")),
        }
    }

    /// Sets a store setting (a later value replaces an earlier one).
    pub fn set(&mut self, name: SettingName, value: &str, from: impl Into<String>) {
        self.settings.retain(|s| s.name != name);
        self.settings.push(PlannedSetting {
            name,
            value: value.to_string(),
            from: from.into(),
        });
    }

    /// The plan as lines of text, in the order it is shown.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        out.push(format!(
            "moving in from {}: read {}",
            self.source.as_str(),
            files.join(", ")
        ));
        let names: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
        out.push(format!("{} domain(s): {}", names.len(), names.join(", ")));
        for d in &self.domains {
            out.push(format!(
                "domain: {} (dns {}, mail {}, dkim {})",
                d.name,
                if d.dns { "on" } else { "off" },
                if d.mail { "on" } else { "off" },
                d.dkim.as_str()
            ));
        }
        for k in &self.keys {
            out.push(format!(
                "key: {} selector {} ({} {} bits) from {}",
                Plan::owner(k),
                k.selector,
                k.key.algorithm(),
                k.key.bits(),
                k.from
            ));
        }
        for s in &self.settings {
            out.push(format!(
                "setting: {} = {} (from {})",
                s.name, s.value, s.from
            ));
        }
        for c in &self.config {
            out.push(format!(
                "dkimd.toml: [{}] {} = {} (from {})",
                c.section, c.key, c.value, c.from
            ));
        }
        if let Some(m) = &self.milter {
            out.push(format!(
                "milter: {} serves Postfix at {m} (`dkimd install --replace {}` puts dkimd in its place)",
                self.source.as_str(),
                self.source.as_str().to_ascii_lowercase()
            ));
        }
        for n in &self.notes {
            out.push(format!("note: {n}"));
        }
        for s in &self.skipped {
            out.push(format!("not carried over: {}: {}", s.what, s.why));
        }
        out
    }
}

/// Reads a text file of at most [`MAX_FILE`] bytes, naming it in errors.
pub fn read_text(path: &Path, what: &str) -> crate::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| crate::Error::Usage(format!("cannot read {what} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::Error::Usage(format!("cannot read {what} {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(crate::Error::Usage(format!(
            "{what} {} is over {} MiB: not a configuration file",
            path.display(),
            MAX_FILE / (1024 * 1024)
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| crate::Error::Usage(format!("{what} {} is not UTF-8 text", path.display())))
}

/// A lower-case domain name, if `s` is one.
pub(crate) fn plain_domain(s: &str) -> Option<String> {
    s.parse::<dkim::DomainName>().ok().map(|d| d.to_lowercase())
}

/// The entries of a table file (OpenDKIM's tables, rspamd's maps): (key,
/// value, `file:line`) per line, split at the first white space; `#`
/// starts a comment; blank lines are dropped.
pub(crate) fn table(path: &Path, what: &str) -> crate::Result<Vec<(String, String, String)>> {
    let text = read_text(path, what)?;
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        let (k, v) = line
            .split_once(char::is_whitespace)
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .unwrap_or_else(|| (line.to_string(), String::new()));
        out.push((k, v, at));
    }
    Ok(out)
}

/// A host list entry as a trusted network of dkimd (CIDR text), or why
/// it is not one.
pub fn network(entry: &str) -> Result<Vec<String>, String> {
    let e = entry.trim().trim_start_matches('[').replace(']', "");
    if e.starts_with('!') {
        return Err(
            "an exclusion; dkimd's trusted_networks have none (leave the network out instead)"
                .into(),
        );
    }
    if e.eq_ignore_ascii_case("localhost") {
        return Ok(vec!["127.0.0.1/32".into(), "::1/128".into()]);
    }
    if let Ok(net) = e.parse::<ipnet::IpNet>() {
        return Ok(vec![net.trunc().to_string()]);
    }
    if let Ok(ip) = e.parse::<std::net::IpAddr>() {
        return Ok(vec![ipnet::IpNet::from(ip).to_string()]);
    }
    Err("a host or domain name; dkimd trusts clients by address (add its addresses instead)".into())
}

/// The TOML array of `items` (strings).
pub fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| toml::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_entries_become_networks_or_say_why_not() {
        assert_eq!(network("127.0.0.1").unwrap(), vec!["127.0.0.1/32"]);
        assert_eq!(network("192.168.1.7/24").unwrap(), vec!["192.168.1.0/24"]);
        assert_eq!(network("[::1]").unwrap(), vec!["::1/128"]);
        assert_eq!(network("localhost").unwrap().len(), 2);
        assert!(network("!10.0.0.1").unwrap_err().contains("exclusion"));
        assert!(network("mail.example.com")
            .unwrap_err()
            .contains("by address"));
        assert!(network(".example.com").is_err());
    }

    #[test]
    fn a_domain_takes_one_key_per_algorithm_and_selector() {
        let mut p = Plan::new(Source::OpenDkim);
        let key = dkim::SigningKey::generate_ed25519().unwrap();
        let k = |sel: &str| PlannedKey {
            domain: Some("example.com".into()),
            selector: sel.into(),
            key: key.clone(),
            from: format!("/k/{sel}"),
        };
        p.add_key(k("a"));
        p.add_key(k("b"));
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.skipped.len(), 1);
        assert!(
            p.skipped[0].why.contains("one key per algorithm"),
            "{:?}",
            p.skipped
        );
        assert_eq!(p.domains.len(), 1);
        assert_eq!(p.domains[0].name, "example.com");
    }
}
