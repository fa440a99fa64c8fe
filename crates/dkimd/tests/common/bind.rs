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
    _tmp: tempfile::TempDir,
}

/// True when named is installed (see `common::require_peer`).
pub fn have_named() -> bool {
    super::require_peer(
        "BIND named (Debian package bind9)",
        Command::new("named").arg("-v"),
    )
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Named {
    /// Starts named serving each `(zone, zone file text)` as a primary zone.
    pub fn start(zones: &[(&str, String)]) -> Named {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let port = free_port();
        let mut conf = format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n  notify no;\n}};\ncontrols {{ }};\n",
            d = dir.display()
        );
        for (zone, text) in zones {
            let file = dir.join(format!("{zone}.zone"));
            std::fs::write(&file, text).unwrap();
            conf.push_str(&format!(
                "zone \"{zone}\" {{ type primary; file \"{}\"; }};\n",
                file.display()
            ));
        }
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
                    let done = line.contains("running");
                    log.push(line);
                    if done {
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
            _tmp: tmp,
        }
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
