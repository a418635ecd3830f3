#!/usr/bin/env python3
"""Bench data: 10k black_list rows (addresses and networks, IPv4 and IPv6), the same rows for
Kamailio's permissions `address` table (N), and source lists for sipp: hot (300 sources that
repeat) and cold (100k distinct, 80% IPv4 / 20% IPv6). Sources are drawn inside real country
ranges so lookups hit real data; about 3% are listed. Deterministic (fixed seed)."""
import csv
import ipaddress
import random
import sys

v4_csv, v6_csv, out = sys.argv[1], sys.argv[2], sys.argv[3]
rnd = random.Random(20261125)


def ranges(path):
    rows = []
    with open(path) as f:
        for r in csv.reader(f):
            if r and not r[0].startswith("#"):
                rows.append((int(ipaddress.ip_address(r[0])), int(ipaddress.ip_address(r[1]))))
    return rows


r4, r6 = ranges(v4_csv), ranges(v6_csv)


def pick(rows, v6):
    s, e = rows[rnd.randrange(len(rows))]
    n = rnd.randint(s, e)
    return ipaddress.IPv6Address(n) if v6 else ipaddress.IPv4Address(n)


black = []  # (value for black_list, ip for address table, mask)
for _ in range(5000):
    a = pick(r4, False)
    black.append((str(a), str(a), 32))
for _ in range(4000):
    plen = rnd.choice([16, 20, 22, 24, 24, 24])
    net = ipaddress.ip_network(f"{pick(r4, False)}/{plen}", strict=False)
    black.append((str(net), str(net.network_address), plen))
for _ in range(1000):
    net = ipaddress.ip_network(f"{pick(r6, True)}/48", strict=False)
    black.append((str(net), str(net.network_address), 48))

with open(f"{out}/lists.sql", "w") as f:
    f.write("DELETE FROM black_list; DELETE FROM address;\n")
    for i in range(0, len(black), 1000):
        chunk = black[i:i + 1000]
        f.write("INSERT INTO black_list (ip, detail) VALUES " + ",".join(f"('{v}','bench')" for v, _, _ in chunk) + ";\n")
        f.write("INSERT INTO address (grp, ip_addr, mask, port) VALUES " + ",".join(f"(1,'{ip}',{m},0)" for _, ip, m in chunk) + ";\n")
    f.write("DELETE FROM black_list_country; INSERT INTO black_list_country (country, detail) VALUES ('KP','bench'),('ES','bench'),('RU','bench');\n")


def sources(n):
    out = []
    for _ in range(n):
        if rnd.random() < 0.03:
            v, ip, m = black[rnd.randrange(len(black))]
            out.append(ip if m in (32, 128) else str(ipaddress.ip_network(v)[1]))
        else:
            out.append(str(pick(r6, True) if rnd.random() < 0.2 else pick(r4, False)))
    return out


hot = sources(300)
with open(f"{out}/hot.csv", "w") as f:
    f.write("SEQUENTIAL\n" + "".join(f"{s};\n" for s in hot))
cold = list(dict.fromkeys(sources(104000)))[:100000]
with open(f"{out}/cold.csv", "w") as f:
    f.write("SEQUENTIAL\n" + "".join(f"{s};\n" for s in cold))
print(f"{len(black)} list rows, {len(hot)} hot sources, {len(cold)} cold sources")
