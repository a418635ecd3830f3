//! The Lua API: a table of plain functions, each converting arguments, calling the engine
//! through this process's [`Guard`], and converting the answer back.
//!
//! Nothing here raises a Lua error: app_lua only logs "error from Lua: unknown" for a Rust
//! error object, and an error per packet is a log storm. `init` reports a broken config as
//! `nil, message`, which the Lua file raises so Kamailio refuses to start.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::os::raw::{c_char, c_int};

use mlua::ffi;
use mlua::prelude::*;

use crate::config::Config;
use crate::engine::Verdict;
use crate::process::{self, Guard};

static CONFIG: Mutex<Option<Arc<Config>>> = Mutex::new(None);

/// The config's warnings from the last `init`, logged through the logger by the next request-path
/// call: app_lua refuses `KSR.log` outside a SIP message ("invalid Lua environment"), so the
/// script's top level, where `init` runs, cannot log them itself.
static PENDING_WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HAS_PENDING_WARNINGS: AtomicBool = AtomicBool::new(false);
/// Every note `init` has queued in this process, so none is logged twice.
static LAST_WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

const LOGGER_KEY: &str = "sipguard.logger";

/// Runs `f` on a Lua string argument as text, borrowed from Lua (no copy on the request path);
/// invalid UTF-8 is replaced, so the parsers refuse it cleanly. `nil` (or a table, a boolean…)
/// is `""`, and so is `<null>`: how `lua_run` prints an unset pseudo-variable (e.g.
/// `$avp(s:countryCode)` for an unknown country), meaning "no value", not junk to log.
fn with_text<R>(arg: Option<&[u8]>, f: impl FnOnce(&str) -> R) -> R {
    match arg {
        None | Some(b"<null>") => f(""),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(t) => f(t),
            Err(_) => f(&String::from_utf8_lossy(bytes)),
        },
    }
}

/// Argument `i` (1-based) as bytes borrowed from the Lua stack: strings and numbers (which Lua
/// converts), `None` for anything else.
///
/// # Safety
/// `l` is the state of a running C function call; the slice lives until it returns.
unsafe fn arg<'a>(l: *mut ffi::lua_State, i: c_int) -> Option<&'a [u8]> {
    if ffi::lua_gettop(l) < i || ffi::lua_isstring(l, i) == 0 {
        return None;
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, i, &mut len);
    (!p.is_null()).then(|| std::slice::from_raw_parts(p.cast::<u8>(), len))
}

/// Pushes the answers and returns their count, as a C function does.
///
/// # Safety
/// `l` is the state of a running C function call. Only `&'static str`s are pushed, after every
/// Rust value with a destructor is gone, so a Lua error (out of memory) cannot skip one.
unsafe fn answer(l: *mut ffi::lua_State, values: &[&'static str]) -> c_int {
    for v in values {
        ffi::lua_pushlstring(l, v.as_ptr().cast::<c_char>(), v.len());
    }
    values.len() as c_int
}

/// Parses the config (argument, or `SIPGUARD_CONFIG`, or the default path) and keeps it for
/// this process. Returns `true`, or `nil, message`: the Lua file raises that message as a plain
/// string, since app_lua prints a Rust error object only as "unknown".
/// A third value lists warnings (e.g. a world-readable file holding a password); they are also
/// logged, at `warn`, by this process's next check call (through the logger), once.
///
/// Run again (`kamcmd app_lua.reload` re-runs the script in every worker), it never changes a
/// running worker silently and never makes the script raise: a config that now differs is named
/// in one warning ("restart Kamailio to apply"), a broken one is reported once and the config
/// in force is kept. Only a process that has no config yet (Kamailio starting) gets `nil`.
fn init(lua: &Lua, path: Option<String>) -> LuaResult<(Option<bool>, Option<String>, LuaTable)> {
    let path = path
        .map(std::path::PathBuf::from)
        .unwrap_or_else(Config::env_path);
    let kept = CONFIG.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    let mut notes = Vec::new();
    let (ok, err) = match Config::load(&path) {
        Ok(cfg) => {
            notes.extend(cfg.warnings(&path));
            match process::running_config() {
                Some(running) => {
                    let changed = running.changed_fields(&cfg);
                    if !changed.is_empty() {
                        notes.push(format!(
                            "{} changed in {}: restart Kamailio to apply (this worker keeps the settings it started with)",
                            changed.join(", "),
                            path.display()
                        ));
                    }
                }
                // No guard yet in this process: the new config applies at its first check.
                None => *CONFIG.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(cfg)),
            }
            (Some(true), None)
        }
        Err(e) if kept => {
            notes.push(format!("{e}; keeping the config in force"));
            (Some(true), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let warnings = lua.create_table()?;
    for (i, w) in notes.iter().enumerate() {
        warnings.raw_set(i + 1, format!("sipguard: {w}"))?;
    }
    log_once(notes);
    Ok((ok, err, warnings))
}

/// Queues for the next check call the `notes` this process has not queued before: each
/// app_lua.reload runs `init` again, and only what is new is said (a warning already logged
/// is not repeated when another note joins it).
fn log_once(notes: Vec<String>) {
    let mut logged = LAST_WARNINGS.lock().unwrap_or_else(|p| p.into_inner());
    let new: Vec<String> = notes.into_iter().filter(|n| !logged.contains(n)).collect();
    if new.is_empty() {
        return;
    }
    logged.extend(new.iter().cloned());
    // The list first, then the flag that makes a call take it.
    PENDING_WARNINGS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(new);
    HAS_PENDING_WARNINGS.store(true, Ordering::Release);
}

/// Registers the function log lines go to, e.g. `function(level, msg) KSR.log(level, msg .. "\n") end`.
fn set_logger(lua: &Lua, f: LuaFunction) -> LuaResult<()> {
    lua.set_named_registry_value(LOGGER_KEY, f)
}

/// This process's guard. The config is read (from `init`, else `SIPGUARD_CONFIG`) only when
/// the guard is first built, not on every request.
fn guard() -> Result<Arc<Guard>, String> {
    process::current(|| {
        let mut slot = CONFIG.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(c) => Ok(c.clone()),
            None => {
                let c = Arc::new(Config::from_env().map_err(|e| e.to_string())?);
                *slot = Some(c.clone());
                Ok(c)
            }
        }
    })
}

/// Logs through the registered logger, else (or if it raises) to stderr; never panics: on a
/// broken pipe (EPIPE) the line is lost, where `eprintln!` would panic on the request path.
fn emit(lua: &Lua, level: &str, msg: &str) {
    use std::io::Write;
    let line = format!("sipguard: {msg}");
    let logged = match lua.named_registry_value::<Option<LuaFunction>>(LOGGER_KEY) {
        Ok(Some(f)) => f.call::<()>((level, line.as_str())).is_ok(),
        _ => false,
    };
    if !logged {
        let _ = writeln!(std::io::stderr().lock(), "{level}: {line}");
    }
}

/// Runs one request-path call: never panics into Lua, always flushes queued log lines. The
/// `mlua::Lua` handle (to reach the logger) is only built when there is something to log.
///
/// # Safety
/// `l` is the state of a running C function call.
unsafe fn call<T>(
    l: *mut ffi::lua_State,
    name: &str,
    fallback: T,
    f: impl FnOnce(&Guard) -> T,
) -> T {
    // SAFETY: `l` is a live state (the caller's contract); mlua attaches to it or finds the
    // handle it made when the module was loaded.
    let lua = || unsafe { Lua::get_or_init_from_ptr(l) };
    // The whole body is caught, not only the decision: building the guard (a thread to spawn)
    // and logging can fail too, and a panic must not cross into Lua's C frames.
    let out = catch_unwind(AssertUnwindSafe(|| call_body(lua, name, f))).unwrap_or(None);
    out.unwrap_or(fallback)
}

/// [`call`]'s body: `None` on any failure, which the caller answers with its fallback.
fn call_body<'l, T>(
    lua: impl Fn() -> &'l Lua,
    name: &str,
    f: impl FnOnce(&Guard) -> T,
) -> Option<T> {
    if HAS_PENDING_WARNINGS.swap(false, Ordering::AcqRel) {
        let pending =
            std::mem::take(&mut *PENDING_WARNINGS.lock().unwrap_or_else(|p| p.into_inner()));
        for w in pending {
            emit(lua(), "warn", &w);
        }
    }
    match guard() {
        Ok(g) => {
            let out = catch_unwind(AssertUnwindSafe(|| f(&g)));
            for (level, msg) in g.take_logs() {
                emit(lua(), level.as_ksr(), &msg);
            }
            out.map(Some).unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                emit(
                    lua(),
                    "crit",
                    &format!("{name}: internal error ({why}); answering \"\""),
                );
                None
            })
        }
        Err(e) => {
            emit(lua(), "err", &format!("{name}: {e}"));
            None
        }
    }
}

fn verdict_pair(v: &Verdict) -> (&'static str, &'static str) {
    (v.status(), v.kind())
}

// The request-path functions are plain C functions on Lua's own API: mlua's callback layer
// (argument conversion, reference stack, error protection) cost ~0.3 us per call inside a
// Kamailio worker (perf), as much as the lookups. Each one reads its arguments, runs under
// `call` (no panic escapes, logs flushed) and pushes `&'static str` answers.

/// The shape of the one-argument checks: read the argument, decide under `call`, push
/// `status, type` (`"", ""` when clear or on any failure).
///
/// # Safety
/// `l` is the state of a running C function call.
unsafe fn one_check(
    l: *mut ffi::lua_State,
    name: &str,
    decide: fn(&Guard, &str) -> Verdict,
) -> c_int {
    let raw = arg(l, 1);
    let (s, k) = call(l, name, ("", ""), |g| {
        with_text(raw, |text| verdict_pair(&decide(g, text)))
    });
    answer(l, &[s, k])
}

/// `check_blacklist(ip)` → `status, type` (`"black", "ip"`, `"white", "ip"` or `"", ""`), from
/// `white_list` (wins) and `black_list`. `ip`: IPv4, IPv6, `[IPv6]` or IPv4-mapped; junk answers
/// `"", ""` with one rate-limited log line. KEMI:
/// `if sipguard.check_blacklist(KSR.kx.get_srcip()) == "black" then KSR.x.drop() end`.
unsafe extern "C-unwind" fn check_blacklist(l: *mut ffi::lua_State) -> c_int {
    one_check(l, "check_blacklist", Guard::check_blacklist)
}

/// `get_countrycode(ip)` → ISO code of the narrowest range in `ipcountry`/`ipcountry6`, or `""`
/// (unknown, private, loopback). KEMI: `local cc = sipguard.get_countrycode(KSR.kx.get_srcip())`.
unsafe extern "C-unwind" fn get_countrycode(l: *mut ffi::lua_State) -> c_int {
    let ip = arg(l, 1);
    let cc = call(l, "get_countrycode", "", |g| {
        with_text(ip, |ip| g.country_code(ip))
    });
    answer(l, &[cc])
}

/// `check_country_blacklist(cc)` → `status, type` (`"black", "country"` or `"", ""`), from
/// `black_list_country`, any case; `""` and `"<null>"` are never listed. KEMI:
/// `if sipguard.check_country_blacklist(cc) == "black" then KSR.x.drop() end`.
unsafe extern "C-unwind" fn check_country_blacklist(l: *mut ffi::lua_State) -> c_int {
    one_check(l, "check_country_blacklist", Guard::check_country)
}

/// `check_user_blacklist(user)` → `status, type` (`"black", "user"` or `"", ""`), from
/// `black_list_user`, exact match; a number argument is taken as its digits. KEMI:
/// `if sipguard.check_user_blacklist(KSR.kx.gete_fuser()) == "black" then KSR.x.drop() end`.
unsafe extern "C-unwind" fn check_user_blacklist(l: *mut ffi::lua_State) -> c_int {
    one_check(l, "check_user_blacklist", Guard::check_user)
}

/// `check_user_agent(ua)` → `status, type` (`"black", "ua"` or `"", ""`): scanner substrings
/// from the config and `black_list_ua`, case-insensitive. KEMI:
/// `if sipguard.check_user_agent(KSR.kx.gete_ua()) == "black" then KSR.x.drop() end`.
unsafe extern "C-unwind" fn check_user_agent(l: *mut ffi::lua_State) -> c_int {
    one_check(l, "check_user_agent", Guard::check_user_agent)
}

/// `check(ip, ua, user)` → `status, type, country`: every check in one call, in the shipped
/// cfg's order (allow-list, blacklist, User-Agent, country, user); `type` is `ip`, `ua`,
/// `country`, `user` or `nodata`. KEMI:
/// `local st, kind, cc = sipguard.check(KSR.kx.get_srcip(), KSR.kx.gete_ua(), KSR.kx.gete_fuser())`.
unsafe extern "C-unwind" fn check(l: *mut ffi::lua_State) -> c_int {
    let (ip, ua, user) = (arg(l, 1), arg(l, 2), arg(l, 3));
    let (s, k, cc) = call(l, "sipguard_check", ("", "", ""), |g| {
        with_text(ip, |ip| {
            with_text(ua, |ua| {
                with_text(user, |user| {
                    let (v, cc) = g.check_all(ip, ua, user);
                    (v.status(), v.kind(), cc)
                })
            })
        })
    });
    answer(l, &[s, k, cc])
}

/// `ban(source, seconds, reason)` → `"banned"`, `"already"`, `"white"`, `"invalid"` or
/// `"dropped"` (see [`crate::ban_request::BanOutcome`]): bans an address or network on every
/// node for `seconds` (1 s to a year), through `sipguard_ban`. Never waits: this worker enforces
/// it at once, its background thread writes it. KEMI:
/// `sipguard.ban(KSR.kx.get_srcip(), 300, "pike flood")`.
unsafe extern "C-unwind" fn ban(l: *mut ffi::lua_State) -> c_int {
    let (source, seconds, reason) = (arg(l, 1), arg(l, 2), arg(l, 3));
    let outcome = call(l, "ban", "invalid", |g| {
        with_text(source, |source| {
            with_text(seconds, |seconds| {
                with_text(reason, |reason| g.ban(source, seconds, reason).as_str())
            })
        })
    });
    answer(l, &[outcome])
}

/// Builds the module table; `require "sipguard"` returns it. Does no I/O: it runs in
/// Kamailio's main process before fork, and again in every child.
///
/// Without `skip_memory_check`: mlua then runs every allocating call of its own (tables,
/// strings, the logger call in [`emit`]) in protected mode, so an out-of-memory error comes
/// back as a `Result` instead of a `longjmp` over Rust frames that still own values (a leaked
/// `String`, a lock never released). The request path's raw calls are ordered for the same
/// reason: arguments are read before anything is owned, answers pushed after everything is
/// dropped (see [`answer`]); `tests/lua/oom_host.c` fails allocations at every point to check.
#[mlua::lua_module]
fn sipguard(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("init", lua.create_function(init)?)?;
    t.set("set_logger", lua.create_function(set_logger)?)?;
    let request_path: [(&str, ffi::lua_CFunction); 7] = [
        ("check_blacklist", check_blacklist),
        ("get_countrycode", get_countrycode),
        ("check_country_blacklist", check_country_blacklist),
        ("check_user_blacklist", check_user_blacklist),
        ("check_user_agent", check_user_agent),
        ("check", check),
        ("ban", ban),
    ];
    for (name, f) in request_path {
        // SAFETY: each function only reads its arguments, catches every panic, and pushes
        // static strings (see `call` and `answer`).
        t.set(name, unsafe { lua.create_c_function(f)? })?;
    }
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    Ok(t)
}
