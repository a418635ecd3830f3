#!/usr/bin/env bash
# End to end: real MariaDB + real Kamailio 5.6 (app_lua loading lua/sipguard.lua) + sipp.
# Sources are real loopback addresses (sipp -i 127.0.0.x, the $si path) or simulated public
# addresses carried in X-Src; no packet leaves 127.0.0.0/8.
# Prints one PASS/FAIL line per check and "e2e: N passed, M failed"; exits non-zero on failure.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

E2E_DIR=$(mktemp -d /tmp/sipguard-e2e.XXXXXX)
cleanup() {
    sg_kamailio_stop "$E2E_DIR/kam"
    sg_mariadb_stop "$E2E_DIR/db"
    [ "${SG_KEEP:-0}" = 1 ] || rm -rf "$E2E_DIR"
}
trap cleanup EXIT

passed=0 failed=0
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s: %s\n' "$1" "$2"; }

sg_build >/dev/null
sg_mariadb_start "$E2E_DIR/db"
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sql <<'SQL'
INSERT INTO black_list (ip, detail) VALUES
  ('127.0.0.5', 'listed loopback source'),
  ('127.0.1.0/24', 'listed loopback network'),
  ('203.0.113.9', 'listed IPv4'),
  ('198.51.100.0/24', 'listed IPv4 network'),
  ('2001:db8::/32', 'listed IPv6 network'),
  ('not-an-address', 'a broken row, skipped and logged');
INSERT INTO black_list_country (country, detail) VALUES ('es', 'lower case on purpose');
SQL

mkdir -p "$E2E_DIR/kam"
sg_write_config "$E2E_DIR/kam/sipguard.json"
sg_kamailio_start "$E2E_DIR/kam" "$SG_ROOT/tests/e2e/kamailio-test.cfg" || { fail "kamailio starts" "see log above"; exit 1; }
pass "kamailio starts with lua/sipguard.lua"
LOG="$E2E_DIR/kam/kamailio.log"
CTL="unix:$E2E_DIR/kam/kamailio_ctl"

send() { sg_options "$E2E_DIR" "$@"; }
log_has() { sg_wait_log "$LOG" "$1" "$2" >/dev/null; }

banned() { kamcmd -s "$CTL" htable.get ipban "$1" 2>/dev/null | grep -q 'value: 1'; }

# expect_drop NAME SRC XSRC KEY LOGREGEX: no answer, the post's alert line, ipban[KEY] set.
expect_drop() {
    local name="$1" src="$2" xsrc="$3" key="$4" re="$5" user
    user="u$RANDOM$RANDOM"
    if send "$src" "$xsrc" "$user"; then fail "$name" "answered 200, expected a drop"; return; fi
    log_has "$user" "$re" || { fail "$name" "no log line matching /$re/"; return; }
    banned "$key" || { fail "$name" "ipban=>$key not set"; return; }
    pass "$name"
}

# expect_pass NAME SRC XSRC CC: answered 200, with get_countrycode's answer CC in the log.
expect_pass() {
    local name="$1" src="$2" xsrc="$3" cc="$4" user
    user="u$RANDOM$RANDOM"
    if ! send "$src" "$xsrc" "$user"; then fail "$name" "no 200 ($(grep -m1 -iE 'failed|error' "$E2E_DIR/sipp.out"))"; return; fi
    # An unknown country leaves $avp(countryCode) unset, which xlog prints as <null>.
    log_has "SG-PASS user=$user " " cc=${cc:-<null>}\$" || { fail "$name" "no SG-PASS line with cc=${cc:-<null>}"; return; }
    pass "$name"
}

expect_drop "listed loopback source (\$si) is dropped" 127.0.0.5 "" 127.0.0.5 \
    "ALERT: <script>: Received OPTIONS from a blacklisted ip! .* \(IP:127\.0\.0\.5\)"
expect_drop "source inside a listed loopback CIDR (\$si) is dropped" 127.0.1.7 "" 127.0.1.7 \
    "blacklisted ip! .* \(IP:127\.0\.1\.7\)"
expect_pass "clean loopback source is answered, no country" 127.0.0.2 "" ""
expect_drop "listed public IPv4 is dropped" 127.0.0.3 203.0.113.9 203.0.113.9 \
    "blacklisted ip! .* \(IP:203\.0\.113\.9\)"
expect_drop "public IPv4 inside a listed CIDR is dropped" 127.0.0.3 198.51.100.77 198.51.100.77 \
    "blacklisted ip! .* \(IP:198\.51\.100\.77\)"
expect_drop "IPv6 inside a listed IPv6 network is dropped" 127.0.0.3 "2001:db8:0:1::7" "2001:db8:0:1::7" \
    "blacklisted ip! .* \(IP:2001:db8:0:1::7\)"
expect_drop "source from a listed country (ES) is dropped" 127.0.0.3 2.20.179.10 2.20.179.10 \
    "blacklisted country \(ES\)! .* \(IP:2\.20\.179\.10\)"
expect_pass "nested range: address past an inner range gets the outer country" 127.0.0.3 3.2.35.60 DE
expect_pass "nested range: address in the inner range gets the inner country" 127.0.0.3 3.2.35.44 TR
expect_pass "IPv6 source gets its country" 127.0.0.3 2a00:1450::1 IE
expect_pass "IPv4-mapped IPv6 is the IPv4 address" 127.0.0.3 "::ffff:3.2.35.60" DE
expect_pass "garbage source answers empty, request still served" 127.0.0.3 "' OR 1=1 --" ""
expect_pass "1 KB of junk as source answers empty" 127.0.0.3 "$(head -c 1000 /dev/zero | tr '\0' 'A')" ""

if grep -q 'not an IP address' "$LOG"; then pass "bad source is logged with its cause"; else fail "bad source is logged with its cause" "no 'not an IP address' line"; fi
if grep -q 'black_list id=6: "not-an-address" is not valid, row skipped' "$LOG"; then
    pass "a black_list row that does not parse is logged with its id"
else
    fail "a black_list row that does not parse is logged with its id" "no log line"
fi
if grep -qE 'error from Lua|SIGSEGV|segfault' "$LOG"; then fail "no Lua errors or crashes" "$(grep -m3 -E 'error from Lua|SIGSEGV' "$LOG")"; else pass "no Lua errors or crashes"; fi

# Connection reuse: many requests from many sources must not open a connection each.
conn_before=$(sg_sql -N -e "SHOW GLOBAL STATUS LIKE 'Connections'" | awk '{print $2}')
csv="$E2E_DIR/many.csv"
{ echo SEQUENTIAL; for i in $(seq 1 400); do echo "X-Src: 3.$((i % 200)).$((i / 200)).$((i % 250 + 1));bulk;sipguard-e2e;"; done; } >"$csv"
timeout 60 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/options.xml" -inf "$csv" -i 127.0.0.4 \
    -p "$(sg_free_port)" -m 400 -r 200 -nostdin -timeout 30 >"$E2E_DIR/sipp-bulk.out" 2>&1
bulk_rc=$?
conn_after=$(sg_sql -N -e "SHOW GLOBAL STATUS LIKE 'Connections'" | awk '{print $2}')
opened=$((conn_after - conn_before - 1))   # minus the second status query's own connection
workers=$(grep -c 'lists loaded' "$LOG")
# children=2: at most one connection per UDP worker that had not served a request before.
if [ "$bulk_rc" -eq 0 ] && [ "$opened" -le 2 ]; then
    pass "400 requests from 400 sources: answered, $opened new MySQL connections ($workers workers connected once each)"
else
    fail "connection reuse" "sipp rc=$bulk_rc, $opened new connections during 400 requests"
fi

# A broken config must stop Kamailio at start, with a message naming the field.
mkdir -p "$E2E_DIR/broken"
printf '{"db_url": "%s", "cache_size": "big"}' "$(sg_ro_url)" >"$E2E_DIR/broken/sipguard.json"
saved_port=$SG_SIP_PORT
sg_kamailio_start "$E2E_DIR/broken" "$SG_ROOT/tests/e2e/kamailio-test.cfg" >/dev/null 2>&1 || true
sleep 1   # it may bind its socket before the children load the Lua file and fail
if kill -0 "$(cat "$E2E_DIR/broken/kamailio.bgpid")" 2>/dev/null; then
    sg_kamailio_stop "$E2E_DIR/broken"
    fail "broken config stops Kamailio at start" "Kamailio is running"
elif grep -q 'field `cache_size`' "$E2E_DIR/broken/kamailio.log"; then
    pass "broken config stops Kamailio at start, naming the field"
else
    fail "broken config stops Kamailio at start" "no message naming cache_size: $(grep -m2 -i error "$E2E_DIR/broken/kamailio.log")"
fi
SG_SIP_PORT=$saved_port

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
