-- scripts/bench, configuration K1: KEMI routing in Lua, as an operator routing in KEMI uses
-- sipguard (kamailio/sipguard-kemi.lua does the same call, plus pike and the logs). Like every
-- bench configuration it answers every OPTIONS with 200 and only marks a blocked source, so the
-- work compared is the decision: one sipguard.check per request with the simulated source
-- (X-Src), the User-Agent and the From user.
local sipguard = require "sipguard"
assert(sipguard.init()) -- a broken config stops Kamailio, naming the field
sipguard.set_logger(function(level, msg) KSR.log(level, msg .. "\n") end)

local blocked = 0

function ksr_request_route()
    local status = sipguard.check(KSR.hdr.get("X-Src"), KSR.kx.gete_ua(), KSR.kx.gete_fuser())
    if status == "black" then
        blocked = blocked + 1
    end
    KSR.sl.sl_send_reply(200, "OK")
end
