-- P: the published Lua file, as faithful as it can be while running: the post's SQL, built by
-- string concatenation, a new LuaSQL connection per call, no cache. Two fixes only: the missing
-- quote that stops the post's file from parsing (`ip .. "'"))`), and `KSR.pv.sets` where the
-- post calls `sr.pv.sets` (the `sr` table needs app_lua_sr.so and is gone in Kamailio 6).
-- connect_ro() is not shown in the post; this is the obvious LuaSQL version of it.
local luasql = require "luasql.mysql"
local env = luasql.mysql()
local DB = { name = os.getenv("BENCH_DB_NAME"), user = os.getenv("BENCH_DB_USER"),
             pass = os.getenv("BENCH_DB_PASS"), host = "127.0.0.1", port = tonumber(os.getenv("BENCH_DB_PORT")) }

function connect_ro(name)
    return assert(env:connect(DB.name, DB.user, DB.pass, DB.host, DB.port))
end

-- check blacklist
function check_blacklist(ip)
        local con, cur, row
        con = connect_ro('openser')
        cur = assert (con:execute("SELECT id FROM black_list WHERE ip='" .. ip .. "'"))
        row = cur:fetch({}, "a")
        cur:close()
        con:close()
        if row then
                KSR.pv.sets('$avp(wb_status)', 'black')
        else
                KSR.pv.sets('$avp(wb_status)', '')
        end

        return
end

-- get country code from IP address
function get_countrycode(ipaddr)
        local con, cur, row
        con = connect_ro('openser')
        cur = assert (con:execute("SELECT countrycode FROM ipcountry WHERE INET_ATON('" .. ipaddr .. "') BETWEEN ipfrom AND ipto LIMIT 1"))
        row = cur:fetch({}, "a")
        cur:close()
        con:close()
        if row then
                KSR.pv.sets('$avp(countryCode)', row.countrycode)
        else
                KSR.pv.sets('$avp(countryCode)', '')
        end

        return
end

-- check countries blacklisted
function check_country_blacklist(country)
        local con, cur, row
        con = connect_ro('openser')
        cur = assert (con:execute("SELECT id FROM black_list_country WHERE country='" .. country .. "'"))
        row = cur:fetch({}, "a")
        cur:close()
        con:close()
        if row then
                KSR.pv.sets('$avp(wb_status)', 'black')
        else
                KSR.pv.sets('$avp(wb_status)', '')
        end

        return
end
