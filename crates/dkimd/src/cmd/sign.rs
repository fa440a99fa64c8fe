//! `dkimd sign`.

use super::{read_stdin_message, usage};
use crate::cli::SignArgs;
use anyhow::Context;
use dkimd_core::clock::now;
use dkimd_core::model::keyfile::load_private_key;
use std::io::Write;
use std::process::ExitCode;

fn field_list(flag: &str, s: &str) -> anyhow::Result<Vec<dkim::FieldName>> {
    s.split(':')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<dkim::FieldName>()
                .or_else(|e| usage(format!("{flag}: {e}")))
        })
        .collect()
}

pub fn run(a: SignArgs) -> anyhow::Result<ExitCode> {
    let domain: dkim::DomainName = a
        .domain
        .parse()
        .or_else(|e| usage(format!("--domain: {e}")))?;
    let selector: dkim::Selector = a
        .selector
        .parse()
        .or_else(|e| usage(format!("--selector: {e}")))?;
    let canon: dkim::CanonicalizationPair = a
        .canonicalization
        .parse()
        .or_else(|e| usage(format!("--canonicalization: {e}")))?;
    let key = load_private_key(&a.key)?;
    let mut cfg = dkim::SignerConfig::new(domain, selector, key);
    cfg.canonicalization = canon;
    if let Some(h) = &a.headers {
        cfg.headers = field_list("--headers", h)?.into();
        if !cfg.headers.iter().any(|f| f.matches(b"from")) {
            return usage("--headers must include From (RFC 6376 requires it to be signed)");
        }
    }
    cfg.oversign = field_list("--oversign", &a.oversign)?.into();
    cfg.identity = a.identity.clone();
    cfg.expire_after = a.expire;

    let input = read_stdin_message()?;
    // A message stored with Unix line ends is signed as it will travel (CRLF)
    // and written back with Unix line ends.
    let unix = !input.contains(&b'\r');
    let msg = if unix {
        dkim::Message::parse_lenient(&input)?
    } else {
        dkim::Message::parse(&input)?
    };
    let mut signing =
        dkim::Signer::new(vec![cfg], a.time.unwrap_or_else(now)).start(msg.headers())?;
    for chunk in msg.body().chunks(64 * 1024) {
        signing.body(chunk);
    }
    let mut out = Vec::with_capacity(input.len() + 1024);
    for s in signing.finish()? {
        let mut field = s.to_field();
        field.push_str("\r\n");
        if unix {
            field = field.replace("\r\n", "\n");
        }
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(&input);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .context("cannot write the signed message to standard output")?;
    Ok(ExitCode::SUCCESS)
}
