//! The daemon's and the page's log: `tracing` events written to standard
//! error as one line each, `dkimd: [queue_id=…] [warning: |error: ]fields…
//! message`. No timestamp: journald adds its own, and a terminal reads the
//! lines as they come.

use dkimd_core::config::LogLevel;
use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of the one event per message (`milter.log_level = "warn"`
/// turns these off; every other line stays).
pub const MESSAGE_TARGET: &str = "dkimd::message";

/// Sends every event to standard error from now on. Called once per
/// process; a second call changes nothing.
pub fn init(level: LogLevel) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let per_message = match level {
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
    };
    // Our own events only: the libraries' (hickory's "wrong message id"
    // warnings, which anyone can cause with spoofed answers) stay silent,
    // as they were before dkimd logged through tracing.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("dkimd", Level::INFO)
        .with_target("dkimd_core", Level::INFO)
        .with_target(MESSAGE_TARGET, per_message);
    let fmt = tracing_subscriber::fmt::layer()
        .event_format(Line)
        .with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
}

/// The line format.
struct Line;

/// An event's fields: the message, the queue id, and the rest in order.
#[derive(Default)]
struct Fields {
    message: String,
    queue_id: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, &format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "queue_id" => self.queue_id = Some(value.to_string()),
            name => {
                let _ = write!(self.rest, "{name}={value} ");
            }
        }
    }
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        w.write_str("dkimd: ")?;
        if let Some(q) = &f.queue_id {
            write!(w, "queue_id={q} ")?;
        }
        match *event.metadata().level() {
            Level::ERROR => w.write_str("error: ")?,
            Level::WARN => w.write_str("warning: ")?,
            _ => {}
        }
        let line = format!("{}{}", f.rest, f.message);
        writeln!(w, "{}", line.trim_end())
    }
}
