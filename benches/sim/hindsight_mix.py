#!/usr/bin/env python3
"""Hindsight bound of a per-subdivision choice of policy (BENCHMARKS.md, issue 4).

Runs `cidrcast simulate --per-subdivision` for a set of settings (on-demand at 7 release delays,
warm-target 1/4/16, 7 predictive settings), then chooses one setting per subdivision minimising
idle + lambda * misses, sweeping lambda, and prints the least total idle whose total misses stay
within BUDGET, with the settings chosen. The choice uses hindsight, so it is a bound, not a
policy.

    cargo build --release
    benches/sim/hindsight_mix.py EVENTS LEAD BUDGET   # e.g. ../shared/data/events/google-jobs-user-top100-d0-7.csv.gz 300 145

CIDRCAST_BIN overrides the binary (default target/release/cidrcast); the window is 4200:605400.
"""
import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CIDRCAST_BIN", os.path.join(ROOT, "target", "release", "cidrcast"))

SETTINGS = (
    [("on-demand", {"release_delay": d}) for d in [0, 300, 1800, 3600, 7200, 14400, 86400]]
    + [("warm-target", {"warm_ip_target": w}) for w in [1, 4, 16]]
    + [
        ("predictive", p)
        for p in [
            {"quantile": 0.5},
            {"quantile": 0.9},
            {"quantile": 0.9, "keep_horizon": 1800},
            {"quantile": 0.9, "keep_horizon": 3600},
            {"quantile": 0.95, "keep_horizon": 7200, "target_miss": 0.002, "gain": 0.05,
             "tick": 20, "recent": 90},
            {"quantile": 0.99, "keep_horizon": 3600, "hysteresis": 1},
            {"quantile": 0.9, "tick": 10, "recent": 180},
        ]
    ]
)


def per_subdivision(events, lead, setting):
    policy, params = setting
    args = [BIN, "simulate", "--events", events, "--policy", policy, "--lead-time", str(lead),
            "--window", "4200:605400", "--output", "json", "--per-subdivision"]
    for k, v in params.items():
        args += ["--param", f"{k}={v}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return {name: (r["misses"], r["mean_idle_addresses"])
            for name, r in json.loads(out)["per_subdivision"]}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    events, lead, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with ThreadPoolExecutor(os.cpu_count() or 1) as ex:
        runs = list(ex.map(lambda s: per_subdivision(events, lead, s), SETTINGS))
    subs = list(runs[0])

    def choose(lam):
        return {s: min(range(len(SETTINGS)), key=lambda j: runs[j][s][1] + lam * runs[j][s][0])
                for s in subs}

    best = None
    for step in range(1, 2000, 3):
        lam = step / 100
        pick = choose(lam)
        misses = sum(runs[j][s][0] for s, j in pick.items())
        idle = sum(runs[j][s][1] for s, j in pick.items())
        if misses <= budget and (best is None or idle < best[1]):
            best = (misses, idle, lam)
    if best is None:
        sys.exit(f"no mix within {budget} misses")
    misses, idle, lam = best
    print(f"lead {lead} s, at most {budget} misses: {misses} misses, {idle:.0f} mean idle "
          f"addresses (lambda {lam})")
    for j, n in Counter(choose(lam).values()).most_common():
        print(f"  {n:3d} subdivisions: {SETTINGS[j][0]} {SETTINGS[j][1]}")


if __name__ == "__main__":
    main()
