#!/usr/bin/env bash
# End to end, the shipped kamailio/kamailio.cfg: scanner filter, pike + ipban, lists and
# countries, user list, allow-list, brute-force lockout and a call, against real Kamailio,
# MariaDB and sipp. One PASS/FAIL per scenario: the SIP outcome and the log line that proves it.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
. "$SG_ROOT/scripts/scenarios.sh"

sg_suite protection
sg_mariadb_start "$dir/db"
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sample_data
sg_kamailio_start "$dir/kam" "$SG_ROOT/kamailio/kamailio.cfg" -A SIMULATE_SOURCE -A WITH_DECISION_LOG \
    || { echo "FAIL kamailio/kamailio.cfg starts"; echo "protection: 0 passed, 1 failed"; exit 1; }

check() {
    local name="$1" expected="$2" observed="$3" proof="$4"
    if [ "$observed" != "$expected" ]; then
        failed=$((failed + 1)); printf 'FAIL %s: expected %s, observed %s\n' "$name" "$expected" "$observed"
    elif [ -z "$proof" ]; then
        failed=$((failed + 1)); printf 'FAIL %s: %s as expected, but no log line proves why\n' "$name" "$observed"
    else
        passed=$((passed + 1)); printf 'PASS %s: %s | %s\n' "$name" "$observed" "$proof"
    fi
}
SG_REPORT=check
sg_scenarios "$dir" "$dir/kam/kamailio.log"

if grep -qE 'error from Lua|SIGSEGV|segfault' "$dir/kam/kamailio.log"; then
    failed=$((failed + 1)); echo "FAIL no Lua errors or crashes in the log"
else
    passed=$((passed + 1)); echo "PASS no Lua errors or crashes in the log"
fi
sg_suite_end
