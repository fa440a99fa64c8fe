//! A fleet for tests and benchmarks: a private PostgreSQL cluster and BIND,
//! nodes' configurations on one store, and milter helpers that tell
//! whether a node signs.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::bind::Named;
use super::mta::as_milter;
use super::pg::Pg;
use super::{dkimd, text};
use milter::client::Client;
use milter::server::ListenAddr;
use milter::Reply;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// A PostgreSQL cluster and BIND, and the nodes' configurations.
pub struct Fleet {
    pub pg: Pg,
    pub named: Named,
    pub db: String,
    pub kek: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl Fleet {
    pub fn start(db: &str) -> Fleet {
        let pg = Pg::start();
        let db = pg.new_db(db);
        let named = Named::start_file_and_dynamic();
        let tmp = tempfile::tempdir().unwrap();
        let kek = tmp.path().join("store.key");
        let o = dkimd()
            .args(["store", "new-key-file"])
            .arg(&kek)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        Fleet {
            pg,
            named,
            db,
            kek,
            tmp,
        }
    }

    /// A node's configuration: its own state directory, the shared store,
    /// BIND for DNS, and `sections` (milter, admin).
    pub fn node(&self, name: &str, sections: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("dkimd.toml");
        let store = self.pg.store_section(&self.db, &self.kek, name);
        std::fs::write(
            &config,
            self.named
                .dkimd_config(&dir.join("state"), &format!("{store}\n{sections}"), ""),
        )
        .unwrap();
        config
    }
}

pub fn run(config: &Path, args: &[&str]) -> Output {
    dkimd()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

pub fn ok(config: &Path, args: &[&str]) -> String {
    let o = run(config, args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn json(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let o = run(config, &a);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o)))
}

pub fn export(config: &Path, file: &Path) -> serde_json::Value {
    let _ = std::fs::remove_file(file);
    ok(config, &["export", file.to_str().unwrap()]);
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// Sends one message from a trusted client through a node's milter and
/// returns the selectors it was signed with.
pub async fn sign_at(port: u16, from_domain: &str) -> Result<Vec<String>, String> {
    let raw = format!(
        "From: Joe <joe@{from_domain}>\r\nTo: x@example.net\r\nSubject: fleet\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <f@{from_domain}>\r\n\r\nHello fleet.\r\n"
    );
    let addr = ListenAddr::Tcp(format!("127.0.0.1:{port}").parse().unwrap());
    let mut c = Client::connect(&addr).await.map_err(|e| e.to_string())?;
    c.negotiate().await.map_err(|e| e.to_string())?;
    let m = as_milter(raw.as_bytes(), 4096);
    c.connect_stage(&m, "client.test", "127.0.0.1")
        .await
        .map_err(|e| e.to_string())?;
    let out = c.message(&m).await.map_err(|e| e.to_string())?;
    let _ = c.quit().await;
    let mut selectors: Vec<String> = out
        .modifications
        .iter()
        .filter_map(|r| match r {
            Reply::InsertHeader { name, value, .. } if name == "DKIM-Signature" => {
                String::from_utf8_lossy(value)
                    .split(';')
                    .map(str::trim)
                    .find_map(|t| t.strip_prefix("s=").map(str::to_string))
            }
            _ => None,
        })
        .collect();
    selectors.sort();
    Ok(selectors)
}

/// Waits up to `secs` (a deadline against a hang, not a measurement) for
/// node `port` to sign mail of `domain`; the time it took.
pub async fn signs_within(port: u16, domain: &str, secs: u64) -> Duration {
    let start = Instant::now();
    loop {
        if sign_at(port, domain).await.is_ok_and(|s| !s.is_empty()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "node on port {port} did not sign {domain} within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub const NODE_SECTIONS: &str =
    "[milter]\nsocket = \"inet:127.0.0.1:0\"\nkey_step_interval = 2\ntrusted_networks = [\"127.0.0.0/8\"]\n";
