//! Headless Chromium driven over WebDriver (chromedriver), started in its
//! own process group and killed as a group when dropped (killing
//! chromedriver alone leaves Chromium running).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The browser binary (Debian's, without its wrapper script).
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// True when chromedriver and Chromium are installed (see `require_peer`).
pub fn have_chromium() -> bool {
    super::require_peer(
        "Chromium and chromedriver (Debian packages chromium, chromium-driver)",
        Command::new("chromedriver").arg("--version"),
    ) && super::require_peer(
        "Chromium (Debian package chromium)",
        Command::new(CHROMIUM).arg("--version"),
    )
}

pub struct Chrome {
    child: Child,
    /// The WebDriver URL.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Chrome {
    pub fn start() -> Chrome {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromedriver")
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            // Chromium writes its config and temp files here, not in $HOME or /tmp.
            .env("TMPDIR", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("HOME", dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(p) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|r| r.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = tx.send(p);
                }
                // Keep draining so chromedriver never blocks on a full pipe.
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("chromedriver did not say which port it listens on");
        Chrome {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// WebDriver capabilities for headless Chromium with a fresh profile.
    pub fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        let profile = self.dir.path().join("profile");
        let v = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,1100",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        v.as_object().unwrap().clone()
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `target/test-artifacts/web/` (kept after the run).
pub fn artifacts_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_dkimd"));
    let target = exe.parent().and_then(Path::parent).unwrap();
    let dir = target.join("test-artifacts").join("web");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
