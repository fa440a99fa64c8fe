//! A `dkimd run` serving the admin page, with a real BIND behind the
//! manager: zone example.com from a file, zone dyn.example by RFC 2136.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::bind::Named;
use super::daemon::Daemon;
use super::*;
use std::path::PathBuf;

pub const USER: &str = "admin";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct WebEnv {
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
    pub named: Named,
    pub daemon: Daemon,
    /// The admin page's port.
    pub port: u16,
}

impl WebEnv {
    /// Starts BIND and dkimd with the admin page on a free port; `admin`
    /// is extra text for the `[admin]` section; the domains are added and
    /// the admin user created before the daemon starts.
    pub fn start(admin: &str, domains: &[&str]) -> WebEnv {
        let named = Named::start_file_and_dynamic();
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("dkimd.toml");
        let sections = format!(
            "[milter]\nsocket = \"inet:127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\n\
             [[publish.zone]]\nname = \"broken.example\"\nbackend = \"bind-zone-file\"\nfile = \"/nonexistent/dkimd-test/broken.example.zone\"\n"
        );
        std::fs::write(
            &config,
            named.dkimd_config(&tmp.path().join("state"), &sections, ""),
        )
        .unwrap();
        let run = |args: &[&str], input: &[u8]| {
            let o = run_with_input(dkimd().arg("--config").arg(&config).args(args), input);
            assert!(o.status.success(), "{args:?}: {o:?}");
        };
        for d in domains {
            run(&["domain", "add", d], b"");
        }
        run(
            &["admin", "passwd", USER],
            format!("{PASSWORD}\n").as_bytes(),
        );
        // Every port is the kernel's choice; dkimd's log says which.
        let daemon = Daemon::start_any_port(&config);
        let port = daemon.admin_port();
        WebEnv {
            tmp,
            config,
            named,
            daemon,
            port,
        }
    }

    /// The admin page's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs a dkimd command with this configuration; returns stdout.
    pub fn dkimd(&self, args: &[&str]) -> std::process::Output {
        dkimd()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// The settings as JSON, from the CLI.
    pub fn settings(&self) -> String {
        let o = self.dkimd(&["--json", "settings"]);
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("state/audit.log")).unwrap_or_default()
    }

    /// Every private key the store holds, as the base64 lines of its PEM.
    pub fn private_key_lines(&self) -> Vec<String> {
        let export = self.tmp.path().join("export.json");
        let o = self.dkimd(&["export", export.to_str().unwrap()]);
        assert!(o.status.success(), "{o:?}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
        std::fs::remove_file(&export).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|k| {
                k["pem"]
                    .as_str()
                    .unwrap()
                    .lines()
                    .filter(|l| !l.starts_with("-----") && l.len() > 20)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
