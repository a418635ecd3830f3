#!/usr/bin/env python3
"""Builds a GeoIP2-layout MMDB (country/iso_code, what Kamailio's geoip2 reads) from db-ip style
CSV files, for the N configuration of scripts/bench. Nested ranges: narrower ranges are inserted
after wider ones so they win, as MMDB readers answer."""
import csv
import ipaddress
import sys

import netaddr
from mmdb_writer import MMDBWriter

out, files = sys.argv[1], sys.argv[2:]
rows = []
for f in files:
    with open(f) as fh:
        for r in csv.reader(fh):
            if not r or r[0].startswith("#"):
                continue
            s, e = ipaddress.ip_address(r[0]), ipaddress.ip_address(r[1])
            rows.append((int(e) - int(s), s.version, r[0], r[1], r[2].upper()))
rows.sort(key=lambda r: -r[0])  # widest first, narrowest last (last insert wins)
w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
for _, ver, s, e, cc in rows:
    w.insert_network(netaddr.IPSet(netaddr.IPRange(s, e)), {"country": {"iso_code": cc}})
w.to_db_file(out)
print(f"{out}: {len(rows)} ranges")
