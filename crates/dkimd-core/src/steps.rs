//! The steps a command reports: each line goes to a [`StepSink`] as
//! it happens (the command line prints it) and is kept for the audit log,
//! the JSON document and the page.

use std::sync::Arc;

/// One reported line: a heading (no subject) or a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepLine {
    /// `None` for a heading.
    pub subject: Option<String>,
    /// What happened.
    pub text: String,
    /// False for a failed step.
    pub ok: bool,
}

impl std::fmt::Display for StepLine {
    /// The line exactly as the CLI prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.subject, self.ok) {
            (None, _) => write!(f, "{}", self.text),
            (Some(s), true) => write!(f, "  {s}: {}", self.text),
            (Some(s), false) => write!(f, "  {s}: failed: {}", self.text),
        }
    }
}

/// Where steps go as they happen.
pub trait StepSink: Send + Sync {
    /// A step or heading, as it happens.
    fn line(&self, line: &StepLine);
    /// A passing notice about a step still running ("waiting up to 30 s for
    /// DNS to serve serial N"): the command line shows it on standard error.
    fn notice(&self, text: &str);
    /// How far a long piece of work is (`done` of `total` items of
    /// `what`); the command line shows a progress bar on a terminal.
    fn progress(&self, _what: &str, _done: usize, _total: usize) {}
}

/// A sink that drops everything (the lines are still collected).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl StepSink for Quiet {
    fn line(&self, _line: &StepLine) {}
    fn notice(&self, _text: &str) {}
}

/// A sink that records everything, notices included (tests).
#[derive(Debug, Default)]
pub struct Recording {
    /// Every line and notice, in order; notices start with `notice: `.
    pub seen: std::sync::Mutex<Vec<String>>,
}

impl Recording {
    /// What was seen so far.
    pub fn lines(&self) -> Vec<String> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl StepSink for Recording {
    fn line(&self, line: &StepLine) {
        if let Ok(mut v) = self.seen.lock() {
            v.push(line.to_string());
        }
    }
    fn notice(&self, text: &str) {
        if let Ok(mut v) = self.seen.lock() {
            v.push(format!("notice: {text}"));
        }
    }
}

/// The steps of one command: sent to the sink, counted and kept.
pub struct Steps {
    sink: Arc<dyn StepSink>,
    json: bool,
    steps: Vec<serde_json::Value>,
    lines: Vec<StepLine>,
    /// How many steps failed.
    pub failures: usize,
}

impl Steps {
    /// Steps sent to `sink` as they happen (the CLI's text output).
    pub fn to(sink: Arc<dyn StepSink>) -> Steps {
        Steps {
            sink,
            json: false,
            steps: Vec::new(),
            lines: Vec::new(),
            failures: 0,
        }
    }

    /// Steps kept for one JSON document (`--json`); notices still go to
    /// `sink`.
    pub fn json(sink: Arc<dyn StepSink>) -> Steps {
        Steps {
            json: true,
            ..Steps::to(sink)
        }
    }

    /// Collects every line, headings included, for display elsewhere.
    pub fn collecting() -> Steps {
        Steps::to(Arc::new(Quiet))
    }

    /// The sink, for a step that reports notices itself (a publisher).
    pub fn sink(&self) -> Arc<dyn StepSink> {
        self.sink.clone()
    }

    /// One step: `subject` (a domain, "key", "postfix", …) and what happened.
    pub fn step(&mut self, subject: &str, what: &str, ok: bool) {
        if !ok {
            self.failures += 1;
        }
        let line = StepLine {
            subject: Some(subject.to_string()),
            text: what.to_string(),
            ok,
        };
        if self.json {
            self.steps
                .push(serde_json::json!({ "subject": subject, "result": what, "ok": ok }));
        } else {
            self.sink.line(&line);
        }
        self.lines.push(line);
    }

    /// A heading line (text and collected output only).
    pub fn title(&mut self, what: &str) {
        if self.json {
            return;
        }
        let line = StepLine {
            subject: None,
            text: what.to_string(),
            ok: true,
        };
        self.sink.line(&line);
        self.lines.push(line);
    }

    /// True when the steps are kept for a JSON document.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// The collected steps (JSON mode).
    pub fn take(&mut self) -> Vec<serde_json::Value> {
        std::mem::take(&mut self.steps)
    }

    /// The lines reported so far (every mode; headings only in text and
    /// collecting modes), for the audit log and the web page.
    pub fn take_lines(&mut self) -> Vec<StepLine> {
        std::mem::take(&mut self.lines)
    }
}
