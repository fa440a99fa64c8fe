//! `dkimd settings`.

use super::print_json;
use dkimd::outln;
use dkimd_core::manager::Manager;
use dkimd_core::model::settings::SETTABLE;
use std::process::ExitCode;

/// Every setting with its value and what it takes.
pub fn show(m: &Manager) -> anyhow::Result<ExitCode> {
    let st = m.load()?;
    let pairs = st.settings.to_pairs();
    if m.out.is_json() {
        let obj: serde_json::Map<String, serde_json::Value> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        return print_json(&serde_json::Value::Object(obj));
    }
    for (k, v) in pairs {
        let help = SETTABLE
            .iter()
            .find(|(n, _)| *n == k.as_str())
            .map(|(_, h)| *h)
            .unwrap_or("set by enable / disable");
        outln!(
            "{:<18} {:<24} # {help}",
            k.as_str(),
            if v.is_empty() { "-".to_string() } else { v }
        );
    }
    Ok(ExitCode::SUCCESS)
}
