//! A signing setup for daemon tests: a BIND serving example.com from a zone
//! file, a dkimd configuration that publishes into it, the domain added and
//! signing enabled with a selector.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::bind::{zone_file, Named};
use super::daemon::Daemon;
use super::{dkimd, free_port, write_dns_file};
use std::cell::Cell;
use std::path::PathBuf;

/// The milter socket line every test configuration starts with: port 0, so
/// that dkimd binds a port the kernel gives it and says which in its log.
pub const ANY_PORT_SOCKET: &str = "socket = \"inet:127.0.0.1:0\"";

pub struct SigningEnv {
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
    pub named: Named,
    /// The milter port (`inet:127.0.0.1:PORT`), known once the daemon runs.
    port: Cell<u16>,
    /// The metrics port, when the configuration serves metrics.
    metrics: Cell<u16>,
    pub selector: String,
}

impl SigningEnv {
    /// `milter` is the body of the `[milter]` section without `socket`;
    /// `zone_extra` are more lines for the example.com zone; `tmp` may
    /// already hold files the caller made for them.
    pub fn start(
        tmp: tempfile::TempDir,
        milter: &str,
        zone_extra: &[String],
        selector: &str,
    ) -> SigningEnv {
        let named = Named::start(&[("example.com", zone_file("example.com", 1, zone_extra))]);
        let config = tmp.path().join("dkimd.toml");
        let reload: Vec<String> = named
            .rndc_reload("example.com")
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{state}\"\n[dns]\nnameservers = [\"{addr}\"]\ntimeout = 2\n\
                 [milter]\n{ANY_PORT_SOCKET}\n{milter}\n\
                 [[publish.zone]]\nname = \"example.com\"\nbackend = \"bind-zone-file\"\nfile = \"{zf}\"\nreload_command = [{reload}]\nauthoritative = [\"{addr}\"]\n",
                state = tmp.path().join("state").display(),
                addr = named.addr(),
                zf = named.zone_file("example.com").display(),
                reload = reload.join(", "),
            ),
        )
        .unwrap();
        let env = SigningEnv {
            tmp,
            config,
            named,
            port: Cell::new(0),
            metrics: Cell::new(0),
            selector: selector.to_string(),
        };
        env.ok(&["domain", "add", "example.com"]);
        env.ok(&["enable", "--selector", selector]);
        env
    }

    /// Starts `dkimd run` with this configuration on ports the kernel
    /// chooses, and remembers them ([`SigningEnv::port`]).
    pub fn daemon(&self) -> Daemon {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let d = if text.contains(ANY_PORT_SOCKET) {
            Daemon::start_any_port(&self.config)
        } else if text.contains("socket = \"inet:") {
            Daemon::start(&self.config, self.port.get())
        } else {
            panic!("use Daemon::start_unix for a Unix socket")
        };
        self.port.set(d.port);
        if text.contains("metrics = ") {
            self.metrics.set(d.metrics_port());
        }
        d
    }

    /// The milter port of the running daemon.
    pub fn port(&self) -> u16 {
        let p = self.port.get();
        assert_ne!(p, 0, "the daemon has not started: call env.daemon() first");
        p
    }

    /// The metrics port of the running daemon.
    pub fn mport(&self) -> u16 {
        let p = self.metrics.get();
        assert_ne!(p, 0, "no metrics: the daemon has not started");
        p
    }

    /// The milter socket line of the configuration as it is now.
    pub fn socket_line(&self) -> String {
        let text = std::fs::read_to_string(&self.config).unwrap();
        text.lines()
            .find(|l| l.starts_with("socket = "))
            .unwrap_or(ANY_PORT_SOCKET)
            .to_string()
    }

    /// Gives the milter a fixed port before the daemon runs, for a test in
    /// which the MTA must know the milter's address first (Postfix
    /// configured while dkimd is down).
    pub fn pin_port(&self) -> u16 {
        let p = free_port();
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace(ANY_PORT_SOCKET, &format!("socket = \"inet:127.0.0.1:{p}\""));
        std::fs::write(&self.config, text).unwrap();
        self.port.set(p);
        p
    }

    /// Runs a dkimd command with this configuration; it must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = dkimd()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The signing keys' records as DNS serves them, as a `--dns-file` (and
    /// dkimpy) table.
    pub fn dns_file(&self) -> PathBuf {
        let mut recs = Vec::new();
        for sel in [self.selector.clone(), format!("{}-ed25519", self.selector)] {
            let name = format!("{sel}._domainkey.example.com");
            for v in self.named.dig_txt(&name) {
                recs.push((name.clone(), v));
            }
        }
        let p = self.tmp.path().join("dns.txt");
        write_dns_file(&p, &recs);
        p
    }
}

/// A signing setup for milter daemon tests: trusted 127.0.0.1/32,
/// authserv-id `mx.test`, metrics on a port of their own.
pub struct MilterEnv {
    pub base: SigningEnv,
}

impl std::ops::Deref for MilterEnv {
    type Target = SigningEnv;
    fn deref(&self) -> &SigningEnv {
        &self.base
    }
}

impl MilterEnv {
    /// `extra`: more `[milter]` lines; `selector`: the signing selector.
    pub fn start(extra: &str, selector: &str) -> MilterEnv {
        let milter = format!(
            "trusted_networks = [\"127.0.0.1/32\"]\nauthserv_id = \"mx.test\"\nshutdown_grace = 5\nmetrics = \"127.0.0.1:0\"\n{extra}"
        );
        let base = SigningEnv::start(tempfile::tempdir().unwrap(), &milter, &[], selector);
        MilterEnv { base }
    }

    /// The milter's address.
    pub fn addr(&self) -> milter::server::ListenAddr {
        milter::server::ListenAddr::Tcp(format!("127.0.0.1:{}", self.port()).parse().unwrap())
    }
}
