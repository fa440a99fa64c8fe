//! `dkimd admin` (web admin users) and the targets of `dkimd install`.

use super::{finish, print_json, usage};
use crate::cli::{AdminCmd, InstallArgs, ReplaceArg};
use anyhow::Context;
use dkimd::outln;
use dkimd_core::manager::Manager;
use dkimd_core::store::AuditEntry;
use std::process::ExitCode;

/// Reads a new password: twice from a terminal, else one line of stdin.
fn read_new_password(user: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let pw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("New password for {user}: "))?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            return usage("the two passwords differ; nothing changed");
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.chars().count() < dkimd::web::auth::MIN_PASSWORD {
        return usage(format!(
            "the password must have at least {} characters; nothing changed",
            dkimd::web::auth::MIN_PASSWORD
        ));
    }
    Ok(pw)
}

/// `dkimd admin passwd|list|remove`.
pub fn run(m: &mut Manager, a: AdminCmd) -> anyhow::Result<ExitCode> {
    let me = dkimd_core::sys::current_user();
    let record = |m: &Manager, action: &str, detail: &str| {
        m.store.audit(&AuditEntry {
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
                return usage(format!(
                    "{user:?} is not a user name (letters, digits, . _ - @; at most 64)"
                ));
            }
            let pw = read_new_password(&user)?;
            let existed = m.store.admin_hash(&user)?.is_some();
            m.store
                .set_admin(&user, &dkimd::web::auth::hash_password(&pw)?)?;
            record(m, "set admin password", &user)?;
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
            let names = m.store.admin_names()?;
            if m.out.is_json() {
                return print_json(&serde_json::json!({ "users": names }));
            }
            for n in names {
                outln!("{n}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        AdminCmd::Remove { user } => {
            if !m.store.remove_admin(&user)? {
                return usage(format!("no admin user {user}"));
            }
            record(m, "remove admin user", &user)?;
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

/// What `dkimd install` and `uninstall` change.
pub fn targets(a: &InstallArgs) -> anyhow::Result<dkimd_core::postfix::Targets> {
    Ok(dkimd_core::postfix::Targets {
        postfix_dir: a.postfix_config.clone(),
        systemd_dir: (!a.no_systemd).then(|| a.systemd_dir.clone()),
        user: (!a.no_user).then(|| a.user.clone()),
        binary: std::env::current_exe().context("cannot find the dkimd binary")?,
        replace: match a.replace {
            None => None,
            Some(ReplaceArg::Opendkim) => {
                let conf = a
                    .replace_config
                    .clone()
                    .unwrap_or_else(|| dkimd_core::migrate::opendkim::DEFAULT_CONFIG.into());
                let socket = dkimd_core::migrate::opendkim::socket_of(&conf)?;
                Some(dkimd_core::postfix::Replace {
                    program: "opendkim".into(),
                    socket,
                    service: "opendkim".into(),
                })
            }
            Some(ReplaceArg::Rspamd) => Some(dkimd_core::postfix::Replace {
                program: "rspamd".into(),
                socket: dkimd_core::migrate::rspamd::milter_socket(),
                service: "rspamd".into(),
            }),
        },
    })
}
