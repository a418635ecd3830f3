#!/usr/bin/env bash
# End to end, issue 14: bans that every node enforces. Two Kamailio nodes (the shipped
# kamailio.cfg, each with its own ports, control socket, snapshot directory and node_name) on one
# MariaDB:
#   1. a pike flood at node A is dropped by node B within the bound (20 bans: median and max);
#   2. `sipguard-admin ban remove` makes both answer again within the bound;
#   3. after both nodes restart, bans are still enforced until they end, and not after;
#   4. the allow-listed carrier is never banned;
#   5. 10,000 distinct listed sources banned within a minute beside clean traffic: rows written,
#      caps, memory per worker, answer times, 0 wrongly decided; then 100,000 bans in force;
#   6. a MariaDB primary and a replica: nodes read the replica (db_url), bans and admin write to
#      the primary; a list change reaches them; replica stopped: lists and bans stay enforced,
#      one alert; replica back: live again.
# Sources are simulated in X-Src (-A SIMULATE_SOURCE); every packet goes to 127.0.0.1.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

sg_suite bans
SG_DB_ARGS="--log-bin=primary-bin --server-id=1 --binlog-format=ROW" sg_mariadb_start "$dir/db"
PRIMARY_PORT=$SG_DB_PORT PRIMARY_SOCK=$SG_DB_SOCK
sg_schema
sg_sample_data
admin() { "$SG_ROOT/target/release/sipguard-admin" --config "$dir/kam-a/sipguard.json" --db-url "$(sg_admin_url)" "$@"; }
now() { date +%s.%N; }
since() { printf '%.2f' "$(echo "$(now) - $1" | bc -l)"; }
within_bound() { [ "$(echo "$1 <= 2.5" | bc -l)" = 1 ]; }

# start_node NAME [kamailio args]: kamailio.cfg in $dir/kam-NAME; remembers its port.
declare -A PORT
start_node() {
    local n="$1" k="$dir/kam-$1"
    shift
    mkdir -p "$k"
    [ -f "$k/sipguard.json" ] || sg_write_config "$k/sipguard.json" "\"node_name\": \"node-$n\""
    sg_kamailio_start "$k" "$SG_ROOT/kamailio/kamailio.cfg" -A SIMULATE_SOURCE "$@" || return 1
    PORT[$n]=$SG_SIP_PORT
}
at() { SG_SIP_PORT=${PORT[$1]}; }
# state NODE XSRC: "answered", "banned" (dropped with the cfg's alert for a ban), "dropped"
# (another alert line), or "silent" (no answer and no alert: ipban's fast path).
state() {
    local n="$1" xsrc="$2" user="st$RANDOM$RANDOM" d
    at "$n"
    # sipp's files in a directory of this call's own: polls overlap.
    d=$(mktemp -d "$dir/kam-$n/poll.XXXXXX")
    # From a loopback address of its own (the source that counts is X-Src): overlapping polls
    # do not compete for a local port.
    if sg_options "$d" "127.0.1.$((RANDOM % 250 + 1))" "$xsrc" "$user"; then echo answered; rm -rf "$d"; return; fi
    rm -rf "$d"
    sleep 0.05
    if grep -F "$user " "$dir/kam-$n/kamailio.log" | grep -q 'blacklisted ban!'; then echo banned
    elif grep -F "$user " "$dir/kam-$n/kamailio.log" | grep -q 'blacklisted'; then echo dropped
    else echo silent; fi
}
# until_state NODE XSRC WANT T0 [SECS]: sends one poll every 0.25 s (below pike's 8 req/s),
# without waiting for the previous one (a dropped poll waits 1.5 s for its answer), for up to
# SECS (5) s after T0; prints the seconds from T0 to the sending of the first poll that showed
# WANT. Returns 1 when none did.
until_state() {
    local out t
    out=$(mktemp "$dir/until.XXXXXX")
    while [ "$(echo "$(now) - $4 < ${5:-5}" | bc -l)" = 1 ]; do
        t=$(now)
        ( [ "$(state "$1" "$2")" = "$3" ] && echo "$t" >>"$out" ) &
        sleep 0.25
        [ -s "$out" ] && break
    done
    wait  # (in this $(…) subshell: only its polls)
    t=$(sort -n "$out" | head -1); rm -f "$out"
    [ -n "$t" ] || return 1
    printf '%.2f' "$(echo "$t - $4" | bc -l)"
}
# flood NODE XSRC: 40 OPTIONS at 400/s from XSRC, enough for pike (16 per 2 s).
flood() {
    at "$1"
    printf 'SEQUENTIAL\nX-Src: %s;flood;Linphone/5.2;\n' "$2" >"$dir/flood.csv"
    timeout 30 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/options.xml" -inf "$dir/flood.csv" \
        -i 127.0.0.51 -p "$(sg_free_port)" -m 40 -r 400 -nostdin -timeout 10 >"$dir/flood.out" 2>&1 || true
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
# both NODE1 NODE2 XSRC WANT T0: until_state on both nodes at once; prints "T1 T2" ("never" for one
# that did not get there within 5 s).
both() {
    (until_state "$1" "$3" "$4" "$5" || echo never) >"$dir/both.1" &
    local p=$! second
    second=$(until_state "$2" "$3" "$4" "$5" || echo never)
    wait $p
    echo "$(cat "$dir/both.1") $second"
}

start_node a || { echo "bans: 0 passed, 1 failed"; exit 1; }
start_node b || { echo "bans: 0 passed, 1 failed"; exit 1; }
# Every worker loaded (the first request of each waits for its first load).
for n in a b; do for i in $(seq 1 8); do state "$n" "192.0.2.$i" >/dev/null; done; done

# 1. Floods at node A, dropped by node B.
times=()
for i in $(seq 1 20); do
    src="198.18.0.$i"
    t0=$(now)
    flood a "$src" &
    fp=$!
    if t=$(until_state b "$src" banned "$t0"); then times+=("$t"); else times+=(99); fi
    wait $fp
done
med=$(printf '%s\n' "${times[@]}" | median); max=$(printf '%s\n' "${times[@]}" | sort -n | tail -1)
if within_bound "$max"; then
    ok "20 pike floods at node A are dropped by node B as bans: median ${med} s, max ${max} s from the flood's start (bound 2 s)"
else
    ko "20 floods at node A reach node B within the bound" "median ${med} s, max ${max} s: ${times[*]}"
fi
read -r nrows nsrc <<<"$(sg_sql -N -e "SELECT COUNT(*), COUNT(DISTINCT source) FROM sipguard_ban WHERE source LIKE '198.18.0.%' AND reason = 'pike flood' AND node = 'node-a'")"
workers=$(kamcmd -s "unix:$dir/kam-a/kamailio_ctl" core.psx | grep -c 'DSC: udp receiver')
[ "$nsrc" = 20 ] && [ "$nrows" -le $((20 * workers)) ] && ok "the 20 floods are in sipguard_ban as 'pike flood' by node-a: $nrows rows (at most one per worker that saw the flood: $workers workers)"     || ko "one row per flood and worker" "$nrows rows, $nsrc sources"
line=$(admin ban list | grep -F '198.18.0.5 ')
grep -q 'pike flood' <<<"$line" && grep -q node-a <<<"$line" && ok "ban list shows it: $line" || ko "ban list" "$line"
out=$(admin explain 198.18.0.5)
grep -qE '^  ban +198.18.0.5 banned until .*"pike flood", by node-a, since' <<<"$out" && grep -q 'decision: drop: 198.18.0.5 is banned' <<<"$out" \
    && ok "explain shows the ban: $(grep '^  ban' <<<"$out" | sed 's/^ *//')" || ko "explain shows the ban" "$out"

# 2. ban remove: both nodes answer again. (Node A's pike also put the flood in A's ipban, the
# post's node-local fast path, which holds until its autoexpire: 198.18.0.1 is freed on B.)
admin ban add 198.18.3.1 --for 5m --reason "to be lifted" >/dev/null
t0=$(now)
read -r ta tb <<<"$(both a b 198.18.3.1 banned "$t0")"
t0=$(now)
out=$(admin ban remove 198.18.3.1)
read -r ta tb <<<"$(both a b 198.18.3.1 answered "$t0")"
if [ "$ta" != never ] && [ "$tb" != never ] && within_bound "$ta" && within_bound "$tb"; then
    ok "ban remove: node A answers after ${ta} s, node B after ${tb} s ($out)"
else
    ko "ban remove frees both nodes within the bound" "A ${ta:-never}, B ${tb:-never}: $out"
fi
t0=$(now)
out=$(admin ban remove 198.18.0.1)
tb=$(until_state b 198.18.0.1 answered "$t0") && within_bound "$tb" && ok "a pike ban lifted: node B answers after ${tb} s (node A keeps it in its ipban until autoexpire)" \
    || ko "a pike ban lifted on node B" "${tb:-never}: $out"
admin ban remove 198.18.0.1 >/dev/null 2>&1; rc=$?
[ "$rc" = 3 ] && ok "removing it again: exit 3 (not banned)" || ko "remove again" "exit $rc"

# 3. Both nodes restart: bans are still enforced until they end, and not after.
admin ban add 198.18.1.1 --for 20 --reason "short ban" >/dev/null; t_short=$(now)
for n in a b; do sg_kamailio_stop "$dir/kam-$n"; start_node "$n" || ko "node $n restarts" "see log"; done
for n in a b; do
    for src in 198.18.0.3 198.18.1.1; do
        s=$(state "$n" "$src")
        [ "$s" = banned ] && ok "after a restart of both nodes, node $n still drops $src as banned" || ko "node $n enforces $src after the restart" "$s"
    done
done
left=$(echo "20.3 - ($(now) - $t_short)" | bc -l)
[ "$(echo "$left > 0" | bc -l)" = 1 ] && sleep "$left"
for n in a b; do
    t=$(until_state "$n" 198.18.1.1 answered "$(now)") && ok "node $n answers 198.18.1.1 once its 20 s ban has ended (after ${t} s more)" \
        || ko "node $n ends the 20 s ban" "still dropped"
done

# 4. The allow-listed carrier is never banned.
out=$(admin ban add 127.0.9.9 --for 60 2>&1); rc=$?
[ "$rc" = 2 ] && grep -q 'allow-listed' <<<"$out" && ok "ban add of the allow-listed carrier is refused: $out" || ko "carrier ban refused" "exit $rc: $out"
admin ban add 127.0.9.0/24 --for 60 --reason "the carrier's network" >/dev/null
flood a 127.0.9.9
sleep 1.5
for n in a b; do
    s=$(state "$n" 127.0.9.9)
    [ "$s" = answered ] && ok "node $n answers the carrier inside a banned network after a flood from it" || ko "node $n serves the carrier" "$s"
done
n=$(sg_sql -N -e "SELECT COUNT(*) FROM sipguard_ban WHERE source = '127.0.9.9'")
[ "$n" = 0 ] && ok "no ban row for the carrier" || ko "no ban row for the carrier" "$n rows"
admin ban remove 127.0.9.0/24 >/dev/null
# The 20 s ban has ended: purge deletes its row and nothing else.
before=$(sg_sql -N -e "SELECT COUNT(*) FROM sipguard_ban")
out=$(admin ban purge)
after=$(sg_sql -N -e "SELECT COUNT(*) FROM sipguard_ban")
left=$(sg_sql -N -e "SELECT COUNT(*) FROM sipguard_ban WHERE until_ms <= FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)")
[ "$left" = 0 ] && [ "$after" -lt "$before" ] && [ "$(admin ban list | grep -c '198.18.0.5 ')" = 1 ] \
    && ok "ban purge deletes the ended rows only ($out: $before -> $after rows; 198.18.0.5 still banned)" || ko "ban purge" "$out: $before -> $after, $left ended left"

# 5. 10,000 distinct listed sources within a minute, beside clean traffic.
sg_sql -e "INSERT INTO black_list (ip, detail) VALUES ('198.19.0.0/16', 'a botnet''s range')"
sleep 2
pids() { kamcmd -s "unix:$dir/kam-a/kamailio_ctl" core.psx | awk '/PID:/ {p=$2} /DSC: udp receiver/ {print p}'; }
rss() { local t=0 n=0 p; for p in $(pids); do t=$((t + $(awk '/^VmRSS/ {print $2}' /proc/$p/status))); n=$((n + 1)); done; echo $((t / (n > 0 ? n : 1))); }
rss0=$(rss)
{ echo SEQUENTIAL; for i in $(seq 0 9999); do echo "X-Src: 198.19.$((i / 250)).$((i % 250 + 1));bot$i;Linphone/5.2;"; done; } >"$dir/bots.csv"
{ echo SEQUENTIAL; for i in $(seq 1 250); do echo "X-Src: 3.2.35.$i;clean$i;Linphone/5.2;"; done; } >"$dir/clean.csv"
at a
rm -f "$dir"/options_*_rtt.csv
sg_sipp_load clean "$dir/clean.csv" 200 127.0.0.52 25 -trace_rtt -rtt_freq 1 &
cl=$!
sg_sipp_load bots "$dir/bots.csv" 400 127.0.0.53 25 &
bt=$!
wait $bt $cl
sleep 3
clean_ok=$(sg_sipp_stat "$dir/clean.stat" 'SuccessfulCall(C)') clean_fail=$(sg_sipp_stat "$dir/clean.stat" 'FailedCall(C)')
bots_ok=$(sg_sipp_stat "$dir/bots.stat" 'SuccessfulCall(C)') bots_sent=$(sg_sipp_stat "$dir/bots.stat" 'TotalCallCreated')
maxrtt=$(cat "$dir"/options_*_rtt.csv 2>/dev/null | awk -F';' 'NR>1 && $2 ~ /^[0-9.]+$/ {print $2}' | sort -n | tail -1)
if [ "$clean_fail" = 0 ] && [ "$bots_ok" = 0 ] && [ "$bots_sent" = 10000 ]; then
    ok "10,000 listed sources in 25 s beside 5,000 clean requests: $clean_ok clean answered, 0 of $bots_sent listed answered; clean max answer time ${maxrtt:-?} ms"
else
    ko "0 wrongly decided under 10,000 banned sources" "clean ok $clean_ok failed $clean_fail, listed answered $bots_ok of $bots_sent"
fi
read -r nrows nsrc span <<<"$(sg_sql -N -e "SELECT COUNT(*), COUNT(DISTINCT source), TIMESTAMPDIFF(MICROSECOND, MIN(created), MAX(created)) / 1e6 FROM sipguard_ban WHERE source LIKE '198.19.%'")"
peak=$(sg_sql -N -e "SELECT MAX(n) FROM (SELECT COUNT(*) n FROM sipguard_ban WHERE source LIKE '198.19.%' GROUP BY DATE_FORMAT(created, '%Y%m%d%H%i%s')) t")
stats=$("$SG_ROOT/target/release/sipguard-admin" --config "$dir/kam-a/sipguard.json" stats --json)
dropped=$(python3 -c 'import json,sys; t=json.load(sys.stdin)["total"]; print(t.get("bans_dropped",0)+t.get("ban_rows_dropped",0))' <<<"$stats")
written=$(python3 -c 'import json,sys; t=json.load(sys.stdin)["total"]; print(t.get("ban_rows_written",0))' <<<"$stats")
workers=$(pids | wc -l)
if [ "$nsrc" = 10000 ] && [ "$dropped" = 0 ] && [ "$peak" -le $((500 * workers)) ]; then
    ok "10,000 bans written ($nrows rows, $nsrc sources, over ${span} s; $written counted by the workers), peak $peak rows/s (cap 500 per worker, $workers workers), 0 dropped"
else
    ko "bans written within the caps" "rows $nrows, sources $nsrc, peak $peak/s, dropped $dropped, written $written"
fi
rss1=$(rss)
ok "RSS per worker $((rss0 / 1024)).$(((rss0 % 1024) * 10 / 1024)) MB before, $((rss1 / 1024)).$(((rss1 % 1024) * 10 / 1024)) MB after 10,000 bans ($(( (rss1 - rss0) )) kB more)"
[ $((rss1 - rss0)) -le 10240 ] || ko "memory per worker stays within the caps" "+$((rss1 - rss0)) kB"
# 100,000 bans in force (as a big botnet over all nodes would leave): memory per worker.
# (Not replicated: the replica of step 6 need not replay them.)
sg_sql -e "SET SESSION sql_log_bin = 0; INSERT INTO sipguard_ban (source, until_ms, reason, node) SELECT CONCAT('100.', (seq DIV 65536) % 64 + 64, '.', (seq DIV 256) % 256, '.', seq % 256), FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) + 600000, 'load', 'test' FROM seq_1_to_100000"
# Read at 20,000 rows a round: wait until the last one is enforced on both nodes.
last=$(until_state b 100.65.134.160 banned "$(now)" 20) && last=$(until_state a 100.65.134.160 banned "$(now)" 20)
sleep 2
rss2=$(rss)
s=$(state b 100.64.1.1)
[ "$s" = banned ] && [ -n "$last" ] && ok "100,000 bans in force: enforced (node B drops 100.64.1.1); RSS per worker $((rss2 / 1024)) MB, $(( (rss2 - rss1) / 1024 )) MB more than with 10,000" \
    || ko "100,000 bans enforced" "$s"
sg_sql -e "SET SESSION sql_log_bin = 0; DELETE FROM sipguard_ban WHERE node = 'test'"

# 6. Primary and replica.
sg_sql -e "CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-secret'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'"
SG_DB_ARGS="--server-id=2 --read-only=1" sg_mariadb_start "$dir/db-replica"
REPLICA_PORT=$SG_DB_PORT REPLICA_SOCK=$SG_DB_SOCK
# The replica starts from the primary's first binary log: everything since its start.
sg_sql -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PRIMARY_PORT, MASTER_USER='repl', MASTER_PASSWORD='repl-secret', MASTER_LOG_FILE='primary-bin.000001', MASTER_LOG_POS=4; START SLAVE"
want=$(SG_DB_SOCK=$PRIMARY_SOCK sg_sql -N -e "SELECT (SELECT COUNT(*) FROM sipguard_ban), (SELECT COUNT(*) FROM black_list)")
caught=""
for i in $(seq 1 300); do
    caught=$(sg_sql -N -e "SELECT (SELECT COUNT(*) FROM sipguard_ban), (SELECT COUNT(*) FROM black_list)" 2>/dev/null)
    [ "$caught" = "$want" ] && break
    sleep 0.2
done
lag() { SG_DB_SOCK=$REPLICA_SOCK sg_sql -e "SHOW SLAVE STATUS\G" | awk '/Seconds_Behind_Master/ {print $2}'; }
SG_DB_PORT=$PRIMARY_PORT SG_DB_SOCK=$PRIMARY_SOCK
[ "$caught" = "$want" ] && ok "the replica caught up with the primary ($(tr '\t' ' ' <<<"$caught") ban and black_list rows)" || ko "replica catches up" "$caught of $want"
for n in a b; do sg_kamailio_stop "$dir/kam-$n"; done
for n in c d; do
    mkdir -p "$dir/kam-$n"
    SG_DB_PORT=$REPLICA_PORT sg_write_config "$dir/kam-$n/sipguard.json" "\"node_name\": \"node-$n\", \"ban_db_url\": \"$(sg_ban_url)\""
    start_node "$n" || ko "node $n starts on the replica" "see log"
done
grep -q "127.0.0.1:$REPLICA_PORT" "$dir/kam-c/sipguard.json" && ok "nodes C and D read the replica (db_url on port $REPLICA_PORT), write bans to the primary" || ko "replica config" "$(cat "$dir/kam-c/sipguard.json")"
for n in c d; do for i in $(seq 1 8); do state "$n" "192.0.2.$i" >/dev/null; done; done
t0=$(now)
admin black add 198.51.100.77 --detail "listed on the primary" >/dev/null
took=$(since "$t0")
read -r tc td <<<"$(both c d 198.51.100.77 dropped "$t0")"
if [ "$tc" != never ] && [ "$td" != never ] && within_bound "$tc" && within_bound "$td"; then
    ok "a list change on the primary reaches both nodes reading the replica: ${tc} s, ${td} s after it (black add took ${took} s; replication lag $(lag) s)"
else
    ko "list change through the replica" "C $tc, D $td, lag $(lag)"
fi
t0=$(now)
flood c 198.18.2.1 &
fp=$!
td=$(until_state d 198.18.2.1 banned "$t0")
wait $fp
n=$(sg_sql -N -e "SELECT COUNT(*) FROM sipguard_ban WHERE source = '198.18.2.1' AND node = 'node-c'")
[ -n "$td" ] && [ "$n" -ge 1 ] && ok "a flood at node C is written to the primary and node D drops it through the replica after ${td} s" || ko "ban through primary and replica" "D ${td:-never}, rows $n"
# Replica stopped: last-known lists and bans stay enforced, one alert per worker.
sg_mariadb_stop "$dir/db-replica"
sleep 2
for n in c d; do
    a=$(state "$n" 198.51.100.77) b=$(state "$n" 198.18.2.1) c=$(state "$n" 3.2.35.7)
    # (silent: dropped by the node's ipban fast path, which asks sipguard first)
    [[ "$a" =~ ^(dropped|silent)$ ]] && [[ "$b" =~ ^(banned|silent)$ ]] && [ "$c" = answered ] && ok "replica down: node $n still drops the listed source and the banned one, serves a clean one" \
        || ko "node $n with the replica down" "listed $a, banned $b, clean $c"
done
workers=$(kamcmd -s "unix:$dir/kam-c/kamailio_ctl" core.psx | grep -c 'DSC: udp receiver')
alerts=$(grep -c 'database unavailable' "$dir/kam-c/kamailio.log")
[ "$alerts" -le "$workers" ] && [ "$alerts" -ge 1 ] && ok "one alert per worker of node C ($alerts for $workers workers)" || ko "one alert per worker" "$alerts for $workers"
# Replica back: live again.
SG_DB_ARGS="--server-id=2 --read-only=1" sg_mariadb_start "$dir/db-replica" "$REPLICA_PORT"
SG_DB_PORT=$PRIMARY_PORT SG_DB_SOCK=$PRIMARY_SOCK
t0=$(now)
admin black add 198.51.100.88 --detail "listed while the replica was away" >/dev/null
tc=$(until_state c 198.51.100.88 dropped "$t0" 15)
[ -n "$tc" ] && grep -q 'database reachable again' "$dir/kam-c/kamailio.log" && ok "replica back: node C live again (a list change on the primary enforced ${tc} s after it, the replica just restarted)" \
    || ko "replica back" "${tc:-never}; $(grep -c 'reachable again' "$dir/kam-c/kamailio.log") recovery lines"

for n in c d; do sg_assert_clean_log "node $n" "$dir/kam-$n/kamailio.log"; done
sg_suite_end
