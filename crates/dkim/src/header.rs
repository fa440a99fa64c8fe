//! Header fields and splitting a message into header and body.

use crate::error::ParseError;

/// Longest header section [`Message::parse`] accepts (bytes). Postfix itself
/// limits headers to 100 kB by default (`header_size_limit`); this is a bound
/// well above that so that no input can make the parser work without limit.
pub const MAX_HEADER_SECTION: usize = 4 * 1024 * 1024;

/// One header field exactly as it appears in the message: the name, the
/// colon and the value with its folding line breaks (CRLF), without the CRLF
/// that ends the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderField {
    raw: Vec<u8>,
    name_len: usize,
}

impl HeaderField {
    /// Builds a field from its raw bytes (`Name: value`, folding included,
    /// no final CRLF). Fails when there is no colon or the name is not a
    /// valid field name.
    ///
    /// ```
    /// let f = dkim::HeaderField::parse(b"Subject: hello\r\n world").unwrap();
    /// assert_eq!(f.name(), b"Subject");
    /// assert_eq!(f.value(), b" hello\r\n world");
    /// assert!(dkim::HeaderField::parse(b"no colon here").is_err());
    /// ```
    pub fn parse(raw: &[u8]) -> Result<Self, ParseError> {
        let colon = raw.iter().position(|b| *b == b':').ok_or_else(|| {
            ParseError::Message(format!("header line without a colon: {}", preview(raw)))
        })?;
        let name = raw.get(..colon).unwrap_or_default();
        // RFC 5322 obsolete syntax allows white space between name and colon.
        let name_len = name
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(0, |p| p + 1);
        let trimmed = name.get(..name_len).unwrap_or_default();
        if trimmed.is_empty() || !trimmed.iter().all(|b| crate::name::is_ftext(*b)) {
            return Err(ParseError::Message(format!(
                "invalid header field name in: {}",
                preview(raw)
            )));
        }
        Ok(HeaderField {
            raw: raw.to_vec(),
            name_len,
        })
    }

    /// Builds a field from a name and a value as a milter receives them. The
    /// value is taken as is (including any leading space); line breaks inside
    /// the value may be LF or CRLF and are stored as CRLF.
    ///
    /// ```
    /// let f = dkim::HeaderField::from_name_value("To", b" a@example.com\n\tb@example.com").unwrap();
    /// assert_eq!(f.as_bytes(), b"To: a@example.com\r\n\tb@example.com");
    /// ```
    pub fn from_name_value(name: &str, value: &[u8]) -> Result<Self, ParseError> {
        let mut raw = Vec::with_capacity(name.len() + 1 + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.push(b':');
        let mut prev = 0u8;
        for &b in value {
            if b == b'\n' && prev != b'\r' {
                raw.push(b'\r');
            }
            raw.push(b);
            prev = b;
        }
        let f = Self::parse(&raw)?;
        if f.name_len != name.len() {
            return Err(ParseError::FieldName(name.to_string()));
        }
        Ok(f)
    }

    /// The field name, without trailing white space.
    pub fn name(&self) -> &[u8] {
        self.raw.get(..self.name_len).unwrap_or_default()
    }

    /// True when the field has this name (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.as_bytes())
    }

    /// Everything after the colon, folding included.
    pub fn value(&self) -> &[u8] {
        let colon = self
            .raw
            .iter()
            .position(|b| *b == b':')
            .unwrap_or(self.raw.len());
        self.raw.get(colon + 1..).unwrap_or_default()
    }

    /// The whole field as it appears in the message, without the final CRLF.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }
}

fn preview(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw.get(..raw.len().min(60)).unwrap_or_default()).into_owned();
    format!("{s:?}")
}

/// A message split into header fields and body. Lines must end in CRLF;
/// [`Message::parse_lenient`] first turns bare LF line ends into CRLF, as a
/// message stored by a Unix tool needs.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    headers: Vec<HeaderField>,
    body: std::borrow::Cow<'a, [u8]>,
}

impl<'a> Message<'a> {
    /// Splits a CRLF message at the first empty line. A message without an
    /// empty line has headers only. Fails when a header line is not a field
    /// or a continuation, or when there are no header fields at all.
    pub fn parse(input: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let mut headers: Vec<HeaderField> = Vec::new();
        let mut pos = 0usize;
        let mut current: Option<(usize, usize)> = None; // start, end of the field in input
        let mut line_no = 0usize;
        let body_start = loop {
            if pos >= input.len() {
                break input.len();
            }
            if pos > MAX_HEADER_SECTION {
                return Err(ParseError::Message(format!(
                    "header section longer than {MAX_HEADER_SECTION} bytes"
                )));
            }
            line_no += 1;
            let rest = input.get(pos..).unwrap_or_default();
            let (line_len, next) = match find_crlf(rest) {
                Some(i) => (i, pos + i + 2),
                None => (rest.len(), input.len()),
            };
            let line = rest.get(..line_len).unwrap_or_default();
            if line.is_empty() {
                break next;
            }
            let first = line.first().copied().unwrap_or(b' ');
            if first == b' ' || first == b'\t' {
                match current.as_mut() {
                    Some((_, end)) => *end = pos + line_len,
                    None => {
                        return Err(ParseError::Message(format!(
                            "line {line_no} continues a header field but none precedes it"
                        )))
                    }
                }
            } else {
                if let Some((s, e)) = current.take() {
                    headers.push(HeaderField::parse(input.get(s..e).unwrap_or_default())?);
                }
                if !line.contains(&b':') {
                    return Err(ParseError::Message(format!(
                        "line {line_no} is neither a header field nor a continuation: {}",
                        preview(line)
                    )));
                }
                current = Some((pos, pos + line_len));
            }
            pos = next;
        };
        if let Some((s, e)) = current.take() {
            headers.push(HeaderField::parse(input.get(s..e).unwrap_or_default())?);
        }
        if headers.is_empty() {
            return Err(ParseError::Message("no header fields".into()));
        }
        Ok(Message {
            headers,
            body: std::borrow::Cow::Borrowed(input.get(body_start..).unwrap_or_default()),
        })
    }

    /// Like [`Message::parse`], after turning bare LF line ends into CRLF when
    /// the message has no CRLF at all.
    pub fn parse_lenient(input: &'a [u8]) -> Result<Message<'static>, ParseError> {
        let converted = to_crlf(input);
        let msg = Message::parse(&converted)?;
        Ok(Message {
            headers: msg.headers,
            body: std::borrow::Cow::Owned(msg.body.into_owned()),
        })
    }

    /// The header fields in message order.
    pub fn headers(&self) -> &[HeaderField] {
        &self.headers
    }

    /// The body (everything after the empty line).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

fn find_crlf(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"\r\n")
}

/// Returns the input with every LF that is not preceded by CR turned into
/// CRLF. Input that already uses CRLF everywhere is returned unchanged.
pub fn to_crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 40);
    let mut prev = 0u8;
    for &b in input {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_headers_and_body() {
        let m = Message::parse(b"A: 1\r\nB: 2\r\n  cont\r\n\r\nbody\r\n").unwrap();
        assert_eq!(m.headers().len(), 2);
        assert_eq!(m.headers()[1].as_bytes(), b"B: 2\r\n  cont");
        assert_eq!(m.body(), b"body\r\n");
    }

    #[test]
    fn headers_only() {
        let m = Message::parse(b"A: 1\r\nB: 2").unwrap();
        assert_eq!(m.headers().len(), 2);
        assert!(m.body().is_empty());
    }

    #[test]
    fn rejects_non_messages() {
        assert!(Message::parse(b"").is_err());
        assert!(Message::parse(b"\r\nbody").is_err());
        assert!(Message::parse(b" cont\r\n\r\n").is_err());
        let e = Message::parse(b"A: 1\r\nnot a header\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(Message::parse(b"%PDF-1.4 binary\x00\x01").is_err());
    }

    #[test]
    fn lenient_converts_lf() {
        let m = Message::parse_lenient(b"A: 1\nB: 2\n\tx\n\nbody\n").unwrap();
        assert_eq!(m.headers()[1].as_bytes(), b"B: 2\r\n\tx");
        assert_eq!(m.body(), b"body\r\n");
    }

    #[test]
    fn name_with_trailing_space() {
        let f = HeaderField::parse(b"Subject : x").unwrap();
        assert_eq!(f.name(), b"Subject");
        assert!(f.is("subject"));
    }
}
