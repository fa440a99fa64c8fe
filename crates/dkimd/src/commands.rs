//! The manager's subcommands: argument handling and output.
// Indexing here is serde_json::Value["key"], which yields Null for a missing
// key and never panics.
#![allow(clippy::indexing_slicing)]

use crate::cli::{Command, DomainCmd, KeyCmd};
use crate::config::Config;
use crate::manage::{all_decisions, live_state, parse_onoff, Manager};
use crate::settings::{decide, Override, SETTABLE};
use crate::store::{Change, Domain, KeyState, NewKey};
use anyhow::{anyhow, Context};
use std::process::ExitCode;

fn finish(m: &mut Manager, extra: serde_json::Value) -> anyhow::Result<ExitCode> {
    if m.out.is_json() {
        let mut v = serde_json::json!({ "steps": m.out.take(), "failures": m.out.failures });
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(if m.out.failures == 0 {
        ExitCode::SUCCESS
    } else {
        if !m.out.is_json() {
            eprintln!("dkimd: {} step(s) failed", m.out.failures);
        }
        ExitCode::from(1)
    })
}

fn ovr(s: &str) -> anyhow::Result<Override> {
    Override::parse(s).map_err(|e| crate::UsageError(e).into())
}

pub fn run(cmd: Command, cfg: Config, json: bool) -> anyhow::Result<ExitCode> {
    let mut m = Manager::open(cfg, json)?;
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
        Command::Domain(DomainCmd::List) => return domain_list(&m),
        Command::Enable(a) => m.enable(
            a.selector.as_deref(),
            a.algorithms.as_deref(),
            a.rsa_bits,
            a.new_key,
        )?,
        Command::Disable(a) => m.disable(a.purge_keys)?,
        Command::Settings => return settings(&m),
        Command::Set(a) => {
            let st = m.load()?;
            let mut s = st.settings.clone();
            s.set(&a.name, &a.value, false).map_err(crate::UsageError)?;
            let value = s
                .to_pairs()
                .into_iter()
                .find(|(k, _)| *k == a.name)
                .map(|(_, v)| v)
                .unwrap_or_default();
            m.store
                .apply(&[Change::Setting(a.name.clone(), value.clone())])?;
            m.out
                .step("setting", &format!("{} = {value}", a.name), true);
            m.sync_all()?;
        }
        Command::Key(KeyCmd::Show { domain }) => return key_show(&m, &domain),
        Command::Key(KeyCmd::Import {
            domain,
            file,
            selector,
        }) => m.key_import(&domain, &file, selector.as_deref())?,
        Command::Key(KeyCmd::Generate { domain, selector }) => {
            m.key_generate(&domain, selector.as_deref())?
        }
        Command::Key(KeyCmd::Default { domain }) => m.key_default(&domain)?,
        Command::Status => return status(&m),
        Command::Install(a) => crate::install::install(&m.cfg.clone(), &targets(&a)?, &mut m.out)?,
        Command::Uninstall(a) => {
            crate::install::uninstall(&m.cfg.clone(), &targets(&a)?, &mut m.out)?
        }
        Command::Export(f) => export(&mut m, &f.file)?,
        Command::Import(f) => import(&mut m, &f.file)?,
        Command::Keygen(_)
        | Command::Sign(_)
        | Command::Verify(_)
        | Command::Run(_)
        | Command::Bench(_) => return Err(anyhow!("internal: command routed to the manager")),
    }
    finish(&mut m, serde_json::json!({}))
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
    println!("{}", serde_json::to_string_pretty(v)?);
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
    println!(
        "{:<32} {:<4} {:<4} {:<8} SIGNS",
        "DOMAIN", "DNS", "MAIL", "DKIM"
    );
    for d in &st.domains {
        let dec = decide(&st.settings, &d.name, Some((d.dns, d.mail, d.dkim)));
        println!(
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
        println!(
            "{k:<18} {:<24} # {help}",
            if v.is_empty() { "-".to_string() } else { v }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn key_show(m: &Manager, domain: &str) -> anyhow::Result<ExitCode> {
    let domain = domain
        .parse::<dkim::DomainName>()
        .map(|d| d.to_lowercase())
        .map_err(|e| crate::UsageError(e.to_string()))?;
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
            "zone_line": format!("{name}. 3600 IN TXT ( {} )", record.to_zone_rdata()),
        }));
    }
    if m.out.is_json() {
        return print_json(&serde_json::json!({ "keys": rows }));
    }
    for r in rows {
        println!(
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
        println!("  record name: {}", r["record_name"].as_str().unwrap_or(""));
        println!("  record:      {}", r["record"].as_str().unwrap_or(""));
        println!("  zone line:   {}", r["zone_line"].as_str().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}

fn status(m: &Manager) -> anyhow::Result<ExitCode> {
    let st = m.load()?;
    let resolver = crate::publish::live_resolver(&m.cfg)?;
    let mut rows = Vec::new();
    let mut problems = 0usize;
    for (name, dec) in all_decisions(&st) {
        let mut keys = Vec::new();
        if dec.signs && st.settings.signing {
            for k in st.keys_for(&name) {
                let key = dkim::SigningKey::from_pem(k.pem.as_bytes())
                    .with_context(|| format!("stored key {}", k.id))?;
                let rname = format!("{}._domainkey.{name}", k.selector);
                let dns = live_state(&resolver, &rname, &key.dns_record());
                if dns != "ok" {
                    problems += 1;
                }
                keys.push(serde_json::json!({
                    "selector": k.selector, "algorithm": k.algorithm.as_str(), "bits": k.bits,
                    "own_key": k.domain.is_some(), "record_name": rname, "dns": dns,
                }));
            }
        }
        rows.push(serde_json::json!({
            "domain": name,
            "signs": dec.signs && st.settings.signing,
            "why": if st.settings.signing { dec.why.clone() } else { "signing is off".to_string() },
            "keys": keys,
        }));
    }
    if m.out.is_json() {
        print_json(&serde_json::json!({
            "signing": st.settings.signing, "selector": st.settings.selector,
            "verify": st.settings.verify, "domains": rows,
        }))?;
    } else {
        println!(
            "signing {}, selector {}, verification {}",
            if st.settings.signing { "on" } else { "off" },
            if st.settings.selector.is_empty() {
                "-"
            } else {
                &st.settings.selector
            },
            if st.settings.verify { "on" } else { "off" }
        );
        println!(
            "{:<28} {:<5} {:<18} {:<12} {:<20} WHY",
            "DOMAIN", "SIGNS", "SELECTOR", "KEY", "DNS"
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
                println!(
                    "{domain:<28} {signs:<5} {:<18} {:<12} {:<20} {why}",
                    "-", "-", "-"
                );
            }
            for k in keys {
                println!(
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

const EXPORT_FORMAT: &str = "dkimd-export-1";

fn export(m: &mut Manager, file: &std::path::Path) -> anyhow::Result<()> {
    let st = m.load()?;
    let v = serde_json::json!({
        "format": EXPORT_FORMAT,
        "settings": st.settings.to_pairs().into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v))).collect::<serde_json::Map<_, _>>(),
        "domains": st.domains.iter().map(|d| serde_json::json!({
            "name": d.name, "dns": d.dns, "mail": d.mail, "dkim": d.dkim.as_str() })).collect::<Vec<_>>(),
        "keys": st.keys.iter().map(|k| serde_json::json!({
            "domain": k.domain, "algorithm": k.algorithm.as_str(), "bits": k.bits, "selector": k.selector,
            "pem": k.pem, "state": match k.state { KeyState::Active => "active", KeyState::Retired => "retired" } })).collect::<Vec<_>>(),
    });
    crate::keyfile::write_atomic(file, serde_json::to_string_pretty(&v)?.as_bytes(), 0o600)?;
    m.out.step(
        "export",
        &format!(
            "{} settings, {} domains, {} keys written to {} (mode 0600)",
            st.settings.to_pairs().len(),
            st.domains.len(),
            st.keys.len(),
            file.display()
        ),
        true,
    );
    Ok(())
}

fn import(m: &mut Manager, file: &std::path::Path) -> anyhow::Result<()> {
    crate::store::check_private(file, "export file")?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let bad = |what: &str| crate::UsageError(format!("{}: {what}", file.display()));
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::UsageError(format!("{}:{}: {e}", file.display(), e.line())))?;
    if v["format"] != EXPORT_FORMAT {
        return Err(bad(&format!(
            "not a dkimd export (format is not {EXPORT_FORMAT})"
        ))
        .into());
    }
    let mut changes = vec![Change::ClearAll];
    let mut settings = crate::settings::Settings::default();
    for (k, val) in v["settings"]
        .as_object()
        .ok_or_else(|| bad("no settings"))?
    {
        let val = val
            .as_str()
            .ok_or_else(|| bad(&format!("setting {k} is not text")))?;
        settings
            .set(k, val, true)
            .map_err(|e| bad(&format!("setting {k}: {e}")))?;
    }
    for (k, val) in settings.to_pairs() {
        changes.push(Change::Setting(k.to_string(), val));
    }
    for d in v["domains"].as_array().ok_or_else(|| bad("no domains"))? {
        let name = d["name"]
            .as_str()
            .ok_or_else(|| bad("a domain without a name"))?;
        name.parse::<dkim::DomainName>()
            .map_err(|e| bad(&e.to_string()))?;
        changes.push(Change::PutDomain(Domain {
            name: name.to_ascii_lowercase(),
            dns: d["dns"].as_bool().unwrap_or(true),
            mail: d["mail"].as_bool().unwrap_or(true),
            dkim: Override::parse(d["dkim"].as_str().unwrap_or("default")).map_err(|e| bad(&e))?,
        }));
    }
    let mut retire = Vec::new();
    for (i, k) in v["keys"]
        .as_array()
        .ok_or_else(|| bad("no keys"))?
        .iter()
        .enumerate()
    {
        let pem = k["pem"]
            .as_str()
            .ok_or_else(|| bad(&format!("key {} has no pem", i + 1)))?;
        let key = dkim::SigningKey::from_pem(pem.as_bytes())
            .map_err(|e| bad(&format!("key {}: {e}", i + 1)))?;
        let selector = k["selector"]
            .as_str()
            .ok_or_else(|| bad(&format!("key {} has no selector", i + 1)))?;
        changes.push(Change::AddKey(NewKey {
            domain: k["domain"].as_str().map(str::to_string),
            algorithm: key.algorithm(),
            bits: key.bits(),
            selector: selector.to_string(),
            pem: pem.to_string(),
        }));
        if k["state"] == "retired" {
            retire.push(i);
        }
    }
    m.store.apply(&changes)?;
    // Keys are inserted in order: mark the retired ones by position.
    let st = m.load()?;
    let retire_changes: Vec<Change> = retire
        .iter()
        .filter_map(|i| st.keys.get(*i))
        .map(|k| Change::KeyState(k.id, KeyState::Retired))
        .collect();
    m.store.apply(&retire_changes)?;
    let st = m.load()?;
    m.out.step(
        "import",
        &format!(
            "{} domains and {} keys restored from {}",
            st.domains.len(),
            st.keys.len(),
            file.display()
        ),
        true,
    );
    // The records table starts empty: every signing domain is published
    // again (idempotent: records already in DNS are reported as present).
    m.sync_all()
}
