-- E+W: the post's three functions doing only the AVP writes sipguard.lua makes for a clean
-- source (no module call): $avp(countryCode), which the post's next lua_run reads. Separates
-- the cost of KSR.pv.sets (a shared-memory allocation in Kamailio) from the module's own.
local sets = KSR.pv.sets
function check_blacklist(ip) end
function get_countrycode(ip) sets("$avp(countryCode)", "DE") end
function check_country_blacklist(cc) end
