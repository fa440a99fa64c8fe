//! `dkimd install` / `dkimd uninstall`: the Postfix hook-up and the system
//! pieces (systemd unit, service user, directories). Every change to Postfix
//! is printed before it is made; what install changed is recorded in the
//! state directory so that uninstall reverses exactly that.

use crate::config::Config;
use crate::error::{bail, Context};
use crate::steps::Steps;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where install and uninstall act.
pub struct Targets {
    /// Postfix's configuration directory (`postconf -c`).
    pub postfix_dir: PathBuf,
    /// Where the systemd unit goes; None: no unit.
    pub systemd_dir: Option<PathBuf>,
    /// The service user to create; None: none (dkimd runs as root).
    pub user: Option<String>,
    /// The dkimd binary the unit starts.
    pub binary: PathBuf,
    /// The milter dkimd takes the place of (`install --replace`).
    pub replace: Option<Replace>,
}

/// A milter whose place dkimd takes in Postfix's milter lists.
#[derive(Clone, Debug)]
pub struct Replace {
    /// Its name (`opendkim`, `rspamd`), as the plan says it.
    pub program: String,
    /// Its socket in Postfix's notation.
    pub socket: String,
    /// Its systemd service, stopped and disabled once Postfix uses dkimd.
    pub service: String,
}

/// What `install --replace` took out, for uninstall to put back.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Replaced {
    /// The old milter as it was first written in Postfix's lists.
    socket: String,
    /// Its systemd service, when install stopped and disabled it.
    service: Option<String>,
    /// Each list it was in, with the item as it was written there.
    #[serde(default)]
    params: std::collections::BTreeMap<String, String>,
}

const RECORD: &str = "install.json";

/// What install changed, kept in the state directory for uninstall.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct InstallRecord {
    /// Postfix's configuration directory.
    postfix_dir: Option<String>,
    /// Parameters install changed, with their values before (None: unset).
    postfix: std::collections::BTreeMap<String, Option<String>>,
    /// Files install wrote.
    files: Vec<String>,
    /// The user install created.
    user: Option<String>,
    /// The configuration file install wrote (the sample), which uninstall
    /// removes while it is unchanged.
    #[serde(default)]
    config: Option<String>,
    /// The milter install replaced.
    #[serde(default)]
    replaced: Option<Replaced>,
    /// install enabled and started dkimd's unit (for `--replace`).
    #[serde(default)]
    enabled_dkimd: bool,
}

fn read_record(path: &Path) -> crate::Result<Option<InstallRecord>> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            Ok(Some(serde_json::from_str(&t).with_context(|| {
                format!("{} is damaged", path.display())
            })?))
        }
        Err(_) => Ok(None),
    }
}

fn postconf(dir: &Path, args: &[&str]) -> crate::Result<String> {
    let out = Command::new("postconf")
        .arg("-c")
        .arg(dir)
        .args(args)
        .output()
        .context("cannot run postconf (is Postfix installed?)")?;
    if !out.status.success() {
        bail!(
            "postconf {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Parameters set explicitly in main.cf (`postconf -n`), name → value.
fn explicit(dir: &Path) -> crate::Result<Vec<(String, String)>> {
    Ok(postconf(dir, &["-n"])?
        .lines()
        .filter_map(|l| {
            l.split_once(" = ")
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect())
}

/// A milter list as Postfix reads it: names separated by commas or white
/// space, where `{ … }` (a milter with its own settings) is one item.
fn split_list(v: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in v.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            c if depth == 0 && (c == ',' || c.is_whitespace()) => {
                if !cur.is_empty() {
                    items.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

/// Whether a milter list takes in the parameter `other` (`$other`,
/// `${other}`, `$(other)`): then it gets what `other` gets.
fn follows(list: &[String], other: &str) -> bool {
    list.iter().any(|i| {
        let r = i.trim();
        r == format!("${other}") || r == format!("${{{other}}}") || r == format!("$({other})")
    })
}

/// The socket of a milter list item (`{ inet:…, settings }` → `inet:…`).
fn item_socket(item: &str) -> &str {
    let t = item.trim();
    match t.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        Some(inner) => inner.split(',').next().map(str::trim).unwrap_or(inner),
        None => t,
    }
}

/// Whether two milter sockets name the same milter: equal, a Unix socket
/// written relative to Postfix's chroot (/var/spool/postfix) or with
/// `local:`, or the same port on two names of the loopback host.
pub fn same_milter(a: &str, b: &str) -> bool {
    let (a, b) = (item_socket(a), item_socket(b));
    if a == b {
        return true;
    }
    let unix = |s: &str| -> Option<String> {
        let p = s
            .strip_prefix("unix:")
            .or_else(|| s.strip_prefix("local:"))?;
        let p = p.trim_start_matches("/var/spool/postfix");
        Some(format!("/{}", p.trim_start_matches('/')))
    };
    if let (Some(x), Some(y)) = (unix(a), unix(b)) {
        return x == y;
    }
    let inet = |s: &str| -> Option<(String, String)> {
        let rest = s
            .strip_prefix("inet:")
            .or_else(|| s.strip_prefix("inet6:"))?;
        let (host, port) = rest.rsplit_once(':')?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host = match host.as_str() {
            "localhost" | "127.0.0.1" | "::1" | "" => "loopback".to_string(),
            _ => host,
        };
        Some((host, port.to_string()))
    };
    matches!((inet(a), inet(b)), (Some(x), Some(y)) if x == y)
}

fn postfix_running(dir: &Path) -> bool {
    Command::new("postfix")
        .arg("-c")
        .arg(dir)
        .arg("status")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Reloads Postfix when it runs; false when the reload failed.
fn reload_postfix(dir: &Path, out: &mut Steps) -> bool {
    if postfix_running(dir) {
        match Command::new("postfix")
            .arg("-c")
            .arg(dir)
            .arg("reload")
            .output()
        {
            Ok(o) if o.status.success() => {
                out.step("postfix", "reloaded", true);
                true
            }
            Ok(o) => {
                out.step(
                    "postfix",
                    &format!(
                        "reload failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    false,
                );
                false
            }
            Err(e) => {
                out.step("postfix", &format!("reload failed: {e}"), false);
                false
            }
        }
    } else {
        out.step(
            "postfix",
            "not running; the changes apply when it starts",
            true,
        );
        true
    }
}

/// The socket as Postfix names it.
pub fn postfix_socket(cfg: &Config) -> String {
    cfg.milter.socket.as_str().replace("local:", "unix:")
}

fn unit_text(cfg: &Config, t: &Targets) -> String {
    let config = cfg
        .source
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    unit_file(WRITTEN_BY, &t.binary, &config, t.user.as_deref())
}

/// The systemd unit that runs `binary` with `config` as `user` (None:
/// root), with `header` as its first comment: what install writes, and
/// (from `dkimd generate unit`) what the Debian package ships.
pub fn unit_file(header: &str, binary: &Path, config: &Path, user: Option<&str>) -> String {
    let user = user
        .map(|u| format!("User={u}\nGroup={u}\n"))
        .unwrap_or_default();
    format!(
        "# {header}\n\
         [Unit]\nDescription=dkimd DKIM signing and verification milter\nDocumentation=man:dkimd(1) man:dkimd(7)\nAfter=network-online.target\nBefore=postfix.service\n\n\
         [Service]\nType=simple\n{user}ExecStart={bin} --config {config} run\nExecReload=/bin/kill -HUP $MAINPID\n\
         RuntimeDirectory=dkimd\nRuntimeDirectoryMode=0750\nUMask=0007\nRestart=on-failure\nNoNewPrivileges=yes\nProtectSystem=full\nPrivateTmp=yes\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        bin = binary.display(),
        config = config.display(),
    )
}

/// Where the Debian package puts its unit.
pub const PACKAGED_UNITS: [&str; 2] = [
    "/lib/systemd/system/dkimd.service",
    "/usr/lib/systemd/system/dkimd.service",
];

/// Hooks dkimd into Postfix and the system.
pub fn install(cfg: &Config, t: &Targets, out: &mut Steps) -> crate::Result<()> {
    out.title(&format!(
        "Installing dkimd for Postfix in {}",
        t.postfix_dir.display()
    ));
    // Postfix's settings first: without them nothing else is done.
    let set = explicit(&t.postfix_dir)?;
    let record_path = cfg.state_dir.join(RECORD);
    let mut record = read_record(&record_path)?.unwrap_or_default();
    if let Some(user) = &t.user {
        service_user(cfg, user, &mut record, out)?;
    }
    state_dir(cfg, t.user.as_deref(), out)?;
    config_file(cfg, &mut record, out)?;
    if let Some(dir) = &t.systemd_dir {
        systemd_unit(cfg, t, dir, &mut record, out)?;
        if let Some(why) = passing_binary(&t.binary) {
            out.sink().notice(&format!(
                "warning: the unit starts {}, {why}: when it goes, dkimd stops. Copy the binary to a system path and run install from there (install -m 0755 {} /usr/local/bin/dkimd && /usr/local/bin/dkimd install), or install the Debian package (/usr/bin/dkimd)",
                t.binary.display(),
                t.binary.display()
            ));
            out.step(
                "systemd",
                &format!("warning: ExecStart is {}, {why}", t.binary.display()),
                true,
            );
        }
        writable_paths(cfg, dir, &mut record, out)?;
    }
    if let Some(user) = &t.user {
        service_user_access(cfg, user, out);
    }
    record.postfix_dir = Some(t.postfix_dir.display().to_string());
    let save = |record: &InstallRecord| {
        crate::sys::write_atomic(
            &record_path,
            serde_json::to_string_pretty(record)?.as_bytes(),
            0o600,
        )
    };
    // What was made so far is recorded before Postfix is touched: an
    // install that stops there is still undone by uninstall.
    save(&record)?;
    let changes = match &t.replace {
        None => milter_params(cfg, t, &set, &mut record, out),
        Some(r) => replace_milter(cfg, t, r, &set, &mut record, out),
    };
    save(&record)?;
    let changes = changes?;
    let reloaded = if changes == 0 {
        out.step("postfix", "configuration unchanged", true);
        true
    } else {
        reload_postfix(&t.postfix_dir, out)
    };
    // The old milter goes only once Postfix no longer sends it mail.
    if let Some(r) = &t.replace {
        if reloaded {
            stop_replaced(r, &mut record, out);
            save(&record)?;
        } else {
            out.step(
                "milter",
                &format!(
                    "{} is left running: Postfix did not reload, and still sends it mail",
                    r.program
                ),
                false,
            );
        }
    }
    Ok(())
}

/// Whether a milter answers on `socket` (Postfix notation) within `wait`.
fn milter_answers(socket: &str, wait: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let ok = if let Some(p) = socket.strip_prefix("unix:") {
            std::os::unix::net::UnixStream::connect(p).is_ok()
        } else if let Some((host, port)) = socket
            .strip_prefix("inet:")
            .and_then(|r| r.rsplit_once(':'))
        {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            port.parse::<u16>()
                .is_ok_and(|port| std::net::TcpStream::connect((host, port)).is_ok())
        } else {
            false
        };
        if ok || std::time::Instant::now() >= deadline {
            return ok;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").exists()
}

/// `systemctl ARGS`, as a step.
fn systemctl(args: &[&str], out: &mut Steps) -> bool {
    match Command::new("systemctl").args(args).output() {
        Ok(o) if o.status.success() => {
            out.step("systemd", &format!("systemctl {}", args.join(" ")), true);
            true
        }
        Ok(o) => {
            out.step(
                "systemd",
                &format!(
                    "systemctl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                false,
            );
            false
        }
        Err(e) => {
            out.step("systemd", &format!("cannot run systemctl: {e}"), false);
            false
        }
    }
}

/// `install --replace`: dkimd takes the old milter's place in
/// `smtpd_milters` and `non_smtpd_milters` (every other milter and the
/// order kept), in one postconf run, once dkimd answers on its socket, so
/// that no message meets a list with neither filter. Returns how many
/// parameters changed.
fn replace_milter(
    cfg: &Config,
    t: &Targets,
    r: &Replace,
    set: &[(String, String)],
    record: &mut InstallRecord,
    out: &mut Steps,
) -> crate::Result<usize> {
    let socket = postfix_socket(cfg);
    if t.systemd_dir.is_some() && systemd_runs() && systemctl(&["enable", "--now", "dkimd"], out) {
        record.enabled_dkimd = true;
    }
    if !milter_answers(&socket, std::time::Duration::from_secs(10)) {
        bail!(
            "dkimd does not answer on {socket}: start it first (systemctl start dkimd, or dkimd run), then run install --replace {} again; Postfix still uses {}",
            r.program,
            r.program
        );
    }
    out.step("milter", &format!("dkimd answers on {socket}"), true);
    let current = |k: &str| set.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut changes: Vec<(String, String)> = Vec::new();
    let mut taken_out: Option<String> = None;
    let mut params = record
        .replaced
        .as_ref()
        .map(|x| x.params.clone())
        .unwrap_or_default();
    for param in ["smtpd_milters", "non_smtpd_milters"] {
        let old = current(param).unwrap_or_default();
        let list = split_list(&old);
        if param == "non_smtpd_milters" && follows(&list, "smtpd_milters") {
            out.step(
                "postfix",
                "non_smtpd_milters takes in $smtpd_milters, where dkimd takes the old milter's place",
                true,
            );
            continue;
        }
        let mut new_list: Vec<String> = Vec::new();
        for item in &list {
            if same_milter(item, &r.socket) {
                taken_out.get_or_insert_with(|| item.clone());
                params
                    .entry(param.to_string())
                    .or_insert_with(|| item.clone());
                if !new_list.contains(&socket) {
                    new_list.push(socket.clone());
                }
            } else if same_milter(item, &socket) {
                if !new_list.contains(&socket) {
                    new_list.push(socket.clone());
                }
            } else {
                new_list.push(item.clone());
            }
        }
        if !new_list.contains(&socket) {
            new_list.push(socket.clone());
        }
        if new_list == list {
            out.step("postfix", &format!("{param} already has {socket}"), true);
            continue;
        }
        let new = new_list.join(", ");
        out.step("postfix", &format!("{param}: {old:?} → {new:?}"), true);
        record.postfix.entry(param.to_string()).or_insert(Some(old));
        changes.push((param.to_string(), new));
    }
    match &taken_out {
        Some(item) => {
            record.replaced = Some(Replaced {
                socket: item.clone(),
                service: record.replaced.as_ref().and_then(|x| x.service.clone()),
                params,
            });
        }
        None if record.replaced.is_none() => out.step(
            "postfix",
            &format!(
                "{} ({}) is in neither list: dkimd is added, nothing is replaced",
                r.program, r.socket
            ),
            true,
        ),
        None => {}
    }
    if current("milter_default_action").is_none() {
        out.step(
            "postfix",
            "milter_default_action: (default) → \"accept\"",
            true,
        );
        changes.push(("milter_default_action".into(), "accept".into()));
        record.postfix.insert("milter_default_action".into(), None);
    }
    if !changes.is_empty() {
        let args: Vec<String> = changes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut all = vec!["-e"];
        all.extend(args.iter().map(String::as_str));
        postconf(&t.postfix_dir, &all)?;
    }
    Ok(changes.len())
}

/// After the switch: the old milter's service is stopped and disabled
/// where systemd runs it.
fn stop_replaced(r: &Replace, record: &mut InstallRecord, out: &mut Steps) {
    let Some(rep) = record.replaced.as_mut() else {
        return;
    };
    if rep.service.is_some() {
        return;
    }
    if !systemd_runs() {
        out.step(
            "systemd",
            &format!(
                "systemd does not run here: stop {} yourself (Postfix no longer sends it mail)",
                r.service
            ),
            true,
        );
        return;
    }
    let known = Command::new("systemctl")
        .args(["cat", &format!("{}.service", r.service)])
        .output()
        .is_ok_and(|o| o.status.success());
    if !known {
        out.step(
            "systemd",
            &format!("no {} service to stop", r.service),
            true,
        );
        return;
    }
    if systemctl(&["disable", "--now", &r.service], out) {
        rep.service = Some(r.service.clone());
    }
}

/// Why a binary at `path` will not stay there, if it looks so: a temporary
/// directory, a cargo build directory or a home directory.
pub fn passing_binary(path: &Path) -> Option<&'static str> {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let under = |prefix: &[&str]| {
        parts.len() > prefix.len() && parts.iter().zip(prefix).all(|(a, b)| a == b)
    };
    // A build directory first: it is the more telling name, wherever the
    // checkout is (`cargo clean` removes it).
    if parts.iter().any(|p| p == "target") && parts.iter().any(|p| p == "debug" || p == "release") {
        Some("a cargo build directory")
    } else if under(&["/", "tmp"]) || under(&["/", "var", "tmp"]) || under(&["/", "dev", "shm"]) {
        Some("a temporary directory")
    } else if under(&["/", "home"]) || under(&["/", "root"]) {
        Some("a home directory")
    } else {
        None
    }
}

/// The configuration file the unit reads: the commented sample is written
/// when it is missing (with this state directory); an existing one is
/// never touched.
fn config_file(cfg: &Config, record: &mut InstallRecord, out: &mut Steps) -> crate::Result<()> {
    let path = cfg
        .source
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    if path.exists() {
        out.step(
            "config",
            &format!("{} exists; left as it is", path.display()),
            true,
        );
        return Ok(());
    }
    let text = cfg.sample();
    // What is written must load as the configuration install used.
    Config::parse(&text, &path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::sys::write_atomic(&path, text.as_bytes(), 0o644)?;
    out.step(
        "config",
        &format!(
            "wrote {} (the commented sample; edit it, then systemctl reload dkimd)",
            path.display()
        ),
        true,
    );
    record.config = Some(path.display().to_string());
    Ok(())
}

/// The service user (created when missing), with postfix in its group so
/// that Postfix reaches the socket.
fn service_user(
    cfg: &Config,
    user: &str,
    record: &mut InstallRecord,
    out: &mut Steps,
) -> crate::Result<()> {
    if crate::sys::user_exists(user) {
        out.step("user", &format!("{user} exists"), true);
    } else {
        let o = Command::new("useradd")
            .args(["--system", "--no-create-home", "--home-dir"])
            .arg(&cfg.state_dir)
            .args(["--shell", "/usr/sbin/nologin", user])
            .output()
            .context("cannot run useradd")?;
        if !o.status.success() {
            bail!(
                "useradd {user}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        record.user = Some(user.to_string());
        out.step("user", &format!("created system user {user}"), true);
    }
    let o = Command::new("usermod")
        .args(["-a", "-G", user, "postfix"])
        .output();
    if o.map(|o| o.status.success()).unwrap_or(false) {
        out.step(
            "user",
            &format!("postfix added to group {user} (socket access)"),
            true,
        );
    }
    Ok(())
}

/// The state directory with its store, owned by the service user.
fn state_dir(cfg: &Config, user: Option<&str>, out: &mut Steps) -> crate::Result<()> {
    let store = crate::store::open(cfg)?;
    drop(store);
    if let Some(user) = user {
        let o = Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:{user}"))
            .arg(&cfg.state_dir)
            .output()?;
        if !o.status.success() {
            bail!(
                "chown {}: {}",
                cfg.state_dir.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    out.step(
        "state",
        &format!("{} (mode 0700)", cfg.state_dir.display()),
        true,
    );
    Ok(())
}

/// Adds dkimd to `smtpd_milters` and `non_smtpd_milters` (and sets
/// `milter_default_action` when the admin has not), shown first; returns
/// how many parameters changed.
fn milter_params(
    cfg: &Config,
    t: &Targets,
    set: &[(String, String)],
    record: &mut InstallRecord,
    out: &mut Steps,
) -> crate::Result<usize> {
    let socket = postfix_socket(cfg);
    let current = |k: &str| set.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut changes: Vec<(String, String)> = Vec::new();
    for param in ["smtpd_milters", "non_smtpd_milters"] {
        let old = current(param).unwrap_or_default();
        let mut list = split_list(&old);
        if list.iter().any(|i| same_milter(i, &socket)) {
            out.step("postfix", &format!("{param} already has {socket}"), true);
            continue;
        }
        if param == "non_smtpd_milters" && follows(&list, "smtpd_milters") {
            out.step(
                "postfix",
                "non_smtpd_milters takes in $smtpd_milters, which has dkimd",
                true,
            );
            continue;
        }
        list.push(socket.clone());
        let new = list.join(", ");
        out.step("postfix", &format!("{param}: {:?} → {:?}", old, new), true);
        changes.push((param.to_string(), new));
        record.postfix.entry(param.to_string()).or_insert(Some(old));
    }
    match current("milter_default_action") {
        Some(v) => out.step(
            "postfix",
            &format!("milter_default_action stays {v} (set by the admin)"),
            true,
        ),
        None => {
            out.step(
                "postfix",
                "milter_default_action: (default) → \"accept\"",
                true,
            );
            changes.push(("milter_default_action".into(), "accept".into()));
            record.postfix.insert("milter_default_action".into(), None);
        }
    }
    for (k, v) in &changes {
        postconf(&t.postfix_dir, &["-e", &format!("{k}={v}")])?;
    }
    Ok(changes.len())
}

/// The systemd unit in `dir`, written when it differs.
fn systemd_unit(
    cfg: &Config,
    t: &Targets,
    dir: &Path,
    record: &mut InstallRecord,
    out: &mut Steps,
) -> crate::Result<()> {
    // Installed from the package: its unit already runs this binary.
    if t.binary == Path::new("/usr/bin/dkimd") && dir == Path::new("/etc/systemd/system") {
        if let Some(p) = PACKAGED_UNITS.iter().find(|p| Path::new(p).exists()) {
            out.step(
                "systemd",
                &format!("the package's unit {p} runs dkimd"),
                true,
            );
            return Ok(());
        }
    }
    let unit = dir.join("dkimd.service");
    let text = unit_text(cfg, t);
    if !write_systemd_file(&unit, &text)? {
        out.step(
            "systemd",
            &format!("{} is up to date", unit.display()),
            true,
        );
        return Ok(());
    }
    out.step(
        "systemd",
        &format!("wrote {} (ExecReload sends SIGHUP)", unit.display()),
        true,
    );
    let s = unit.display().to_string();
    if !record.files.contains(&s) {
        record.files.push(s);
    }
    daemon_reload();
    Ok(())
}

/// Writes `text` to the systemd file `path` (mode 0644, its directory made
/// when missing) unless it holds that already; true when it wrote.
fn write_systemd_file(path: &Path, text: &str) -> crate::Result<bool> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    crate::sys::write_atomic(path, text.as_bytes(), 0o644)?;
    Ok(true)
}

/// The drop-in with which the unit (install's, or the package's) may write
/// the directories of the zone files dkimd edits.
const DROP_IN: &str = "dkimd.service.d/zone-files.conf";

/// The first comment of the files install writes for systemd: how it knows
/// a drop-in for its own.
const WRITTEN_BY: &str = "Written by dkimd install; dkimd uninstall removes it.";

/// The unit's `ProtectSystem=full` leaves /etc and /usr read-only, where
/// BIND's zone files often are: a drop-in lets dkimd write the directories
/// of its bind-zone-file zones (and goes when there are none).
fn writable_paths(
    cfg: &Config,
    systemd_dir: &Path,
    record: &mut InstallRecord,
    out: &mut Steps,
) -> crate::Result<()> {
    // systemd takes normalized absolute paths: the directory with its
    // links resolved (as written while it does not exist yet).
    let mut dirs: Vec<String> = Vec::new();
    for (z, f) in crate::publish::bind::zone_files(cfg) {
        let Some(dir) = std::path::absolute(f)
            .ok()
            .and_then(|a| a.parent().map(Path::to_path_buf))
        else {
            continue;
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        match dir.to_str() {
            Some(d) if !d.contains(|c: char| c.is_control()) && !d.contains("/../") && !d.ends_with("/..") => {
                dirs.push(d.to_string());
            }
            _ => out.step(
                "systemd",
                &format!(
                    "warning: zone {}: the directory of {} cannot be named in a unit (not UTF-8, a control character or ..): add ReadWritePaths= for it by hand",
                    z.name,
                    f.display()
                ),
                true,
            ),
        }
    }
    dirs.sort();
    dirs.dedup();
    let path = systemd_dir.join(DROP_IN);
    let shown = path.display().to_string();
    // A file of that name that install did not write is the admin's.
    let ours = record.files.contains(&shown)
        || std::fs::read_to_string(&path)
            .map_or(true, |t| t.starts_with(&format!("# {WRITTEN_BY}")));
    if !ours {
        out.step(
            "systemd",
            &format!("warning: {shown} exists and was not written by install: left as it is; make sure it lets dkimd write the zone directories (ReadWritePaths=)"),
            true,
        );
        return Ok(());
    }
    if dirs.is_empty() {
        if record.files.contains(&shown) {
            match std::fs::remove_file(&path) {
                Ok(()) => out.step(
                    "systemd",
                    &format!("removed {shown} (no zone files to edit)"),
                    true,
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => bail!("cannot remove {shown}: {e}"),
            }
            if let Some(d) = path.parent() {
                let _ = std::fs::remove_dir(d);
            }
            record.files.retain(|f| f != &shown);
            daemon_reload();
        }
        return Ok(());
    }
    let mut text = format!(
        "# {WRITTEN_BY}\n\
         # The unit's ProtectSystem=full leaves /etc and /usr read-only: dkimd\n\
         # edits the zone files of its bind-zone-file zones in these directories.\n\
         [Service]\n",
    );
    for d in &dirs {
        // "%" starts a systemd specifier; white space, quotes and
        // backslashes need quoting.
        let d = d.replace('%', "%%");
        if d.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
            text.push_str(&format!(
                "ReadWritePaths=\"-{}\"\n",
                d.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        } else {
            text.push_str(&format!("ReadWritePaths=-{d}\n"));
        }
    }
    let list = dirs.join(", ");
    if !write_systemd_file(&path, &text)? {
        out.step(
            "systemd",
            &format!("{shown} is up to date (dkimd may write {list})"),
            true,
        );
    } else {
        out.step(
            "systemd",
            &format!("wrote {shown}: dkimd may write {list} (ReadWritePaths; a running dkimd needs systemctl restart dkimd)"),
            true,
        );
        daemon_reload();
    }
    if !record.files.contains(&shown) {
        record.files.push(shown);
    }
    Ok(())
}

fn daemon_reload() {
    if systemd_runs() {
        let _ = Command::new("systemctl").arg("daemon-reload").status();
    }
}

/// The files the configuration names that the daemon must read: the
/// setting that names each, the file, and whether it is a secret (which
/// the daemon accepts only as its owner's, mode 0600).
fn files_to_read(cfg: &Config) -> Vec<(String, &Path, bool)> {
    let mut named: Vec<(String, Option<&PathBuf>, bool)> = Vec::new();
    for z in &cfg.publish.zones {
        let at = |k: &str| format!("zone {}: {k}", z.name);
        named.push((at("tsig_secret_file"), z.tsig_secret_file.as_ref(), true));
        named.push((at("api_key_file"), z.api_key_file.as_ref(), true));
        named.push((at("ca_file"), z.ca_file.as_ref(), false));
        named.push((at("credentials_file"), z.credentials_file.as_ref(), true));
    }
    let st = &cfg.store;
    named.push((
        "store.password_file".into(),
        st.password_file.as_ref(),
        true,
    ));
    named.push(("store.key_file".into(), st.key_file.as_ref(), true));
    named.push((
        "store.previous_key_file".into(),
        st.previous_key_file.as_ref(),
        true,
    ));
    named.push(("store.ca_file".into(), st.ca_file.as_ref(), false));
    named.push(("admin.tls_cert".into(), cfg.admin.tls_cert.as_ref(), false));
    named.push(("admin.tls_key".into(), cfg.admin.tls_key.as_ref(), true));
    named
        .into_iter()
        .filter_map(|(what, p, private)| Some((what, p?.as_path(), private)))
        .collect()
}

/// What would stop `who` from doing what the daemon does as it: editing the
/// zone files, reloading BIND with rndc, and reading the secrets and
/// certificates the configuration names. One message per problem, each
/// with the command that fixes it; empty when there is none.
pub fn access_problems(cfg: &Config, who: &crate::sys::Account) -> Vec<String> {
    let mut problems = crate::publish::bind::access_problems(cfg, who);
    for (setting, path, private) in files_to_read(cfg) {
        let need = if private {
            crate::sys::Need::ReadPrivate
        } else {
            crate::sys::Need::Read
        };
        if let Some(p) = who.cannot(path, need) {
            problems.push(format!("{p} ({setting})"));
        }
    }
    problems
}

/// Whether the service user can do what the daemon will do as it: edit the
/// zone files, reload BIND with rndc, and read the secrets and certificates
/// the configuration names. Each problem is a warning step with its fix;
/// install goes on (the admin may fix them afterwards).
fn service_user_access(cfg: &Config, user: &str, out: &mut Steps) {
    let Some(who) = crate::sys::Account::lookup(user) else {
        return;
    };
    let problems = access_problems(cfg, &who);
    let checked = crate::publish::bind::zone_files(cfg).len() + files_to_read(cfg).len();
    if problems.is_empty() {
        if checked > 0 {
            out.step(
                "access",
                &format!(
                    "{user} can edit the zone files and read the files the configuration names"
                ),
                true,
            );
        }
        return;
    }
    for p in &problems {
        out.step("access", &format!("warning: {p}"), true);
    }
    out.sink().notice(&format!(
        "warning: dkimd runs as {user}, who cannot reach {} thing(s) it needs (the access steps above say which, and how to fix each); or install with --no-user to run it as root",
        problems.len()
    ));
}

/// Reverses what install changed.
pub fn uninstall(cfg: &Config, t: &Targets, out: &mut Steps) -> crate::Result<()> {
    let socket = postfix_socket(cfg);
    let record_path = cfg.state_dir.join(RECORD);
    let Some(record) = read_record(&record_path)? else {
        out.step("install", "no record of an install; nothing to undo", true);
        return Ok(());
    };
    out.title(&format!(
        "Removing dkimd from Postfix in {}",
        t.postfix_dir.display()
    ));
    let set = explicit(&t.postfix_dir)?;
    let current = |k: &str| set.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut changed = false;
    if let Some(rep) = &record.replaced {
        changed |= restore_replaced(t, rep, &record, &socket, &current, out)?;
    }
    for param in ["smtpd_milters", "non_smtpd_milters"] {
        if record.replaced.is_some() {
            break;
        }
        let now = current(param).unwrap_or_default();
        let list: Vec<String> = split_list(&now)
            .into_iter()
            .filter(|m| !same_milter(m, &socket))
            .collect();
        if list.len() == split_list(&now).len() {
            continue;
        }
        changed = true;
        if list.is_empty()
            && record
                .postfix
                .get(param)
                .is_some_and(|v| v.as_deref().unwrap_or("").is_empty())
        {
            out.step("postfix", &format!("{param}: {now:?} → (removed)"), true);
            postconf(&t.postfix_dir, &["-X", param])?;
        } else {
            let new = list.join(", ");
            out.step("postfix", &format!("{param}: {now:?} → {new:?}"), true);
            postconf(&t.postfix_dir, &["-e", &format!("{param}={new}")])?;
        }
    }
    if record
        .postfix
        .get("milter_default_action")
        .is_some_and(Option::is_none)
        && current("milter_default_action").as_deref() == Some("accept")
    {
        out.step(
            "postfix",
            "milter_default_action: \"accept\" → (default)",
            true,
        );
        postconf(&t.postfix_dir, &["-X", "milter_default_action"])?;
        changed = true;
    }
    for p in &record.files {
        if std::fs::remove_file(p).is_ok() {
            out.step("systemd", &format!("removed {p}"), true);
        }
        // The drop-in's directory, once empty.
        if let Some(d) = Path::new(p)
            .parent()
            .filter(|d| d.ends_with("dkimd.service.d"))
        {
            let _ = std::fs::remove_dir(d);
        }
    }
    if let Some(p) = &record.config {
        let unchanged = std::fs::read_to_string(p).is_ok_and(|t| t == cfg.sample());
        if unchanged && std::fs::remove_file(p).is_ok() {
            out.step(
                "config",
                &format!("removed {p} (as install wrote it)"),
                true,
            );
        } else if Path::new(p).exists() {
            out.step("config", &format!("{p} kept (edited since install)"), true);
        }
    }
    std::fs::remove_file(&record_path).ok();
    out.step(
        "state",
        &format!("{} kept (keys and settings)", cfg.state_dir.display()),
        true,
    );
    if changed {
        reload_postfix(&t.postfix_dir, out);
    }
    // After `install --replace` under systemd: dkimd goes as it came.
    if record.enabled_dkimd && systemd_runs() {
        systemctl(&["disable", "--now", "dkimd"], out);
    }
    Ok(())
}

/// Uninstall after `install --replace`: the old milter starts again
/// (when install stopped it) and takes dkimd's place back in both lists,
/// in one postconf run. Returns whether Postfix's configuration changed.
fn restore_replaced(
    t: &Targets,
    rep: &Replaced,
    record: &InstallRecord,
    socket: &str,
    current: &dyn Fn(&str) -> Option<String>,
    out: &mut Steps,
) -> crate::Result<bool> {
    if let Some(service) = &rep.service {
        systemctl(&["enable", "--now", service], out);
    }
    let old_socket = item_socket(&rep.socket).to_string();
    if milter_answers(&old_socket, std::time::Duration::from_secs(10)) {
        out.step("milter", &format!("{old_socket} answers again"), true);
    } else {
        out.step(
            "milter",
            &format!(
                "{old_socket} does not answer: Postfix applies milter_default_action to mail until it does"
            ),
            false,
        );
    }
    let mut set_args = Vec::new();
    let mut removed = Vec::new();
    for param in ["smtpd_milters", "non_smtpd_milters"] {
        let now = current(param).unwrap_or_default();
        let list = split_list(&now);
        // The old milter goes back into the lists it was in, as written
        // there; from the others dkimd just leaves.
        let back = rep.params.get(param);
        let mut new_list: Vec<String> = Vec::new();
        for item in &list {
            if same_milter(item, socket) {
                if let Some(b) = back {
                    if !list.iter().any(|i| same_milter(i, b)) && !new_list.contains(b) {
                        new_list.push(b.clone());
                    }
                }
            } else {
                new_list.push(item.clone());
            }
        }
        if new_list == list {
            continue;
        }
        let unset_before = record
            .postfix
            .get(param)
            .is_some_and(|v| v.as_deref().unwrap_or("").is_empty());
        if new_list.is_empty() && unset_before {
            out.step("postfix", &format!("{param}: {now:?} → (removed)"), true);
            removed.push(param);
        } else {
            let new = new_list.join(", ");
            out.step("postfix", &format!("{param}: {now:?} → {new:?}"), true);
            set_args.push(format!("{param}={new}"));
        }
    }
    if set_args.is_empty() && removed.is_empty() {
        return Ok(false);
    }
    if !set_args.is_empty() {
        let mut args = vec!["-e"];
        args.extend(set_args.iter().map(String::as_str));
        postconf(&t.postfix_dir, &args)?;
    }
    if !removed.is_empty() {
        let mut args = vec!["-X"];
        args.extend(removed.iter().copied());
        postconf(&t.postfix_dir, &args)?;
    }
    Ok(true)
}

/// For enable/disable: is Postfix hooked up?
pub fn postfix_state(cfg: &Config) -> String {
    let socket = postfix_socket(cfg);
    let dir = read_record(&cfg.state_dir.join(RECORD))
        .ok()
        .flatten()
        .and_then(|r| r.postfix_dir.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/etc/postfix"));
    match postconf(&dir, &["-h", "smtpd_milters"]) {
        Ok(v) if split_list(&v).contains(&socket) => format!("smtpd_milters has {socket}"),
        Ok(_) => format!("not hooked up: smtpd_milters lacks {socket} (run dkimd install)"),
        Err(e) => postfix_missing(&dir, &e),
    }
}

/// What is missing when `postconf` could not answer, in words an admin acts
/// on.
fn postfix_missing(dir: &Path, e: &crate::Error) -> String {
    let main_cf = dir.join("main.cf");
    let have_postconf = Command::new("postconf")
        .arg("-d")
        .arg("mail_version")
        .output()
        .is_ok();
    if !have_postconf {
        "Postfix not found: no postconf command (install Postfix, then dkimd install hooks it up)"
            .into()
    } else if !main_cf.exists() {
        format!(
            "Postfix is installed but {} does not exist: Postfix is not configured yet (configure it, then run dkimd install)",
            main_cf.display()
        )
    } else {
        format!(
            "cannot read Postfix's configuration in {}: {}",
            dir.display(),
            e.chain()
        )
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_passing_binary_is_named_by_what_removes_it() {
        let why = |p: &str| passing_binary(Path::new(p));
        assert_eq!(
            why("/tmp/clone/target/debug/dkimd"),
            Some("a cargo build directory")
        );
        assert_eq!(
            why("/work/main/target/release/dkimd"),
            Some("a cargo build directory")
        );
        assert_eq!(why("/tmp/dkimd"), Some("a temporary directory"));
        assert_eq!(why("/root/bin/dkimd"), Some("a home directory"));
        assert_eq!(why("/usr/local/bin/dkimd"), None);
    }
    use super::*;

    #[test]
    fn milter_lists_keep_braced_items_whole() {
        assert_eq!(
            split_list("inet:127.0.0.1:8891, { inet:127.0.0.1:9, default_action=accept } unix:/x"),
            vec![
                "inet:127.0.0.1:8891",
                "{ inet:127.0.0.1:9, default_action=accept }",
                "unix:/x"
            ]
        );
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn one_milter_under_its_several_names() {
        assert!(same_milter("inet:localhost:8891", "inet:127.0.0.1:8891"));
        assert!(same_milter("inet:[::1]:8891", "inet:localhost:8891"));
        assert!(!same_milter("inet:localhost:8891", "inet:localhost:8892"));
        assert!(!same_milter("inet:10.0.0.1:8891", "inet:localhost:8891"));
        assert!(same_milter(
            "unix:/opendkim/opendkim.sock",
            "unix:/var/spool/postfix/opendkim/opendkim.sock"
        ));
        assert!(same_milter(
            "local:/run/opendkim/opendkim.sock",
            "unix:/run/opendkim/opendkim.sock"
        ));
        assert!(same_milter(
            "{ inet:localhost:11332, default_action=accept }",
            "inet:127.0.0.1:11332"
        ));
        assert!(!same_milter("unix:/run/a.sock", "inet:localhost:8891"));
    }
}
