//! Body canonicalization: the output does not depend on how the body is cut
//! into chunks, and never panics.
#![no_main]
use dkim::{BodyCanonicalizer, Canonicalization};
use libfuzzer_sys::fuzz_target;

fn run(kind: Canonicalization, chunks: &mut dyn Iterator<Item = &[u8]>) -> Vec<u8> {
    let mut c = BodyCanonicalizer::new(kind);
    let mut out = Vec::new();
    for chunk in chunks {
        c.update(chunk, &mut |s: &[u8]| out.extend_from_slice(s));
    }
    c.finish(&mut |s: &[u8]| out.extend_from_slice(s));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((size, body)) = data.split_first() else { return };
    let size = usize::from(*size).max(1);
    for kind in [Canonicalization::Simple, Canonicalization::Relaxed] {
        let whole = run(kind, &mut std::iter::once(body));
        let chunked = run(kind, &mut body.chunks(size));
        assert_eq!(whole, chunked);
        let bytewise = run(kind, &mut body.chunks(1));
        assert_eq!(whole, bytewise);
        if kind == Canonicalization::Relaxed {
            assert!(!whole.windows(2).any(|w| w == b"  "));
        }
        if !whole.is_empty() {
            assert!(whole.ends_with(b"\r\n"));
        }
    }
});
