#!/usr/bin/env bash
# Milter benchmarks: dkimd, OpenDKIM and rspamd side by side, driven by
# `dkimd bench` on this machine over Unix sockets, with the same keys; dkimd
# and rspamd read keys for verification from a private BIND on loopback,
# OpenDKIM from that BIND on port 53. Prints one line per load;
# BENCHMARKS.md records the figures.
# Usage: bench/run.sh [MESSAGES]      (run as root; installs bind9, opendkim
# and rspamd from Debian packages when missing)
# PEERS="opendkim rspamd" chooses the peers (default: both).
# SOAK=N adds the soak (N mixed messages, RSS every N/20); ONLY_SOAK=1 runs
# nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
# The peers and tools, from Debian packages, when missing.
missing=()
for pair in named:bind9 opendkim:opendkim rspamd:rspamd openssl:openssl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
N="${1:-2000}"
cargo build --release --locked -p dkimd >/dev/null
D="$PWD/target/release/dkimd"
T="$(mktemp -d /tmp/dkimd-bench.XXXXXX)"
chmod 755 "$T"
cleanup() {
    [ -f "$T/named.pid" ] && kill "$(cat "$T/named.pid")" 2>/dev/null || true
    [ -n "${DKIMD_PID:-}" ] && kill "$DKIMD_PID" 2>/dev/null || true
    [ -n "${OD_PID:-}" ] && kill "$OD_PID" 2>/dev/null || true
    [ -n "${RS_PID:-}" ] && kill "$RS_PID" 2>/dev/null || true
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

stop() { # pid: stop a milter and wait until it is gone
    kill "$1" 2>/dev/null || true
    while kill -0 "$1" 2>/dev/null; do sleep 0.1; done
}

# OpenDKIM: the same key, signing mode for internal hosts.
start_opendkim() { # key-file selector algorithm
    printf '%s._domainkey.example.com example.com:%s:%s\n' "$2" "$2" "$1" > "$T/keytable"
    printf '*@example.com %s._domainkey.example.com\n' "$2" > "$T/signingtable"
    cat > "$T/opendkim.conf" <<CONF
Mode sv
Socket local:$T/opendkim.sock
RequireSafeKeys false
KeyTable file:$T/keytable
SigningTable refile:$T/signingtable
SignatureAlgorithm $3
InternalHosts 127.0.0.1
Canonicalization relaxed/relaxed
Syslog no
UserID root
PidFile $T/opendkim.pid
Nameservers 127.0.0.1
CONF
    rm -f "$T/opendkim.sock"
    opendkim -f -x "$T/opendkim.conf" 2>"$T/opendkim.log" &
    OD_PID=$!
    for _ in $(seq 50); do [ -S "$T/opendkim.sock" ] && break; sleep 0.1; done
}
start_opendkim "$T/keys/example.com.bench.rsa.pem" bench rsa-sha256

# rspamd reduced to DKIM: the dkim module and the dkim_signing and
# milter_headers plugins (every other module disabled), its milter (proxy)
# worker scanning by itself, two processes for the two cores; the same RSA
# key (in the Ed25519 part the same Ed25519 key, given as rspamd reads it:
# the base64 of its 32-byte seed); keys for verification from the same BIND.
PEERS="${PEERS:-opendkim rspamd}"
R="$T/rspamd"
rspamd_setup() {
    mkdir -p "$R/local.d" "$R/override.d" "$R/db"
    for f in /etc/rspamd/modules.d/*.conf; do
        m=$(basename "$f" .conf)
        case "$m" in
        dkim | dkim_signing | milter_headers | redis) ;;
        *) echo "enabled = false;" > "$R/override.d/$m.conf" ;;
        esac
    done
    cat > "$R/local.d/options.inc" <<CONF
filters = "dkim";
dns { nameserver = ["127.0.0.1:25353"]; }
local_addrs = ["127.0.0.0/8", "::1"];
CONF
    cat > "$R/local.d/milter_headers.conf" <<CONF
use = ["authentication-results"];
authenticated_headers = ["authentication-results"];
skip_local = false;
skip_authenticated = false;
CONF
    printf 'level = "error";\n' > "$R/local.d/logging.inc"
    cat > "$R/rspamd.conf" <<CONF
.include "\$CONFDIR/common.conf"
options {
    pidfile = "\$RUNDIR/rspamd.pid";
    .include "\$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "\$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
    type = "file";
    filename = "\$LOGDIR/rspamd.log";
    .include "\$CONFDIR/logging.inc"
    .include(try=true; priority=1,duplicate=merge) "\$LOCAL_CONFDIR/local.d/logging.inc"
}
worker "rspamd_proxy" {
    bind_socket = "$T/rspamd.sock mode=0666";
    milter = yes;
    timeout = 120s;
    count = 2;
    upstream "local" {
        default = yes;
        self_scan = yes;
    }
}
CONF
}
start_rspamd() { # rsa | ed25519 | dual: the signing key(s)
    local rsa='{ path = "'"$T"'/keys/example.com.bench.rsa.pem"; selector = "bench"; }'
    local ed='{ path = "'"$T"'/keys/example.com.bench-ed25519.seed"; selector = "bench-ed25519"; }'
    # rspamd reads an Ed25519 key as its 32-byte seed, in base64.
    openssl pkey -in "$T/keys/example.com.bench-ed25519.ed25519.pem" -outform DER | tail -c 32 | base64 \
        > "$T/keys/example.com.bench-ed25519.seed"
    local selectors
    case "$1" in
        rsa) selectors="$rsa" ;;
        ed25519) selectors="$ed" ;;
        # Both keys for one domain: rspamd signs once per selector.
        dual) selectors="$rsa, $ed" ;;
    esac
    cat > "$R/local.d/dkim_signing.conf" <<CONF
allow_username_mismatch = true;
allow_hdrfrom_mismatch = true;
sign_local = true;
sign_authenticated = true;
use_esld = false;
domain {
    example.com {
        selectors [ $selectors ]
    }
}
CONF
    rm -f "$T/rspamd.sock"
    rspamd -f -i -u root -g root -c "$R/rspamd.conf" --var=LOCAL_CONFDIR="$R" --var=DBDIR="$R/db" \
        --var=RUNDIR="$T" --var=LOGDIR="$T" >"$T/rspamd.out" 2>&1 &
    RS_PID=$!
    for _ in $(seq 150); do [ -S "$T/rspamd.sock" ] && break; sleep 0.2; done
}
RS_PID=""
if [[ " $PEERS " == *" rspamd "* ]]; then
    rspamd_setup
    start_rspamd rsa
fi

bench() { # name socket pid args...
    local name=$1 sock=$2 pid=$3
    shift 3
    # The same load for 20 messages first, not measured: a milter's first
    # messages pay one-time costs (dkimd: about 40 ms of CPU seeding
    # aws-lc's random generator), which a 2,000-message row would spread
    # over every message. The 50 MB rows and the soak are not warmed.
    if [ -z "${MSGS:-}" ]; then
        "$D" bench --socket "$sock" --messages 20 "$@" >/dev/null
    fi
    printf '%-10s %s\n' "$name" "$("$D" bench --socket "$sock" --pid "$pid" --messages "${MSGS:-$N}" "$@" | tr '\n' ' ')"
}
peers() { # the milters of this run as name:socket:pid
    echo "dkimd:$T/dkimd.sock:$DKIMD_PID opendkim:$T/opendkim.sock:$OD_PID ${RS_PID:+rspamd:$T/rspamd.sock:$RS_PID}"
}
# The machine's limits in the same run: one RSA-2048 signature and SHA-256
# over 64 KB blocks (the targets compare with them), at the start and the end.
limits() { # label
    local rsa sha
    rsa=$(openssl speed -seconds 2 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {printf "%.3f", $4 * 1000}')
    sha=$(openssl speed -evp sha256 -bytes 65536 -seconds 2 2>/dev/null | awk '/^sha256/ {v=$NF; sub("k","",v); printf "%.3f %.1f", v / 1e6, 52428800 / (v * 1000) * 1000}')
    printf '%-10s openssl (%s): RSA-2048 signature %s ms; SHA-256 %s GB/s, %s ms for 50 MB\n' \
        "limits" "$1" "$rsa" "${sha% *}" "${sha#* }"
}
if [ -z "${ONLY_SOAK:-}" ]; then
limits start
for size in 2048 102400; do
    for c in 1 8 64; do
        for m in $(peers); do
            IFS=: read -r name sock pid <<<"$m"
            bench "$name" "unix:$sock" "$pid" --mode sign --body-size "$size" --concurrency "$c"
        done
    done
done
for size in 2048 102400; do
    for m in $(peers); do
        IFS=: read -r name sock pid <<<"$m"
        bench "$name" "unix:$sock" "$pid" --mode verify --body-size "$size" --concurrency 8 \
            --key "$T/keys/example.com.bench.rsa.pem" --selector bench
    done
done

# dkimd with an Ed25519 key as well (dual signing): the Ed25519 key under
# the selector its record has (two keys of one domain cannot share one).
"$D" --config "$T/dkimd.toml" key import example.com "$T/keys/example.com.bench-ed25519.ed25519.pem" --selector bench-ed25519 >/dev/null
sleep 1.5
# rspamd with both keys too (OpenDKIM signs with one key only).
if [ -n "$RS_PID" ]; then
    stop "$RS_PID"
    start_rspamd dual
fi
for size in 2048 102400; do
    for c in 1 8 64; do
        bench "dkimd-dual" "unix:$T/dkimd.sock" "$DKIMD_PID" --mode sign --body-size "$size" --concurrency "$c"
        if [ -n "$RS_PID" ]; then
            bench "rspamd-dual" "unix:$T/rspamd.sock" "$RS_PID" --mode sign --body-size "$size" --concurrency "$c"
        fi
    done
done

# Ed25519 alone, every milter with the same Ed25519 key.
# An own key replaces the global key of its algorithm only: with a global
# RSA key it would sign beside it, so the global keys become Ed25519 first.
"$D" --config "$T/dkimd.toml" key default example.com >/dev/null
"$D" --config "$T/dkimd.toml" set algorithms ed25519 >/dev/null
"$D" --config "$T/dkimd.toml" enable --selector unused2 --new-key >/dev/null || true
"$D" --config "$T/dkimd.toml" key import example.com "$T/keys/example.com.bench-ed25519.ed25519.pem" --selector bench-ed25519 >/dev/null
stop "$OD_PID"
start_opendkim "$T/keys/example.com.bench-ed25519.ed25519.pem" bench-ed25519 ed25519-sha256
if [ -n "$RS_PID" ]; then
    stop "$RS_PID"
    start_rspamd ed25519
fi
sleep 1.5
for size in 2048 102400; do
    for c in 1 8 64; do
        for m in $(peers); do
            IFS=: read -r name sock pid <<<"$m"
            bench "$name-ed" "unix:$sock" "$pid" --mode sign --body-size "$size" --concurrency "$c"
        done
    done
done
for m in $(peers); do
    IFS=: read -r name sock pid <<<"$m"
    bench "$name-ed" "unix:$sock" "$pid" --mode verify --body-size 2048 --concurrency 8 \
        --key "$T/keys/example.com.bench-ed25519.ed25519.pem" --selector bench-ed25519
done

# SHA-256's speed right before the 50 MB rows (they are compared with it;
# this shared machine's speed drifts within a run).
limits "before 50 MB"
# One 50 MB message, signed and verified (latency and memory), with the
# Ed25519 key: dkimd twenty times (its p50 is the figure), the peers once
# each.
for m in $(peers); do
    IFS=: read -r name sock pid <<<"$m"
    n=1
    [ "$name" = dkimd ] && n=20
    MSGS=$n bench "$name-50MB" "unix:$sock" "$pid" --mode sign --body-size 52428800
    MSGS=$n bench "$name-50MB" "unix:$sock" "$pid" --mode verify --body-size 52428800 \
        --key "$T/keys/example.com.bench-ed25519.ed25519.pem" --selector bench-ed25519
done
limits end
fi

# The soak: SOAK messages in a row, mixed (per 10: 5 signed for an
# authenticated client, 3 good and 1 tampered signature, 1 aborted half-way),
# with the milter's RSS recorded every SOAK/20 messages.
if [ -n "${SOAK:-}" ]; then
    MSGS="$SOAK" bench "dkimd-soak" "unix:$T/dkimd.sock" "$DKIMD_PID" --mode mixed --body-size 2048 --concurrency 8 \
        --key "$T/keys/example.com.bench.rsa.pem" --selector bench --rss-every $(( SOAK / 20 > 0 ? SOAK / 20 : 1 ))
fi
