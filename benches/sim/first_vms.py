#!/usr/bin/env python3
"""Misses no policy avoids without a shard waiting in a subdivision before its first VM
(BENCHMARKS.md, issue 4).

A subdivision whose first VM comes inside the evaluation window finds nothing ready unless a
shard was claimed for it before: its VMs created within one lead time of the first wait for the
shard claimed at the first. This prints, per such subdivision, when it opens and how many VMs
those are, their sum (a floor on the misses of a policy that holds nothing before a subdivision's
first VM), and what holding one shard of SHARD addresses in each until its first VM costs in mean
idle addresses over the window. Standard library only.

    benches/sim/first_vms.py EVENTS LEAD [WINDOW_START WINDOW_END [SHARD]]
    # e.g. ../shared/data/events/google-jobs-user-top100-d0-7.csv.gz 300 4200 605400 64
"""
import csv
import gzip
import sys


def main():
    if len(sys.argv) not in (3, 5, 6):
        sys.exit(__doc__)
    path, lead = sys.argv[1], float(sys.argv[2])
    start, end = (float(sys.argv[3]), float(sys.argv[4])) if len(sys.argv) >= 5 else (None, None)
    shard = int(sys.argv[5]) if len(sys.argv) == 6 else 64
    creates = {}
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
        for row in csv.DictReader(f):
            if row["event"] == "create":
                creates.setdefault(row["subdivision"], []).append(float(row["time_s"]))
    first_time = min(ts[0] for ts in creates.values())
    start = first_time if start is None else start
    end = max(ts[-1] for ts in creates.values()) if end is None else end
    floor, idle = 0, 0.0
    for sub, ts in creates.items():
        opens = ts[0]
        if not start <= opens < end:
            continue
        waiting = sum(1 for t in ts if t < opens + lead)
        floor += waiting
        idle += shard * (opens - start) / (end - start)
        print(f"{sub[:16]:16}  opens at {opens:>10.1f} s  {waiting:4d} VMs within {lead:g} s  "
              f"{len(ts):6d} in all")
    print(f"{floor} misses without a shard before the first VM; one shard of {shard} in each "
          f"until then: {idle:.0f} mean idle addresses")


if __name__ == "__main__":
    main()
