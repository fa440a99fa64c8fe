//! `dkimd`: DKIM signing and verification for Postfix mail servers.
//!
//! This binary wires the command line to the subcommands; each lives in its
//! own module. Exit codes: 0 success, 1 operational failure (including "no
//! signature passed" for `verify`), 2 usage or configuration error.

/// `println!` that never panics: a closed or full standard output (`dkimd
/// status | head -1`) makes the rest of the output go nowhere, and the
/// command goes on (a changing command finishes its change and writes its
/// audit entry).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::stdout_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics (a closed standard error loses the line).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::stderr_line(format_args!($($arg)*))
    };
}

mod backup;
mod bench;
mod bodyhash;
mod cli;
mod commands;
mod daemon;
mod dns;
mod install;
mod keyfile;
mod keygen;
mod manage;
mod output;
mod publish;
mod rfc2136;
mod settings;
mod sign;
mod store;
mod verify;
mod web;

use clap::Parser;
use std::process::ExitCode;

// The configuration and zone file modules live in the library (fuzz targets
// use them); the rest of the binary reaches them as crate::config and
// crate::zonefile.
use dkimd::{config, usage, zonefile, UsageError};

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // Help and version go to stdout with 0; real errors exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            let msg = e
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            errln!("dkimd: error: {msg}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
