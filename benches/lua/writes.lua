-- E+W: the post's three functions doing only the AVP writes sipguard.lua does for a clean
-- source (no module call): separates the cost of KSR.pv.sets from the module's own.
local sets = KSR.pv.sets
function check_blacklist(ip) sets("$avp(wb_status)", "") end
function get_countrycode(ip) sets("$avp(countryCode)", "DE") end
function check_country_blacklist(cc) sets("$avp(wb_status)", "") end
