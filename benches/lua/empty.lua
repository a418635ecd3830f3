-- E: the post's three functions, empty: what app_lua costs before any work is done.
function check_blacklist(ip) end
function get_countrycode(ip) end
function check_country_blacklist(cc) end
