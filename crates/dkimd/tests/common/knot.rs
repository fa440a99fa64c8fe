//! A private Knot DNS server on 127.0.0.1 with one zone open to
//! TSIG-signed dynamic updates (key `dkimd-key`), stopped by PID.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::bind::TSIG_SECRET;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Knot {
    child: Child,
    pub port: u16,
    pub tsig_secret_file: PathBuf,
    _tmp: tempfile::TempDir,
}

pub fn have_knot() -> bool {
    super::require_peer(
        "Knot DNS (Debian package knot)",
        Command::new("knotd").arg("--version"),
    )
}

impl Knot {
    pub fn start(zone: &str, zone_text: &str) -> Knot {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().to_path_buf();
        let port = super::free_port();
        std::fs::write(d.join(format!("{zone}.zone")), zone_text).unwrap();
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\nkey:\n  - id: dkimd-key\n    algorithm: hmac-sha256\n    secret: {TSIG_SECRET}\n\
             acl:\n  - id: update\n    key: dkimd-key\n    action: update\ndatabase:\n    storage: {d}\ntemplate:\n  - id: default\n    storage: {d}\n\
             zone:\n  - domain: {zone}\n    file: {zone}.zone\n    acl: update\nlog:\n  - target: stderr\n    any: info\n",
            d = d.display()
        );
        std::fs::write(d.join("knot.conf"), conf).unwrap();
        let secret = d.join("tsig.secret");
        std::fs::write(
            &secret,
            format!("key \"dkimd-key\" {{ algorithm hmac-sha256; secret \"{TSIG_SECRET}\"; }};\n"),
        )
        .unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let child = Command::new("knotd")
            .arg("-c")
            .arg(d.join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let k = Knot {
            child,
            port,
            tsig_secret_file: secret,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while k.dig(zone, "SOA").is_empty() {
            assert!(Instant::now() < deadline, "knotd did not serve {zone}");
            std::thread::sleep(Duration::from_millis(100));
        }
        k
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn dig(&self, name: &str, rtype: &str) -> String {
        super::dig_short(self.port, name, rtype)
    }

    /// TXT records at `name`, strings joined.
    pub fn dig_txt(&self, name: &str) -> Vec<String> {
        super::txt_of_dig(&self.dig(name, "TXT"))
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
