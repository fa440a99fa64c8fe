//! Publishing into a BIND zone file: one locked edit per batch, checked
//! with named-checkzone, written atomically with the file's owner and mode,
//! reloaded, and confirmed by polling the served SOA serial.

use super::api::{copy_error, Outcome, PublishEnv, Publisher};
use super::zonefile;
use crate::config::{Backend, Config, ZoneConfig};
use crate::dns;
use crate::error::{bail, err, Context, Error};
use crate::sys::{write_atomic_with, NewFile};
use hickory_resolver::TokioResolver;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Editing a BIND zone file and reloading the zone.
pub struct ZoneFile {
    zone: String,
    file: PathBuf,
    ttl: u32,
    reload: Vec<String>,
    check: Option<Vec<String>>,
    resolver: TokioResolver,
    /// Poll DNS for the new serial only when servers are configured.
    poll: bool,
    propagation: Duration,
    lock: PathBuf,
    env: PublishEnv,
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("-v").output().is_ok()
}

fn run(cmd: &[String], what: &str) -> crate::Result<()> {
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| err!("{what}: empty command"))?;
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("{what}: cannot run {prog}"))?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bail!(
            "{what} failed ({}): {}",
            cmd.join(" "),
            text.trim().replace('\n', "; ")
        );
    }
    Ok(())
}

/// The zone files of `cfg`'s bind-zone-file zones, with their zones.
pub fn zone_files(cfg: &Config) -> Vec<(&ZoneConfig, &std::path::Path)> {
    cfg.publish
        .zones
        .iter()
        .filter(|z| z.backend == Backend::BindZoneFile)
        .filter_map(|z| z.file.as_deref().map(|f| (z, f)))
        .collect()
}

/// The file rndc reads its key from, when the reload command runs rndc:
/// the one `-c` or `-k` names (`-c FILE` or `-cFILE`), else the first of
/// Debian's two that exists (a key that file includes is not followed).
fn rndc_key(z: &ZoneConfig) -> Option<PathBuf> {
    let default = ["rndc".to_string()];
    let cmd = z.reload_command.as_deref().unwrap_or(&default);
    let (prog, args) = cmd.split_first()?;
    if std::path::Path::new(prog).file_name()? != "rndc" {
        return None;
    }
    for (i, a) in args.iter().enumerate() {
        for flag in ["-c", "-k"] {
            if a == flag {
                return args.get(i + 1).map(PathBuf::from);
            }
            if let Some(file) = a.strip_prefix(flag).filter(|f| !f.is_empty()) {
                return Some(PathBuf::from(file));
            }
        }
    }
    ["/etc/bind/rndc.conf", "/etc/bind/rndc.key"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// What would stop `who` from editing `cfg`'s zone files when a key is
/// published or removed: creating the new file beside the old one, reading
/// the old one, giving the new one the old one's owner, and reading rndc's
/// key for the reload. One message per problem, each with the fix; empty
/// when there is none (or no bind-zone-file zone).
pub fn access_problems(cfg: &Config, who: &crate::sys::Account) -> Vec<String> {
    use crate::sys::Need;
    let mut problems: Vec<String> = Vec::new();
    let mut add = |p: Option<String>| {
        if let Some(p) = p {
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
    };
    for (z, file) in zone_files(cfg) {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let in_dir = who.cannot(dir, Need::WriteIn);
        let blocked = in_dir.is_some();
        add(in_dir);
        if !blocked {
            add(who
                .cannot(file, Need::Read)
                .or_else(|| who.cannot(file, Need::KeepOwner)));
        }
        if crate::sys::read_only(dir) {
            add(Some(format!(
                "{} is read-only for {} (under systemd, the unit's ProtectSystem=full makes /etc and /usr read-only): run dkimd install again, which lets the unit write the zone directories (ReadWritePaths), or keep the zone file elsewhere",
                dir.display(),
                who.name
            )));
        }
        if let Some(key) = rndc_key(z) {
            add(who
                .cannot(&key, Need::Read)
                .map(|p| format!("{p} (rndc reloads the zone with it)")));
        }
    }
    problems
}

impl ZoneFile {
    pub(super) fn new(
        cfg: &Config,
        z: &ZoneConfig,
        resolver: TokioResolver,
        env: PublishEnv,
    ) -> crate::Result<ZoneFile> {
        let file = z
            .file
            .clone()
            .ok_or_else(|| err!("zone {}: no file configured", z.name))?;
        let reload = z
            .reload_command
            .clone()
            .unwrap_or_else(|| vec!["rndc".into(), "reload".into(), z.name.clone()]);
        let check = match &z.check_command {
            Some(c) => Some(c.clone()),
            None if have("named-checkzone") => {
                Some(vec!["named-checkzone".into(), "ZONE".into(), "FILE".into()])
            }
            None => None,
        };
        Ok(ZoneFile {
            zone: z.name.to_ascii_lowercase(),
            file,
            ttl: z.ttl.unwrap_or(3600),
            reload,
            check,
            resolver,
            poll: !cfg.dns.nameservers.is_empty(),
            propagation: Duration::from_secs(cfg.dns.propagation_timeout),
            lock: cfg.state_dir.join("zone-edit.lock"),
            env,
        })
    }

    fn change(&self, name: &str, value: Option<&str>) -> crate::Result<Outcome> {
        let mut v = self.change_many(&[(name, value)])?;
        v.pop().unwrap_or_else(|| Err(err!("no outcome")))
    }

    /// All `changes` in one edit of the file: one serial step, one check,
    /// one reload, one wait. The outer error is the batch's (lock, read,
    /// check, reload, DNS); the inner ones are single records'.
    fn change_many(
        &self,
        changes: &[(&str, Option<&str>)],
    ) -> crate::Result<Vec<crate::Result<Outcome>>> {
        // One dkimd at a time edits zone files.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .with_context(|| format!("cannot open lock file {}", self.lock.display()))?;
        lock.lock().context("cannot lock the zone edit lock")?;
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("cannot read zone file {}", self.file.display()))?;
        let served = if self.poll {
            dns::soa_serial_blocking(&self.resolver, &self.zone)
        } else {
            None
        };
        let (outcomes, new_text, new_serial) = zonefile::edit_many(
            &text,
            &self.zone,
            changes,
            self.ttl,
            served,
            crate::clock::yyyymmdd(self.env.clock.now()),
        )
        .map_err(|e| err!("zone file {}: {e}", self.file.display()))?;
        let file = self.file.display().to_string();
        let mut outcomes: Vec<crate::Result<Outcome>> = outcomes
            .into_iter()
            .map(|o| o.map_err(|e| err!("zone file {file}: {e}")))
            .collect();
        let Some(new_text) = new_text else {
            // The file says so already. "Present" must mean served: when DNS
            // serves an older zone than the file (a reload that failed, a
            // server that was down), reload now and wait for it.
            if self.poll && served.is_none_or(|s| zonefile::serial_gt(new_serial, s)) {
                run(&self.reload_command(), "reload")?;
                self.wait_for_serial(new_serial)?;
                for out in outcomes.iter_mut().flatten() {
                    let now = match &*out {
                        Outcome::AlreadyPresent => Outcome::ReloadedNowServed,
                        Outcome::Absent => Outcome::ReloadedNowRemoved,
                        other => other.clone(),
                    };
                    *out = now;
                }
            }
            return Ok(outcomes);
        };
        self.write_checked(&new_text)?;
        run(&self.reload_command(), "reload")?;
        if self.poll {
            self.wait_for_serial(new_serial)?;
        }
        Ok(outcomes)
    }

    /// The reload command with ZONE and FILE filled in, as in check_command.
    fn reload_command(&self) -> Vec<String> {
        self.reload
            .iter()
            .map(|a| {
                a.replace("ZONE", &self.zone)
                    .replace("FILE", &self.file.to_string_lossy())
            })
            .collect()
    }

    /// Writes the new zone next to the old one with the old owner and mode,
    /// checks it, and renames it into place.
    fn write_checked(&self, text: &str) -> crate::Result<()> {
        write_atomic_with(
            &self.file,
            text.as_bytes(),
            NewFile::like(&self.file)?,
            |tmp| {
                let Some(check) = &self.check else {
                    return Ok(());
                };
                let cmd: Vec<String> = check
                    .iter()
                    .map(|a| {
                        a.replace("ZONE", &self.zone)
                            .replace("FILE", &tmp.to_string_lossy())
                    })
                    .collect();
                // The check runs on the copy; its errors name the zone file.
                run(&cmd, "zone check").map_err(|e| {
                    err!(
                        "{}",
                        e.chain().replace(
                            &tmp.to_string_lossy().into_owned(),
                            &format!("{} (as edited)", self.file.display())
                        )
                    )
                })
            },
        )
    }

    fn wait_for_serial(&self, serial: u32) -> crate::Result<()> {
        let deadline = Instant::now() + self.propagation;
        let mut last = None;
        let mut said = false;
        loop {
            last = dns::soa_serial_blocking(&self.resolver, &self.zone).or(last);
            if last.is_some_and(|s| s == serial || zonefile::serial_gt(s, serial)) {
                return Ok(());
            }
            if !said {
                (self.env.notice)(&format!(
                    "waiting up to {} s for DNS to serve serial {serial} of zone {}",
                    self.propagation.as_secs(),
                    self.zone
                ));
                said = true;
            }
            if Instant::now() >= deadline {
                if last.is_none() {
                    return Err(Error::Unreachable(format!(
                        "the zone file was updated (serial {serial}) and reloaded, but DNS did not answer for zone {}'s SOA",
                        self.zone
                    )));
                }
                bail!(
                    "the zone file was updated (serial {serial}) but DNS still serves serial {}; see the name server's log",
                    last.map_or("nothing".to_string(), |s| s.to_string())
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Publisher for ZoneFile {
    fn backend(&self) -> Backend {
        Backend::BindZoneFile
    }

    fn target(&self) -> String {
        self.file.display().to_string()
    }

    fn set(&self, name: &str, value: &str) -> crate::Result<Outcome> {
        self.change(name, Some(value))
    }

    fn remove(&self, name: &str) -> crate::Result<Outcome> {
        self.change(name, None)
    }

    fn apply_many(&self, changes: &[(String, Option<String>)]) -> Vec<crate::Result<Outcome>> {
        let borrowed: Vec<(&str, Option<&str>)> = changes
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
            .collect();
        match self.change_many(&borrowed) {
            Ok(v) => v,
            Err(e) => changes.iter().map(|_| Err(copy_error(&e))).collect(),
        }
    }

    fn batches(&self) -> bool {
        true
    }
}
