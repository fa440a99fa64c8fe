#!/usr/bin/env python3
"""The table and the charts of one bench/run.sh sitting, from its results.

Usage: bench/report.py DIR   (reads DIR/results.jsonl; writes DIR/table.md,
DIR/rates.tsv, DIR/cpu.tsv, the gnuplot script DIR/charts.gp and, by
gnuplot, DIR/rate.svg and DIR/cpu.svg)

Every figure comes from the results file: the milters' rates, latencies,
CPU and memory as `dkimd bench` measured them, and the machine's crypto
limits as `openssl speed` measured them in the same run.
"""
import json
import os
import subprocess
import sys

MILTERS = ["dkimd", "opendkim", "rspamd", "null"]
TITLES = {"dkimd": "dkimd", "opendkim": "OpenDKIM", "rspamd": "rspamd", "null": "null milter (floor)"}


def load(path):
    """The rows in the order they ran, each milter's record of each row, the
    full limits records, the run's summary, and for each row the limits in
    force when it started: the last full record, with the RSA figures of the
    mean of the records right before and right after the row (run.sh
    measures the signature around each)."""
    rows, limits, meta = {}, [], {}
    order = []
    current, at_row = {}, {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if "limits" in d:
                if d.get("rsa_only") and d["limits"].startswith("after "):
                    row = d["limits"][len("after "):]
                    if row in at_row:
                        b = at_row[row]
                        at_row[row] = {**b, **{k: (b[k] + v) / 2 for k, v in d.items()
                                               if k.startswith("rsa_") and k in b and b.get("rsa_only")}}
                    continue
                current = {**current, **d}
                if not d.get("rsa_only"):
                    limits.append(d)
            elif "row" in d:
                if d["row"] not in rows:
                    rows[d["row"]] = {}
                    order.append(d["row"])
                    at_row[d["row"]] = current
                rows[d["row"]][d["milter"]] = d
            else:
                meta = d
    return order, rows, limits, meta, at_row


def limit_for(row, lim):
    """The crypto work of one message of this row, in ms of one core: the
    signature operation(s) and SHA-256 over the body (openssl speed)."""
    parts = row.split("-")
    kind, alg = parts[0], parts[1]
    size = {"2k": 2048, "100k": 102400, "50M": 52428800}.get(parts[2] if len(parts) > 2 else "", 2048)
    if alg == "cold":
        alg, size = "rsa", 2048
    if alg == "50M":
        size, alg = 52428800, "ed"
    body = size / (lim["sha256_gb_s"] * 1e9) * 1000
    ops = {
        ("sign", "rsa"): lim["rsa_sign_ms"],
        ("verify", "rsa"): lim["rsa_verify_ms"],
        ("sign", "ed"): lim["ed25519_sign_ms"],
        ("verify", "ed"): lim["ed25519_verify_ms"],
        ("sign", "dual"): lim["rsa_sign_ms"] + lim["ed25519_sign_ms"],
    }
    return ops.get((kind, alg), lim["rsa_sign_ms"]) + body


def describe(row):
    p = row.split("-")
    if p[1] == "50M":
        return f"{p[0]} Ed25519, 50 MB, c=1"
    if p[1] == "cold":
        silent = " (1 in 500 silent)" if "silent" in p else ""
        return f"verify RSA, cold cache, 30 ms DNS, {p[-1].replace('c', 'c=')}{silent}"
    alg = {"rsa": "RSA-2048", "ed": "Ed25519", "dual": "RSA + Ed25519"}[p[1]]
    cached = " (key cached)" if p[0] == "verify" else ""
    return f"{p[0]} {alg}, {p[2].replace('k', ' KB')}, {p[3].replace('c', 'c=')}{cached}"


COLOURS = {"dkimd": "#1b7837", "opendkim": "#2166ac", "rspamd": "#b2182b", "null": "#bbbbbb"}


def charts(out, present):
    """rate.svg and cpu.svg by gnuplot from rates.tsv and cpu.tsv: a bar
    per milter that has figures, and the crypto limit as a line. Log
    scales: the milters differ by up to two orders of magnitude."""
    def plot(tsv):
        parts = []
        for i, m in enumerate(present):
            col = 2 + MILTERS.index(m)
            src = f"'{out}/{tsv}'" if i == 0 else "''"
            xtic = ":xtic(1)" if i == 0 else ""
            parts.append(f"{src} using {col}{xtic} title '{TITLES[m]}' lc rgb '{COLOURS[m]}'")
        parts.append(f"'' using 0:{2 + len(MILTERS)} with linespoints title 'crypto limit' "
                     "lc rgb 'black' lw 2 pt 7 ps 0.6")
        return "plot " + ", \\\n     ".join(parts) + "\n"
    script = f"""set terminal svg size 1200,600 dynamic font "sans,11" background rgb "white"
set datafile separator "\\t"
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -40 left nomirror font ",9"
set grid ytics
set logscale y
set key top left horizontal
set bmargin 10
set output '{out}/rate.svg'
set title "Messages per second (higher is better; line: the crypto limit on all cores)"
set ylabel "messages / s"
{plot("rates.tsv")}
set output '{out}/cpu.svg'
set title "Milter CPU per message in RSA-2048 signatures (lower is better; line: the crypto work)"
set ylabel "CPU per message / one RSA-2048 signature"
{plot("cpu.tsv")}"""
    path = os.path.join(out, "charts.gp")
    with open(path, "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", path], check=True)


def main():
    out = sys.argv[1]
    order, rows, limits, meta, at_row = load(os.path.join(out, "results.jsonl"))
    if not limits:
        sys.exit("report: no limits in the results")
    lim = limits[0]
    # The 50 MB rows compare with the limits measured right before them.
    lim50 = next((x for x in limits if x["limits"] == "before 50 MB"), lim)
    lines = []
    w = lines.append
    w(f"Measured {meta.get('date', '?')} by `{meta.get('command', 'bench/run.sh')}`; "
      f"{meta.get('discarded', 0)} run(s) thrown away and run again (other processes "
      f"and the hypervisor's steal over {meta.get('noise_limit_percent', 10)} % of a core); "
      "a row still over it after every attempt is marked (noisy).\n")
    for x in limits:
        # Results from before 2026-12-03's second sitting have no all-cores figure.
        multi = x.get("rsa_sign_ms_all_cores")
        each = f" ({multi:.3f} ms each on {x.get('cores', '?')} cores at once)" if multi else ""
        w(f"- openssl speed ({x['limits']}): RSA-2048 sign {x['rsa_sign_ms']:.3f} ms{each}, verify "
          f"{x['rsa_verify_ms']:.4f} ms; Ed25519 sign {x['ed25519_sign_ms']:.4f} ms, verify "
          f"{x['ed25519_verify_ms']:.4f} ms; SHA-256 {x['sha256_gb_s']:.2f} GB/s")
    before = [at_row[r] for r in order if at_row[r].get("rsa_only")]
    if before:
        sig = [x["rsa_sign_ms"] for x in before]
        w(f"- openssl speed around each row (the mean of right before and right after it): "
          f"RSA-2048 sign {min(sig):.3f}–{max(sig):.3f} ms")
    w("")
    w("CPU per message is the milter's whole process tree, in ms and in units of "
      "one RSA-2048 signature as `openssl speed` measured it right before and right "
      "after that row (the mean of the two; the host's speed drifts during a "
      "sitting). The crypto limit is the signature operation(s) and SHA-256 over "
      "the body, from the same measurements. On the RSA signing rows with more "
      "than one connection, dkimd's CPU is also given in units of the signature "
      "as it costs with every core signing at once (`openssl speed -multi`), "
      "which is how dkimd signs there.\n")
    head = ["load", "crypto limit"]
    for m in MILTERS:
        head += [f"{TITLES[m]} msg/s", f"{TITLES[m]} CPU/msg"]
    head += ["dkimd p50 / p99", "floor p50 / p99", "dkimd peak RSS", "OpenDKIM peak RSS", "rspamd PSS"]
    w("| " + " | ".join(head) + " |")
    w("|" + "---|" * len(head))
    rates_tsv, cpu_tsv = [], []
    for row in order:
        # The 50 MB rows: the full limits right before them (SHA-256).
        here = {**(lim50 if "50M" in row else lim), **{k: v for k, v in at_row[row].items() if k.startswith("rsa_")}}
        rsa = here["rsa_sign_ms"]
        multi = here.get("rsa_sign_ms_all_cores")
        l = limit_for(row, here)
        cells = [describe(row), f"{l:.3f} ms ({l / rsa:.2f})"]
        rate_line, cpu_line = [row], [row]
        for m in MILTERS:
            d = rows[row].get(m)
            if not d or d.get("failed"):
                cells += ["failed" if d else "–", "–"]
                rate_line.append("NaN")
                cpu_line.append("NaN")
                continue
            r = d["report"]
            cpu = r.get("milter_cpu_ms_per_message") or 0.0
            mark = " (noisy)" if d.get("noisy") else ""
            units = f"{cpu / rsa:.2f}"
            if m == "dkimd" and multi and row.startswith("sign-rsa") and not row.endswith("-c1"):
                units += f"; {cpu / multi:.2f} all-cores"
            cells += [f"{r['messages_per_second']:,.0f}{mark}", f"{cpu:.3f} ms ({units})"]
            rate_line.append(f"{r['messages_per_second']:.1f}")
            cpu_line.append(f"{cpu / rsa:.4f}")
        cores = lim["cores"]
        rate_line.append(f"{cores / l * 1000:.1f}")
        cpu_line.append(f"{l / rsa:.4f}")
        dk, nl = rows[row].get("dkimd"), rows[row].get("null")

        def lat(d):
            if not d or d.get("failed"):
                return "–"
            r = d["report"]
            s = f"{r['latency_ms_p50']:.2f} / {r['latency_ms_p99']:.2f} ms"
            if r.get("silent_messages"):
                s += f"; silent ones {r['silent_latency_ms_p50']:.0f} ms"
            return s

        def mem(d, key):
            if not d or d.get("failed"):
                return "–"
            v = d["report"].get(key)
            return f"{v / 1024:.1f} MB" if v else "–"

        cells += [lat(dk), lat(nl), mem(dk, "milter_peak_rss_kb_sampled"),
                  mem(rows[row].get("opendkim"), "milter_peak_rss_kb_sampled"),
                  mem(rows[row].get("rspamd"), "milter_pss_kb")]
        w("| " + " | ".join(cells) + " |")
        rates_tsv.append("\t".join(rate_line))
        cpu_tsv.append("\t".join(cpu_line))
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    header = "row\t" + "\t".join(MILTERS) + "\tlimit\n"
    for name, data in (("rates.tsv", rates_tsv), ("cpu.tsv", cpu_tsv)):
        with open(os.path.join(out, name), "w") as f:
            f.write(header + "\n".join(data) + "\n")
    charts(out, [m for m in MILTERS if any(c.split("\t")[1 + MILTERS.index(m)] != "NaN" for c in rates_tsv)])
    print("\n".join(lines))
    print(f"report: {out}/table.md, {out}/rate.svg, {out}/cpu.svg")


if __name__ == "__main__":
    main()
