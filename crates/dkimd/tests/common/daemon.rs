//! A `dkimd run` process for tests, stopped by PID when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
}

pub use super::free_port;

impl Daemon {
    /// Starts `dkimd --config CONFIG run` and waits until it listens on `port`.
    pub fn start(config: &Path, port: u16) -> Daemon {
        Self::start_with(config, port, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    /// Starts `dkimd --config CONFIG run` on a configuration whose sockets
    /// are bound to port 0 (`inet:127.0.0.1:0`, and `127.0.0.1:0` for the
    /// metrics and the admin page): no port is probed and dropped before;
    /// the ports dkimd was given are read from its log.
    pub fn start_any_port(config: &Path) -> Daemon {
        let mut d = Self::spawn(config, Arc::new(Mutex::new(Vec::new())));
        let prefix = "listening on inet:127.0.0.1:";
        d.wait_until(|d| d.logged_port(prefix).is_some());
        d.port = d.logged_port(prefix).unwrap_or(0);
        d
    }

    /// The port in the first log line that has `prefix` followed by digits.
    fn logged_port(&self, prefix: &str) -> Option<u16> {
        self.log.lock().unwrap().iter().find_map(|l| {
            let rest = &l[l.find(prefix)? + prefix.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    }

    /// The port of the metrics endpoint, from the log (waits up to 10 s).
    pub fn metrics_port(&self) -> u16 {
        self.wait_port("metrics on http://127.0.0.1:")
    }

    /// The port of the admin page, from the log (waits up to 10 s).
    pub fn admin_port(&self) -> u16 {
        self.wait_port("admin page on http://127.0.0.1:")
    }

    fn wait_port(&self, prefix: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = self
                .logged_port(prefix)
                .or_else(|| self.logged_port(&prefix.replace("http://", "https://")))
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix}… in {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it listening on a Unix socket.
    pub fn start_unix(config: &Path, socket: &Path) -> Daemon {
        let s = socket.to_path_buf();
        Self::start_with(config, 0, move || {
            std::os::unix::net::UnixStream::connect(&s).is_ok()
        })
    }

    /// [`Daemon::start_any_port`], run as the Unix user `uid`:`gid` (the
    /// way the installed unit runs it).
    pub fn start_any_port_as(config: &Path, uid: u32, gid: u32) -> Daemon {
        let mut d = Self::spawn_as(config, Arc::new(Mutex::new(Vec::new())), Some((uid, gid)));
        let prefix = "listening on inet:127.0.0.1:";
        d.wait_until(|d| d.logged_port(prefix).is_some());
        d.port = d.logged_port(prefix).unwrap_or(0);
        d
    }

    fn spawn(config: &Path, log: Arc<Mutex<Vec<String>>>) -> Daemon {
        Self::spawn_as(config, log, None)
    }

    fn spawn_as(config: &Path, log: Arc<Mutex<Vec<String>>>, user: Option<(u32, u32)>) -> Daemon {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dkimd"));
        if let Some((uid, gid)) = user {
            // std drops root's supplementary groups when it sets the uid.
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd
            .arg("--config")
            .arg(config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            port: 0,
            log,
        }
    }

    fn start_with(config: &Path, port: u16, ready: impl Fn() -> bool) -> Daemon {
        let mut d = Self::spawn(config, Arc::new(Mutex::new(Vec::new())));
        d.port = port;
        d.wait_until(|_| ready());
        d
    }

    /// Waits until `ready` says so (at most 20 s); panics when dkimd exits.
    fn wait_until(&mut self, ready: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(self) {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("dkimd run exited ({st}): {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "dkimd run did not listen: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until the log has a line containing `what`.
    pub fn wait_log(&self, what: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.log.lock().unwrap().iter().any(|l| l.contains(what)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends a signal by PID.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn path_buf(p: &Path) -> PathBuf {
    p.to_path_buf()
}
