#!/usr/bin/env bash
# Hostile input through every string the shipped cfg passes to the module ($si via X-Src, $ua,
# $fU), and a deliberate panic inside the module: Kamailio keeps serving, no Lua error storm, no
# SQL, bounded logging.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

sg_suite hostile
sg_mariadb_start "$dir/db"
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sample_data
mkdir -p "$dir/kam"
sg_write_config "$dir/kam/sipguard.json" '"test_hooks": true'
sg_kamailio_start "$dir/kam" "$SG_ROOT/kamailio/kamailio.cfg" -A SIMULATE_SOURCE || { echo "hostile: 0 passed, 1 failed"; exit 1; }
LOG="$dir/kam/kamailio.log"

# Each value goes in as source (X-Src), User-Agent and From user at once. No CR/LF/NUL (SIP
# framing cannot carry them); everything else does, including bytes that are not UTF-8.
python3 - "$dir/hostile.csv" <<'PY'
import sys
vals = ["", " ", "'", "\"", "' OR 1=1 --", "1.2.3.4'; DROP TABLE black_list; --", "010.1.1.1", "1.2.3.4:5060",
        "fe80::1%eth0", "[2001:db8::1", "99999999999999999999999", "::ffff:999.1.1.1", "1.2.3.4.5", "%s%s%n",
        "\x01\x02\x1b[31m", "\x7f\xff\xfe\xc3\x28", "é ñ ü", "A" * 1023, "9" * 1023, "2001:db8::1/32", "<null>", "$si", "${x}"]
with open(sys.argv[1], "wb") as f:
    f.write(b"SEQUENTIAL\n")
    for v in vals:
        b = v.encode("latin-1", "replace") if all(ord(c) < 256 for c in v) else v.encode()
        b = b.replace(b";", b",")
        f.write(b"X-Src: " + b + b";" + (b.replace(b" ", b"_") or b"x") + b";" + (b or b"x") + b";\n")
PY
n=$(($(wc -l <"$dir/hostile.csv") - 1))
(cd "$dir" && timeout 60 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/options.xml" -inf "$dir/hostile.csv" \
    -i 127.0.0.61 -p "$(sg_free_port)" -m "$n" -r 5 -nostdin -timeout 40 -trace_stat -stf "$dir/h.stat" >"$dir/h.out" 2>&1)
answered=$(tail -1 "$dir/h.stat" | cut -d';' -f"$(head -1 "$dir/h.stat" | tr ';' '\n' | grep -n -x 'SuccessfulCall(C)' | cut -d: -f1)")
[ "$answered" -eq "$n" ] && ok "every one of the $n hostile requests got its answer (junk is no address, no user, no scanner)" \
    || ko "hostile requests answered" "$answered of $n"
sg_options "$dir" 127.0.0.62 3.2.35.60 after-hostile && ok "Kamailio still serves after $n hostile requests" || ko "still serving" "no answer"
errs=$(grep -c 'error from Lua' "$LOG")
[ "$errs" -eq 0 ] && ok "no Lua error from any hostile value" || ko "Lua errors" "$errs lines"
grep -qiE 'SQL syntax|You have an error in your SQL' "$LOG" "$dir/db/mysqld.log" && ko "no SQL error" "found one" || ok "no SQL error anywhere"
bad=$(grep -c 'sipguard: .*not an IP address\|sipguard: .*too long\|sipguard: .*empty address' "$LOG")
[ "$bad" -ge 1 ] && [ "$bad" -le 4 ] && ok "bad input logged, rate-limited: $bad line(s) for $n requests (2 workers)" || ko "rate limit" "$bad lines"

# A panic inside the module: logged as an internal error, the request is still answered, and the
# worker keeps serving.
sg_options "$dir" 127.0.0.63 sipguard-test-panic panic && ok "a request whose check panics is still answered" || ko "panic request" "no answer"
grep -q 'internal error (test hook: deliberate panic)' "$LOG" && ok "the panic is logged with its message" || ko "panic log" "no line"
ok_after=0
for i in 1 2 3 4; do sg_options "$dir" 127.0.0.63 3.2.35.60 "after-panic$i" && ok_after=$((ok_after + 1)); done
[ "$ok_after" -eq 4 ] && ok "workers keep serving after the panic" || ko "after panic" "$ok_after of 4 answered"
grep -qE 'SIGSEGV|SIGABRT|exited by a signal' "$LOG" && ko "no worker died" "$(grep -m1 -E 'SIGSEGV|SIGABRT|signal' "$LOG")" || ok "no worker died"
sg_suite_end
