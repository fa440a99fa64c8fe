//! The milter load generator behind `dkimd bench`. It plays Postfix's side
//! of the milter conversation (protocol 6, several messages per connection,
//! the macros Postfix sends) against any milter, and measures throughput,
//! latency, the milter's CPU time and memory (from /proc), and its own CPU.
//!
//! It uses only the `milter` and `dkim` crates: what it measures is the
//! protocol, never dkimd's own code.
#![forbid(unsafe_code)]

mod dnsdelay;
mod null;
mod proc;
mod workload;

pub use dnsdelay::{serve_delay, DelayOptions, DelayStats};
pub use null::serve_null;
pub use workload::message_text;

use milter::client::{Client, Message};
use milter::server::ListenAddr;
use milter::Reply;
use proc::{machine_ticks, own_cpu_seconds, ticks_per_second, tree, tree_mem, tree_ticks};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{algorithms, counts, to_milter, Expect};

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options do not make a run.
    #[error("{0}")]
    Usage(String),
    /// A test message could not be built or signed.
    #[error("test message: {0}")]
    Message(String),
    /// The milter could not be reached.
    #[error("connect")]
    Connect(#[source] std::io::Error),
    /// The milter broke the conversation.
    #[error("{what}")]
    Milter {
        /// The stage that failed.
        what: &'static str,
        /// Why.
        #[source]
        source: milter::codec::FrameError,
    },
    /// The runtime could not start, or a load task failed.
    #[error("{0}")]
    Runtime(String),
}

/// What the messages are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From a trusted client (`{daemon_name}=ORIGINATING`): to be signed.
    Sign,
    /// Signed messages from an outside client: to be verified as pass.
    Verify,
    /// Per 10 messages: 5 to sign (SASL client), 3 good and 1 tampered
    /// signature, 1 aborted half-way.
    Mixed,
}

impl Mode {
    /// The name as `--mode` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sign => "sign",
            Mode::Verify => "verify",
            Mode::Mixed => "mixed",
        }
    }
}

/// The key that signs the messages of verify and mixed runs.
pub struct TestKey {
    /// The key.
    pub key: dkim::SigningKey,
    /// Its selector (its record must be in the milter's DNS).
    pub selector: dkim::Selector,
    /// Its domain (d=).
    pub domain: dkim::DomainName,
}

/// Called once with what the milter answered to the first message.
pub type OnFirst = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// One run.
pub struct Options {
    /// The milter.
    pub socket: ListenAddr,
    /// Messages in all.
    pub messages: usize,
    /// Connections at once.
    pub concurrency: usize,
    /// Messages per connection before it is closed and reopened.
    pub per_connection: usize,
    /// Body size in bytes.
    pub body_size: usize,
    /// What the messages are.
    pub mode: Mode,
    /// The From domain.
    pub domain: String,
    /// Verify and mixed: the key that signs the test message.
    pub key: Option<TestKey>,
    /// The milter's PID (its process tree is measured).
    pub pid: Option<u32>,
    /// Told what the milter answered to the first message, as it comes.
    pub on_first: Option<OnFirst>,
    /// With `pid`: record the RSS each time this many more messages went.
    pub rss_every: Option<usize>,
    /// The signing time of the test message (epoch seconds).
    pub now: u64,
    /// Verify: the messages come from this many signing domains,
    /// `d0.DOMAIN` … (the same key and selector under each); 1 for
    /// DOMAIN itself. With as many domains as messages, no key is ever
    /// in the milter's cache.
    pub domains: usize,
    /// Verify: every this many messages, one from a domain under
    /// `silent.DOMAIN` (its name server never answers), for which the
    /// milter must say dkim=temperror.
    pub silent_every: Option<usize>,
    /// Processes that serve the run (a DNS server, a proxy): their CPU is
    /// counted apart, not as other processes' noise.
    pub setup_pids: Vec<u32>,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The mode.
    pub mode: Mode,
    /// Messages asked for.
    pub wanted: usize,
    /// Messages sent (and answered).
    pub messages: usize,
    /// Connections at once.
    pub concurrency: usize,
    /// Body size.
    pub body_size: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// The milter's CPU seconds (with `pid`).
    pub milter_cpu_s: Option<f64>,
    /// The milter's RSS peak seen by sampling, kB (with `pid`).
    pub peak_rss_kb: Option<u64>,
    /// VmHWM at the end, kB.
    pub vmhwm_kb: Option<u64>,
    /// PSS at the end, kB.
    pub pss_kb: Option<u64>,
    /// RSS at the start, kB.
    pub rss_start_kb: Option<u64>,
    /// RSS at the end, kB.
    pub rss_end_kb: Option<u64>,
    /// (messages sent, RSS kB), every `rss_every` messages.
    pub rss_curve: Vec<(usize, u64)>,
    /// The load tool's own CPU seconds.
    pub own_cpu_s: f64,
    /// Messages the milter handled as expected.
    pub ok: usize,
    /// Mixed: signed, dkim=pass, dkim=fail, aborted.
    pub kinds: [usize; 4],
    /// The `a=` values of the signatures seen (sign mode).
    pub algorithms: Vec<String>,
    /// CPU seconds of the setup processes (`setup_pids`, their trees).
    pub setup_cpu_s: f64,
    /// CPU seconds the machine spent on anything else over the run (all
    /// busy time less the milter's, the tool's and the setup's, less an
    /// allowance for /proc's 10 ms ticks): the noise.
    pub others_cpu_s: f64,
    /// CPU seconds the hypervisor gave to other machines (steal).
    pub steal_s: f64,
    /// Messages from a silent name server's domain.
    pub silent: usize,
    /// Their median latency, ms.
    pub silent_p50_ms: f64,
}

impl Report {
    /// Milliseconds of milter CPU per message.
    pub fn milter_cpu_ms_per_message(&self) -> Option<f64> {
        self.milter_cpu_s
            .map(|c| c * 1000.0 / self.messages.max(1) as f64)
    }

    /// Milliseconds of the load tool's CPU per message.
    pub fn own_cpu_ms_per_message(&self) -> f64 {
        self.own_cpu_s * 1000.0 / self.messages.max(1) as f64
    }

    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    /// Other processes' CPU as a share of one core over the run.
    pub fn others_core_share(&self) -> f64 {
        self.others_cpu_s / self.seconds.max(1e-9)
    }

    /// What competed with the run for the CPU, as a share of one core:
    /// other processes, and the time the hypervisor gave to other machines
    /// (which also inflates every CPU figure measured meanwhile, since
    /// the kernel charges stolen ticks to whatever was running).
    pub fn noise_core_share(&self) -> f64 {
        (self.others_cpu_s + self.steal_s) / self.seconds.max(1e-9)
    }

    /// True when every message asked for was sent and handled as expected.
    pub fn passed(&self) -> bool {
        self.ok == self.messages && self.messages == self.wanted
    }

    /// The report as the JSON document `dkimd bench --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode.as_str(), "messages": self.messages, "concurrency": self.concurrency,
            "body_size": self.body_size, "seconds": self.seconds,
            "messages_per_second": self.rate(),
            "latency_ms_p50": self.p50_ms, "latency_ms_p99": self.p99_ms,
            "milter_cpu_ms_per_message": self.milter_cpu_ms_per_message(),
            "milter_peak_rss_kb_sampled": self.peak_rss_kb, "milter_vmhwm_kb": self.vmhwm_kb,
            "milter_pss_kb": self.pss_kb,
            "milter_rss_kb_start": self.rss_start_kb, "milter_rss_kb_end": self.rss_end_kb,
            "milter_rss_curve_kb": self.rss_curve.iter().map(|(n, kb)| serde_json::json!([n, kb])).collect::<Vec<_>>(),
            "own_cpu_ms_per_message": self.own_cpu_ms_per_message(),
            "setup_cpu_ms_per_message": self.setup_cpu_s * 1000.0 / self.messages.max(1) as f64,
            "others_core_share": self.others_core_share(),
            "steal_core_share": self.steal_s / self.seconds.max(1e-9),
            "noise_core_share": self.noise_core_share(),
            "silent_messages": self.silent, "silent_latency_ms_p50": self.silent_p50_ms,
            "algorithms": self.algorithms,
            "ok": self.ok,
        })
    }
}

/// The messages of a run, built once.
struct Workload {
    /// The message of sign and verify runs.
    message: Message,
    /// Verify from several domains: message `i` is `many[i % len]`.
    many: Vec<Message>,
    /// Verify: messages from a silent name server's domains.
    silent: Vec<Message>,
    silent_every: Option<usize>,
    /// Mixed: to sign, with a good signature, with a tampered one.
    mix: [Message; 3],
    mode: Mode,
}

impl Workload {
    fn new(o: &Options) -> Result<Workload, Error> {
        let plain = message_text(0, o.body_size, &o.domain);
        let template = match o.mode {
            Mode::Sign => plain.clone(),
            Mode::Verify | Mode::Mixed => {
                let key = o.key.as_ref().ok_or_else(|| {
                    Error::Usage("--mode verify and mixed need --key and --selector".into())
                })?;
                sign(&plain, o, key)?
            }
        };
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
        // Verify from many domains (and some silent ones): each signed
        // under its own d=, with the same key and selector.
        let (mut many, mut silent) = (Vec::new(), Vec::new());
        let silent_every = o.silent_every.filter(|n| *n > 0 && o.mode == Mode::Verify);
        if o.mode == Mode::Verify {
            if let Some(key) = o.key.as_ref() {
                let under = |name: String| -> Result<Vec<u8>, Error> {
                    let domain: dkim::DomainName = name
                        .parse()
                        .map_err(|e| Error::Usage(format!("{name}: {e}")))?;
                    let k = TestKey {
                        key: key.key.clone(),
                        selector: key.selector.clone(),
                        domain,
                    };
                    sign(&message_text(0, o.body_size, &name), o, &k)
                };
                if o.domains > 1 {
                    for i in 0..o.domains {
                        many.push(to_milter(&under(format!("d{i}.{}", key.domain))?, i)?);
                    }
                }
                if let Some(every) = silent_every {
                    for i in 0..o.messages / every {
                        silent.push(to_milter(
                            &under(format!("q{i}.silent.{}", key.domain))?,
                            i,
                        )?);
                    }
                }
            }
        }
        Ok(Workload {
            message: to_milter(&template, 0)?,
            many,
            silent,
            silent_every,
            mix: [sign_msg, to_milter(&template, 0)?, to_milter(&bad, 0)?],
            mode: o.mode,
        })
    }

    /// Message `i` of a sign or verify run, and whether it is from a
    /// silent name server's domain.
    fn pick(&self, i: usize) -> (&Message, bool) {
        if let Some(every) = self.silent_every {
            if i % every == every - 1 {
                if let Some(m) = self.silent.get(i / every % self.silent.len().max(1)) {
                    return (m, true);
                }
            }
        }
        match self.many.len() {
            0 => (&self.message, false),
            n => (self.many.get(i % n).unwrap_or(&self.message), false),
        }
    }
}

/// `plain` with a DKIM-Signature of the test key on top.
fn sign(plain: &[u8], o: &Options, key: &TestKey) -> Result<Vec<u8>, Error> {
    fn bad(e: impl std::fmt::Display) -> Error {
        Error::Message(e.to_string())
    }
    let m = dkim::Message::parse(plain).map_err(bad)?;
    let mut s = dkim::Signer::new(
        vec![dkim::SignerConfig::new(
            key.domain.clone(),
            key.selector.clone(),
            key.key.clone(),
        )],
        o.now,
    )
    .start(m.headers())
    .map_err(bad)?;
    s.body(m.body());
    let mut signed = s.finish().map_err(bad)?.remove(0).to_field().into_bytes();
    signed.extend_from_slice(b"\r\n");
    signed.extend_from_slice(plain);
    Ok(signed)
}

/// What the connections share while they run.
struct Shared {
    work: Workload,
    next: AtomicUsize,
    ok: AtomicUsize,
    kinds: [AtomicUsize; 4],
    algs: Mutex<std::collections::BTreeSet<String>>,
    on_first: Option<OnFirst>,
    first_seen: AtomicBool,
    total: usize,
    per_conn: usize,
    addr: ListenAddr,
}

/// Runs the load and measures it.
pub fn run(o: &Options) -> Result<Report, Error> {
    if o.concurrency == 0 || o.messages == 0 {
        return Err(Error::Usage(
            "--messages and --concurrency must be at least 1".into(),
        ));
    }
    let shared = Arc::new(Shared {
        work: Workload::new(o)?,
        next: AtomicUsize::new(0),
        ok: AtomicUsize::new(0),
        kinds: Default::default(),
        algs: Mutex::new(Default::default()),
        on_first: o.on_first.clone(),
        first_seen: AtomicBool::new(false),
        total: o.messages,
        per_conn: o.per_connection.max(1),
        addr: o.socket.clone(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    let setup_ticks = || o.setup_pids.iter().map(|p| tree_ticks(*p)).sum::<u64>();
    let ticks_before = o.pid.map(tree_ticks).unwrap_or(0);
    let setup_before = setup_ticks();
    let rss_start = o.pid.map(|p| tree_mem(p, "status", "VmRSS:"));
    let machine_before = machine_ticks();
    let own_before = own_cpu_seconds();
    let started = Instant::now();
    let mut sampler = Sampler::new(o.pid, o.rss_every);
    let all = rt.block_on(drive(o.concurrency, &shared, &mut sampler))?;
    let seconds = started.elapsed().as_secs_f64();
    let own_cpu_s = own_cpu_seconds() - own_before;
    let machine = machine_ticks().since(&machine_before);
    let milter_tree = o.pid.map(tree);
    let milter_ticks = milter_tree.map(|(t, _)| t.saturating_sub(ticks_before));
    let setup = setup_ticks().saturating_sub(setup_before);
    // Each count is read truncated to whole ticks at both ends, so each
    // delta is off by less than one tick: allow one per count (the
    // milter's processes, the tool, each setup process).
    let allowance =
        2 + o.setup_pids.len() as u64 + milter_tree.map_or(0, |(_, procs)| procs as u64);
    let ours = milter_ticks.unwrap_or(0) + setup + (own_cpu_s * ticks_per_second()).round() as u64;
    let others = machine.busy.saturating_sub(ours).saturating_sub(allowance);
    let (mut lat, mut silent): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for (d, quiet) in all {
        if quiet {
            silent.push(d);
        } else {
            lat.push(d);
        }
    }
    lat.sort();
    silent.sort();
    let pct_of = |lat: &[Duration], p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let pct = |p: f64| pct_of(&lat, p);
    let pid = o.pid;
    let kinds = shared.kinds.each_ref().map(|k| k.load(Ordering::SeqCst));
    Ok(Report {
        mode: o.mode,
        wanted: o.messages,
        messages: lat.len() + silent.len(),
        concurrency: o.concurrency,
        body_size: o.body_size,
        seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        milter_cpu_s: milter_ticks.map(|t| t as f64 / ticks_per_second()),
        peak_rss_kb: pid.map(|_| sampler.peak),
        vmhwm_kb: pid.map(|p| tree_mem(p, "status", "VmHWM:")),
        pss_kb: pid.map(|p| tree_mem(p, "smaps_rollup", "Pss:")),
        rss_start_kb: rss_start,
        rss_end_kb: pid.map(|p| tree_mem(p, "status", "VmRSS:")),
        rss_curve: sampler.curve,
        own_cpu_s,
        ok: shared.ok.load(Ordering::SeqCst),
        kinds,
        algorithms: shared
            .algs
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default(),
        setup_cpu_s: setup as f64 / ticks_per_second(),
        others_cpu_s: others as f64 / ticks_per_second(),
        steal_s: machine.steal as f64 / ticks_per_second(),
        silent: silent.len(),
        silent_p50_ms: pct_of(&silent, 0.5),
    })
}

/// Samples the milter's RSS every 100 ms while the load runs.
struct Sampler {
    pid: Option<u32>,
    every: Option<usize>,
    peak: u64,
    curve: Vec<(usize, u64)>,
    next_mark: usize,
}

impl Sampler {
    fn new(pid: Option<u32>, every: Option<usize>) -> Sampler {
        Sampler {
            pid,
            every: every.filter(|n| *n > 0),
            peak: 0,
            curve: Vec::new(),
            next_mark: 0,
        }
    }

    fn sample(&mut self, sent: usize) {
        let Some(p) = self.pid else { return };
        let rss = tree_mem(p, "status", "VmRSS:");
        self.peak = self.peak.max(rss);
        if let Some(every) = self.every {
            if sent >= self.next_mark {
                self.curve.push((sent, rss));
                self.next_mark = (sent / every + 1) * every;
            }
        }
    }
}

/// Runs `concurrency` connections until every message went; returns each
/// message's latency.
async fn drive(
    concurrency: usize,
    shared: &Arc<Shared>,
    sampler: &mut Sampler,
) -> Result<Vec<(Duration, bool)>, Error> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        tasks.spawn(connections(shared.clone()));
    }
    let mut all = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            r = tasks.join_next() => match r {
                Some(Ok(Ok(l))) => all.extend(l),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(Error::Runtime(format!("load task: {e}"))),
                None => break,
            },
            _ = tick.tick() => sampler.sample(shared.next.load(Ordering::SeqCst)),
        }
    }
    Ok(all)
}

fn at(what: &'static str) -> impl FnOnce(milter::codec::FrameError) -> Error {
    move |source| Error::Milter { what, source }
}

/// One load task: connections one after another, each carrying up to
/// `per_conn` messages, until every message went.
async fn connections(s: Arc<Shared>) -> Result<Vec<(Duration, bool)>, Error> {
    let mut lat = Vec::new();
    let outside = s.work.mode != Mode::Sign;
    'conn: loop {
        if s.next.load(Ordering::SeqCst) >= s.total {
            break;
        }
        let mut c = Client::connect(&s.addr).await.map_err(Error::Connect)?;
        c.negotiate().await.map_err(at("negotiate"))?;
        // Signing: the submission service on loopback (trusted); verifying:
        // the public smtpd and an outside client.
        let (daemon, client) = if outside {
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
            .map_err(at("connect stage"))?;
        for _ in 0..s.per_conn {
            let i = s.next.fetch_add(1, Ordering::SeqCst);
            if i >= s.total {
                let _ = c.quit().await;
                break 'conn;
            }
            let t = Instant::now();
            let (good, quiet) = match s.work.mode {
                Mode::Mixed => (mixed_message(&mut c, &s, i).await?, false),
                Mode::Sign | Mode::Verify => plain_message(&mut c, &s, i).await?,
            };
            lat.push((t.elapsed(), quiet));
            if good {
                s.ok.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _ = c.quit().await;
    }
    Ok(lat)
}

/// Message `i` of a sign or verify run; true when the milter signed it
/// (or said dkim=pass, or dkim=temperror for a silent name server's
/// domain), and whether it was from such a domain.
async fn plain_message(c: &mut Client, s: &Shared, i: usize) -> Result<(bool, bool), Error> {
    let verify = s.work.mode == Mode::Verify;
    let (msg, quiet) = s.work.pick(i);
    let out = c.message(msg).await.map_err(at("message"))?;
    if let Some(tell) = &s.on_first {
        if !s.first_seen.swap(true, Ordering::SeqCst) {
            tell(&format!(
                "reply {:?}, modifications {:?}",
                out.reply, out.modifications
            ));
        }
    }
    if !verify {
        if let Ok(mut seen) = s.algs.lock() {
            seen.extend(algorithms(&out.modifications));
        }
    }
    let expect = match (verify, quiet) {
        (false, _) => Expect::Signed,
        (true, false) => Expect::Pass,
        (true, true) => Expect::TempError,
    };
    Ok((counts(&out.modifications, expect), quiet))
}

/// Message `i` of a mixed run; true when the milter did what that kind of
/// message calls for.
async fn mixed_message(c: &mut Client, s: &Shared, i: usize) -> Result<bool, Error> {
    // 0: abort, 1: tampered, 2-4: good signature, 5-9: sign.
    let (kind, msg) = match i % 10 {
        0 => (3usize, None),
        1 => (2, s.work.mix.get(2)),
        2..=4 => (1, s.work.mix.get(1)),
        _ => (0, s.work.mix.first()),
    };
    if let Some(k) = s.kinds.get(kind) {
        k.fetch_add(1, Ordering::SeqCst);
    }
    let Some(m) = msg else {
        let [m, ..] = &s.work.mix;
        c.stage(&milter::Command::Mail(m.mail_from.clone()))
            .await
            .map_err(at("MAIL"))?;
        for (n, v) in m.headers.iter().take(3) {
            c.stage(&milter::Command::Header {
                name: n.clone(),
                value: v.clone(),
            })
            .await
            .map_err(at("header"))?;
        }
        c.abort().await.map_err(at("abort"))?;
        return Ok(true);
    };
    let out = c.message(m).await.map_err(at("message"))?;
    let text: String = out
        .modifications
        .iter()
        .map(|r| match r {
            Reply::InsertHeader { name, value, .. } => {
                format!("{name}:{}\n", String::from_utf8_lossy(value))
            }
            _ => String::new(),
        })
        .collect();
    Ok(match kind {
        0 => text.contains("DKIM-Signature:"),
        1 => text.contains("dkim=pass"),
        _ => text.contains("dkim=fail"),
    })
}
