//! kill -9 at random points of enable, disable, key changes and renames over
//! 100 domains (50 kills), publishing by RFC 2136 into a real BIND. After
//! every kill the store opens; at the end one `enable` makes every signing
//! domain's DNS `ok` (no duplicates), and `disable` leaves no record behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::{have_named, zone_file, Named, Zone};
use common::*;
use std::time::Duration;

#[test]
fn fifty_kills_then_enable_and_disable_finish_cleanly() {
    if !have_named() {
        return;
    }
    let named = Named::start_zones(&[Zone {
        name: "crash.example".into(),
        text: zone_file("crash.example", 1, &[]),
        dynamic: true,
    }]);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("dkimd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[dns]\nnameservers = [\"{addr}\"]\ntimeout = 2\n\
             [[publish.zone]]\nname = \"crash.example\"\nbackend = \"rfc2136\"\nserver = \"{addr}\"\ntsig_key_name = \"dkimd-key\"\ntsig_secret_file = \"{}\"\n",
            tmp.path().join("state").display(),
            named.tsig_secret_file.display(),
            addr = named.addr(),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        dkimd()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    for i in 0..100 {
        assert!(run(&["domain", "add", &format!("d{i}.crash.example")])
            .status
            .success());
    }
    // A deterministic sequence of commands and kill delays.
    let mut seed: u64 = 0x5eed_1234_abcd;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut renamed = 0;
    for round in 0..50 {
        let args: Vec<String> = match rnd(5) {
            0 | 1 => vec!["enable".into(), "--selector".into(), "c1".into()],
            2 => vec!["disable".into()],
            3 => vec![
                "key".into(),
                "generate".into(),
                format!("d{}.crash.example", rnd(100)),
            ],
            _ => {
                renamed += 1;
                let from = format!("d{}.crash.example", rnd(100));
                vec![
                    "domain".into(),
                    "rename".into(),
                    from,
                    format!("r{round}-{renamed}.crash.example"),
                ]
            }
        };
        run_killed(&config, &args, Duration::from_millis(20 + rnd(600)));
        let o = run(&["--json", "settings"]);
        assert!(
            o.status.success(),
            "round {round} ({args:?}): the store does not open: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Finish the job.
    let o = run(&["enable", "--selector", "c1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let status: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "status"]).stdout).unwrap();
    let domains = status["domains"].as_array().unwrap();
    assert!(domains.len() >= 100);
    for d in domains {
        for k in d["keys"].as_array().unwrap() {
            assert_eq!(k["dns"], "ok", "{}: {k}", d["domain"]);
        }
    }
    // Disable: nothing of ours is left in the zone.
    assert!(run(&["disable"]).status.success());
    let out = std::process::Command::new("dig")
        .args([
            "+short",
            "-p",
            &named.port.to_string(),
            "@127.0.0.1",
            "crash.example",
            "AXFR",
        ])
        .output()
        .unwrap();
    let zone = String::from_utf8_lossy(&out.stdout);
    assert!(
        zone.contains("hostmaster.crash.example"),
        "the zone transfer worked: {zone}"
    );
    assert!(
        !zone.contains("DKIM1"),
        "records left after disable:\n{zone}"
    );
}
