//! Editing BIND zone files: find, add, replace and remove the TXT records at
//! one name, and raise the SOA serial. Everything else in the file is kept
//! byte for byte.
//!
//! The reader is a small tokenizer that knows what matters for this: comments,
//! quoted strings, parentheses spanning lines, `$ORIGIN`, blank owners that
//! repeat the previous one, and relative names. Records dkimd writes use
//! absolute names and an explicit TTL, so they mean the same wherever in the
//! file they stand.

use std::ops::Range;

#[derive(Debug, Clone)]
struct Token {
    text: String,
    /// For quoted strings: the content with escapes resolved.
    quoted: Option<String>,
    span: Range<usize>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Byte range of the whole entry, from the start of its first line to
    /// the end of its last line (including the newline).
    span: Range<usize>,
    /// Absolute owner name, lower case, with the final dot.
    owner: String,
    /// The owner came from the previous entry (the line starts with white space).
    blank_owner: bool,
    rtype: String,
    rdata: Vec<Token>,
}

/// What an edit did (a zone file edit gives Added, AlreadyPresent,
/// Replaced, Removed or Absent).
pub use super::api::Outcome;

/// The result of an edit: the new text (None when unchanged) and serials.
#[derive(Debug, Clone)]
pub struct Edit {
    /// What the edit did.
    pub outcome: Outcome,
    /// The new file text; None when nothing changed.
    pub text: Option<String>,
    /// The SOA serial of the new text.
    pub new_serial: u32,
}

fn abs_name(name: &str, origin: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "@" {
        origin.to_string()
    } else if n.ends_with('.') {
        n
    } else if origin == "." {
        format!("{n}.")
    } else {
        format!("{n}.{origin}")
    }
}

fn is_class(t: &str) -> bool {
    matches!(t.to_ascii_uppercase().as_str(), "IN" | "CH" | "HS" | "CS")
}

fn is_ttl(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || "sSmMhHdDwW".contains(c))
}

/// A parsed zone file: its entries and the SOA serial (where it stands, its value).
#[derive(Debug)]
struct Parsed {
    entries: Vec<Entry>,
    serial_span: Option<Range<usize>>,
    serial: u32,
}

/// Splits the file into entries. Errors name the line.
fn parse(text: &str, zone: &str) -> Result<Parsed, String> {
    let bytes = text.as_bytes();
    let mut entries = Vec::new();
    let mut origin = format!("{}.", zone.trim_end_matches('.').to_ascii_lowercase());
    let mut prev_owner: Option<String> = None;
    let mut serial: Option<(Range<usize>, u32)> = None;
    let mut pos = 0usize;
    let mut line_no = 1usize;
    while pos < bytes.len() {
        let start = pos;
        let start_line = line_no;
        let mut tokens: Vec<Token> = Vec::new();
        let mut depth = 0usize;
        let blank_owner = matches!(bytes.get(pos), Some(b' ' | b'\t'));
        // Read physical lines until the parentheses close.
        while let Some(&b) = bytes.get(pos) {
            match b {
                b'\n' => {
                    pos += 1;
                    line_no += 1;
                    if depth == 0 {
                        break;
                    }
                }
                b' ' | b'\t' | b'\r' => pos += 1,
                b';' => {
                    while bytes.get(pos).is_some_and(|c| *c != b'\n') {
                        pos += 1;
                    }
                }
                b'(' => {
                    depth += 1;
                    pos += 1;
                }
                b')' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| format!("line {line_no}: ')' without '('"))?;
                    pos += 1;
                }
                b'"' => {
                    let s = pos;
                    pos += 1;
                    let mut content = String::new();
                    loop {
                        match bytes.get(pos) {
                            None => {
                                return Err(format!(
                                    "line {start_line}: unterminated quoted string"
                                ))
                            }
                            Some(b'\\') => {
                                if let Some(&c) = bytes.get(pos + 1) {
                                    content.push(char::from(c));
                                }
                                pos += 2;
                            }
                            Some(b'"') => {
                                pos += 1;
                                break;
                            }
                            Some(b'\n') => {
                                content.push('\n');
                                line_no += 1;
                                pos += 1;
                            }
                            Some(&c) => {
                                content.push(char::from(c));
                                pos += 1;
                            }
                        }
                    }
                    tokens.push(Token {
                        text: text.get(s..pos).unwrap_or_default().to_string(),
                        quoted: Some(content),
                        span: s..pos,
                    });
                }
                _ => {
                    let s = pos;
                    while bytes.get(pos).is_some_and(|c| {
                        !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"')
                    }) {
                        pos += 1;
                    }
                    tokens.push(Token {
                        text: text.get(s..pos).unwrap_or_default().to_string(),
                        quoted: None,
                        span: s..pos,
                    });
                }
            }
        }
        if depth != 0 {
            return Err(format!("line {start_line}: '(' is never closed"));
        }
        let Some(first) = tokens.first() else {
            continue;
        };
        if first.text.starts_with('$') {
            match first.text.to_ascii_uppercase().as_str() {
                "$ORIGIN" => {
                    let o = tokens
                        .get(1)
                        .ok_or_else(|| format!("line {start_line}: $ORIGIN without a name"))?;
                    origin = abs_name(&o.text, &origin);
                }
                "$INCLUDE" => {
                    return Err(format!(
                        "line {start_line}: $INCLUDE is not supported; point dkimd at the file that holds the records"
                    ))
                }
                _ => {}
            }
            continue;
        }
        let mut rest = tokens.iter();
        let owner = if blank_owner {
            prev_owner
                .clone()
                .ok_or_else(|| format!("line {start_line}: record without an owner name"))?
        } else {
            let t = rest.next().map(|t| t.text.clone()).unwrap_or_default();
            abs_name(&t, &origin)
        };
        prev_owner = Some(owner.clone());
        let mut rtype = String::new();
        for t in rest.by_ref() {
            if is_ttl(&t.text) || is_class(&t.text) {
                continue;
            }
            rtype = t.text.to_ascii_uppercase();
            break;
        }
        let rdata: Vec<Token> = rest.cloned().collect();
        if rtype == "SOA" && serial.is_none() {
            let tok = rdata
                .get(2)
                .ok_or_else(|| format!("line {start_line}: SOA record without a serial"))?;
            let value: u32 = tok.text.parse().map_err(|_| {
                format!(
                    "line {start_line}: SOA serial {:?} is not a number",
                    tok.text
                )
            })?;
            serial = Some((tok.span.clone(), value));
        }
        entries.push(Entry {
            span: start..pos,
            owner,
            blank_owner,
            rtype,
            rdata,
        });
    }
    let (serial_span, serial) = match serial {
        Some((s, v)) => (Some(s), v),
        None => (None, 0),
    };
    Ok(Parsed {
        entries,
        serial_span,
        serial,
    })
}

fn txt_value(e: &Entry) -> String {
    e.rdata
        .iter()
        .map(|t| t.quoted.clone().unwrap_or_else(|| t.text.clone()))
        .collect()
}

/// The TXT records at `name` in a zone file, each with its strings joined.
pub fn txt_records(text: &str, zone: &str, name: &str) -> Result<Vec<String>, String> {
    let entries = parse(text, zone)?.entries;
    let want = abs_name(name, ".");
    Ok(entries
        .iter()
        .filter(|e| e.rtype == "TXT" && e.owner == want)
        .map(txt_value)
        .collect())
}

/// The SOA serial of a zone file.
pub fn serial(text: &str, zone: &str) -> Result<u32, String> {
    let p = parse(text, zone)?;
    p.serial_span
        .map(|_| p.serial)
        .ok_or_else(|| "the zone file has no SOA record".to_string())
}

/// RFC 1982: `a` is greater than `b`.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

/// The next serial: above the file's and the served one (RFC 1982), in
/// date form (YYYYMMDDnn) when the file uses it.
pub fn next_serial(old: u32, served: Option<u32>, today_yyyymmdd: u32) -> u32 {
    let mut next = old.wrapping_add(1);
    if (1_970_010_100..=2_099_123_199).contains(&old) {
        let dated = today_yyyymmdd.saturating_mul(100);
        if serial_gt(dated, next) {
            next = dated;
        }
    }
    if let Some(s) = served {
        if !serial_gt(next, s) {
            next = s.wrapping_add(1);
        }
    }
    if next == 0 {
        next = 1;
    }
    next
}

/// Sets the TXT record at `name` (absolute, without the final dot) to
/// `record`, or removes every TXT record there when `record` is None.
/// Returns the new text with a raised serial, or None when nothing changed.
pub fn edit(
    text: &str,
    zone: &str,
    name: &str,
    record: Option<&str>,
    ttl: u32,
    served_serial: Option<u32>,
    today_yyyymmdd: u32,
) -> Result<Edit, String> {
    let Parsed {
        entries,
        serial_span,
        serial: old_serial,
    } = parse(text, zone)?;
    let serial_span = serial_span.ok_or_else(|| "the zone file has no SOA record".to_string())?;
    let want = abs_name(name, ".");
    let zone_abs = abs_name(zone, ".");
    if !(want == zone_abs || want.ends_with(&format!(".{zone_abs}"))) {
        return Err(format!("{name} is not in zone {zone}"));
    }
    let existing: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.rtype == "TXT" && e.owner == want)
        .map(|(i, _)| i)
        .collect();
    if let Some(r) = record {
        if existing.len() == 1
            && existing
                .first()
                .and_then(|i| entries.get(*i))
                .is_some_and(|e| txt_value(e) == r)
        {
            return Ok(Edit {
                outcome: Outcome::AlreadyPresent,
                text: None,
                new_serial: old_serial,
            });
        }
    } else if existing.is_empty() {
        return Ok(Edit {
            outcome: Outcome::Absent,
            text: None,
            new_serial: old_serial,
        });
    }
    // Byte edits: (range, replacement), applied from the end.
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let new_serial = next_serial(old_serial, served_serial, today_yyyymmdd);
    edits.push((serial_span, new_serial.to_string()));
    for &i in &existing {
        let Some(e) = entries.get(i) else { continue };
        edits.push((e.span.clone(), String::new()));
        // A following record that repeats this owner by leaving it blank
        // gets the name written out, so that it keeps its owner.
        if let Some(next) = entries.get(i + 1) {
            if next.blank_owner && !existing.contains(&(i + 1)) {
                edits.push((next.span.start..next.span.start, e.owner.clone()));
            }
        }
    }
    let outcome = match record {
        Some(r) => {
            let strings: Vec<String> = dkim::split_txt_strings(r)
                .iter()
                .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let mut line = String::new();
            if !text.is_empty() && !text.ends_with('\n') {
                line.push('\n');
            }
            line.push_str(&format!(
                "{want} {ttl} IN TXT ( {} ) ; dkimd\n",
                strings.join(" ")
            ));
            edits.push((text.len()..text.len(), line));
            // Only the records that differ were stale; one equal to the
            // new record (among others) was right and is kept as it was.
            let stale = existing
                .iter()
                .filter(|i| entries.get(**i).is_some_and(|e| txt_value(e) != r))
                .count();
            if existing.is_empty() {
                Outcome::Added
            } else {
                Outcome::Replaced(stale)
            }
        }
        None => Outcome::Removed(existing.len()),
    };
    edits.sort_by(|a, b| b.0.start.cmp(&a.0.start).then(b.0.end.cmp(&a.0.end)));
    let mut out = text.to_string();
    for (range, replacement) in edits {
        if range.start <= range.end && range.end <= out.len() {
            out.replace_range(range, &replacement);
        }
    }
    Ok(Edit {
        outcome,
        text: Some(out),
        new_serial,
    })
}

/// What [`edit_many`] did: each change's outcome (or why it could not be
/// made), the new text (None when unchanged) and the serial of the result.
pub type EditMany = (Vec<Result<Outcome, String>>, Option<String>, u32);

/// Several record changes in one edit: each applied in order to the text
/// left by the ones before, then one serial step from the file's serial
/// (not one per record). A change that cannot be made (a name outside the
/// zone) gets its error and leaves the text as it was.
pub fn edit_many(
    text: &str,
    zone: &str,
    changes: &[(&str, Option<&str>)],
    ttl: u32,
    served_serial: Option<u32>,
    today_yyyymmdd: u32,
) -> Result<EditMany, String> {
    let original = serial(text, zone)?;
    let mut cur = text.to_string();
    let mut changed = false;
    let mut outcomes = Vec::with_capacity(changes.len());
    for (name, record) in changes {
        match edit(&cur, zone, name, *record, ttl, None, today_yyyymmdd) {
            Ok(e) => {
                if let Some(t) = e.text {
                    cur = t;
                    changed = true;
                }
                outcomes.push(Ok(e.outcome));
            }
            Err(e) => outcomes.push(Err(e)),
        }
    }
    if !changed {
        return Ok((outcomes, None, original));
    }
    let new_serial = next_serial(original, served_serial, today_yyyymmdd);
    let Parsed { serial_span, .. } = parse(&cur, zone)?;
    let span = serial_span.ok_or_else(|| "the zone file has no SOA record".to_string())?;
    if span.end > cur.len() || span.start > span.end {
        return Err("the zone file's serial could not be found again".into());
    }
    cur.replace_range(span, &new_serial.to_string());
    Ok((outcomes, Some(cur), new_serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_edits_one_serial_step() {
        let z = "$TTL 300\n@ IN SOA ns1.x.com. h.x.com. ( 2026112401 3600 600 86400 300 )\n  IN NS ns1.x.com.\na._domainkey IN TXT \"old\"\n";
        let (outs, text, serial_now) = edit_many(
            z,
            "x.com",
            &[
                ("s1._domainkey.x.com", Some("v=DKIM1; p=A")),
                ("s1._domainkey.y.com", Some("v=DKIM1; p=B")),
                ("s2._domainkey.sub.x.com", Some("v=DKIM1; p=C")),
                ("a._domainkey.x.com", None),
                ("s1._domainkey.x.com", Some("v=DKIM1; p=A")),
            ],
            300,
            None,
            20261124,
        )
        .unwrap();
        assert_eq!(outs[0], Ok(Outcome::Added));
        assert!(outs[1].as_ref().unwrap_err().contains("not in zone"));
        assert_eq!(outs[2], Ok(Outcome::Added));
        assert_eq!(outs[3], Ok(Outcome::Removed(1)));
        assert_eq!(outs[4], Ok(Outcome::AlreadyPresent));
        let text = text.unwrap();
        assert_eq!(serial_now, 2026112402, "one step for the whole batch");
        assert_eq!(serial(&text, "x.com").unwrap(), 2026112402);
        assert_eq!(
            txt_records(&text, "x.com", "s2._domainkey.sub.x.com").unwrap(),
            vec!["v=DKIM1; p=C".to_string()]
        );
        assert!(txt_records(&text, "x.com", "a._domainkey.x.com")
            .unwrap()
            .is_empty());
        // Nothing to do: no new text, the serial as it was.
        let (_, none, s) = edit_many(
            &text,
            "x.com",
            &[("s1._domainkey.x.com", Some("v=DKIM1; p=A"))],
            300,
            None,
            20261124,
        )
        .unwrap();
        assert!(none.is_none());
        assert_eq!(s, 2026112402);
    }

    const ZONE: &str = "$TTL 300\n\
@\tIN SOA ns1.example.com. hostmaster.example.com. (\n\
\t\t2026112401 ; serial\n\
\t\t3600 600 86400 300 )\n\
\tIN NS ns1\n\
ns1 IN A 127.0.0.1\n\
old._domainkey IN TXT \"v=DKIM1; k=rsa; \" \"p=OLD\"\n\
\tIN TXT \"second record same owner\"\n\
www 60 IN A 127.0.0.2 ; web\n\
$ORIGIN sub.example.com.\n\
mail IN A 127.0.0.3\n";

    #[test]
    fn reads_records_and_serial() {
        assert_eq!(serial(ZONE, "example.com").unwrap(), 2026112401);
        assert_eq!(
            txt_records(ZONE, "example.com", "old._domainkey.example.com").unwrap(),
            vec![
                "v=DKIM1; k=rsa; p=OLD".to_string(),
                "second record same owner".to_string()
            ]
        );
        assert!(txt_records(ZONE, "example.com", "mail.example.com")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn add_then_idempotent_then_replace_then_remove() {
        let name = "202611._domainkey.example.com";
        let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let e = edit(ZONE, "example.com", name, Some(&long), 3600, None, 20261124).unwrap();
        assert_eq!(e.outcome, Outcome::Added);
        assert_eq!(e.new_serial, 2026112402);
        let t1 = e.text.unwrap();
        assert!(t1.starts_with(&ZONE[..40]));
        // The rest of the file is kept byte for byte.
        assert_eq!(
            t1.replace("2026112402", "2026112401")
                .strip_suffix(&t1[ZONE.len()..])
                .unwrap(),
            ZONE
        );
        assert_eq!(
            txt_records(&t1, "example.com", name).unwrap(),
            vec![long.clone()]
        );
        // A record added after $ORIGIN sub… still lands at the absolute name.
        assert!(
            txt_records(&t1, "example.com", "202611._domainkey.sub.example.com")
                .unwrap()
                .is_empty()
        );
        // Strings of at most 255 bytes.
        for s in t1.lines().last().unwrap().split('"').skip(1).step_by(2) {
            assert!(s.len() <= 255);
        }
        let e = edit(&t1, "example.com", name, Some(&long), 3600, None, 20261124).unwrap();
        assert_eq!(e.outcome, Outcome::AlreadyPresent);
        assert!(e.text.is_none());
        let e = edit(
            &t1,
            "example.com",
            name,
            Some("v=DKIM1; k=rsa; p=NEW"),
            3600,
            None,
            20261124,
        )
        .unwrap();
        assert_eq!(e.outcome, Outcome::Replaced(1));
        let t2 = e.text.unwrap();
        assert_eq!(
            txt_records(&t2, "example.com", name).unwrap(),
            vec!["v=DKIM1; k=rsa; p=NEW".to_string()]
        );
        assert_eq!(serial(&t2, "example.com").unwrap(), 2026112403);
        // Two records at the name, one of them right: one stale record.
        let two = format!("{t2}{name}. 300 IN TXT \"v=DKIM1; k=rsa; p=OLD\"\n");
        let e = edit(
            &two,
            "example.com",
            name,
            Some("v=DKIM1; k=rsa; p=NEW"),
            3600,
            None,
            20261124,
        )
        .unwrap();
        assert_eq!(e.outcome, Outcome::Replaced(1));
        assert_eq!(
            txt_records(&e.text.unwrap(), "example.com", name).unwrap(),
            vec!["v=DKIM1; k=rsa; p=NEW".to_string()]
        );
        let e = edit(&t2, "example.com", name, None, 3600, None, 20261124).unwrap();
        assert_eq!(e.outcome, Outcome::Removed(1));
        let t3 = e.text.unwrap();
        assert!(txt_records(&t3, "example.com", name).unwrap().is_empty());
        assert_eq!(t3.replace("2026112404", "2026112401"), ZONE);
    }

    #[test]
    fn removing_keeps_the_owner_of_a_following_blank_owner_record() {
        let e = edit(
            ZONE,
            "example.com",
            "old._domainkey.example.com",
            None,
            300,
            None,
            20261124,
        )
        .unwrap();
        assert_eq!(e.outcome, Outcome::Removed(2));
        let z2 = "@ IN SOA a. b. 5 1 1 1 1\nx IN TXT \"one\"\n  IN A 127.0.0.9\n";
        let e = edit(
            z2,
            "example.com",
            "x.example.com",
            None,
            300,
            None,
            20261124,
        )
        .unwrap();
        let t = e.text.unwrap();
        assert_eq!(
            t,
            "@ IN SOA a. b. 6 1 1 1 1\nx.example.com.  IN A 127.0.0.9\n"
        );
    }

    #[test]
    fn serial_rules() {
        assert_eq!(next_serial(5, None, 20261124), 6);
        assert_eq!(next_serial(2026010101, None, 20261124), 2026112400);
        assert_eq!(next_serial(2026112499, None, 20261124), 2026112500);
        assert_eq!(next_serial(7, Some(10), 20261124), 11);
        assert_eq!(next_serial(u32::MAX, None, 20261124), 1);
        assert!(serial_gt(1, u32::MAX));
        assert!(!serial_gt(5, 5));
    }

    #[test]
    fn errors_name_the_line() {
        assert!(parse("@ IN SOA a. b. ( 1 2 3\n", "x.com")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse("a IN TXT \"open\n", "x.com")
            .unwrap_err()
            .contains("unterminated"));
        assert!(
            edit("a IN A 1.2.3.4\n", "x.com", "a.x.com", None, 1, None, 1)
                .unwrap_err()
                .contains("SOA")
        );
        assert!(edit(ZONE, "example.com", "other.org", None, 1, None, 1)
            .unwrap_err()
            .contains("not in zone"));
        assert!(parse("$INCLUDE other\n", "x.com")
            .unwrap_err()
            .contains("$INCLUDE"));
    }
}
