#!/usr/bin/env bash
# MariaDB hangs (SIGSTOP) and then dies (SIGKILL) under steady traffic (~1000 req/s, 10% from
# listed sources): no request waits on the database, listed sources stay dropped, clean ones stay
# answered, one alert per transition, and after MariaDB restarts the workers reconnect on their
# own and pick up a change made while they were cut off. Prints the counts.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

sg_suite outage
sg_mariadb_start "$dir/db"
port=$SG_DB_PORT
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sql -e "INSERT INTO black_list (ip, detail) VALUES ('198.51.100.0/24', 'listed'); INSERT INTO black_list_country (country, detail) VALUES ('ES', 'listed')"
mkdir -p "$dir/kam"
sg_write_config "$dir/kam/sipguard.json"
sg_kamailio_start "$dir/kam" "$SG_ROOT/tests/e2e/kamailio-test.cfg" || { echo "outage: 0 passed, 1 failed"; exit 1; }
LOG="$dir/kam/kamailio.log"

# Sources: clean ones (DE, US…) and listed ones (a listed network, a listed country).
{ echo SEQUENTIAL; for i in $(seq 1 200); do echo "X-Src: 3.$((i % 250)).$((i / 250 + 1)).$((i % 200 + 1));clean;outage;"; done; } >"$dir/clean.csv"
{ echo SEQUENTIAL; for i in $(seq 1 50); do echo "X-Src: 198.51.100.$i;listed;outage;"; echo "X-Src: 2.20.179.$i;listed;outage;"; done; } >"$dir/listed.csv"
for s in 3.1.1.1 198.51.100.1 2.20.179.1; do sg_options "$dir" 127.0.0.2 "$s" warm >/dev/null || true; done
sleep 1

secs=16
sg_sipp_load clean "$dir/clean.csv" 900 127.0.0.2 "$secs" -trace_rtt -rtt_freq 1 &
c=$!
sg_sipp_load listed "$dir/listed.csv" 100 127.0.0.3 "$secs" -trace_rtt -rtt_freq 1 &
l=$!
dbpid=$(cat "$dir/db/mysqld.bgpid")
sleep 3; kill -STOP "$dbpid"; echo "t=3s  MariaDB stopped (SIGSTOP)"
sleep 3; kill -CONT "$dbpid"; echo "t=6s  MariaDB continued"
sleep 2; kill -9 "$dbpid"; echo "t=8s  MariaDB killed (SIGKILL)"
sleep 3
sg_mariadb_start "$dir/db" "$port" >/dev/null 2>&1; echo "t=11s MariaDB restarted"
sg_sql -e "INSERT INTO black_list (ip, detail) VALUES ('203.0.113.0/24', 'added while the workers were cut off')"
wait $c $l

c_ok=$(sg_sipp_stat "$dir/clean.stat" 'SuccessfulCall(C)'); c_fail=$(sg_sipp_stat "$dir/clean.stat" 'FailedCall(C)')
l_ok=$(sg_sipp_stat "$dir/listed.stat" 'SuccessfulCall(C)'); l_fail=$(sg_sipp_stat "$dir/listed.stat" 'FailedCall(C)')
echo "clean:  sent $((c_ok + c_fail)), answered $c_ok, not answered $c_fail"
echo "listed: sent $((l_ok + l_fail)), dropped $l_fail, wrongly answered $l_ok"
# Answer times of the clean requests (sipp's rtd, 1 ms resolution) across the whole outage.
read -r p50 p99 max < <(cat "$dir"/options_*_rtt.csv 2>/dev/null | awk -F';' 'NR>1 && $2 ~ /^[0-9.]+$/ {print $2}' | sort -n \
    | awk '{a[NR]=$1} END {if (NR == 0) {print "nan nan nan"} else {print a[int(NR*0.5)+1], a[int(NR*0.99)], a[NR]}}')
echo "clean answer time during the run: p50 ${p50} ms, p99 ${p99} ms, max ${max} ms (deadline 500 ms)"
[ "$max" != nan ] && [ "${max%.*}" -lt 500 ] && ok "no request waited on the database: max answer time ${max} ms < the 500 ms deadline" \
    || ko "answer time" "max ${max} ms"
[ "$l_ok" = 0 ] && ok "listed sources stayed dropped through the outage ($l_fail dropped, 0 answered)" || ko "listed sources" "$l_ok answered"
[ "$c_fail" -le $(( (c_ok + c_fail) / 200 )) ] && ok "clean sources stayed answered ($c_ok of $((c_ok + c_fail)))" \
    || ko "clean sources" "$c_fail of $((c_ok + c_fail)) not answered"
down=$(grep -c 'database unavailable' "$LOG"); back=$(grep -c 'database reachable again' "$LOG")
[ "$down" -ge 1 ] && [ "$down" -le 4 ] && [ "$back" -ge 1 ] && [ "$back" -le 4 ] \
    && ok "alerts once per transition: $down 'unavailable', $back 'reachable again' (2 workers, 2 outages)" \
    || ko "alerts per transition" "$down unavailable, $back back"
sg_eventually_dropped "$LOG" 127.0.0.4 203.0.113.7 && ok "after the restart, the row added meanwhile is enforced" || ko "reconnect" "203.0.113.7 not dropped"
# Kamailio starting while MariaDB is down enforces the last snapshot, refuses a corrupt one, and
# switches to live data when MariaDB is back.
sg_kamailio_stop "$dir/kam"
sg_mariadb_stop "$dir/db"
restart_kamailio() { sg_kamailio_stop "$dir/kam"; mv "$LOG" "$LOG.$1"; sg_kamailio_start "$dir/kam" "$SG_ROOT/tests/e2e/kamailio-test.cfg"; }
restart_kamailio 1
if ! sg_options "$dir" 127.0.0.2 198.51.100.9 snap1 && grep -q 'blacklisted ip! snap1' "$LOG"; then
    ok "started with MariaDB down: a listed source is dropped from the snapshot"
else
    ko "start with DB down" "198.51.100.9 not dropped"
fi
sg_options "$dir" 127.0.0.2 3.2.35.60 snap2 && sg_wait_log "$LOG" "SG-PASS user=snap2 " "cc=DE$" >/dev/null \
    && ok "started with MariaDB down: countries come from the snapshot (3.2.35.60 is DE)" || ko "country snapshot" "no cc=DE"
grep -q 'database unavailable at start: enforcing the lists saved in' "$LOG" && ok "the log says the snapshot is in force" || ko "snapshot log" "no line"
f="$dir/kam/snapshot/lists.snap"
head -c $(($(wc -c <"$f") / 2)) "$f" >"$f.half" && mv "$f.half" "$f"
restart_kamailio 2
sg_options "$dir" 127.0.0.2 198.51.100.9 snap3 || true
sleep 0.5
grep -q 'no usable list snapshot (.*lists.snap: truncated' "$LOG" && ok "a truncated snapshot is refused with the reason" || ko "corrupt snapshot" "$(grep -m1 snapshot "$LOG")"
sg_mariadb_start "$dir/db" "$port" >/dev/null 2>&1
sg_eventually_dropped "$LOG" 127.0.0.4 198.51.100.9 && ok "MariaDB back: live data enforced again without a restart" || ko "back to live" "not dropped"
# A quiet node: no request at all while MariaDB dies. The workers' loader threads write the
# alert themselves (here to Kamailio's stderr, as it runs with -E), within 2 s, not at the
# next request.
sleep 2
before=$(grep -c 'database unavailable (' "$LOG")
t0=$(date +%s%N)
kill -9 "$(cat "$dir/db/mysqld.bgpid")"
waited=""
for _ in $(seq 1 40); do
    if [ "$(grep -c 'database unavailable (' "$LOG")" -gt "$before" ]; then
        waited=$(( ($(date +%s%N) - t0) / 1000000 )); break
    fi
    sleep 0.05
done
[ -n "$waited" ] && [ "$waited" -le 2000 ] && ok "quiet node: the outage alert is in the log ${waited} ms after MariaDB died, with no request" \
    || ko "quiet node alert" "no 'database unavailable' line within 2 s without traffic"

sg_suite_end
