//! A private Postfix instance on 127.0.0.1 for end-to-end tests: its own
//! configuration directory, queue and ports, delivering every message to
//! files through a pipe transport. Started with `postfix -c DIR start`,
//! stopped by the master's PID.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Postfix {
    pub dir: PathBuf,
    /// Plain smtpd.
    pub port: u16,
    /// smtpd with -o milter_macro_daemon_name=ORIGINATING (submission).
    pub submission_port: u16,
    pub out: PathBuf,
    _tmp: tempfile::TempDir,
}

pub fn have_postfix() -> bool {
    super::require_peer(
        "Postfix (Debian package postfix)",
        Command::new("postconf").arg("-d").arg("mail_version"),
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

impl Postfix {
    /// Starts Postfix with `milter` (Postfix notation) as its milter.
    pub fn start(milter: &str, default_action: &str) -> Postfix {
        let tmp = tempfile::Builder::new()
            .prefix("dkimd-postfix")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = super::daemon::free_port();
        let submission_port = super::daemon::free_port();
        let out = dir.join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let save = dir.join("save.sh");
        std::fs::write(&save, format!("#!/bin/sh\nf=$(mktemp {}/msg.XXXXXX) && cat > \"$f.tmp\" && mv \"$f.tmp\" \"$f.eml\" && rm -f \"$f\"\n", out.display())).unwrap();
        std::fs::set_permissions(&save, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {d}/queue\ndata_directory = {d}/data\nmeta_directory = /etc/postfix\n\
                 mail_owner = postfix\nsetgid_group = postdrop\nmyhostname = mx.test.local\nmydomain = test.local\n\
                 inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmydestination =\nlocal_recipient_maps =\n\
                 relay_domains = example.net, example.com, example.org\nmynetworks = 127.0.0.1/32\n\
                 smtpd_relay_restrictions = permit_mynetworks, permit_auth_destination, reject\n\
                 default_transport = savefile\nrelay_transport = savefile\nlocal_transport = savefile\n\
                 maillog_file = {d}/maillog\nmaillog_file_prefixes = /tmp, /var\nsmtpd_milters = {milter}\nnon_smtpd_milters = {milter}\n\
                 milter_default_action = {default_action}\nmilter_protocol = 6\nsmtputf8_enable = no\nbiff = no\n\
                 disable_dns_lookups = yes\nsmtp_dns_support_level = disabled\nsmtpd_banner = $myhostname ESMTP\n\
                 shlib_directory = /usr/lib/postfix\ndaemon_directory = /usr/lib/postfix/sbin\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd\n\
                 127.0.0.1:{submission_port} inet n - n - - smtpd -o milter_macro_daemon_name=ORIGINATING\n\
                 pickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\nqmgr unix n - n 300 1 qmgr\n\
                 rewrite unix - - n - - trivial-rewrite\nbounce unix - - n - 0 bounce\ndefer unix - - n - 0 bounce\n\
                 trace unix - - n - 0 bounce\nverify unix - - n - 1 verify\nflush unix n - n 1000? 0 flush\n\
                 proxymap unix - - n - - proxymap\nsmtp unix - - n - - smtp\nshowq unix n - n - - showq\n\
                 error unix - - n - - error\nretry unix - - n - - error\ndiscard unix - - n - - discard\n\
                 local unix - n n - - local\nanvil unix - - n - 1 anvil\nscache unix - - n - 1 scache\n\
                 postlog unix-dgram n - n - 1 postlogd\n\
                 savefile unix - n n - - pipe user=nobody argv={save}\n",
                save = save.display()
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.join("queue")).unwrap();
        std::fs::create_dir(dir.join("data")).unwrap();
        run(Command::new("chown").arg("postfix").arg(dir.join("data")));
        let o = Command::new("postfix")
            .arg("-c")
            .arg(&dir)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "postfix start failed (Postfix writes its errors to the log): {}",
            std::fs::read_to_string(dir.join("maillog")).unwrap_or_default()
        );
        let pf = Postfix {
            dir,
            port,
            submission_port,
            out,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postfix did not listen: {}",
                pf.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pf
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    pub fn postconf(&self, setting: &str) {
        run(Command::new("postconf")
            .arg("-c")
            .arg(&self.dir)
            .arg("-e")
            .arg(setting));
        run(Command::new("postfix")
            .arg("-c")
            .arg(&self.dir)
            .arg("reload"));
        std::thread::sleep(Duration::from_millis(500));
    }

    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits for the next delivered message and returns it with CRLF line
    /// ends, as it travels (the pipe transport writes LF); removes the file.
    pub fn delivered(&self, secs: u64) -> Option<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.out)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect();
            files.sort();
            if let Some(f) = files.first() {
                let data = std::fs::read(f).unwrap();
                std::fs::remove_file(f).unwrap();
                let mut out = Vec::with_capacity(data.len() + data.len() / 40);
                let mut prev = 0u8;
                for b in data {
                    if b == b'\n' && prev != b'\r' {
                        out.push(b'\r');
                    }
                    out.push(b);
                    prev = b;
                }
                return Some(out);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.dir)
            .arg("stop")
            .output();
        if let Some(pid) = self.master_pid() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).output();
        }
    }
}

/// Sends one message over SMTP from `source` (a loopback address) and
/// returns the server's answer to the end of DATA (or the first refusal).
pub async fn smtp_send(port: u16, source: &str, from: &str, to: &str, message: &[u8]) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }
    let banner = reply(&mut r).await;
    assert!(banner.starts_with("220"), "{banner}");
    for cmd in [
        "EHLO client.test\r\n".to_string(),
        format!("MAIL FROM:<{from}>\r\n"),
        format!("RCPT TO:<{to}>\r\n"),
        "DATA\r\n".to_string(),
    ] {
        w.write_all(cmd.as_bytes()).await.unwrap();
        let a = reply(&mut r).await;
        if !(a.starts_with('2') || a.starts_with('3')) {
            return a;
        }
    }
    let mut data = Vec::new();
    for line in message.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    w.write_all(&data).await.unwrap();
    let a = reply(&mut r).await;
    let _ = w.write_all(b"QUIT\r\n").await;
    a
}

pub fn dir_of(p: &Path) -> PathBuf {
    p.to_path_buf()
}
