//! The benchmark's helpers (issue 20), against real parts: the null milter
//! driven by `dkimd bench` (the load tool's floor), the delaying DNS proxy
//! in front of a real BIND (checked with dig), and a cold-cache
//! verification run through it: `dkimd run` looks up every message's key,
//! each under a domain of its own, and gives up on a silent name server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::{have_named, Named};
use common::daemon::Daemon;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `dkimd bench-serve …` process, killed when dropped.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str]) -> Helper {
    Helper(
        dkimd()
            .arg("bench-serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bench_json(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let o = dkimd()
        .arg("--json")
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (
        o.status.code(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The null milter answers each kind of message as dkimd would (a
/// DKIM-Signature for a trusted client, dkim=pass otherwise), without
/// doing the work; the load tool measures it like any milter.
#[test]
fn null_milter_is_driven_like_any_milter() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("null.sock");
    let null = serve(&[
        "null-milter",
        "--socket",
        &format!("unix:{}", sock.display()),
    ]);
    wait_for("the null milter", || sock.exists());
    let addr = format!("unix:{}", sock.display());
    let pid = null.0.id().to_string();
    let (code, v, err) = bench_json(&[
        "--socket",
        &addr,
        "--pid",
        &pid,
        "--messages",
        "300",
        "--concurrency",
        "4",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["ok"], 300, "{v}");
    assert_eq!(v["algorithms"], serde_json::json!(["null"]), "{v}");
    assert!(v["milter_cpu_ms_per_message"].is_number(), "{v}");
    assert!(v["others_core_share"].as_f64().unwrap() >= 0.0, "{v}");
    // Verify mode: dkim=pass comes back for every message.
    let key = keygen(tmp.path(), "ed25519", "nul");
    let keyfile = key.path.to_str().unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "--socket",
            &addr,
            "--mode",
            "verify",
            "--key",
            keyfile,
            "--selector",
            "nul",
            "--messages",
            "40",
        ];
        args.extend_from_slice(extra);
        bench_json(&args)
    };
    let (code, v, err) = verify(&["--domains", "40"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["ok"], 40, "{v}");
    // Messages that must come back with dkim=temperror do not count when
    // they get dkim=pass: the tool checks each kind of answer.
    let (code, v, err) = verify(&["--silent-every", "10"]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], 36, "{v}");
    assert_eq!(v["silent_messages"], 4, "{v}");
    assert!(err.contains("only 36 of 40"), "{err}");
}

fn cold_zone(record: &str) -> String {
    format!(
        "$TTL 300\n@ IN SOA ns1 hostmaster ( 1 3600 600 86400 300 )\n  IN NS ns1\nns1 IN A 127.0.0.1\n* IN TXT {}\n",
        record
            .as_bytes()
            .chunks(200)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn dig_at(port: u16, name: &str, time: &str) -> (String, Duration) {
    let started = Instant::now();
    let o = Command::new("dig")
        .args([
            "+short",
            "+tries=1",
            &format!("+time={time}"),
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            name,
            "TXT",
        ])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        started.elapsed(),
    )
}

/// A BIND serving the wildcard key record under cold.test, and the
/// delaying proxy in front of it on `port`, answering.
fn proxied_bind(delay_ms: u32) -> (tempfile::TempDir, GeneratedKey, Named, Helper, u16) {
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "rsa", "bench");
    let named = Named::start(&[("cold.test", cold_zone(&key.record))]);
    let port = free_port();
    let proxy = serve(&[
        "dns-delay",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--upstream",
        &named.addr(),
        "--delay-ms",
        &delay_ms.to_string(),
    ]);
    wait_for("the proxy", || {
        !dig_at(port, "s._domainkey.d0.cold.test", "1").0.is_empty()
    });
    (tmp, key, named, proxy, port)
}

/// The proxy passes queries to BIND and hands back its answers no sooner
/// than the delay; a name with the silent label gets no answer at all.
#[test]
fn delaying_proxy_answers_late_and_silent_names_never() {
    if !have_named() {
        return;
    }
    let (_tmp, key, _named, _proxy, port) = proxied_bind(300);
    let (out, took) = dig_at(port, "bench._domainkey.d1.a.cold.test", "2");
    assert_eq!(txt_of_dig(&out), vec![key.record.clone()], "{out}");
    // The delay is the proxy's job, not a speed: an answer sooner than it
    // would mean the proxy did not wait.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let (out, _) = dig_at(port, "bench._domainkey.d1.silent.cold.test", "1");
    assert!(txt_of_dig(&out).is_empty(), "{out}");
    assert!(
        out.contains("timed out") || out.contains("no servers"),
        "{out}"
    );
}

fn write_config(path: &Path, state: &Path, dns: &str) {
    std::fs::write(
        path,
        format!(
            "state_dir = \"{}\"\n[dns]\nnameservers = [\"{dns}\"]\ntimeout = 1\n[milter]\nsocket = \"inet:127.0.0.1:0\"\nlookup_timeout = 3\n",
            state.display()
        ),
    )
    .unwrap();
}

/// Cold-cache verification as bench/run.sh runs it: every message from a
/// domain of its own, every key looked up through the delaying proxy, one
/// message in ten from a silent name server's domain; dkimd says pass for
/// the others and temperror for those.
#[test]
fn cold_cache_verification_through_the_proxy() {
    if !have_named() {
        return;
    }
    let (tmp, key, _named, proxy, port) = proxied_bind(30);
    let config = tmp.path().join("dkimd.toml");
    write_config(
        &config,
        &tmp.path().join("state"),
        &format!("127.0.0.1:{port}"),
    );
    let daemon = Daemon::start_any_port(&config);
    let addr = format!("inet:127.0.0.1:{}", daemon.port);
    let pid = daemon.pid().to_string();
    let proxy_pid = proxy.0.id().to_string();
    let (code, v, err) = bench_json(&[
        "--socket",
        &addr,
        "--pid",
        &pid,
        "--setup-pid",
        &proxy_pid,
        "--mode",
        "verify",
        "--key",
        key.path.to_str().unwrap(),
        "--selector",
        "bench",
        "--domain",
        "r1.cold.test",
        "--domains",
        "60",
        "--messages",
        "60",
        "--concurrency",
        "8",
        "--silent-every",
        "10",
    ]);
    assert_eq!(code, Some(0), "{v}\n{err}\n{}", daemon.log_text());
    assert_eq!(v["ok"], 60, "{v}");
    assert_eq!(v["silent_messages"], 6, "{v}");
    assert!(v["setup_cpu_ms_per_message"].is_number(), "{v}");
    // Every key was looked up: the daemon's key cache held none of them.
    assert!(v["latency_ms_p50"].as_f64().unwrap() >= 30.0, "{v}");
}
