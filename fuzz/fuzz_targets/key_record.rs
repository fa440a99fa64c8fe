//! Key records: never panic; what parses formats and parses back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = dkim::KeyRecord::parse(&text) {
        let back = dkim::KeyRecord::parse(&r.to_string()).expect("formatted record parses");
        assert_eq!(back.public_key, r.public_key);
        assert_eq!(back.key_type, r.key_type);
        let parts = dkim::split_txt_strings(&r.to_string());
        assert!(parts.iter().all(|p| p.len() <= 255));
    }
});
