//! The subcommands: each turns its arguments into the core's typed
//! requests, calls the core (or the daemon, or the page), and prints what
//! came back as text or JSON. One file per subcommand or group.

mod admin;
mod bench;
mod domain;
mod generate;
mod key;
mod keygen;
mod manage;
mod run;
mod settings;
mod sign;
mod status;
mod store;
mod verify;

use crate::cli::{Cli, Command};
use dkimd::{errln, outln};
use dkimd_core::config::Config;
use dkimd_core::manager::{Manager, StepLine, StepSink, Steps};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    let config = || Config::load(cli.config.as_deref(), cli.state_dir.as_deref());
    match cli.command {
        Command::Keygen(a) => keygen::run(a, json),
        Command::Sign(a) => sign::run(a, config),
        Command::Verify(a) => verify::run(a, json),
        Command::Bench(a) => bench::run(a, json),
        Command::BenchServe(c) => bench::serve(c),
        Command::Generate(a) => generate::run(a),
        Command::Run(a) => run::run(config()?, a.check_config),
        Command::Store(a) => {
            let cfg = config()?;
            let dir = cfg.state_dir.clone();
            hand_over(&dir, store::run(a, cfg, json))
        }
        Command::Nodes => store::nodes(config()?, json),
        other => {
            // install writes the sample configuration where it is missing.
            let cfg = if matches!(other, Command::Install(_) | Command::Uninstall(_)) {
                Config::load_or_default(cli.config.as_deref(), cli.state_dir.as_deref())?
            } else {
                config()?
            };
            let dir = cfg.state_dir.clone();
            hand_over(&dir, manage::run(other, cfg, json))
        }
    }
}

/// After a command run as root: every file it made in the state directory
/// goes to the directory's owner (the service user), so that the daemon
/// can still open the store and write the audit log.
fn hand_over(
    state_dir: &std::path::Path,
    result: anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = dkimd_core::sys::hand_over(state_dir) {
        errln!("dkimd: warning: {}", e.chain());
    }
    result
}

/// Prints steps as they happen: lines to standard output, notices and
/// progress to standard error (a progress bar on a terminal, else a line
/// at most every five seconds).
#[derive(Default)]
struct Print {
    progress: std::sync::Mutex<Option<Progress>>,
}

/// A long piece of work under way.
struct Progress {
    what: String,
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
    said: std::time::Instant,
}

impl Print {
    /// Runs `f` with the progress bar, if any, out of the way.
    fn around(&self, f: impl FnOnce()) {
        let g = self.progress.lock().ok();
        match g
            .as_ref()
            .and_then(|p| p.as_ref())
            .and_then(|p| p.bar.as_ref())
        {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

impl StepSink for Print {
    fn line(&self, line: &StepLine) {
        self.around(|| outln!("{line}"));
    }

    fn notice(&self, text: &str) {
        self.around(|| errln!("dkimd: {text}"));
    }

    fn progress(&self, what: &str, done: usize, total: usize) {
        use std::io::IsTerminal;
        let Ok(mut g) = self.progress.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        if g.as_ref().is_none_or(|p| p.what != what) {
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0));
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {pos}/{len} {per_sec} {eta} left",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(what.to_string());
                bar
            });
            *g = Some(Progress {
                what: what.to_string(),
                bar,
                started: now,
                said: now,
            });
        }
        let Some(p) = g.as_mut() else { return };
        let finished = done >= total;
        match &p.bar {
            Some(bar) => {
                bar.set_position(u64::try_from(done).unwrap_or(0));
                if finished {
                    bar.finish_and_clear();
                }
            }
            None if finished || now.duration_since(p.said).as_secs() >= 5 => {
                p.said = now;
                let secs = now.duration_since(p.started).as_secs_f64().max(0.001);
                let rate = done as f64 / secs;
                let left = if rate > 0.0 {
                    (total.saturating_sub(done)) as f64 / rate
                } else {
                    0.0
                };
                errln!(
                    "dkimd: {what}: {done} of {total} ({:.0}%), {rate:.0}/s, about {left:.0} s left",
                    100.0 * done as f64 / total.max(1) as f64
                );
            }
            None => {}
        }
        if finished {
            *g = None;
        }
    }
}

/// The steps of a command: printed as they happen, or kept for one JSON
/// document.
fn steps(json: bool) -> Steps {
    if json {
        Steps::json(Arc::new(Print::default()))
    } else {
        Steps::to(Arc::new(Print::default()))
    }
}

/// The result of a manager command: the JSON document (with `--json`),
/// and exit code 1 when a step failed.
fn finish(m: &mut Manager, extra: serde_json::Value) -> anyhow::Result<ExitCode> {
    if m.out.is_json() {
        let mut v = serde_json::json!({ "steps": m.out.take(), "failures": m.out.failures });
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(if m.out.failures == 0 {
        ExitCode::SUCCESS
    } else {
        if !m.out.is_json() {
            errln!("dkimd: {} step(s) failed", m.out.failures);
        }
        ExitCode::from(1)
    })
}

/// Prints a JSON document.
fn print_json(v: &serde_json::Value) -> anyhow::Result<ExitCode> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

/// A usage error (exit code 2).
fn usage<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(dkimd_core::Error::Usage(msg.into()).into())
}

/// Reads all of standard input, with a clear error when it is empty.
fn read_stdin_message() -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| anyhow::anyhow!("cannot read the message from standard input: {e}"))?;
    if buf.is_empty() {
        return usage("no message on standard input");
    }
    Ok(buf)
}
