#!/usr/bin/env python3
"""Drives sipp against the bench Kamailio instances and measures, side by side in one run:
Kamailio CPU per request (all processes of the instance, from /proc), answered/failed, p50/p99
latency (sipp rtd), the highest rate answered with < 1% failures. Configurations are alternated
and repeated; medians and spread are reported. Input: a JSON file describing the instances."""
import glob
import json
import random
import os
import statistics
import subprocess
import sys
import tempfile
import time

cfg = json.load(open(sys.argv[1]))
root, run = cfg["root"], cfg["run"]
TICK = os.sysconf("SC_CLK_TCK")
rounds = cfg.get("rounds", 3)
rate, secs = cfg.get("rate", 3000), cfg.get("secs", 8)


def procs(main_pid):
    """The instance's processes: the main one and its children."""
    pids = [main_pid]
    for p in glob.glob("/proc/[0-9]*/stat"):
        try:
            f = open(p).read().split()
            if int(f[3]) == main_pid:
                pids.append(int(f[0]))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def cpu_ticks(pids):
    """CPU time of every thread of `pids`, in clock ticks, from schedstat's nanoseconds (a tick
    is 10 ms: too coarse for runs of a second of CPU)."""
    ns = 0
    for p in pids:
        for f in glob.glob(f"/proc/{p}/task/*/schedstat"):
            try:
                ns += int(open(f).read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return ns * TICK / 1e9


def rss_kb(pids):
    t = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    t += int(line.split()[1])
        except OSError:
            pass
    return t


def free_port():
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def sipp(port, csv, r, n, timeout_s):
    """Runs sipp; returns (successful, failed, [rtt ms])."""
    with tempfile.TemporaryDirectory(dir=run) as d:
        cmd = ["sipp", f"127.0.0.1:{port}", "-sf", f"{root}/benches/options-rtd.xml", "-inf", csv,
               "-i", "127.0.0.1", "-p", str(free_port()), "-r", str(r), "-m", str(n), "-nostdin",
               "-timeout", str(timeout_s), "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1"]
        subprocess.run(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout_s + 30)
        ok = fail = 0
        stat = glob.glob(f"{d}/*_.csv") or glob.glob(f"{d}/*stat*.csv") or glob.glob(f"{d}/*.csv")
        rtts = []
        for f in glob.glob(f"{d}/*_rtt.csv"):
            for line in open(f).read().splitlines()[1:]:
                parts = line.split(";")
                if len(parts) >= 2:
                    try:
                        rtts.append(float(parts[1]))
                    except ValueError:
                        pass
        for f in glob.glob(f"{d}/*.csv"):
            if f.endswith("_rtt.csv"):
                continue
            lines = open(f).read().splitlines()
            if len(lines) >= 2:
                head, last = lines[0].split(";"), lines[-1].split(";")
                col = {h: i for i, h in enumerate(head)}
                if "SuccessfulCall(C)" in col:
                    ok = int(last[col["SuccessfulCall(C)"]])
                    fail = int(last[col["FailedCall(C)"]])
        return ok, fail, rtts


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measure(inst, csv, r, s):
    pids = procs(inst["pid"])
    db0 = cpu_ticks([cfg["db_pid"]])
    c0 = cpu_ticks(pids)
    ok, fail, rtts = sipp(inst["port"], csv, r, int(r * s), int(s) + 10)
    c1 = cpu_ticks(pids)
    db1 = cpu_ticks([cfg["db_pid"]])
    us = (c1 - c0) * 1e6 / TICK / max(ok, 1)
    db_us = (db1 - db0) * 1e6 / TICK / max(ok, 1)
    return {"us": us, "db_us": db_us, "ok": ok, "fail": fail, "p50": pct(rtts, 0.5), "p99": pct(rtts, 0.99)}


results = {}
runs = cfg["runs"]  # [name, instance, csv]
insts = cfg["instances"]
for name, inst, csv in runs:  # warm-up: loads data, fills hot caches
    measure(insts[inst], csv, 1000, 2)
order = random.Random(1)  # fixed seed: the same shuffled orders every run
for rnd in range(rounds):
    # A new order each round, so no configuration always runs right after a heavy one.
    for name, inst, csv in order.sample(runs, len(runs)):
        m = measure(insts[inst], csv, rate, secs)
        results.setdefault(name, []).append(m)
        print(f"round {rnd + 1} {name:8} {m['us']:7.1f} us/req  ok={m['ok']} fail={m['fail']} p50={m['p50']:.2f} ms p99={m['p99']:.2f} ms", flush=True)

# P: the published approach (as loaded, and defragmented), each at a rate it can sustain.
ps = cfg.get("p", [])
for rnd in range(rounds):
    for p in ps:
        m = measure(insts[p["inst"]], p["csv"], p["rate"], p["secs"])
        results.setdefault(p["name"], []).append(m)
        print(f"round {rnd + 1} {p['name']:8} {m['us']:7.1f} us/req  db {m['db_us']:.0f} us/req ok={m['ok']} fail={m['fail']} p50={m['p50']:.1f} ms", flush=True)

# Where a sipguard worker's CPU goes: perf samples by shared object during one more run of each
# listed configuration. The module's own cost per request is its share times the CPU per
# request measured in that run; precise where the side-by-side ratios are noisy.
def perf_shares(name, inst, csv):
    pids = procs(inst["pid"])
    out = f"{run}/perf-{name}.data"
    rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-p", ",".join(map(str, pids)),
                            "-o", out, "--", "sleep", str(secs + 2)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    m = measure(inst, csv, rate, secs)
    rec.wait()
    rep = subprocess.run(["perf", "report", "-i", out, "--no-children", "--sort", "dso", "--stdio"],
                         capture_output=True, text=True).stdout
    shares = {}
    for line in rep.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].endswith("%"):
            shares[parts[1]] = float(parts[0][:-1])
    return m["us"], shares


perf = {}
if cfg.get("perf") and subprocess.run(["perf", "--version"], capture_output=True).returncode == 0:
    for name, inst, csv in cfg["perf"]:
        try:
            us, shares = perf_shares(name, insts[inst], csv)
        except (OSError, subprocess.SubprocessError):
            break
        if not shares:
            break
        mod = shares.get("libsipguard.so", 0.0)
        lua = shares.get("liblua5.1.so.0.0.0", 0.0)
        perf[name] = {"us": us, "module_pct": mod, "lua_pct": lua, "module_us": us * mod / 100, "lua_us": us * lua / 100}
        print(f"perf {name:8} {us:5.1f} us/req: module {mod:4.1f}% = {us * mod / 100:.2f} us, Lua VM {lua:4.1f}% = {us * lua / 100:.2f} us", flush=True)

# Highest rate answered with < 1% failures.
maxrate = {}
for name, inst, csv in cfg.get("maxrate", []):
    best = 0
    for r in cfg.get("maxrate_steps", [4000, 7000, 10000, 13000, 16000, 19000, 22000]):
        m = measure(insts[inst], csv, r, 3)
        sent = m["ok"] + m["fail"]
        if sent and m["fail"] / sent < 0.01 and m["ok"] >= 0.97 * r * 3:
            best = r
        else:
            break
    maxrate[name] = best
    print(f"max rate {name:8} {best}", flush=True)
for p in ps:
    best = 0
    for r in p["maxrate_steps"]:
        m = measure(insts[p["inst"]], p["csv"], r, 5)
        sent = m["ok"] + m["fail"]
        if sent and m["fail"] / sent < 0.01 and m["ok"] >= 0.97 * r * 5:
            best = r
        else:
            break
    maxrate[p["name"]] = best
    print(f"max rate {p['name']:8} {best}", flush=True)

rss = {k: rss_kb(procs(v["pid"])) for k, v in insts.items()}
summary = {}
names = [r[0] for r in runs] + [p["name"] for p in ps]  # table order, whatever the run order
for name, ms in ((n, results[n]) for n in names if n in results):
    us = [m["us"] for m in ms]
    summary[name] = {
        "us_median": statistics.median(us), "us_min": min(us), "us_max": max(us),
        "db_us_median": statistics.median([m["db_us"] for m in ms]),
        "p50_ms": statistics.median([m["p50"] for m in ms]), "p99_ms": statistics.median([m["p99"] for m in ms]),
        "failed": sum(m["fail"] for m in ms), "answered": sum(m["ok"] for m in ms),
        "max_rate": maxrate.get(name),
    }
json.dump({"summary": summary, "perf": perf, "rss_kb": rss, "runs": results, "rate": rate, "secs": secs, "rounds": rounds},
          open(f"{run}/results.json", "w"), indent=1)

# The table, ratios side by side from this one run.
L = summary.get("L", {}).get("us_median")
E = summary.get("E", {}).get("us_median")
N_hot = summary.get("N-hot", {}).get("us_median")
N_cold = summary.get("N-cold", {}).get("us_median")
lines = [f"Kamailio CPU per request at {rate} req/s offered ({secs} s x {rounds} rounds, alternated; median [min-max]):", "",
         "| configuration | Kamailio CPU us/req | x L | x E | x N | max rate req/s (<1% fail) | p50 ms | p99 ms | failed |",
         "|---|---|---|---|---|---|---|---|---|"]
for name, s in summary.items():
    n = N_cold if name.endswith("cold") else N_hot
    ratio = lambda base: f"{s['us_median'] / base:.2f}" if base else "-"
    extra = f" (+{s['db_us_median']:.0f} us MariaDB)" if name.startswith("P") else ""
    ms = lambda v: "<1" if v < 1 else f"{v:.0f}"  # sipp's rtd has 1 ms resolution
    lines.append(f"| {name} | {s['us_median']:.1f} [{s['us_min']:.1f}-{s['us_max']:.1f}]{extra} | {ratio(L)} | {ratio(E)} | {ratio(n)} | "
                 f"{s['max_rate'] if s['max_rate'] is not None else '-'} | {ms(s['p50_ms'])} | {ms(s['p99_ms'])} | {s['failed']} |")
if perf:
    lines.append("")
    lines.append("Inside the worker (perf, one more run each): " + "; ".join(
        f"{k}: module {v['module_us']:.2f} us/req ({v['module_pct']:.1f}%), Lua VM {v['lua_us']:.2f} us/req" for k, v in perf.items()))
lines.append("")
lines.append("Resident memory of each instance (all processes, kB): " + ", ".join(f"{k} {v}" for k, v in rss.items()))
open(f"{run}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
