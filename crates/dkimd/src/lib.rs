//! The faces of dkimd that run for a long time, as a library so that tests
//! run them in-process: the milter daemon ([`daemon`]) and the web admin
//! page ([`web`]), with the log ([`logging`]) and panic-free output
//! ([`output`]). The command line (`cli/`, `cmd/`) is in the binary, on
//! top; the daemon and the page never import each other or it.
#![forbid(unsafe_code)]

/// `println!` that never panics: a closed or full standard output (`dkimd
/// status | head -1`) makes the rest of the output go nowhere, and the
/// command goes on (a changing command finishes its change and writes its
/// audit entry).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::stdout_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics (a closed standard error loses the line).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::stderr_line(format_args!($($arg)*))
    };
}

pub mod daemon;
pub mod logging;
pub mod output;
pub mod web;
