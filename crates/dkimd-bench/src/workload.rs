//! The messages the load tool sends: plain ones to sign, signed ones to
//! verify, and what counts as the milter having done its job.

use crate::Error;
use milter::client::Message;
use milter::Reply;

/// A plain-text message of about `size` body bytes.
pub fn message_text(n: usize, size: usize, from_domain: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Load Sender <load@{from_domain}>\r\nTo: Load Recipient <rcpt@example.net>\r\nSubject: dkimd load test {n}\r\n\
         Date: Tue, 24 Nov 2026 16:00:00 +0000\r\nMessage-ID: <load{n}@{from_domain}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    .into_bytes();
    let line =
        b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n";
    while m.len() < size + 300 {
        m.extend_from_slice(line);
    }
    m
}

pub(crate) fn to_milter(raw: &[u8], i: usize) -> Result<Message, Error> {
    let msg = dkim::Message::parse(raw).map_err(|e| Error::Message(e.to_string()))?;
    let headers = msg
        .headers()
        .iter()
        .map(|h| {
            (
                String::from_utf8_lossy(h.name()).into_owned(),
                String::from_utf8_lossy(h.value())
                    .replace("\r\n", "\n")
                    .into_bytes(),
            )
        })
        .collect();
    let qid = format!("{:X}", 0xA000_0000u64 + i as u64);
    let body = msg.body().chunks(65535).map(<[u8]>::to_vec).collect();
    Ok(Message {
        macros: vec![
            (
                b'M',
                vec![
                    ("{mail_addr}".into(), "load@example.com".into()),
                    ("i".into(), qid.clone()),
                ],
            ),
            (
                b'R',
                vec![("{rcpt_addr}".into(), "rcpt@example.net".into())],
            ),
            (b'L', vec![("i".into(), qid.clone())]),
            (b'N', vec![("i".into(), qid.clone())]),
            (b'E', vec![("i".into(), qid)]),
        ],
        mail_from: vec!["<load@example.com>".into()],
        rcpt_to: vec!["<rcpt@example.net>".into()],
        headers,
        body,
    })
}

/// The `a=` values of the DKIM-Signature fields a milter added.
pub(crate) fn algorithms(mods: &[Reply]) -> Vec<String> {
    mods.iter()
        .filter_map(|m| match m {
            Reply::InsertHeader { name, value, .. } | Reply::AddHeader { name, value }
                if name.eq_ignore_ascii_case("DKIM-Signature") =>
            {
                dkim::parse_tag_list(value).ok().and_then(|tags| {
                    tags.into_iter()
                        .find(|t| t.name == "a")
                        .map(|t| t.value_no_ws())
                })
            }
            _ => None,
        })
        .collect()
}

/// What a message of a run must come back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A DKIM-Signature.
    Signed,
    /// An Authentication-Results field with dkim=pass.
    Pass,
    /// An Authentication-Results field with dkim=temperror (its key's
    /// name server never answered).
    TempError,
}

pub(crate) fn counts(mods: &[Reply], expect: Expect) -> bool {
    let verdict = match expect {
        Expect::Signed => None,
        Expect::Pass => Some("dkim=pass"),
        Expect::TempError => Some("dkim=temperror"),
    };
    mods.iter().any(|m| match m {
        Reply::InsertHeader { name, value, .. } | Reply::AddHeader { name, value } => match verdict
        {
            Some(v) => {
                name.eq_ignore_ascii_case("Authentication-Results")
                    && String::from_utf8_lossy(value).contains(v)
            }
            None => name.eq_ignore_ascii_case("DKIM-Signature"),
        },
        _ => false,
    })
}
