-- Times the Lua->Rust call through lua/sipguard.lua under plain lua5.1 (stub KSR): what one
-- lua_run costs on top of app_lua's own overhead, with the stub KSR (AVP writes are nearly free
-- here, unlike in Kamailio). Needs SIPGUARD_CONFIG with a reachable DB.
local root = arg[1] or "."
local nsets = 0
KSR = { pv = { sets = function() nsets = nsets + 1 end }, log = function() end }
dofile(root .. "/lua/sipguard.lua")
local N = 200000
check_blacklist("2.20.179.10") -- first call: starts the loader, waits for the first load
local function time(name, f)
    local t0 = os.clock()
    for i = 1, N do f(i) end
    local us = (os.clock() - t0) * 1e6 / N
    print(string.format("lua->rust %-52s %.2f us/call", name, us))
end
time("check_blacklist (hot source)", function() check_blacklist("2.20.179.10") end)
time("sipguard_check (hot source)", function() sipguard_check("2.20.179.10") end)
local ips = {}
for i = 1, 4096 do ips[i] = string.format("%d.%d.%d.%d", 1 + i % 200, i % 251, (i * 7) % 253, 1 + i % 250) end
time("sipguard_check (4096 rotating sources)", function(i) sipguard_check(ips[1 + i % 4096]) end)
time("module only: sipguard.check (no AVP writes)", function() require("sipguard").check("2.20.179.10") end)
