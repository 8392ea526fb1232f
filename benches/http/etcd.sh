#!/usr/bin/env bash
# Load benchmark of `cidrcast serve` on etcd with wrk: DAEMONS daemons sharing one etcd member
# on loopback (Debian: etcd-server, wrk), each loaded by its own wrk with alloc_release.lua.
#
#   benches/http/etcd.sh [DAEMONS=1] [SECONDS=15] [CONNECTIONS per daemon=16] [WRK_THREADS=1]
#
# Builds the release binary with `--features etcd`, starts etcd (raised txn limits, data in a
# temporary directory) and the daemons (16 subdivisions, or 16 per daemon with ZONES=1; cooldown
# 0), warms up 5 s, then runs the
# wrk instances at once and prints each RESULT line (non-2xx answers, e.g. 503 after conflicts,
# are counted in `errors`). Compare with benches/http/run.sh (the embedded store) in the same run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
daemons=${1:-1}
secs=${2:-15}
conns=${3:-16}
threads=${4:-1}
for c in wrk curl etcd; do
  command -v $c >/dev/null || { echo "$c is not installed (apt-get install -y wrk curl etcd-server)" >&2; exit 2; }
done
cargo build --release --quiet --features etcd --manifest-path "$root/Cargo.toml" --bin cidrcast
bin="${CARGO_TARGET_DIR:-$root/target}/release/cidrcast"

# ZONES=1: each daemon's clients use 16 subdivisions of their own (a daemon per zone), instead of
# all daemons sharing the same 16.
subs=16
step=0
if [ -n "${ZONES:-}" ]; then subs=$((16 * daemons)); step=16; fi
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $dir" >&2 || rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(free_port); pport=$(free_port)
etcd --name b1 --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "b1=http://127.0.0.1:$pport" --max-txn-ops 131072 --max-request-bytes 33554432 \
  > "$dir/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$cport/health" >/dev/null 2>&1 && break
  sleep 0.1
done

{
  cat <<TOML
[settings]
cooldown_s = 0

[store]
kind = "etcd"
endpoints = ["http://127.0.0.1:$cport"]
prefix = "/bench/"

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
  for i in $(seq 0 $((subs - 1))); do
    printf '\n[[subdivision]]\nname = "bench-%d"\n' "$i"
  done
} > "$dir/cidrcast.toml"

urls=()
for d in $(seq 1 "$daemons"); do
  RUST_LOG=${BENCH_LOG:-warn} "$bin" --config "$dir/cidrcast.toml" --data "$dir/data$d" serve --listen 127.0.0.1:0 \
    > "$dir/out$d" 2> "$dir/err$d" &
  pids+=($!)
  for _ in $(seq 1 200); do
    grep -q "listening on" "$dir/out$d" 2>/dev/null && break
    sleep 0.05
  done
  url=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/out$d" | head -1)
  [ -n "$url" ] || { echo "daemon $d did not start:" >&2; cat "$dir/err$d" >&2; exit 1; }
  until curl -fsS "$url/readyz" >/dev/null 2>&1; do sleep 0.05; done
  urls+=("$url")
done

script="${BENCH_SCRIPT:-$root/benches/http/alloc_release.lua}"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "etcd $(etcd --version | head -1 | awk '{print $3}'), $daemons daemon(s), $conns connections each"
echo "warm-up: 5 s"
n=0
for u in "${urls[@]}"; do
  n=$((n + 1))
  BENCH_SUB_OFFSET=$((step * (n - 1))) BENCH_RUN="warm$n-" wrk -t"$threads" -c"$conns" -d5s -s "$script" "$u" > /dev/null &
done
wait $(jobs -p | tail -n "$daemons") 2>/dev/null || true
sleep 1
echo "measured: ${secs} s"
proposals() { curl -fsS "http://127.0.0.1:$cport/metrics" | awk '/^etcd_server_proposals_committed_total/ {print $2}'; }
p0=$(proposals)
n=0
for u in "${urls[@]}"; do
  n=$((n + 1))
  BENCH_SUB_OFFSET=$((step * (n - 1))) BENCH_RUN="d$n-" wrk -t"$threads" -c"$conns" -d"${secs}s" -s "$script" "$u" | grep -E "^(RESULT|STATUS|FIRST_ERROR)" > "$dir/result$n" &
done
for j in $(jobs -p); do
  case " ${pids[*]} " in *" $j "*) ;; *) wait "$j" ;; esac
done
p1=$(proposals)
for i in $(seq 1 "$daemons"); do sed "s/^/daemon $i: /" "$dir/result$i"; done
# Every etcd write (a commit's transaction, an election lease renewal) is one raft proposal.
grep -h RESULT "$dir"/result* | awk -v p0="$p0" -v p1="$p1" -v secs="$secs" '
  { for (i = 1; i <= NF; i++) if ($i ~ /^requests=/) { split($i, kv, "="); total += kv[2] } }
  END { n = p1 - p0; printf "etcd: %.0f proposals/s, %.1f requests per proposal\n", n / secs, total / n }'

[ -n "${KEEP:-}" ] && for u in "${urls[@]}"; do echo "$u $(curl -s "$u/metrics" | grep "^cidrcast_leader")"; done
