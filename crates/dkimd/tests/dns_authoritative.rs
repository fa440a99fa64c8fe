//! Which servers are the truth for a zone, and whether each serves a key's
//! record: two real BIND instances serving example.com, one of them without
//! the record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::{have_named, zone_file, Named};
use dkimd_core::dns::authoritative::{check, everywhere, servers};
use dkimd_core::dns::{block_on, resolver, DnsState};
use std::net::SocketAddr;
use std::time::Duration;

#[test]
fn a_record_withheld_by_one_server_is_not_served_everywhere() {
    if !have_named() {
        return;
    }
    let key = dkim::SigningKey::generate_ed25519().unwrap();
    let record = key.dns_record();
    let name = "s1._domainkey.example.com";
    let line = format!("s1._domainkey IN TXT \"{record}\"");
    let with = Named::start(&[(
        "example.com",
        zone_file("example.com", 1, std::slice::from_ref(&line)),
    )]);
    let without = Named::start(&[("example.com", zone_file("example.com", 1, &[]))]);
    let a: SocketAddr = with.addr().parse().unwrap();
    let b: SocketAddr = without.addr().parse().unwrap();
    let ns = resolver(&[a], Duration::from_secs(2)).unwrap();
    let t = Duration::from_secs(2);

    let states = block_on(check(&ns, "example.com", &[a, b], name, &record, t))
        .unwrap()
        .unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(states[0].state, DnsState::Ok, "{states:?}");
    assert_eq!(states[1].state, DnsState::Missing, "{states:?}");
    assert!(!everywhere(&states));

    // Another key's record at the name is a mismatch, not "served".
    let other = dkim::SigningKey::generate_ed25519().unwrap().dns_record();
    let states = block_on(check(&ns, "example.com", &[a], name, &other, t))
        .unwrap()
        .unwrap();
    assert_eq!(states[0].state, DnsState::Mismatch);

    // Both serve it: served everywhere.
    let both = Named::start(&[("example.com", zone_file("example.com", 1, &[line]))]);
    let c: SocketAddr = both.addr().parse().unwrap();
    let states = block_on(check(&ns, "example.com", &[a, c], name, &record, t))
        .unwrap()
        .unwrap();
    assert!(everywhere(&states), "{states:?}");
}

#[test]
fn without_configured_servers_the_zone_ns_records_name_them() {
    if !have_named() {
        return;
    }
    // The test zone says: NS ns1.example.com., ns1 A 127.0.0.1.
    let named = Named::start(&[("example.com", zone_file("example.com", 1, &[]))]);
    let ns = resolver(&[named.addr().parse().unwrap()], Duration::from_secs(2)).unwrap();
    let found = block_on(servers(&ns, "example.com", &[])).unwrap().unwrap();
    assert_eq!(
        found,
        vec![(
            "ns1.example.com (127.0.0.1:53)".to_string(),
            "127.0.0.1:53".parse().unwrap()
        )]
    );
    // A zone with no nameserver address is an error that says so.
    let e = block_on(servers(&ns, "nowhere.example", &[]))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("nowhere.example"), "{e}");
}
