#!/usr/bin/env bash
# End to end, `sipguard-admin metrics` (issue 15) against the shipped kamailio/kamailio.cfg on
# real Kamailio, MariaDB and sipp:
#   - scripted traffic by decision (clean, listed address, allow-listed, listed country, scanner
#     User-Agent, listed user, banned): sipguard_decisions_total moves by exactly what was sent;
#   - the output passes `promtool check metrics` (printed, textfile and HTTP);
#   - --textfile writes sipguard.prom readable by node_exporter; --listen serves /metrics in the
#     Prometheus text format, OpenMetrics on request, 404 elsewhere;
#   - scraping /metrics every 100 ms during a 1,000 req/s run: every request answered, max
#     answer time reported beside the same run without scraping.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

sg_suite metrics
sg_mariadb_start "$dir/db"
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sample_data
ADMIN="$SG_ADMIN"

sg_start_config kamailio.cfg -A SIMULATE_SOURCE || { sg_suite_end; exit 1; }
CONF="$kam/sipguard.json"
# The module's own read-only user (db_url in the config) is all metrics needs.
metrics() { "$ADMIN" --config "$CONF" metrics "$@"; }
admin() { "$ADMIN" --config "$CONF" --db-url "$(sg_admin_url)" "$@"; }
# value FILE SERIES: the sample value of SERIES (name with labels, as printed) in FILE.
value() { awk -v s="$2" '$1 == s {print $2}' "$1"; }
decision() { value "$1" "sipguard_decisions_total{check=\"$2\",result=\"$3\"}"; }

sg_warm "$kam" 4 || ko "4 workers warm" "fewer loaded their country data"

# Banned sources (sipguard_ban), read by every worker before the traffic starts.
X=4
for i in $(seq 1 $X); do admin ban add "2.20.103.$i" --for 1h --reason metrics-test >/dev/null; done
for _ in $(seq 1 40); do
    metrics >"$dir/m0.txt" 2>"$dir/m0.err"
    [ "$(value "$dir/m0.txt" 'sipguard_bans_in_force')" = "$X" ] \
        && [ "$(value "$dir/m0.txt" 'sipguard_workers_behind{kind="bans"}')" = 0 ] \
        && [ "$(value "$dir/m0.txt" 'sipguard_workers')" = 4 ] && break
    sleep 0.25
done
if [ "$(value "$dir/m0.txt" 'sipguard_workers_behind{kind="bans"}')" = 0 ] && [ "$(value "$dir/m0.txt" 'sipguard_workers')" = 4 ] \
    && [ "$(value "$dir/m0.txt" sipguard_bans_in_force)" = "$X" ]; then
    ok "metrics: 4 live workers, all on the bans generation, $(value "$dir/m0.txt" sipguard_bans_in_force) bans in force"
else
    ko "metrics: workers and bans" "$(grep -E '^sipguard_(workers|bans)' "$dir/m0.txt" | paste -sd' ')"
fi
if out=$(promtool check metrics <"$dir/m0.txt" 2>&1); then
    ok "promtool check metrics: the printed output is clean ($(grep -c '^sipguard_' "$dir/m0.txt") series)"
else
    ko "promtool check metrics (printed)" "$out"
fi
[ "$(value "$dir/m0.txt" 'sipguard_list_entries{list="black_list"}')" = 4 ] \
    && [ "$(value "$dir/m0.txt" 'sipguard_country_ranges{family="ipv4"}')" = 8215 ] \
    && [ "$(value "$dir/m0.txt" 'sipguard_country_ranges{family="ipv6"}')" = 1822 ] \
    && [ "$(value "$dir/m0.txt" 'sipguard_db_up')" = 1 ] \
    && ok "metrics: table sizes as loaded (black_list 4, ipcountry 8215, ipcountry6 1822)" \
    || ko "metrics: table sizes" "$(grep -E '^sipguard_(list_entries|country_ranges|db_up)' "$dir/m0.txt" | paste -sd' ')"
now=$(date +%s); snaps=""
for kind in lists countries; do
    t=$(value "$dir/m0.txt" "sipguard_snapshot_timestamp_seconds{kind=\"$kind\"}")
    [ -n "$t" ] && [ $((now - ${t%.*})) -lt 300 ] && snaps="$snaps $kind:$((now - ${t%.*}))s"
done
[ "$snaps" = "${snaps/lists/}" ] || [ "$snaps" = "${snaps/countries/}" ] \
    && ko "snapshot timestamps (lists.snap, the countries node file)" "got:$snaps" \
    || ok "snapshot timestamps: written$snaps ago"
if grep -qE '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+|alice|hacker' <(grep -v '^#' "$dir/m0.txt"); then
    ko "no label carries an address or a user" "$(grep -m3 -E '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+|alice|hacker' "$dir/m0.txt")"
else
    ok "no label carries an address or a user"
fi

# Traffic by decision: one request per simulated source (a second would stop at ipban before
# any check), except the allow-listed carrier, which returns before ipban and pike.
# send NAME USER UA SOURCE...
send() {
    local name="$1" user="$2" ua="$3" s; shift 3
    { echo SEQUENTIAL; for s in "$@"; do echo "X-Src: $s;$user;$ua;"; done; } >"$dir/$name.csv"
    (cd "$dir" && timeout 60 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/options.xml" -inf "$dir/$name.csv" \
        -i 127.0.0.2 -p "$(sg_free_port)" -r 50 -m $# -nostdin -timeout 30 >"$dir/$name.out" 2>&1) || true
}
C=15 B=7 W=5 K=9 U=6 S=8
send clean alice Linphone/5.2 $(for i in $(seq 1 $C); do echo "2.20.100.$i"; done)       # NL, nothing listed
send black alice Linphone/5.2 $(for i in $(seq 10 $((9 + B))); do echo "127.0.9.$i"; done) # black_list 127.0.9.0/24
send white alice Linphone/5.2 $(for _ in $(seq 1 $W); do echo 127.0.9.9; done)            # white_list
send country alice Linphone/5.2 $(for i in $(seq 1 $K); do echo "2.20.179.$i"; done)     # ES, listed
send ua alice friendly-scanner $(for i in $(seq 1 $U); do echo "2.20.101.$i"; done)      # scanner pattern
send user hacker Linphone/5.2 $(for i in $(seq 1 $S); do echo "2.20.102.$i"; done)       # black_list_user
send banned alice Linphone/5.2 $(for i in $(seq 1 $X); do echo "2.20.103.$i"; done)      # sipguard_ban
sent=$((C + B + W + K + U + S + X))
calls() { value "$1" 'sipguard_calls_total{function="check_blacklist"}'; }
# Counters reach the stats files at each worker's next round (refresh_secs 1).
for _ in $(seq 1 40); do
    metrics >"$dir/m1.txt" 2>/dev/null
    [ $(( $(calls "$dir/m1.txt") - $(calls "$dir/m0.txt") )) -ge "$sent" ] && break
    sleep 0.25
done
sleep 1.5; metrics >"$dir/m1.txt" 2>/dev/null
delta() { echo $(( $(decision "$dir/m1.txt" "$1" "$2") - $(decision "$dir/m0.txt" "$1" "$2") )); }
want="ip/clear=$((C + K + U + S)) ip/black=$B ip/white=$W ip/nodata=0 ban/black=$X"
want="$want ua/clear=$((C + K + S)) ua/black=$U ua/nodata=0 country/clear=$((C + S)) country/black=$K country/nodata=0"
want="$want user/clear=$C user/black=$S user/nodata=0 all/clear=0 all/nodata=0"
got=""
for pair in $want; do
    key=${pair%=*}; got="$got $key=$(delta "${key%/*}" "${key#*/}")"
done
got=${got# }
[ "$got" = "$want" ] && ok "decision counters moved by what was sent ($sent requests): $got" \
    || ko "decision counters by decision" "want $want; got $got"
made=$(( $(value "$dir/m1.txt" 'sipguard_ban_requests_total{outcome="made"}') - $(value "$dir/m0.txt" 'sipguard_ban_requests_total{outcome="made"}') ))
[ "$made" = $((B + K)) ] && ok "ban requests made by the cfg: $made (listed addresses and countries)" \
    || ko "ban requests made" "want $((B + K)), got $made"

# The Grafana dashboard: every query parses as PromQL (promtool, through a rules file with
# Grafana's variables filled in) and names only metrics this exporter declares.
dash="${SG_DASHBOARD:-$SG_ROOT/contrib/grafana/sipguard-dashboard.json}"
python3 - "$dash" "$dir/m1.txt" "$dir/dash-rules.yml" >"$dir/dash.out" 2>&1 <<'PY'
import json, re, sys
exprs = [t["expr"] for p in json.load(open(sys.argv[1]))["panels"] for t in p.get("targets", [])]
declared = {l.split()[2] for l in open(sys.argv[2]) if l.startswith("# TYPE ")}
used = {n for e in exprs for n in re.findall(r"\bsipguard_[a-z_]+", e)}
missing = sorted(used - declared)
with open(sys.argv[3], "w") as f:
    f.write("groups:\n- name: dashboard\n  rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$instance", ".*")
        f.write("  - record: sipguard:dashboard:%d\n    expr: %s\n" % (i, json.dumps(e)))
print(len(exprs), "queries,", len(used), "metrics;", "not declared: " + " ".join(missing) if missing else "all declared")
sys.exit(1 if missing or not exprs else 0)
PY
rc=$?
if [ $rc -eq 0 ] && out=$(promtool check rules "$dir/dash-rules.yml" 2>&1); then
    ok "Grafana dashboard: $(cat "$dir/dash.out"), every query valid PromQL"
else
    ko "Grafana dashboard" "$(cat "$dir/dash.out") ${out:-}"
fi

# --textfile: node_exporter's textfile collector reads *.prom, replaced whole, world-readable.
mkdir -p "$dir/textfile"
if metrics --textfile "$dir/textfile" 2>"$dir/tf.err" && [ -f "$dir/textfile/sipguard.prom" ]; then
    mode=$(stat -c %a "$dir/textfile/sipguard.prom")
    left=$(find "$dir/textfile" -name '.*' -type f | wc -l)
    if out=$(promtool check metrics <"$dir/textfile/sipguard.prom" 2>&1) && [ "$mode" = 644 ] && [ "$left" = 0 ]; then
        ok "--textfile writes sipguard.prom (mode $mode, no temporary file left) and promtool accepts it"
    else
        ko "--textfile" "mode $mode, $left temporary files, promtool: $out"
    fi
else
    ko "--textfile" "$(cat "$dir/tf.err")"
fi

rm -rf "$dir/no-such-dir"
out=$(metrics --textfile "$dir/no-such-dir" 2>&1); rc=$?
[ $rc -eq 2 ] && [ ! -e "$dir/no-such-dir" ] && ok "--textfile into a missing directory: refused (exit 2), nothing created: $out" \
    || ko "--textfile into a missing directory" "exit $rc, $(ls -d "$dir/no-such-dir" 2>&1): $out"

# Which database user: the config's (read-only) one over SIPGUARD_ADMIN_DB_URL; an explicit
# --db-url over both.
bad="mysql://nobody:wrong@127.0.0.1:$SG_DB_PORT/kamailio"
env_up=$(SIPGUARD_ADMIN_DB_URL="$bad" metrics 2>/dev/null | awk '$1 == "sipguard_db_up" {print $2}')
arg_up=$("$ADMIN" --config "$CONF" --db-url "$bad" metrics 2>/dev/null | awk '$1 == "sipguard_db_up" {print $2}')
[ "$env_up" = 1 ] && [ "$arg_up" = 0 ] && ok "metrics reads with the config's db_url, not SIPGUARD_ADMIN_DB_URL; an explicit --db-url wins (db_up $env_up / $arg_up)" \
    || ko "metrics' database user" "with the environment's URL db_up=$env_up, with --db-url db_up=$arg_up"

# --listen: /metrics over HTTP.
port=$(sg_free_port)
# exec: $! is the server itself, not a subshell running the `metrics` function.
( exec "$ADMIN" --config "$CONF" metrics --listen "127.0.0.1:$port" ) >"$dir/http.out" 2>&1 &
server=$!
trap 'kill "$server" "${scraper:-}" 2>/dev/null; sg_suite_cleanup' EXIT
for _ in $(seq 1 50); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.1; done
ctype=$(curl -s -o "$dir/h.txt" -w '%{http_code} %{content_type}' "http://127.0.0.1:$port/metrics")
if [[ "$ctype" == "200 text/plain; version=0.0.4"* ]] && promtool check metrics <"$dir/h.txt" >/dev/null 2>&1 \
    && [ -n "$(decision "$dir/h.txt" ip black)" ]; then
    ok "--listen serves /metrics ($ctype) that promtool accepts"
else
    ko "--listen /metrics" "$ctype: $(head -3 "$dir/h.txt")"
fi
om=$(curl -s -H 'Accept: application/openmetrics-text; version=1.0.0' -w '%{content_type}' -o "$dir/om.txt" "http://127.0.0.1:$port/metrics")
[[ "$om" == application/openmetrics-text* ]] && [ "$(tail -1 "$dir/om.txt")" = "# EOF" ] \
    && ok "OpenMetrics when the scraper asks for it ($om, ends with # EOF)" || ko "OpenMetrics on request" "$om"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
[ "$code" = 404 ] && ok "any other path: 404" || ko "other paths" "got $code"

# Scraping during load: 1,000 req/s for 6 s from 400 clean sources (under pike's 16 per 2 s
# each), without and then with a scrape every 100 ms.
{ echo SEQUENTIAL; for i in $(seq 0 399); do echo "X-Src: 2.20.$((110 + i / 250)).$((i % 250 + 1));load;Linphone/5.2;"; done; } >"$dir/load.csv"
run_load() {   # run_load NAME: prints "answered failed max_ms"
    rm -f "$dir"/options_*_rtt.csv
    sg_sipp_load "$1" "$dir/load.csv" 1000 127.0.0.3 6 -trace_rtt -rtt_freq 1
    local okn failn max
    okn=$(sg_sipp_stat "$dir/$1.stat" 'SuccessfulCall(C)'); failn=$(sg_sipp_stat "$dir/$1.stat" 'FailedCall(C)')
    max=$(cat "$dir"/options_*_rtt.csv 2>/dev/null | awk -F';' 'NR>1 && $2 ~ /^[0-9.]+$/ {print $2}' | sort -n | tail -1)
    echo "${okn:-0} ${failn:-?} ${max:-?}"
}
read -r base_ok base_fail base_max < <(run_load quiet)
: >"$dir/scrapes"
( while :; do curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/metrics" >>"$dir/scrapes"; sleep 0.1; done ) &
scraper=$!
read -r load_ok load_fail load_max < <(run_load scraped)
kill "$scraper" 2>/dev/null
scrapes=$(grep -c '^200$' "$dir/scrapes")
figures="without scraping: $base_ok answered, $base_fail failed, max ${base_max} ms; scraped $scrapes times: $load_ok answered, $load_fail failed, max ${load_max} ms"
if [ "$base_fail" = 0 ] && [ "$load_fail" = 0 ] && [ "$load_ok" = 6000 ] && [ "$scrapes" -ge 30 ] \
    && [ "${load_max%.*}" -lt 100 ]; then
    ok "scraping every 100 ms under 1,000 req/s: $figures"
else
    ko "scraping under load" "$figures"
fi
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null

sg_assert_clean_log kamailio.cfg "$kam/kamailio.log"
sg_suite_end
