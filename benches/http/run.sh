#!/usr/bin/env bash
# Load benchmark of `cidrcast serve` on loopback with wrk (Debian: apt-get install -y wrk).
#
#   benches/http/run.sh [SECONDS=20] [CONNECTIONS=64] [WRK_THREADS=2]
#   CIDRCAST_BIN=/path/to/cidrcast benches/http/run.sh ...   # another build as the baseline
#
# Starts the release binary on a fresh embedded store (16 subdivisions, cooldown 0 so that
# released addresses are ready again at once and the run measures the prefetched path), warms it
# up for 5 s, then runs alloc_release.lua for SECONDS and prints wrk's RESULT line, plus the
# allocations that took the slow path during the measured run (from /metrics).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-20}
conns=${2:-64}
threads=${3:-2}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is not installed: apt-get install -y curl" >&2; exit 2; }
# CIDRCAST_BIN=path runs another build (e.g. an older commit's, for a baseline in the same run).
if [ -n "${CIDRCAST_BIN:-}" ]; then
  bin=$CIDRCAST_BIN
else
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin cidrcast
  bin="${CARGO_TARGET_DIR:-$root/target}/release/cidrcast"
fi

dir=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

{
  cat <<'TOML'
[settings]
cooldown_s = 0

[server]
reconcile_interval_s = 10
lead_time_s = 60

[[pool]]
name = "v4"
prefix = "10.0.0.0/8"
shard_prefix_len = 26
reserve_first = 2
reserve_last = 1
TOML
  for i in $(seq 0 15); do
    printf '\n[[subdivision]]\nname = "bench-%d"\n' "$i"
  done
} > "$dir/cidrcast.toml"

RUST_LOG=warn "$bin" --config "$dir/cidrcast.toml" --data "$dir/data" serve --listen 127.0.0.1:0 \
  > "$dir/out" 2> "$dir/err" &
pid=$!
for _ in $(seq 1 200); do
  grep -q "listening on" "$dir/out" 2>/dev/null && break
  sleep 0.05
done
url=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out" | head -1)
[ -n "$url" ] || { echo "the daemon did not start:" >&2; cat "$dir/err" >&2; exit 1; }
until curl -fsS "$url/readyz" >/dev/null 2>&1; do sleep 0.05; done

slow() {
  curl -fsS "$url/metrics" | awk '/^cidrcast_allocations_total\{.*path="slow"/ { s += $2 } END { print s + 0 }'
}
script="$root/benches/http/alloc_release.lua"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "warm-up: 5 s"
wrk -t"$threads" -c"$conns" -d5s -s "$script" "$url" | grep -E "^(RESULT|STATUS|FIRST_ERROR)"
before=$(slow)
echo "measured: ${secs} s, $conns connections, $threads wrk threads"
wrk -t"$threads" -c"$conns" -d"${secs}s" -s "$script" "$url" | grep -E "^(RESULT|STATUS|FIRST_ERROR)"
after=$(slow)
echo "slow-path allocations during the measured run: $((after - before))"
