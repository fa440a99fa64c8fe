//! Fleet benchmarks, not tests: `bench/fleet.sh` runs them (`cargo test
//! --release --test fleet_bench`; `cargo test` alone does not, see
//! Cargo.toml). Figures go to BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::daemon::Daemon;
use common::fleet::*;
use common::*;
use std::time::{Duration, Instant};

/// Percentiles of durations (sorted in place).
fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A benchmark, not a test (`bench/fleet.sh` runs it): 100 changes through
/// node A's command line, each timed from the command's exit until node C
/// signs mail of the new domain; p50 and p99 printed for BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_propagation_latency() {
    let f = Fleet::start("latency");
    let a = f.node("a", NODE_SECTIONS);
    let b = f.node("b", NODE_SECTIONS);
    let c = f.node("c", NODE_SECTIONS);
    ok(&a, &["domain", "add", "dyn.example"]);
    ok(&a, &["enable", "--selector", "f1"]);
    let _da = Daemon::start_any_port(&a);
    let _db = Daemon::start_any_port(&b);
    let dc = Daemon::start_any_port(&c);
    let mut times = Vec::new();
    for i in 0..100 {
        let d = format!("p{i}.dyn.example");
        ok(&a, &["domain", "add", &d]);
        times.push(signs_within(dc.port, &d, 30).await);
    }
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let (p50, p99) = (percentile(&mut times, 0.5), percentile(&mut times, 0.99));
    println!(
        "propagation A(cli) -> C(signs), 100 changes: p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3
    );
}

/// A benchmark (`bench/fleet.sh`): 10,000 domains in one PostgreSQL store
/// on the global keys, published by RFC 2136 into BIND: the time `enable`
/// takes to publish 20,000 records, `status` with its live lookups, the
/// page's front page, and a daemon's RSS with every domain loaded.
#[test]
fn bench_ten_thousand_domains() {
    let n: usize = std::env::var("DKIMD_BENCH_DOMAINS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let f = Fleet::start("scale");
    let a = f.node(
        "a",
        "[milter]\nsocket = \"inet:127.0.0.1:0\"\nkey_step_interval = 600\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    // The domains arrive as one import (one transaction).
    let file = f.tmp.path().join("domains.json");
    let domains: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"name": format!("s{i}.dyn.example"), "dns": true, "mail": true, "dkim": "default"}))
        .collect();
    std::fs::write(
        &file,
        serde_json::json!({"format": "dkimd-export-2", "settings": {}, "domains": domains, "keys": []}).to_string(),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let t = Instant::now();
    ok(&a, &["import", file.to_str().unwrap()]);
    println!("import of {n} domains: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let o = run(&a, &["enable", "--selector", "big"]);
    println!(
        "enable, {} records by RFC 2136: {:.1} s (exit {:?})",
        2 * n,
        t.elapsed().as_secs_f64(),
        o.status.code()
    );
    let o = run_with_input(
        dkimd()
            .arg("--config")
            .arg(&a)
            .args(["admin", "passwd", "ops"]),
        b"a long enough password\n",
    );
    assert!(o.status.success());
    let d = Daemon::start_any_port(&a);
    // The daemon's first round (30 s after it starts) keeps the live check.
    let live = f.tmp.path().join("a/state/live.json");
    let until = Instant::now() + Duration::from_secs(300);
    while !live.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    for args in [
        &["--json", "status"][..],
        &["--json", "status", "--live"][..],
    ] {
        let t = Instant::now();
        let o = run(&a, args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        println!(
            "{} ({} keys, from the daemon's check: {}): {:.1} s (exit {:?})",
            args[1..].join(" "),
            2 * n,
            !v["dns_checked_at"].is_null(),
            t.elapsed().as_secs_f64(),
            o.status.code()
        );
    }
    println!(
        "daemon with {n} domains on the global keys: RSS {} MB",
        common::mta::rss_kb(d.pid()) / 1024
    );
    let mut page = http::Client::new(d.admin_port());
    page.login("ops", "a long enough password");
    for path in ["/", "/?page=100", "/?q=s9999", "/?live=1"] {
        let t = Instant::now();
        let r = page.get(path);
        println!(
            "front page {path} with {n} domains: {:.0} ms, {} KB (status {})",
            t.elapsed().as_secs_f64() * 1e3,
            r.body.len() / 1024,
            r.status
        );
    }
}
