#!/usr/bin/env python3
"""RSS of the UDP workers of two bench instances (the two largest children of each main
process): what sipguard adds per worker over Kamailio without checks."""
import glob
import sys

run, base, test = sys.argv[1], sys.argv[2], sys.argv[3]
workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2


def children(name):
    pid = int(open(f"{run}/kam-{name}/kamailio.bgpid").read())
    out = []
    for p in glob.glob("/proc/[0-9]*/stat"):
        try:
            f = open(p).read().rsplit(")", 1)[1].split()
            if int(f[1]) == pid:
                rss = [int(l.split()[1]) for l in open(p.replace("stat", "status")) if l.startswith("VmRSS:")][0]
                out.append((rss, int(p.split("/")[2])))
        except (OSError, ValueError, IndexError):
            pass
    return sorted(out)


b, t = children(base), children(test)
bw, tw = [r for r, _ in b[-workers:]], [r for r, _ in t[-workers:]]
print(f"RSS per process (kB), {base}: {[r for r, _ in b]}; {test}: {[r for r, _ in t]}")
print(f"RSS of the {workers} UDP workers: {base} {bw} kB, {test} {tw} kB: +{(sum(tw) - sum(bw)) / workers / 1024:.1f} MB per worker")
