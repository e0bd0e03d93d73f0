#!/usr/bin/env bash
# The one test command: on a fresh Debian machine with Rust, installs what
# the tests need (ffmpeg/ffprobe, rtmpdump), builds the release binary and
# runs every test of the workspace. Extra arguments go to `cargo test`
# (e.g. `scripts/test.sh --test rtmp -- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."

need_tools=(ffmpeg ffprobe rtmpdump)
missing=()
for tool in "${need_tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "test.sh: installing ffmpeg and rtmpdump (missing: ${missing[*]})" >&2
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    else
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg rtmpdump
fi

cargo build --release --workspace
cargo test --release --workspace "$@"
