//! `dkimd generate man|completions|unit DIR` (hidden): the man pages and
//! the shell completions, made from the clap definitions so that they
//! cannot drift from the commands, and the packaged systemd unit. The
//! Debian package ships them.

use crate::cli::{Cli, GenerateCmd};
use anyhow::Context;
use clap::CommandFactory;
use dkimd::outln;
use std::process::ExitCode;

pub fn run(a: GenerateCmd) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    match a {
        GenerateCmd::Man { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the man pages in {}", dir.display()))?;
            outln!("man pages in {}", dir.display());
        }
        GenerateCmd::Completions { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for shell in [
                clap_complete::Shell::Bash,
                clap_complete::Shell::Zsh,
                clap_complete::Shell::Fish,
            ] {
                let f = clap_complete::generate_to(shell, &mut cmd, "dkimd", &dir)
                    .with_context(|| format!("cannot write the {shell} completions"))?;
                outln!("{}", f.display());
            }
        }
        GenerateCmd::Unit { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let text = dkimd_core::postfix::unit_file(
                "Shipped by the dkimd Debian package.",
                std::path::Path::new("/usr/bin/dkimd"),
                std::path::Path::new(dkimd_core::config::DEFAULT_CONFIG),
                Some("dkimd"),
            );
            let f = dir.join("dkimd.service");
            dkimd_core::sys::write_atomic(&f, text.as_bytes(), 0o644)?;
            outln!("{}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
