#!/usr/bin/env python3
"""RSS of the UDP workers of two bench instances (the UDP receivers each Kamailio lists on its
control socket, `kamcmd core.psx`): what sipguard adds per worker over Kamailio without checks."""
import subprocess
import sys

run, base, test = sys.argv[1], sys.argv[2], sys.argv[3]


def workers(name):
    """(RSS kB, pid) of each UDP receiver of instance `name`, smallest first."""
    psx = subprocess.run(["kamcmd", "-s", f"unix:{run}/kam-{name}/kamailio_ctl", "core.psx"],
                         capture_output=True, text=True, timeout=10).stdout
    out, pid = [], None
    for line in psx.splitlines():
        line = line.strip()
        if line.startswith("PID:"):
            pid = int(line.split()[1])
        elif line.startswith("DSC: udp receiver") and pid is not None:
            rss = [int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0]
            out.append((rss, pid))
    return sorted(out)


b, t = workers(base), workers(test)
bw, tw = [r for r, _ in b], [r for r, _ in t]
print(f"RSS of the UDP workers (kB), {base}: {bw}; {test}: {tw}: "
      f"+{(sum(tw) / max(1, len(tw)) - sum(bw) / max(1, len(bw))) / 1024:.1f} MB per worker")
