//! The manager's subcommands: domains, enable/disable, settings, keys,
//! status, install, admin users, export/import. Each changing command is
//! audited with its steps.

use super::{finish, steps};
use crate::cli::{
    Command, DomainCmd, EnableArgs, KeyCmd, MigrateCmd, OnOff, OverrideArg, RotateArgs,
};
use dkimd::errln;
use dkimd_core::config::Config;
use dkimd_core::manager::{EnableOptions, Manager, StepLine};
use dkimd_core::model::settings::Override;
use dkimd_core::store::AuditEntry;
use std::process::ExitCode;

impl From<OverrideArg> for Override {
    fn from(o: OverrideArg) -> Override {
        match o {
            OverrideArg::Always => Override::Always,
            OverrideArg::Never => Override::Never,
            OverrideArg::Default => Override::Default,
        }
    }
}

/// `on`/`off` as the audit log writes it.
fn onoff(o: OnOff) -> &'static str {
    if o.on() {
        "on"
    } else {
        "off"
    }
}

/// An optional flag as the audit log writes it (`Some("on")`, `None`).
fn opt(o: Option<&str>) -> String {
    format!("{o:?}")
}

fn override_name(o: OverrideArg) -> &'static str {
    Override::from(o).as_str()
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
            format!(
                "{name} dns={} mail={} dkim={}",
                onoff(*dns),
                onoff(*mail),
                override_name(*dkim)
            ),
        ),
        Command::Domain(DomainCmd::Set {
            name,
            dns,
            mail,
            dkim,
            publish,
            delegate_zone,
        }) => (
            "set domain",
            format!(
                "{name} dns={} mail={} dkim={}{}",
                opt(dns.map(onoff)),
                opt(mail.map(onoff)),
                opt(dkim.map(override_name)),
                match (publish, delegate_zone) {
                    (Some(crate::cli::PublishArg::Cname), Some(z)) =>
                        format!(" publish=cname delegate-zone={z}"),
                    (Some(crate::cli::PublishArg::Direct), _) => " publish=direct".to_string(),
                    _ => String::new(),
                }
            ),
        ),
        Command::Domain(DomainCmd::Remove { name }) => ("remove domain", name.clone()),
        Command::Domain(DomainCmd::Rename { from, to }) => {
            ("rename domain", format!("{from} to {to}"))
        }
        Command::Enable(a) => (
            "enable",
            format!(
                "selector={:?} algorithms={:?} rsa-bits={:?} new-key={}",
                a.selector,
                a.algorithms.as_ref().map(|v| v
                    .iter()
                    .map(|x| dkim::KeyAlgorithm::from(*x).as_str())
                    .collect::<Vec<_>>()
                    .join(",")),
                a.rsa_bits,
                a.new_key
            ),
        ),
        Command::Disable(a) => ("disable", format!("purge-keys={}", a.purge_keys)),
        Command::Rotate(a) if a.step => (
            "rotate step",
            a.at.map(|t| format!("at {}", dkimd_core::clock::utc_timestamp(t)))
                .unwrap_or_default(),
        ),
        Command::Rotate(a) => (
            "rotate",
            format!(
                "{} selector={:?}",
                if a.all {
                    "--all".to_string()
                } else {
                    a.domains.join(" ")
                },
                a.selector
            ),
        ),
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
        Command::Migrate(m) if m.dry_run() => return None,
        Command::Migrate(MigrateCmd::Opendkim { from, .. }) => {
            ("migrate opendkim", from.display().to_string())
        }
        Command::Migrate(MigrateCmd::Rspamd { from, .. }) => {
            ("migrate rspamd", from.display().to_string())
        }
        Command::Migrate(MigrateCmd::Virtualmin { from, .. }) => {
            ("migrate virtualmin", from.display().to_string())
        }
        Command::Install(_) => ("install", String::new()),
        Command::Uninstall(_) => ("uninstall", String::new()),
        _ => return None,
    })
}

/// Runs a manager command on the configured store, and audits it.
pub fn run(cmd: Command, cfg: Config, json: bool) -> anyhow::Result<ExitCode> {
    let audit_as = audit_name(&cmd);
    let read_only = matches!(
        cmd,
        Command::Settings | Command::Status(_) | Command::Domain(DomainCmd::List)
    ) || matches!(&cmd, Command::Migrate(m) if m.dry_run());
    let mut m = if read_only {
        let shared = matches!(
            cfg.store.url_in(&cfg.state_dir),
            dkimd_core::config::StoreUrl::Postgres(_)
        );
        let (m, existed) = match Manager::open_read_only(cfg.clone(), steps(json)) {
            Ok(x) => x,
            // On a node of a fleet, status says what the daemon serves
            // while the store does not answer.
            Err(e) if shared && matches!(cmd, Command::Status(_)) => {
                return super::status::unreachable(&cfg, &e, json)
            }
            Err(e) => return Err(e.into()),
        };
        if !existed {
            errln!(
                "dkimd: no store yet in {} (nothing set): showing the defaults",
                m.cfg.state_dir.display()
            );
        }
        m
    } else {
        Manager::open(cfg, steps(json))?
    };
    if let Command::Rotate(RotateArgs { at: Some(t), .. }) = &cmd {
        m = m.with_clock(std::sync::Arc::new(dkimd_core::clock::FixedClock::at(*t)));
    }
    // Zone file changes are gathered and made once per zone at the end.
    m.begin_batch();
    let r = run_in(&mut m, cmd);
    let r = match m.flush_batch() {
        Ok(()) => r,
        Err(e) => r.and(Err(e.into())),
    };
    let mut lines = m.out.take_lines();
    // A `rotate --step` from cron that found nothing due changed nothing:
    // it is not audited (every five minutes would bury the changes).
    let idle_step = action_is_step(&audit_as)
        && r.is_ok()
        && lines.iter().all(|l| {
            l.ok && match l.subject.as_deref() {
                None | Some("waiting") => true,
                Some("step") => l.text == "nothing was due",
                Some(_) => false,
            }
        });
    if let (Some((action, detail)), false) = (audit_as, idle_step) {
        if let Err(e) = &r {
            lines.push(StepLine {
                subject: Some("error".into()),
                text: format!("{e:#}"),
                ok: false,
            });
        }
        let ok = m.out.failures == 0 && r.is_ok();
        let steps: Vec<String> = lines.iter().map(ToString::to_string).collect();
        if let Err(e) = m.store.audit(&AuditEntry {
            user: &format!("cli:{}", dkimd_core::sys::current_user()),
            remote: "local",
            action,
            detail: &detail,
            ok,
            steps: &steps,
        }) {
            errln!("dkimd: warning: {}", e.chain());
        }
    }
    r
}

fn action_is_step(audit_as: &Option<(&'static str, String)>) -> bool {
    matches!(audit_as, Some(("rotate step", _)))
}

fn enable_options(a: &EnableArgs) -> EnableOptions {
    EnableOptions {
        selector: a.selector.clone(),
        algorithms: a
            .algorithms
            .as_ref()
            .map(|v| v.iter().map(|x| dkim::KeyAlgorithm::from(*x)).collect()),
        rsa_bits: a.rsa_bits,
        new_key: a.new_key,
    }
}

fn run_in(m: &mut Manager, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Domain(DomainCmd::Add {
            name,
            dns,
            mail,
            dkim,
        }) => m.domain_add(&name, dns.on(), mail.on(), dkim.into())?,
        Command::Domain(DomainCmd::Set {
            name,
            dns,
            mail,
            dkim,
            publish,
            delegate_zone,
        }) => {
            let how = match (publish, delegate_zone) {
                (Some(crate::cli::PublishArg::Cname), Some(z)) => {
                    Some(dkimd_core::model::names::Publishing::Cname(z))
                }
                (Some(crate::cli::PublishArg::Cname), None) => {
                    return Err(dkimd_core::Error::Usage(
                        "--publish cname needs --delegate-zone ZONE".into(),
                    )
                    .into())
                }
                (Some(crate::cli::PublishArg::Direct), None) => {
                    Some(dkimd_core::model::names::Publishing::Direct)
                }
                (_, Some(_)) => {
                    return Err(dkimd_core::Error::Usage(
                        "--delegate-zone goes with --publish cname".into(),
                    )
                    .into())
                }
                (None, None) => None,
            };
            if dns.is_some() || mail.is_some() || dkim.is_some() || how.is_none() {
                m.domain_set(
                    &name,
                    dns.map(OnOff::on),
                    mail.map(OnOff::on),
                    dkim.map(Override::from),
                )?;
            }
            if let Some(how) = how {
                m.domain_publish(&name, &how)?;
            }
        }
        Command::Domain(DomainCmd::Remove { name }) => m.domain_remove(&name)?,
        Command::Domain(DomainCmd::Rename { from, to }) => m.domain_rename(&from, &to)?,
        Command::Domain(DomainCmd::List) => return super::domain::list(m),
        Command::Enable(a) => m.enable(&enable_options(&a))?,
        Command::Disable(a) => m.disable(a.purge_keys)?,
        Command::Rotate(a) if a.step => {
            m.step()?;
        }
        Command::Rotate(a) => {
            let target = if a.all {
                dkimd_core::manager::RotateTarget::All
            } else {
                dkimd_core::manager::RotateTarget::Domains(a.domains.clone())
            };
            let algs: Option<Vec<dkim::KeyAlgorithm>> = a
                .algorithms
                .as_ref()
                .map(|v| v.iter().map(|x| dkim::KeyAlgorithm::from(*x)).collect());
            m.rotate(&target, a.selector.as_deref(), algs.as_deref())?
        }
        Command::Settings => return super::settings::show(m),
        Command::Set(a) => m.set_settings(&[(a.name, a.value.as_str())])?,
        Command::Key(KeyCmd::Show { domain }) => return super::key::show(m, &domain),
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
        Command::Status(a) => return super::status::show(m, a.live),
        Command::Install(a) => {
            let t = super::admin::targets(&a)?;
            dkimd_core::postfix::install(&m.cfg.clone(), &t, &mut m.out)?
        }
        Command::Uninstall(a) => {
            let t = super::admin::targets(&a)?;
            dkimd_core::postfix::uninstall(&m.cfg.clone(), &t, &mut m.out)?
        }
        Command::Migrate(MigrateCmd::Opendkim { from, dry_run }) => {
            let plan = dkimd_core::migrate::opendkim::read(&from)?;
            m.migrate(&plan, dry_run)?
        }
        Command::Migrate(MigrateCmd::Rspamd { from, dry_run }) => {
            let plan = dkimd_core::migrate::rspamd::read(&from)?;
            m.migrate(&plan, dry_run)?
        }
        Command::Migrate(MigrateCmd::Virtualmin {
            from,
            opendkim_config,
            opendkim_defaults,
            dry_run,
        }) => {
            let plan =
                dkimd_core::migrate::virtualmin::read(&from, &opendkim_config, &opendkim_defaults)?;
            m.migrate(&plan, dry_run)?
        }
        Command::Admin(a) => return super::admin::run(m, a),
        Command::Export(f) => m.export(&f.file)?,
        Command::Import(f) => m.import(&f.file)?,
        Command::Keygen(_)
        | Command::Sign(_)
        | Command::Verify(_)
        | Command::Run(_)
        | Command::Store(_)
        | Command::Nodes
        | Command::Generate(_)
        | Command::Bench(_)
        | Command::BenchServe(_) => anyhow::bail!("internal: command routed to the manager"),
    }
    // The gathered zone file changes, before the result is told.
    m.flush_batch()?;
    finish(m, serde_json::json!({}))
}
