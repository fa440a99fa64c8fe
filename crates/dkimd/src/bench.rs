//! `dkimd bench`: a milter load generator. It plays Postfix's side of the
//! milter conversation (protocol 6, several messages per connection, the
//! macros Postfix sends) against any milter, and reports throughput,
//! latency, the milter's CPU time and memory (from /proc), and its own CPU.
//! A run in which not every message was signed (or verified as pass) fails.

use crate::cli::BenchArgs;
use anyhow::{bail, Context};
use milter::client::{Client, Message};
use milter::server::ListenAddr;
use milter::Reply;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// CPU ticks (utime + stime) of a process and all its descendants.
fn tree_ticks(root: u32) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![root];
    let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    // Fields after the command name, which is in parentheses.
                    let rest = stat.rsplit_once(')')?.1;
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let ppid = f.get(1)?.parse().ok()?;
                    let ut: u64 = f.get(11)?.parse().ok()?;
                    let st: u64 = f.get(12)?.parse().ok()?;
                    Some((pid, ppid, ut + st))
                })
                .collect()
        })
        .unwrap_or_default();
    while let Some(p) = stack.pop() {
        for (pid, ppid, ticks) in &all {
            if *pid == p {
                total += ticks;
            }
            if *ppid == p {
                stack.push(*pid);
            }
        }
    }
    total
}

fn ticks_per_second() -> f64 {
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    100.0
}

/// A memory figure (kB) from /proc/PID/status or smaps_rollup, summed over the tree.
fn tree_mem(root: u32, file: &str, key: &str) -> u64 {
    let mut pids = vec![root];
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let mut cur = pid;
            for _ in 0..32 {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{cur}/stat")) else {
                    break;
                };
                let Some(ppid) = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
                else {
                    break;
                };
                if ppid == root {
                    pids.push(pid);
                    break;
                }
                if ppid <= 1 {
                    break;
                }
                cur = ppid;
            }
        }
    }
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/{file}")).ok())
        .filter_map(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let t: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    t as f64 / ticks_per_second()
}

/// A plain-text message of about `size` body bytes.
pub fn message_text(n: usize, size: usize, from_domain: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Load Sender <load@{from_domain}>\r\nTo: Load Recipient <rcpt@example.net>\r\nSubject: dkimd load test {n}\r\n\
         Date: Tue, 24 Nov 2026 16:00:00 +0000\r\nMessage-ID: <load{n}@{from_domain}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    let line =
        b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n";
    while m.len() < size + 300 {
        m.extend_from_slice(line);
    }
    m
}

fn to_milter(raw: &[u8], i: usize) -> anyhow::Result<Message> {
    let msg = dkim::Message::parse(raw)?;
    let headers = msg
        .headers()
        .iter()
        .map(|h| {
            (
                String::from_utf8_lossy(h.name()).into_owned(),
                String::from_utf8_lossy(h.value())
                    .replace("\r\n", "\n")
                    .into_bytes(),
            )
        })
        .collect();
    let qid = format!("{:X}", 0xA000_0000u64 + i as u64);
    let body = msg.body().chunks(65535).map(<[u8]>::to_vec).collect();
    Ok(Message {
        macros: vec![
            (
                b'M',
                vec![
                    ("{mail_addr}".into(), "load@example.com".into()),
                    ("i".into(), qid.clone()),
                ],
            ),
            (
                b'R',
                vec![("{rcpt_addr}".into(), "rcpt@example.net".into())],
            ),
            (b'L', vec![("i".into(), qid.clone())]),
            (b'N', vec![("i".into(), qid.clone())]),
            (b'E', vec![("i".into(), qid)]),
        ],
        mail_from: vec!["<load@example.com>".into()],
        rcpt_to: vec!["<rcpt@example.net>".into()],
        headers,
        body,
    })
}

/// The `a=` values of the DKIM-Signature fields a milter added.
fn algorithms(mods: &[Reply]) -> Vec<String> {
    mods.iter()
        .filter_map(|m| match m {
            Reply::InsertHeader { name, value, .. } | Reply::AddHeader { name, value }
                if name.eq_ignore_ascii_case("DKIM-Signature") =>
            {
                dkim::parse_tag_list(value).ok().and_then(|tags| {
                    tags.into_iter()
                        .find(|t| t.name == "a")
                        .map(|t| t.value_no_ws())
                })
            }
            _ => None,
        })
        .collect()
}

fn counts(mods: &[Reply], verify: bool) -> bool {
    mods.iter().any(|m| match m {
        Reply::InsertHeader { name, value, .. } | Reply::AddHeader { name, value } => {
            if verify {
                name.eq_ignore_ascii_case("Authentication-Results")
                    && String::from_utf8_lossy(value).contains("dkim=pass")
            } else {
                name.eq_ignore_ascii_case("DKIM-Signature")
            }
        }
        _ => false,
    })
}

pub fn run(a: BenchArgs, json: bool) -> anyhow::Result<ExitCode> {
    let addr: ListenAddr = a.socket.parse().map_err(crate::UsageError)?;
    if a.concurrency == 0 || a.messages == 0 {
        return crate::usage("--messages and --concurrency must be at least 1");
    }
    let verify = a.mode == "verify";
    let mixed = a.mode == "mixed";
    // Messages: plain for signing; for verification signed once up front.
    let mut template = message_text(0, a.body_size, &a.domain);
    let plain = template.clone();
    if verify || mixed {
        let key_path = a.key.as_ref().ok_or_else(|| {
            crate::UsageError("--mode verify and mixed need --key and --selector".into())
        })?;
        let key = crate::keyfile::load_private_key(key_path)?;
        let sel: dkim::Selector = a
            .selector
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|e| crate::UsageError(format!("--selector: {e}")))?;
        let d: dkim::DomainName = a
            .domain
            .parse()
            .map_err(|e| crate::UsageError(format!("--domain: {e}")))?;
        let m = dkim::Message::parse(&template)?;
        let mut s = dkim::Signer::new(
            vec![dkim::SignerConfig::new(d, sel, key)],
            crate::cli::now(),
        )
        .start(m.headers())?;
        s.body(m.body());
        let mut signed = s.finish()?.remove(0).to_field().into_bytes();
        signed.extend_from_slice(b"\r\n");
        signed.extend_from_slice(&template);
        template = signed;
    }
    let message = Arc::new(to_milter(&template, 0)?);
    // Mixed: signing (an authenticated client), good and tampered
    // signatures, and messages aborted half-way, on the same connections.
    let mut sign_msg = to_milter(&plain, 0)?;
    sign_msg
        .macros
        .push((b'M', vec![("{auth_authen}".into(), "load".into())]));
    sign_msg
        .macros
        .retain(|(st, p)| *st != b'M' || p.iter().any(|(k, _)| k == "{auth_authen}"));
    let mut bad = template.clone();
    if let Some(last) = bad.iter().rposition(|b| b.is_ascii_lowercase()) {
        if let Some(b) = bad.get_mut(last) {
            *b = b.to_ascii_uppercase();
        }
    }
    let mix = Arc::new([sign_msg, to_milter(&template, 0)?, to_milter(&bad, 0)?]);
    let kinds = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pid = a.pid;
    let ticks_before = pid.map(tree_ticks).unwrap_or(0);
    let rss_start = pid.map(|p| tree_mem(p, "status", "VmRSS:"));
    let own_before = own_cpu_seconds();
    let next = Arc::new(AtomicUsize::new(0));
    let show_first = Arc::new(std::sync::atomic::AtomicBool::new(a.verbose));
    let ok = Arc::new(AtomicUsize::new(0));
    let algs = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let started = Instant::now();
    let mut peak_rss = 0u64;
    // (messages sent, RSS in kB), every --rss-every messages.
    let mut curve: Vec<(usize, u64)> = Vec::new();
    let rss_every = a.rss_every.filter(|n| *n > 0);
    let mut next_mark = 0usize;
    let progress = next.clone();
    let latencies: Vec<Duration> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..a.concurrency {
            let (addr, message, next, ok) =
                (addr.clone(), message.clone(), next.clone(), ok.clone());
            let algs = algs.clone();
            let show_first = show_first.clone();
            let (mix, kinds) = (mix.clone(), kinds.clone());
            let (total, per_conn) = (a.messages, a.per_connection.max(1));
            tasks.spawn(async move {
                let mut lat = Vec::new();
                'conn: loop {
                    if next.load(Ordering::SeqCst) >= total {
                        break;
                    }
                    let mut c = Client::connect(&addr).await.context("connect")?;
                    c.negotiate().await.context("negotiate")?;
                    // Signing: the submission service on loopback (trusted);
                    // verifying: the public smtpd and an outside client.
                    let (daemon, client) = if verify || mixed {
                        ("smtpd", "192.0.2.25")
                    } else {
                        ("ORIGINATING", "127.0.0.1")
                    };
                    let connect = Message {
                        macros: vec![(
                            b'C',
                            vec![
                                ("j".into(), "mta.bench.test".into()),
                                ("{daemon_name}".into(), daemon.into()),
                                ("{daemon_addr}".into(), "127.0.0.1".into()),
                                ("v".into(), "Postfix 3.7.11".into()),
                                ("_".into(), format!("client.test [{client}]")),
                            ],
                        )],
                        ..Message::default()
                    };
                    c.connect_stage(&connect, "client.test", client)
                        .await
                        .context("connect stage")?;
                    for _ in 0..per_conn {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= total {
                            let _ = c.quit().await;
                            break 'conn;
                        }
                        let t = Instant::now();
                        if mixed {
                            // 0: abort, 1: tampered, 2-4: good signature, 5-9: sign.
                            let (kind, msg) = match i % 10 {
                                0 => (3usize, None),
                                1 => (2, mix.get(2)),
                                2..=4 => (1, mix.get(1)),
                                _ => (0, mix.first()),
                            };
                            let good = match msg {
                                None => {
                                    let m = mix.first().context("mix")?;
                                    c.stage(&milter::Command::Mail(m.mail_from.clone())).await?;
                                    for (n, v) in m.headers.iter().take(3) {
                                        c.stage(&milter::Command::Header {
                                            name: n.clone(),
                                            value: v.clone(),
                                        })
                                        .await?;
                                    }
                                    c.abort().await?;
                                    true
                                }
                                Some(m) => {
                                    let out = c.message(m).await.context("message")?;
                                    let text: String = out
                                        .modifications
                                        .iter()
                                        .map(|r| match r {
                                            Reply::InsertHeader { name, value, .. } => {
                                                format!(
                                                    "{name}:{}\n",
                                                    String::from_utf8_lossy(value)
                                                )
                                            }
                                            _ => String::new(),
                                        })
                                        .collect();
                                    match kind {
                                        0 => text.contains("DKIM-Signature:"),
                                        1 => text.contains("dkim=pass"),
                                        _ => text.contains("dkim=fail"),
                                    }
                                }
                            };
                            lat.push(t.elapsed());
                            if let Some(k) = kinds.get(kind) {
                                k.fetch_add(1, Ordering::SeqCst);
                            }
                            if good {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            continue;
                        }
                        let out = c.message(&message).await.context("message")?;
                        lat.push(t.elapsed());
                        if show_first.swap(false, Ordering::SeqCst) {
                            errln!(
                                "dkimd: bench: first message: reply {:?}, modifications {:?}",
                                out.reply,
                                out.modifications
                            );
                        }
                        if counts(&out.modifications, verify) {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        if !verify {
                            if let Ok(mut seen) = algs.lock() {
                                for a in algorithms(&out.modifications) {
                                    seen.insert(a);
                                }
                            }
                        }
                    }
                    let _ = c.quit().await;
                }
                anyhow::Ok(lat)
            });
        }
        let mut all = Vec::new();
        let mut sampler = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = tasks.join_next() => match r {
                    Some(Ok(Ok(l))) => all.extend(l),
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(e)) => bail!("load task: {e}"),
                    None => break,
                },
                _ = sampler.tick() => {
                    if let Some(p) = pid {
                        let rss = tree_mem(p, "status", "VmRSS:");
                        peak_rss = peak_rss.max(rss);
                        if let Some(every) = rss_every {
                            let sent = progress.load(Ordering::SeqCst);
                            if sent >= next_mark {
                                curve.push((sent, rss));
                                next_mark = (sent / every + 1) * every;
                            }
                        }
                    }
                }
            }
        }
        Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let own = own_cpu_seconds() - own_before;
    let mut lat = latencies;
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let n = lat.len();
    let good = ok.load(Ordering::SeqCst);
    let milter_cpu = pid.map(|p| (tree_ticks(p) - ticks_before) as f64 / ticks_per_second());
    let pss = pid.map(|p| tree_mem(p, "smaps_rollup", "Pss:"));
    let rss_end = pid.map(|p| tree_mem(p, "status", "VmRSS:"));
    let hwm = pid.map(|p| tree_mem(p, "status", "VmHWM:"));
    let v = serde_json::json!({
        "mode": a.mode, "messages": n, "concurrency": a.concurrency, "body_size": a.body_size,
        "seconds": elapsed, "messages_per_second": n as f64 / elapsed,
        "latency_ms_p50": pct(0.5), "latency_ms_p99": pct(0.99),
        "milter_cpu_ms_per_message": milter_cpu.map(|c| c * 1000.0 / n.max(1) as f64),
        "milter_peak_rss_kb_sampled": pid.map(|_| peak_rss), "milter_vmhwm_kb": hwm, "milter_pss_kb": pss,
        "milter_rss_kb_start": rss_start, "milter_rss_kb_end": rss_end,
        "milter_rss_curve_kb": curve.iter().map(|(n, kb)| serde_json::json!([n, kb])).collect::<Vec<_>>(),
        "own_cpu_ms_per_message": own * 1000.0 / n.max(1) as f64,
        "ok": good,
    });
    if json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!(
            "{} {} messages, body {} B, concurrency {}: {:.0} msg/s, latency p50 {:.2} ms p99 {:.2} ms",
            a.mode, n, a.body_size, a.concurrency, n as f64 / elapsed, pct(0.5), pct(0.99)
        );
        if let (Some(c), Some(h), Some(p)) = (milter_cpu, hwm, pss) {
            outln!(
                "milter: {:.3} ms CPU per message, peak RSS {} kB (VmHWM {} kB), PSS now {} kB, RSS {} kB at start, {} kB at end",
                c * 1000.0 / n.max(1) as f64,
                peak_rss,
                h,
                p,
                rss_start.unwrap_or(0),
                rss_end.unwrap_or(0)
            );
        }
        if !curve.is_empty() {
            let points: Vec<String> = curve.iter().map(|(n, kb)| format!("{n}:{kb}")).collect();
            outln!("milter RSS (messages sent:kB): {}", points.join(" "));
        }
        outln!(
            "load tool: {:.3} ms CPU per message",
            own * 1000.0 / n.max(1) as f64
        );
        if mixed {
            let k: Vec<usize> = kinds.iter().map(|k| k.load(Ordering::SeqCst)).collect();
            outln!(
                "as expected: {good} of {n} (signed {}, dkim=pass {}, dkim=fail {}, aborted {})",
                k.first().unwrap_or(&0),
                k.get(1).unwrap_or(&0),
                k.get(2).unwrap_or(&0),
                k.get(3).unwrap_or(&0)
            );
        } else {
            let seen = algs
                .lock()
                .map(|s| s.iter().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            if verify {
                outln!("dkim=pass: {good} of {n}");
            } else {
                outln!("signed: {good} of {n} (a={seen})");
            }
        }
    }
    if good != n || n != a.messages {
        errln!(
            "dkimd: bench: only {good} of {} messages were {}",
            a.messages,
            if verify { "verified as pass" } else { "signed" }
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
