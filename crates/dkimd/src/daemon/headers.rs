//! Reading the header fields that decide what happens to a message: the
//! author's domain, and Authentication-Results fields that claim our
//! authserv-id.

use dkim::HeaderField;

/// The author domain: the domain of the (single) From address, or of the
/// Sender address when `use_sender` and there is one.
pub fn author_domain_of(headers: &[HeaderField], use_sender: bool) -> Option<String> {
    if use_sender && headers.iter().any(|h| h.is("Sender")) {
        return address_domain(headers, "Sender");
    }
    address_domain(headers, "From")
}

/// The domain of the address in the single field called `name`.
fn address_domain(headers: &[HeaderField], name: &str) -> Option<String> {
    let mut froms = headers.iter().filter(|h| h.is(name));
    let from = froms.next()?;
    if froms.next().is_some() {
        return None;
    }
    let v = String::from_utf8_lossy(from.value()).into_owned();
    let addr = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => v.get(a + 1..b).unwrap_or("").to_string(),
        _ => v.split('(').next().unwrap_or("").to_string(),
    };
    let domain = addr
        .trim()
        .rsplit_once('@')?
        .1
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    domain
        .parse::<dkim::DomainName>()
        .ok()
        .map(|d| d.to_lowercase())
}

/// True when an Authentication-Results value claims `authserv_id`. The
/// id may follow white space and comments (RFC 8601's CFWS): `(x) id;`.
pub(super) fn claims(value: &[u8], authserv_id: &str) -> bool {
    let v = String::from_utf8_lossy(value);
    let mut rest = v.trim_start();
    // Skip leading comments, nested ones too (bounded by the value).
    while let Some(after) = rest.strip_prefix('(') {
        let mut depth = 1usize;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end.and_then(|e| after.get(e..)) {
            Some(r) => rest = r.trim_start(),
            None => return false,
        }
    }
    let first = rest
        .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .next()
        .unwrap_or("");
    first.eq_ignore_ascii_case(authserv_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hf(s: &str) -> HeaderField {
        HeaderField::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn author_domains() {
        assert_eq!(
            author_domain_of(&[hf("From: Joe <joe@Example.COM>")], false).as_deref(),
            Some("example.com")
        );
        assert_eq!(
            author_domain_of(&[hf("From: joe@example.org (Joe)")], false).as_deref(),
            Some("example.org")
        );
        assert_eq!(
            author_domain_of(&[hf("From: \"a@b\" <joe@c.net>")], false).as_deref(),
            Some("c.net")
        );
        assert_eq!(author_domain_of(&[hf("From: nobody")], false), None);
        assert_eq!(
            author_domain_of(&[hf("From: a@x.com"), hf("From: b@y.com")], false),
            None
        );
        assert_eq!(author_domain_of(&[hf("Subject: x")], false), None);
        let both = [
            hf("From: a@list.example"),
            hf("Sender: bounces@example.com"),
        ];
        assert_eq!(
            author_domain_of(&both, true).as_deref(),
            Some("example.com")
        );
        assert_eq!(
            author_domain_of(&both, false).as_deref(),
            Some("list.example")
        );
        assert_eq!(
            author_domain_of(&both[..1], true).as_deref(),
            Some("list.example")
        );
    }

    #[test]
    fn authserv_id_claims() {
        assert!(claims(b" mx.example.net; dkim=pass", "mx.example.net"));
        assert!(claims(b" MX.example.net 1; dkim=pass", "mx.example.net"));
        assert!(!claims(b" other.example; dkim=pass", "mx.example.net"));
        assert!(!claims(b" mx.example.network; dkim=pass", "mx.example.net"));
        // Comments before the id (RFC 8601 CFWS), nested and escaped.
        assert!(claims(b" (x) mx.example.net; dkim=pass", "mx.example.net"));
        assert!(claims(
            b" (a (b) \\) c)\n\t mx.example.net(c); dkim=pass",
            "mx.example.net"
        ));
        assert!(!claims(
            b" (unclosed mx.example.net; dkim=pass",
            "mx.example.net"
        ));
    }
}
