-- Lua-level test: plain lua5.1 loads lua/sipguard.lua (which requires the built module) with a
-- stub KSR, calls the three functions as kamailio.cfg's lua_run would, and checks the AVPs.
-- Needs SIPGUARD_CONFIG pointing at a database loaded by tests/lua/run.sh.
-- Prints one line per check and "lua: N passed, M failed".

local avps, logs = {}, {}
KSR = {
    pv = { sets = function(name, value) avps[name] = value end },
    log = function(level, msg) logs[#logs + 1] = level .. " " .. msg end,
}

local root = arg[1] or "."
dofile(root .. "/lua/sipguard.lua")

local passed, failed = 0, 0
local function check(name, got, want)
    if got == want then
        passed = passed + 1
        print("PASS " .. name)
    else
        failed = failed + 1
        print(string.format("FAIL %s: got %q, want %q", name, tostring(got), tostring(want)))
    end
end

local function run(fn, arg1)
    avps = {}
    local ok, err = pcall(_G[fn], arg1)
    check(fn .. " raises no Lua error", ok, true)
    if not ok then print("  " .. tostring(err)) end
end

run("check_blacklist", "203.0.113.9")
check("listed address: wb_status", avps["$avp(wb_status)"], "black")
check("listed address: wb_type", avps["$avp(wb_type)"], "ip")

run("check_blacklist", "198.51.100.200")
check("address in listed CIDR: wb_status", avps["$avp(wb_status)"], "black")

run("check_blacklist", "[2001:db8::1]")
check("bracketed IPv6 in listed network: wb_status", avps["$avp(wb_status)"], "black")

run("check_blacklist", "192.0.2.1")
check("clean address: wb_status empty", avps["$avp(wb_status)"], nil)
check("clean address: wb_type not written", avps["$avp(wb_type)"], nil)
run("check_country_blacklist", "<null>")
check("unset countryCode (<null>) is no country, not junk", avps["$avp(wb_status)"], nil)

run("get_countrycode", "2.20.179.10")
check("country of a Spanish address", avps["$avp(countryCode)"], "ES")
run("check_country_blacklist", avps["$avp(countryCode)"])
check("listed country: wb_status", avps["$avp(wb_status)"], "black")
check("listed country: wb_type", avps["$avp(wb_type)"], "country")

run("get_countrycode", "3.2.35.60")
check("nested ranges: outer country past the inner one", avps["$avp(countryCode)"], "DE")
run("check_country_blacklist", "de")
check("unlisted country: wb_status empty", avps["$avp(wb_status)"], nil)
run("check_country_blacklist", "")
check("empty country is never listed", avps["$avp(wb_status)"], nil)

run("get_countrycode", "10.1.2.3")
check("private address has no country", avps["$avp(countryCode)"], nil)
run("get_countrycode", " ::ffff:2.20.179.10 ")
check("IPv4-mapped IPv6 with spaces", avps["$avp(countryCode)"], "ES")

for _, junk in ipairs({ string.rep("x", 1023), "' OR 1=1 --", "1.2.3.4\0", "\255\254", "" }) do
    run("check_blacklist", junk)
    check("junk source answers empty", avps["$avp(wb_status)"], nil)
    run("get_countrycode", junk)
    check("junk source has no country", avps["$avp(countryCode)"], nil)
end
run("check_blacklist", nil)
check("nil source answers empty", avps["$avp(wb_status)"], nil)

run("check_user_blacklist", "1000")
check("listed user: wb_status", avps["$avp(wb_status)"], "black")
check("listed user: wb_type", avps["$avp(wb_type)"], "user")
run("check_user_blacklist", "alice")
check("unlisted user: wb_status empty", avps["$avp(wb_status)"], nil)
run("check_user_agent", "friendly-scanner")
check("scanner UA from the config: wb_type", avps["$avp(wb_type)"], "ua")
run("check_user_agent", "evildialer/2.0")
check("scanner UA from black_list_ua, any case", avps["$avp(wb_status)"], "black")
run("check_user_agent", string.rep("\1", 1024))
check("1 KB of control bytes as UA is not a scanner", avps["$avp(wb_status)"], nil)
run("check_blacklist", "198.51.100.7")
check("allow-listed address inside a listed network: white", avps["$avp(wb_status)"], "white")

local function check_all(ip, ua, user)
    avps = {}
    local ok, err = pcall(sipguard_check, ip, ua, user)
    check("sipguard_check raises no Lua error", ok, true)
    if not ok then print("  " .. tostring(err)) end
end
check_all("2.20.179.10", "Linphone", "alice")
check("one call: listed country", avps["$avp(wb_type)"], "country")
check("one call: sets the country too", avps["$avp(countryCode)"], "ES")
check_all("3.2.35.60", "friendly-scanner", "alice")
check("one call: scanner UA", avps["$avp(wb_type)"], "ua")
check_all("3.2.35.60", "Linphone", "1000")
check("one call: listed user", avps["$avp(wb_type)"], "user")
check_all("198.51.100.7", "friendly-scanner", "1000")
check("one call: allow-list wins over everything", avps["$avp(wb_status)"], "white")
check_all("3.2.35.60", nil, nil)
check("one call: clean source", avps["$avp(wb_status)"], nil)
check("one call: a clean source writes nothing", avps["$avp(countryCode)"], nil)
check_all("10.0.0.1", nil, nil)
check("one call: no country, countryCode not written", avps["$avp(countryCode)"], nil)

-- The module's own functions are C functions on Lua's API: whatever a script passes them, they
-- answer (a table, a boolean, no argument at all is "no value"; a number is read as text).
local sg = require "sipguard"
for _, v in ipairs({ {}, true, false, print }) do
    local ok, status, kind = pcall(sg.check_blacklist, v)
    check("module: non-string argument (" .. type(v) .. ") answers empty", ok and status == "" and kind == "", true)
end
local ok, status = pcall(sg.check_blacklist)
check("module: no argument answers empty", ok and status, "")
ok, status = pcall(sg.get_countrycode, 0)
check("module: a number is an address like any text (0 is not one)", ok and status, "")
local ok3, s3, k3, c3 = pcall(sg.check, "2.20.179.10")
check("module: check returns status, type, country", ok3 and (s3 .. "/" .. k3 .. "/" .. c3), "black/country/ES")

local bad_lines = 0
for _, l in ipairs(logs) do
    if l:find("not an IP address", 1, true) or l:find("too long", 1, true) or l:find("empty address", 1, true) then
        bad_lines = bad_lines + 1
    end
end
check("bad input is logged, rate-limited to one line", bad_lines, 1)

-- init() run again, as app_lua.reload does, in a process whose guard runs: a changed config
-- is named and not applied, a broken one is reported and kept out; neither makes it fail.
local function write(text)
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write(text); f:close()
    return path
end
local function joined(t) return table.concat(t or {}, " | ") end
local running = assert(io.open(os.getenv("SIPGUARD_CONFIG"))):read("*a")
local edited = write((running:gsub('"refresh_secs": %d+', '"refresh_secs": 7')))
local ok_e, err_e, warn_e = sg.init(edited)
check("init again, edited config: true, no error", tostring(ok_e) .. "/" .. tostring(err_e), "true/nil")
check("init again, edited config: the change is named",
    joined(warn_e):find("refresh_secs changed in " .. edited .. ": restart Kamailio to apply", 1, true) ~= nil, true)
local broken = write('{"db_url": ')
local ok_b, err_b, warn_b = sg.init(broken)
check("init again, broken config: true, no error", tostring(ok_b) .. "/" .. tostring(err_b), "true/nil")
check("init again, broken config: kept out, said so",
    joined(warn_b):find("keeping the config in force", 1, true) ~= nil, true)
logs = {}
sg.check_blacklist("192.0.2.1")
check("the broken config's warning is logged at the next check", joined(logs):find("keeping the config in force", 1, true) ~= nil, true)
logs = {}
sg.init(broken)
sg.check_blacklist("192.0.2.1")
check("the same warning is not logged again", joined(logs):find("keeping the config in force", 1, true), nil)
check("decisions unchanged after the reloads", (sg.check_blacklist("203.0.113.9")), "black")
os.remove(edited); os.remove(broken)

print(string.format("lua: %d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
