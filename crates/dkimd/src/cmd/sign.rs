//! `dkimd sign`.

use super::{read_stdin_message, usage};
use crate::cli::SignArgs;
use anyhow::Context;
use dkimd_core::clock::now;
use dkimd_core::config::Config;
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

/// The keys to sign with, each with its selector: the `--key` file, or
/// the store's active keys for the domain.
fn keys(
    a: &SignArgs,
    domain: &dkim::DomainName,
    config: impl FnOnce() -> dkimd_core::Result<Config>,
) -> anyhow::Result<Vec<(dkim::Selector, dkim::SigningKey)>> {
    let selector = |s: &str| {
        s.parse::<dkim::Selector>()
            .or_else(|e| usage(format!("--selector: {e}")))
    };
    if let Some(file) = &a.key {
        let Some(sel) = &a.selector else {
            return usage("--key needs --selector");
        };
        return Ok(vec![(selector(sel)?, load_private_key(file)?)]);
    }
    let cfg = config()?;
    let (store, existed) = dkimd_core::store::open_existing_or_empty(&cfg)?;
    let name = domain.to_lowercase();
    if !existed {
        return usage(format!(
            "no --key, and no store in {} to take {name}'s keys from (run dkimd enable, or give --key and --selector)",
            cfg.state_dir.display()
        ));
    }
    let st = store.load_signing()?;
    let mut keys = Vec::new();
    for k in st.keys_for(&name) {
        if a.selector
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case(&k.selector))
        {
            continue;
        }
        let key = dkim::SigningKey::from_pem(k.pem.as_bytes())
            .with_context(|| format!("stored key {} for {name}", k.id))?;
        keys.push((selector(&k.selector)?, key));
    }
    if keys.is_empty() {
        return usage(match &a.selector {
            Some(s) => format!("the store ({}) has no active key for {name} with selector {s}", store.location()),
            None => format!(
                "the store ({}) has no active key for {name} (run dkimd enable, or dkimd key generate {name})",
                store.location()
            ),
        });
    }
    Ok(keys)
}

pub fn run(
    a: SignArgs,
    config: impl FnOnce() -> dkimd_core::Result<Config>,
) -> anyhow::Result<ExitCode> {
    let domain: dkim::DomainName = a
        .domain
        .parse()
        .or_else(|e| usage(format!("--domain: {e}")))?;
    let canon: dkim::CanonicalizationPair = a
        .canonicalization
        .parse()
        .or_else(|e| usage(format!("--canonicalization: {e}")))?;
    let headers = match &a.headers {
        Some(h) => {
            let list = field_list("--headers", h)?;
            if !list.iter().any(|f| f.matches(b"from")) {
                return usage("--headers must include From (RFC 6376 requires it to be signed)");
            }
            Some(std::sync::Arc::<[dkim::FieldName]>::from(list))
        }
        None => None,
    };
    let oversign: std::sync::Arc<[dkim::FieldName]> = field_list("--oversign", &a.oversign)?.into();
    let mut cfgs = Vec::new();
    for (selector, key) in keys(&a, &domain, config)? {
        let mut cfg = dkim::SignerConfig::new(domain.clone(), selector, key);
        cfg.canonicalization = canon;
        if let Some(h) = &headers {
            cfg.headers = h.clone();
        }
        cfg.oversign = oversign.clone();
        cfg.identity = a.identity.clone();
        cfg.expire_after = a.expire;
        cfgs.push(cfg);
    }

    let input = read_stdin_message()?;
    // A message stored with Unix line ends is signed as it will travel (CRLF)
    // and written back with Unix line ends.
    let unix = !input.contains(&b'\r');
    let msg = if unix {
        dkim::Message::parse_lenient(&input)?
    } else {
        dkim::Message::parse(&input)?
    };
    let mut signing = dkim::Signer::new(cfgs, a.time.unwrap_or_else(now)).start(msg.headers())?;
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
