#!/usr/bin/env bash
# End to end, the shipped configurations: kamailio/kamailio.cfg (native routing) and
# kamailio/kamailio-kemi.cfg (KEMI Lua routing, kamailio/sipguard-kemi.lua): scanner filter,
# pike + ipban, lists and countries, user list, allow-list, brute-force lockout and a call,
# against real Kamailio, MariaDB and sipp. One PASS/FAIL per scenario and configuration: the SIP
# outcome and the log line that proves it.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$SG_ROOT/scripts/scenarios.sh"

sg_suite protection
sg_mariadb_start "$dir/db"
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sample_data

check() {
    local name="$cfg_name: $1" expected="$2" observed="$3" proof="$4"
    if [ "$observed" != "$expected" ]; then
        failed=$((failed + 1)); printf 'FAIL %s: expected %s, observed %s\n' "$name" "$expected" "$observed"
    elif [ -z "$proof" ]; then
        failed=$((failed + 1)); printf 'FAIL %s: %s as expected, but no log line proves why\n' "$name" "$observed"
    else
        passed=$((passed + 1)); printf 'PASS %s: %s | %s\n' "$name" "$observed" "$proof"
    fi
}
SG_REPORT=check

# Each configuration gets its own Kamailio (fresh htables, pike and registrations) on the same
# database, without the bans the previous one wrote; the first is stopped before the second starts.
for cfg_name in $(sg_configs); do
    sg_sql -e "DELETE FROM sipguard_ban"
    sg_start_config "$cfg_name" -A SIMULATE_SOURCE -A WITH_DECISION_LOG || continue
    sg_scenarios "$dir" "$kam"
    # The cfg's bans reach sipguard_ban (every node), with the post's ipban time, and only those
    # (a flood spread over the workers may be written once by each).
    want="127.0.0.21 wrong password 3 times 1,127.0.0.66 listed address 1,127.0.0.77 pike flood 1,127.0.9.7 listed address 1,2.20.179.10 listed country ES 1,2001:db8:bad::5 listed address 1,203.0.113.9 listed address 1"
    for _ in $(seq 1 25); do
        bans=$(sg_sql -N -e "SELECT DISTINCT source, reason, until_ms - UNIX_TIMESTAMP(created) * 1000 BETWEEN 299000 AND 300500 FROM sipguard_ban ORDER BY source" | tr '\t' ' ' | paste -sd, -)
        [ "$bans" = "$want" ] && break
        sleep 0.2
    done
    [ "$bans" = "$want" ] && ok "$cfg_name: bans written to sipguard_ban for 300 s: $bans" || ko "$cfg_name: the cfg's bans" "got: $bans"
    sg_assert_clean_log "$cfg_name" "$kam/kamailio.log"
    sg_kamailio_stop "$kam"
done
sg_suite_end
