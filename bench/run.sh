#!/usr/bin/env bash
# Milter benchmarks: dkimd and OpenDKIM side by side, driven by `dkimd bench`
# on this machine over Unix sockets, with the same RSA-2048 key; dkimd reads
# keys for verification from a private BIND on loopback. Prints one line per
# load; BENCHMARKS.md records the figures.
# Usage: bench/run.sh [MESSAGES]      (needs: bind9, opendkim; run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
cargo build --release --locked -p dkimd >/dev/null
D="$PWD/target/release/dkimd"
T="$(mktemp -d /tmp/dkimd-bench.XXXXXX)"
chmod 755 "$T"
cleanup() {
    [ -f "$T/named.pid" ] && kill "$(cat "$T/named.pid")" 2>/dev/null || true
    [ -n "${DKIMD_PID:-}" ] && kill "$DKIMD_PID" 2>/dev/null || true
    [ -n "${OD_PID:-}" ] && kill "$OD_PID" 2>/dev/null || true
    sleep 0.5
    rm -rf "$T"
}
trap cleanup EXIT

# Keys (the same for both milters) and their records in a private BIND.
"$D" keygen --algorithm rsa --domain example.com --selector bench --out "$T/keys" >/dev/null 2>&1
"$D" keygen --algorithm ed25519 --domain example.com --selector bench-ed25519 --out "$T/keys" >/dev/null 2>&1
{
    printf '$TTL 300\n@ IN SOA ns1.example.com. hostmaster.example.com. ( 1 3600 600 86400 300 )\n  IN NS ns1.example.com.\nns1 IN A 127.0.0.1\n'
    cat "$T"/keys/*.txt
} > "$T/example.com.zone"
cat > "$T/named.conf" <<CONF
options { directory "$T"; pid-file "$T/named.pid"; listen-on port 25353 { 127.0.0.1; }; listen-on port 53 { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
zone "example.com" { type primary; file "$T/example.com.zone"; };
CONF
named -c "$T/named.conf"
sleep 1

# dkimd: the imported keys, signing on, verification through that BIND.
cat > "$T/dkimd.toml" <<CONF
state_dir = "$T/state"
[dns]
nameservers = ["127.0.0.1:25353"]
[milter]
socket = "unix:$T/dkimd.sock"
log_level = "warn"
CONF
"$D" --config "$T/dkimd.toml" domain add example.com >/dev/null
"$D" --config "$T/dkimd.toml" set algorithms rsa >/dev/null
"$D" --config "$T/dkimd.toml" enable --selector unused >/dev/null || true
"$D" --config "$T/dkimd.toml" key import example.com "$T/keys/example.com.bench.rsa.pem" --selector bench >/dev/null || true
"$D" --config "$T/dkimd.toml" run 2>"$T/dkimd.log" &
DKIMD_PID=$!
sleep 1

# OpenDKIM: the same RSA key, signing mode for internal hosts.
printf 'bench._domainkey.example.com example.com:bench:%s\n' "$T/keys/example.com.bench.rsa.pem" > "$T/keytable"
printf '*@example.com bench._domainkey.example.com\n' > "$T/signingtable"
cat > "$T/opendkim.conf" <<CONF
Mode sv
Socket local:$T/opendkim.sock
RequireSafeKeys false
KeyTable file:$T/keytable
SigningTable refile:$T/signingtable
InternalHosts 127.0.0.1
Canonicalization relaxed/relaxed
Syslog no
UserID root
PidFile $T/opendkim.pid
Nameservers 127.0.0.1
CONF
opendkim -f -x "$T/opendkim.conf" 2>"$T/opendkim.log" &
OD_PID=$!
sleep 1

bench() { # name socket pid args...
    local name=$1 sock=$2 pid=$3
    shift 3
    printf '%-10s %s\n' "$name" "$("$D" bench --socket "$sock" --pid "$pid" --messages "${MSGS:-$N}" "$@" | tr '\n' ' ')"
}
if [ -z "${ONLY_SOAK:-}" ]; then
for size in 2048 102400; do
    for c in 1 8 64; do
        bench dkimd unix:$T/dkimd.sock "$DKIMD_PID" --mode sign --body-size "$size" --concurrency "$c"
        bench opendkim unix:$T/opendkim.sock "$OD_PID" --mode sign --body-size "$size" --concurrency "$c"
    done
done
for size in 2048 102400; do
    for m in dkimd:$T/dkimd.sock:$DKIMD_PID opendkim:$T/opendkim.sock:$OD_PID; do
        IFS=: read -r name sock pid <<<"$m"
        bench "$name" "unix:$sock" "$pid" --mode verify --body-size "$size" --concurrency 8 \
            --key "$T/keys/example.com.bench.rsa.pem" --selector bench
    done
done

# dkimd with an Ed25519 key as well (dual signing), then Ed25519 alone.
"$D" --config "$T/dkimd.toml" key import example.com "$T/keys/example.com.bench-ed25519.ed25519.pem" --selector bench >/dev/null || true
sleep 1.5
for size in 2048 102400; do
    bench "dkimd-dual" "unix:$T/dkimd.sock" "$DKIMD_PID" --mode sign --body-size "$size" --concurrency 8
done
"$D" --config "$T/dkimd.toml" key default example.com >/dev/null || true
"$D" --config "$T/dkimd.toml" key import example.com "$T/keys/example.com.bench-ed25519.ed25519.pem" --selector bench >/dev/null || true
sleep 1.5
for size in 2048 102400; do
    bench "dkimd-ed" "unix:$T/dkimd.sock" "$DKIMD_PID" --mode sign --body-size "$size" --concurrency 8
done
bench "dkimd-ed" "unix:$T/dkimd.sock" "$DKIMD_PID" --mode verify --body-size 2048 --concurrency 8 \
    --key "$T/keys/example.com.bench-ed25519.ed25519.pem" --selector bench-ed25519

# One 50 MB message, signed (latency and memory).
MSGS=3 bench "dkimd-50MB" "unix:$T/dkimd.sock" "$DKIMD_PID" --mode sign --body-size 52428800
fi

# The soak: SOAK messages in a row, mixed (per 10: 5 signed for an
# authenticated client, 3 good and 1 tampered signature, 1 aborted half-way).
if [ -n "${SOAK:-}" ]; then
    MSGS="$SOAK" bench "dkimd-soak" "unix:$T/dkimd.sock" "$DKIMD_PID" --mode mixed --body-size 2048 --concurrency 8 \
        --key "$T/keys/example.com.bench.rsa.pem" --selector bench
fi
