//! Whole messages through the verifier with a fixed key table: never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = dkim::Message::parse(data) else { return };
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    keys.insert(
        "sel._domainkey.example.com".into(),
        vec!["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into()],
    );
    let mut v = dkim::Verifier::default().start(msg.headers(), 1_700_000_000);
    for chunk in msg.body().chunks(7) {
        v.body(chunk);
    }
    let results = v.finish(&keys);
    let _ = dkim::authentication_results("mx.example.net", &results);
});
