#!/usr/bin/env python3
"""Aggregates the fan-out comparison (benches/fanout/run.sh).

    aggregate.py RESULTS_DIR OUT.md     the report, from RESULTS_DIR/meta.tsv,
                                        runs.tsv and one shardcast-bench
                                        --json report per run
    aggregate.py --summary RUN.json     one line about one run (progress)

Every number in the report comes from those files: the median over repeats
of each (protocol, server, N), with the min-max spread of CPU-seconds per
delivered Gbit. Output depends only on the input files.
"""

import json
import os
import statistics
import sys

SERVERS = ["shardcast", "shardcast_mw", "shardcast_base", "nginx", "nms"]
# shardcast_mw: shardcast with merged writes (stream.write_coalesce_ms = 33,
# benches/fanout/shardcast-mw.toml), at about nginx-rtmp's latency.
# shardcast_base: a baseline binary (run.sh BASE_BIN), for before/after.
MINE = ["shardcast", "shardcast_mw"]
NAMES = {
    "shardcast": "shardcast",
    "shardcast_mw": "shardcast, merged writes 33 ms",
    "shardcast_base": "shardcast baseline (BASE_BIN)",
    "nginx": "nginx-rtmp",
    "nms": "node-media-server",
}
PROTOCOLS = {"rtmp": "RTMP", "flv": "HTTP-FLV"}


def get(d, *path):
    """d[path[0]][path[1]]... or None."""
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def ok_pct(r):
    req = get(r, "players", "requested")
    ok = get(r, "players", "ok")
    if not req or ok is None:
        return None
    return 100.0 * ok / req


def median(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def fmt(v, digits, unit=""):
    return "–" if v is None else f"{v:.{digits}f}{unit}"


def pair(a, b, digits):
    if a is None and b is None:
        return "–"
    return f"{fmt(a, digits)} / {fmt(b, digits)}"


def summary(path):
    with open(path) as f:
        r = json.load(f)
    s = r.get("server") or {}
    print(
        "  {:.3f} Gbit/s, OK {}/{}, server CPU {}% ({} CPU-s/Gbit), RSS {} MB, "
        "TTFF p50 {} ms, latency p50/p99 {} ms, bench CPU {}%, timer lag p99 {} ms{}".format(
            r.get("delivered_gbps") or 0.0,
            get(r, "players", "ok"),
            get(r, "players", "requested"),
            fmt(s.get("cpu_pct_window"), 0),
            fmt(s.get("cpu_s_per_gbit"), 2),
            fmt(s.get("rss_mb_end"), 1),
            fmt(get(r, "ttff_ms", "p50"), 1),
            pair(get(r, "latency_ms", "p50"), get(r, "latency_ms", "p99"), 1),
            fmt(get(r, "bench", "cpu_pct_window"), 0),
            fmt(get(r, "timer_lag_ms", "p99"), 1),
            "".join(f"\n  WARNING {w}" for w in r.get("warnings") or []),
        )
    )


def read_tsv(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                rows.append(line.split("\t"))
    return rows


def report(results_dir, out):
    meta = {}
    for row in read_tsv(os.path.join(results_dir, "meta.tsv")):
        meta[row[0]] = row[1] if len(row) > 1 else ""
    runs = []  # (proto, server, n, rep, order, status, file, note, report|None)
    for row in read_tsv(os.path.join(results_dir, "runs.tsv")):
        row += [""] * (8 - len(row))
        proto, server, n, rep, order, status, file, note = row[:8]
        r = None
        if status == "ok":
            with open(os.path.join(results_dir, file)) as f:
                r = json.load(f)
        runs.append((proto, server, int(n), int(rep), int(order), status, file, note, r))

    groups = {}
    for run in runs:
        groups.setdefault((run[0], run[1], run[2]), []).append(run)

    def key_order(k):
        proto, server, n = k
        return (list(PROTOCOLS).index(proto), n, SERVERS.index(server))

    keys = sorted(groups, key=key_order)
    agg = {}
    for k in keys:
        good = [run[8] for run in groups[k] if run[8] is not None]
        cps = [get(r, "server", "cpu_s_per_gbit") for r in good]
        cps = [x for x in cps if x is not None]
        agg[k] = {
            "runs": len(groups[k]),
            "good": len(good),
            "gbps": median(r.get("delivered_gbps") for r in good),
            "ok": median(ok_pct(r) for r in good),
            "cpu_pct": median(get(r, "server", "cpu_pct_window") for r in good),
            "cps": median(cps),
            "cps_min": min(cps) if cps else None,
            "cps_max": max(cps) if cps else None,
            "rss": median(get(r, "server", "rss_mb_end") for r in good),
            "ttff50": median(get(r, "ttff_ms", "p50") for r in good),
            "ttff99": median(get(r, "ttff_ms", "p99") for r in good),
            "key50": median(get(r, "first_keyframe_ms", "p50") for r in good),
            "key99": median(get(r, "first_keyframe_ms", "p99") for r in good),
            "lat50": median(get(r, "latency_ms", "p50") for r in good),
            "lat99": median(get(r, "latency_ms", "p99") for r in good),
            "bench_cpu": median(get(r, "bench", "cpu_pct_window") for r in good),
            "lag99": max(
                (x for x in (get(r, "timer_lag_ms", "p99") for r in good) if x is not None),
                default=None,
            ),
            "lagmax": max(
                (x for x in (get(r, "timer_lag_ms", "max") for r in good) if x is not None),
                default=None,
            ),
            "sendlag": max(
                (
                    x
                    for x in (get(r, "publish", "send_lag_max_ms") for r in good)
                    if x is not None
                ),
                default=None,
            ),
            "failed": median(get(r, "players", "failed") for r in good),
            # shardcast-bench's own verdict that it may have been the limit.
            "bench_late": any(
                "bench" in w and ("timers fired late" in w or "CPU" in w)
                for r in good
                for w in r.get("warnings") or []
            ),
            "stalls": median(get(r, "players", "players_with_stalls") for r in good),
        }

    first = next((run[8] for run in runs if run[8] is not None), None)
    L = []
    w = L.append
    w("# Fan-out comparison: shardcast, nginx-rtmp, node-media-server")
    w("")
    w("<!-- Written by benches/fanout/aggregate.py from the JSON reports of")
    w("     benches/fanout/run.sh; do not edit by hand. -->")
    w("")
    if meta.get("label"):
        w(f"**{meta['label']}**")
        w("")
    w(
        "Each server runs alone on one core (shardcast `--shards 1 --pin-cores`, "
        "nginx-rtmp one worker with `worker_cpu_affinity`, node-media-server under "
        "`taskset`); `shardcast-bench fanout` runs on the other core(s), publishes "
        "one synthetic H.264 + AAC stream and plays it with N players on the "
        "loopback. A fresh server process per run; servers interleaved, each point "
        "the median of its repeats."
    )
    w("")
    w("## Machine and versions")
    w("")
    w("| | |")
    w("| --- | --- |")
    for k, label in [
        ("date", "date"),
        ("cpu_model", "CPU"),
        ("nproc", "online CPUs"),
        ("memory", "memory"),
        ("kernel", "kernel"),
        ("os", "OS"),
        ("shardcast", "shardcast (git)"),
        ("rustc", "rustc"),
        ("nginx", "nginx"),
        ("libnginx-mod-rtmp", "libnginx-mod-rtmp"),
        ("node", "Node.js"),
        ("node-media-server", "node-media-server"),
    ]:
        w(f"| {label} | {meta.get(k, '?')} |")
    w("")
    w("## Parameters")
    w("")
    pub = get(first, "publish") or {}
    w(
        f"- Stream: {meta.get('bitrate')} video + {meta.get('audio_bitrate')} audio"
        + (
            f" ({pub.get('fps'):g} fps, keyframe every {pub.get('gop_s'):g} s)"
            if pub.get("fps") is not None and pub.get("gop_s") is not None
            else ""
        )
        + "; a player is OK when it receives at least 90% of the publisher's "
        "measured media bitrate in the window."
    )
    w(
        f"- N = {meta.get('ns')}; {meta.get('repeats')} repeat(s); players start at "
        f"{meta.get('ramp')}/s; after the ramp and 1 s to settle, a "
        + (
            f"{meta.get('window')} s measurement window"
            if meta.get("duration") in (None, "auto")
            else f"run of {meta.get('duration')} s in all"
        )
        + f". Server on CPU {meta.get('server_cpu')}; bench on CPU {meta.get('bench_cpus')} "
        f"with {meta.get('bench_threads')} player thread(s) and its publisher thread."
    )
    if first is not None:
        w(f"- Players' SO_RCVLOWAT: {first.get('rcvlowat') or 'off'}.")
    w(
        "- Chunk size 65535 on every server (node-media-server's is fixed there). "
        "GOP cache: shardcast and node-media-server keep one (their default): a "
        "new player gets the frames since the last keyframe at once. nginx-rtmp "
        "has none; with its default `wait_key on` a new player's audio flows at "
        "once but its video starts at the publisher's next keyframe, up to one "
        "keyframe interval later: its TTFF (first frame of any kind, here audio) "
        "looks as fast as the others', its first keyframe comes later. Logging "
        "at warnings only on all three."
    )
    w(
        "- Server CPU is the server process's user + system time in the window "
        "(nginx: the worker; its master only manages it), from /proc; on the "
        "loopback it includes the kernel's TCP work for both ends of each "
        "player's connection that runs on the server's core. RSS is at the end "
        "of the window (nginx: the worker's)."
    )
    w("")
    w("Columns: delivered Gbit/s (all players' socket bytes in the window); OK")
    w("share of players; server CPU in % of one core; CPU-seconds per delivered")
    w("Gbit, median (min–max over repeats); RSS; time to first frame from the TCP")
    w("connect (audio or video), and to the first keyframe; publisher-to-player")
    w("latency of live video frames.")
    for proto, pname in PROTOCOLS.items():
        pkeys = [k for k in keys if k[0] == proto]
        if not pkeys:
            continue
        w("")
        w(f"## {pname}")
        w("")
        if proto == "flv":
            w("nginx-rtmp serves no HTTP-FLV. Players: `GET /live/bench.flv`; the")
            w("publisher: RTMP.")
            w("")
        w(
            "| server | N | runs | Gbit/s | OK | CPU % | CPU-s/Gbit (min–max) "
            "| RSS MB | TTFF p50 / p99 ms | 1st keyframe p50 / p99 ms "
            "| latency p50 / p99 ms |"
        )
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for k in pkeys:
            a = agg[k]
            runs_col = str(a["good"]) if a["good"] == a["runs"] else f"{a['good']} of {a['runs']}"
            cps = fmt(a["cps"], 2)
            if a["cps_min"] is not None and a["good"] > 1:
                cps += f" ({a['cps_min']:.2f}–{a['cps_max']:.2f})"
            mark = " *" if a["bench_late"] else ""
            w(
                f"| {NAMES[k[1]]} | {k[2]}{mark} | {runs_col} | {fmt(a['gbps'], 3)} "
                f"| {fmt(a['ok'], 1, '%')} | {fmt(a['cpu_pct'], 0)} | {cps} "
                f"| {fmt(a['rss'], 1)} | {pair(a['ttff50'], a['ttff99'], 1)} "
                f"| {pair(a['key50'], a['key99'], 1)} "
                f"| {pair(a['lat50'], a['lat99'], 1)} |"
            )
        if any(agg[k]["bench_late"] for k in pkeys):
            w("")
            w(
                "\\* In at least one repeat shardcast-bench warned that it may have "
                "been the limit (its timers fired late or it used nearly all its "
                "CPU): see the load generator table."
            )
        # CPU per delivered Gbit, shardcast against each other server.
        present = {k[1] for k in pkeys}
        others = [s for s in SERVERS if s not in MINE and s in present]
        mine = [s for s in MINE if s in present]
        pairs = [(m, o) for m in mine for o in others]
        ns = sorted({k[2] for k in pkeys})
        if pairs:
            w("")
            w(
                "CPU-seconds per delivered Gbit, shardcast's over the other's "
                "(below 1: shardcast spends less CPU per Gbit delivered):"
            )
            w("")
            w("| N | " + " | ".join(f"{NAMES[m]} / {NAMES[o]}" for m, o in pairs) + " |")
            w("| ---: |" + " ---: |" * len(pairs))
            for n in ns:
                cells = []
                for m, o in pairs:
                    a = agg.get((proto, m, n), {}).get("cps")
                    b = agg.get((proto, o, n), {}).get("cps")
                    cells.append(fmt(a / b, 2) if a and b else "–")
                w(f"| {n} | " + " | ".join(cells) + " |")

    w("")
    w("## The load generator")
    w("")
    w("Its CPU in % of one core (median; its publisher thread shares a core), and the")
    w("worst over repeats of its own timers' lateness and of the publisher's")
    w("lag behind its schedule. shardcast-bench warns at a timer lag p99 above")
    w("20 ms or a max above 200 ms: the bench, not the server, may then be the")
    w("limit.")
    w("")
    w("| protocol | server | N | bench CPU % | timer lag p99 / max ms | publisher lag max ms |")
    w("| --- | --- | ---: | ---: | ---: | ---: |")
    for k in keys:
        a = agg[k]
        w(
            f"| {PROTOCOLS[k[0]]} | {NAMES[k[1]]} | {k[2]} | {fmt(a['bench_cpu'], 0)} "
            f"| {pair(a['lag99'], a['lagmax'], 1)} | {fmt(a['sendlag'], 1)} |"
        )
    notes = []
    for run in runs:
        proto, server, n, rep, _, status, _, note, r = run
        where = f"{PROTOCOLS[proto]} {NAMES[server]} N={n} repeat {rep}"
        if status != "ok":
            notes.append(f"{where}: {status}: {note}")
        elif note:
            notes.append(f"{where}: {note}")
        for warning in (r or {}).get("warnings") or []:
            notes.append(f"{where}: {warning}")
        for what, count in sorted(((r or {}).get("errors") or {}).items()):
            notes.append(f"{where}: {count} x {what}")
    w("")
    w("## Warnings, errors and skipped runs")
    w("")
    if notes:
        for note in notes:
            w(f"- {note}")
    else:
        w("None: every run completed, and no run's report has a warning or an error.")
    w("")
    w("## How to reproduce")
    w("")
    w(
        "On Debian 12 with Rust, Node.js >= 20 and two or more cores: "
        f"`{meta.get('command', 'benches/fanout/run.sh')}` (installs nginx and "
        "libnginx-mod-rtmp with apt-get and node-media-server with npm ci when "
        "missing, builds, runs, writes this file; raw JSON per run under "
        "`target/fanout/`)."
    )
    text = "\n".join(L) + "\n"
    with open(out, "w") as f:
        f.write(text)


def main(argv):
    if len(argv) == 3 and argv[1] == "--summary":
        summary(argv[2])
    elif len(argv) == 3:
        report(argv[1], argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
