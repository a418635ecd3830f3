-- sipguard-kemi.lua: KEMI Lua routing for kamailio/kamailio-kemi.cfg, with the protection of
-- kamailio/kamailio.cfg: the same steps in the same order, the same log lines (xlog, static
-- formats), the same htables (ipban, wrongpass) and cfg limits (auth.max, auth.bantime), the
-- same registrar and call routing. sipguard is used as a library: one call of its module table
-- answers every list check (allow-list, black_list, User-Agent, country, user).
--
-- The steps and what each does on a hit: the README's table for kamailio/kamailio.cfg.
-- Remember KEMI's rules: KSR.x.exit() ends the routing, KSR.x.drop() drops and ends it; never
-- call Lua's os.exit() in Kamailio.

local sipguard = require "sipguard"

-- Parses the config ($SIPGUARD_CONFIG, default /etc/kamailio/sipguard.json). A broken config
-- raises here, so Kamailio refuses to start and says which field is wrong. (At an
-- app_lua.reload init() keeps the config in force and says once what it did not apply.)
local ok, err = sipguard.init()
if not ok then
    error(err, 0)
end
-- The module's log lines, and the config's warnings (a world-readable file holding a password),
-- go out through Kamailio's log at the next request: KSR.log only works inside one.
sipguard.set_logger(function(level, msg) KSR.log(level, msg .. "\n") end)

-- transaction flag: the source is in white_list
local FLT_TRUSTED = 1

-- cfg defines, read at the first request (KSR.kx needs a message): nil until then.
local simulate_source, decision_log

-- Log lines are xlog formats written once, here, with the values in $var()s: a header value
-- (User-Agent, From user) never becomes part of a format.
local function xlog(level, fmt, src, kind, cc)
    KSR.pv.sets("$var(src)", src)
    if kind then KSR.pv.sets("$var(wb_type)", kind) end
    if cc then KSR.pv.sets("$var(cc)", cc) end
    KSR.xlog.xlog(level, fmt)
end

-- The source into ipban (dropped silently by this node until autoexpire), banned for as long
-- on every node sharing the database (sipguard_ban: `reason` nil when it already is), and this
-- request dropped.
local function ban_and_drop(src, reason)
    KSR.htable.sht_seti("ipban", src, 1)
    if reason then
        sipguard.ban(src, 300, reason)
    end
    KSR.x.drop()
end

-- sipguard's checks, pike and the ipban table, in kamailio/kamailio.cfg's order. Returns when
-- the request may go on; every other outcome drops it.
function ksr_route_sipguard(src)
    -- 1. Banned by pike or by a list on this node: dropped until ipban's autoexpire (the
    -- node-local fast path; sipguard_ban carries bans to every node and across restarts).
    if KSR.htable.sht_get("ipban", src) ~= nil then
        KSR.x.drop()
    end

    -- 2, 3, 5, 6, 7 in one call; the answer says which step matched. "nodata" (on_no_data =
    -- "block" before any data was loaded) is acted on here, at the address step, as
    -- kamailio.cfg does for an address (for a source that is no address, kamailio.cfg would
    -- act at the country step, after pike: same drop, other alert line).
    local status, kind, cc = sipguard.check(src, KSR.kx.gete_ua(), KSR.kx.gete_fuser())
    if status == "white" then
        if decision_log then
            xlog("L_INFO", "sipguard: trusted $rm user=$fU src=$var(src), no further checks\n", src)
        end
        KSR.setflag(FLT_TRUSTED)
        return
    end
    -- "ban": banned on some node (sipguard_ban), here too until the ban ends or is lifted (not
    -- put in ipban, so sipguard-admin ban remove frees it here at once).
    if status == "black" and kind == "ban" then
        xlog("L_ALERT", "Received $rm from a blacklisted $var(wb_type)! $fU (IP:$var(src)) - Sending Drop ...\n",
            src, kind)
        KSR.x.drop()
    end
    if status == "black" and (kind == "ip" or kind == "nodata") then
        xlog("L_ALERT", "Received $rm from a blacklisted $var(wb_type)! $fU (IP:$var(src)) - Sending Drop ...\n",
            src, kind)
        ban_and_drop(src, kind == "ip" and "listed address" or nil)
    end

    -- 4. Floods (per real source; with SIMULATE_SOURCE, per simulated source when it is an address).
    local flood
    if simulate_source and KSR.ipops.is_ip(src) > 0 then
        flood = KSR.pike.pike_check_ip(src) < 0
    else
        flood = KSR.pike.pike_check_req() < 0
    end
    if flood then
        xlog("L_ALERT", "Flood from $var(src): pike blocking $rm from $fu - banned for 300 s\n", src)
        ban_and_drop(src, "pike flood")
    end

    if status == "black" then
        if kind == "ua" then
            -- 5. Scanners announce themselves in User-Agent.
            xlog("L_ALERT", "Attack attempt! IP:$var(src):$sp - R:$ru - F:$fu - T:$tu - UA:$ua - $rm\n", src)
            KSR.x.drop()
        elseif kind == "country" then
            -- 6. Countries.
            xlog("L_ALERT", "Received $rm from a blacklisted country ($var(cc))! $fU (IP:$var(src)) - Sending Drop ...\n",
                src, nil, cc)
            ban_and_drop(src, "listed country " .. cc)
        else
            -- 7. Users.
            xlog("L_ALERT", "Received $rm from a blacklisted user! $fU (IP:$var(src)) - Sending Drop ...\n", src)
            KSR.x.drop()
        end
    end
    if decision_log then
        -- An unknown country prints as kamailio.cfg prints its unset $avp(countryCode).
        xlog("L_INFO", "sipguard: pass $rm user=$fU src=$var(src) cc=$var(cc) ua=$ua\n", src, nil,
            cc ~= "" and cc or "<null>")
    end
end

-- Every request goes through sipguard first; the cheap stateless checks follow.
function ksr_route_reqinit()
    if simulate_source == nil then
        simulate_source = KSR.kx.ifdef("SIMULATE_SOURCE") == true
        decision_log = KSR.kx.ifdef("WITH_DECISION_LOG") == true
    end
    local src = KSR.kx.get_srcip()
    if simulate_source and KSR.hdr.is_present("X-Src") > 0 then
        src = KSR.hdr.get("X-Src")
    end
    ksr_route_sipguard(src)

    if KSR.maxfwd.process_maxfwd(10) < 0 then
        KSR.sl.sl_send_reply(483, "Too Many Hops")
        KSR.x.exit()
    end
    if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.corex.has_ruri_user() < 0 then
        KSR.sl.sl_send_reply(200, "Keepalive")
        KSR.x.exit()
    end
    if KSR.sanity.sanity_check(17895, 7) < 0 then
        KSR.xlog.xlog("L_WARN", "Malformed SIP request from $si:$sp\n")
        KSR.x.exit()
    end
    return src
end

function ksr_route_relay()
    if KSR.tm.t_relay() < 0 then
        KSR.sl.sl_reply_error()
    end
    KSR.x.exit()
end

function ksr_route_withindlg()
    if KSR.siputils.has_totag() < 0 then
        return
    end
    if KSR.rr.loose_route() > 0 then
        ksr_route_relay()
    end
    if KSR.is_ACK() then
        if KSR.tm.t_check_trans() > 0 then
            ksr_route_relay()
        end
        KSR.x.exit()
    end
    KSR.sl.sl_send_reply(404, "Not here")
    KSR.x.exit()
end

-- Digest authentication against `subscriber`, with the post's wrongpass lockout: after
-- auth.max failures for a user, that user gets no more auth checks (no answer at all) until
-- auth.bantime has passed since the last failure; a success clears the count.
function ksr_route_auth(src)
    if KSR.isflagset(FLT_TRUSTED) then
        return
    end
    if KSR.is_REGISTER() or KSR.is_myself_furi() then
        local au = KSR.kx.gete_au()
        local count_key, last_key = au .. "::auth_count", au .. "::last_auth"
        local max = tonumber(KSR.pv.get("$sel(cfg_get.auth.max)"))
        -- User reached auth_count top
        if au ~= "" and KSR.htable.sht_get("wrongpass", count_key) == max then
            local exp = KSR.kx.get_timestamp() - tonumber(KSR.pv.get("$sel(cfg_get.auth.bantime)"))
            if (KSR.htable.sht_get("wrongpass", last_key) or 0) > exp then
                -- no more auth checks
                xlog("L_NOTICE", "username $au $rm blocked from $proto:$var(src):$sp\n", src)
                KSR.x.exit()
            end
            -- bantime reached... clean count
            KSR.htable.sht_seti("wrongpass", count_key, 0)
        end

        local host = KSR.kx.gete_fhost()
        local rc = KSR.auth_db.auth_check(host, "subscriber", 1)
        if rc < 0 then
            if rc == -2 and au ~= "" then
                local count = (KSR.htable.sht_get("wrongpass", count_key) or 0) + 1
                KSR.htable.sht_seti("wrongpass", count_key, count)
                if count == max then
                    xlog("L_ALERT", "Auth failed $sel(cfg_get.auth.max) times - user:$au from $proto:$var(src):$sp\n", src)
                    -- The source, on every node, for the post's ipban time.
                    sipguard.ban(src, 300, "wrong password " .. max .. " times")
                end
                KSR.htable.sht_seti("wrongpass", last_key, KSR.kx.get_timestamp())
            end
            KSR.auth.auth_challenge(host, 1)
            KSR.x.exit()
        end
        -- clean
        if KSR.htable.sht_get("wrongpass", count_key) ~= nil then
            KSR.htable.sht_seti("wrongpass", count_key, 0)
        end
        if not KSR.is_method_in("RP") then
            KSR.auth.consume_credentials()
        end
    end
    -- Only local users may use this server as a relay.
    if not KSR.is_myself_furi() and not KSR.is_myself_ruri() then
        KSR.sl.sl_send_reply(403, "Not relaying")
        KSR.x.exit()
    end
end

function ksr_route_registrar()
    if not KSR.is_REGISTER() then
        return
    end
    if KSR.registrar.save("location", 0) < 0 then
        KSR.sl.sl_reply_error()
    end
    KSR.x.exit()
end

function ksr_route_location()
    local rc = KSR.registrar.lookup("location")
    if rc < 0 then
        if rc == -1 or rc == -3 then
            KSR.sl.send_reply(404, "Not Found")
            KSR.x.exit()
        elseif rc == -2 then
            KSR.sl.send_reply(405, "Method Not Allowed")
            KSR.x.exit()
        end
    end
    ksr_route_relay()
end

-- SIP request routing: the equivalent of kamailio.cfg's request_route.
function ksr_request_route()
    local src = ksr_route_reqinit()

    if KSR.is_CANCEL() then
        if KSR.tm.t_check_trans() > 0 then
            ksr_route_relay()
        end
        return 1
    end
    if not KSR.is_ACK() then
        if KSR.tmx.t_precheck_trans() > 0 then
            KSR.tm.t_check_trans()
            return 1
        end
        if KSR.tm.t_check_trans() == 0 then
            return 1
        end
    end

    ksr_route_withindlg()

    KSR.hdr.remove("Route")
    if KSR.is_method_in("IS") then
        KSR.rr.record_route()
    end

    ksr_route_auth(src)
    ksr_route_registrar()

    if KSR.corex.has_ruri_user() < 0 then
        KSR.sl.sl_send_reply(484, "Address Incomplete")
        return 1
    end
    ksr_route_location()
    return 1
end
