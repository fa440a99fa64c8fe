//! A private PowerDNS Authoritative server (Debian's pdns-server with the
//! SQLite backend) on 127.0.0.1: DNS on one free port, its HTTP API and
//! webserver on another, zones loaded with `pdnsutil` before it starts.
//! Stopped by PID.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The API key of the test server.
pub const API_KEY: &str = "dkimd-test-api-key-0123456789";

pub struct Pdns {
    child: Child,
    /// DNS port.
    pub port: u16,
    /// API and webserver port.
    pub api_port: u16,
    /// A file holding [`API_KEY`], mode 0600.
    pub key_file: PathBuf,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// How a test zone is made.
pub struct PdnsZone<'a> {
    pub name: &'a str,
    /// "NATIVE", "MASTER" or "SLAVE".
    pub kind: &'a str,
    /// SOA-EDIT-API metadata ("" for none).
    pub soa_edit_api: &'a str,
}

pub fn have_pdns() -> bool {
    super::require_peer(
        "PowerDNS Authoritative with its SQLite backend (Debian packages pdns-server, pdns-backend-sqlite3)",
        Command::new("sh").args([
            "-c",
            "command -v pdns_server && command -v pdnsutil && test -f /usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
        ]),
    )
}

fn run(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Pdns {
    pub fn start(zones: &[PdnsZone]) -> Pdns {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let db = dir.join("pdns.sqlite3");
        let schema =
            std::fs::read_to_string("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql")
                .unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(&schema).unwrap();
        drop(conn);
        let port = super::free_port();
        let api_port = super::free_port();
        std::fs::write(
            dir.join("pdns.conf"),
            format!(
                "launch=gsqlite3\ngsqlite3-database={db}\nlocal-address=127.0.0.1\nlocal-port={port}\n\
                 api=yes\napi-key={API_KEY}\nwebserver=yes\nwebserver-address=127.0.0.1\nwebserver-port={api_port}\n\
                 webserver-allow-from=127.0.0.0/8\nsocket-dir={dir}\nguardian=no\ndaemon=no\ndisable-syslog=yes\n\
                 zone-cache-refresh-interval=0\n",
                db = db.display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let pdnsutil = |args: &[&str]| {
            run(Command::new("pdnsutil")
                .arg(format!("--config-dir={}", dir.display()))
                .args(args));
        };
        for z in zones {
            if z.kind == "SLAVE" {
                pdnsutil(&["create-secondary-zone", z.name, "127.0.0.2"]);
                continue;
            }
            pdnsutil(&["create-zone", z.name, &format!("ns1.{}", z.name)]);
            pdnsutil(&["add-record", z.name, "ns1", "A", "127.0.0.1"]);
            pdnsutil(&["set-kind", z.name, z.kind]);
            if !z.soa_edit_api.is_empty() {
                pdnsutil(&["set-meta", z.name, "SOA-EDIT-API", z.soa_edit_api]);
            }
        }
        let key_file = dir.join("api.key");
        std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let child = Command::new("pdns_server")
            .arg(format!("--config-dir={}", dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pdns.log")).unwrap())
            .spawn()
            .unwrap();
        let p = Pdns {
            child,
            port,
            api_port,
            key_file,
            dir,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for z in zones.iter().filter(|z| z.kind != "SLAVE") {
            while p.dig(z.name, "SOA").is_empty()
                || p.api("GET", &p.zone_path(z.name), None).0 != 200
            {
                assert!(
                    Instant::now() < deadline,
                    "pdns_server did not serve {}: {}",
                    z.name,
                    p.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pdns.log")).unwrap_or_default()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn zone_path(&self, zone: &str) -> String {
        format!("/api/v1/servers/localhost/zones/{zone}.")
    }

    /// One API request with the right key: (status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut s = match std::net::TcpStream::connect(("127.0.0.1", self.api_port)) {
            Ok(s) => s,
            Err(e) => return (0, e.to_string()),
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Puts TXT records at `name` behind dkimd's back (strings as given,
    /// already quoted as PowerDNS wants them).
    pub fn put_txt(&self, zone: &str, name: &str, contents: &[&str]) {
        let records: Vec<serde_json::Value> = contents
            .iter()
            .map(|c| serde_json::json!({"content": c, "disabled": false}))
            .collect();
        let body = serde_json::json!({"rrsets": [{
            "name": format!("{name}."), "type": "TXT", "ttl": 300,
            "changetype": "REPLACE", "records": records,
        }]});
        let (status, text) = self.api("PATCH", &self.zone_path(zone), Some(&body.to_string()));
        assert_eq!(status, 204, "{text}");
    }

    pub fn dig(&self, name: &str, rtype: &str) -> String {
        super::dig_short(self.port, name, rtype)
    }

    /// TXT records at `name`, strings joined.
    pub fn dig_txt(&self, name: &str) -> Vec<String> {
        super::txt_of_dig(&self.dig(name, "TXT"))
    }

    /// The serial of `zone`'s SOA as served.
    pub fn serial(&self, zone: &str) -> u64 {
        self.dig(zone, "SOA")
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no SOA for {zone}"))
    }

    /// A `[[publish.zone]]` section for `zone` through this server's API,
    /// with this server as the authoritative one, and `extra` lines.
    pub fn zone_section(&self, zone: &str, extra: &str) -> String {
        format!(
            "[[publish.zone]]\nname = \"{zone}\"\nbackend = \"powerdns\"\napi_url = \"{url}\"\napi_key_file = \"{key}\"\nttl = 300\nauthoritative = [\"{addr}\"]\n{extra}\n",
            url = self.api_url(),
            key = self.key_file.display(),
            addr = self.addr(),
        )
    }

    pub fn config_dir(&self) -> &Path {
        &self.dir
    }
}

/// A TLS front for the API (as nginx would be in production): https on
/// 127.0.0.1 with a certificate from a CA of its own, forwarding to the
/// plain-HTTP webserver. Stops when dropped.
pub struct TlsFront {
    pub port: u16,
    /// The CA that signed the front's certificate (PEM).
    pub ca_file: PathBuf,
    /// Another CA, which did not.
    pub other_ca_file: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl Pdns {
    pub fn tls_front(&self) -> TlsFront {
        let tmp = tempfile::tempdir().unwrap();
        let acceptor = super::fakeapi::test_tls(tmp.path(), "IP:127.0.0.1", false);
        let d = tmp.path();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let backend = self.api_port;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        // A handshake the client gives up on is its business.
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(mut plain) =
                            tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        TlsFront {
            port,
            ca_file: d.join("ca.crt"),
            other_ca_file: d.join("other.crt"),
            stop: Some(stop),
            thread: Some(thread),
            _tmp: tmp,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Pdns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
