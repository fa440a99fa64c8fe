//! Engine benchmarks: body canonicalization + SHA-256 beside raw SHA-256 on
//! the same data, and signing / verification operations per second.
//!
//! Run with `cargo bench -p dkim --bench engine`; figures go to BENCHMARKS.md.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use aws_lc_rs::digest;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dkim::*;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

const TEN_MB: usize = 10 * 1024 * 1024;

/// A base64 attachment: 76-character lines, what makes up most bytes of large mail.
fn base64_body() -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(TEN_MB + 100);
    let mut x: u32 = 12345;
    while out.len() < TEN_MB {
        for _ in 0..76 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            out.push(alphabet[(x >> 16) as usize % 64]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Plain text: words separated by single spaces, some double spaces and
/// trailing white space.
fn text_body() -> Vec<u8> {
    let words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "message",
        "signature",
    ];
    let mut out = Vec::with_capacity(TEN_MB + 100);
    let mut i = 0usize;
    while out.len() < TEN_MB {
        let mut line = String::new();
        while line.len() < 70 {
            line.push_str(words[i % words.len()]);
            line.push_str(if i.is_multiple_of(17) { "  " } else { " " });
            i += 1;
        }
        out.extend_from_slice(line.trim_end().as_bytes());
        out.extend_from_slice(if i.is_multiple_of(5) {
            b" \r\n"
        } else {
            b"\r\n"
        });
    }
    out
}

/// Plain text as most mail is written: single spaces, no trailing white
/// space (the load tool's body).
fn plain_body() -> Vec<u8> {
    let line =
        b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n";
    let mut out = Vec::with_capacity(TEN_MB + 100);
    while out.len() < TEN_MB {
        out.extend_from_slice(line);
    }
    out
}

fn canon_hash(kind: Canonicalization, body: &[u8]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut c = BodyCanonicalizer::new(kind);
    for chunk in body.chunks(64 * 1024) {
        c.update(chunk, &mut |s: &[u8]| ctx.update(s));
    }
    c.finish(&mut |s: &[u8]| ctx.update(s));
    ctx.finish().as_ref().to_vec()
}

fn body_hashing(c: &mut Criterion) {
    for (name, body) in [
        ("base64", base64_body()),
        ("plain", plain_body()),
        ("text", text_body()),
    ] {
        let mut g = c.benchmark_group(format!("body-10MB-{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(5));
        g.bench_function("raw-sha256", |b| {
            b.iter(|| digest::digest(&digest::SHA256, black_box(&body)))
        });
        g.bench_function("relaxed+sha256", |b| {
            b.iter(|| canon_hash(Canonicalization::Relaxed, black_box(&body)))
        });
        g.bench_function("simple+sha256", |b| {
            b.iter(|| canon_hash(Canonicalization::Simple, black_box(&body)))
        });
        g.finish();
    }
}

const MSG: &[u8] = b"From: Joe <joe@example.com>\r\nTo: Suzie <suzie@example.net>\r\nSubject: benchmark\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello, this is a short message body.\r\n";

fn sign_verify(c: &mut Criterion) {
    let msg = Message::parse(MSG).unwrap();
    let keys = [
        ("rsa2048", SigningKey::generate_rsa(2048).unwrap()),
        ("ed25519", SigningKey::generate_ed25519().unwrap()),
    ];
    let mut g = c.benchmark_group("message");
    g.measurement_time(Duration::from_secs(4));
    for (name, key) in &keys {
        let cfg = SignerConfig::new(
            "example.com".parse().unwrap(),
            "sel".parse().unwrap(),
            key.clone(),
        );
        let signer = Signer::new(vec![cfg], 1_800_000_000);
        g.bench_with_input(BenchmarkId::new("sign", name), &signer, |b, signer| {
            b.iter(|| {
                let mut s = signer.start(msg.headers()).unwrap();
                s.body(msg.body());
                black_box(s.finish().unwrap())
            })
        });
        let mut s = signer.start(msg.headers()).unwrap();
        s.body(msg.body());
        let mut signed = s.finish().unwrap()[0].to_field().into_bytes();
        signed.extend_from_slice(b"\r\n");
        signed.extend_from_slice(MSG);
        let mut dns: HashMap<String, Vec<String>> = HashMap::new();
        dns.insert("sel._domainkey.example.com".into(), vec![key.dns_record()]);
        let verifier = Verifier::default();
        g.bench_function(BenchmarkId::new("verify", name), |b| {
            b.iter(|| {
                let m = Message::parse(&signed).unwrap();
                let mut v = verifier.start(m.headers(), 1_800_000_000);
                v.body(m.body());
                let r = v.finish(&dns);
                assert_eq!(r[0].result, DkimResult::Pass);
                black_box(r)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, body_hashing, sign_verify);
criterion_main!(benches);
