//! `dkimd keygen`.

use super::usage;
use crate::cli::{AlgorithmArg, KeygenArgs};
use anyhow::Context;
use dkimd::{errln, outln};
use dkimd_core::model::names::record_name;
use dkimd_core::sys::write_atomic;
use std::os::unix::fs::DirBuilderExt;
use std::process::ExitCode;

pub fn run(a: KeygenArgs, json: bool) -> anyhow::Result<ExitCode> {
    let domain: dkim::DomainName = match a.domain.parse() {
        Ok(d) => d,
        Err(e) => return usage(format!("--domain: {e}")),
    };
    let selector: dkim::Selector = match a.selector.parse() {
        Ok(s) => s,
        Err(e) => return usage(format!("--selector: {e}")),
    };
    let key = match a.algorithm {
        AlgorithmArg::Ed25519 => dkim::SigningKey::generate_ed25519()?,
        AlgorithmArg::Rsa => match dkim::SigningKey::generate_rsa(a.bits) {
            Ok(k) => k,
            Err(e @ dkim::KeyError::UnsupportedSize(_)) => {
                return usage(format!(
                    "--bits: {e}; dkimd does not sign with keys under 2048 bits (RFC 8301 asks for 2048; aws-lc does not load smaller private keys)"
                ))
            }
            Err(e) => return Err(e.into()),
        },
    };
    if !a.out.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&a.out)
            .with_context(|| format!("cannot create {}", a.out.display()))?;
    }
    let base = format!("{}.{}.{}", domain.to_lowercase(), selector, key.algorithm());
    let key_path = a.out.join(format!("{base}.pem"));
    let txt_path = a.out.join(format!("{base}.txt"));
    if key_path.exists() && !a.force {
        anyhow::bail!(
            "{} already exists; use --force to replace it (the old key stops working once its record is gone)",
            key_path.display()
        );
    }
    let record = dkim::KeyRecord::for_key(&key);
    let record_name = record_name(selector.as_str(), domain.as_str());
    let zone_line = record.zone_line(&record_name, 3600);
    write_atomic(&key_path, key.to_pem()?.as_bytes(), 0o600)?;
    write_atomic(&txt_path, format!("{zone_line}\n").as_bytes(), 0o644)?;
    if json {
        let v = serde_json::json!({
            "private_key": key_path,
            "record_file": txt_path,
            "algorithm": key.algorithm().as_str(),
            "bits": key.bits(),
            "domain": domain.to_lowercase(),
            "selector": selector.as_str(),
            "record_name": record_name,
            "record": record.to_string(),
            "zone_line": zone_line,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        errln!(
            "dkimd: wrote {} ({} {} bits, mode 0600) and {}",
            key_path.display(),
            key.algorithm(),
            key.bits(),
            txt_path.display()
        );
        errln!(
            "dkimd: publish this TXT record in the zone of {}:",
            domain.to_lowercase()
        );
        outln!("{zone_line}");
    }
    Ok(ExitCode::SUCCESS)
}
