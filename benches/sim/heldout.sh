#!/usr/bin/env bash
# Held-out traces for the replay simulator (BENCHMARKS.md, "The adaptive policy"): traces the
# policies' settings were not tuned on, made from the shared derived series, and the same
# `simulate --sweep` on each at lead 60 s and 300 s.
#
#   A: Google 2011 job events, the users ranked 101-200 by creations (the dev trace has the top
#      100), 7 days, window 4200:605400;
#   B: Google 2011 task events, the top 100 users, 19.4 h, window 4200:70500.
#
#     cargo build --release
#     benches/sim/heldout.sh [OUT_DIR]      # default target/heldout
#
# It makes a Python venv with pandas and numpy in OUT_DIR (for ../shared/tools/to_events.py),
# writes the traces and each sweep's JSON there, and prints each sweep's Pareto front of the causal
# policies and each family's best setting at <= 1% and <= 0.1% misses. SHARED overrides the
# shared folder (default ../shared), CIDRCAST_BIN the binary.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
shared=${SHARED:-$root/../shared}
out=${1:-$root/target/heldout}
bin=${CIDRCAST_BIN:-$root/target/release/cidrcast}
[ -x "$bin" ] || { echo "no binary at $bin: run cargo build --release" >&2; exit 1; }
mkdir -p "$out"
if [ ! -x "$out/venv/bin/python" ]; then
    python3 -m venv "$out/venv"
    "$out/venv/bin/pip" install -q pandas numpy
fi
py="$out/venv/bin/python"
derived="$shared/data/derived"

if [ ! -s "$out/jobs-user-101-200.csv.gz" ]; then
    "$py" "$shared/tools/to_events.py" --dataset "$derived/google-2011-job-events" --key user \
        --top 200 -o "$out/jobs-user-top200.csv"
    # Drop the dev trace's 100 users, keeping the header and the time order.
    zcat "$shared/data/events/google-jobs-user-top100-d0-7.csv.gz" | tail -n +2 | cut -d, -f2 |
        sort -u > "$out/dev-subdivisions.txt"
    awk -F, 'NR == FNR { dev[$1] = 1; next } FNR == 1 || !($2 in dev)' \
        "$out/dev-subdivisions.txt" "$out/jobs-user-top200.csv" | gzip > "$out/jobs-user-101-200.csv.gz"
    rm "$out/jobs-user-top200.csv"
fi
if [ ! -s "$out/tasks-user-top100.csv.gz" ]; then
    "$py" "$shared/tools/to_events.py" --dataset "$derived/google-2011-task-events" --key user \
        --top 100 -o "$out/tasks-user-top100.csv.gz"
fi

for spec in "A jobs-user-101-200.csv.gz 4200:605400" "B tasks-user-top100.csv.gz 4200:70500"; do
    set -- $spec
    for lead in 60 300; do
        json="$out/sweep-$1-$lead.json"
        "$bin" simulate --sweep --events "$out/$2" --lead-time "$lead" --window "$3" --output json > "$json"
        "$py" - "$json" "$1" "$lead" <<'PY'
import json, sys
points = json.load(open(sys.argv[1]))
print(f"\n== trace {sys.argv[2]}, lead {sys.argv[3]} s: the causal policies' Pareto front")
for p in sorted(points, key=lambda p: p["mean_idle_addresses"]):
    if p["pareto"]:
        print(f"  {p['family']:12} {p['setting'][:72]:72} {100 * p['miss_rate']:8.3f}% {p['mean_idle_addresses']:9.0f}")
print("   each family's best at <= 1% / <= 0.1% misses:")
for key, bound in (("best_1pct", "1%"), ("best_01pct", "0.1%")):
    for p in points:
        if p[key]:
            print(f"  <= {bound:4} {p['family']:12} {p['setting'][:60]:60} {100 * p['miss_rate']:8.3f}% {p['mean_idle_addresses']:9.0f}")
PY
    done
done
