//! A DNS responder for fault injection (a test peer, not a DNS server):
//! answers every query on 127.0.0.1 UDP the way it is told to.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How to answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// RCODE 2.
    ServFail,
    /// Random bytes, not DNS.
    Garbage,
    /// A well-formed answer with these TXT records (each one string).
    Txt(Vec<String>),
    /// A response whose length fields point past its end.
    Truncated,
}

pub struct FakeDns {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

fn question_end(q: &[u8]) -> usize {
    let mut i = 12;
    while i < q.len() && q[i] != 0 {
        i += 1 + q[i] as usize;
    }
    (i + 5).min(q.len())
}

fn answer(q: &[u8], fault: &Fault) -> Vec<u8> {
    if q.len() < 12 {
        return vec![];
    }
    let qend = question_end(q);
    let mut r = Vec::new();
    r.extend_from_slice(&q[0..2]);
    match fault {
        Fault::Garbage => return b"\x13\x37not dns at all, just bytes".to_vec(),
        Fault::ServFail => {
            r.extend_from_slice(&[0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..qend]);
        }
        Fault::Truncated => {
            r.extend_from_slice(&[0x85, 0x80, 0, 1, 0, 5, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..qend]);
            r.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 1, 0, 0x40, 0x00, 5, b'a']);
        }
        Fault::Txt(records) => {
            r.extend_from_slice(&[0x85, 0x80, 0, 1]);
            r.extend_from_slice(&(records.len() as u16).to_be_bytes());
            r.extend_from_slice(&[0, 0, 0, 0]);
            r.extend_from_slice(&q[12..qend]);
            for rec in records {
                let mut rdata = Vec::new();
                for chunk in rec.as_bytes().chunks(255) {
                    rdata.push(chunk.len() as u8);
                    rdata.extend_from_slice(chunk);
                }
                r.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60]);
                r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                r.extend_from_slice(&rdata);
            }
        }
    }
    r
}

impl FakeDns {
    pub fn start(fault: Fault) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s2.load(Ordering::SeqCst) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let a = answer(&buf[..n], &fault);
                    if !a.is_empty() {
                        let _ = sock.send_to(&a, from);
                    }
                }
            }
        });
        FakeDns { addr, stop }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
