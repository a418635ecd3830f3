-- sipguard.lua: drop-in replacement for the published Kamailio blacklist Lua file.
--
-- kamailio.cfg keeps its lines unchanged (an AVP is only written when it has a value; unset,
-- it reads as $null, which equals "" in the cfg):
--   lua_run("check_blacklist", "$si")                        -> $avp(wb_status), $avp(wb_type)
--   lua_run("get_countrycode", "$si")                        -> $avp(countryCode)
--   lua_run("check_country_blacklist", "$avp(s:countryCode)") -> $avp(wb_status), $avp(wb_type)
--
-- All decisions are made by the native module (sipguard.so, found through package.cpath /
-- LUA_CPATH); this file only writes its answers into the AVPs the cfg reads.

local sipguard = require "sipguard"

-- Parses the config file ($SIPGUARD_CONFIG, default /etc/kamailio/sipguard.json). A broken
-- config raises here, so Kamailio refuses to start and says which field is wrong. (At an
-- app_lua.reload init() keeps the config in force and says once what it did not apply.)
local ok, err = sipguard.init()
if not ok then
    error(err, 0)
end

-- The module's log lines, and the config's warnings (a world-readable file holding a password),
-- go out through Kamailio's log at the next request: KSR.log only works inside one.
if KSR ~= nil and KSR.log ~= nil then
    sipguard.set_logger(function(level, msg) KSR.log(level, msg .. "\n") end)
end

local sets = KSR.pv.sets

-- An AVP is written only when it carries an answer: "black"/"white" with what matched, a known
-- country. Kamailio reads an unwritten AVP as $null, which compares equal to "" and unequal
-- to "black", so the post's `$avp(s:wb_status) == "black"` tests answer exactly as before, while
-- a clean request costs no write at all: each KSR.pv.sets allocates the AVP in shared memory
-- and costs about 5 us inside Kamailio, more than everything the module does (scripts/bench,
-- configuration E+W).
local function verdict(status, kind)
    if status ~= "" then
        sets("$avp(wb_status)", status)
        sets("$avp(wb_type)", kind)
    end
end

-- check blacklist: "black" when the source address or a network containing it is listed
function check_blacklist(ip)
    verdict(sipguard.check_blacklist(ip))
end

-- get country code from IP address: ISO code, or "" when unknown, private or loopback
function get_countrycode(ipaddr)
    local cc = sipguard.get_countrycode(ipaddr)
    if cc ~= "" then
        sets("$avp(countryCode)", cc)
    end
end

-- check countries blacklisted: "black" when the code is in black_list_country
function check_country_blacklist(country)
    verdict(sipguard.check_country_blacklist(country))
end

-- sipguard's own checks, same AVPs --------------------------------------------------------

-- check users blacklisted: "black" when the SIP user name ($au, $fU) is in black_list_user
function check_user_blacklist(user)
    verdict(sipguard.check_user_blacklist(user))
end

-- check scanner User-Agents: "black" when $ua contains a scanner pattern (config or black_list_ua)
function check_user_agent(ua)
    verdict(sipguard.check_user_agent(ua))
end

-- all checks in one call (sipguard's own form, cheaper than five lua_run):
--   lua_run("sipguard_check", "$si", "$ua", "$fU");
-- A clean source writes nothing at all (the cheapest answer Kamailio can get from Lua). On a
-- match it sets $avp(wb_status) ("white" or "black"), $avp(wb_type) (ip, ua, country, user)
-- and, when known, $avp(countryCode) for the alert line. User-Agent and user may be left out;
-- call get_countrycode as well if the cfg needs the country of clean sources.
function sipguard_check(ip, ua, user)
    local status, kind, cc = sipguard.check(ip, ua, user)
    if status ~= "" then
        sets("$avp(wb_status)", status)
        sets("$avp(wb_type)", kind)
        if cc ~= "" then
            sets("$avp(countryCode)", cc)
        end
    end
end

-- ban a source on every node sharing the database (sipguard_ban), for `seconds`:
--   lua_run("sipguard_ban", "$si", "300", "pike flood");
-- Never waits: this worker enforces the ban at once, its background thread writes it, and every
-- worker of every node refuses the source (wb_type "ban") within a refresh round or two. An
-- allow-listed source is never banned. Sets $avp(ban_status): banned, already (banned as long),
-- white (allow-listed, refused), invalid (bad arguments, logged) or dropped (a queue full).
function sipguard_ban(ip, seconds, reason)
    sets("$avp(ban_status)", sipguard.ban(ip, seconds, reason))
end
