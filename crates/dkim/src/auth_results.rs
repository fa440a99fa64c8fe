//! Authentication-Results (RFC 8601) for DKIM results.

use crate::verifier::{DkimResult, VerificationResult};

/// RFC 2045 `tspecials` plus space and controls: a value with any of these
/// must be a quoted-string.
fn needs_quotes(v: &str) -> bool {
    v.is_empty()
        || v.bytes()
            .any(|b| b <= b' ' || b >= 0x7f || b"()<>@,;:\\\"/[]?=".contains(&b))
}

fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\r' | '\n' => s.push(' '),
            _ => s.push(c),
        }
    }
    s.push('"');
    s
}

fn value(v: &str) -> String {
    if needs_quotes(v) {
        quoted(v)
    } else {
        v.to_string()
    }
}

/// A domain-like property value (`header.d`, `header.i`): these may contain
/// `@` and dots unquoted per RFC 8601's `pvalue`; anything else odd is quoted.
fn domain_value(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@+".contains(&b))
    {
        v.to_string()
    } else {
        quoted(v)
    }
}

impl VerificationResult {
    /// This result as one RFC 8601 `resinfo`: `dkim=pass header.d=… header.s=…
    /// header.a=… header.b=…`, with `reason="…"` for anything but a pass.
    ///
    /// ```
    /// let r = dkim::VerificationResult::none();
    /// assert_eq!(r.to_resinfo(), "dkim=none");
    /// ```
    pub fn to_resinfo(&self) -> String {
        let mut s = format!("dkim={}", self.result);
        if let Some(r) = &self.reason {
            s.push_str(" reason=");
            s.push_str(&quoted(r));
        }
        if let Some(d) = &self.domain {
            s.push_str(" header.d=");
            s.push_str(&domain_value(d));
        }
        if let Some(i) = &self.identity {
            s.push_str(" header.i=");
            s.push_str(&domain_value(i));
        }
        if let Some(sel) = &self.selector {
            s.push_str(" header.s=");
            s.push_str(&value(sel));
        }
        if let Some(a) = &self.algorithm {
            s.push_str(" header.a=");
            s.push_str(&value(a));
        }
        if let Some(b) = &self.signature_b64 {
            let prefix: String = b.chars().take(8).collect();
            if !prefix.is_empty() {
                s.push_str(" header.b=");
                s.push_str(&value(&prefix));
            }
        }
        s
    }
}

/// The value of an Authentication-Results field (without the field name and
/// without a leading space) for these results, one `resinfo` per line:
/// `authserv-id;\r\n\tdkim=pass …;\r\n\tdkim=fail …`. No results, or a
/// single `none`, give `authserv-id; dkim=none`.
///
/// ```
/// let v = dkim::authentication_results("mx.example.net", &[]);
/// assert_eq!(v, "mx.example.net; dkim=none");
/// ```
pub fn authentication_results(authserv_id: &str, results: &[VerificationResult]) -> String {
    let id = value(authserv_id);
    let real: Vec<&VerificationResult> = results
        .iter()
        .filter(|r| r.result != DkimResult::None)
        .collect();
    if real.is_empty() {
        return format!("{id}; dkim=none");
    }
    let mut s = id;
    for r in real {
        s.push_str(";\r\n\t");
        s.push_str(&r.to_resinfo());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(value("abcDEF12"), "abcDEF12");
        assert_eq!(value("ab/cd+ef"), "\"ab/cd+ef\"");
        assert_eq!(value("a=b"), "\"a=b\"");
        assert_eq!(quoted("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(domain_value("joe@mail.example.com"), "joe@mail.example.com");
        assert_eq!(domain_value("a b"), "\"a b\"");
    }
}
