# shellcheck shell=bash
# The protection scenarios, played against a Kamailio started from one of the shipped
# configurations (kamailio/kamailio.cfg, or kamailio/kamailio-kemi.cfg: the same protection in
# KEMI Lua) with -A SIMULATE_SOURCE -A WITH_DECISION_LOG over sg_sample_data. Both log the same
# lines, so the same proofs apply. Shared by scripts/demo (prints a table) and
# tests/e2e/protection.sh (asserts): each scenario calls
#   $SG_REPORT "scenario" "expected" "observed" "proof"
# where proof is the Kamailio log line (or kamcmd answer) that shows why; empty when missing.
# Needs: SG_SIP_PORT, SG_REPORT; arguments: a work directory for sipp's files, and the
# directory sg_kamailio_start ran that Kamailio in (its log and control socket).

sg_scenarios() {
    local dir="$1" log="$2/kamailio.log" ctl="unix:$2/kamailio_ctl"
    local out proof u
    # First matching line for NEEDLE and REGEX, without Kamailio's prefix.
    line() { sg_wait_log "$log" "$1" "$2" | sed -E 's/^.*(ALERT|NOTICE|INFO): <script>: //'; }
    dropped() { if sg_options "$dir" "$@"; then echo answered; else echo dropped; fi; }
    banned() { kamcmd -s "$ctl" htable.get ipban "$1" 2>/dev/null | grep -q 'value: 1' && echo "+ipban"; }

    out=$(sg_register "$dir" 127.0.0.11 alice alice-secret)
    $SG_REPORT "good user registers (401, then 200)" 200 "$out" "$(line 'user=alice src=127.0.0.11' 'pass REGISTER')"

    out=$(dropped 127.0.0.12 "" probe friendly-scanner)
    $SG_REPORT "scanner User-Agent friendly-scanner" dropped "$out" "$(line 'IP:127.0.0.12' 'Attack attempt!')"

    out=$(dropped 127.0.0.13 "" probe "SIPVicious/0.3.4")
    $SG_REPORT "scanner User-Agent SIPVicious/0.3.4" dropped "$out" "$(line 'IP:127.0.0.13' 'Attack attempt!')"

    out=$(dropped 127.0.0.14 "" probe "EvilDialer 2.0")
    $SG_REPORT "User-Agent from black_list_ua (EvilDialer)" dropped "$out" "$(line 'IP:127.0.0.14' 'Attack attempt!')"

    out="$(sg_register "$dir" 127.0.0.21 bob wrong-1),$(sg_register "$dir" 127.0.0.21 bob wrong-2),$(sg_register "$dir" 127.0.0.21 bob wrong-3)"
    $SG_REPORT "brute force: 3 wrong passwords for bob" "401,401,401" "$out" "$(line 'user:bob' 'Auth failed 3 times')"

    out=$(sg_register "$dir" 127.0.0.22 bob bob-secret)
    $SG_REPORT "bob locked out: right password, no answer" none "$out" "$(line 'username bob' 'REGISTER blocked')"

    # The lockout ends auth.bantime after the last failure (set to 1 s at run time here).
    kamcmd -s "$ctl" cfg.set_now_int auth bantime 1 >/dev/null
    sleep 2
    out=$(sg_register "$dir" 127.0.0.23 bob bob-secret)
    kamcmd -s "$ctl" cfg.set_now_int auth bantime 300 >/dev/null
    $SG_REPORT "bob after auth.bantime: right password, 200" 200 "$out" "$(line 'user=bob src=127.0.0.23' 'pass REGISTER')"

    out=$(dropped 127.0.0.66 "" probe)$(banned 127.0.0.66)
    $SG_REPORT "listed address 127.0.0.66" dropped+ipban "$out" "$(line 'IP:127.0.0.66' 'blacklisted ip!')"

    out=$(dropped 127.0.9.7 "" probe)$(banned 127.0.9.7)
    $SG_REPORT "address in listed network 127.0.9.0/24" dropped+ipban "$out" "$(line 'IP:127.0.9.7' 'blacklisted ip!')"

    out=$(dropped 127.0.9.9 "" carrier)
    $SG_REPORT "allow-listed carrier 127.0.9.9 in that network" answered "$out" "$(line 'src=127.0.9.9' 'trusted OPTIONS')"

    out=$(dropped 127.0.0.31 203.0.113.9 probe)$(banned 203.0.113.9)
    $SG_REPORT "listed public address 203.0.113.9" dropped+ipban "$out" "$(line 'IP:203.0.113.9' 'blacklisted ip!')"

    out=$(dropped 127.0.0.31 2001:db8:bad::5 probe)
    $SG_REPORT "IPv6 2001:db8:bad::5 in a listed /48" dropped "$out" "$(line 'IP:2001:db8:bad::5' 'blacklisted ip!')"

    out=$(dropped 127.0.0.31 2.20.179.10 probe)$(banned 2.20.179.10)
    $SG_REPORT "source in a listed country (2.20.179.10)" dropped+ipban "$out" "$(line 'IP:2.20.179.10' 'blacklisted country \(ES\)')"

    u="u$RANDOM"
    out=$(dropped 127.0.0.31 3.2.35.60 "$u")
    $SG_REPORT "source in an unlisted country (3.2.35.60)" answered "$out" "$(line "user=$u" 'cc=DE')"

    out=$(dropped 127.0.0.32 "" hacker)
    $SG_REPORT "listed user name 'hacker'" dropped "$out" "$(line 'hacker' 'blacklisted user!')"

    sg_flood "$dir" 127.0.0.77 60 100
    out=$(dropped 127.0.0.77 "" probe)$(banned 127.0.0.77)
    $SG_REPORT "flood: 60 requests in 0.6 s from 127.0.0.77" dropped+ipban "$out" "$(line '127.0.0.77' 'pike blocking')"

    printf 'SEQUENTIAL\nstray;\n' >"$dir/bye.csv"
    if timeout 20 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/indialog.xml" -inf "$dir/bye.csv" \
        -i 127.0.0.43 -p "$(sg_free_port)" -m 1 -nostdin -timeout 6 >"$dir/bye.out" 2>&1; then out=404; else out="no 404"; fi
    $SG_REPORT "BYE in an unknown dialog (no Route)" 404 "$out" "$(line 'user=stray src=127.0.0.43' 'pass BYE')"

    if sg_call "$dir" 127.0.0.41 alice alice-secret carol 127.0.0.42 "$(sg_free_port)"; then out="call ok"; else out="call failed"; fi
    $SG_REPORT "alice calls registered carol (INVITE/BYE)" "call ok" "$out" "$(line 'user=alice src=127.0.0.41' 'pass INVITE')"
}
