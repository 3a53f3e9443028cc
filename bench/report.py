#!/usr/bin/env python3
"""Turns bench/run.sh's results.tsv into the table of targets (median of
the rounds, regcache ÷ peer) and the data of the chart.

usage: report.py results.tsv outdir size clients rounds
"""
import statistics
import sys
from collections import defaultdict

results, out, size, clients, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

values = defaultdict(list)
with open(results) as f:
    for line in f:
        scenario, server, metric, value = line.rstrip("\n").split("\t")
        try:
            values[(scenario, server, metric)].append(float(value))
        except ValueError:
            pass


def med(scenario, server, metric):
    v = values.get((scenario, server, metric))
    return statistics.median(v) if v else None


def worst(scenario, server, metric, fn=max):
    v = values.get((scenario, server, metric))
    return fn(v) if v else None


def fmt(x, unit=""):
    if x is None:
        return "n/a"
    if abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.3g}"
    return s + unit


rows = []


def row(scenario, ours, peer, peer_name, ratio, target, ok):
    verdict = "n/a" if ok is None else ("pass" if ok else "MISS")
    rows.append((scenario, ours, f"{peer}" + (f" ({peer_name})" if peer_name else ""), ratio, target, verdict))


def ratio_row(scenario, a, b, peer_name, unit, target_text, test, higher_is_better=True):
    r = a / b if a is not None and b not in (None, 0) else None
    row(scenario, fmt(a, unit), fmt(b, unit), peer_name, fmt(r, "×"), target_text, None if r is None else test(r))


mib = size / (1 << 20)
ratio_row("Warm blob, 1 client, HTTP/1.1", med("warm", "regcache", "mb_s"), med("warm", "nginx", "mb_s"),
          "nginx proxy_cache hit", " MB/s", "≥ 1.0×", lambda r: r >= 1.0)
ratio_row("Warm blob, 1 client, HTTP/1.1", med("warm", "regcache", "mb_s"), med("warm", "nginx-static", "mb_s"),
          "nginx static", " MB/s", "≥ 0.9×", lambda r: r >= 0.9)
ratio_row(f"Cold blob, {clients} clients verifying the digest: wall time", med("cold20", "regcache", "wall_s"),
          med("cold20", "nginx", "wall_s"), "nginx cache lock", " s", "≤ 0.8×", lambda r: r <= 0.8)
ratio_row(f"Cold blob, {clients} clients counting bytes only: wall time", med("cold20count", "regcache", "wall_s"),
          med("cold20count", "nginx", "wall_s"), "nginx cache lock", " s", "≤ 0.8×", lambda r: r <= 0.8)
fetches = worst("cold20", "regcache", "upstream_fetches")
moved = worst("cold20", "regcache", "upstream_bytes")
ok = worst("cold20", "regcache", "ok", min)
# One fill per digest: a fill fetched in several ranges makes one GET per
# range, so the bytes the upstream sent tell whether the blob was fetched
# once.
def per_blob(server, pick):
    b, n = pick("cold20", server, "upstream_bytes"), pick("cold20", server, "upstream_fetches")
    return f"{fmt(b / size if b is not None else None, '×')} ({fmt(n)})"


row(f"Cold blob, {clients} clients: bytes the upstream sent ÷ the blob, GETs in brackets (worst round)",
    per_blob("regcache", worst), f"{per_blob('nginx', worst)} (nginx), {per_blob('distribution', med)} (distribution)",
    "", "", "≤ 1.1× (one fetch)", None if moved is None else moved / size <= 1.1)
row(f"Cold blob, {clients} clients: correct clients (worst round)", fmt(ok),
    f"{fmt(worst('cold20', 'nginx', 'ok', min))} (nginx), {fmt(worst('cold20', 'distribution', 'ok', min))}",
    "distribution", "", f"all {clients}", None if ok is None else ok == clients)
lag = worst("cold20", "regcache", "first_byte_lag_s")
row(f"Cold blob, {clients} clients: last client's first byte after the upstream's (worst round)",
    fmt(lag, " s"), fmt(med("cold20", "nginx", "first_byte_lag_s"), " s"), "nginx cache lock", "", "≤ 1 s",
    None if lag is None else lag <= 1.0)
ratio_row("Cold blob, 1 client: time", med("cold1", "regcache", "wall_s"), med("cold1", "upstream", "wall_s"),
          "straight from the upstream", " s", "≤ 1.1×", lambda r: r <= 1.1)
ratio_row("Cold blob, 1 client: time", med("cold1", "regcache", "wall_s"), med("cold1", "nginx", "wall_s"),
          "nginx proxy_cache", " s", "≤ 1.0×", lambda r: r <= 1.0)
def yes_no(ok):
    return "n/a" if ok is None else ("yes" if ok == 1 else "no")


image = med("meta", "badlink", "image_bytes")
cap = med("meta", "badlink", "cap")
cut = med("meta", "badlink", "cut")
if image:
    ratio_row(f"Bad link, {fmt(cap / 1e6 if cap else None)} MB/s per connection: first pull of {fmt(image / (1 << 20))} MiB in 4 layers: time",
              med("badcap", "regcache", "wall_s"), med("badcap", "upstream", "wall_s"), "pulled straight from the upstream",
              " s", "≤ 0.5×", lambda r: r <= 0.5)
    drops_ok = worst("baddrops", "regcache", "ok", min)
    row(f"Bad link, every transfer cut after {fmt(cut / (1 << 20) if cut else None)} MiB: pull succeeds (worst round)",
        yes_no(drops_ok),
        ", ".join(f"{yes_no(worst('baddrops', s, 'ok', min))} ({s})" for s in ("upstream", "nginx", "distribution")),
        "", "", "succeeds", None if drops_ok is None else drops_ok == 1)
    moved = worst("baddrops", "regcache", "upstream_bytes")
    ratio_row(f"Bad link, every transfer cut after {fmt(cut / (1 << 20) if cut else None)} MiB: bytes moved upstream (worst round)",
              moved, image, "the image's blobs", " B", "≤ 1.1×", lambda r: r <= 1.1)
ratio_row("Manifest by digest, warm, 32 connections: requests/s", med("manifest", "regcache", "rps"),
          med("manifest", "nginx", "rps"), "nginx proxy_cache hit", "", "≥ 1.0×", lambda r: r >= 1.0)
ratio_row("Manifest by digest, warm, 32 connections: p99", med("manifest", "regcache", "p99_ms"),
          med("manifest", "nginx", "p99_ms"), "nginx proxy_cache hit", " ms", "≤ 1.0×", lambda r: r <= 1.0)
rss = worst("cold20", "regcache", "peak_rss_mib")
row(f"Peak RSS during the {clients}-client cold run (worst round)", fmt(rss, " MiB"),
    fmt(med("cold20", "distribution", "peak_rss_mib"), " MiB"), "distribution", "", "≤ 128 MiB",
    None if rss is None else rss <= 128)
st = med("startup", "regcache", "seconds")
row("Start-up, 100,000 cached objects (cache open to first object served)", fmt(st, " s"), "", "", "", "≤ 1 s",
    None if st is None else st <= 1.0)
st = med("startup", "regcache-process", "seconds")
row("Start-up of ./caddy, warm cache, to the first blob served", fmt(st, " s"), "", "", "", "(measured)", None)
ratio_row("Warm blob, HTTPS, HTTP/1.1", med("warm", "regcache-tls", "mb_s"), med("warm", "regcache", "mb_s"),
          "regcache plain HTTP", " MB/s", "(measured)", lambda r: None)
ratio_row("Warm blob, HTTPS, HTTP/2", med("warm", "regcache-h2", "mb_s"), med("warm", "regcache-tls", "mb_s"),
          "regcache HTTPS HTTP/1.1", " MB/s", "(measured)", lambda r: None)
ratio_row("Warm blob, Caddy's default server options", med("warm", "regcache-defaults", "mb_s"),
          med("warm", "regcache", "mb_s"), "regcache, write_idle off", " MB/s", "(measured)", lambda r: None)
ratio_row("Warm blob, write idle timeout kept, 4 MiB write chunks", med("warm", "regcache-chunk", "mb_s"),
          med("warm", "regcache", "mb_s"), "regcache, write_idle off", " MB/s", "(measured)", lambda r: None)
ratio_row("Warm blob, distribution proxy", med("warm", "regcache", "mb_s"), med("warm", "distribution", "mb_s"),
          "distribution", " MB/s", "(measured)", lambda r: None)
ratio_row("Manifest by digest, distribution proxy", med("manifest", "regcache", "rps"),
          med("manifest", "distribution", "rps"), "distribution", "", "(measured)", lambda r: None)
row("Warm runs: upstream fetches", fmt(worst("warm", "all", "upstream_fetches")), "", "", "", "0",
    None if worst("warm", "all", "upstream_fetches") is None else worst("warm", "all", "upstream_fetches") == 0)

# Before and after: an earlier build run beside this one (BASE_CADDY).
if any(k[1] == "regcache-base" for k in values):
    for scen, metric, name, unit in (("cold1", "wall_s", "Cold blob, 1 client: time", " s"),
                                     ("cold20", "wall_s", f"Cold blob, {clients} clients verifying the digest: wall time", " s"),
                                     ("cold20count", "wall_s", f"Cold blob, {clients} clients counting bytes only: wall time", " s"),
                                     ("warm", "mb_s", "Warm blob, 1 client, HTTP/1.1", " MB/s")):
        ratio_row(f"{name}, against the earlier build", med(scen, "regcache", metric), med(scen, "regcache-base", metric),
                  "earlier build", unit, "(measured)", lambda r: None)
    ratio_row("Cold blob, 1 client: time, earlier build", med("cold1", "regcache-base", "wall_s"),
              med("cold1", "upstream", "wall_s"), "straight from the upstream", " s", "≤ 1.1×", lambda r: r <= 1.1)
    ratio_row("Cold blob, 1 client: time, earlier build", med("cold1", "regcache-base", "wall_s"),
              med("cold1", "nginx", "wall_s"), "nginx proxy_cache", " s", "≤ 1.0×", lambda r: r <= 1.0)
    ratio_row("Warm blob, 1 client, HTTP/1.1, earlier build", med("warm", "regcache-base", "mb_s"),
              med("warm", "nginx", "mb_s"), "nginx proxy_cache hit", " MB/s", "≥ 1.0×", lambda r: r >= 1.0)
# CPU seconds of one cold pull: the server's, the upstream's and the
# client's, which share the machine's cores.
for srv, label in (("regcache", "regcache"), ("regcache-base", "earlier build"), ("nginx", "nginx proxy_cache"),
                   ("upstream", "straight from the upstream")):
    parts = [med("cold1", srv, m) for m in ("server_cpu_s", "upstream_cpu_s", "client_cpu_s")]
    if all(p is None for p in parts):
        continue
    total = sum(p for p in parts if p is not None)
    row(f"Cold blob, 1 client: CPU seconds, {label} (server + upstream + client)",
        f"{fmt(parts[0], ' s')} + {fmt(parts[1], ' s')} + {fmt(parts[2], ' s')} = {fmt(total, ' s')}",
        fmt(med("cold1", srv, "wall_s"), " s wall"), "", "", "(measured)", None)

header = ("Scenario", "regcache", "Peer", "Ratio", "Target", "Result")
lines = [f"Blob {mib:.0f} MiB, {clients} clients, {rounds} round(s), medians; ratio = regcache ÷ peer", "",
         "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
for r in rows:
    lines.append("| " + " | ".join(r) + " |")
table = "\n".join(lines) + "\n"
with open(f"{out}/table.md", "w") as f:
    f.write(table)
print(table)

# The bad-link table: every server side by side, from the same run.
if image:
    blines = [f"Bad link: a {fmt(image / (1 << 20))} MiB image in 4 layers pulled cold (3 blobs at once, Range after a break, "
              f"5 tries per blob), {rounds} round(s), medians (ok: worst round); time ratio = server ÷ straight from the upstream, "
              "bytes ratio = bytes the upstream's CDN sent ÷ the image's bytes", "",
              "| Link | Server | Pull ok | Time | Time ratio | Bytes moved upstream | Bytes ratio | CDN GETs |",
              "|---|---|---|---|---|---|---|---|"]
    for scen, link in (("badcap", f"{fmt(cap / 1e6 if cap else None)} MB/s per connection"),
                       ("baddrops", f"cut after every {fmt(cut / (1 << 20) if cut else None)} MiB")):
        direct = med(scen, "upstream", "wall_s")
        for s_, label in (("regcache", "regcache"), ("nginx", "nginx proxy_cache"), ("distribution", "distribution proxy"),
                          ("upstream", "straight from the upstream")):
            t = med(scen, s_, "wall_s")
            b = med(scen, s_, "upstream_bytes")
            ok_ = worst(scen, s_, "ok", min)
            blines.append(f"| {link} | {label} | {yes_no(ok_)} | {fmt(t, ' s')} | "
                          f"{fmt(t / direct if t is not None and direct else None, '×')} | "
                          f"{fmt(b / (1 << 20) if b is not None else None, ' MiB')} | {fmt(b / image if b is not None else None, '×')} | "
                          f"{fmt(med(scen, s_, 'upstream_fetches'))} |")
    btable = "\n".join(blines) + "\n"
    with open(f"{out}/badlink.md", "w") as f:
        f.write(btable)
    print(btable)

# Chart data: throughput (MB/s, every client's bytes per wall second) and
# upstream bytes (MiB) per scenario and server.
servers = ["regcache", "nginx", "distribution", "nginx-static", "upstream"]  # five columns: chart.gp plots 2..6
labels = ["regcache", "nginx-cache", "distribution", "nginx-static", "direct-from-upstream"]
scen = [("warm", "warm blob\\n1 client"), ("cold20", f"cold blob\\n{clients} clients\\nverifying"),
        ("cold20count", f"cold blob\\n{clients} clients\\ncounting"), ("cold1", "cold blob\\n1 client")]
with open(f"{out}/chart.dat", "w") as f:
    f.write("scenario\t" + "\t".join(labels) + "\n")
    for key, label in scen:
        f.write(f'"{label}"\t' + "\t".join(fmt_or_nan for fmt_or_nan in (
            str(med(key, s, "mb_s")) if med(key, s, "mb_s") is not None else "NaN" for s in servers)) + "\n")
with open(f"{out}/chart-upstream.dat", "w") as f:
    f.write("scenario\t" + "\t".join(labels) + "\n")
    for key, label in scen:
        cells = []
        for s in servers:
            v = med(key, s, "upstream_bytes")
            if key == "warm":
                v = 0.0 if s in ("regcache", "nginx", "distribution") else None
            cells.append(str(v / (1 << 20)) if v is not None else "NaN")
        f.write(f'"{label}"\t' + "\t".join(cells) + "\n")
