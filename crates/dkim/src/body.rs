//! Body hashing: canonicalization, SHA-256 and the `l=` limit.

use crate::canon::{BodyCanonicalizer, Canonicalization};
use aws_lc_rs::digest;

/// Canonicalizes and hashes one body with SHA-256, stopping after `limit`
/// canonical bytes when a limit is set.
#[derive(Clone)]
pub(crate) struct BodyHasher {
    canon: BodyCanonicalizer,
    ctx: digest::Context,
    limit: Option<u64>,
    /// Canonical bytes seen (also past the limit, up to limit + 1).
    seen: u64,
    pub(crate) kind: Canonicalization,
}

impl BodyHasher {
    pub(crate) fn new(kind: Canonicalization, limit: Option<u64>) -> Self {
        BodyHasher {
            canon: BodyCanonicalizer::new(kind),
            ctx: digest::Context::new(&digest::SHA256),
            limit,
            seen: 0,
            kind,
        }
    }

    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// True once the limit has been reached: more body cannot change the hash.
    pub(crate) fn done(&self) -> bool {
        self.limit.is_some_and(|l| self.seen > l)
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        if self.done() {
            return;
        }
        let (ctx, seen, limit) = (&mut self.ctx, &mut self.seen, self.limit);
        self.canon
            .update(chunk, &mut |s: &[u8]| feed(ctx, seen, limit, s));
    }

    /// The digest and the canonical body length (counted up to the limit + 1
    /// when a limit is set, so "longer than the limit" stays visible).
    pub(crate) fn finish(mut self) -> (Vec<u8>, u64) {
        let (ctx, seen, limit) = (&mut self.ctx, &mut self.seen, self.limit);
        if self.limit.is_none_or(|l| *seen <= l) {
            self.canon.finish(&mut |s: &[u8]| feed(ctx, seen, limit, s));
        }
        let seen = self.seen;
        (self.ctx.finish().as_ref().to_vec(), seen)
    }
}

fn feed(ctx: &mut digest::Context, seen: &mut u64, limit: Option<u64>, s: &[u8]) {
    let len = s.len() as u64;
    match limit {
        None => ctx.update(s),
        Some(l) => {
            if *seen < l {
                let take = usize::try_from((l - *seen).min(len)).unwrap_or(s.len());
                ctx.update(s.get(..take).unwrap_or(s));
            }
            if *seen + len > l {
                // Only remember that there is more than the limit.
                *seen = l + 1;
                return;
            }
        }
    }
    *seen += len;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> Vec<u8> {
        digest::digest(&digest::SHA256, data).as_ref().to_vec()
    }

    #[test]
    fn limit_cuts_and_reports_more() {
        let mut h = BodyHasher::new(Canonicalization::Simple, Some(3));
        h.update(b"ab");
        assert!(!h.done());
        h.update(b"cdef\r\n");
        assert!(h.done());
        let (d, seen) = h.finish();
        assert_eq!(d, sha(b"abc"));
        assert_eq!(seen, 4);
    }

    #[test]
    fn limit_longer_than_body() {
        let mut h = BodyHasher::new(Canonicalization::Relaxed, Some(100));
        h.update(b"abc\r\n");
        let (d, seen) = h.finish();
        assert_eq!(d, sha(b"abc\r\n"));
        assert_eq!(seen, 5);
    }

    #[test]
    fn limit_zero() {
        let mut h = BodyHasher::new(Canonicalization::Simple, Some(0));
        h.update(b"abc\r\n");
        let (d, _) = h.finish();
        assert_eq!(d, sha(b""));
    }

    #[test]
    fn no_limit() {
        let mut h = BodyHasher::new(Canonicalization::Simple, None);
        h.update(b"abc");
        assert!(!h.done());
        assert_eq!(h.finish(), (sha(b"abc\r\n"), 5));
    }
}
