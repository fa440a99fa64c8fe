//! The configuration file (TOML). Every field is documented in the sample
//! `dkimd.toml` at the root of the repository, which a test parses.

mod store;

pub use store::{PgUrl, StoreConfig, StoreUrl};

use crate::error::Context;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where dkimd looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/dkimd/dkimd.toml";
/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/dkimd";

/// The commented sample configuration (`dkimd.toml` at the root of the
/// repository): what `dkimd install` writes when the file is missing, and
/// what the Debian package ships as a conffile.
pub const SAMPLE: &str = include_str!("../../../../dkimd.toml");

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the store (SQLite) and other state, mode 0700.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// DNS lookups (live checks, verification).
    #[serde(default)]
    pub dns: DnsConfig,
    /// How records are published, per zone.
    #[serde(default)]
    pub publish: PublishConfig,
    /// The milter daemon (`dkimd run`).
    #[serde(default)]
    pub milter: MilterConfig,
    /// The web admin page (served by `dkimd run` when `listen` is set).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Which store holds the state (SQLite here, or a shared PostgreSQL).
    #[serde(default)]
    pub store: StoreConfig,
    /// Where the file was read from (not in the file).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// `[dns]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Servers to ask, as "IP:PORT" or "IP" (port 53); empty means the
    /// system's resolvers.
    #[serde(default, deserialize_with = "nameservers")]
    pub nameservers: Vec<SocketAddr>,
    /// Seconds to wait for one answer.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Seconds to wait, after publishing, for DNS to serve the new record.
    #[serde(default = "default_propagation")]
    pub propagation_timeout: u64,
}

fn default_timeout() -> u64 {
    5
}

/// A name server address: "IP:PORT", "[IPv6]:PORT", or a bare IP (port 53).
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "{s:?} is not a name server address: expected IP or IP:PORT, e.g. \"127.0.0.1:53\" or \"[::1]:53\""
    ))
}

fn nameservers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let v: Vec<String> = Vec::deserialize(d)?;
    v.iter()
        .map(|s| parse_nameserver(s).map_err(serde::de::Error::custom))
        .collect()
}

fn default_propagation() -> u64 {
    10
}

/// `[milter]`: the daemon Postfix calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilterConfig {
    /// Where to listen: "unix:/path" or "inet:IP:PORT" (Postfix's notation).
    #[serde(default = "default_socket")]
    pub socket: SocketSpec,
    /// Mode of a Unix socket, octal text (Postfix must be able to connect).
    #[serde(default = "default_socket_mode")]
    pub socket_mode: FileMode,
    /// Clients whose mail is signed (CIDR). SASL-authenticated clients and
    /// the signing daemons below are trusted as well.
    #[serde(default = "default_trusted")]
    pub trusted_networks: Vec<String>,
    /// Postfix services whose mail is signed: the `{daemon_name}` macro, set
    /// with `-o milter_macro_daemon_name=ORIGINATING` on the submission service.
    #[serde(default = "default_daemons")]
    pub signing_daemons: Vec<String>,
    /// The authserv-id of Authentication-Results (default: the host name).
    #[serde(default)]
    pub authserv_id: Option<String>,
    /// What Postfix is told when dkimd itself fails on a message: "tempfail"
    /// (the sender keeps the message and retries), "accept" or "reject".
    #[serde(default)]
    pub on_error: OnError,
    /// At most this many signatures are checked per message.
    #[serde(default = "default_max_signatures")]
    pub max_signatures: usize,
    /// Seconds for all key lookups of one message.
    #[serde(default = "default_lookup_timeout")]
    pub lookup_timeout: u64,
    /// Inside a message: seconds dkimd waits for the MTA's next frame
    /// before it drops the connection (half-open connections, senders that
    /// stall).
    #[serde(default = "default_read_timeout")]
    pub read_timeout: u64,
    /// Seconds from connecting to option negotiation, in all; a connection
    /// that has not negotiated by then is closed.
    #[serde(default = "default_negotiate_timeout")]
    pub negotiate_timeout: u64,
    /// Seconds a negotiated connection may go without any frame between
    /// messages before it is closed (default 10 h). Keep it above Postfix's
    /// smtpd_junk_command_limit × smtpd_timeout: a client can hold a
    /// session open with NOOPs the milter never sees, and Postfix applies
    /// milter_default_action to a session whose milter connection closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Milter connections served at once. At the limit, a new connection is
    /// still served: the one waiting longest for option negotiation, or
    /// else the one idle longest between messages, is closed for it. Only
    /// when every connection is inside a message do new ones wait.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Macro bytes (names and values) a connection may hold at once; over
    /// it the connection is closed. Postfix's macros take a few hundred.
    #[serde(default = "default_max_macro_bytes")]
    pub max_macro_bytes: usize,
    /// Macro name/value pairs a connection may hold at once.
    #[serde(default = "default_max_macros")]
    pub max_macros: usize,
    /// Answer every body chunk (one round trip per chunk of up to 64 KB), so
    /// that dkimd can tell the MTA to skip the rest of a body it does not
    /// need. Off (the default): the MTA streams the body without waiting and
    /// dkimd drops what it does not need.
    #[serde(default)]
    pub body_replies: bool,
    /// Hash the rest of a body over 1 MiB on a thread of its own (at most
    /// one per CPU), so that receiving and hashing overlap: lower latency
    /// for large mail at about the same CPU. Off: every body is hashed
    /// inline.
    #[serde(default = "default_true")]
    pub body_thread: bool,
    /// Seconds connections in flight get to finish on SIGTERM.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: u64,
    /// "info" (one line per message) or "warn" (problems only).
    #[serde(default)]
    pub log_level: LogLevel,
    /// Group that owns a Unix socket (Postfix's user must be in it); unset:
    /// the daemon's own group.
    #[serde(default)]
    pub socket_group: Option<String>,
    /// Per message: at most this many header fields are kept. A message
    /// with more from an untrusted client gets dkim=permerror ("too many
    /// header fields") and policy-permerror; from a trusted client it is
    /// passed on unsigned. Both are logged and counted.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Per message: at most this many bytes of header fields are kept (as
    /// max_headers).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Which header names the author whose domain decides signing: "from",
    /// or "sender" (the Sender field when there is one, else From).
    #[serde(default)]
    pub author_header: AuthorHeader,
    /// Prometheus metrics over HTTP on this loopback "IP:PORT"; unset: off.
    #[serde(default)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Seconds between the daemon's key lifecycle steps (what
    /// `dkimd rotate --step` does: promote, retire, revoke, delete, start
    /// scheduled rotations) and its checks that DNS serves the active keys;
    /// 0 turns both off.
    #[serde(default = "default_key_step_interval")]
    pub key_step_interval: u64,
}

fn default_key_step_interval() -> u64 {
    300
}

fn default_socket() -> SocketSpec {
    SocketSpec {
        text: "unix:/run/dkimd/dkimd.sock".into(),
        addr: milter::server::ListenAddr::Unix("/run/dkimd/dkimd.sock".into(), 0o660),
    }
}
fn default_socket_mode() -> FileMode {
    FileMode(0o660)
}

/// `milter.socket`: where the daemon listens, in Postfix's notation
/// (`unix:/path`, `inet:IP:PORT`), checked when the file is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SocketSpec {
    text: String,
    addr: milter::server::ListenAddr,
}

impl SocketSpec {
    /// The address to listen on.
    pub fn addr(&self) -> milter::server::ListenAddr {
        self.addr.clone()
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for SocketSpec {
    type Error = String;
    fn try_from(text: String) -> Result<SocketSpec, String> {
        let addr = text
            .parse::<milter::server::ListenAddr>()
            .map_err(|e| format!("milter.socket: {e}"))?;
        Ok(SocketSpec { text, addr })
    }
}

impl std::fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A file mode written in octal (`"0660"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FileMode(u32);

impl FileMode {
    /// The permission bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl TryFrom<String> for FileMode {
    type Error = String;
    fn try_from(text: String) -> Result<FileMode, String> {
        u32::from_str_radix(&text, 8)
            .ok()
            .map(FileMode)
            .ok_or_else(|| format!("milter.socket_mode {text:?} is not octal"))
    }
}
fn default_trusted() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}
fn default_daemons() -> Vec<String> {
    vec!["ORIGINATING".into()]
}
fn default_max_signatures() -> usize {
    10
}
fn default_lookup_timeout() -> u64 {
    10
}
fn default_max_connections() -> usize {
    milter::server::DEFAULT_MAX_CONNECTIONS
}
fn default_read_timeout() -> u64 {
    300
}
fn default_negotiate_timeout() -> u64 {
    milter::server::DEFAULT_NEGOTIATE_TIMEOUT
}
fn default_idle_timeout() -> u64 {
    milter::server::DEFAULT_IDLE_TIMEOUT
}
fn default_max_macro_bytes() -> usize {
    milter::server::DEFAULT_MAX_MACRO_BYTES
}
fn default_max_macros() -> usize {
    milter::server::DEFAULT_MAX_MACROS
}
fn default_true() -> bool {
    true
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_max_headers() -> usize {
    1000
}
fn default_max_header_bytes() -> usize {
    1024 * 1024
}
/// `milter.on_error`: what Postfix is told when dkimd fails on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// 4xx: the sender keeps the message and retries (the default).
    #[default]
    Tempfail,
    /// Deliver unsigned and unverified.
    Accept,
    /// 5xx.
    Reject,
}

/// `milter.log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// One line per message (the default).
    #[default]
    Info,
    /// Problems only.
    Warn,
}

/// `milter.author_header`: which header names the author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthorHeader {
    /// The From field (the default).
    #[default]
    From,
    /// The Sender field when there is one, else From.
    Sender,
}

/// How the records of a zone are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Backend {
    /// Edit a BIND zone file and reload the zone.
    BindZoneFile,
    /// Dynamic update (RFC 2136) signed with TSIG.
    Rfc2136,
    /// PowerDNS Authoritative's HTTP API.
    #[serde(rename = "powerdns")]
    PowerDns,
    /// A DNS provider's API (`provider` names which).
    Provider,
    /// Print the records for the admin to publish (the default).
    #[default]
    Manual,
}

impl Backend {
    /// The name as the configuration file and the store write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::BindZoneFile => "bind-zone-file",
            Backend::Rfc2136 => "rfc2136",
            Backend::PowerDns => "powerdns",
            Backend::Provider => "provider",
            Backend::Manual => "manual",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `tsig_algorithm` of an rfc2136 zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithm {
    /// HMAC-SHA256 (the default).
    #[default]
    HmacSha256,
    /// HMAC-SHA384.
    HmacSha384,
    /// HMAC-SHA512.
    HmacSha512,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            socket: default_socket(),
            socket_mode: default_socket_mode(),
            trusted_networks: default_trusted(),
            signing_daemons: default_daemons(),
            authserv_id: None,
            on_error: OnError::default(),
            max_signatures: default_max_signatures(),
            lookup_timeout: default_lookup_timeout(),
            read_timeout: default_read_timeout(),
            negotiate_timeout: default_negotiate_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_macro_bytes: default_max_macro_bytes(),
            max_macros: default_max_macros(),
            body_replies: false,
            body_thread: true,
            shutdown_grace: default_shutdown_grace(),
            log_level: LogLevel::default(),
            socket_group: None,
            max_headers: default_max_headers(),
            max_header_bytes: default_max_header_bytes(),
            author_header: AuthorHeader::default(),
            metrics: None,
            key_step_interval: default_key_step_interval(),
        }
    }
}

/// `[admin]`: the web admin page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to serve the page on; off when absent. Must be loopback
    /// unless `tls_cert` and `tls_key` are set.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain for HTTPS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (mode 0600).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Host names the page may be reached by, besides its address and
    /// `localhost` (a guard against DNS rebinding).
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// A session ends after this many seconds without a request.
    #[serde(default = "default_idle")]
    pub session_idle: u64,
    /// A session ends this many seconds after login, used or not.
    #[serde(default = "default_lifetime")]
    pub session_lifetime: u64,
    /// Failed logins allowed per client address within `login_window`
    /// seconds (four times as many per user name); then logins are refused
    /// until the window has passed.
    #[serde(default = "default_attempts")]
    pub login_attempts: u32,
    #[serde(default = "default_window")]
    /// The window, in seconds, over which failed logins are counted.
    pub login_window: u64,
    /// The audit log (JSON lines, mode 0600); default `STATE_DIR/audit.log`.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
}

fn default_idle() -> u64 {
    1800
}
fn default_lifetime() -> u64 {
    43_200
}
fn default_attempts() -> u32 {
    5
}
fn default_window() -> u64 {
    300
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            tls_cert: None,
            tls_key: None,
            hostnames: Vec::new(),
            session_idle: default_idle(),
            session_lifetime: default_lifetime(),
            login_attempts: default_attempts(),
            login_window: default_window(),
            audit_log: None,
        }
    }
}

impl AdminConfig {
    /// Whether the page is served over TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    fn validate(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("admin.tls_cert and admin.tls_key go together".into());
        }
        if let Some(a) = self.listen {
            if !a.ip().is_loopback() && !self.tls() {
                return Err(format!(
                    "admin.listen {a} is not a loopback address: serving the admin page there needs admin.tls_cert and admin.tls_key"
                ));
            }
        }
        if self.session_idle == 0 || self.session_lifetime == 0 {
            return Err("admin.session_idle and admin.session_lifetime must be at least 1".into());
        }
        if self.login_attempts == 0 || self.login_window == 0 {
            return Err("admin.login_attempts and admin.login_window must be at least 1".into());
        }
        for h in &self.hostnames {
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                return Err(format!("admin.hostnames: {h:?} is not a host name"));
            }
        }
        Ok(())
    }

    /// The audit log's path.
    pub fn audit_path(&self, state_dir: &Path) -> PathBuf {
        self.audit_log
            .clone()
            .unwrap_or_else(|| state_dir.join("audit.log"))
    }
}

/// `[publish]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// Backend for domains in no configured zone: only "manual" makes sense.
    #[serde(default)]
    pub default: Backend,
    /// Zones dkimd may write to.
    #[serde(default, rename = "zone")]
    pub zones: Vec<ZoneConfig>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            default: Backend::Manual,
            zones: Vec::new(),
        }
    }
}

/// `[[publish.zone]]`: one DNS zone and how to change it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone's apex, e.g. "example.com".
    pub name: String,
    /// "bind-zone-file", "rfc2136", "powerdns", "provider" or "manual".
    pub backend: Backend,
    /// bind-zone-file: the zone file.
    pub file: Option<PathBuf>,
    /// bind-zone-file: command run after the file changed (default: rndc reload ZONE).
    pub reload_command: Option<Vec<String>>,
    /// bind-zone-file: command that checks the new file first; "ZONE" and
    /// "FILE" in it are replaced (default: named-checkzone ZONE FILE, when installed).
    pub check_command: Option<Vec<String>>,
    /// rfc2136: the primary server, "IP:PORT".
    pub server: Option<SocketAddr>,
    /// rfc2136: the TSIG key name.
    pub tsig_key_name: Option<String>,
    /// rfc2136: file holding the TSIG secret (base64, as in a BIND key statement), mode 0600.
    pub tsig_secret_file: Option<PathBuf>,
    /// rfc2136: hmac-sha256 (default), hmac-sha384 or hmac-sha512.
    pub tsig_algorithm: Option<TsigAlgorithm>,
    /// powerdns: the API's base URL, e.g. "http://127.0.0.1:8081" (a
    /// trailing "/api/v1" is allowed), http or https.
    pub api_url: Option<ApiUrl>,
    /// powerdns: the server id in the API's paths (default "localhost").
    pub server_id: Option<ServerId>,
    /// powerdns: file holding the API key (pdns.conf's api-key), mode 0600.
    pub api_key_file: Option<PathBuf>,
    /// powerdns over https: CA certificates (PEM) to check the server's
    /// certificate with (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// provider: which DNS provider's API ("cloudflare", "digitalocean").
    pub provider: Option<Provider>,
    /// provider: the file holding the API token, mode 0600.
    pub credentials_file: Option<PathBuf>,
    /// TTL of published records (default 3600).
    pub ttl: Option<u32>,
    /// The zone's authoritative servers, "IP:PORT" (default: the addresses
    /// of the names in its NS records, port 53). A new key signs only once
    /// every one of them serves its record.
    #[serde(default, deserialize_with = "nameservers")]
    pub authoritative: Vec<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: default_state_dir(),
            dns: DnsConfig {
                nameservers: Vec::new(),
                timeout: default_timeout(),
                propagation_timeout: default_propagation(),
            },
            publish: PublishConfig::default(),
            milter: MilterConfig::default(),
            admin: AdminConfig::default(),
            store: StoreConfig::default(),
            source: None,
        }
    }
}

/// The DNS providers whose APIs the `provider` backend speaks: those
/// tested against the provider's documented API (README, "Provider APIs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Provider {
    /// Cloudflare's API v4, with an API token (Zone → DNS → Edit).
    Cloudflare,
    /// DigitalOcean's API v2, with a token with the domain scopes.
    #[serde(rename = "digitalocean")]
    DigitalOcean,
}

impl Provider {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cloudflare => "cloudflare",
            Provider::DigitalOcean => "digitalocean",
        }
    }
}

/// An HTTP API's base URL (powerdns `api_url`): http or https, a host,
/// no user info, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl(String);

impl ApiUrl {
    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ApiUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<ApiUrl, String> {
        check_api_url(s).map_err(|e| format!("api_url {s:?}: {e}"))?;
        Ok(ApiUrl(s.to_string()))
    }
}

impl std::fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ApiUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ApiUrl, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A PowerDNS server id, as in its API's paths ("localhost"): letters,
/// digits, '-', '_' and '.'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerId(String);

impl ServerId {
    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ServerId {
    fn default() -> ServerId {
        ServerId("localhost".into())
    }
}

impl std::str::FromStr for ServerId {
    type Err = String;
    fn from_str(s: &str) -> Result<ServerId, String> {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "server_id {s:?} is not a PowerDNS server id (letters, digits, '-', '_', '.'; usually \"localhost\")"
            ));
        }
        Ok(ServerId(s.to_string()))
    }
}

impl std::fmt::Display for ServerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ServerId, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Checks an HTTP API's base URL: http or https, a host, no query.
pub fn check_api_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected http://HOST:PORT or https://HOST[:PORT][/PATH]")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("the scheme must be http or https, not {scheme:?}"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("no host (or user info, which is not supported)".into());
    }
    if rest.contains(['?', '#', ' ']) {
        return Err("a query, fragment or space has no place in it".into());
    }
    Ok(())
}

/// Line number (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|b| *b == b'\n').count() + 1)
}

impl Config {
    /// Parses configuration text; errors name the file and line.
    pub fn parse(text: &str, path: &Path) -> crate::Result<Config> {
        let mut cfg: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                let line = e.span().map_or(1, |s| line_of(text, s.start));
                let msg = e.message().to_string();
                return crate::usage(format!("{}:{line}: {msg}", path.display()));
            }
        };
        cfg.source = Some(path.to_path_buf());
        if let Err(msg) = cfg.validate() {
            return crate::usage(format!("{}: {msg}", path.display()));
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let m = &self.milter;
        for n in &m.trusted_networks {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!("milter.trusted_networks: {n:?} is not an address or CIDR network")
                })?;
        }
        if m.metrics.is_some_and(|a| !a.ip().is_loopback()) {
            return Err(
                "milter.metrics must be a loopback address (127.0.0.1:PORT or [::1]:PORT)".into(),
            );
        }
        if m.max_connections == 0 {
            return Err("milter.max_connections must be at least 1".into());
        }
        if m.max_signatures == 0 {
            return Err("milter.max_signatures must be at least 1".into());
        }
        for (name, v) in [
            ("read_timeout", m.read_timeout),
            ("negotiate_timeout", m.negotiate_timeout),
            ("idle_timeout", m.idle_timeout),
        ] {
            if v == 0 {
                return Err(format!("milter.{name} must be at least 1 (seconds)"));
            }
        }
        if m.max_macro_bytes < 1024 {
            return Err(format!(
                "milter.max_macro_bytes must be at least 1024 (Postfix's macros take a few hundred bytes), not {}",
                m.max_macro_bytes
            ));
        }
        if m.max_macros < 16 {
            return Err(format!(
                "milter.max_macros must be at least 16, not {}",
                m.max_macros
            ));
        }
        self.admin.validate()?;
        self.store.validate()?;
        if self.publish.default != Backend::Manual {
            return Err(format!(
                "publish.default must be \"manual\" (zones with another backend are listed one by one), not {:?}",
                self.publish.default
            ));
        }
        for (i, z) in self.publish.zones.iter().enumerate() {
            let at = format!("publish.zone[{}] ({})", i + 1, z.name);
            if z.name.parse::<dkim::DomainName>().is_err() {
                return Err(format!("{at}: name is not a domain name"));
            }
            match z.backend {
                Backend::BindZoneFile if z.file.is_none() => {
                    return Err(format!("{at}: bind-zone-file needs file"))
                }
                Backend::Rfc2136
                    if z.server.is_none()
                        || z.tsig_key_name.is_none()
                        || z.tsig_secret_file.is_none() =>
                {
                    return Err(format!(
                        "{at}: rfc2136 needs server, tsig_key_name and tsig_secret_file"
                    ))
                }
                Backend::Provider if z.provider.is_none() || z.credentials_file.is_none() => {
                    return Err(format!(
                        "{at}: provider needs provider (\"cloudflare\" or \"digitalocean\") and credentials_file"
                    ))
                }
                Backend::PowerDns if z.api_url.is_none() || z.api_key_file.is_none() => {
                    return Err(format!(
                        "{at}: powerdns needs api_url (e.g. \"http://127.0.0.1:8081\") and api_key_file"
                    ))
                }
                _ => {}
            }
            if self
                .publish
                .zones
                .iter()
                .filter(|o| o.name.eq_ignore_ascii_case(&z.name))
                .count()
                > 1
            {
                return Err(format!("{at}: zone listed twice"));
            }
        }
        Ok(())
    }

    /// Loads the configuration: `path` when given (it must exist), else the
    /// default file when it exists, else built-in defaults. `state_dir`
    /// overrides the file's.
    pub fn load(path: Option<&Path>, state_dir: Option<&Path>) -> crate::Result<Config> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    crate::Error::Usage(format!("cannot read configuration {}: {e}", p.display()))
                })?;
                Config::parse(&text, p)?
            }
            None => {
                let p = Path::new(DEFAULT_CONFIG);
                if p.exists() {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read configuration {}", p.display()))?;
                    Config::parse(&text, p)?
                } else {
                    Config::default()
                }
            }
        };
        if let Some(s) = state_dir {
            cfg.state_dir = s.to_path_buf();
        }
        Ok(cfg)
    }

    /// [`Config::load`], except that a `path` that does not exist yet gives
    /// the defaults (for `dkimd install`, which then writes the sample
    /// there). `source` is `path`, or the default file, either way.
    pub fn load_or_default(path: Option<&Path>, state_dir: Option<&Path>) -> crate::Result<Config> {
        match path {
            Some(p) if !p.exists() => {
                let mut cfg = Config::default();
                if let Some(s) = state_dir {
                    cfg.state_dir = s.to_path_buf();
                }
                cfg.source = Some(p.to_path_buf());
                Ok(cfg)
            }
            Some(p) => Config::load(Some(p), state_dir),
            None => {
                let mut cfg = Config::load(None, state_dir)?;
                cfg.source = Some(PathBuf::from(DEFAULT_CONFIG));
                Ok(cfg)
            }
        }
    }

    /// The sample configuration, with `state_dir` set to this one's: what
    /// install writes where the configuration file is missing.
    pub fn sample(&self) -> String {
        let line = format!(
            "state_dir = {}",
            toml::Value::String(self.state_dir.display().to_string())
        );
        SAMPLE.replacen(&format!("state_dir = \"{DEFAULT_STATE_DIR}\""), &line, 1)
    }

    /// The TTL records of `domain` are published with: its zone's `ttl`,
    /// else 3600.
    pub fn ttl_for(&self, domain: &dkim::DomainName) -> u32 {
        self.zone_for(domain).and_then(|z| z.ttl).unwrap_or(3600)
    }

    /// The zone configuration responsible for `domain`: the longest
    /// configured zone that is `domain` or a parent of it.
    pub fn zone_for(&self, domain: &dkim::DomainName) -> Option<&ZoneConfig> {
        self.publish
            .zones
            .iter()
            .filter(|z| {
                z.name
                    .parse::<dkim::DomainName>()
                    .is_ok_and(|zn| domain.is_subdomain_of(&zn))
            })
            .max_by_key(|z| z.name.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_and_mode_are_checked_where_they_are_written() {
        let p = std::path::Path::new("t.toml");
        let e = Config::parse("[milter]\nsocket = \"tcp:1.2.3.4\"\n", p).unwrap_err();
        assert!(e.is_usage());
        assert!(
            e.to_string().starts_with("t.toml:2: milter.socket: "),
            "{e}"
        );
        let e = Config::parse("[milter]\nsocket_mode = \"9999\"\n", p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml:2: milter.socket_mode \"9999\" is not octal"
        );
        let c = Config::parse(
            "[milter]\nsocket = \"inet:127.0.0.1:8891\"\nsocket_mode = \"0600\"\n",
            p,
        )
        .unwrap();
        assert_eq!(
            c.milter.socket.addr(),
            milter::server::ListenAddr::Tcp("127.0.0.1:8891".parse().unwrap())
        );
        assert_eq!(c.milter.socket.to_string(), "inet:127.0.0.1:8891");
        assert_eq!(c.milter.socket_mode.bits(), 0o600);
        let d = Config::default();
        assert_eq!(d.milter.socket.to_string(), "unix:/run/dkimd/dkimd.sock");
        assert_eq!(d.milter.socket_mode.bits(), 0o660);
    }

    #[test]
    fn a_misspelled_backend_is_refused_not_manual() {
        let e = Config::parse(
            "[[publish.zone]]\nname = \"example.com\"\nbackend = \"bind-zonefile\"\nfile = \"/x\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("t.toml:3: "), "{m}");
        assert!(m.contains("bind-zone-file") && m.contains("rfc2136"), "{m}");
    }

    #[test]
    fn errors_carry_file_and_line() {
        let e = Config::parse(
            "state_dir = \"/x\"\n[dns]\nnameservers = [\"not an address\"]\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("t.toml:3:"), "{e}");
        assert!(
            e.to_string().contains(
                "\"not an address\" is not a name server address: expected IP or IP:PORT"
            ),
            "{e}"
        );
        // A bare IP means port 53.
        let c = Config::parse(
            "[dns]\nnameservers = [\"127.0.0.1\", \"::1\", \"127.0.0.2:5353\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(
            c.dns.nameservers,
            ["127.0.0.1:53", "[::1]:53", "127.0.0.2:5353"]
                .map(|a| a.parse::<SocketAddr>().unwrap())
                .to_vec()
        );
        let e = Config::parse("\n\nbogus = 1\n", Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().starts_with("t.toml:3:"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Config::parse(
            "[[publish.zone]]\nname = \"example.com\"\nbackend = \"bind-zone-file\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs file"), "{e}");
    }

    #[test]
    fn powerdns_zones_are_checked() {
        let zone = |extra: &str| {
            format!("[[publish.zone]]\nname = \"example.com\"\nbackend = \"powerdns\"\n{extra}")
        };
        let p = Path::new("t.toml");
        let e = Config::parse(&zone("api_key_file = \"/k\"\n"), p).unwrap_err();
        assert!(e.to_string().contains("powerdns needs api_url"), "{e}");
        let e = Config::parse(
            &zone("api_url = \"ftp://127.0.0.1:8081\"\napi_key_file = \"/k\"\n"),
            p,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("t.toml:4: ")
                && e.to_string().contains("the scheme must be http or https"),
            "{e}"
        );
        let e = Config::parse(
            &zone("api_url = \"http://u:pw@127.0.0.1:8081\"\napi_key_file = \"/k\"\n"),
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("user info"), "{e}");
        let e = Config::parse(
            &zone(
                "api_url = \"http://127.0.0.1:8081\"\napi_key_file = \"/k\"\nserver_id = \"a/b\"\n",
            ),
            p,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("t.toml:6: ") && e.to_string().contains("server_id \"a/b\""),
            "{e}"
        );
        let c = Config::parse(
            &zone("api_url = \"https://dns.example:8443/api/v1\"\napi_key_file = \"/k\"\n"),
            p,
        )
        .unwrap();
        assert_eq!(c.publish.zones[0].backend, Backend::PowerDns);
        assert_eq!(c.publish.zones[0].backend.as_str(), "powerdns");
    }

    #[test]
    fn provider_zones_are_checked() {
        let p = Path::new("t.toml");
        let e = Config::parse(
            "[[publish.zone]]\nname = \"example.com\"\nbackend = \"provider\"\nprovider = \"cloudflare\"\n",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("provider needs provider"), "{e}");
        let e = Config::parse(
            "[[publish.zone]]\nname = \"example.com\"\nbackend = \"provider\"\nprovider = \"route66\"\ncredentials_file = \"/t\"\n",
            p,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("t.toml:4: ") && e.to_string().contains("cloudflare"),
            "{e}"
        );
    }

    #[test]
    fn admin_page_off_loopback_needs_tls() {
        let e =
            Config::parse("[admin]\nlisten = \"0.0.0.0:8443\"\n", Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("needs admin.tls_cert"), "{e}");
        let e = Config::parse(
            "[admin]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"/c.pem\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
        let c = Config::parse(
            "[admin]\nlisten = \"0.0.0.0:8443\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(c.admin.tls());
        let e =
            Config::parse("[admin]\nlisten = \"localhost\"\n", Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn zone_choice_is_longest_suffix() {
        let cfg = Config::parse(
            "[[publish.zone]]\nname = \"example.com\"\nbackend = \"manual\"\n[[publish.zone]]\nname = \"sub.example.com\"\nbackend = \"manual\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let d: dkim::DomainName = "a.sub.example.com".parse().unwrap();
        assert_eq!(cfg.zone_for(&d).unwrap().name, "sub.example.com");
        let d: dkim::DomainName = "example.com".parse().unwrap();
        assert_eq!(cfg.zone_for(&d).unwrap().name, "example.com");
        let d: dkim::DomainName = "example.org".parse().unwrap();
        assert!(cfg.zone_for(&d).is_none());
    }
}
