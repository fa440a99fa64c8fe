//! `dkimd`: DKIM signing and verification for Postfix mail servers.
//!
//! This binary parses the command line, runs the subcommand and maps the
//! result to an exit code: 0 success, 1 operational failure (including "no
//! signature passed" for `verify`), 2 usage or configuration error.

mod cli;
mod cmd;

use clap::Parser;
use dkimd::errln;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse_from(cli::args_for_migrate(std::env::args_os().collect()))
    {
        Ok(a) => a,
        Err(e) => {
            // Help and version go to stdout with 0; real errors exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cmd::run(args) {
        Ok(code) => code,
        Err(e) => {
            let msg = e
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            errln!("dkimd: error: {msg}");
            let usage = e.chain().any(|c| {
                c.downcast_ref::<dkimd_core::Error>()
                    .is_some_and(dkimd_core::Error::is_usage)
            });
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
