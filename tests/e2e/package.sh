#!/usr/bin/env bash
# The Debian package (issue 15), as an operator meets it, on this machine (root; it installs
# and removes the package for real):
#   - scripts/package builds it; lintian reports no error;
#   - `apt-get install ./sipguard_*.deb` installs the module where Debian's Lua 5.1 finds it, the
#     admin tool with man pages and completions, and the config as root:kamailio 0640;
#   - the end-to-end suites (protection: both shipped cfgs; metrics) pass against the installed
#     files only: no LUA_CPATH, cfgs/Lua/schema from /usr/share/sipguard, /usr/bin/sipguard-admin;
#     a Kamailio worker maps the installed sipguard.so;
#   - `apt-get remove` keeps the operator's edited config; `purge` removes it.
# A module installed by scripts/setup in /usr/local/lib/lua/5.1 (earlier on Lua's cpath) is moved
# aside for the run and put back. Skipped, and said, when not root, or when a sipguard package is
# already installed (its config would be purged) unless SG_PACKAGE_TEST=1.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "package: skipped: installing a package needs root (0 passed, 0 failed)"; exit 0
fi
# Anything of a sipguard package (installed, or removed with its config kept), or a config of
# a source install, belongs to the operator: the suite would purge it.
state=$(dpkg-query -W -f='${db:Status-Status}' sipguard 2>/dev/null || echo not-installed)
if { [ "$state" != not-installed ] || [ -e /etc/kamailio/sipguard.json ]; } && [ "${SG_PACKAGE_TEST:-0}" != 1 ]; then
    echo "package: skipped: sipguard is $state here, /etc/kamailio/sipguard.json $( [ -e /etc/kamailio/sipguard.json ] && echo exists || echo 'is absent'); this suite would purge them; SG_PACKAGE_TEST=1 lets it (0 passed, 0 failed)"
    exit 0
fi
sg_suite package
CONF=/etc/kamailio/sipguard.json
SO=/usr/lib/x86_64-linux-gnu/lua/5.1/sipguard.so
LOCAL_SO=/usr/local/lib/lua/5.1/sipguard.so
restore() {
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q sipguard >/dev/null 2>&1
    [ -f "$LOCAL_SO.package-test" ] && mv "$LOCAL_SO.package-test" "$LOCAL_SO"
    sg_suite_cleanup
}
trap restore EXIT
[ -f "$LOCAL_SO" ] && mv "$LOCAL_SO" "$LOCAL_SO.package-test"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q sipguard >/dev/null 2>&1

deb=$("$SG_ROOT/scripts/package" 2>"$dir/package.err")
if [ -f "$deb" ] && [[ "$(basename "$deb")" =~ ^sipguard_[0-9.]+-[0-9]+_amd64\.deb$ ]]; then
    ok "scripts/package builds $(basename "$deb") ($(du -k "$deb" | cut -f1) KB)"
else
    ko "scripts/package" "$(tail -5 "$dir/package.err")"; sg_suite_end; exit 1
fi
lintian --fail-on error "$deb" >"$dir/lintian.out" 2>&1
rc=$?
errors=$(grep -c '^E: ' "$dir/lintian.out"); warnings=$(grep -c '^W: ' "$dir/lintian.out")
[ $rc -eq 0 ] && [ "$errors" = 0 ] && ok "lintian: no errors ($warnings warnings: $(grep '^W: ' "$dir/lintian.out" | awk '{print $3}' | paste -sd, -))" \
    || ko "lintian" "$(grep -E '^E: ' "$dir/lintian.out" | head -5)"

if DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confnew "$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")" >"$dir/install.out" 2>&1; then
    ok "apt-get install ./$(basename "$deb")"
else
    ko "apt-get install" "$(tail -5 "$dir/install.out")"; sg_suite_end; exit 1
fi
owner=$(stat -c '%U:%G %a' "$CONF" 2>&1)
[ "$owner" = "root:kamailio 640" ] && ok "$CONF installed root:kamailio 0640 (a conffile: $(dpkg-query -W -f='${Conffiles}' sipguard | awk 'NF {print $1}' | paste -sd' '))" \
    || ko "$CONF ownership" "$owner"
found=$(env -u LUA_CPATH lua5.1 -e 'for t in package.cpath:gmatch("[^;]+") do
    local f = t:gsub("?", "sipguard"); local h = io.open(f)
    if h then h:close(); print(f); break end end' 2>&1)
[ "$found" = "$SO" ] && ok "Lua 5.1 finds the module on its default cpath: $found" || ko "module on Lua's cpath" "$found"
man=$(man -w sipguard-admin 2>&1); mman=$(man -w sipguard-admin-metrics 2>&1)
[ "$man" = /usr/share/man/man1/sipguard-admin.1.gz ] && [ -f "$mman" ] \
    && ok "man pages: $man, one per command ($(dpkg -L sipguard | grep -c '/man1/'))" || ko "man pages" "$man $mman"
# The function `complete -F` registers for sipguard-admin, called as bash would for "sipguard-admin me<TAB>".
comp=$(bash -c '. /usr/share/bash-completion/completions/sipguard-admin && f=$(complete -p sipguard-admin | grep -o -- "-F [^ ]*" | cut -c4-) \
    && COMP_WORDS=(sipguard-admin me) COMP_CWORD=1 && "$f" sipguard-admin me sipguard-admin && echo "${COMPREPLY[*]}"' 2>&1)
# And an option of a command ("sipguard-admin metrics --li<TAB>").
opt=$(bash -c '. /usr/share/bash-completion/completions/sipguard-admin && f=$(complete -p sipguard-admin | grep -o -- "-F [^ ]*" | cut -c4-) \
    && COMP_WORDS=(sipguard-admin metrics --li) COMP_CWORD=2 && "$f" sipguard-admin --li metrics && echo "${COMPREPLY[*]}"' 2>&1)
[ "$comp" = metrics ] && [ "$opt" = --listen ] && [ -f /usr/share/zsh/vendor-completions/_sipguard-admin ] && [ -f /usr/share/fish/vendor_completions.d/sipguard-admin.fish ] \
    && ok "bash completion: 'sipguard-admin me' -> '$comp', 'sipguard-admin metrics --li' -> '$opt'; zsh and fish files installed" \
    || ko "completions" "bash gave '$comp' and '$opt'"
unit=/usr/share/sipguard/systemd/sipguard-metrics.service
if ! command -v systemd-analyze >/dev/null 2>&1; then
    [ -f "$unit" ] && ok "$unit installed (systemd-analyze not here to verify it)" || ko "systemd unit" "$unit missing"
elif out=$(systemd-analyze verify "$unit" 2>&1); then
    ok "$unit passes systemd-analyze verify"
else
    ko "systemd unit" "$out"
fi
ver=$(/usr/bin/sipguard-admin --version 2>&1)
[ "$ver" = "sipguard-admin $(dpkg-query -W -f='${Version}' sipguard | cut -d- -f1)" ] && ok "/usr/bin/sipguard-admin: $ver" || ko "sipguard-admin --version" "$ver"

# The end-to-end suites against the installed files (their own lines and totals follow).
SG_INSTALLED=1 "$SG_ROOT/tests/e2e/protection.sh"
SG_INSTALLED=1 SG_DASHBOARD=/usr/share/sipguard/grafana/sipguard-dashboard.json "$SG_ROOT/tests/e2e/metrics.sh"

# Which sipguard.so a worker of the installed kamailio.cfg maps.
(
    export SG_INSTALLED=1
    . "$SG_ROOT/scripts/lib.sh"
    sg_mariadb_start "$dir/db"
    sg_schema && sg_kamailio_tables
    sg_kamailio_start "$dir/kam" "$SG_CFG_DIR/kamailio.cfg" || exit 1
    sg_options "$dir" 127.0.0.2 "" maps >/dev/null
    for p in $(pgrep -f "$dir/kam/kamailio.pid"); do grep -o '/[^ ]*sipguard\.so' "/proc/$p/maps" 2>/dev/null; done | sort -u
) >"$dir/maps.out" 2>"$dir/maps.err"
mapped=$(cat "$dir/maps.out")
[ "$mapped" = "$SO" ] && ok "a worker of the installed kamailio.cfg maps $mapped (LUA_CPATH unset)" \
    || ko "module a worker maps" "'$mapped' $(tail -3 "$dir/maps.err")"

# apt-get remove keeps the operator's config; purge removes it.
sed -i 's/"refresh_secs": 1/"refresh_secs": 2/' "$CONF"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q sipguard >"$dir/remove.out" 2>&1
if [ ! -e "$SO" ] && [ ! -e /usr/bin/sipguard-admin ] && grep -q '"refresh_secs": 2' "$CONF" \
    && [ "$(stat -c '%U:%G %a' "$CONF")" = "root:kamailio 640" ]; then
    ok "apt-get remove: module and tool gone, the edited $CONF kept (root:kamailio 0640)"
else
    ko "apt-get remove" "so: $(ls "$SO" 2>&1), conf: $(grep refresh_secs "$CONF" 2>&1)"
fi
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q sipguard >"$dir/purge.out" 2>&1
[ ! -e "$CONF" ] && ! dpkg-statoverride --list "$CONF" >/dev/null 2>&1 \
    && ok "apt-get purge: $CONF and its ownership override removed" || ko "apt-get purge" "$(ls -l "$CONF" 2>&1)"

sg_suite_end
