//! Helpers shared by dkimd's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bind;
pub mod chrome;
pub mod cloudflare;
pub mod daemon;
pub mod digitalocean;
pub mod env;
pub mod fakeapi;
pub mod fakedns;
pub mod fleet;
pub mod http;
pub mod knot;
pub mod mta;
pub mod pdns;
pub mod pg;
pub mod postfix;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A port free for TCP and UDP on 127.0.0.1, chosen outside the kernel's
/// ephemeral range (32768–60999) so that sockets other tests bind to port 0
/// cannot take it between this check and the server's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 10_000 + (seed.wrapping_add(n.wrapping_mul(7919)) % 22_000) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
}

/// The dkimd binary under test.
pub fn dkimd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dkimd"))
}

/// Runs `dkimd --config CONFIG ARGS…` and kills it with SIGKILL after
/// `after` (if it has not finished by then).
pub fn run_killed(config: &Path, args: &[String], after: std::time::Duration) {
    let mut child = dkimd()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill();
    child.wait().unwrap();
}

/// A key made by `dkimd keygen --json` for example.com.
pub struct GeneratedKey {
    /// The private key file.
    pub path: PathBuf,
    /// The DNS record text.
    pub record: String,
    /// The zone file line.
    pub zone_line: String,
}

/// Runs `dkimd keygen` for example.com in `dir`.
pub fn keygen(dir: &Path, alg: &str, selector: &str) -> GeneratedKey {
    let o = dkimd()
        .args([
            "keygen",
            "--algorithm",
            alg,
            "--domain",
            "example.com",
            "--selector",
            selector,
            "--json",
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    GeneratedKey {
        path: PathBuf::from(v["private_key"].as_str().unwrap()),
        record: v["record"].as_str().unwrap().to_string(),
        zone_line: v["zone_line"].as_str().unwrap().to_string(),
    }
}

/// Runs `cmd` with `stdin` as standard input.
pub fn run_with_input(cmd: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

/// True when a peer program is usable. When it is not: on CI (`CI=true`)
/// the test fails, since the test setup should have installed it; elsewhere
/// the test is skipped with a loud message.
pub fn require_peer(what: &str, check: &mut Command) -> bool {
    let ok = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what} is missing: the test setup (scripts/test-deps) must install it");
        }
        eprintln!("\n*** SKIPPED: {what} is not installed; run scripts/test-deps ***\n");
    }
    ok
}

/// dkimpy (python3-dkim) is usable through Debian's python.
pub fn have_dkimpy() -> bool {
    require_peer(
        "dkimpy (Debian package python3-dkim)",
        Command::new("/usr/bin/python3").args(["-c", "import dkim, nacl"]),
    )
}

/// OpenDKIM's daemon binary (for `opendkim -t`).
pub fn have_opendkim() -> bool {
    require_peer(
        "opendkim (Debian package opendkim)",
        Command::new("opendkim").arg("-V"),
    )
}

/// The dkimpy driver script.
pub fn dkimpy_tool() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dkimpy_tool.py")
}

/// Verifies files with dkimpy; returns (file, passed, reason) per file.
pub fn dkimpy_verify(dns_file: &Path, files: &[PathBuf]) -> Vec<(PathBuf, bool, String)> {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(dkimpy_tool())
        .arg("verify")
        .arg(dns_file)
        .args(files);
    let out = cmd.output().expect("run dkimpy");
    dkimpy_results(out, files.len())
}

/// The tool's lines (FILE, pass or fail, reason), one per file.
fn dkimpy_results(out: Output, files: usize) -> Vec<(PathBuf, bool, String)> {
    assert!(
        out.status.success(),
        "dkimpy tool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let res: Vec<_> = text
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let f = PathBuf::from(parts.next().unwrap());
            let r = parts.next().unwrap() == "pass";
            (f, r, parts.next().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(res.len(), files, "dkimpy answered for every file");
    res
}

/// Verifies files with dkimpy, which asks the DNS server at `addr`
/// (IP:PORT) and follows CNAMEs; returns (file, passed, reason) per file.
pub fn dkimpy_verify_live(addr: &str, files: &[PathBuf]) -> Vec<(PathBuf, bool, String)> {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(dkimpy_tool())
        .args(["verify-live", ip, port])
        .args(files)
        .output()
        .expect("run dkimpy");
    dkimpy_results(out, files.len())
}

/// Verifies one file with `opendkim -t`, keys from a TestPublicKeys file.
/// Returns (passed, what opendkim printed).
pub fn opendkim_verify(dir: &Path, dns_file: &Path, file: &Path) -> (bool, String) {
    let keys = dir.join("opendkim-keys.txt");
    if !keys.exists() {
        // TestPublicKeys: "NAME VALUE" per line.
        let text = std::fs::read_to_string(dns_file).unwrap();
        let converted: String = text
            .lines()
            .map(|l| l.replacen('\t', " ", 1) + "\n")
            .collect();
        std::fs::write(&keys, converted).unwrap();
    }
    let conf = dir.join("opendkim.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            format!(
                "Mode v\nSyslog no\nAuthservID test.invalid\nTestPublicKeys {}\nMinimumKeyBits 1024\n",
                keys.display()
            ),
        )
        .unwrap();
    }
    // `opendkim -t` ignores a file whose last line has no line end ("message
    // not signed", also for dkimpy's signatures). Over SMTP a message always
    // ends in CRLF, and a body without its final CRLF canonicalizes exactly as
    // one with it (RFC 6376 §3.4.3, §3.4.4), so such a file is handed over
    // with the CRLF added.
    let contents = std::fs::read(file).unwrap();
    let file = if contents.ends_with(b"\n") {
        file.to_path_buf()
    } else {
        let copy = file.with_extension("crlf.eml");
        let mut c = contents;
        c.extend_from_slice(b"\r\n");
        std::fs::write(&copy, c).unwrap();
        copy
    };
    let out = Command::new("opendkim")
        .arg("-x")
        .arg(&conf)
        .arg("-t")
        .arg(&file)
        .output()
        .expect("run opendkim");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("succeeded"), text)
}

/// Writes a dns file (NAME<TAB>VALUE lines).
pub fn write_dns_file(path: &Path, records: &[(String, String)]) {
    let text: String = records.iter().map(|(n, v)| format!("{n}\t{v}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// The bodies every interoperability test runs through.
pub fn test_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut big = Vec::with_capacity(1_100_000);
    let mut n = 0u32;
    while big.len() < 1_000_000 {
        big.extend_from_slice(
            format!("Line {n}: the quick brown fox  jumps over\tthe lazy dog. \r\n").as_bytes(),
        );
        n += 1;
    }
    vec![
        ("empty", Vec::new()),
        (
            "no-final-crlf",
            b"Hello world, no line end at the end".to_vec(),
        ),
        (
            "trailing-blank-lines",
            b"Hello\r\n\r\n\r\n \r\n\t\r\n\r\n".to_vec(),
        ),
        (
            "whitespace-runs",
            b"a  b\t\tc   \r\n   leading spaces\r\n\tTAB \t \r\nend \t\r\n".to_vec(),
        ),
        (
            "8bit",
            "Gr\u{fc}\u{df}e aus K\u{f6}ln, \u{4f60}\u{597d} \u{1f600}\r\n"
                .bytes()
                .chain(b"raw \xff\xfe\x80 bytes\r\n".iter().copied())
                .collect(),
        ),
        ("1mb", big),
        (
            "long-headers",
            b"Body of a message whose header lines are long.\r\n".to_vec(),
        ),
    ]
}

/// A complete message for a body name (the long-headers case gets long,
/// folded header fields).
pub fn test_message(name: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"From: Joe Sender <joe@example.com>\r\n");
    if name == "long-headers" {
        m.extend_from_slice(b"To: first.recipient@example.net, second.recipient@example.net,\r\n third.recipient@example.org,\r\n\tfourth.recipient@example.org\r\n");
        m.extend_from_slice(b"Subject: A subject line that goes on and on, well past the\r\n  seventy-eight characters a line should have,   with   odd   spacing \r\n\tand a tab-indented continuation\r\n");
        let long: String = (0..40).map(|i| format!(" <ref{i}@example.com>")).collect();
        m.extend_from_slice(format!("References:{long}\r\n").as_bytes());
    } else {
        m.extend_from_slice(b"To: Suzie <suzie@example.net>\r\n");
        m.extend_from_slice(format!("Subject: interop test {name}\r\n").as_bytes());
    }
    m.extend_from_slice(b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n");
    m.extend_from_slice(format!("Message-ID: <{name}.test@example.com>\r\n").as_bytes());
    m.extend_from_slice(b"MIME-Version: 1.0\r\n");
    m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    if name == "8bit" {
        m.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(body);
    m
}

/// Tampered copies of a signed message: one with a body byte changed, one
/// with a signed header changed.
pub fn tampered(signed: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let split = signed
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header/body separator")
        + 4;
    let mut body_changed = signed.to_vec();
    if split < body_changed.len() {
        let i = split + (body_changed.len() - split) / 2;
        body_changed[i] = if body_changed[i] == b'X' { b'Y' } else { b'X' };
    } else {
        body_changed.extend_from_slice(b"appended line\r\n");
    }
    let text = signed.to_vec();
    let pos = text
        .windows(9)
        .position(|w| w.eq_ignore_ascii_case(b"\nSubject:"))
        .expect("a Subject field")
        + 10;
    let mut header_changed = text.clone();
    header_changed.insert(pos, b'!');
    vec![("body", body_changed), ("header", header_changed)]
}

/// A finished command's standard output and error, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Seconds since the epoch now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `secs` as RFC 3339, as `rotate --step --at` takes it.
pub fn at(secs: u64) -> String {
    let o = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// The p= of a served key record ("?" when it has none).
pub fn p_of(record: &str) -> String {
    record
        .split(';')
        .map(str::trim)
        .find_map(|t| t.strip_prefix("p="))
        .unwrap_or("?")
        .to_string()
}

/// `dig +short` of one name and type at the server on 127.0.0.1:`port`
/// (one try, one second).
pub fn dig_short(port: u16, name: &str, rtype: &str) -> String {
    let o = Command::new("dig")
        .args([
            "+short",
            "+tries=1",
            "+time=1",
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            name,
            rtype,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The TXT records in `dig +short` output, each record's strings joined.
pub fn txt_of_dig(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split('"').skip(1).step_by(2).collect::<String>())
        .filter(|s| !s.is_empty())
        .collect()
}
