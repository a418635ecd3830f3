#!/usr/bin/env python3
"""Cache misses per country lookup, the worker's own heap copy (before the node file) against
the node's mapped file (now), from cachegrind's simulated caches (this VM gives perf no
hardware counters). examples/cache_lookups runs at two lookup counts; the difference per extra
lookup leaves start-up out. Cachegrind simulates one process's D1 and last-level caches: this
compares the data layouts, not 16 workers competing for one cache.
    cache_misses.py EXAMPLE NODE_FILE RUN_DIR   -> one line for results.md"""
import subprocess
import sys

example, node_file, run = sys.argv[1], sys.argv[2], sys.argv[3]
SMALL, LARGE = 200_000, 400_000


def misses(mode, n, ll):
    """(D1 read misses, last-level read misses) of one run; `ll` sets the last-level cache."""
    out = f"{run}/cachegrind.{mode}.{n}"
    subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=yes", f"--cachegrind-out-file={out}", *ll,
                    example, mode, node_file, str(n)], check=True, capture_output=True, timeout=600)
    cols, summary = None, None
    for line in open(out):
        if line.startswith("events:"):
            cols = line.split()[1:]
        elif line.startswith("summary:"):
            summary = [int(v) for v in line.split()[1:]]
    row = dict(zip(cols, summary))
    return row["D1mr"], row["DLmr"]


# This host's caches, and a 2 MiB last level: the share of a 32 MiB L3 each of 16 busy workers gets.
parts = []
for label, ll in (("this host's caches", []), ("2 MiB last level", ["--LL=2097152,16,64"])):
    per = {}
    for mode in ("heap", "mapped"):
        (a1, al), (b1, bl) = misses(mode, SMALL, ll), misses(mode, LARGE, ll)
        per[mode] = ((b1 - a1) / (LARGE - SMALL), (bl - al) / (LARGE - SMALL))
    parts.append(f"{label}: heap copy per worker {per['heap'][0]:.2f} / {per['heap'][1]:.2f}, "
                 f"mapped node file {per['mapped'][0]:.2f} / {per['mapped'][1]:.2f}")
print("Cache misses per country lookup (cachegrind's simulated D1 / last-level read misses, random "
      "sources, 1 in 4 IPv6; one process, so it compares layouts, not workers sharing a cache): "
      + "; ".join(parts))
