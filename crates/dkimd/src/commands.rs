//! The manager's subcommands: argument handling and output.
// Indexing here is serde_json::Value["key"], which yields Null for a missing
// key and never panics.
#![allow(clippy::indexing_slicing)]

use crate::cli::{Command, DomainCmd, KeyCmd};
use crate::config::Config;
use crate::manage::{parse_onoff, Manager};
use crate::settings::{decide, Override, SETTABLE};
use anyhow::{anyhow, Context};
use std::process::ExitCode;

fn finish(m: &mut Manager, extra: serde_json::Value) -> anyhow::Result<ExitCode> {
    if m.out.is_json() {
        let mut v = serde_json::json!({ "steps": m.out.take(), "failures": m.out.failures });
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(if m.out.failures == 0 {
        ExitCode::SUCCESS
    } else {
        if !m.out.is_json() {
            errln!("dkimd: {} step(s) failed", m.out.failures);
        }
        ExitCode::from(1)
    })
}

fn ovr(s: &str) -> anyhow::Result<Override> {
    Override::parse(s).map_err(|e| crate::UsageError(e).into())
}

/// What a changing command is called in the audit log, with its arguments;
/// `None` for commands that only read.
fn audit_name(cmd: &Command) -> Option<(&'static str, String)> {
    Some(match cmd {
        Command::Domain(DomainCmd::Add {
            name,
            dns,
            mail,
            dkim,
        }) => (
            "add domain",
            format!("{name} dns={dns} mail={mail} dkim={dkim}"),
        ),
        Command::Domain(DomainCmd::Set {
            name,
            dns,
            mail,
            dkim,
        }) => (
            "set domain",
            format!("{name} dns={dns:?} mail={mail:?} dkim={dkim:?}"),
        ),
        Command::Domain(DomainCmd::Remove { name }) => ("remove domain", name.clone()),
        Command::Domain(DomainCmd::Rename { from, to }) => {
            ("rename domain", format!("{from} to {to}"))
        }
        Command::Enable(a) => (
            "enable",
            format!(
                "selector={:?} algorithms={:?} rsa-bits={:?} new-key={}",
                a.selector, a.algorithms, a.rsa_bits, a.new_key
            ),
        ),
        Command::Disable(a) => ("disable", format!("purge-keys={}", a.purge_keys)),
        Command::Set(a) => ("set", format!("{}={}", a.name, a.value)),
        Command::Key(KeyCmd::Import { dry_run: true, .. }) => return None,
        Command::Key(KeyCmd::Import {
            domain,
            file,
            selector,
            ..
        }) => (
            "import key",
            format!("{domain} from {} selector={selector:?}", file.display()),
        ),
        Command::Key(KeyCmd::Generate { domain, selector }) => {
            ("generate key", format!("{domain} selector={selector:?}"))
        }
        Command::Key(KeyCmd::Default { domain }) => ("use default key", domain.clone()),
        Command::Import(f) => ("import", f.file.display().to_string()),
        Command::Install(_) => ("install", String::new()),
        Command::Uninstall(_) => ("uninstall", String::new()),
        _ => return None,
    })
}

/// The user running the command: the sudo user, else the login name, else
/// the name of the real user id.
pub fn current_user() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return v;
            }
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.get(2) == Some(&uid.as_str()))
                .and_then(|f| f.first().map(|n| n.to_string()))
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

pub fn run(cmd: Command, cfg: Config, json: bool) -> anyhow::Result<ExitCode> {
    let audit_as = audit_name(&cmd);
    let audit = crate::web::audit::Audit::new(cfg.admin.audit_path(&cfg.state_dir));
    let read_only = matches!(
        cmd,
        Command::Settings | Command::Status | Command::Domain(DomainCmd::List)
    );
    let mut m = if read_only {
        Manager::open_read_only(cfg, json)?
    } else {
        Manager::open(cfg, json)?
    };
    // Zone file changes are gathered and made once per zone at the end.
    m.begin_batch();
    let r = run_in(&mut m, cmd);
    let r = match m.flush_batch() {
        Ok(()) => r,
        Err(e) => r.and(Err(e)),
    };
    if let Some((action, detail)) = audit_as {
        let mut lines = m.out.take_lines();
        if let Err(e) = &r {
            lines.push(crate::manage::StepLine {
                subject: Some("error".into()),
                text: format!("{e:#}"),
                ok: false,
            });
        }
        let ok = m.out.failures == 0 && r.is_ok();
        if let Err(e) = audit.write(&crate::web::audit::Entry {
            user: &format!("cli:{}", current_user()),
            remote: "local",
            action,
            detail: &detail,
            ok,
            steps: &lines,
        }) {
            errln!("dkimd: warning: {e:#}");
        }
    }
    r
}

fn run_in(m: &mut Manager, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Domain(DomainCmd::Add {
            name,
            dns,
            mail,
            dkim,
        }) => {
            m.domain_add(&name, parse_onoff(&dns)?, parse_onoff(&mail)?, ovr(&dkim)?)?;
        }
        Command::Domain(DomainCmd::Set {
            name,
            dns,
            mail,
            dkim,
        }) => {
            let dns = dns.as_deref().map(parse_onoff).transpose()?;
            let mail = mail.as_deref().map(parse_onoff).transpose()?;
            let dkim = dkim.as_deref().map(ovr).transpose()?;
            m.domain_set(&name, dns, mail, dkim)?;
        }
        Command::Domain(DomainCmd::Remove { name }) => m.domain_remove(&name)?,
        Command::Domain(DomainCmd::Rename { from, to }) => m.domain_rename(&from, &to)?,
        Command::Domain(DomainCmd::List) => return domain_list(m),
        Command::Enable(a) => m.enable(
            a.selector.as_deref(),
            a.algorithms.as_deref(),
            a.rsa_bits,
            a.new_key,
        )?,
        Command::Disable(a) => m.disable(a.purge_keys)?,
        Command::Settings => return settings(m),
        Command::Set(a) => m.set_settings(&[(a.name.as_str(), a.value.as_str())])?,
        Command::Key(KeyCmd::Show { domain }) => return key_show(m, &domain),
        Command::Key(KeyCmd::Import {
            domain,
            file,
            selector,
            dry_run,
        }) => m.key_import(&domain, &file, selector.as_deref(), dry_run)?,
        Command::Key(KeyCmd::Generate { domain, selector }) => {
            m.key_generate(&domain, selector.as_deref())?
        }
        Command::Key(KeyCmd::Default { domain }) => m.key_default(&domain)?,
        Command::Status => return status(m),
        Command::Install(a) => crate::install::install(&m.cfg.clone(), &targets(&a)?, &mut m.out)?,
        Command::Uninstall(a) => {
            crate::install::uninstall(&m.cfg.clone(), &targets(&a)?, &mut m.out)?
        }
        Command::Admin(a) => return admin(m, a),
        Command::Export(f) => m.export(&f.file)?,
        Command::Import(f) => m.import(&f.file)?,
        Command::Keygen(_)
        | Command::Sign(_)
        | Command::Verify(_)
        | Command::Run(_)
        | Command::Bench(_) => return Err(anyhow!("internal: command routed to the manager")),
    }
    // The gathered zone file changes, before the result is told.
    m.flush_batch()?;
    finish(m, serde_json::json!({}))
}

/// Reads a new password: twice from a terminal, else one line of stdin.
fn read_new_password(user: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let pw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("New password for {user}: "))?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            return crate::usage("the two passwords differ; nothing changed");
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.chars().count() < crate::web::auth::MIN_PASSWORD {
        return crate::usage(format!(
            "the password must have at least {} characters; nothing changed",
            crate::web::auth::MIN_PASSWORD
        ));
    }
    Ok(pw)
}

fn admin(m: &mut Manager, a: crate::cli::AdminCmd) -> anyhow::Result<ExitCode> {
    use crate::cli::AdminCmd;
    let mut store = crate::store::SqliteStore::open(&m.cfg.state_dir)?;
    let audit = crate::web::audit::Audit::new(m.cfg.admin.audit_path(&m.cfg.state_dir));
    let me = current_user();
    let record = |action: &str, detail: &str| {
        audit.write(&crate::web::audit::Entry {
            user: &format!("cli:{me}"),
            remote: "local",
            action,
            detail,
            ok: true,
            steps: &[],
        })
    };
    match a {
        AdminCmd::Passwd { user } => {
            if user.is_empty()
                || user.len() > 64
                || !user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
            {
                return crate::usage(format!(
                    "{user:?} is not a user name (letters, digits, . _ - @; at most 64)"
                ));
            }
            let pw = read_new_password(&user)?;
            let existed = store.admin_hash(&user)?.is_some();
            store.set_admin(&user, &crate::web::auth::hash_password(&pw)?)?;
            record("set admin password", &user)?;
            m.out.step(
                "admin",
                &format!(
                    "{} {user} (password stored as an argon2id hash); {}",
                    if existed {
                        "changed the password of"
                    } else {
                        "created user"
                    },
                    if m.cfg.admin.listen.is_some() {
                        "log in on the admin page"
                    } else {
                        "serve the page by setting [admin] listen in the configuration"
                    }
                ),
                true,
            );
        }
        AdminCmd::List => {
            let names = store.admin_names()?;
            if m.out.is_json() {
                return print_json(&serde_json::json!({ "users": names }));
            }
            for n in names {
                outln!("{n}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        AdminCmd::Remove { user } => {
            if !store.remove_admin(&user)? {
                return crate::usage(format!("no admin user {user}"));
            }
            record("remove admin user", &user)?;
            m.out.step(
                "admin",
                &format!(
                    "removed {user} (a running daemon refuses their session at the next request)"
                ),
                true,
            );
        }
    }
    finish(m, serde_json::json!({}))
}

fn targets(a: &crate::cli::InstallArgs) -> anyhow::Result<crate::install::Targets> {
    Ok(crate::install::Targets {
        postfix_dir: a.postfix_config.clone(),
        systemd_dir: (!a.no_systemd).then(|| a.systemd_dir.clone()),
        user: (!a.no_user).then(|| a.user.clone()),
        binary: std::env::current_exe().context("cannot find the dkimd binary")?,
    })
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<ExitCode> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

fn domain_list(m: &Manager) -> anyhow::Result<ExitCode> {
    let st = m.load()?;
    let rows: Vec<serde_json::Value> = st
        .domains
        .iter()
        .map(|d| {
            let dec = decide(&st.settings, &d.name, Some((d.dns, d.mail, d.dkim)));
            serde_json::json!({
                "name": d.name, "dns": d.dns, "mail": d.mail, "dkim": d.dkim.as_str(),
                "signs": dec.signs, "why": dec.why,
            })
        })
        .collect();
    if m.out.is_json() {
        return print_json(&serde_json::json!({ "domains": rows }));
    }
    outln!(
        "{:<32} {:<4} {:<4} {:<8} SIGNS",
        "DOMAIN",
        "DNS",
        "MAIL",
        "DKIM"
    );
    for d in &st.domains {
        let dec = decide(&st.settings, &d.name, Some((d.dns, d.mail, d.dkim)));
        outln!(
            "{:<32} {:<4} {:<4} {:<8} {dec}",
            d.name,
            if d.dns { "on" } else { "off" },
            if d.mail { "on" } else { "off" },
            d.dkim.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn settings(m: &Manager) -> anyhow::Result<ExitCode> {
    let st = m.load()?;
    let pairs = st.settings.to_pairs();
    if m.out.is_json() {
        let obj: serde_json::Map<String, serde_json::Value> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        return print_json(&serde_json::Value::Object(obj));
    }
    for (k, v) in pairs {
        let help = SETTABLE
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, h)| *h)
            .unwrap_or("set by enable / disable");
        outln!(
            "{k:<18} {:<24} # {help}",
            if v.is_empty() { "-".to_string() } else { v }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn key_show(m: &Manager, domain: &str) -> anyhow::Result<ExitCode> {
    let parsed = domain
        .parse::<dkim::DomainName>()
        .map_err(|e| crate::UsageError(e.to_string()))?;
    let domain = parsed.to_lowercase();
    // The zone's own TTL, as the zone file backend writes it.
    let ttl = m.cfg.ttl_for(&parsed);
    let st = m.load()?;
    let keys = st.keys_for(&domain);
    if keys.is_empty() {
        anyhow::bail!("no key for {domain}: run `dkimd enable` or `dkimd key generate {domain}`");
    }
    let mut rows = Vec::new();
    for k in keys {
        let key = dkim::SigningKey::from_pem(k.pem.as_bytes())
            .with_context(|| format!("stored key {}", k.id))?;
        let record = dkim::KeyRecord::for_key(&key);
        let name = format!("{}._domainkey.{domain}", k.selector);
        rows.push(serde_json::json!({
            "domain": domain,
            "own_key": k.domain.is_some(),
            "algorithm": k.algorithm.as_str(),
            "bits": k.bits,
            "selector": k.selector,
            "public_key": key.public_key_base64(),
            "record_name": name,
            "record": record.to_string(),
            "zone_line": record.zone_line(&name, ttl),
        }));
    }
    if m.out.is_json() {
        return print_json(&serde_json::json!({ "keys": rows }));
    }
    for r in rows {
        outln!(
            "{} key, {} {} bits, selector {}",
            if r["own_key"].as_bool() == Some(true) {
                "own"
            } else {
                "global"
            },
            r["algorithm"].as_str().unwrap_or(""),
            r["bits"],
            r["selector"].as_str().unwrap_or("")
        );
        outln!("  record name: {}", r["record_name"].as_str().unwrap_or(""));
        outln!("  record:      {}", r["record"].as_str().unwrap_or(""));
        outln!("  zone line:   {}", r["zone_line"].as_str().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}

fn status(m: &Manager) -> anyhow::Result<ExitCode> {
    let st = m.load()?;
    let mut problems = 0usize;
    let rows: Vec<serde_json::Value> = m
        .status()?
        .into_iter()
        .map(|d| {
            let keys: Vec<serde_json::Value> = d
                .keys
                .iter()
                .map(|k| {
                    if k.dns != "ok" {
                        problems += 1;
                    }
                    serde_json::json!({
                        "selector": k.selector, "algorithm": k.algorithm.as_str(), "bits": k.bits,
                        "own_key": k.own_key, "record_name": k.record_name, "record": k.record,
                        "zone_line": k.zone_line, "dns": k.dns,
                    })
                })
                .collect();
            serde_json::json!({ "domain": d.domain, "signs": d.signs, "why": d.why, "keys": keys })
        })
        .collect();
    if m.out.is_json() {
        print_json(&serde_json::json!({
            "signing": st.settings.signing, "selector": st.settings.selector,
            "verify": st.settings.verify, "domains": rows,
        }))?;
    } else {
        outln!(
            "signing {}, selector {}, verification {}",
            if st.settings.signing { "on" } else { "off" },
            if st.settings.selector.is_empty() {
                "-"
            } else {
                &st.settings.selector
            },
            if st.settings.verify { "on" } else { "off" }
        );
        outln!(
            "{:<28} {:<5} {:<18} {:<12} {:<20} WHY",
            "DOMAIN",
            "SIGNS",
            "SELECTOR",
            "KEY",
            "DNS"
        );
        for r in &rows {
            let signs = if r["signs"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            };
            let domain = r["domain"].as_str().unwrap_or("");
            let why = r["why"].as_str().unwrap_or("");
            let keys = r["keys"].as_array().cloned().unwrap_or_default();
            if keys.is_empty() {
                outln!(
                    "{domain:<28} {signs:<5} {:<18} {:<12} {:<20} {why}",
                    "-",
                    "-",
                    "-"
                );
            }
            for k in keys {
                outln!(
                    "{domain:<28} {signs:<5} {:<18} {:<12} {:<20} {why}",
                    k["selector"].as_str().unwrap_or(""),
                    format!("{}-{}", k["algorithm"].as_str().unwrap_or(""), k["bits"]),
                    k["dns"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
