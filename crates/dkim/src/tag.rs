//! Tag lists (RFC 6376 §3.2): `name=value; name=value`.

use crate::error::ParseError;
use std::ops::Range;

/// One `tag-spec` of a tag list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The tag name (`tag-name`), case-sensitive as RFC 6376 requires.
    pub name: String,
    /// The tag value with the surrounding folding white space removed. Inner
    /// white space is kept as it appeared; use [`Tag::value_no_ws`] for values
    /// such as base64 where white space is not significant.
    pub value: String,
    /// Byte range in the parsed input from just after `=` up to (not
    /// including) the `;` that ends the tag, or the end of the input. This is
    /// what a verifier blanks to remove the `b=` value.
    pub raw_span: Range<usize>,
}

impl Tag {
    /// The value with every white space character removed.
    pub fn value_no_ws(&self) -> String {
        self.value.chars().filter(|c| !is_ws_char(*c)).collect()
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_ws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `tag-name = ALPHA *ALNUMPUNC`
fn is_tag_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphabetic()
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        None => false,
    }
}

/// `VALCHAR = %x21-3A / %x3C-7E`, plus folding white space between `tval`s.
/// Bytes above 0x7F are accepted as well (UTF-8 in `z=` and `n=` occurs in
/// practice and RFC 8616 allows it in names).
fn is_value_byte(b: u8) -> bool {
    (0x21..=0x3a).contains(&b) || (0x3c..=0x7e).contains(&b) || b >= 0x80 || is_ws(b)
}

/// Range of `s[r]` with white space trimmed at both ends.
fn trim(s: &[u8], r: Range<usize>) -> Range<usize> {
    let seg = s.get(r.clone()).unwrap_or_default();
    let start = seg.iter().position(|b| !is_ws(*b)).unwrap_or(seg.len());
    let end = seg
        .iter()
        .rposition(|b| !is_ws(*b))
        .map_or(start, |p| p + 1);
    (r.start + start)..(r.start + end)
}

/// Parses a tag list. Empty tag specs (`;;`, a trailing `;`) are tolerated,
/// duplicate tag names make the whole list invalid (RFC 6376 §3.2).
///
/// ```
/// let tags = dkim::parse_tag_list(b"v=1; a=rsa-sha256;\r\n\tb=abc\r\n def;").unwrap();
/// assert_eq!(tags.len(), 3);
/// assert_eq!(tags[2].name, "b");
/// assert_eq!(tags[2].value_no_ws(), "abcdef");
/// assert!(dkim::parse_tag_list(b"v=1; v=2").is_err());
/// assert!(dkim::parse_tag_list(b"novalue").is_err());
/// ```
pub fn parse_tag_list(input: &[u8]) -> Result<Vec<Tag>, ParseError> {
    let mut tags: Vec<Tag> = Vec::new();
    let mut start = 0usize;
    loop {
        let end = input
            .get(start..)
            .and_then(|rest| rest.iter().position(|b| *b == b';'))
            .map_or(input.len(), |p| start + p);
        let spec = trim(input, start..end);
        if !spec.is_empty() {
            tags.push(parse_tag_spec(input, spec, end)?);
            if let Some(last) = tags.last() {
                if tags.iter().filter(|t| t.name == last.name).count() > 1 {
                    return Err(ParseError::TagList(format!(
                        "tag {}= occurs twice",
                        last.name
                    )));
                }
            }
        }
        if end >= input.len() {
            break;
        }
        start = end + 1;
    }
    Ok(tags)
}

fn parse_tag_spec(input: &[u8], spec: Range<usize>, spec_end: usize) -> Result<Tag, ParseError> {
    let bytes = input.get(spec.clone()).unwrap_or_default();
    let eq = bytes.iter().position(|b| *b == b'=').ok_or_else(|| {
        ParseError::TagList(format!(
            "{:?} has no '='",
            String::from_utf8_lossy(bytes)
                .chars()
                .take(40)
                .collect::<String>()
        ))
    })?;
    let name_range = trim(input, spec.start..spec.start + eq);
    let name = input.get(name_range).unwrap_or_default();
    if !is_tag_name(name) {
        return Err(ParseError::TagList(format!(
            "invalid tag name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    let name = String::from_utf8_lossy(name).into_owned();
    let value_range = trim(input, spec.start + eq + 1..spec.end);
    let value = input.get(value_range).unwrap_or_default();
    if let Some(bad) = value.iter().find(|b| !is_value_byte(**b)) {
        return Err(ParseError::InvalidTag {
            tag: name,
            reason: format!("character 0x{bad:02x} is not allowed in a tag value"),
        });
    }
    let value = String::from_utf8(value.to_vec()).map_err(|_| ParseError::InvalidTag {
        tag: name.clone(),
        reason: "value is not valid UTF-8".into(),
    })?;
    Ok(Tag {
        name,
        value,
        raw_span: spec.start + eq + 1..spec_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_semicolon_and_whitespace() {
        let t = parse_tag_list(b" v = DKIM1 ; p = abc ;  ").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].value, "DKIM1");
        assert_eq!(t[1].value, "abc");
    }

    #[test]
    fn empty_list() {
        assert!(parse_tag_list(b"").unwrap().is_empty());
        assert!(parse_tag_list(b"  ").unwrap().is_empty());
    }

    #[test]
    fn empty_value_allowed() {
        let t = parse_tag_list(b"v=DKIM1; p=").unwrap();
        assert_eq!(t[1].value, "");
    }

    #[test]
    fn raw_span_covers_value_and_ws() {
        let input = b"a=1; b= xy z ;c=3";
        let t = parse_tag_list(input).unwrap();
        assert_eq!(&input[t[1].raw_span.clone()], b" xy z ");
        assert_eq!(t[1].value, "xy z");
        assert_eq!(&input[t[2].raw_span.clone()], b"3");
    }

    #[test]
    fn bad_names_and_values() {
        assert!(parse_tag_list(b"1a=x").is_err());
        assert!(parse_tag_list(b"a-b=x").is_err());
        assert!(parse_tag_list(b"=x").is_err());
        assert!(parse_tag_list(b"a=x\x01").is_err());
        assert!(parse_tag_list(b"a_b=x").is_ok());
    }

    #[test]
    fn duplicate_is_error() {
        let e = parse_tag_list(b"a=1;b=2;a=3").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
