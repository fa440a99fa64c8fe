#!/usr/bin/env bash
# Milter benchmarks in one sitting: dkimd, OpenDKIM and rspamd side by side,
# and a null milter (the load tool's own floor), all driven by `dkimd bench`
# over Unix sockets on this machine with the same keys.
#
# Usage: bench/run.sh [MESSAGES]        (as root; installs bind9, opendkim,
#                                        rspamd, openssl, gnuplot from Debian)
#   MESSAGES   per row (default 2000; the cold-cache and 50 MB rows have their own)
#   PEERS="opendkim rspamd"   the peers (default both; " " for none)
#   ONLY=REGEX                only the rows whose name matches
#   NOISE=10                  a run is thrown away when other processes (and
#                             the hypervisor's steal) used more than this %
#                             of one core during it ...
#   ATTEMPTS=4                ... and retried up to this many times in all
#   SCALE=4                   dkimd and the null milter get this many times
#                             MESSAGES (they are that much faster)
#   OUT=bench/results         where the results, the table and the charts go
#   SOAK=N                    adds the soak (N mixed messages, RSS every N/20);
#   ONLY_SOAK=1               runs nothing else
#
# The peers' configuration is in bench/peers/ (BENCHMARKS.md says why each
# line is there). Keys for verification: dkimd asks the delaying proxy (a
# cached key is not asked for again); rspamd asks BIND directly, OpenDKIM
# has them in memory (TestDNSData), except in the cold-cache rows, where
# dkimd and rspamd ask the proxy, which answers 30 ms after each query.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
missing=()
for pair in named:bind9 opendkim:opendkim rspamd:rspamd openssl:openssl gnuplot:gnuplot-nox python3:python3; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
N="${1:-2000}"
PEERS="${PEERS:-opendkim rspamd}"
ONLY="${ONLY:-}"
NOISE="${NOISE:-10}"
ATTEMPTS="${ATTEMPTS:-4}"
SCALE="${SCALE:-4}"
OUT="${OUT:-bench/results}"
CORES=$(nproc)
cargo build --release --locked -p dkimd >/dev/null
D="$PWD/target/release/dkimd"
# Not under /tmp: OpenDKIM (as Debian ships it, RequireSafeKeys on) refuses
# keys below a directory that others can write.
mkdir -p target
T="$(mktemp -d "$ROOT/target/bench-run.XXXXXX")"
chmod 755 "$T"
mkdir -p "$OUT"
RESULTS="$T/results.jsonl"
: > "$RESULTS"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}" ${DKIMD_PID:-} ${OD_PID:-} ${RS_PID:-}; do kill "$p" 2>/dev/null || true; done
    [ -f "$T/named.pid" ] && kill "$(cat "$T/named.pid")" 2>/dev/null || true
    sleep 0.5
    [ -n "${KEEP:-}" ] && echo "bench: kept $T" >&2 || rm -rf "$T"
}
trap cleanup EXIT
stop() { # pid: stop a milter and wait until it is gone
    kill "$1" 2>/dev/null || true
    while kill -0 "$1" 2>/dev/null; do sleep 0.1; done
}
wait_socket() { # path
    for _ in $(seq 150); do [ -S "$1" ] && return 0; sleep 0.2; done
    echo "bench: no socket at $1" >&2
    return 1
}
fill() { # template output KEY=VALUE...: @KEY@ replaced
    local src=$1 dst=$2
    shift 2
    cp "$src" "$dst"
    for kv in "$@"; do
        sed -i "s|@${kv%%=*}@|${kv#*=}|g" "$dst"
    done
}
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }

# Keys, and their records in a private BIND: example.com's two keys, and a
# wildcard under cold.test that serves the RSA key for every name, so that
# each message of a cold-cache row can come from a domain of its own.
"$D" keygen --algorithm rsa --domain example.com --selector bench --out "$T/keys" >/dev/null 2>&1
"$D" keygen --algorithm ed25519 --domain example.com --selector bench-ed25519 --out "$T/keys" >/dev/null 2>&1
RSA_KEY="$T/keys/example.com.bench.rsa.pem"
ED_KEY="$T/keys/example.com.bench-ed25519.ed25519.pem"
SOA='@ IN SOA ns1 hostmaster ( 1 3600 600 86400 300 )
  IN NS ns1
ns1 IN A 127.0.0.1'
{ printf '$TTL 300\n%s\n' "$SOA"; cat "$T"/keys/*.txt; } > "$T/example.com.zone"
{
    printf '$TTL 300\n%s\n' "$SOA"
    # NAME TTL IN TXT ( "..." ... ): the same record at the wildcard.
    sed 's/^.*[ \t]TXT[ \t]/* IN TXT /' "$T/keys/example.com.bench.rsa.txt"
} > "$T/cold.test.zone"
cat > "$T/named.conf" <<CONF
options { directory "$T"; pid-file "$T/named.pid"; listen-on port 25353 { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; };
zone "example.com" { type primary; file "$T/example.com.zone"; };
zone "cold.test" { type primary; file "$T/cold.test.zone"; };
CONF
named -c "$T/named.conf"
for _ in $(seq 50); do [ -f "$T/named.pid" ] && break; sleep 0.1; done
NAMED_PID=$(cat "$T/named.pid")
# The delaying proxy: 30 ms before every answer; names under silent.* never.
"$D" bench-serve dns-delay --listen 127.0.0.2:53 --upstream 127.0.0.1:25353 --delay-ms 30 2>"$T/proxy.log" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
# The null milter.
"$D" bench-serve null-milter --socket "unix:$T/null.sock" 2>"$T/null.log" &
NULL_PID=$!
PIDS+=("$NULL_PID")
wait_socket "$T/null.sock"

# dkimd: its sample settings but for where things are (bench/peers/dkimd.toml).
fill bench/peers/dkimd.toml "$T/dkimd.toml" DIR="$T" DNS=127.0.0.2:53
dk() { "$D" --config "$T/dkimd.toml" "$@" >/dev/null; }
dk domain add example.com
dk set algorithms rsa
dk enable --selector unused || true
dk key import example.com "$RSA_KEY" --selector bench || true
"$D" --config "$T/dkimd.toml" run 2>"$T/dkimd.log" &
DKIMD_PID=$!
wait_socket "$T/dkimd.sock"

# OpenDKIM: Debian's file with the changes bench/peers/opendkim.conf lists;
# the key's file in the KeyTable, keys for verification in memory
# (TestDNSData).
OD_PID=""
start_opendkim() { # key-file selector [signature-algorithm]
    printf "%s._domainkey.example.com example.com:%s:%s\n" "$2" "$2" "$1" > "$T/opendkim.keytable"
    printf 'example.com %s._domainkey.example.com\n' "$2" > "$T/opendkim.signingtable"
    # TestDNSData: the record's name, then its text (the quoted strings joined).
    python3 - "$T"/keys/*.txt > "$T/opendkim.testdns" <<'PY'
import re, sys
for path in sys.argv[1:]:
    line = open(path).read()
    print(line.split()[0].rstrip("."), "".join(re.findall(r'"([^"]*)"', line)))
PY
    fill bench/peers/opendkim.conf "$T/opendkim.conf" DIR="$T"
    fill bench/peers/opendkim-testdns.conf "$T/opendkim-extra.conf" DIR="$T"
    grep -v '^#' "$T/opendkim-extra.conf" >> "$T/opendkim.conf"
    # An Ed25519 key needs its algorithm named (the default is rsa-sha256).
    [ -n "${3:-}" ] && printf 'SignatureAlgorithm\t%s\n' "$3" >> "$T/opendkim.conf"
    rm -f "$T/opendkim.sock"
    opendkim -f -x "$T/opendkim.conf" 2>"$T/opendkim.log" &
    OD_PID=$!
    wait_socket "$T/opendkim.sock"
}

# rspamd reduced to DKIM (bench/peers/rspamd/): every module the package
# installs disabled but dkim, dkim_signing and milter_headers; the proxy
# worker scanning by itself, one process per core.
RS_PID=""
R="$T/rspamd"
rspamd_setup() {
    mkdir -p "$R/local.d" "$R/override.d" "$R/db"
    for f in /etc/rspamd/modules.d/*.conf; do
        m=$(basename "$f" .conf)
        case "$m" in
        dkim | dkim_signing | milter_headers) ;;
        *) echo "enabled = false;" > "$R/override.d/$m.conf" ;;
        esac
    done
    cp bench/peers/rspamd/local.d/logging.inc bench/peers/rspamd/local.d/milter_headers.conf \
        bench/peers/rspamd/local.d/settings.conf "$R/local.d/"
    fill bench/peers/rspamd/rspamd.conf "$R/rspamd.conf" DIR="$T" CORES="$CORES"
    # rspamd reads an Ed25519 key as its 32-byte seed, in base64.
    openssl pkey -in "$ED_KEY" -outform DER | tail -c 32 | base64 > "$T/keys/example.com.bench-ed25519.seed"
}
start_rspamd() { # rsa|ed25519|dual  name-server
    local rsa='{ path = "'"$RSA_KEY"'"; selector = "bench"; }'
    local ed='{ path = "'"$T"'/keys/example.com.bench-ed25519.seed"; selector = "bench-ed25519"; }'
    local selectors
    case "$1" in
    rsa) selectors="$rsa" ;;
    ed25519) selectors="$ed" ;;
    dual) selectors="$rsa, $ed" ;;
    esac
    fill bench/peers/rspamd/local.d/dkim_signing.conf "$R/local.d/dkim_signing.conf" SELECTORS="$selectors"
    fill bench/peers/rspamd/local.d/options.inc "$R/local.d/options.inc" DNS="$2"
    rm -f "$T/rspamd.sock"
    rspamd -f -i -u root -g root -c "$R/rspamd.conf" --var=LOCAL_CONFDIR="$R" --var=DBDIR="$R/db" \
        --var=RUNDIR="$T" --var=LOGDIR="$T" >"$T/rspamd.out" 2>&1 &
    RS_PID=$!
    wait_socket "$T/rspamd.sock"
}
restart_peers() { # opendkim: key selector algorithm|- (or "-" to leave it); rspamd: keys name-server
    if has_peer opendkim && [ "$1" != - ]; then
        [ -n "$OD_PID" ] && stop "$OD_PID"
        start_opendkim "$1" "$2" "${3#-}"
    fi
    if has_peer rspamd; then
        [ -n "$RS_PID" ] && stop "$RS_PID"
        start_rspamd "$4" "$5"
    fi
    sleep 1
}

# The machine's limits in the same run, from openssl speed.
limits() { # label
    local rsa ed sha multi
    rsa=$(openssl speed -seconds 2 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {printf "%.4f %.4f", 1000 / $(NF-1), 1000 / $NF}')
    # The same signature with every core signing at once (one openssl per
    # core): what each costs when a milter signs on all cores, as dkimd does
    # from c=2 on. The cores share caches, memory and the host's power
    # budget, so this is slower than one core alone.
    multi=$(openssl speed -multi "$CORES" -seconds 2 rsa2048 2>/dev/null | awk -v n="$CORES" '/^rsa 2048 bits/ {printf "%.4f", n * 1000 / $(NF-1)}')
    ed=$(openssl speed -seconds 2 ed25519 2>/dev/null | awk '/Ed25519/ && /bits/ {printf "%.4f %.4f", 1000 / $(NF-1), 1000 / $NF}')
    sha=$(openssl speed -evp sha256 -bytes 65536 -seconds 2 2>/dev/null | awk '/^sha256/ {v=$NF; sub("k","",v); printf "%.4f", v / 1e6}')
    printf '{"limits": "%s", "rsa_sign_ms": %s, "rsa_sign_ms_all_cores": %s, "rsa_verify_ms": %s, "ed25519_sign_ms": %s, "ed25519_verify_ms": %s, "sha256_gb_s": %s, "cores": %s}\n' \
        "$1" ${rsa% *} "$multi" ${rsa#* } ${ed% *} ${ed#* } "$sha" "$CORES" >> "$RESULTS"
    printf '%-16s openssl (%s): RSA-2048 sign %s ms (%s ms each on %s cores at once), verify %s ms; Ed25519 sign %s ms, verify %s ms; SHA-256 %s GB/s\n' \
        limits "$1" ${rsa% *} "$multi" "$CORES" ${rsa#* } ${ed% *} ${ed#* } "$sha"
}

# The RSA-2048 signature alone, right before and right after a row (the
# host's speed moves within a sitting, by a quarter in one of them, in
# spells of seconds): each row's CPU is given in units of the mean of the
# two.
limits_rsa() { # before|after row
    local rsa multi
    rsa=$(openssl speed -seconds 1 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {printf "%.4f %.4f", 1000 / $(NF-1), 1000 / $NF}')
    multi=$(openssl speed -multi "$CORES" -seconds 1 rsa2048 2>/dev/null | awk -v n="$CORES" '/^rsa 2048 bits/ {printf "%.4f", n * 1000 / $(NF-1)}')
    printf '{"limits": "%s %s", "rsa_only": true, "rsa_sign_ms": %s, "rsa_sign_ms_all_cores": %s, "rsa_verify_ms": %s}\n' \
        "$1" "$2" ${rsa% *} "$multi" ${rsa#* } >> "$RESULTS"
}

noise_percent() { # json: other processes' CPU and steal, in % of a core
    python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["noise_core_share"] * 100, 1))' "$1"
}
DISCARDED=0
# One measured row for one milter: the load run ATTEMPTS times at most,
# until other processes used no more than NOISE % of a core during it.
measure() { # row milter socket pid [--warm] bench-args...
    local row=$1 name=$2 sock=$3 pid=$4
    shift 4
    local warm=1
    if [ "${1:-}" = "--cold" ]; then warm=0; shift; fi
    local attempt json others thrown=0 args n=$N
    # dkimd and the null milter get SCALE times the messages (a row's
    # @N@), so that their runs last a second or more too: long enough for
    # /proc's 10 ms ticks to tell other processes' CPU from rounding.
    case "$name" in dkimd | null) n=$((N * SCALE)) ;; esac
    for attempt in $(seq "$ATTEMPTS"); do
        args=("$@")
        # Cold-cache rows: a fresh set of domains on every attempt.
        for i in "${!args[@]}"; do
            args[i]=${args[i]//@ATTEMPT@/$attempt$name}
            args[i]=${args[i]//@N@/$n}
        done
        # The same load for 20 messages first, not measured: a milter's
        # first messages pay one-time costs (dkimd: about 40 ms of CPU
        # seeding aws-lc's random generator).
        if [ "$warm" = 1 ]; then
            local w=() skip=0
            for a in "${args[@]}"; do
                if [ "$skip" = 1 ]; then skip=0; continue; fi
                if [ "$a" = --messages ]; then skip=1; continue; fi
                w+=("$a")
            done
            "$D" bench --socket "unix:$sock" --messages 20 "${w[@]}" >/dev/null 2>"$T/warm.err" \
                || echo "bench: warm-up of $row on $name: $(tail -1 "$T/warm.err")" >&2
        fi
        if ! json=$("$D" --json bench --socket "unix:$sock" --pid "$pid" --setup-pid "$NAMED_PID" \
            --setup-pid "$PROXY_PID" "${args[@]}" 2>"$T/bench.err" | tr -d '\n'); then
            echo "bench: $row on $name failed: $(tail -1 "$T/bench.err")" >&2
            json=${json:-"{}"}
            printf '{"row": "%s", "milter": "%s", "failed": true, "report": %s}\n' "$row" "$name" "$json" >> "$RESULTS"
            return 0
        fi
        others=$(noise_percent "$json")
        if awk -v p="$others" -v limit="$NOISE" 'BEGIN { exit !(p <= limit) }'; then
            break
        fi
        thrown=$((thrown + 1))
        DISCARDED=$((DISCARDED + 1))
        printf '%-16s %-10s thrown away: other processes and steal used %s %% of a core\n' "$row" "$name" "$others"
    done
    printf '{"row": "%s", "milter": "%s", "discarded": %s, "noisy": %s, "report": %s}\n' "$row" "$name" "$thrown" \
        "$([ "$thrown" -ge "$ATTEMPTS" ] && echo true || echo false)" "$json" >> "$RESULTS"
    python3 - "$row" "$name" "$json" <<'PY'
import json, sys
row, name, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cpu = r.get("milter_cpu_ms_per_message")
print(f"{row:16} {name:10} {r['messages_per_second']:9.0f} msg/s  p50 {r['latency_ms_p50']:8.2f} ms  p99 {r['latency_ms_p99']:8.2f} ms"
      f"  CPU {cpu if cpu is not None else 0:7.3f} ms/msg  RSS {(r.get('milter_peak_rss_kb_sampled') or 0) / 1024:6.1f} MB"
      f"  tool {r['own_cpu_ms_per_message']:.3f}  others {r['others_core_share'] * 100:4.1f} %  steal {r['steal_core_share'] * 100:4.1f} %")
PY
}
# A row for every milter of this part of the run (the null milter first).
row() { # name milters... -- bench-args...
    local name=$1
    shift
    local milters=()
    while [ "$1" != "--" ]; do milters+=("$1"); shift; done
    shift
    if [ -n "$ONLY" ] && ! [[ "$name" =~ $ONLY ]]; then return 0; fi
    limits_rsa before "$name"
    for m in "${milters[@]}"; do
        case "$m" in
        null) measure "$name" null "$T/null.sock" "$NULL_PID" "$@" ;;
        dkimd) measure "$name" dkimd "$T/dkimd.sock" "$DKIMD_PID" "$@" ;;
        # A peer left out (PEERS) is skipped: under set -e a false test
        # here would end the whole run.
        opendkim) if has_peer opendkim; then measure "$name" opendkim "$T/opendkim.sock" "$OD_PID" "$@"; fi ;;
        rspamd) if has_peer rspamd; then measure "$name" rspamd "$T/rspamd.sock" "$RS_PID" "$@"; fi ;;
        esac
    done
    limits_rsa after "$name"
}
ALL="null dkimd opendkim rspamd"
RSA_V=(--mode verify --key "$RSA_KEY" --selector bench)
ED_V=(--mode verify --key "$ED_KEY" --selector bench-ed25519)

if has_peer rspamd; then rspamd_setup; fi
if [ -z "${ONLY_SOAK:-}" ]; then
limits start
# RSA-2048: signing, and verification with the key cached (in memory).
restart_peers "$RSA_KEY" bench - rsa 127.0.0.1:25353
for size in 2048 102400; do
    for c in 1 8 64; do
        row "sign-rsa-$((size / 1024))k-c$c" $ALL -- --mode sign --body-size "$size" --concurrency "$c" --messages @N@
    done
done
for size in 2048 102400; do
    row "verify-rsa-$((size / 1024))k-c8" $ALL -- "${RSA_V[@]}" --body-size "$size" --concurrency 8 --messages @N@
done

# Cold-cache verification: every message from a domain of its own (all
# under cold.test, a new set for every row and attempt), every key looked
# up through the proxy, 30 ms per answer. Not OpenDKIM: its resolver
# (libunbound) will not ask a name server on a loopback address, and the
# unbound setting that allows it (do-not-query-localhost, given with
# ResolverConfiguration) is parsed again by every thread at once, which
# crashes unbound's configuration parser.
restart_peers - - - rsa 127.0.0.2:53
# 128 and 384 (dkimd and the null milter only) show where throughput
# stops following concurrency (c / 30 ms) and the machine's CPU bounds it.
for c in 8 64 128 256 384; do
    n=$((c * 40 > 1000 ? c * 40 : 1000))
    milters="null dkimd rspamd"
    [ "$c" = 128 ] || [ "$c" = 384 ] && milters="null dkimd"
    row "verify-cold-c$c" $milters -- --cold --mode verify --key "$RSA_KEY" --selector bench --domain "a@ATTEMPT@.c$c.cold.test" \
        --domains "$n" --messages "$n" --concurrency "$c"
done
# One message in 500 from a domain whose name server never answers: the
# others must not wait for it (dkimd gives up on it after 2 × 2 s).
row "verify-cold-silent-c64" dkimd -- --cold --mode verify --key "$RSA_KEY" --selector bench \
    --domain "s@ATTEMPT@.c64.cold.test" --domains 8000 --messages 8000 --concurrency 64 --silent-every 500

# Both keys at once (OpenDKIM signs with one key only).
dk key import example.com "$ED_KEY" --selector bench-ed25519
sleep 1.5
restart_peers - - - dual 127.0.0.1:25353
for spec in 2048:8 2048:64 102400:8; do
    size=${spec%:*} c=${spec#*:}
    row "sign-dual-$((size / 1024))k-c$c" null dkimd rspamd -- --mode sign --body-size "$size" --concurrency "$c" --messages @N@
done

# Ed25519 alone, every milter with the same Ed25519 key. An own key replaces
# the global key of its algorithm only: the global keys become Ed25519 first.
dk key default example.com
dk set algorithms ed25519
dk enable --selector unused2 --new-key || true
dk key import example.com "$ED_KEY" --selector bench-ed25519
sleep 1.5
restart_peers "$ED_KEY" bench-ed25519 ed25519-sha256 ed25519 127.0.0.1:25353
for spec in 2048:1 2048:8 2048:64 102400:8; do
    size=${spec%:*} c=${spec#*:}
    row "sign-ed-$((size / 1024))k-c$c" $ALL -- --mode sign --body-size "$size" --concurrency "$c" --messages @N@
done
row "verify-ed-2k-c8" $ALL -- "${ED_V[@]}" --body-size 2048 --concurrency 8 --messages @N@

# One 50 MB message at a time, signed and verified with the Ed25519 key
# (the body is what these rows measure): dkimd and the null milter 20
# times, the peers 3 times.
limits "before 50 MB"
for m in $ALL; do
    n=3
    [ "$m" = dkimd ] || [ "$m" = null ] && n=20
    row "sign-50M" "$m" -- --cold --mode sign --body-size 52428800 --messages "$n"
    row "verify-50M" "$m" -- --cold "${ED_V[@]}" --body-size 52428800 --messages "$n"
done
limits end
fi

# The soak: SOAK messages in a row, mixed (per 10: 5 signed for an
# authenticated client, 3 good and 1 tampered signature, 1 aborted half-way),
# with the milter's RSS recorded every SOAK/20 messages.
if [ -n "${SOAK:-}" ]; then
    row "soak" dkimd -- --cold --mode mixed --body-size 2048 --concurrency 8 --messages "$SOAK" \
        --key "$RSA_KEY" --selector bench --rss-every $((SOAK / 20 > 0 ? SOAK / 20 : 1))
fi

echo "bench: $DISCARDED run(s) thrown away for other processes' CPU and steal (over $NOISE % of a core)"
cp "$RESULTS" "$OUT/results.jsonl"
printf '{"discarded": %s, "noise_limit_percent": %s, "date": "%s", "command": "bench/run.sh %s"}\n' \
    "$DISCARDED" "$NOISE" "$(date -u +%FT%TZ)" "$N" >> "$OUT/results.jsonl"
python3 bench/report.py "$OUT"
