//! Command-line definitions: clap only, every choice a `ValueEnum`. The
//! subcommands in `cmd/` turn these into the core's typed requests.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// DKIM signing and verification for Postfix mail servers.
#[derive(Parser, Debug)]
#[command(name = "dkimd", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default /etc/dkimd/dkimd.toml when it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// State directory, overriding the configuration (store and keys live here).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a signing key and print the DNS record to publish.
    Keygen(KeygenArgs),
    /// Sign a message read from standard input; the signed message goes to standard output.
    Sign(SignArgs),
    /// Verify the DKIM signatures of a message read from standard input.
    Verify(VerifyArgs),
    /// Run the milter daemon Postfix calls for every message.
    Run(RunArgs),
    /// Hook dkimd into Postfix (smtpd_milters, non_smtpd_milters), write the systemd unit, create the service user.
    Install(InstallArgs),
    /// Undo exactly what install changed.
    Uninstall(InstallArgs),
    /// Load-test a milter (dkimd, OpenDKIM, rspamd …) the way Postfix talks to it.
    Bench(BenchArgs),
    /// For benchmarks: a milter that answers every message at once without
    /// DKIM work (the load tool's floor), or a DNS proxy that delays answers.
    #[command(subcommand)]
    BenchServe(BenchServeCmd),
    /// Manage domains: add, remove, rename, list, set.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Turn signing on: choose the selector, make or keep keys, publish records.
    Enable(EnableArgs),
    /// Turn signing off and remove the public key records from every domain.
    Disable(DisableArgs),
    /// Start a key rotation (new keys under a new selector, pending until
    /// DNS serves them everywhere), or with --step carry out every step of
    /// the key lifecycle that is due.
    Rotate(RotateArgs),
    /// Show the settings.
    Settings,
    /// Change one setting (see `dkimd settings` for the names).
    Set(SetArgs),
    /// Show, import, generate per-domain keys, or go back to the global key.
    #[command(subcommand)]
    Key(KeyCmd),
    /// One row per domain: signs or not and why, selector, keys, DNS state
    /// (from the daemon's background check when fresh).
    Status(StatusArgs),
    /// Write settings, domains and keys to a file (mode 0600).
    Export(FileArg),
    /// Restore settings, domains and keys from an export, and publish records.
    Import(FileArg),
    /// Users of the web admin page: set a password, list, remove.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// The store: copy it into another (SQLite and PostgreSQL, both ways),
    /// make or change the key-encryption key of a PostgreSQL store.
    #[command(subcommand)]
    Store(StoreCmd),
    /// Move in from another DKIM signer: read its files, print the plan
    /// (domains, keys with their selectors, settings, what cannot be
    /// carried over), apply it in one transaction and check DNS.
    #[command(subcommand)]
    Migrate(MigrateCmd),
    /// Write the man pages or the shell completions, made from these
    /// definitions (for packaging).
    #[command(subcommand, hide = true)]
    Generate(GenerateCmd),
    /// The daemons that share this store: version, snapshot, last
    /// heartbeat, which one is the worker; exit code 1 when one serves an
    /// old snapshot or has gone silent.
    Nodes,
}

#[derive(Subcommand, Debug)]
pub enum GenerateCmd {
    /// A man page for dkimd and for each subcommand (dkimd-SUB.1).
    Man {
        /// The directory to write them in (created when missing).
        dir: PathBuf,
    },
    /// Completions for bash, zsh and fish.
    Completions {
        /// The directory to write them in (created when missing).
        dir: PathBuf,
    },
    /// The systemd unit the Debian package ships (dkimd.service: /usr/bin/dkimd
    /// as user dkimd with /etc/dkimd/dkimd.toml).
    Unit {
        /// The directory to write it in (created when missing).
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateCmd {
    /// From OpenDKIM: opendkim.conf with its KeyTable and SigningTable (or
    /// Domain, Selector and KeyFile), trusted hosts, modes and actions.
    Opendkim {
        /// OpenDKIM's configuration. After `migrate opendkim`, `--config`
        /// names this file too (dkimd's own then goes before `migrate`).
        #[arg(
            long = "from",
            value_name = "FILE",
            default_value = "/etc/opendkim.conf"
        )]
        from: PathBuf,
        /// Print the plan only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// From rspamd's DKIM signing: dkim_signing.conf with its path and
    /// selector templates, domain blocks, selector_map and path_map, and
    /// the keys rspamadm dkim_keygen made.
    Rspamd {
        /// rspamd's dkim_signing.conf. After `migrate rspamd`, `--config`
        /// names this file too.
        #[arg(
            long = "from",
            value_name = "FILE",
            default_value = "/etc/rspamd/local.d/dkim_signing.conf"
        )]
        from: PathBuf,
        /// Print the plan only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// From Virtualmin: its DKIM settings (enabled, extra and excluded
    /// domains, which domains sign), its domains with their DNS and mail
    /// features, and the OpenDKIM key and selector it set up (a global
    /// key), with per-domain keys.
    Virtualmin {
        /// Virtualmin's module configuration directory (holding `config`
        /// and `domains/`). After `migrate virtualmin`, `--config` names
        /// this directory too.
        #[arg(
            long = "from",
            value_name = "DIR",
            default_value = "/etc/webmin/virtual-server"
        )]
        from: PathBuf,
        /// The OpenDKIM configuration Virtualmin wrote.
        #[arg(long, value_name = "FILE", default_value = "/etc/opendkim.conf")]
        opendkim_config: PathBuf,
        /// Debian's OpenDKIM defaults, where Virtualmin sets `-b` (sign,
        /// verify) in DAEMON_OPTS.
        #[arg(long, value_name = "FILE", default_value = "/etc/default/opendkim")]
        opendkim_defaults: PathBuf,
        /// Print the plan only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl MigrateCmd {
    /// Whether only the plan is wanted.
    pub fn dry_run(&self) -> bool {
        match self {
            MigrateCmd::Opendkim { dry_run, .. }
            | MigrateCmd::Rspamd { dry_run, .. }
            | MigrateCmd::Virtualmin { dry_run, .. } => *dry_run,
        }
    }
}

/// The arguments with `--config` after `migrate KIND` renamed `--from`:
/// there it names the other program's configuration (`dkimd migrate
/// opendkim --config /etc/opendkim.conf`), while dkimd's own `--config`
/// goes before `migrate`.
pub fn args_for_migrate(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    // The positional words, skipping the global options and their values:
    // the first is the subcommand, the second (after `migrate`) the kind.
    let mut positional = Vec::new();
    let mut k = 1;
    while k < args.len() && positional.len() < 2 {
        let a = args.get(k).and_then(|a| a.to_str()).unwrap_or("");
        if a == "--config" || a == "--state-dir" {
            k += 2;
            continue;
        }
        if !a.starts_with('-') {
            positional.push((k, a.to_string()));
        }
        k += 1;
    }
    let kind_at = match positional.as_slice() {
        [(_, cmd), (at, _)] if cmd == "migrate" => *at,
        _ => return args,
    };
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i <= kind_at {
                return a;
            }
            match a.to_str() {
                Some("--config") => "--from".into(),
                Some(s) if s.starts_with("--config=") => {
                    format!("--from={}", &s["--config=".len()..]).into()
                }
                _ => a,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(line: &str) -> String {
        let args = line.split(' ').map(std::ffi::OsString::from).collect();
        args_for_migrate(args)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn only_a_config_after_migrate_kind_names_the_other_programs_file() {
        assert_eq!(
            rewrite("dkimd --config d.toml migrate opendkim --config o.conf"),
            "dkimd --config d.toml migrate opendkim --from o.conf"
        );
        assert_eq!(
            rewrite("dkimd migrate rspamd --config=r.conf --dry-run"),
            "dkimd migrate rspamd --from=r.conf --dry-run"
        );
        // dkimd's own --config before the kind stays dkimd's.
        assert_eq!(
            rewrite("dkimd migrate --json --config d.toml opendkim"),
            "dkimd migrate --json --config d.toml opendkim"
        );
        // "migrate" as a value of another command is not the subcommand.
        assert_eq!(
            rewrite("dkimd sign --domain d --selector migrate --key k --config x"),
            "dkimd sign --domain d --selector migrate --key k --config x"
        );
        assert_eq!(
            rewrite("dkimd --config migrate status --config x"),
            "dkimd --config migrate status --config x"
        );
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Look every record up now instead of using the daemon's background
    /// live check.
    #[arg(long)]
    pub live: bool,
}

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy settings, domains, keys, the record of what is published and
    /// the web admin users into a new, empty store
    /// (postgresql://USER@HOST:PORT/DB or sqlite:PATH).
    Migrate {
        /// The store to copy into.
        #[arg(long)]
        to: String,
    },
    /// Make a key-encryption key file (mode 0600) for a PostgreSQL store:
    /// private keys are sealed with it. Every node needs a copy.
    NewKeyFile {
        /// Where to write it (an existing file is never overwritten).
        path: PathBuf,
    },
    /// Seal every private key again with store.key_file, after the fleet
    /// changed it (the old file is store.previous_key_file meanwhile).
    Rekey,
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Set (or create) a web admin user's password. Asked twice on a terminal,
    /// else read as the first line of standard input. At least 12 characters.
    Passwd {
        /// The user name.
        #[arg(default_value = "admin")]
        user: String,
    },
    /// List the web admin users.
    List,
    /// Remove a web admin user.
    Remove { user: String },
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Add a domain (DNS and mail features on unless given).
    Add {
        name: String,
        /// The domain has DNS hosted here.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "on", default_value = "on")]
        dns: OnOff,
        /// The domain has mail hosted here.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "on", default_value = "on")]
        mail: OnOff,
        /// Per-domain override of the signing rules.
        #[arg(long, value_enum, default_value = "default")]
        dkim: OverrideArg,
    },
    /// Remove a domain, its own keys and its records.
    Remove { name: String },
    /// Rename a domain; its records move with it.
    Rename { from: String, to: String },
    /// List the domains and whether they sign.
    List,
    /// Change a domain's features or override.
    Set {
        name: String,
        /// The domain has DNS hosted here.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "on")]
        dns: Option<OnOff>,
        /// The domain has mail hosted here.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "on")]
        mail: Option<OnOff>,
        /// Per-domain override of the signing rules.
        #[arg(long, value_enum)]
        dkim: Option<OverrideArg>,
        /// Where its key records are published: `direct` (at the domain)
        /// or `cname` (by delegation: the customer points s1._domainkey and
        /// s2._domainkey at targets in --delegate-zone once, and rotations
        /// alternate between the two).
        #[arg(long, value_enum, requires_if("cname", "delegate_zone"))]
        publish: Option<PublishArg>,
        /// With `--publish cname`: the zone of dkimd's (a [[publish.zone]]
        /// of the configuration) that holds the CNAMEs' targets.
        #[arg(long, value_name = "ZONE")]
        delegate_zone: Option<String>,
    },
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

impl OnOff {
    /// True for on.
    pub fn on(self) -> bool {
        self == OnOff::On
    }
}

/// Where a domain's key records are published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PublishArg {
    /// At the domain: SELECTOR._domainkey.DOMAIN.
    Direct,
    /// By delegation: CNAMEs at the customer's point into --delegate-zone.
    Cname,
}

/// A domain's override of the signing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OverrideArg {
    /// Signs whatever the rules say.
    Always,
    /// Never signs.
    Never,
    /// The rules decide.
    Default,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Postfix's configuration directory.
    #[arg(long, default_value = "/etc/postfix")]
    pub postfix_config: PathBuf,
    /// Directory for the systemd unit.
    #[arg(long, default_value = "/etc/systemd/system")]
    pub systemd_dir: PathBuf,
    /// Do not write a systemd unit.
    #[arg(long)]
    pub no_systemd: bool,
    /// The service user (created when missing).
    #[arg(long, default_value = "dkimd")]
    pub user: String,
    /// Run as root: create no service user.
    #[arg(long)]
    pub no_user: bool,
    /// Take this milter's place in Postfix's milter lists (every other
    /// milter and the order kept), once dkimd answers; then stop and
    /// disable its service. `uninstall` puts it back.
    #[arg(long, value_enum)]
    pub replace: Option<ReplaceArg>,
    /// The replaced milter's configuration, where its socket is read
    /// (default /etc/opendkim.conf).
    #[arg(long, value_name = "FILE")]
    pub replace_config: Option<PathBuf>,
}

/// A milter `install --replace` takes the place of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReplaceArg {
    /// OpenDKIM (its Socket in opendkim.conf).
    Opendkim,
    /// rspamd's proxy worker (its bind_socket, default localhost:11332):
    /// its spam filtering leaves Postfix too.
    Rspamd,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The milter: unix:/path or inet:IP:PORT.
    #[arg(long)]
    pub socket: String,
    /// Messages to send in all.
    #[arg(long, default_value_t = 1000)]
    pub messages: usize,
    /// Connections at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Messages per connection before it is closed and reopened.
    #[arg(long, default_value_t = 100)]
    pub per_connection: usize,
    /// Body size in bytes (plain text).
    #[arg(long, default_value_t = 2048)]
    pub body_size: usize,
    /// sign: messages from a trusted client ({daemon_name}=ORIGINATING); verify: signed
    /// messages; mixed: per 10 messages 5 signed (SASL client), 3 good and 1 tampered
    /// signature, 1 aborted half-way.
    #[arg(long, value_enum, default_value = "sign")]
    pub mode: BenchMode,
    /// The From domain.
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// verify: the key that signs the test message (its record must be in the milter's DNS).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// verify: the selector of that key.
    #[arg(long)]
    pub selector: Option<String>,
    /// PID of the milter (its whole process tree is measured from /proc).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Print what the milter answered to the first message.
    #[arg(long)]
    pub verbose: bool,
    /// With --pid: record the milter's RSS each time this many more messages
    /// have been sent (the memory curve of a soak).
    #[arg(long)]
    pub rss_every: Option<usize>,
    /// verify: sign the messages under this many domains, d0.DOMAIN, d1.DOMAIN …
    /// (the key's record must be served for each, e.g. by a wildcard); with as
    /// many domains as messages no key is ever cached.
    #[arg(long, default_value_t = 1)]
    pub domains: usize,
    /// verify: every N-th message comes from a domain under silent.DOMAIN, whose
    /// name server never answers; it must come back with dkim=temperror.
    #[arg(long, value_name = "N")]
    pub silent_every: Option<usize>,
    /// A process that serves the run (a DNS server): its CPU is reported apart
    /// and not counted as other processes' noise. May be given more than once.
    #[arg(long, value_name = "PID")]
    pub setup_pid: Vec<u32>,
}

/// `dkimd bench-serve`: the helpers of a benchmark run.
#[derive(Subcommand, Debug)]
pub enum BenchServeCmd {
    /// A milter that negotiates what dkimd does and answers every message at
    /// once with a fixed header (a DKIM-Signature for trusted clients, else
    /// dkim=pass), doing no DKIM work: the load tool's own floor.
    NullMilter {
        /// Where to listen: unix:/path or inet:IP:PORT.
        #[arg(long)]
        socket: String,
    },
    /// A UDP DNS proxy: every query goes to --upstream at once, and its answer
    /// goes back --delay-ms after the query came; queries for a name with the
    /// label --silent-label are never answered.
    DnsDelay {
        /// Where to listen (UDP), e.g. 127.0.0.2:53.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The real DNS server.
        #[arg(long)]
        upstream: std::net::SocketAddr,
        /// The delay, in milliseconds.
        #[arg(long, default_value_t = 30)]
        delay_ms: u64,
        /// Queries for names with this label are dropped.
        #[arg(long, default_value = "silent")]
        silent_label: String,
    },
}

/// What `dkimd bench` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Messages to sign.
    Sign,
    /// Signed messages to verify.
    Verify,
    /// Signing, good and tampered signatures, and aborts.
    Mixed,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Check the configuration and the store, print a summary, and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Args, Debug)]
pub struct EnableArgs {
    /// Selector (default: the current one, or the year and month, e.g. 202611).
    /// Ed25519 keys get SELECTOR-ed25519.
    #[arg(long)]
    pub selector: Option<String>,
    /// Key algorithms, comma-separated: rsa, ed25519 (default from the settings: both).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub algorithms: Option<Vec<AlgorithmArg>>,
    /// RSA key size: 2048, 3072 or 4096.
    #[arg(long)]
    pub rsa_bits: Option<usize>,
    /// Make new keys even when the current ones could stay.
    #[arg(long)]
    pub new_key: bool,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The domains whose own keys to rotate.
    pub domains: Vec<String>,
    /// Rotate the global keys and every domain's own keys.
    #[arg(long, conflicts_with = "domains")]
    pub all: bool,
    /// The new keys' selector (default: the year and month, with -2, -3 …
    /// when that one is taken). Ed25519 keys get SELECTOR-ed25519.
    #[arg(long)]
    pub selector: Option<String>,
    /// Rotate only the keys of these algorithms, comma-separated: rsa, ed25519.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub algorithms: Option<Vec<AlgorithmArg>>,
    /// Make no new key: carry out every step due (promote pending keys DNS
    /// serves everywhere, retire the keys they replace, revoke, delete,
    /// start scheduled rotations). Idempotent; safe to run from cron.
    #[arg(long, conflicts_with_all = ["domains", "all", "selector", "algorithms"])]
    pub step: bool,
    /// With --step: act as at this time (RFC 3339, e.g. 2027-01-15T10:00:00Z)
    /// instead of now.
    #[arg(long, requires = "step", value_parser = timestamp)]
    pub at: Option<u64>,
}

/// An RFC 3339 time as epoch seconds.
fn timestamp(s: &str) -> Result<u64, String> {
    dkimd_core::clock::parse_rfc3339(s)
}

#[derive(Args, Debug)]
pub struct DisableArgs {
    /// Also delete the keys from the store.
    #[arg(long)]
    pub purge_keys: bool,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// The setting (see `dkimd settings`).
    #[arg(value_parser = setting_name)]
    pub name: dkimd_core::model::settings::SettingName,
    /// Its new value.
    pub value: String,
}

/// A setting's name, with the core's message for an unknown one.
fn setting_name(s: &str) -> Result<dkimd_core::model::settings::SettingName, String> {
    s.parse()
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// The public key, record name and record text of a domain's keys (never the private key).
    Show { domain: String },
    /// Give a domain its own key from a PEM file (PKCS#1 or PKCS#8, RSA or
    /// Ed25519), signing under exactly the selector given; it replaces the
    /// domain's key of the same algorithm only. The plan is printed first.
    Import {
        domain: String,
        file: PathBuf,
        /// The selector the key is published under (used as it is).
        #[arg(long)]
        selector: Option<String>,
        /// Print the plan (keys that sign afterwards, records published or
        /// removed) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Generate own keys for one domain.
    Generate {
        domain: String,
        #[arg(long)]
        selector: Option<String>,
    },
    /// Make a domain use the global key again.
    Default { domain: String },
}

#[derive(Args, Debug)]
pub struct FileArg {
    pub file: PathBuf,
}

/// A key algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// RSA (rsa-sha256).
    Rsa,
    /// Ed25519 (ed25519-sha256).
    Ed25519,
}

impl From<AlgorithmArg> for dkim::KeyAlgorithm {
    fn from(a: AlgorithmArg) -> dkim::KeyAlgorithm {
        match a {
            AlgorithmArg::Rsa => dkim::KeyAlgorithm::Rsa,
            AlgorithmArg::Ed25519 => dkim::KeyAlgorithm::Ed25519,
        }
    }
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "rsa")]
    pub algorithm: AlgorithmArg,
    /// RSA key size in bits: 2048, 3072 or 4096.
    #[arg(long, default_value_t = 2048)]
    pub bits: usize,
    /// The signing domain (d=).
    #[arg(long)]
    pub domain: String,
    /// The selector (s=).
    #[arg(long)]
    pub selector: String,
    /// Directory for the key files (created with mode 0700 if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace key files that already exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Private key file (PEM: PKCS#8 or PKCS#1, RSA or Ed25519), mode 0600.
    /// Without it, the message is signed as the daemon would sign it: with
    /// every active key the store holds for the domain, under their
    /// selectors.
    #[arg(long, requires = "selector")]
    pub key: Option<PathBuf>,
    /// The signing domain (d=).
    #[arg(long)]
    pub domain: String,
    /// The selector (s=); with the store's keys, only the key of this
    /// selector signs.
    #[arg(long)]
    pub selector: Option<String>,
    /// Header fields to sign when present, colon-separated (default: From,
    /// To, Cc, Subject, Date, Message-ID, Reply-To, In-Reply-To, References,
    /// MIME-Version, Content-Type, Content-Transfer-Encoding, List-*).
    #[arg(long)]
    pub headers: Option<String>,
    /// Header fields to oversign, colon-separated ("" for none).
    #[arg(long, default_value = "From")]
    pub oversign: String,
    /// Canonicalization, header/body.
    #[arg(long, short = 'c', default_value = "relaxed/relaxed")]
    pub canonicalization: String,
    /// Signing time (t=) as seconds since the epoch (default: now).
    #[arg(long)]
    pub time: Option<u64>,
    /// Add x= so that the signature expires this many seconds after t=.
    #[arg(long)]
    pub expire: Option<u64>,
    /// The agent or user identifier (i=), e.g. @mail.example.com.
    #[arg(long)]
    pub identity: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Read key records from this file instead of DNS: lines of
    /// NAME<TAB>TXT-VALUE ('#' starts a comment).
    #[arg(long, conflicts_with = "nameserver")]
    pub dns_file: Option<PathBuf>,
    /// Ask this DNS server (IP:PORT, UDP then TCP) instead of the system's resolvers.
    #[arg(long)]
    pub nameserver: Option<SocketAddr>,
    /// Seconds for all key lookups together, retries included.
    #[arg(long, default_value_t = 5)]
    pub dns_timeout: u64,
    /// Verify as of this time (seconds since the epoch), for the expiry (x=) of old mail.
    #[arg(long)]
    pub time: Option<u64>,
    /// The authserv-id of the Authentication-Results field (default: the host name).
    #[arg(long)]
    pub authserv_id: Option<String>,
    /// Check at most this many signatures.
    #[arg(long, default_value_t = 10)]
    pub max_signatures: usize,
}
