"""Figures of benches/hls_parts/run.sh: part readiness per container from
the server log, and the bytes of the segments both playlists list.

    report.py SERVER_LOG TS_PLAYLIST FMP4_PLAYLIST PLAYLIST_URL DURATION_S
"""

import datetime
import re
import statistics
import sys
import urllib.parse
import urllib.request

log_path, ts_path, fmp4_path, base, duration = sys.argv[1:6]

READY = re.compile(r"hls part ready .*rendition=main\.(\w+) .*since_last_frame_us=(\d+)")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


ready = {"ts": [], "fmp4": []}
with open(log_path, encoding="utf-8", errors="replace") as f:
    for line in f:
        m = READY.search(line)
        if m and m.group(1) in ready:
            ready[m.group(1)].append(int(m.group(2)) / 1000)

print(f"\npart ready after its last frame (ms), every shard, {duration} s:")
print("| container | parts | median | p99 | max |")
print("|---|---:|---:|---:|---:|")
for container, ms in ready.items():
    if not ms:
        sys.exit(f"no `hls part ready` line for {container}: is debug logging on?")
    print(
        f"| {container} | {len(ms)} | {statistics.median(ms):.2f} | "
        f"{percentile(ms, 99):.2f} | {max(ms):.2f} |"
    )

# Two renditions' dates of the same segment differ by a few ms: each takes
# its clock reading when its first segment starts.
MATCH_MS = 100
SEGMENT = re.compile(r"(?:^|/)(\d+)\.(ts|m4s|mp4)(?:\?|$)")


def segments(path):
    """PROGRAM-DATE-TIME in ms -> (uri, EXTINF seconds); the EXT-X-MAP URI."""
    out, init, extinf, pdt = {}, None, None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
                when = datetime.datetime.fromisoformat(line[25:].replace("Z", "+00:00"))
                pdt = round(when.timestamp() * 1000)
            elif line.startswith("#EXTINF:"):
                extinf = float(line[8:].split(",")[0])
            elif line.startswith("#EXT-X-MAP:"):
                init = re.search(r'URI="([^"]+)"', line).group(1)
            elif line and not line.startswith("#"):
                if SEGMENT.search(line):
                    out[pdt] = (line, extinf)
                    pdt += round(extinf * 1000)
    return out, init


def size(uri):
    """Bytes of a URI as the playlist at `base` names it."""
    with urllib.request.urlopen(urllib.parse.urljoin(base, uri), timeout=10) as r:
        return len(r.read())


# Each container's rendition numbers its segments from its own start, so
# the same frames are matched by their date and duration, not their URI.
ts, _ = segments(ts_path)
fmp4, init = segments(fmp4_path)
pairs = []
for when, (uri, extinf) in sorted(ts.items()):
    near = [w for w in fmp4 if abs(w - when) <= MATCH_MS and abs(fmp4[w][1] - extinf) < 0.001]
    if near:
        pairs.append((uri, fmp4[near[0]][0], extinf))
if not pairs:
    sys.exit(f"no segment in both playlists: ts {sorted(ts.values())}, fmp4 {sorted(fmp4.values())}")
print(f"\nbytes per segment, the {len(pairs)} segments both playlists list:")
print("| TS URI | fMP4 URI | s | TS bytes | fMP4 bytes | fMP4 / TS |")
print("|---|---|---:|---:|---:|---:|")
ts_total, fmp4_total, seconds = 0, 0, 0.0
for ts_uri, fmp4_uri, extinf in pairs:
    t, f = size(ts_uri), size(fmp4_uri)
    ts_total, fmp4_total, seconds = ts_total + t, fmp4_total + f, seconds + extinf
    print(f"| {ts_uri} | {fmp4_uri} | {extinf:.3f} | {t} | {f} | {f / t:.3f} |")
print(
    f"| all | | {seconds:.3f} | {ts_total} | {fmp4_total} | {fmp4_total / ts_total:.3f} |"
)
print(
    f"\nTS {ts_total * 8 / seconds / 1e6:.3f} Mbit/s, fMP4 {fmp4_total * 8 / seconds / 1e6:.3f} Mbit/s"
    f" (+ a {size(init)} B init segment, fetched once per player)"
)
