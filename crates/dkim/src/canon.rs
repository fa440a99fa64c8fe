//! Canonicalization (RFC 6376 §3.4): `simple` and `relaxed`, for header
//! fields and, streaming, for the body.

use crate::error::ParseError;
use crate::header::HeaderField;
use std::fmt;
use std::str::FromStr;

/// One canonicalization algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Canonicalization {
    /// `simple`: (almost) no change.
    Simple,
    /// `relaxed`: tolerant of white space changes and header folding.
    Relaxed,
}

impl Canonicalization {
    /// The name used in `c=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Canonicalization::Simple => "simple",
            Canonicalization::Relaxed => "relaxed",
        }
    }
}

impl FromStr for Canonicalization {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "simple" => Ok(Canonicalization::Simple),
            "relaxed" => Ok(Canonicalization::Relaxed),
            _ => Err(ParseError::InvalidTag {
                tag: "c".into(),
                reason: format!("unknown canonicalization {s:?}"),
            }),
        }
    }
}

/// The `c=` value: header and body canonicalization.
///
/// ```
/// use dkim::{CanonicalizationPair, Canonicalization::*};
/// let c: CanonicalizationPair = "relaxed".parse().unwrap();
/// assert_eq!((c.header, c.body), (Relaxed, Simple));
/// let c: CanonicalizationPair = "relaxed/relaxed".parse().unwrap();
/// assert_eq!(c.to_string(), "relaxed/relaxed");
/// assert!("fancy/simple".parse::<CanonicalizationPair>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CanonicalizationPair {
    /// For the header fields.
    pub header: Canonicalization,
    /// For the body.
    pub body: Canonicalization,
}

impl Default for CanonicalizationPair {
    /// `relaxed/relaxed`, dkimd's default for signing.
    fn default() -> Self {
        CanonicalizationPair {
            header: Canonicalization::Relaxed,
            body: Canonicalization::Relaxed,
        }
    }
}

impl FromStr for CanonicalizationPair {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (h, b) = match s.split_once('/') {
            Some((h, b)) => (h.parse()?, b.parse()?),
            None => (s.parse()?, Canonicalization::Simple),
        };
        Ok(CanonicalizationPair { header: h, body: b })
    }
}

impl fmt::Display for CanonicalizationPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.header.as_str(), self.body.as_str())
    }
}

/// `simple` header canonicalization: the field unchanged, plus CRLF.
pub fn canonicalize_header_simple(field: &HeaderField, out: &mut Vec<u8>) {
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `relaxed` header canonicalization: lower-case name, unfolded value with
/// white space runs reduced to one space and trimmed at both ends, `name:value`
/// plus CRLF.
///
/// ```
/// let f = dkim::HeaderField::parse(b"SubJect :  Hello \r\n\t World  ").unwrap();
/// let mut out = Vec::new();
/// dkim::canonicalize_header_relaxed(&f, &mut out);
/// assert_eq!(out, b"subject:Hello World\r\n");
/// ```
pub fn canonicalize_header_relaxed(field: &HeaderField, out: &mut Vec<u8>) {
    out.extend(field.name().iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let mut pending_space = false;
    let mut started = false;
    for &b in field.value() {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = true,
            _ => {
                if pending_space && started {
                    out.push(b' ');
                }
                pending_space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Streaming body canonicalizer. Feed the body in chunks of any size (a chunk
/// may end between CR and LF); the canonical form is passed to a sink as it
/// becomes known. Trailing empty lines are held back until more content shows
/// they are not trailing, so memory use does not depend on the body size
/// (apart from a count of held-back line ends).
///
/// ```
/// use dkim::{BodyCanonicalizer, Canonicalization};
/// let mut c = BodyCanonicalizer::new(Canonicalization::Relaxed);
/// let mut out = Vec::new();
/// for chunk in [&b" C \r"[..], b"\nD \t E\r\n", b"\r\n  \r\n"] {
///     c.update(chunk, &mut |s: &[u8]| out.extend_from_slice(s));
/// }
/// c.finish(&mut |s: &[u8]| out.extend_from_slice(s));
/// assert_eq!(out, b" C\r\nD E\r\n");
/// ```
#[derive(Clone, Debug)]
pub struct BodyCanonicalizer {
    kind: Canonicalization,
    /// Line ends seen since the last content byte and not yet passed on.
    pending_crlfs: u64,
    /// White space seen (relaxed) since the last content byte on this line.
    pending_wsp: bool,
    /// The previous byte was a CR whose LF has not been seen yet.
    cr_pending: bool,
    /// Some content has been passed on.
    emitted_any: bool,
    buf: Vec<u8>,
}

const BUF_FLUSH: usize = 4096;

impl BodyCanonicalizer {
    /// A canonicalizer for one algorithm.
    pub fn new(kind: Canonicalization) -> Self {
        BodyCanonicalizer {
            kind,
            pending_crlfs: 0,
            pending_wsp: false,
            cr_pending: false,
            emitted_any: false,
            buf: Vec::new(),
        }
    }

    fn is_clean(&self) -> bool {
        !self.cr_pending && !self.pending_wsp && self.pending_crlfs == 0
    }

    /// Canonicalizes one chunk, passing the output to `sink`.
    pub fn update(&mut self, data: &[u8], sink: &mut impl FnMut(&[u8])) {
        let mut i = 0usize;
        while i < data.len() {
            if self.is_clean() {
                let j = match self.kind {
                    Canonicalization::Relaxed => fast_scan_relaxed(data, i),
                    Canonicalization::Simple => fast_scan_simple(data, i),
                };
                if j > i {
                    self.flush(sink);
                    sink(data.get(i..j).unwrap_or_default());
                    self.emitted_any = true;
                    i = j;
                    continue;
                }
            }
            if let Some(&b) = data.get(i) {
                self.step(b);
                if self.buf.len() >= BUF_FLUSH {
                    self.flush(sink);
                }
            }
            i += 1;
        }
        self.flush(sink);
    }

    /// Ends the body: passes on what is still held back according to the
    /// algorithm (one final CRLF; `simple` turns an empty body into CRLF).
    pub fn finish(&mut self, sink: &mut impl FnMut(&[u8])) {
        if self.cr_pending {
            self.cr_pending = false;
            self.content(b'\r');
        }
        match self.kind {
            Canonicalization::Relaxed => {
                if self.emitted_any {
                    self.buf.extend_from_slice(b"\r\n");
                }
            }
            Canonicalization::Simple => self.buf.extend_from_slice(b"\r\n"),
        }
        self.pending_crlfs = 0;
        self.pending_wsp = false;
        self.flush(sink);
    }

    fn flush(&mut self, sink: &mut impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            sink(&self.buf);
            self.buf.clear();
        }
    }

    fn content(&mut self, b: u8) {
        for _ in 0..self.pending_crlfs {
            self.buf.extend_from_slice(b"\r\n");
        }
        self.pending_crlfs = 0;
        if self.pending_wsp {
            self.buf.push(b' ');
            self.pending_wsp = false;
        }
        self.buf.push(b);
        self.emitted_any = true;
    }

    fn step(&mut self, b: u8) {
        if self.cr_pending {
            self.cr_pending = false;
            if b == b'\n' {
                self.pending_wsp = false;
                self.pending_crlfs += 1;
                return;
            }
            // A CR not followed by LF is an ordinary byte.
            self.content(b'\r');
        }
        match (b, self.kind) {
            (b'\r', _) => self.cr_pending = true,
            (b' ' | b'\t', Canonicalization::Relaxed) => self.pending_wsp = true,
            _ => self.content(b),
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Non-zero when some byte of `w` equals `b`.
#[inline]
fn has_byte(w: u64, b: u8) -> u64 {
    let x = w ^ (LO * u64::from(b));
    x.wrapping_sub(LO) & !x & HI
}

/// High bit set in exactly those bytes of `w` that equal `b`.
#[inline]
fn eq_mask(w: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (LO * u64::from(b));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

#[inline]
fn word_at(d: &[u8], j: usize) -> Option<u64> {
    let bytes: [u8; 8] = d.get(j..j + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

#[inline]
fn plain_relaxed(b: u8) -> bool {
    !matches!(b, b' ' | b'\t' | b'\r')
}

/// Bytes examined at once by the block scans: written as plain loops over
/// fixed-size arrays so that the compiler turns them into vector compares
/// (16 bytes per instruction with SSE2, the x86-64 baseline).
const BLOCK: usize = 32;

/// The block at `j` and its two successors as three overlapping arrays:
/// byte `i` of each is the input's byte `j+i`, `j+i+1` and `j+i+2`. `None`
/// when fewer than `BLOCK + 2` bytes are left.
#[inline]
fn block_at(d: &[u8], j: usize) -> Option<(&[u8; BLOCK], &[u8; BLOCK], &[u8; BLOCK])> {
    let w = d.get(j..j.checked_add(BLOCK + 2)?)?;
    Some((
        w.get(..BLOCK)?.try_into().ok()?,
        w.get(1..=BLOCK)?.try_into().ok()?,
        w.get(2..)?.try_into().ok()?,
    ))
}

/// Whether the `BLOCK` bytes at `j` all pass through relaxed
/// canonicalization unchanged from a clean state (the rules of
/// [`fast_scan_relaxed`], every byte checked at once): no HTAB; SP only
/// before a byte that is not SP, HTAB or CR; CR only as CRLF before such a
/// byte.
#[inline]
fn block_plain_relaxed(d: &[u8], j: usize) -> bool {
    let Some((b0, b1, b2)) = block_at(d, j) else {
        return false;
    };
    let mut bad = 0u8;
    for ((&b, &n), &nn) in b0.iter().zip(b1).zip(b2) {
        let n_ws = (n == b' ') | (n == b'\t') | (n == b'\r');
        let nn_ws = (nn == b' ') | (nn == b'\t') | (nn == b'\r');
        let bad_here =
            (b == b'\t') | ((b == b' ') & n_ws) | ((b == b'\r') & ((n != b'\n') | nn_ws));
        bad |= u8::from(bad_here);
    }
    bad == 0
}

/// Like [`block_plain_relaxed`] for `simple`: CR only as CRLF before a byte
/// that is not CR.
#[inline]
fn block_plain_simple(d: &[u8], j: usize) -> bool {
    let Some((b0, b1, b2)) = block_at(d, j) else {
        return false;
    };
    let mut bad = 0u8;
    for ((&b, &n), &nn) in b0.iter().zip(b1).zip(b2) {
        bad |= u8::from((b == b'\r') & ((n != b'\n') | (nn == b'\r')));
    }
    bad == 0
}

/// Length of the run starting at `j` whose relaxed canonical form is the run
/// itself, given a clean state: bytes other than SP, HTAB, CR; a single SP
/// followed by such a byte; CRLF followed by such a byte.
fn fast_scan_relaxed(d: &[u8], mut j: usize) -> usize {
    loop {
        while block_plain_relaxed(d, j) {
            j += BLOCK;
        }
        // Eight bytes at a time while they hold no TAB or CR and every
        // space is followed by a byte that is not white space or CR.
        while let Some(w) = word_at(d, j) {
            // No byte below 0x21: nothing but plain bytes (SP, TAB and CR
            // are all below it). The common case for encoded attachments.
            if w.wrapping_sub(LO * 0x21) & !w & HI == 0 {
                j += 8;
                continue;
            }
            let bad = eq_mask(w, b'\t') | eq_mask(w, b'\r');
            let sp = eq_mask(w, b' ');
            // Byte i+1's flag moved onto byte i (little-endian).
            let next_bad = (sp | bad) >> 8;
            let last_sp = sp & (0x80 << 56) != 0;
            if bad != 0
                || sp & next_bad != 0
                || (last_sp && !d.get(j + 8).is_some_and(|&c| plain_relaxed(c)))
            {
                break;
            }
            j += 8;
        }
        match d.get(j) {
            None | Some(b'\t') => return j,
            Some(b' ') => match d.get(j + 1) {
                Some(&c) if plain_relaxed(c) => j += 2,
                _ => return j,
            },
            Some(b'\r') => match (d.get(j + 1), d.get(j + 2)) {
                (Some(b'\n'), Some(&c)) if plain_relaxed(c) => j += 3,
                _ => return j,
            },
            Some(_) => j += 1,
        }
    }
}

/// Like [`fast_scan_relaxed`] for `simple`: bytes other than CR, and CRLF
/// followed by a byte other than CR.
fn fast_scan_simple(d: &[u8], mut j: usize) -> usize {
    loop {
        while block_plain_simple(d, j) {
            j += BLOCK;
        }
        while let Some(w) = word_at(d, j) {
            if has_byte(w, b'\r') != 0 {
                break;
            }
            j += 8;
        }
        match d.get(j) {
            None => return j,
            Some(b'\r') => match (d.get(j + 1), d.get(j + 2)) {
                (Some(b'\n'), Some(&c)) if c != b'\r' => j += 3,
                _ => return j,
            },
            Some(_) => j += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(kind: Canonicalization, body: &[u8]) -> Vec<u8> {
        canon_chunked(kind, body, body.len().max(1))
    }

    /// The canonical form of `body` fed in chunks of `size` bytes.
    fn canon_chunked(kind: Canonicalization, body: &[u8], size: usize) -> Vec<u8> {
        let mut c = BodyCanonicalizer::new(kind);
        let mut out = Vec::new();
        for chunk in body.chunks(size) {
            c.update(chunk, &mut |s: &[u8]| out.extend_from_slice(s));
        }
        c.finish(&mut |s: &[u8]| out.extend_from_slice(s));
        out
    }

    /// Straightforward whole-body reference implementation of RFC 6376 §3.4.3/§3.4.4.
    fn reference(kind: Canonicalization, body: &[u8]) -> Vec<u8> {
        // Split into lines at CRLF; a final line without CRLF is a line too.
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut cur = Vec::new();
        let mut i = 0;
        while i < body.len() {
            if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
                lines.push(std::mem::take(&mut cur));
                i += 2;
            } else {
                cur.push(body[i]);
                i += 1;
            }
        }
        let unterminated = !cur.is_empty();
        if unterminated {
            lines.push(cur);
        }
        if kind == Canonicalization::Relaxed {
            for l in lines.iter_mut() {
                let mut o = Vec::new();
                let mut ws = false;
                for &b in l.iter() {
                    if b == b' ' || b == b'\t' {
                        ws = true;
                    } else {
                        if ws {
                            o.push(b' ');
                        }
                        ws = false;
                        o.push(b);
                    }
                }
                *l = o;
            }
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut out = Vec::new();
        for l in &lines {
            out.extend_from_slice(l);
            out.extend_from_slice(b"\r\n");
        }
        if kind == Canonicalization::Simple && out.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn rfc6376_example_bodies() {
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(canon(Canonicalization::Relaxed, body), b" C\r\nD E\r\n");
        assert_eq!(canon(Canonicalization::Simple, body), b" C \r\nD \t E\r\n");
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(canon(Canonicalization::Simple, b""), b"\r\n");
        assert_eq!(canon(Canonicalization::Relaxed, b""), b"");
        assert_eq!(canon(Canonicalization::Simple, b"\r\n\r\n"), b"\r\n");
        assert_eq!(canon(Canonicalization::Relaxed, b"\r\n \r\n\t\r\n"), b"");
    }

    #[test]
    fn missing_final_crlf() {
        assert_eq!(canon(Canonicalization::Simple, b"abc"), b"abc\r\n");
        assert_eq!(canon(Canonicalization::Relaxed, b"abc  "), b"abc\r\n");
    }

    #[test]
    fn whitespace_only_trailing_lines_dropped_relaxed() {
        assert_eq!(
            canon(Canonicalization::Relaxed, b"a\r\n \r\n\t \r\n"),
            b"a\r\n"
        );
        assert_eq!(
            canon(Canonicalization::Simple, b"a\r\n \r\n"),
            b"a\r\n \r\n"
        );
    }

    #[test]
    fn lone_cr_and_lf_are_content() {
        assert_eq!(
            canon(Canonicalization::Relaxed, b"a\rb\nc\r\n"),
            b"a\rb\nc\r\n"
        );
        assert_eq!(canon(Canonicalization::Simple, b"a\r"), b"a\r\r\n");
    }

    #[test]
    fn every_chunk_size_matches_reference() {
        let samples: [&[u8]; 6] = [
            b"Hello  world \t\r\n\r\n  indented\tline  \r\n\r\n\r\n",
            b"\r\n\r\nx\r\n",
            b"no final crlf \t ",
            b"a \r\n \r\nb\r\r\n\n\r\n \r\n",
            b"word word word word word word word word word word\r\n8bit \xc3\xa9\xff\r\n",
            b"",
        ];
        for kind in [Canonicalization::Simple, Canonicalization::Relaxed] {
            for s in samples {
                let want = reference(kind, s);
                assert_eq!(canon(kind, s), want, "{kind:?} {s:?}");
                for size in 1..=s.len().max(1) {
                    assert_eq!(
                        canon_chunked(kind, s, size),
                        want,
                        "{kind:?} chunk {size} {s:?}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn streaming_equals_reference(
            body in proptest::collection::vec(proptest::sample::select(vec![b'a', b'b', b' ', b'\t', b'\r', b'\n', 0xc3]), 0..200),
            size in 1usize..50,
        ) {
            for kind in [Canonicalization::Simple, Canonicalization::Relaxed] {
                proptest::prop_assert_eq!(canon_chunked(kind, &body, size), reference(kind, &body));
            }
        }

        /// Mostly plain text, so that whole blocks pass the block scans and
        /// white space, CR and line ends fall on every position of a block
        /// and across its edge.
        #[test]
        fn mostly_plain_text_equals_reference(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    &b"abcdefgh"[..], b"ijklmnop", b"abcdefgh", b"ijklmnop", b"abcdefgh", b"ijklmnop", b"q", b" ", b" ", b"\r\n", b"\r\n", b"  ", b"\t", b" \r\n", b"\r", b"\n", b"\r\n\r\n", b"\r\n ",
                ]),
                0..120,
            ),
            size in 1usize..300,
        ) {
            let body: Vec<u8> = pieces.concat();
            for kind in [Canonicalization::Simple, Canonicalization::Relaxed] {
                proptest::prop_assert_eq!(canon_chunked(kind, &body, size), reference(kind, &body));
            }
        }
    }
}
