# shellcheck shell=bash
# Shared helpers for scripts/setup, scripts/test, scripts/demo and the end-to-end tests:
# install packages, build, start and stop a private MariaDB and Kamailio on loopback.
# Source it; every function is prefixed sg_. Nothing here touches system services.

SG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SG_PACKAGES=(kamailio kamailio-lua-modules kamailio-mysql-modules
    mariadb-server mariadb-client sip-tester lua5.1 lua5.4 luajit iproute2 procps ca-certificates bc
    liblua5.1-0-dev gcc pkg-config curl prometheus lintian man-db)
SG_COUNTRY_PKG="@ip-location-db/geo-whois-asn-country"
# SG_INSTALLED=1: the suites run against the files the Debian package installed (tests/package.sh):
# the module from Lua's default cpath (no LUA_CPATH), the cfgs, Lua files and schema from
# /usr/share/sipguard, /usr/bin/sipguard-admin. Otherwise everything comes from this checkout.
if [ "${SG_INSTALLED:-0}" = 1 ]; then
    SG_CFG_DIR=/usr/share/sipguard/kamailio
    SG_SCHEMA=/usr/share/sipguard/sql/schema.sql
    SG_ADMIN=/usr/bin/sipguard-admin
else
    SG_CFG_DIR="$SG_ROOT/kamailio"
    SG_SCHEMA="$SG_ROOT/kamailio/sql/schema.sql"
    SG_ADMIN="$SG_ROOT/target/release/sipguard-admin"
fi

sg_log() { printf '[sipguard] %s\n' "$*" >&2; }
sg_die() { printf '[sipguard] error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages the project runs against, when any is missing.
sg_install_packages() {
    local missing=()
    for p in "${SG_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    sg_log "installing: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds the module; prints the path of the built .so.
sg_build() {
    (cd "$SG_ROOT" && cargo build --release --quiet) || sg_die "cargo build failed"
    echo "$SG_ROOT/target/release/libsipguard.so"
}

# sg_build_lua FEATURE: the module for another Lua (lua54, luajit) in its own target directory
# (target/FEATURE), so the default lua51 build is not rebuilt; prints the path of the .so.
sg_build_lua() {
    (cd "$SG_ROOT" && CARGO_TARGET_DIR="$SG_ROOT/target/$1" cargo build --release --quiet --lib \
        --no-default-features --features "$1") || sg_die "cargo build --features $1 failed"
    echo "$SG_ROOT/target/$1/release/libsipguard.so"
}

# sg_cpath_dir DIR [SO]: makes DIR usable as a Lua cpath entry: DIR/sipguard.so -> SO (default:
# the lua51 build); fails when SO is given but is no file (a build that failed printed nothing).
sg_cpath_dir() {
    local dir="$1" so="$SG_ROOT/target/release/libsipguard.so"
    if [ $# -ge 2 ]; then
        so="$2"
        [ -f "$so" ] || { sg_log "no module at '$so'"; return 1; }
    fi
    mkdir -p "$dir"
    ln -sf "$so" "$dir/sipguard.so"
    echo "$dir/?.so;;"
}

# A free TCP/UDP port on 127.0.0.1, picked by the kernel.
sg_free_port() {   # free for UDP and TCP: Kamailio listens on UDP, MariaDB and sipp's -t on TCP
    python3 -c '
import socket
for _ in range(100):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); port = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
else:
    raise SystemExit("sg_free_port: no port free for both UDP and TCP in 100 tries")
'
}

# sg_mariadb_start DIR [PORT]: a private MariaDB in DIR (datadir, socket, log), loopback only,
# on PORT or a free one (restarting on the same datadir and port keeps data and users).
# SG_DB_ARGS: more mariadbd options (e.g. --log-bin --server-id=1 for a replication primary).
# Sets SG_DB_PORT and SG_DB_SOCK. Creates database `kamailio`, the read-only user
# `sipguard_ro` (SELECT only, as the post's connect_ro) and the admin user `sipguard_admin`.
sg_mariadb_start() {
    local dir="$1"
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
    SG_DB_PORT=${2:-$(sg_free_port)}
    SG_DB_SOCK="$dir/mysql.sock"
    local user; user=$(id -un)
    if [ ! -d "$dir/data/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
            --auth-root-authentication-method=socket >"$dir/install.log" 2>&1 \
            || { cat "$dir/install.log" >&2; sg_die "mariadb-install-db failed"; }
    fi
    mariadbd --no-defaults --datadir="$dir/data" --socket="$SG_DB_SOCK" --port="$SG_DB_PORT" \
        --bind-address=127.0.0.1 --user="$user" --pid-file="$dir/mysqld.pid" \
        --log-error="$dir/mysqld.log" --skip-name-resolve --local-infile=1 \
        --innodb-buffer-pool-size=256M --max-connections=500 ${SG_DB_ARGS:-} >"$dir/mysqld.out" 2>&1 &
    echo $! >"$dir/mysqld.bgpid"
    local i
    for i in $(seq 1 100); do
        mariadb-admin --no-defaults --socket="$SG_DB_SOCK" -uroot ping >/dev/null 2>&1 && break
        sleep 0.2
    done
    mariadb-admin --no-defaults --socket="$SG_DB_SOCK" -uroot ping >/dev/null 2>&1 \
        || { tail -20 "$dir/mysqld.log" >&2; sg_die "MariaDB did not start"; }
    SG_DB_NAME=mysql sg_sql <<'SQL'
CREATE DATABASE IF NOT EXISTS kamailio;
CREATE USER IF NOT EXISTS 'sipguard_ro'@'127.0.0.1' IDENTIFIED BY 'ro-secret';
CREATE USER IF NOT EXISTS 'sipguard_admin'@'127.0.0.1' IDENTIFIED BY 'admin-secret';
GRANT SELECT ON kamailio.* TO 'sipguard_ro'@'127.0.0.1';
GRANT ALL ON *.* TO 'sipguard_admin'@'127.0.0.1' WITH GRANT OPTION;
SQL
    sg_log "MariaDB up on 127.0.0.1:$SG_DB_PORT (datadir $dir/data)"
}

# sg_stop PIDFILE TENTHS: SIGTERM the process in PIDFILE, wait up to TENTHS/10 s, then SIGKILL.
# Returns 1 when it had to SIGKILL.
sg_stop() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 "$2"); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    return 1
}

# sg_mariadb_stop DIR
sg_mariadb_stop() { sg_stop "$1/mysqld.bgpid" 100 || true; }

# Runs SQL from stdin (or -e "...") as root on the private MariaDB, in database kamailio
# (SG_DB_NAME=other to change); extra arguments go to the client.
sg_sql() {
    mariadb --no-defaults --socket="$SG_DB_SOCK" -uroot --local-infile=1 --database="${SG_DB_NAME:-kamailio}" "$@"
}

# Kamailio's own tables for auth_db (subscriber, version), from Debian's kamailio-mysql-modules.
sg_kamailio_tables() {
    local sql=/usr/share/kamailio/mysql
    sg_sql -e "CREATE TABLE IF NOT EXISTS version (id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
        table_name VARCHAR(32) NOT NULL, table_version INT UNSIGNED DEFAULT 0 NOT NULL,
        CONSTRAINT table_name_idx UNIQUE (table_name))"
    [ -n "$(sg_sql -N -e "SHOW TABLES LIKE 'subscriber'")" ] || sg_sql <"$sql/auth_db-create.sql"
}

# URLs the module and the tests use.
sg_ro_url() { echo "mysql://sipguard_ro:ro-secret@127.0.0.1:$SG_DB_PORT/kamailio"; }
sg_admin_url() { echo "mysql://sipguard_admin:admin-secret@127.0.0.1:$SG_DB_PORT/kamailio"; }
# The module's ban writer (ban_db_url): INSERT on sipguard_ban only, as the README's GRANT.
sg_ban_url() { echo "mysql://sipguard_ban:ban-secret@127.0.0.1:$SG_DB_PORT/kamailio"; }

# Loads kamailio/sql/schema.sql into database kamailio, and grants the ban writer its one table.
sg_schema() {
    sg_sql <"$SG_SCHEMA" && sg_sql <<'SQL'
CREATE USER IF NOT EXISTS 'sipguard_ban'@'127.0.0.1' IDENTIFIED BY 'ban-secret';
GRANT INSERT ON kamailio.sipguard_ban TO 'sipguard_ban'@'127.0.0.1';
SQL
}

# sg_load_country_csv FILE...: db-ip style `start,end,CC` rows (lines starting with # ignored)
# into ipcountry (IPv4, with the post's INET_ATON columns) and ipcountry6 (IPv6, INET6_ATON).
sg_load_country_csv() {
    local f
    for f in "$@"; do
        sg_sql <<SQL
CREATE TEMPORARY TABLE sg_stage (ipstart varchar(64), ipend varchar(64), countrycode varchar(8));
LOAD DATA LOCAL INFILE '$f' INTO TABLE sg_stage FIELDS TERMINATED BY ',' (ipstart, ipend, countrycode);
DELETE FROM sg_stage WHERE ipstart LIKE '#%';
INSERT INTO ipcountry (ipstart, ipend, countrycode, ipfrom, ipto)
  SELECT ipstart, ipend, countrycode, INET_ATON(ipstart), INET_ATON(ipend) FROM sg_stage WHERE ipstart NOT LIKE '%:%';
INSERT INTO ipcountry6 (ipstart, ipend, countrycode, ipfrom, ipto)
  SELECT ipstart, ipend, countrycode, INET6_ATON(ipstart), INET6_ATON(ipend) FROM sg_stage WHERE ipstart LIKE '%:%';
SQL
    done
}

# sg_npm_fetch PACKAGE DIR: the files of an npm package, unpacked once into .run/data/DIR
# (the registry's tarball, no install scripts run). Prints the directory; fails when the
# registry cannot be reached and nothing was fetched before.
sg_npm_fetch() {
    local pkg="$1" out="$SG_ROOT/.run/data/$2"
    if [ ! -f "$out/package.json" ]; then
        local tmp; tmp=$(mktemp -d "$SG_ROOT/.run/npm.XXXXXX") || return 1
        if (cd "$tmp" && timeout 300 npm pack --silent "$pkg" >/dev/null 2>&1); then
            mkdir -p "$out" && tar xzf "$tmp"/*.tgz -C "$out" --strip-components=1
            sg_log "data: $pkg from the npm registry"
        fi
        rm -rf "$tmp"
    fi
    [ -f "$out/package.json" ] && echo "$out"
}

# Prints the paths of the full country CSVs (IPv4, IPv6), fetching the npm package once into
# .run/data; prints the shipped slice instead when the registry cannot be reached.
sg_country_files() {
    mkdir -p "$SG_ROOT/.run/data"
    local dir
    if ! dir=$(sg_npm_fetch "$SG_COUNTRY_PKG" package); then
        sg_log "country data: npm registry unreachable, using the shipped slice"
        echo "$SG_ROOT/tests/data/country-slice.csv"
        return 0
    fi
    echo "$dir/geo-whois-asn-country-ipv4.csv"
    echo "$dir/geo-whois-asn-country-ipv6.csv"
}

# sg_geo_test_data: fetches the real files the country-format tests compare (GeoLite2 country
# data as db-ip style CSV and as .mmdb from ip-location-db, and MaxMind's own GeoLite2-Country
# .mmdb layout) and prints the SIPGUARD_TEST_GEO_* assignments for them; prints nothing for a
# package the registry would not give.
sg_geo_test_data() {
    local d
    d=$(sg_npm_fetch @ip-location-db/geolite2-country geolite2-country) \
        && echo "SIPGUARD_TEST_GEO_CSV=$d/geolite2-country-ipv4.csv:$d/geolite2-country-ipv6.csv"
    d=$(sg_npm_fetch @ip-location-db/geolite2-country-mmdb geolite2-country-mmdb) \
        && echo "SIPGUARD_TEST_GEO_MMDB=$d/geolite2-country.mmdb"
    d=$(sg_npm_fetch geolite2-country maxmind-geolite2-country) \
        && echo "SIPGUARD_TEST_GEO_MAXMIND_MMDB=$d/GeoLite2-Country.mmdb.gz"
}

# sg_python_mmdb: Python's mmdb-writer (PyPI), which scripts/make_mmdb.py uses to write
# GeoIP2-layout .mmdb files for the N benchmark and the format tests.
sg_python_mmdb() {
    python3 -c 'import mmdb_writer, netaddr' 2>/dev/null || python3 -m pip install -q mmdb-writer netaddr
}

# sg_write_config FILE [extra JSON members]: a module config pointing at the private MariaDB.
sg_write_config() {
    local file="$1" extra="${2:-}"
    cat >"$file" <<JSON
{
  "db_url": "$(sg_ro_url)",
  "query_timeout_ms": 500,
  "refresh_secs": 1,
  "stats_dir": "$(cd "$(dirname "$file")" && pwd)/stats"$(case "$extra" in *'"snapshot_dir"'*) ;; *) printf ',\n  "snapshot_dir": "%s/snapshot"' "$(cd "$(dirname "$file")" && pwd)" ;; esac)$(case "$extra" in *'"ban_db_url"'*) ;; *) printf ',\n  "ban_db_url": "%s"' "$(sg_ban_url)" ;; esac)${extra:+,
  $extra}
}
JSON
    chmod 600 "$file"
}

# sg_kamailio_start DIR CFG [kamailio args...]: starts Kamailio in the foreground mode (-DD)
# on udp:127.0.0.1:<free port>, logging to DIR/kamailio.log, with the cfg defines SIPGUARD_LUA,
# SIPGUARD_KEMI_LUA, CTL_SOCKET and DBURL pointing into this checkout and the private MariaDB, and the module
# config DIR/sipguard.json (written with defaults when absent). Extra arguments go to kamailio
# (e.g. -A SIMULATE_SOURCE). SG_LUA / SG_KEMI_LUA replace the Lua files. Waits until it
# listens. Sets SG_SIP_PORT.
sg_kamailio_start() {
    local dir="$1" cfg="$2"
    shift 2
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
    SG_SIP_PORT=$(sg_free_port)
    local envs=() lua=()
    [ -f "$dir/sipguard.json" ] || sg_write_config "$dir/sipguard.json"
    if [ "${SG_INSTALLED:-0}" = 1 ]; then
        # The package's files: the module on Lua's default cpath, the cfgs' default SIPGUARD_LUA
        # and SIPGUARD_KEMI_LUA (/usr/share/sipguard).
        envs=(-u LUA_CPATH)
        [ -n "${SG_LUA:-}" ] && lua+=(-A "SIPGUARD_LUA=\"$SG_LUA\"")
        [ -n "${SG_KEMI_LUA:-}" ] && lua+=(-A "SIPGUARD_KEMI_LUA=\"$SG_KEMI_LUA\"")
    else
        envs=(LUA_CPATH="$(sg_cpath_dir "$dir/lua")")
        lua+=(-A "SIPGUARD_LUA=\"${SG_LUA:-$SG_ROOT/lua/sipguard.lua}\"")
        lua+=(-A "SIPGUARD_KEMI_LUA=\"${SG_KEMI_LUA:-$SG_ROOT/kamailio/sipguard-kemi.lua}\"")
    fi
    env "${envs[@]}" SIPGUARD_CONFIG="$dir/sipguard.json" \
        kamailio -DD -E -f "$cfg" -l "udp:127.0.0.1:$SG_SIP_PORT" -P "$dir/kamailio.pid" -Y "$dir" \
        "${lua[@]}" \
        -A "CTL_SOCKET=\"unix:$dir/kamailio_ctl\"" \
        -A "DBURL=\"$(sg_ro_url)\"" "$@" >"$dir/kamailio.log" 2>&1 &
    echo $! >"$dir/kamailio.bgpid"
    local i
    for i in $(seq 1 100); do
        if ! kill -0 "$(cat "$dir/kamailio.bgpid")" 2>/dev/null; then
            tail -30 "$dir/kamailio.log" >&2
            return 1
        fi
        ss -lun 2>/dev/null | grep -q "127.0.0.1:$SG_SIP_PORT " && return 0
        sleep 0.1
    done
    tail -30 "$dir/kamailio.log" >&2
    return 1
}

# sg_kamailio_stop DIR
sg_kamailio_stop() {
    # Killed hard, its children may be left behind: find them by this instance's own paths.
    sg_stop "$1/kamailio.bgpid" 50 || pkill -9 -f "kamailio_ctl.*$1|$1/kamailio.pid" 2>/dev/null || true
}

# Sample lists and subscribers for the demo and the protection tests. Each scenario has its
# own loopback source so a ban from one cannot leak into another.
sg_sample_data() {
    sg_kamailio_tables
    sg_sql <<'SQL'
INSERT INTO black_list (ip, detail) VALUES
  ('127.0.0.66', 'a scanner seen on this box'),
  ('127.0.9.0/24', 'a whole abusive network'),
  ('203.0.113.9', 'brute force, reported'),
  ('2001:db8:bad::/48', 'IPv6 network of a hosting abuser');
INSERT INTO white_list (ip, detail) VALUES ('127.0.9.9', 'our carrier, inside the listed network');
INSERT INTO black_list_country (country, detail) VALUES ('ES', 'no customers in Spain'), ('kp', 'never');
INSERT INTO black_list_user (username, detail) VALUES ('hacker', 'a name only attackers use');
INSERT INTO black_list_ua (pattern, detail) VALUES ('EvilDialer', 'seen in our logs');
INSERT INTO subscriber (username, domain, password) VALUES
  ('alice', '127.0.0.1', 'alice-secret'), ('bob', '127.0.0.1', 'bob-secret'), ('carol', '127.0.0.1', 'carol-secret');
SQL
}

# sg_register DIR SRC USER PASSWORD [UA] [LOCAL_PORT]: REGISTER with digest auth from SRC.
# Prints the outcome: 200 (registered), 401 (challenged again: wrong password) or none (no answer).
sg_register() {
    local dir="$1" src="$2" user="$3" pass="$4" ua="${5:-Linphone/5.2}" lport="${6:-$(sg_free_port)}"
    printf 'SEQUENTIAL\n%s;[authentication username=%s password=%s];%s;\n' "$user" "$user" "$pass" "$ua" >"$dir/reg.csv"
    if timeout 20 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/register.xml" -inf "$dir/reg.csv" \
        -i "$src" -p "$lport" -m 1 -nostdin -timeout 6 >"$dir/sipp.out" 2>&1; then
        echo 200
    elif grep -q "received 'SIP/2.0 401" "$dir/sipp.out"; then
        echo 401
    else
        echo none
    fi
}

# sg_call DIR SRC CALLER PASSWORD CALLEE CALLEE_SRC CALLEE_PORT: CALLEE registers its contact
# CALLEE_SRC:CALLEE_PORT, a sipp UAS answers there, CALLER calls it through Kamailio.
# Returns 0 when the call was answered and hung up cleanly.
sg_call() {
    local dir="$1" src="$2" caller="$3" pass="$4" callee="$5" csrc="$6" cport="$7"
    [ "$(sg_register "$dir" "$csrc" "$callee" "$callee-secret" Linphone/5.2 "$cport")" = 200 ] || return 1
    timeout 30 sipp -sf "$SG_ROOT/tests/e2e/uas.xml" -i "$csrc" -p "$cport" -m 1 -nostdin -timeout 15 >"$dir/uas.out" 2>&1 &
    local uas=$!
    sleep 0.5
    printf 'SEQUENTIAL\n%s;[authentication username=%s password=%s];%s;\n' "$caller" "$caller" "$pass" "$callee" >"$dir/call.csv"
    timeout 20 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/call.xml" -inf "$dir/call.csv" \
        -i "$src" -p "$(sg_free_port)" -m 1 -nostdin -timeout 10 >"$dir/call.out" 2>&1
    local rc=$?
    wait "$uas" || rc=1
    return $rc
}

# sg_flood DIR SRC COUNT RATE: COUNT OPTIONS at RATE per second from SRC (answers not expected).
sg_flood() {
    local dir="$1" src="$2" count="$3" rate="$4"
    printf 'SEQUENTIAL\n;flood;Linphone/5.2;\n' >"$dir/flood.csv"
    timeout 60 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/options.xml" -inf "$dir/flood.csv" \
        -i "$src" -p "$(sg_free_port)" -m "$count" -r "$rate" -nostdin -timeout 20 >"$dir/flood.out" 2>&1 || true
}

# sg_options DIR SRC XSRC USER [UA]: one OPTIONS to the Kamailio started by sg_kamailio_start,
# from loopback address SRC, with "X-Src: XSRC" (the simulated source) when XSRC is not empty.
# Returns 0 when a 200 came back; sipp's output is left in DIR/sipp.out.
sg_options() {
    local dir="$1" src="$2" xsrc="$3" user="$4" ua="${5:-sipguard-test}" hdr=""
    [ -n "$xsrc" ] && hdr="X-Src: $xsrc"
    printf 'SEQUENTIAL\n%s;%s;%s;\n' "$hdr" "$user" "$ua" >"$dir/opt.csv"
    timeout 20 sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/options.xml" -inf "$dir/opt.csv" \
        -i "$src" -p "$(sg_free_port)" -m 1 -nostdin -timeout 5 >"$dir/sipp.out" 2>&1
}

# sg_wait_log LOG NEEDLE REGEX: waits up to 2 s for a line of LOG containing NEEDLE (fixed
# string) and matching REGEX; prints it.
sg_wait_log() {
    local log="$1" needle="$2" re="$3" line
    for _ in $(seq 1 20); do
        line=$(grep -F -- "$needle" "$log" | grep -E -m1 -- "$re") && { echo "$line"; return 0; }
        sleep 0.1
    done
    return 1
}

# Test-suite scaffolding shared by tests/e2e/*.sh and tests/lua/run.sh.
# sg_suite NAME: a private directory $dir (removed on exit unless SG_KEEP=1), a trap that stops
# the Kamailio and MariaDB started under it, the module built, and the PASS/FAIL counters used
# by ok/ko and sg_suite_end.
sg_suite() {
    SG_SUITE="$1"
    dir=$(mktemp -d "/tmp/sipguard-$1.XXXXXX")
    passed=0 failed=0
    trap sg_suite_cleanup EXIT
    sg_build >/dev/null
}
sg_suite_cleanup() {
    pkill -f "sipp .*$dir/" 2>/dev/null   # load left running by an interrupted suite
    kill -CONT "$(cat "$dir/db/mysqld.bgpid" 2>/dev/null)" 2>/dev/null
    local k
    for k in "$dir"/kam "$dir"/kam-*; do [ -d "$k" ] && sg_kamailio_stop "$k"; done
    local d
    for d in "$dir"/db "$dir"/db-*; do [ -d "$d" ] && sg_mariadb_stop "$d"; done
    [ "${SG_KEEP:-0}" = 1 ] || rm -rf "$dir"
}
# The shipped configurations the end-to-end suites run against, kamailio/<name>; SG_CONFIGS
# chooses (e.g. SG_CONFIGS=kamailio-kemi.cfg).
sg_configs() { echo "${SG_CONFIGS:-kamailio.cfg kamailio-kemi.cfg}"; }
# sg_start_config NAME [kamailio args...]: starts kamailio/NAME in $dir/kam-NAME (a sipguard.json
# written there first is kept) and sets $kam; counts a failure and returns 1 when it does not start.
sg_start_config() {
    local name="$1"; shift
    kam="$dir/kam-${name%.cfg}"
    sg_kamailio_start "$kam" "$SG_CFG_DIR/$name" "$@" && return 0
    ko "kamailio/$name starts" "see the log above"
    return 1
}
# sg_warm KAMDIR N: OPTIONS from a clean simulated source until N workers of the Kamailio in
# KAMDIR have logged their country load (each worker loads at its first request; with the full
# data that takes longer than a first request waits), at most 40 requests. Returns 1 if not.
sg_warm() {
    local i
    for i in $(seq 1 40); do
        sg_options "$dir" 127.0.0.2 "3.2.35.$i" warm >/dev/null
        [ "$(grep -c 'country ranges loaded' "$1/kamailio.log")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# sg_assert_clean_log NAME LOG: passes when LOG has no Lua error (a script that raised, a KSR
# call refused) and no crash. (app_lua's own "p1 too long" for a lua_run argument over 1 KB is
# Kamailio refusing the call before any Lua runs: not counted.)
sg_assert_clean_log() {
    local re='error from Lua|error executing|invalid Lua environment|SIGSEGV|SIGABRT|segfault|exited by a signal'
    if grep -qE "$re" "$2"; then
        ko "$1: no Lua errors or crashes in the log" "$(grep -m3 -E "$re" "$2")"
    else
        ok "$1: no Lua errors or crashes in the log"
    fi
}
# sg_sipp_load NAME CSV RATE SRC SECS [sipp args...]: RATE OPTIONS/s for SECS s from SRC (X-Src
# etc. from CSV), statistics in $dir/NAME.stat (read them with sg_sipp_stat), output in NAME.out.
sg_sipp_load() {
    local name="$1" csv="$2" rate="$3" src="$4" secs="$5"
    shift 5
    (cd "$dir" && timeout $((secs + 30)) sipp "127.0.0.1:$SG_SIP_PORT" -sf "$SG_ROOT/tests/e2e/options.xml" -inf "$csv" \
        -i "$src" -p "$(sg_free_port)" -r "$rate" -m $((rate * secs)) -nostdin -timeout $((secs + 20)) \
        -trace_stat -fd 1 -stf "$dir/$name.stat" "$@" >"$dir/$name.out" 2>&1)
}
# sg_eventually_dropped LOG SRC XSRC: one OPTIONS every 0.2 s for up to 6 s from SRC with
# "X-Src: XSRC" until it is dropped by the cfg's blacklist line (the alert names the request's
# user, so a sipp failure cannot pass for a drop).
sg_eventually_dropped() {
    local i u
    for i in $(seq 1 30); do
        u="ev$i-$RANDOM"
        if ! sg_options "$dir" "$2" "$3" "$u" && grep -q "blacklisted ip! $u " "$1"; then return 0; fi
        sleep 0.2
    done
    return 1
}
# sg_sipp_stat FILE COLUMN: the last value of a column of a sipp -trace_stat file.
sg_sipp_stat() {
    local c; c=$(head -1 "$1" | tr ';' '\n' | grep -n -x "$2" | cut -d: -f1)
    tail -1 "$1" | cut -d';' -f"$c"
}
ok() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; }
ko() { failed=$((failed + 1)); printf 'FAIL %s: %s\n' "$1" "$2"; }
# sg_suite_end: the closing "NAME: N passed, M failed" line, and the exit status.
sg_suite_end() {
    echo "$SG_SUITE: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
