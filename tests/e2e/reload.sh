#!/usr/bin/env bash
# `kamcmd app_lua.reload` under traffic, with each shipped configuration (kamailio/kamailio.cfg
# and kamailio/kamailio-kemi.cfg): 50 reloads while clean and listed sources keep coming. The
# answers stay right (no clean request lost, no listed one answered), every worker really runs
# the script again, the module is not initialised twice (one data load per worker, no extra
# thread, config warnings logged once), the threads and MySQL connections stay the same and
# each worker's RSS grows by less than 1 MB from reload 10 to reload 50 (the first reloads
# grow Lua's heap once). Prints the figures.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

sg_suite reload
sg_mariadb_start "$dir/db"
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sample_data
sleep 3   # the country tables' UPDATE_TIME settles: no reload of freshly imported data mid-test

# Clean sources: DE addresses and the allow-listed carrier inside a listed network (lost lists
# would drop it). Listed ones: a listed network and a listed country, each address once per
# pass (ipban then holds it, so every pass needs sipguard's answer for new addresses).
{ echo SEQUENTIAL; for i in $(seq 1 200); do echo "X-Src: 2.20.$((180 + i % 2)).$i;clean;reload;"; echo "X-Src: 127.0.9.9;carrier;reload;"; done; } >"$dir/clean.csv"
{ echo SEQUENTIAL; for i in $(seq 1 250); do echo "X-Src: 127.0.9.$((i == 9 ? 254 : i));listed;reload;"; echo "X-Src: 2.20.179.$i;listed;reload;"; done; } >"$dir/listed.csv"

secs=14 reloads=50
# The UDP workers' pids (they run the routing, so they hold the module).
workers() { kamcmd -s "unix:$kam/kamailio_ctl" core.psx | awk '$1 == "PID:" {p=$2} /DSC: udp receiver/ {print p}'; }
# One line per worker: "pid threads rss_kb".
sample() {
    local p
    for p in $(workers); do
        echo "$p $(awk '/^Threads:/ {t=$2} /^VmRSS:/ {r=$2} END {print t, r}' "/proc/$p/status")"
    done
}
mysql_conns() { sg_sql -N -e "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'sipguard_ro'"; }

# The shipped Lua files, each with one line more that appends the process id to runs.log every
# time app_lua runs it (KSR.log is refused outside a SIP message): proof that the reloads really
# ran the script again in every worker.
marker="do local f = io.open('/proc/self/stat'); local pid = f:read('*n'); f:close()
f = io.open(os.getenv('SIPGUARD_CONFIG'):match('^(.*/)') .. 'runs.log', 'a'); f:write(pid, '\\n'); f:close() end"
{ cat "$SG_ROOT/lua/sipguard.lua"; echo "$marker"; } >"$dir/sipguard.lua"
{ cat "$SG_ROOT/kamailio/sipguard-kemi.lua"; echo "$marker"; } >"$dir/sipguard-kemi.lua"
export SG_LUA="$dir/sipguard.lua" SG_KEMI_LUA="$dir/sipguard-kemi.lua"

for cfg_name in $(sg_configs); do
    # A config with a password, readable by every user: warned about once per worker, at its
    # first request (KSR.log needs one), and not again at each reload.
    k="$dir/kam-${cfg_name%.cfg}"
    mkdir -p "$k" && sg_write_config "$k/sipguard.json" && chmod 644 "$k/sipguard.json" && : >"$k/runs.log"
    sg_start_config "$cfg_name" -A SIMULATE_SOURCE || continue
    log="$kam/kamailio.log" runs="$kam/runs.log"
    n=$(workers | wc -l)
    if [ "$n" -eq 0 ]; then
        ko "$cfg_name: UDP workers found" "kamcmd core.psx listed none"
        sg_kamailio_stop "$kam"
        continue
    fi
    sg_warm "$kam" "$n" || ko "$cfg_name: warm-up" "$(grep -c 'country ranges loaded' "$log") of $n workers loaded"
    before=$(sample); conns0=$(mysql_conns); loads0=$(grep -c 'loaded: ' "$log"); runs0=$(wc -l <"$runs")

    sg_sipp_load clean "$dir/clean.csv" 200 127.0.0.2 "$secs" &
    c=$!
    sg_sipp_load listed "$dir/listed.csv" 30 127.0.0.3 "$secs" &
    l=$!
    sleep 1
    rl_fail=0
    for i in $(seq 1 $reloads); do
        kamcmd -s "unix:$kam/kamailio_ctl" app_lua.reload >/dev/null 2>&1 || rl_fail=$((rl_fail + 1))
        [ "$i" = 10 ] && { sleep 0.3; at10=$(sample); }
        sleep 0.2
    done
    sleep 0.5
    after=$(sample); conns1=$(mysql_conns)
    wait $c $l
    c_ok=$(sg_sipp_stat "$dir/clean.stat" 'SuccessfulCall(C)'); c_fail=$(sg_sipp_stat "$dir/clean.stat" 'FailedCall(C)')
    l_ok=$(sg_sipp_stat "$dir/listed.stat" 'SuccessfulCall(C)'); l_fail=$(sg_sipp_stat "$dir/listed.stat" 'FailedCall(C)')

    echo "$cfg_name: clean sent $((c_ok + c_fail)), answered $c_ok; listed sent $((l_ok + l_fail)), dropped $l_fail; $reloads reloads ($rl_fail refused)"
    echo "$cfg_name: per worker (pid threads rss_kb) before / after 10 reloads / after $reloads:"
    paste -d'|' <(echo "$before") <(echo "$at10") <(echo "$after") | sed 's/^/    /'
    echo "$cfg_name: MySQL connections of sipguard_ro: $conns0 before, $conns1 after"

    [ "$rl_fail" = 0 ] && ok "$cfg_name: kamcmd app_lua.reload accepted $reloads times" || ko "$cfg_name: reloads" "$rl_fail refused"
    # A worker applies a reload at its next request, and several reloads between two requests
    # count once: every worker ran the script again at least 10 times.
    few=$(for p in $(workers); do
        r=$(grep -c -x "$p" "$runs")
        [ "$r" -ge 10 ] || echo "pid $p ran it $r times"
    done)
    ran=$(($(wc -l <"$runs") - runs0))
    [ -z "$few" ] && ok "$cfg_name: the script ran again in every worker ($ran runs during the reloads)" || ko "$cfg_name: reloads applied" "$few"
    [ "$c_fail" = 0 ] && [ "$c_ok" -gt 0 ] && ok "$cfg_name: every clean request answered through the reloads ($c_ok)" \
        || ko "$cfg_name: clean answers" "$c_fail of $((c_ok + c_fail)) not answered"
    [ "$l_ok" = 0 ] && [ "$l_fail" -gt 0 ] && ok "$cfg_name: no listed request answered through the reloads ($l_fail dropped)" \
        || ko "$cfg_name: listed answers" "$l_ok answered"
    loads=$(grep -c 'country ranges loaded' "$log"); lists=$(grep -c 'lists loaded' "$log")
    [ "$n" -gt 0 ] && [ "$loads" = "$n" ] && [ "$lists" = "$n" ] && [ "$(grep -c 'loaded: ' "$log")" = "$loads0" ] \
        && ok "$cfg_name: nothing initialised twice: $n workers, $lists list loads, $loads country loads, none during the reloads" \
        || ko "$cfg_name: initialised twice" "$n workers, $lists list loads, $loads country loads ($loads0 before the reloads)"
    flat=$(paste -d' ' <(echo "$before") <(echo "$at10") <(echo "$after") | awk '
        $2 != $5 || $5 != $8 { print "pid " $1 ": threads " $2 " -> " $5 " -> " $8; next }
        $9 - $6 > 1024 { print "pid " $1 ": RSS grew " ($9 - $6) " kB from reload 10 to the last" }')
    [ -z "$flat" ] && ok "$cfg_name: threads equal and RSS within 1 MB per worker from reload 10 to $reloads" || ko "$cfg_name: flat" "$flat"
    [ "$conns0" = "$conns1" ] && ok "$cfg_name: MySQL connections unchanged ($conns0)" || ko "$cfg_name: MySQL connections" "$conns0 -> $conns1"
    warned=$(grep -c 'WARNING: .*sipguard: .*sipguard.json is readable by every user' "$log")
    [ "$warned" = "$n" ] && ok "$cfg_name: the config warning logged once per worker ($warned), not at every reload" \
        || ko "$cfg_name: config warning" "logged $warned times for $n workers"

    # An edited config at a reload: named once per worker, not applied (the running patterns
    # still drop friendly-scanner). A broken one: reported once per worker, the config in force
    # kept, the script does not raise, so nothing is logged per request.
    burst() {   # 100 clean requests, enough for every worker to run the reloaded script
        sg_sipp_load burst "$dir/clean.csv" 100 127.0.0.2 1
        sg_sipp_stat "$dir/burst.stat" 'SuccessfulCall(C)'
    }
    python3 - "$kam/sipguard.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["refresh_secs"], c["scanner_user_agents"] = 2, ["opscanner"]
json.dump(c, open(sys.argv[1], "w"))
PY
    kamcmd -s "unix:$kam/kamailio_ctl" app_lua.reload >/dev/null 2>&1
    answered=$(burst)
    changed=$(grep -c 'refresh_secs, scanner_user_agents changed in .*: restart Kamailio to apply' "$log")
    [ "$answered" = 100 ] && [ "$changed" = "$n" ] \
        && ok "$cfg_name: an edited config at reload is named once per worker ($changed), 100 of 100 answered" \
        || ko "$cfg_name: edited config" "$changed lines for $n workers, $answered of 100 answered"
    u="scan$RANDOM"
    if ! sg_options "$dir" 127.0.0.4 3.2.35.60 "$u" friendly-scanner && grep -q "F:sip:$u@.*UA:friendly-scanner" "$log"; then
        ok "$cfg_name: the running settings stay in force (friendly-scanner still dropped, with the alert)"
    else
        ko "$cfg_name: running settings kept" "friendly-scanner not dropped by the UA check"
    fi
    echo '{"db_url": "mysql://' >"$kam/sipguard.json"
    kamcmd -s "unix:$kam/kamailio_ctl" app_lua.reload >/dev/null 2>&1
    errs0=$(grep -cE 'error from Lua|failed to load|ERROR: app_lua' "$log")
    answered=$(burst); answered2=$(burst)
    broken=$(grep -c 'keeping the config in force' "$log")
    errs=$(grep -cE 'error from Lua|failed to load|ERROR: app_lua' "$log")
    [ "$answered" = 100 ] && [ "$answered2" = 100 ] && [ "$broken" = "$n" ] && [ "$errs" = 0 ] \
        && ok "$cfg_name: a broken config at reload: reported once per worker ($broken), no Lua error, 200 of 200 answered" \
        || ko "$cfg_name: broken config" "$broken reports for $n workers, $errs error lines ($errs0 after the reload), $answered + $answered2 of 200 answered"
    sg_assert_clean_log "$cfg_name" "$log"
    sg_kamailio_stop "$kam"
done
sg_suite_end
