//! Zone file editing: never panics; an edit that succeeds leaves exactly the
//! record asked for (or none), and the SOA serial rises.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let name = "s1._domainkey.example.com";
    let record = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let old = dkimd_core::publish::zonefile::serial(text, "example.com");
    for value in [Some(record), None] {
        if let Ok(e) = dkimd_core::publish::zonefile::edit(text, "example.com", name, value, 300, None, 20261124) {
            if let Some(new) = e.text {
                let got = dkimd_core::publish::zonefile::txt_records(&new, "example.com", name).expect("edited file parses");
                let want: Vec<String> = value.map(|v| vec![v.to_string()]).unwrap_or_default();
                assert_eq!(got, want);
                if let Ok(o) = old {
                    assert!(dkimd_core::publish::zonefile::serial_gt(e.new_serial, o));
                }
            }
        }
    }
});
