//! `dkimd domain list`.

use super::print_json;
use dkimd::outln;
use dkimd_core::manager::Manager;
use dkimd_core::model::settings::decide;
use std::process::ExitCode;

/// The domains, whether each signs and why.
pub fn list(m: &Manager) -> anyhow::Result<ExitCode> {
    let st = m.load()?;
    let rows: Vec<serde_json::Value> = st
        .domains
        .iter()
        .map(|d| {
            let dec = decide(&st.settings, &d.name, Some((d.dns, d.mail, d.dkim)));
            serde_json::json!({
                "name": d.name, "dns": d.dns, "mail": d.mail, "dkim": d.dkim.as_str(),
                "signs": dec.signs, "why": dec.why, "delegate": d.delegate,
            })
        })
        .collect();
    if m.out.is_json() {
        return print_json(&serde_json::json!({ "domains": rows }));
    }
    outln!(
        "{:<32} {:<4} {:<4} {:<8} SIGNS",
        "DOMAIN",
        "DNS",
        "MAIL",
        "DKIM"
    );
    for d in &st.domains {
        let dec = decide(&st.settings, &d.name, Some((d.dns, d.mail, d.dkim)));
        outln!(
            "{:<32} {:<4} {:<4} {:<8} {dec}",
            d.name,
            if d.dns { "on" } else { "off" },
            if d.mail { "on" } else { "off" },
            d.dkim.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}
