//! A private PostgreSQL cluster for the fleet tests: `initdb` into a
//! temporary directory (as the `postgres` user when the tests run as
//! root, since initdb refuses root), `pg_ctl` on 127.0.0.1 and a free
//! port, password authentication over TCP, stopped by PID when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The password of the cluster's superuser `dkimd` (loopback only).
pub const PASSWORD: &str = "fleet-test-password";

pub struct Pg {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// A file (mode 0600) with the password, for `store.password_file`.
    pub password_file: PathBuf,
    _keep: tempfile::TempDir,
}

/// The server's programs (`/usr/lib/postgresql/N/bin`).
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// True when a PostgreSQL server is installed (see `common::require_peer`).
pub fn have_postgres() -> bool {
    let bin = bin_dir().unwrap_or_else(|| PathBuf::from("/nonexistent"));
    super::require_peer(
        "PostgreSQL server (Debian package postgresql)",
        Command::new(bin.join("postgres")).arg("--version"),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Pg {
    /// Makes and starts a cluster.
    pub fn start() -> Pg {
        let bin = bin_dir().expect("PostgreSQL server programs");
        let keep = tempfile::Builder::new()
            .prefix("dkimd-pg")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = keep.path().join("pg");
        std::fs::create_dir(&dir).unwrap();
        let as_postgres = is_root();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(keep.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let o = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "chown: {o:?}");
        }
        let password_file = keep.path().join("password");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&password_file)
                .unwrap();
            writeln!(f, "{PASSWORD}").unwrap();
        }
        let pg = Pg {
            port: super::free_port(),
            dir,
            bin,
            as_postgres,
            password_file,
            _keep: keep,
        };
        let data = pg.dir.join("data");
        let o = pg.server_cmd(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "dkimd",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
            ],
        );
        assert!(o.status.success(), "initdb: {}", super::text(&o));
        pg.start_again();
        pg
    }

    fn server_cmd(&self, prog: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(prog);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args).current_dir("/tmp").output().unwrap()
    }

    /// Gives the server a certificate for 127.0.0.1 signed by a new CA,
    /// and TLS on, from the next start; returns the CA's certificate file.
    pub fn enable_tls(&self) -> PathBuf {
        let data = self.dir.join("data");
        let ca = self._keep.path().join("ca.crt");
        let sh = format!(
            "set -e; cd {d}; \
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=dkimd-test-ca -keyout ca.key -out {ca} 2>/dev/null; \
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout {data}/server.key -out server.csr 2>/dev/null; \
             printf 'subjectAltName=IP:127.0.0.1\\n' > ext; \
             openssl x509 -req -in server.csr -CA {ca} -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out {data}/server.crt 2>/dev/null; \
             chmod 600 {data}/server.key",
            d = self._keep.path().display(),
            ca = ca.display(),
            data = data.display()
        );
        let o = Command::new("sh").args(["-c", &sh]).output().unwrap();
        assert!(o.status.success(), "certificates: {}", super::text(&o));
        if self.as_postgres {
            let o = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.key"))
                .arg(data.join("server.crt"))
                .output()
                .unwrap();
            assert!(o.status.success());
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\n");
        std::fs::write(&conf, text).unwrap();
        ca
    }

    /// Starts the server (again), waiting until it takes connections.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let o = self.server_cmd(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-o",
                &opts,
                "-l",
                &self.dir.join("log").display().to_string(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            o.status.success(),
            "pg_ctl start: {}\n{}",
            super::text(&o),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// The server's PID (first line of postmaster.pid), while it runs.
    pub fn pid(&self) -> Option<i32> {
        let t = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        t.lines().next()?.trim().parse().ok()
    }

    /// Stops the server by its PID (SIGINT: fast shutdown, connections
    /// cut), and waits until it is gone.
    pub fn stop(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            for _ in 0..300 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Runs SQL as the superuser on `db`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let o = Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "dkimd",
                "-d",
                db,
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(o.status.success(), "psql {sql}: {}", super::text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Makes a new, empty database and returns its name.
    pub fn new_db(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name.to_string()
    }

    /// The store URL of a database (the password is in `password_file`).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://dkimd@127.0.0.1:{}/{db}", self.port)
    }

    /// `pg_dump` of a database, as text.
    pub fn dump(&self, db: &str) -> String {
        let o = Command::new("pg_dump")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "dkimd",
                db,
            ])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(o.status.success(), "pg_dump: {}", super::text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The `[store]` section for a database, with a key file.
    pub fn store_section(&self, db: &str, key_file: &Path, node: &str) -> String {
        format!(
            "[store]\nurl = \"{}\"\npassword_file = \"{}\"\nkey_file = \"{}\"\nnode_name = \"{node}\"\nheartbeat = 1\npoll_interval = 2\n",
            self.url(db),
            self.password_file.display(),
            key_file.display()
        )
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
