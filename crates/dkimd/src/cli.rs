//! Command-line definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// DKIM signing and verification for Postfix mail servers.
#[derive(Parser, Debug)]
#[command(name = "dkimd", version, about, long_about = None)]
pub struct Cli {
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    Rsa,
    Ed25519,
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
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Private key file (PEM: PKCS#8 or PKCS#1, RSA or Ed25519), mode 0600.
    #[arg(long)]
    pub key: PathBuf,
    /// The signing domain (d=).
    #[arg(long)]
    pub domain: String,
    /// The selector (s=).
    #[arg(long)]
    pub selector: String,
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
    /// DNS timeout in seconds.
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
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen(a) => crate::keygen::run(a),
        Command::Sign(a) => crate::sign::run(a),
        Command::Verify(a) => crate::verify::run(a),
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads all of standard input, with a clear error when it is empty.
pub fn read_stdin_message() -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| anyhow::anyhow!("cannot read the message from standard input: {e}"))?;
    if buf.is_empty() {
        return crate::usage("no message on standard input");
    }
    Ok(buf)
}
