#!/usr/bin/env bash
# Hostile input through every string the shipped configurations pass to the module ($si via
# X-Src, $ua, $fU), and a deliberate panic inside the module, with kamailio/kamailio.cfg and with
# kamailio/kamailio-kemi.cfg: Kamailio keeps serving, no Lua error storm, no SQL, bounded logging.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

sg_suite hostile
sg_mariadb_start "$dir/db"
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sample_data

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

for cfg_name in $(sg_configs); do
    mkdir -p "$dir/kam-${cfg_name%.cfg}"
    sg_write_config "$dir/kam-${cfg_name%.cfg}/sipguard.json" '"test_hooks": true'
    sg_start_config "$cfg_name" -A SIMULATE_SOURCE || continue
    LOG="$kam/kamailio.log"
    n=$(($(wc -l <"$dir/hostile.csv") - 1))
    (cd "$dir" && timeout 60 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/options.xml" -inf "$dir/hostile.csv" \
        -i 127.0.0.61 -p "$(sg_free_port)" -m "$n" -r 5 -nostdin -timeout 40 -trace_stat -stf "$dir/h.stat" >"$dir/h.out" 2>&1)
    answered=$(sg_sipp_stat "$dir/h.stat" 'SuccessfulCall(C)')
    [ "$answered" -eq "$n" ] && ok "$cfg_name: every one of the $n hostile requests got its answer (junk is no address, no user, no scanner)" \
        || ko "$cfg_name: hostile requests answered" "$answered of $n"
    sg_options "$dir" 127.0.0.62 3.2.35.60 after-hostile && ok "$cfg_name: Kamailio still serves after $n hostile requests" || ko "$cfg_name: still serving" "no answer"
    grep -qiE 'SQL syntax|You have an error in your SQL' "$LOG" "$dir/db/mysqld.log" && ko "$cfg_name: no SQL error" "found one" || ok "$cfg_name: no SQL error anywhere"
    bad=$(grep -c 'sipguard: .*not an IP address\|sipguard: .*too long\|sipguard: .*empty address' "$LOG")
    [ "$bad" -ge 1 ] && [ "$bad" -le 4 ] && ok "$cfg_name: bad input logged, rate-limited: $bad line(s) for $n requests (at most one per worker)" || ko "$cfg_name: rate limit" "$bad lines"

    # A panic inside the module: logged as an internal error, the request is still answered, and the
    # worker keeps serving.
    sg_options "$dir" 127.0.0.63 sipguard-test-panic panic && ok "$cfg_name: a request whose check panics is still answered" || ko "$cfg_name: panic request" "no answer"
    grep -q 'internal error (test hook: deliberate panic)' "$LOG" && ok "$cfg_name: the panic is logged with its message" || ko "$cfg_name: panic log" "no line"
    ok_after=0
    for i in 1 2 3 4; do sg_options "$dir" 127.0.0.63 3.2.35.60 "after-panic$i" && ok_after=$((ok_after + 1)); done
    [ "$ok_after" -eq 4 ] && ok "$cfg_name: workers keep serving after the panic" || ko "$cfg_name: after panic" "$ok_after of 4 answered"

    # A panic in the loader's round (test hook: a black_list row with that detail) is logged,
    # and the loader goes on: once the row is gone, a new entry is enforced.
    sg_sql -e "INSERT INTO black_list (ip, detail) VALUES ('192.0.2.201', 'sipguard-test-loader-panic')"
    seen=""
    for i in $(seq 1 25); do
        sg_options "$dir" 127.0.0.64 3.2.35.60 "flush$i" >/dev/null
        seen=$(grep -m1 'internal error in a refresh round (test hook: deliberate loader panic)' "$LOG") && break
        sleep 0.2
    done
    [ -n "$seen" ] && ok "$cfg_name: a panic in the loader's round is logged" || ko "$cfg_name: loader panic" "no line"
    sg_sql -e "DELETE FROM black_list WHERE detail = 'sipguard-test-loader-panic';
               INSERT INTO black_list (ip, detail) VALUES ('192.0.2.202', 'after the loader panic')"
    sg_eventually_dropped "$LOG" 127.0.0.64 192.0.2.202 && ok "$cfg_name: the loader goes on after the panic: a new black_list row is enforced" || ko "$cfg_name: after loader panic" "192.0.2.202 not dropped"
    sg_sql -e "DELETE FROM black_list WHERE ip = '192.0.2.202'"

    # A stalled loader (test hook: its round blocks for 2 x stall_after, 6 s here, as on a hung
    # disk): `sipguard-admin stats` shows it, requests log it once per worker, it ends by itself.
    stats() { "$SG_ROOT/target/release/sipguard-admin" --config "$kam/sipguard.json" stats; }
    sg_sql -e "INSERT INTO black_list (ip, detail) VALUES ('192.0.2.203', 'sipguard-test-loader-stall')"
    shown=""
    for i in $(seq 1 40); do
        shown=$(stats 2>/dev/null | grep -m1 '^loader .*stalled') && break
        sleep 0.25
    done
    [ -n "$shown" ] && ok "$cfg_name: sipguard-admin stats shows the stalled loader: $(tr -s ' ' <<<"$shown")" || ko "$cfg_name: stall in stats" "$(stats 2>&1 | tail -3)"
    for i in $(seq 1 40); do sg_options "$dir" 127.0.0.65 3.2.35.60 "stall$i" >/dev/null; done
    stall_re='sipguard: the loader thread has not completed a refresh round for'
    said=$(grep -c "$stall_re" "$LOG")
    most=$(grep "$stall_re" "$LOG" | grep -oE '^ *[0-9]+\([0-9]+\)' | sort | uniq -c | sort -rn | awk 'NR==1 {print $1}')
    [ "$said" -ge 1 ] && [ "${most:-0}" = 1 ] && ok "$cfg_name: the stall is logged by the request path, once per worker ($said workers)" \
        || ko "$cfg_name: stall logged" "$said lines, at most $most from one worker"
    sg_sql -e "DELETE FROM black_list WHERE detail = 'sipguard-test-loader-stall'"
    back=""
    for i in $(seq 1 60); do
        back=$(stats 2>/dev/null | grep -m1 '^loader ') && ! grep -q stalled <<<"$back" && break
        back=""; sleep 0.25
    done
    [ -n "$back" ] && ok "$cfg_name: the loader resumes by itself: $(tr -s ' ' <<<"$back")" || ko "$cfg_name: stall ends" "$(stats 2>&1 | grep loader)"
    sg_assert_clean_log "$cfg_name" "$LOG"
    sg_kamailio_stop "$kam"
done
sg_suite_end
