//! The Lua API: a table of plain functions, each converting arguments, calling the engine
//! through this process's [`Guard`], and converting the answer back.
//!
//! Nothing here raises a Lua error: app_lua only logs "error from Lua: unknown" for a Rust
//! error object, and an error per packet is a log storm. `init` reports a broken config as
//! `nil, message`, which the Lua file raises so Kamailio refuses to start.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use mlua::prelude::*;

use crate::config::Config;
use crate::engine::Verdict;
use crate::process::{self, Guard};

static CONFIG: Mutex<Option<Arc<Config>>> = Mutex::new(None);

const LOGGER_KEY: &str = "sipguard.logger";

/// Runs `f` on a Lua string argument as text, borrowed from Lua (no copy on the request path);
/// invalid UTF-8 is replaced, so the parsers refuse it cleanly. `nil` is `""`, and so is
/// `<null>`: how `lua_run` prints an unset pseudo-variable (e.g. `$avp(s:countryCode)` for an
/// unknown country), meaning "no value", not junk to log.
fn with_text<R>(arg: &Option<LuaString>, f: impl FnOnce(&str) -> R) -> R {
    let Some(s) = arg else { return f("") };
    let bytes = s.as_bytes();
    if &*bytes == b"<null>" {
        return f("");
    }
    match std::str::from_utf8(&bytes) {
        Ok(t) => f(t),
        Err(_) => f(&String::from_utf8_lossy(&bytes)),
    }
}

/// Parses the config (argument, or `SIPGUARD_CONFIG`, or the default path) and keeps it for
/// this process. Returns `true`, or `nil, message`: the Lua file raises that message as a plain
/// string, since app_lua prints a Rust error object only as "unknown".
/// A third value lists warnings (e.g. a world-readable file holding a password).
fn init(lua: &Lua, path: Option<String>) -> LuaResult<(Option<bool>, Option<String>, LuaTable)> {
    let path = path
        .map(std::path::PathBuf::from)
        .unwrap_or_else(Config::env_path);
    let warnings = lua.create_table()?;
    match Config::load(&path) {
        Ok(cfg) => {
            for (i, w) in cfg.warnings(&path).into_iter().enumerate() {
                warnings.raw_set(i + 1, format!("sipguard: {w}"))?;
            }
            *CONFIG.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cfg));
            Ok((Some(true), None, warnings))
        }
        Err(e) => Ok((None, Some(e.to_string()), warnings)),
    }
}

/// Registers the function log lines go to, e.g. `function(level, msg) KSR.log(level, msg) end`.
fn set_logger(lua: &Lua, f: LuaFunction) -> LuaResult<()> {
    lua.set_named_registry_value(LOGGER_KEY, f)
}

fn guard() -> Result<Arc<Guard>, String> {
    let mut slot = CONFIG.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = match slot.as_ref() {
        Some(c) => c.clone(),
        None => {
            let c = Arc::new(Config::from_env().map_err(|e| e.to_string())?);
            *slot = Some(c.clone());
            c
        }
    };
    drop(slot);
    Ok(process::current(&cfg))
}

fn emit(lua: &Lua, level: &str, msg: &str) {
    let line = format!("sipguard: {msg}");
    match lua.named_registry_value::<Option<LuaFunction>>(LOGGER_KEY) {
        Ok(Some(f)) => {
            if f.call::<()>((level, line.as_str())).is_err() {
                eprintln!("{level}: {line}");
            }
        }
        _ => eprintln!("{level}: {line}"),
    }
}

/// Runs one request-path call: never panics into Lua, always flushes queued log lines.
fn call<T>(lua: &Lua, name: &str, fallback: T, f: impl FnOnce(&Guard) -> T) -> T {
    let out = match guard() {
        Ok(g) => {
            let out = catch_unwind(AssertUnwindSafe(|| f(&g)));
            for (level, msg) in g.take_logs() {
                emit(lua, level.as_ksr(), &msg);
            }
            out.map(Some).unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                emit(
                    lua,
                    "crit",
                    &format!("{name}: internal error ({why}); answering \"\""),
                );
                None
            })
        }
        Err(e) => {
            emit(lua, "err", &format!("{name}: {e}"));
            None
        }
    };
    out.unwrap_or(fallback)
}

fn verdict_pair(v: &Verdict) -> (&'static str, &'static str) {
    (v.status(), v.kind())
}

/// `check_blacklist(ip)` → `status, type` (`"black", "ip"` or `"", ""`).
fn check_blacklist(lua: &Lua, ip: Option<LuaString>) -> LuaResult<(&'static str, &'static str)> {
    Ok(call(lua, "check_blacklist", ("", ""), |g| {
        with_text(&ip, |ip| verdict_pair(&g.check_blacklist(ip)))
    }))
}

/// `get_countrycode(ip)` → ISO code or `""`.
fn get_countrycode(lua: &Lua, ip: Option<LuaString>) -> LuaResult<&'static str> {
    Ok(call(lua, "get_countrycode", "", |g| {
        with_text(&ip, |ip| g.country_code(ip))
    }))
}

/// `check_country_blacklist(cc)` → `status, type` (`"black", "country"` or `"", ""`).
fn check_country_blacklist(
    lua: &Lua,
    cc: Option<LuaString>,
) -> LuaResult<(&'static str, &'static str)> {
    Ok(call(lua, "check_country_blacklist", ("", ""), |g| {
        with_text(&cc, |cc| verdict_pair(&g.check_country(cc)))
    }))
}

/// `check_user_blacklist(user)` → `status, type` (`"black", "user"` or `"", ""`).
fn check_user_blacklist(
    lua: &Lua,
    user: Option<LuaString>,
) -> LuaResult<(&'static str, &'static str)> {
    Ok(call(lua, "check_user_blacklist", ("", ""), |g| {
        with_text(&user, |user| verdict_pair(&g.check_user(user)))
    }))
}

/// `check_user_agent(ua)` → `status, type` (`"black", "ua"` or `"", ""`).
fn check_user_agent(lua: &Lua, ua: Option<LuaString>) -> LuaResult<(&'static str, &'static str)> {
    Ok(call(lua, "check_user_agent", ("", ""), |g| {
        with_text(&ua, |ua| verdict_pair(&g.check_user_agent(ua)))
    }))
}

/// `check(ip, ua, user)` → `status, type, country`: every check in one call.
fn check(
    lua: &Lua,
    (ip, ua, user): (Option<LuaString>, Option<LuaString>, Option<LuaString>),
) -> LuaResult<(&'static str, &'static str, &'static str)> {
    Ok(call(lua, "sipguard_check", ("", "", ""), |g| {
        with_text(&ip, |ip| {
            with_text(&ua, |ua| {
                with_text(&user, |user| {
                    let (v, cc) = g.check_all(ip, ua, user);
                    (v.status(), v.kind(), cc)
                })
            })
        })
    }))
}

/// Builds the module table; `require "sipguard"` returns it. Does no I/O: it runs in
/// Kamailio's main process before fork, and again in every child.
#[mlua::lua_module(skip_memory_check)]
fn sipguard(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("init", lua.create_function(init)?)?;
    t.set("set_logger", lua.create_function(set_logger)?)?;
    t.set("check_blacklist", lua.create_function(check_blacklist)?)?;
    t.set("get_countrycode", lua.create_function(get_countrycode)?)?;
    t.set(
        "check_country_blacklist",
        lua.create_function(check_country_blacklist)?,
    )?;
    t.set(
        "check_user_blacklist",
        lua.create_function(check_user_blacklist)?,
    )?;
    t.set("check_user_agent", lua.create_function(check_user_agent)?)?;
    t.set("check", lua.create_function(check)?)?;
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    Ok(t)
}
