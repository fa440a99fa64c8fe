//! `dkimd verify`.

use super::{read_stdin_message, usage};
use crate::cli::VerifyArgs;
use dkim::{DkimResult, VerificationResult};
use dkimd::outln;
use dkimd_core::clock::now;
use dkimd_core::dns::{self, KeyTable};
use std::process::ExitCode;
use std::time::Duration;

pub fn run(a: VerifyArgs, json: bool) -> anyhow::Result<ExitCode> {
    if a.max_signatures == 0 {
        return usage("--max-signatures must be at least 1");
    }
    let file_table = match &a.dns_file {
        Some(p) => Some(KeyTable::from_file(p)?),
        None => None,
    };
    let input = read_stdin_message()?;
    let msg = if input.contains(&b'\r') {
        dkim::Message::parse(&input)?
    } else {
        dkim::Message::parse_lenient(&input)?
    };
    let verifier =
        dkim::Verifier::new(dkim::VerifierConfig::default().with_max_signatures(a.max_signatures));
    let mut v = verifier.start(msg.headers(), a.time.unwrap_or_else(now));
    for chunk in msg.body().chunks(64 * 1024) {
        v.body(chunk);
    }
    let results = match file_table {
        Some(t) => v.finish(&t),
        None => {
            let names = v.key_names();
            let servers: Vec<_> = a.nameserver.into_iter().collect();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // --dns-timeout is the time for all lookups together, retries
            // included.
            let total = Duration::from_secs(a.dns_timeout.max(1));
            let table = rt.block_on(async {
                let resolver = dns::resolver(&servers, total)?;
                let lookups = KeyTable::resolve(&resolver, names.clone());
                anyhow::Ok(
                    tokio::time::timeout(total, lookups)
                        .await
                        .unwrap_or_else(|_| {
                            KeyTable::temporary(
                                &names,
                                &format!("key lookups timed out after {} s", total.as_secs()),
                            )
                        }),
                )
            })?;
            v.finish(&table)
        }
    };
    let authserv_id = a
        .authserv_id
        .clone()
        .unwrap_or_else(dkimd_core::sys::hostname);
    let ar = dkim::authentication_results(&authserv_id, &results);
    if json {
        let items: Vec<serde_json::Value> = results.iter().map(result_json).collect();
        let v = serde_json::json!({
            "results": items,
            "authentication_results": format!("Authentication-Results: {ar}"),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &results {
            outln!("{}", line(r));
        }
        outln!("Authentication-Results: {ar}");
    }
    let passed = results.iter().any(|r| r.result == DkimResult::Pass);
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn line(r: &VerificationResult) -> String {
    let mut s = r.result.to_string();
    for (k, v) in [("d", &r.domain), ("s", &r.selector), ("a", &r.algorithm)] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    if let Some(bits) = r.key_bits {
        s.push_str(&format!(" bits={bits}"));
    }
    if let Some(reason) = &r.reason {
        s.push_str(&format!(" ({reason})"));
    }
    s
}

fn result_json(r: &VerificationResult) -> serde_json::Value {
    serde_json::json!({
        "result": r.result.as_str(),
        "reason": r.reason,
        "domain": r.domain,
        "selector": r.selector,
        "algorithm": r.algorithm,
        "identity": r.identity,
        "header_b": r.signature_b64.as_ref().map(|b| b.chars().take(8).collect::<String>()),
        "key_bits": r.key_bits,
        "testing": r.testing,
    })
}
