//! Tag lists: never panic; every span points inside the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tags) = dkim::parse_tag_list(data) {
        for t in tags {
            assert!(t.raw_span.start <= t.raw_span.end && t.raw_span.end <= data.len());
        }
    }
});
