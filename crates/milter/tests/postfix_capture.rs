//! Every frame a real Postfix 3.7.11 sent to a milter (tests/data, recorded
//! by a proxy; see shared/fixtures) parses, and a session fed those frames
//! hands the handler the same headers and body.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use milter::codec::{write_frame, Command};
use milter::{EomResult, Handler, Macros, Response};

/// Decodes a Python bytes literal (`b'..'`).
fn py_bytes(lit: &str) -> Vec<u8> {
    let inner = lit
        .strip_prefix("b'")
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| lit.strip_prefix("b\"").and_then(|s| s.strip_suffix('"')))
        .unwrap();
    let b = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b[i + 1] {
                b'x' => {
                    out.push(
                        u8::from_str_radix(std::str::from_utf8(&b[i + 2..i + 4]).unwrap(), 16)
                            .unwrap(),
                    );
                    i += 4;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                }
                c => {
                    out.push(c);
                    i += 2;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The MTA's frames in order: (command, data).
fn mta_frames() -> Vec<(u8, Vec<u8>)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/postfix-3.7.11-milter-capture.log"
    ))
    .unwrap();
    let mut frames = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(5, ' ');
        let (_t, _conn, dir, cmd, payload) = (
            parts.next(),
            parts.next(),
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
        );
        if dir != "MTA>" {
            continue;
        }
        let c = cmd.as_bytes()[0];
        let data = if c == b'O' {
            // "version=6 actions=0x1ff proto=0x1fffff extra=b''"
            let num = |k: &str| {
                let v = payload
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .unwrap();
                if let Some(h) = v.strip_prefix("0x") {
                    u32::from_str_radix(h, 16).unwrap()
                } else {
                    v.parse().unwrap()
                }
            };
            let mut d = Vec::new();
            d.extend_from_slice(&num("version=").to_be_bytes());
            d.extend_from_slice(&num("actions=").to_be_bytes());
            d.extend_from_slice(&num("proto=").to_be_bytes());
            d
        } else if let Some(n) = payload.trim().strip_suffix(" bytes") {
            // The capture records body chunks by size only: stand-in text of that size.
            let n: usize = n.parse().unwrap();
            b"body text line\r\n"
                .iter()
                .copied()
                .cycle()
                .take(n)
                .collect()
        } else {
            py_bytes(payload.trim())
        };
        frames.push((c, data));
    }
    frames
}

#[test]
fn every_postfix_frame_parses() {
    let frames = mta_frames();
    assert!(frames.len() > 40, "{}", frames.len());
    let mut headers = 0;
    let mut eoms = 0;
    for (c, d) in &frames {
        let cmd = Command::parse(*c, d).unwrap_or_else(|e| panic!("{}: {e}", char::from(*c)));
        match cmd {
            Command::Header { value, .. } => {
                headers += 1;
                assert!(value.starts_with(b" "), "Postfix keeps the leading space");
            }
            Command::EndOfMessage(_) => eoms += 1,
            _ => {}
        }
        // And encodes back to the same bytes.
        let (c2, d2) = Command::parse(*c, d).unwrap().encode();
        assert_eq!((c2, &d2), (*c, d));
    }
    assert!(headers >= 8);
    assert!(
        eoms >= 2,
        "connection reuse: several messages on one connection"
    );
}

#[derive(Default)]
struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Handler for Recorder {
    fn header(&mut self, name: &str, value: &[u8]) -> Response {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{name}:{}", String::from_utf8_lossy(value)));
        Response::Continue
    }
    fn body(&mut self, chunk: &[u8]) -> Response {
        self.seen
            .lock()
            .unwrap()
            .push(format!("body {}", chunk.len()));
        Response::Continue
    }
    async fn eom(&mut self, macros: &Macros) -> EomResult {
        self.seen
            .lock()
            .unwrap()
            .push(format!("eom {}", macros.get("i").unwrap_or("-")));
        EomResult {
            modifications: vec![],
            response: Response::Continue,
        }
    }
}

#[tokio::test]
async fn a_session_fed_postfix_frames_sees_the_messages() {
    let (mta, milter_side) = tokio::io::duplex(1 << 20);
    let rec = Recorder::default();
    let seen = rec.seen.clone();
    let server = tokio::spawn(async move {
        milter::server::session(milter_side, rec, &milter::ServerConfig::default()).await
    });
    let (mut mta_read, mut mta_write) = tokio::io::split(mta);
    let drain = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut mta_read, &mut sink).await;
    });
    for (c, d) in mta_frames() {
        write_frame(&mut mta_write, c, &d).await.unwrap();
    }
    tokio::io::AsyncWriteExt::shutdown(&mut mta_write)
        .await
        .unwrap();
    // The MTA side is closed after the last frame (a Quit): the session ends cleanly.
    let messages = server.await.unwrap().unwrap();
    drop(mta_write);
    drain.await.unwrap();
    assert!(messages >= 2);
    let seen = seen.lock().unwrap().join("\n");
    assert!(
        seen.contains("From: \"Bench Sender\" <sender@example.com>"),
        "{seen}"
    );
    assert!(seen.contains("eom "), "{seen}");
}
