//! Facts and effects of the operating system, in one place: the host name,
//! users, atomic file writes, and which processes run dkimd.

use crate::error::{Context, Error, Result};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The host name, for the default authserv-id ("localhost" when it has none).
pub fn hostname() -> String {
    let h = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if h.is_empty() {
        "localhost".to_string()
    } else {
        h
    }
}

/// The user running a command: the sudo user, else the login name, else
/// the name of the real user id.
pub fn current_user() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return v;
            }
        }
    }
    let uid = uzers::get_current_uid();
    uzers::get_user_by_uid(uid)
        .map(|u| u.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// True when the system has a user of this name.
pub fn user_exists(name: &str) -> bool {
    uzers::get_user_by_name(name).is_some()
}

/// The id of a group, by name or number.
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    uzers::get_group_by_name(name).map(|g| g.gid())
}

/// How [`write_atomic_with`] sets up the new file.
#[derive(Clone, Copy, Debug)]
pub struct NewFile {
    /// Permission bits.
    pub mode: u32,
    /// Owner and group to give it (None: the writer's).
    pub owner: Option<(u32, u32)>,
}

impl NewFile {
    /// A file with `mode`, owned by whoever writes it.
    pub fn mode(mode: u32) -> NewFile {
        NewFile { mode, owner: None }
    }

    /// A file with the mode and owner of the existing `path`.
    pub fn like(path: &Path) -> Result<NewFile> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(NewFile {
            mode: meta.permissions().mode() & 0o7777,
            owner: Some((meta.uid(), meta.gid())),
        })
    }
}

/// Writes `contents` to `path` atomically (temporary file in the same
/// directory, fsync, rename) with the given mode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_atomic_with(path, contents, NewFile::mode(mode), |_| Ok(()))
}

/// Writes `contents` to a temporary file beside `path`, runs `check` on it,
/// and only then renames it into place: `path` is either the old file or
/// the whole new one. The temporary file is removed on any error.
pub fn write_atomic_with(
    path: &Path,
    contents: &[u8],
    new: NewFile,
    check: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    write_atomic_from(path, new, |w| Ok(w.write_all(contents)?), check)
}

/// [`write_atomic_with`], the contents written by `write` into a buffered
/// writer on the temporary file (for large files that should never sit
/// whole in memory).
pub fn write_atomic_from(
    path: &Path,
    new: NewFile,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
    check: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::msg(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A temporary file left by a process that had this PID before.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(new.mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(new.mode))?;
        if let Some((uid, gid)) = new.owner {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).with_context(|| {
                format!(
                    "cannot give {} the owner of {}",
                    tmp.display(),
                    path.display()
                )
            })?;
        }
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, &mut f);
        write(&mut w)
            .and_then(|()| Ok(w.flush()?))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(w);
        f.sync_all()?;
        drop(f);
        check(&tmp)?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
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

/// The `dkimd run` processes on this machine, split into those that hold
/// `store` open and the others.
pub fn daemons(store: &Path) -> (Vec<u32>, Vec<u32>) {
    let store: PathBuf = store.canonicalize().unwrap_or_else(|_| store.to_path_buf());
    let (mut ours, mut others) = (Vec::new(), Vec::new());
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_daemon = args.first().is_some_and(|a| a.ends_with(b"dkimd"))
            && args.iter().any(|a| *a == b"run")
            && !args.iter().any(|a| *a == b"--check-config");
        if !is_daemon {
            continue;
        }
        let holds_store = std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == store));
        if holds_store {
            ours.push(pid);
        } else {
            others.push(pid);
        }
    }
    (ours, others)
}

/// The owner that files in the state directory `dir` must keep: `dir`'s
/// owner, when this process runs as root and `dir` belongs to another user
/// (the service user the daemon runs as). None otherwise: then whatever
/// this process creates is already usable by whoever owns `dir`.
pub fn state_owner(dir: &Path) -> Option<(u32, u32)> {
    if uzers::get_effective_uid() != 0 {
        return None;
    }
    let meta = std::fs::metadata(dir).ok()?;
    (meta.uid() != 0).then(|| (meta.uid(), meta.gid()))
}

/// The files dkimd keeps in a state directory: only these (and the
/// temporary files `.NAME.tmpPID` of their atomic writes) are handed over.
pub const STATE_FILES: [&str; 10] = [
    "dkimd.sqlite",
    "dkimd.sqlite-wal",
    "dkimd.sqlite-shm",
    "dkimd.sqlite-journal",
    "audit.log",
    "snapshot.json",
    "serving.json",
    "live.json",
    "install.json",
    "zone-edit.lock",
];

/// Whether `name` is one of [`STATE_FILES`] or a temporary file of one.
fn is_state_file(name: &str) -> bool {
    STATE_FILES.contains(&name)
        || name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp"))
            .is_some_and(|(base, pid)| {
                STATE_FILES.contains(&base)
                    && !pid.is_empty()
                    && pid.bytes().all(|b| b.is_ascii_digit())
            })
}

/// Gives dkimd's own files in the state directory `dir` that root owns to
/// `dir`'s owner (see [`state_owner`]), so that a command run as root
/// never leaves a file the daemon cannot open: the store, its `-wal` and
/// `-shm`, the audit log, and whatever a crashed command left. Only
/// [`STATE_FILES`] directly in `dir` are touched, only regular files with
/// one link, and with `lchown`: a link the service user plants there
/// hands nothing of root's over. Returns how many were handed over.
pub fn hand_over(dir: &Path) -> Result<usize> {
    let Some((uid, gid)) = state_owner(dir) else {
        return Ok(0);
    };
    let mut handed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_state_file) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.nlink() != 1 || meta.uid() != 0 {
            continue;
        }
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).with_context(|| {
            format!(
                "cannot give {} to the owner of {}",
                path.display(),
                dir.display()
            )
        })?;
        handed += 1;
    }
    Ok(handed)
}

/// Opens `path` to append to it, creating it with `mode` when missing,
/// and never through a symbolic link or onto a file with other links: a
/// link planted in a directory the service user owns must not make root
/// write (or hand over) a file elsewhere.
pub fn open_append_no_links(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::io::{Error, ErrorKind};
    loop {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // O_CREAT|O_EXCL never follows a link, even a dangling one.
                match std::fs::OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .mode(mode)
                    .open(path)
                {
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(e),
            Ok(before) => {
                if !before.is_file() || before.nlink() != 1 {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "it is a link, or not a regular file: refused",
                    ));
                }
                let f = std::fs::OpenOptions::new().append(true).open(path)?;
                let now = f.metadata()?;
                // The file opened must be the one checked, not a link
                // swapped in between.
                if now.dev() != before.dev() || now.ino() != before.ino() || now.nlink() != 1 {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "it changed while it was opened: refused",
                    ));
                }
                return Ok(f);
            }
        }
    }
}

/// Creates directory `dir` (mode 0700) when missing; an existing one that
/// others can read is refused.
pub fn private_dir(dir: &Path, what: &str) -> crate::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {what} {}", dir.display()))?;
    }
    check_private(dir, what)
}

/// Refuses a file or directory that others can read.
pub fn check_private(path: &Path, what: &str) -> crate::Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::msg(format!(
            "{what} {} has mode {mode:04o}: it holds private keys and must not be accessible to group or others (chmod {} {})",
            path.display(),
            if meta.is_dir() { "700" } else { "600" },
            path.display()
        )));
    }
    Ok(())
}

/// A TLS client configuration (aws-lc-rs, as everywhere in dkimd) that
/// checks servers against the CA certificates in `ca_file` (PEM), or the
/// system's when it is `None`. `setting` names the file in messages
/// ("store.ca_file"), `server` the kind of server ("the PostgreSQL server").
pub fn tls_client_config(
    ca_file: Option<&Path>,
    setting: &str,
    server: &str,
) -> crate::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(f) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(f)
                .map_err(|e| Error::msg(format!("{setting} {}: {e}", f.display())))?;
            for c in certs {
                let c = c.map_err(|e| Error::msg(format!("{setting} {}: {e}", f.display())))?;
                roots
                    .add(c)
                    .map_err(|e| Error::msg(format!("{setting} {}: {e}", f.display())))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(Error::msg(format!(
            "no CA certificates to check {server}'s certificate with: set {setting}"
        )));
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::msg(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A user as file permissions see it: its id and every group it is in.
#[derive(Clone, Debug)]
pub struct Account {
    /// The user's name, for messages.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group and every supplementary group.
    pub gids: Vec<u32>,
}

/// What an [`Account`] must be able to do with a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Need {
    /// Read the file (one a server such as BIND may read too).
    Read,
    /// Read a secret, which dkimd accepts only when group and others may
    /// not read it ([`check_private`]): the account must own it.
    ReadPrivate,
    /// Create files in the directory and rename them (an atomic write).
    WriteIn,
    /// Replace the file and give the new one the old one's owner and
    /// group, as an edited zone file is (only root may give a file to
    /// another user, and a user may give it only to a group it is in).
    KeepOwner,
}

impl Account {
    /// The system user `name` and its groups; None when there is none.
    pub fn lookup(name: &str) -> Option<Account> {
        let u = uzers::get_user_by_name(name)?;
        let mut gids = vec![u.primary_group_id()];
        if let Some(groups) = uzers::get_user_groups(name, u.primary_group_id()) {
            gids.extend(groups.iter().map(|g| g.gid()));
        }
        Some(Account {
            name: name.to_string(),
            uid: u.uid(),
            gids,
        })
    }

    /// This process, as the kernel checks its access: the effective user
    /// and group and the supplementary groups.
    pub fn current() -> Account {
        let uid = uzers::get_effective_uid();
        let mut gids = vec![uzers::get_effective_gid()];
        if let Ok(groups) = uzers::group_access_list() {
            gids.extend(groups.iter().map(|g| g.gid()));
        }
        let name = uzers::get_user_by_uid(uid)
            .map(|u| u.name().to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("uid {uid}"));
        Account { name, uid, gids }
    }

    /// Why this account cannot do `need` with `path`, by the permission
    /// bits of the path and of every directory above it, as written and
    /// with its links resolved (ACLs aside), with a command that would let
    /// it and takes nothing from the others who use the path (such as
    /// BIND, which may run as root without the capability that overrides
    /// permissions); None when it can. Root can do all of it to a path that
    /// exists (a read-only mount is [`read_only`]'s to tell).
    pub fn cannot(&self, path: &Path, need: Need) -> Option<String> {
        let root = self.uid == 0;
        let user = &self.name;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut walks = vec![abs.clone()];
        if let Ok(real) = abs.canonicalize() {
            if real != abs {
                walks.push(real);
            }
        }
        // Every directory above: entered (x).
        for walk in &walks {
            let mut above: Vec<&Path> = walk.ancestors().skip(1).collect();
            above.reverse();
            for dir in above {
                let Ok(meta) = std::fs::metadata(dir) else {
                    return Some(format!("{} does not exist", dir.display()));
                };
                if !root && !self.may(&meta, 0o1) {
                    return Some(format!(
                        "{user} cannot enter {} ({}): {}",
                        dir.display(),
                        describe(&meta),
                        self.fix(dir, &meta, 0o1)
                    ));
                }
            }
        }
        let meta = match std::fs::metadata(&abs) {
            Ok(m) => m,
            Err(_) => return Some(format!("{} does not exist", abs.display())),
        };
        let shown = abs.display();
        if need == Need::ReadPrivate && (meta.mode() & 0o077 != 0 || meta.uid() != self.uid) {
            // The daemon refuses a secret others may read; only its owner
            // (and root) may read one it accepts.
            if root && meta.mode() & 0o077 == 0 {
                return None;
            }
            let fix = if meta.uid() == self.uid || root {
                format!("chmod 600 {shown}")
            } else {
                format!("chown {user} {shown} && chmod 600 {shown}")
            };
            return Some(format!(
                "{user} cannot use the secret {shown} ({}; dkimd accepts a secret only when no one but its owner may read it): {fix}",
                describe(&meta)
            ));
        }
        if root {
            return None;
        }
        match need {
            Need::Read | Need::ReadPrivate if !self.may(&meta, 0o4) => Some(format!(
                "{user} cannot read {shown} ({}): {}",
                describe(&meta),
                self.fix(&abs, &meta, 0o4)
            )),
            Need::WriteIn if !self.may(&meta, 0o3) => Some(format!(
                "{user} cannot create files in {shown} ({}): {} (which lets {user} replace any file there: a directory of the zone files' own is safer)",
                describe(&meta),
                self.fix(&abs, &meta, 0o3)
            )),
            Need::KeepOwner if meta.uid() != self.uid || !self.gids.contains(&meta.gid()) => {
                Some(format!(
                    "{user} cannot give the new {shown} the old one's owner and group ({}; only root may give a file away, and only to a group it is in): {}",
                    describe(&meta),
                    self.keep_owner_fix(&abs, &meta)
                ))
            }
            _ => None,
        }
    }

    /// Whether the permission bits give this account every bit of `want`
    /// (4 read, 2 write, 1 enter or run).
    fn may(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        let mode = meta.mode();
        let bits = if meta.uid() == self.uid {
            mode >> 6
        } else if self.gids.contains(&meta.gid()) {
            mode >> 3
        } else {
            mode
        };
        bits & want == want
    }

    /// The name of this account's primary group.
    fn own_group(&self) -> String {
        group_name(self.gids.first().copied().unwrap_or(0))
    }

    /// A command that gives this account the bits of `want` on `path`
    /// through its group, so that the owner keeps what it has: the owner's
    /// bits when it is the owner; others' x to pass through a directory;
    /// joining the path's group (never root's), with the group's bits
    /// added when it lacks them; else the account's own group in place of
    /// root's, with the bits.
    fn fix(&self, path: &Path, meta: &std::fs::Metadata, want: u32) -> String {
        let user = &self.name;
        let group = group_name(meta.gid());
        let letters: String = [(4, 'r'), (2, 'w'), (1, 'x')]
            .iter()
            .filter(|(b, _)| want & b != 0)
            .map(|(_, c)| *c)
            .collect();
        let shown = path.display();
        let group_has = (meta.mode() >> 3) & want == want;
        let add_bits = if group_has {
            String::new()
        } else {
            format!(" && chmod g+{letters} {shown}")
        };
        if meta.uid() == self.uid {
            format!("chmod u+{letters} {shown}")
        } else if self.gids.contains(&meta.gid()) {
            format!("chmod g+{letters} {shown}")
        } else if want == 0o1 && meta.is_dir() {
            format!("chmod o+x {shown}")
        } else if meta.gid() != 0 {
            format!("usermod -a -G {group} {user}{add_bits} (then restart dkimd)")
        } else {
            format!(
                "chgrp {} {shown} && chmod g+{letters} {shown}",
                self.own_group()
            )
        }
    }

    /// The command that lets this account keep `path`'s owner and group:
    /// the file becomes its own, in the file's group (which it joins, and
    /// which keeps read access) or, for a file of root's group, in its own
    /// group with read access for others (zone data is public), so that
    /// the server that reads the file, whoever it runs as, still can.
    fn keep_owner_fix(&self, path: &Path, meta: &std::fs::Metadata) -> String {
        let user = &self.name;
        let shown = path.display();
        if meta.gid() != 0 {
            let group = group_name(meta.gid());
            let join = if self.gids.contains(&meta.gid()) {
                String::new()
            } else {
                format!("usermod -a -G {group} {user} && ")
            };
            let read = if (meta.mode() >> 3) & 0o4 == 0 {
                format!(" && chmod g+r {shown}")
            } else {
                String::new()
            };
            format!("{join}chown {user}:{group} {shown}{read}")
        } else {
            let read = if meta.mode() & 0o4 == 0 {
                format!(" && chmod o+r {shown}")
            } else {
                String::new()
            };
            format!("chown {user}:{} {shown}{read}", self.own_group())
        }
    }
}

/// "owner:group, mode 0644", for messages.
fn describe(meta: &std::fs::Metadata) -> String {
    let owner = uzers::get_user_by_uid(meta.uid())
        .map(|u| u.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| meta.uid().to_string());
    format!(
        "{owner}:{}, mode {:04o}",
        group_name(meta.gid()),
        meta.mode() & 0o7777
    )
}

fn group_name(gid: u32) -> String {
    uzers::get_group_by_gid(gid)
        .map(|g| g.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| gid.to_string())
}

/// True when `dir` is on a file system this process may not write, such as
/// what a systemd unit's `ProtectSystem=` or `ReadOnlyPaths=` leaves it.
pub fn read_only(dir: &Path) -> bool {
    matches!(
        rustix::fs::access(dir, rustix::fs::Access::WRITE_OK),
        Err(e) if e == rustix::io::Errno::ROFS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("zone");
        std::fs::write(&p, "old").unwrap();
        let e = write_atomic_with(&p, b"new", NewFile::like(&p).unwrap(), |_| {
            Err(Error::msg("check failed"))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn only_dkimds_own_files_are_state_files() {
        assert!(is_state_file("audit.log"));
        assert!(is_state_file("dkimd.sqlite-wal"));
        assert!(is_state_file(".snapshot.json.tmp4242"));
        assert!(!is_state_file(".snapshot.json.tmp"));
        assert!(!is_state_file(".bashrc"));
        assert!(!is_state_file("shadow"));
        assert!(!is_state_file(".shadow.tmp1"));
    }

    #[test]
    fn appending_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "x").unwrap();
        let link = dir.path().join("audit.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_append_no_links(&link, 0o600).is_err());
        // A dangling link is not followed to create its target.
        let dangling = dir.path().join("dangling.log");
        std::os::unix::fs::symlink(dir.path().join("made"), &dangling).unwrap();
        assert!(open_append_no_links(&dangling, 0o600).is_err());
        assert!(!dir.path().join("made").exists());
        // A hard link to another file is refused too.
        let hard = dir.path().join("hard.log");
        std::fs::hard_link(&target, &hard).unwrap();
        assert!(open_append_no_links(&hard, 0o600).is_err());
        // A plain file, or none, is fine.
        let plain = dir.path().join("plain.log");
        open_append_no_links(&plain, 0o600).unwrap();
        open_append_no_links(&plain, 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
    }

    fn account(uid: u32, gids: &[u32]) -> Account {
        Account {
            name: "svc".into(),
            uid,
            gids: gids.to_vec(),
        }
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn access_follows_the_permission_bits_of_the_path_and_above() {
        let tmp = tempfile::tempdir().unwrap();
        chmod(tmp.path(), 0o755);
        let zones = tmp.path().join("zones");
        std::fs::create_dir(&zones).unwrap();
        let file = zones.join("db.example.com");
        std::fs::write(&file, "x").unwrap();
        let meta = std::fs::metadata(&zones).unwrap();
        let (owner, group) = (meta.uid(), meta.gid());
        // Another user, in no group of the files.
        let other = account(owner.wrapping_add(4242), &[group.wrapping_add(4242)]);
        // The assertions below need a temporary directory others may reach.
        assert_eq!(
            other.cannot(tmp.path(), Need::Read),
            None,
            "set TMPDIR to a directory whose parents others may enter"
        );
        let shown = |p: &Path| p.display().to_string();
        chmod(&zones, 0o755);
        chmod(&file, 0o644);
        assert_eq!(other.cannot(&file, Need::Read), None);
        let e = other.cannot(&zones, Need::WriteIn).unwrap();
        assert!(e.starts_with("svc cannot create files in "), "{e}");
        assert!(e.contains("mode 0755"), "{e}");
        // The owner keeps the directory; the group gets the bits, and is
        // joined, or (root's) replaced by the account's own.
        if group == 0 {
            let z = shown(&zones);
            assert!(
                e.contains(&format!(
                    "chgrp {} {z} && chmod g+wx {z}",
                    group_name(group.wrapping_add(4242))
                )),
                "{e}"
            );
        } else {
            assert!(
                e.contains(&format!(
                    "usermod -a -G {} svc && chmod g+wx {}",
                    group_name(group),
                    shown(&zones)
                )),
                "{e}"
            );
        }
        // Keeping the owner: the file becomes the account's, readable still.
        let e = other.cannot(&file, Need::KeepOwner).unwrap();
        assert!(e.contains("only root may give a file away"), "{e}");
        assert!(e.contains("chown svc:"), "{e}");
        chmod(&file, 0o600);
        let e = other.cannot(&file, Need::KeepOwner).unwrap();
        if group == 0 {
            assert!(
                e.ends_with(&format!("&& chmod o+r {}", shown(&file))),
                "{e}"
            );
        } else {
            assert!(
                e.ends_with(&format!("&& chmod g+r {}", shown(&file))),
                "{e}"
            );
        }
        chmod(&file, 0o644);
        // A group that may write: joining it is the fix, and then it may.
        chmod(&zones, 0o2775);
        let e = other.cannot(&zones, Need::WriteIn).unwrap();
        if group != 0 {
            assert!(
                e.contains(&format!("usermod -a -G {} svc (then", group_name(group))),
                "{e}"
            );
        }
        let member = account(owner.wrapping_add(4242), &[group]);
        assert_eq!(member.cannot(&zones, Need::WriteIn), None);
        // The owner keeps the owner.
        let owner_acct = account(owner, &[group]);
        assert_eq!(owner_acct.cannot(&file, Need::KeepOwner), None);
        // A directory above that it cannot enter stops it, even through a link.
        chmod(&zones, 0o700);
        let e = other.cannot(&file, Need::Read).unwrap();
        assert!(e.starts_with("svc cannot enter "), "{e}");
        assert!(e.ends_with(&format!("chmod o+x {}", shown(&zones))), "{e}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = other.cannot(&link, Need::Read).unwrap();
        assert!(
            e.starts_with(&format!("svc cannot enter {}", shown(&zones))),
            "{e}"
        );
        chmod(&zones, 0o755);
        // A file it cannot read: through the group, never a new owner.
        chmod(&file, 0o640);
        let e = other.cannot(&file, Need::Read).unwrap();
        assert!(!e.contains("chown"), "{e}");
        // A secret: the account must own it, mode 0600.
        let e = other.cannot(&file, Need::ReadPrivate).unwrap();
        let f = shown(&file);
        assert!(
            e.ends_with(&format!("chown svc {f} && chmod 600 {f}")),
            "{e}"
        );
        assert_eq!(
            account(0, &[0])
                .cannot(&file, Need::ReadPrivate)
                .map(|e| e.ends_with(&format!("chmod 600 {f}"))),
            Some(true)
        );
        chmod(&file, 0o600);
        assert_eq!(owner_acct.cannot(&file, Need::ReadPrivate), None);
        assert_eq!(account(0, &[0]).cannot(&file, Need::ReadPrivate), None);
        // Missing: said so.
        let e = other.cannot(&zones.join("nope"), Need::Read).unwrap();
        assert!(e.ends_with("does not exist"), "{e}");
        // Root may do everything the bits say, to what exists.
        assert_eq!(account(0, &[0]).cannot(&file, Need::KeepOwner), None);
        assert!(account(0, &[0])
            .cannot(&zones.join("nope"), Need::Read)
            .is_some());
    }

    #[test]
    fn hostname_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
