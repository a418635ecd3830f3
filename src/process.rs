//! Per-process state: which [`Guard`] this Kamailio worker runs (the request path is in
//! `guard`, the loader threads in `loader`).
//!
//! Kamailio forks its workers after loading the Lua script, so anything created before the
//! fork (a tokio runtime, a socket) would be shared by every child and corrupt each other
//! (measured: a worker died with SIGSEGV). State is therefore keyed by `process::id()` and
//! built lazily on first use in each process; a child that finds its parent's state forgets it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
pub use crate::guard::Guard;

static CURRENT: Mutex<Option<(u64, Arc<Guard>)>> = Mutex::new(None);

/// Forks seen by this process image, counted by a `pthread_atfork` child handler: knowing
/// "am I still the process that built the guard" without a `getpid` syscall per call.
static FORKS: AtomicU64 = AtomicU64::new(0);
static ATFORK: std::sync::Once = std::sync::Once::new();

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn fork_generation() -> u64 {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, which is async-signal-safe
        // and therefore safe in a child right after fork.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
        // Without the handler, fall back to the pid (one syscall per call, still correct).
        if rc != 0 {
            FORKS.store(u64::MAX, Ordering::Relaxed);
        }
    });
    match FORKS.load(Ordering::Relaxed) {
        u64::MAX => u64::from(std::process::id()) | 1 << 63,
        n => n,
    }
}

/// The config of this process's guard, if this process has built one (its first check call):
/// from then on its settings are in force and a config read again cannot change them.
pub fn running_config() -> Option<Arc<Config>> {
    let generation = fork_generation();
    let slot = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_ref() {
        Some((g_at, g)) if *g_at == generation => Some(g.config_arc()),
        _ => None,
    }
}

/// This process's guard; on first use (in this process) started with the config `cfg` gives,
/// which is asked for only then.
///
/// A guard inherited across `fork` is forgotten, not dropped: its loader thread does not exist
/// here, and dropping could close descriptors the parent still uses.
pub fn current<E>(cfg: impl FnOnce() -> Result<Arc<Config>, E>) -> Result<Arc<Guard>, E> {
    let generation = fork_generation();
    let mut slot = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_ref() {
        Some((g_at, g)) if *g_at == generation => Ok(g.clone()),
        _ => {
            let g = Guard::start(cfg()?);
            if let Some(inherited) = slot.take() {
                std::mem::forget(inherited);
            }
            *slot = Some((generation, g.clone()));
            Ok(g)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn same_process_reuses_its_guard() {
        let cfg = Arc::new(
            Config::parse(
                r#"{"db_url":"mysql://u@127.0.0.1:1/db","stats_dir":null,"snapshot_dir":null}"#,
                Path::new("t"),
            )
            .unwrap(),
        );
        let a = current(|| Ok::<_, ()>(cfg.clone())).unwrap();
        let b = current(|| Err(())).expect("second call reuses the guard, no config needed");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
