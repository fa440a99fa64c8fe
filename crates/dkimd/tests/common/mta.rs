//! Milter helpers for the daemon tests: a raw message as Postfix hands it
//! over, header changes applied as Postfix applies them, the metrics
//! endpoint, the daemon's memory.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use milter::client::Message;
use milter::Reply;

/// The metrics endpoint's text.
pub fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// One metric's value (the first line that starts with `name`).
pub fn metric(port: u16, name: &str) -> u64 {
    metrics(port)
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// The resident memory of a process, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Splits a raw message into what Postfix sends: headers with the leading
/// space kept (HDR_LEADSPC), folds as LF, and the body in chunks.
pub fn as_milter(raw: &[u8], chunk: usize) -> Message {
    let msg = dkim::Message::parse(raw).unwrap();
    let headers = msg
        .headers()
        .iter()
        .map(|h| {
            let name = String::from_utf8_lossy(h.name()).into_owned();
            let value = String::from_utf8_lossy(h.value())
                .replace("\r\n", "\n")
                .into_bytes();
            (name, value)
        })
        .collect();
    let body = if msg.body().is_empty() {
        vec![]
    } else {
        msg.body()
            .chunks(chunk.max(1))
            .map(|c| c.to_vec())
            .collect()
    };
    Message {
        macros: vec![(b'M', vec![("i".into(), "QID1".into())])],
        mail_from: vec!["<joe@example.com>".into()],
        rcpt_to: vec!["<suzie@example.net>".into()],
        headers,
        body,
    }
}

/// Applies the milter's header changes the way Postfix does and returns the
/// resulting message.
pub fn apply(raw: &[u8], mods: &[Reply]) -> Vec<u8> {
    let msg = dkim::Message::parse(raw).unwrap();
    let mut headers: Vec<(String, String)> = msg
        .headers()
        .iter()
        .map(|h| {
            (
                String::from_utf8_lossy(h.name()).into_owned(),
                String::from_utf8_lossy(h.value()).into_owned(),
            )
        })
        .collect();
    for m in mods {
        match m {
            Reply::InsertHeader { index, name, value } => {
                let v = String::from_utf8_lossy(value).replace('\n', "\r\n");
                headers.insert(*index as usize, (name.clone(), v));
            }
            Reply::ChangeHeader { index, name, value } => {
                let pos = headers
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _))| n.eq_ignore_ascii_case(name))
                    .nth(*index as usize - 1)
                    .map(|(i, _)| i)
                    .unwrap();
                if value.is_empty() {
                    headers.remove(pos);
                } else {
                    headers[pos].1 = String::from_utf8_lossy(value).replace('\n', "\r\n");
                }
            }
            other => panic!("unexpected modification {other:?}"),
        }
    }
    let mut out = Vec::new();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}:{v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.body());
    out
}

/// The modifications as text (values as strings).
pub fn mods_text(mods: &[Reply]) -> String {
    mods.iter()
        .map(|m| match m {
            Reply::InsertHeader { index, name, value } => {
                format!("insert {index} {name}:{}", String::from_utf8_lossy(value))
            }
            Reply::ChangeHeader { index, name, value } => {
                format!("change {index} {name}:{}", String::from_utf8_lossy(value))
            }
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
