#!/usr/bin/env bash
# Runs tests/lua/test_sipguard.lua under plain lua5.1, lua5.4 and luajit (each against the
# module built for it) against a private MariaDB, plus the broken-config check (init must
# raise naming the field).
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

dir=$(mktemp -d /tmp/sipguard-lua.XXXXXX)
trap 'sg_mariadb_stop "$dir/db"; rm -rf "$dir"' EXIT
sg_build >/dev/null
sg_mariadb_start "$dir/db"
sg_schema
sg_load_country_csv "$SG_ROOT/tests/data/country-slice.csv"
sg_sql <<'SQL'
INSERT INTO black_list (ip, detail) VALUES ('203.0.113.9', 'a'), ('198.51.100.0/24', 'b'), ('2001:db8::/32', 'c');
INSERT INTO black_list_country (country, detail) VALUES ('ES', 'd');
INSERT INTO white_list (ip, detail) VALUES ('198.51.100.7', 'carrier');
INSERT INTO black_list_user (username, detail) VALUES ('1000', 'e');
INSERT INTO black_list_ua (pattern, detail) VALUES ('EvilDialer', 'f');
SQL
sg_write_config "$dir/sipguard.json"

# Each Lua that app_lua may be built with, against the module built for it: Debian 12's
# Kamailio 5.6 links Lua 5.1 (lua51, the default build); Kamailio 6.1+ may use Lua 5.4; some
# builds use LuaJIT.
status=0
for variant in "lua5.1 $SG_ROOT/target/release/libsipguard.so" \
               "lua5.4 $(sg_build_lua lua54)" "luajit $(sg_build_lua luajit)"; do
    read -r lua so <<<"$variant"
    echo "== $lua ($so)"
    if ! cpath=$(sg_cpath_dir "$dir/$lua" "$so"); then
        echo "FAIL $lua: the module for it did not build"; echo "lua-build: 0 passed, 1 failed"
        status=1; continue
    fi
    LUA_CPATH="$cpath" SIPGUARD_CONFIG="$dir/sipguard.json" "$lua" "$SG_ROOT/tests/lua/test_sipguard.lua" "$SG_ROOT" || status=1

    # A broken config must stop the script at load with a message naming the field.
    printf '{"db_url": "%s", "query_timeout_ms": "soon"}' "$(sg_ro_url)" >"$dir/broken.json"
    out=$(LUA_CPATH="$cpath" SIPGUARD_CONFIG="$dir/broken.json" "$lua" -e 'KSR={pv={sets=function() end}}' \
        "$SG_ROOT/lua/sipguard.lua" 2>&1)
    if [ $? -ne 0 ] && grep -q 'query_timeout_ms' <<<"$out"; then
        echo "PASS $lua: broken config stops loading, naming the field"; echo "lua-config: 1 passed, 0 failed"
    else
        echo "FAIL $lua: broken config: $out"; echo "lua-config: 0 passed, 1 failed"; status=1
    fi

    # With no logger and stderr a pipe whose reader is gone (EPIPE; SIGPIPE ignored, as in
    # Kamailio), a call that logs (bad input) still answers: before, eprintln! panicked across
    # the C boundary and the process aborted. The pipe is made broken before Lua starts.
    out=$(LUA_CPATH="$cpath" SIPGUARD_CONFIG="$dir/sipguard.json" python3 -c '
import os, signal, sys
r, w = os.pipe()
os.close(r)
os.dup2(w, 2)
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
os.execvp(sys.argv[1], sys.argv[1:])' "$lua" -e \
        'local sg = require "sipguard"; assert(sg.init()); io.write("[", sg.check_blacklist("not-an-address"), "]")')
    if [ $? -eq 0 ] && [ "$out" = "[]" ]; then
        echo "PASS $lua: stderr a broken pipe: a call that logs still answers"; echo "lua-stderr: 1 passed, 0 failed"
    else
        echo "FAIL $lua: stderr a broken pipe: '$out'"; echo "lua-stderr: 0 passed, 1 failed"; status=1
    fi
done

# Out of memory inside the module's calls (Lua 5.1, as Debian's app_lua): a host whose allocator
# fails at every point in turn. No crash, no hang, nothing owned by Rust skipped by the longjmp.
echo "== lua5.1 with a failing allocator (tests/lua/oom_host.c)"
if gcc -O1 -o "$dir/oom_host" "$SG_ROOT/tests/lua/oom_host.c" $(pkg-config --cflags --libs lua5.1); then
    printf '{"db_url": "mysql://u:p@127.0.0.1:1/db", "country": false, "stats_dir": null, "snapshot_dir": null, "log_interval_secs": 0, "log_target": "kamailio"}' >"$dir/oom.json"
    cpath=$(sg_cpath_dir "$dir/oom" "$SG_ROOT/target/release/libsipguard.so")
    LUA_CPATH="$cpath" SIPGUARD_CONFIG="$dir/oom.json" timeout 300 "$dir/oom_host" "$SG_ROOT/tests/lua/oom_setup.lua" 2>"$dir/oom.err" || status=1
else
    echo "FAIL oom_host does not build (liblua5.1-0-dev, gcc)"; echo "oom: 0 passed, 1 failed"; status=1
fi
exit $status
