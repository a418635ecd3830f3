-- Set-up for oom_host.c: the module, a logger that allocates, and probe(i), which calls every
-- request-path function with arguments that make Lua allocate (numbers converted to strings,
-- junk that is logged).
local sipguard = require "sipguard"
assert(sipguard.init(os.getenv("SIPGUARD_CONFIG")))
local sink = {}
sipguard.set_logger(function(level, msg)
    sink[#sink % 16 + 1] = level .. ": " .. msg
end)
function probe(i)
    local st = sipguard.check_blacklist(i)
    sipguard.get_countrycode("junk " .. i)
    sipguard.check_country_blacklist(i)
    sipguard.check_user_blacklist(1000 + i)
    sipguard.check_user_agent("friendly-scanner " .. i)
    local a, b, c = sipguard.check(i, i, i)
    return st
end
