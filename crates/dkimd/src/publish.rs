//! Publishing DKIM key records: into BIND zone files, by RFC 2136 dynamic
//! update, or by telling the admin what to publish (manual).

use crate::config::{Config, ZoneConfig};
use crate::dns;
use crate::zonefile;
use anyhow::{anyhow, bail, Context};
use hickory_resolver::TokioResolver;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What publishing or removing one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Added,
    AlreadyPresent,
    /// Stale records at the same name (this many) were replaced.
    Replaced(usize),
    Removed(usize),
    Absent,
    /// Manual backend: DNS does not serve the record yet; the admin must publish it.
    Pending(String),
    /// The zone file already said so, but DNS served an older version of
    /// the zone (an earlier reload failed): reloaded, and now served.
    ReloadedNowServed,
    /// The zone file no longer had the record, but DNS still served it (an
    /// earlier reload failed): reloaded, and now gone.
    ReloadedNowRemoved,
}

impl Outcome {
    /// The words `enable` and friends print.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Added => "record added".into(),
            Outcome::AlreadyPresent => "already present".into(),
            Outcome::Replaced(0) => "duplicate records made one".into(),
            Outcome::Replaced(1) => "replaced a stale record".into(),
            Outcome::Replaced(n) => format!("replaced {n} stale records"),
            Outcome::Removed(1) => "record removed".into(),
            Outcome::Removed(n) => format!("{n} records removed"),
            Outcome::Absent => "no record to remove".into(),
            Outcome::Pending(what) => format!("publish by hand: {what}"),
            Outcome::ReloadedNowServed => {
                "in the zone file but not served (an earlier reload failed): zone reloaded, now served".into()
            }
            Outcome::ReloadedNowRemoved => {
                "gone from the zone file but still served (an earlier reload failed): zone reloaded".into()
            }
        }
    }

    /// True when DNS holds the record afterwards (for publishing).
    pub fn is_published(&self) -> bool {
        matches!(
            self,
            Outcome::Added
                | Outcome::AlreadyPresent
                | Outcome::Replaced(_)
                | Outcome::ReloadedNowServed
        )
    }
}

/// The DNS that serves (or takes updates for) a zone did not answer. The
/// manager then leaves that zone's other records for this run ("not
/// tried") instead of waiting the full timeout for each.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// One way of changing DNS.
pub trait Publisher {
    /// `bind-zone-file`, `rfc2136` or `manual`.
    fn backend(&self) -> &'static str;
    /// Where, in words (file, server).
    fn target(&self) -> String;
    /// Makes `value` the only TXT record at `name`.
    fn set(&self, name: &str, value: &str) -> anyhow::Result<Outcome>;
    /// Removes every TXT record at `name`.
    fn remove(&self, name: &str) -> anyhow::Result<Outcome>;
    /// Several changes (a value to set, or `None` to remove), with an
    /// outcome each; backends that can make them in one go (a zone file:
    /// one edit, one reload) do.
    fn apply_many(&self, changes: &[(String, Option<String>)]) -> Vec<anyhow::Result<Outcome>> {
        changes
            .iter()
            .map(|(n, v)| match v {
                Some(v) => self.set(n, v),
                None => self.remove(n),
            })
            .collect()
    }
    /// True when [`Publisher::apply_many`] does better than one change at
    /// a time, so that the manager gathers a command's changes for it.
    fn batches(&self) -> bool {
        false
    }
}

/// A copy of an error for each record of a batch it stopped (keeping
/// [`Unreachable`], which the manager acts on).
fn copy_error(e: &anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<Unreachable>() {
        Some(u) => Unreachable(u.0.clone()).into(),
        None => anyhow!("{e:#}"),
    }
}

/// The publisher responsible for `domain`'s records.
pub fn publisher_for(
    cfg: &Config,
    domain: &dkim::DomainName,
) -> anyhow::Result<Box<dyn Publisher>> {
    let resolver = live_resolver(cfg)?;
    match cfg.zone_for(domain) {
        Some(z) if z.backend == "bind-zone-file" => Ok(Box::new(ZoneFile::new(cfg, z, resolver)?)),
        Some(z) if z.backend == "rfc2136" => Ok(Box::new(crate::rfc2136::Rfc2136::new(cfg, z)?)),
        _ => Ok(Box::new(Manual {
            resolver,
            ttl: cfg.ttl_for(domain),
        })),
    }
}

/// The resolver of live checks (configured nameservers, no cache).
pub fn live_resolver(cfg: &Config) -> anyhow::Result<TokioResolver> {
    dns::resolver(
        &cfg.dns.nameservers,
        Duration::from_secs(cfg.dns.timeout.max(1)),
    )
}

/// Manual publishing: nothing is changed; a record counts as published when
/// DNS serves it.
pub struct Manual {
    resolver: TokioResolver,
    /// The TTL of the line to publish.
    ttl: u32,
}

impl Publisher for Manual {
    fn backend(&self) -> &'static str {
        "manual"
    }

    fn target(&self) -> String {
        "by hand".into()
    }

    fn set(&self, name: &str, value: &str) -> anyhow::Result<Outcome> {
        match dns::lookup_txt_blocking(&self.resolver, name) {
            Ok(records) if records.len() == 1 && records.first().is_some_and(|r| r == value) => {
                Ok(Outcome::AlreadyPresent)
            }
            _ => Ok(Outcome::Pending(match dkim::KeyRecord::parse(value) {
                Ok(r) => r.zone_line(name, self.ttl),
                Err(_) => format!("{name}. {} IN TXT ( \"{value}\" )", self.ttl),
            })),
        }
    }

    fn remove(&self, name: &str) -> anyhow::Result<Outcome> {
        match dns::lookup_txt_blocking(&self.resolver, name) {
            Ok(records) if !records.is_empty() => {
                Ok(Outcome::Pending(format!("remove the TXT record at {name}")))
            }
            _ => Ok(Outcome::Absent),
        }
    }
}

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
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("-v").output().is_ok()
}

fn run(cmd: &[String], what: &str) -> anyhow::Result<()> {
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| anyhow!("{what}: empty command"))?;
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

/// Seconds since the epoch to (year, month, day) in the proleptic Gregorian calendar.
fn civil(secs: u64) -> (i64, i64, i64) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn today() -> u32 {
    let (y, m, d) = civil(crate::cli::now());
    u32::try_from(y * 10_000 + m * 100 + d).unwrap_or(0)
}

/// An RFC 3339 UTC timestamp, e.g. `2026-11-24T22:41:37Z`.
pub fn utc_timestamp(secs: u64) -> String {
    let (y, m, d) = civil(secs);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The current year and month, e.g. 202611: the default selector.
pub fn year_month() -> String {
    (today() / 100).to_string()
}

impl ZoneFile {
    fn new(cfg: &Config, z: &ZoneConfig, resolver: TokioResolver) -> anyhow::Result<ZoneFile> {
        let file = z
            .file
            .clone()
            .ok_or_else(|| anyhow!("zone {}: no file configured", z.name))?;
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
        })
    }

    fn change(&self, name: &str, value: Option<&str>) -> anyhow::Result<Outcome> {
        let mut v = self.change_many(&[(name, value)])?;
        v.pop().unwrap_or_else(|| Err(anyhow!("no outcome")))
    }

    /// All `changes` in one edit of the file: one serial step, one check,
    /// one reload, one wait. The outer error is the batch's (lock, read,
    /// check, reload, DNS); the inner ones are single records'.
    fn change_many(
        &self,
        changes: &[(&str, Option<&str>)],
    ) -> anyhow::Result<Vec<anyhow::Result<Outcome>>> {
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
        let (outcomes, new_text, new_serial) =
            zonefile::edit_many(&text, &self.zone, changes, self.ttl, served, today())
                .map_err(|e| anyhow!("zone file {}: {e}", self.file.display()))?;
        let file = self.file.display().to_string();
        let mut outcomes: Vec<anyhow::Result<Outcome>> = outcomes
            .into_iter()
            .map(|o| {
                o.map(|o| match o {
                    zonefile::Outcome::Added => Outcome::Added,
                    zonefile::Outcome::Replaced(n) => Outcome::Replaced(n),
                    zonefile::Outcome::Removed(n) => Outcome::Removed(n),
                    zonefile::Outcome::AlreadyPresent => Outcome::AlreadyPresent,
                    zonefile::Outcome::Absent => Outcome::Absent,
                })
                .map_err(|e| anyhow!("zone file {file}: {e}"))
            })
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
    fn write_checked(&self, text: &str) -> anyhow::Result<()> {
        let meta = std::fs::metadata(&self.file)?;
        let dir = self
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.dkimd{}", std::process::id()));
        let result = (|| -> anyhow::Result<()> {
            std::fs::write(&tmp, text)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::set_permissions(
                &tmp,
                std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
            )?;
            std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()))
                .with_context(|| format!("cannot give {} the zone file's owner", tmp.display()))?;
            if let Some(check) = &self.check {
                let cmd: Vec<String> = check
                    .iter()
                    .map(|a| {
                        a.replace("ZONE", &self.zone)
                            .replace("FILE", &tmp.to_string_lossy())
                    })
                    .collect();
                // The check runs on the copy; its errors name the zone file.
                run(&cmd, "zone check").map_err(|e| {
                    anyhow!(
                        "{}",
                        format!("{e:#}").replace(
                            &tmp.to_string_lossy().into_owned(),
                            &format!("{} (as edited)", self.file.display())
                        )
                    )
                })?;
            }
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.file)
                .with_context(|| format!("cannot replace {}", self.file.display()))?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn wait_for_serial(&self, serial: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.propagation;
        let mut last = None;
        let mut said = false;
        loop {
            last = dns::soa_serial_blocking(&self.resolver, &self.zone).or(last);
            if last.is_some_and(|s| s == serial || zonefile::serial_gt(s, serial)) {
                return Ok(());
            }
            if !said {
                errln!(
                    "dkimd: waiting up to {} s for DNS to serve serial {serial} of zone {}",
                    self.propagation.as_secs(),
                    self.zone
                );
                said = true;
            }
            if Instant::now() >= deadline {
                if last.is_none() {
                    return Err(Unreachable(format!(
                        "the zone file was updated (serial {serial}) and reloaded, but DNS did not answer for zone {}'s SOA",
                        self.zone
                    ))
                    .into());
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
    fn backend(&self) -> &'static str {
        "bind-zone-file"
    }

    fn target(&self) -> String {
        self.file.display().to_string()
    }

    fn set(&self, name: &str, value: &str) -> anyhow::Result<Outcome> {
        self.change(name, Some(value))
    }

    fn remove(&self, name: &str) -> anyhow::Result<Outcome> {
        self.change(name, None)
    }

    fn apply_many(&self, changes: &[(String, Option<String>)]) -> Vec<anyhow::Result<Outcome>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_992_097), "2026-11-29T22:41:37Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn today_is_a_date() {
        let t = today();
        assert!((20_260_101..=21_000_101).contains(&t), "{t}");
        assert_eq!(year_month().len(), 6);
    }
}
