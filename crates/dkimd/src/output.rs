//! Standard output and standard error without panics.
//!
//! Rust's `println!` panics when standard output is a closed pipe (SIGPIPE
//! is ignored, so the write fails with EPIPE). dkimd's commands write
//! through [`stdout_line`] instead: after the first failed write the rest
//! of the output is dropped, and the command goes on to its end, so that a
//! change is never left half-applied because its report could not be read.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

fn line(gone: &AtomicBool, w: &mut dyn Write, args: std::fmt::Arguments<'_>) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if writeln!(w, "{args}").and_then(|()| w.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}

/// Writes one line to standard output, unless it has failed before.
pub fn stdout_line(args: std::fmt::Arguments<'_>) {
    line(&STDOUT_GONE, &mut std::io::stdout().lock(), args);
}

/// Writes one line to standard error, unless it has failed before.
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    line(&STDERR_GONE, &mut std::io::stderr().lock(), args);
}
