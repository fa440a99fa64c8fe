//! `dkimd bench`: the load generator's options from the command line, and
//! its report as text or JSON.

use super::usage;
use crate::cli::{BenchArgs, BenchMode, BenchServeCmd};
use dkimd::{errln, outln};
use dkimd_bench::{Mode, Options, Report, TestKey};
use std::process::ExitCode;

fn options(a: BenchArgs) -> anyhow::Result<Options> {
    let socket = match a.socket.parse() {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    if a.concurrency == 0 || a.messages == 0 {
        return usage("--messages and --concurrency must be at least 1");
    }
    let mode = match a.mode {
        BenchMode::Sign => Mode::Sign,
        BenchMode::Verify => Mode::Verify,
        BenchMode::Mixed => Mode::Mixed,
    };
    let key = match (mode, &a.key) {
        (Mode::Sign, _) => None,
        (_, None) => return usage("--mode verify and mixed need --key and --selector"),
        (_, Some(path)) => {
            let key = dkimd_core::model::keyfile::load_private_key(path)?;
            let selector = match a.selector.as_deref().unwrap_or("").parse() {
                Ok(s) => s,
                Err(e) => return usage(format!("--selector: {e}")),
            };
            let domain = match a.domain.parse() {
                Ok(d) => d,
                Err(e) => return usage(format!("--domain: {e}")),
            };
            Some(TestKey {
                key,
                selector,
                domain,
            })
        }
    };
    Ok(Options {
        socket,
        messages: a.messages,
        concurrency: a.concurrency,
        per_connection: a.per_connection,
        body_size: a.body_size,
        mode,
        domain: a.domain,
        key,
        pid: a.pid,
        on_first: a.verbose.then(|| -> dkimd_bench::OnFirst {
            std::sync::Arc::new(|first: &str| errln!("dkimd: bench: first message: {first}"))
        }),
        rss_every: a.rss_every,
        now: dkimd_core::clock::now(),
        domains: a.domains.max(1),
        silent_every: a.silent_every,
        setup_pids: a.setup_pid,
    })
}

/// `dkimd bench-serve`: runs the null milter or the delaying DNS proxy
/// until the process is stopped.
pub fn serve(c: BenchServeCmd) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    match c {
        BenchServeCmd::NullMilter { socket } => {
            let addr = match socket.parse() {
                Ok(a) => a,
                Err(e) => return usage(format!("--socket: {e}")),
            };
            rt.block_on(dkimd_bench::serve_null(&addr))
                .map_err(|e| anyhow::anyhow!("null milter on {socket}: {e}"))?;
        }
        BenchServeCmd::DnsDelay {
            listen,
            upstream,
            delay_ms,
            silent_label,
        } => {
            let o = dkimd_bench::DelayOptions {
                listen,
                upstream,
                delay: std::time::Duration::from_millis(delay_ms),
                silent_label: Some(silent_label).filter(|l| !l.is_empty()),
            };
            let stats = std::sync::Arc::new(dkimd_bench::DelayStats::default());
            rt.block_on(dkimd_bench::serve_delay(o, stats))
                .map_err(|e| anyhow::anyhow!("DNS proxy on {listen}: {e}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the load and prints the report; exit code 1 when not every
/// message was signed (or verified as pass).
pub fn run(a: BenchArgs, json: bool) -> anyhow::Result<ExitCode> {
    let o = options(a)?;
    let r = match dkimd_bench::run(&o) {
        Ok(r) => r,
        Err(dkimd_bench::Error::Usage(m)) => return usage(m),
        Err(e) => return Err(e.into()),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&r.to_json())?);
    } else {
        print_text(&r);
    }
    if !r.passed() {
        errln!(
            "dkimd: bench: only {} of {} messages were {}",
            r.ok,
            r.wanted,
            if r.mode == Mode::Verify {
                "verified as pass"
            } else {
                "signed"
            }
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(r: &Report) {
    outln!(
        "{} {} messages, body {} B, concurrency {}: {:.0} msg/s, latency p50 {:.2} ms p99 {:.2} ms",
        r.mode.as_str(),
        r.messages,
        r.body_size,
        r.concurrency,
        r.rate(),
        r.p50_ms,
        r.p99_ms
    );
    if let (Some(c), Some(h), Some(p)) = (r.milter_cpu_ms_per_message(), r.vmhwm_kb, r.pss_kb) {
        outln!(
            "milter: {c:.3} ms CPU per message, peak RSS {} kB (VmHWM {h} kB), PSS now {p} kB, RSS {} kB at start, {} kB at end",
            r.peak_rss_kb.unwrap_or(0),
            r.rss_start_kb.unwrap_or(0),
            r.rss_end_kb.unwrap_or(0)
        );
    }
    if !r.rss_curve.is_empty() {
        let points: Vec<String> = r
            .rss_curve
            .iter()
            .map(|(n, kb)| format!("{n}:{kb}"))
            .collect();
        outln!("milter RSS (messages sent:kB): {}", points.join(" "));
    }
    outln!(
        "load tool: {:.3} ms CPU per message",
        r.own_cpu_ms_per_message()
    );
    if r.setup_cpu_s > 0.0 {
        outln!(
            "setup processes: {:.3} ms CPU per message",
            r.setup_cpu_s * 1000.0 / r.messages.max(1) as f64
        );
    }
    outln!(
        "other processes: {:.1} % of a core (steal {:.1} %)",
        r.others_core_share() * 100.0,
        r.steal_s * 100.0 / r.seconds.max(1e-9)
    );
    if r.silent > 0 {
        outln!(
            "from a silent name server's domain: {} messages, latency p50 {:.0} ms (dkim=temperror expected)",
            r.silent,
            r.silent_p50_ms
        );
    }
    let (good, n) = (r.ok, r.messages);
    match r.mode {
        Mode::Mixed => {
            let [signed, pass, fail, aborted] = r.kinds;
            outln!(
                "as expected: {good} of {n} (signed {signed}, dkim=pass {pass}, dkim=fail {fail}, aborted {aborted})"
            );
        }
        Mode::Verify => outln!("dkim=pass: {good} of {n}"),
        Mode::Sign => outln!("signed: {good} of {n} (a={})", r.algorithms.join(", ")),
    }
}
