//! A private BIND `named` on 127.0.0.1 and a free port, serving zones from
//! files in a temporary directory; stopped by PID when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Named {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// rndc configuration file for `rndc -c`.
    pub rndc_conf: PathBuf,
    /// File with the TSIG secret of key `dkimd-key` (hmac-sha256), mode 0600.
    pub tsig_secret_file: PathBuf,
    _tmp: tempfile::TempDir,
}

/// A zone to serve.
pub struct Zone {
    pub name: String,
    pub text: String,
    /// Open to TSIG-signed dynamic updates with key `dkimd-key`.
    pub dynamic: bool,
}

/// Fixed test secrets (loopback only).
const RNDC_SECRET: &str = "c2VjcmV0LWZvci1ybmRjLWluLWRraW1kLXRlc3RzLTAwMQ==";
pub const TSIG_SECRET: &str = "dGhpcyBpcyB0aGUgZGtpbWQgdGVzdCB0c2lnIHNlY3JldCE=";

/// True when named is installed (see `common::require_peer`).
pub fn have_named() -> bool {
    super::require_peer(
        "BIND named (Debian package bind9)",
        Command::new("named").arg("-v"),
    )
}

use super::free_port;

impl Named {
    /// Starts named serving each `(zone, zone file text)` as a primary zone.
    pub fn start(zones: &[(&str, String)]) -> Named {
        let zones: Vec<Zone> = zones
            .iter()
            .map(|(n, t)| Zone {
                name: n.to_string(),
                text: t.clone(),
                dynamic: false,
            })
            .collect();
        Self::start_zones(&zones)
    }

    /// Starts named with file-backed and dynamic zones, an rndc control
    /// channel and the TSIG key `dkimd-key`.
    pub fn start_zones(zones: &[Zone]) -> Named {
        Self::start_zones_with(zones, false)
    }

    /// [`Named::start_zones`], also answering recursive queries from
    /// 127.0.0.1 as a receiver's resolver does: a CNAME into another of
    /// its zones is followed to the record (an authoritative-only server
    /// answers with the CNAME alone).
    pub fn start_zones_recursive(zones: &[Zone]) -> Named {
        Self::start_zones_with(zones, true)
    }

    fn start_zones_with(zones: &[Zone], recursive: bool) -> Named {
        let recursion = if recursive {
            "recursion yes;\n  allow-recursion { 127.0.0.1; };"
        } else {
            "recursion no;"
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let port = free_port();
        let rndc_port = free_port();
        let mut conf = format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  {recursion}\n  dnssec-validation no;\n  notify no;\n}};\n\
             key \"rndc-key\" {{ algorithm hmac-sha256; secret \"{RNDC_SECRET}\"; }};\n\
             key \"dkimd-key\" {{ algorithm hmac-sha256; secret \"{TSIG_SECRET}\"; }};\n\
             controls {{ inet 127.0.0.1 port {rndc_port} allow {{ 127.0.0.1; }} keys {{ \"rndc-key\"; }}; }};\n",
            d = dir.display()
        );
        for z in zones {
            let file = dir.join(format!("{}.zone", z.name));
            std::fs::write(&file, &z.text).unwrap();
            let update = if z.dynamic {
                " allow-update { key \"dkimd-key\"; };"
            } else {
                ""
            };
            conf.push_str(&format!(
                "zone \"{}\" {{ type primary; file \"{}\";{update} }};\n",
                z.name,
                file.display()
            ));
        }
        let rndc_conf = dir.join("rndc.conf");
        std::fs::write(
            &rndc_conf,
            format!(
                "key \"rndc-key\" {{ algorithm hmac-sha256; secret \"{RNDC_SECRET}\"; }};\noptions {{ default-key \"rndc-key\"; default-server 127.0.0.1; default-port {rndc_port}; }};\n"
            ),
        )
        .unwrap();
        let tsig_secret_file = dir.join("tsig.secret");
        std::fs::write(&tsig_secret_file, format!("{TSIG_SECRET}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tsig_secret_file, std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let conf_path = dir.join("named.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new("named")
            .arg("-g")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start named");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut log = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    log.push(line);
                    // "running" can come before the zones are loaded; queries
                    // before "all zones loaded" get SERVFAIL.
                    let running = log.iter().any(|l| l.contains("running"));
                    let loaded = log.iter().any(|l| l.contains("all zones loaded"));
                    if running && loaded {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("named did not start:\n{}", log.join("\n"));
                }
            }
        }
        if let Some(bad) = log.iter().find(|l| l.contains("not loaded due to errors")) {
            let _ = child.kill();
            panic!("named rejected a zone: {bad}\n{}", log.join("\n"));
        }
        // Keep draining the log so that named never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Named {
            child,
            port,
            dir,
            rndc_conf,
            tsig_secret_file,
            _tmp: tmp,
        }
    }

    /// The command that reloads a file-backed zone.
    pub fn rndc_reload(&self, zone: &str) -> Vec<String> {
        vec![
            "rndc".into(),
            "-c".into(),
            path_str(&self.rndc_conf),
            "reload".into(),
            zone.into(),
        ]
    }

    /// The zone file of a zone.
    pub fn zone_file(&self, zone: &str) -> PathBuf {
        self.dir.join(format!("{zone}.zone"))
    }

    /// The SOA serial served for a zone.
    pub fn serial(&self, zone: &str) -> Option<u32> {
        let out = Command::new("dig")
            .args([
                "+short",
                "+tries=2",
                "+time=2",
                "-p",
                &self.port.to_string(),
                "@127.0.0.1",
                zone,
                "SOA",
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()
    }

    /// Sends a TSIG-signed update with `nsupdate` (the test's independent client).
    pub fn nsupdate(&self, commands: &str) {
        use std::io::Write;
        let mut child = Command::new("nsupdate")
            .args(["-y", &format!("hmac-sha256:dkimd-key:{TSIG_SECRET}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsupdate");
        let script = format!("server 127.0.0.1 {}\n{commands}\nsend\n", self.port);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What `dig` gets for a TXT name: each record's strings joined.
    pub fn dig_txt(&self, name: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                "+short",
                "+tries=2",
                "+time=2",
                "-p",
                &self.port.to_string(),
                "@127.0.0.1",
                name,
                "TXT",
            ])
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('"').skip(1).step_by(2).collect::<String>())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Named {
    /// BIND serving example.com from a file and dyn.example by TSIG-signed
    /// dynamic update, as most manager tests publish into.
    pub fn start_file_and_dynamic() -> Named {
        Named::start_zones(&[
            Zone {
                name: "example.com".into(),
                text: zone_file("example.com", 2026010101, &[]),
                dynamic: false,
            },
            Zone {
                name: "dyn.example".into(),
                text: zone_file("dyn.example", 7, &[]),
                dynamic: true,
            },
        ])
    }

    /// A dkimd configuration over this BIND (from
    /// [`Named::start_file_and_dynamic`]): the state in `state`, `[dns]`
    /// asking this server, then `sections` (more sections, as they are),
    /// then example.com as a zone file (TTL 300) and dyn.example by RFC
    /// 2136, each asking this server as its authoritative one, with
    /// `dyn_extra` lines for dyn.example.
    pub fn dkimd_config(&self, state: &Path, sections: &str, dyn_extra: &str) -> String {
        let reload: Vec<String> = self
            .rndc_reload("example.com")
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        format!(
            "state_dir = \"{state}\"\n\n[dns]\nnameservers = [\"{addr}\"]\ntimeout = 2\npropagation_timeout = 15\n\n\
             {sections}\n\
             [[publish.zone]]\nname = \"example.com\"\nbackend = \"bind-zone-file\"\nfile = \"{zf}\"\nreload_command = [{reload}]\nttl = 300\nauthoritative = [\"{addr}\"]\n\n\
             [[publish.zone]]\nname = \"dyn.example\"\nbackend = \"rfc2136\"\nserver = \"{addr}\"\ntsig_key_name = \"dkimd-key\"\ntsig_secret_file = \"{secret}\"\nauthoritative = [\"{addr}\"]\n{dyn_extra}\n",
            state = state.display(),
            addr = self.addr(),
            zf = self.zone_file("example.com").display(),
            reload = reload.join(", "),
            secret = self.tsig_secret_file.display(),
        )
    }
}

/// A minimal zone file for `zone` with the given extra lines.
pub fn zone_file(zone: &str, serial: u32, extra: &[String]) -> String {
    let mut z = format!(
        "$TTL 300\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( {serial} 3600 600 86400 300 )\n  IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n"
    );
    for l in extra {
        z.push_str(l);
        z.push('\n');
    }
    z
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
