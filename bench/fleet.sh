#!/usr/bin/env bash
# Fleet benchmarks on a private PostgreSQL cluster and BIND (release build):
# propagation latency of 100 changes from node A's command line to node C's
# signing, and the 10,000-domain figures (enable publishing 20,000 records
# by RFC 2136, status, the front page, a daemon's RSS). BENCHMARKS.md records
# the figures. Usage: bench/fleet.sh   (DKIMD_BENCH_DOMAINS=N for fewer)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps >/dev/null
cargo test --release --locked -p dkimd --test fleet_bench -- --nocapture --test-threads 1 2>&1 \
    | grep -E "propagation A|import of|enable, |status|daemon with|front page|test result"
