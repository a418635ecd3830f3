//! Kamailio's SIP worker processes, as Kamailio itself lists them (`kamcmd -s SOCKET core.psx`
//! over its `ctl` control socket), so that `sipguard-admin warm` can name every worker of the
//! node, including those that have not received a request yet and so have written no stats file.

use std::process::Stdio;
use std::time::Duration;

use super::AdminError;

/// One process from `core.psx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KamailioProcess {
    /// Its pid (`PID:`).
    pub pid: u32,
    /// Kamailio's description of it (`DSC:`), e.g. `udp receiver child=0 sock=127.0.0.1:5060`.
    pub description: String,
}

impl KamailioProcess {
    /// Whether it receives SIP and so runs the routing script per message: the UDP, TCP and
    /// SCTP receivers (`udp receiver child=N`, `tcp receiver (generic) child=N`, …). Timers,
    /// the RPC and main processes never call sipguard.
    pub fn is_sip_worker(&self) -> bool {
        let d = &self.description;
        d.contains("receiver") && d.contains("child=")
    }
}

/// Parses `core.psx`'s answer as kamcmd prints it: one `{ IDX: n  PID: n  DSC: text }` block per
/// process. Blocks without a numeric PID are skipped.
pub fn parse_psx(text: &str) -> Vec<KamailioProcess> {
    let mut out = Vec::new();
    let (mut pid, mut description) = (None, None);
    for line in text.lines().map(str::trim) {
        if line == "{" {
            (pid, description) = (None, None);
        } else if let Some(v) = line.strip_prefix("PID:") {
            pid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("DSC:") {
            description = Some(v.trim().to_string());
        } else if line == "}" {
            if let (Some(pid), Some(description)) = (pid.take(), description.take()) {
                out.push(KamailioProcess { pid, description });
            }
        }
    }
    out
}

/// Asks the Kamailio behind control socket `ctl` (`unix:/run/kamailio/kamailio_ctl`, Kamailio's
/// default) for its processes, with `kamcmd` (Debian's `kamailio` package). Gives up after
/// `deadline`: a hung Kamailio must not hang the tool.
///
/// Errors: [`AdminError::Kamailio`] naming kamcmd's complaint (not installed, no such socket,
/// permission, nothing listed) or the timeout.
pub async fn processes(ctl: &str, deadline: Duration) -> Result<Vec<KamailioProcess>, AdminError> {
    let run = tokio::process::Command::new("kamcmd")
        .args(["-s", ctl, "core.psx"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(deadline, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(AdminError::Kamailio(format!("kamcmd: {e}"))),
        Err(_) => {
            return Err(AdminError::Kamailio(format!(
                "kamcmd -s {ctl} core.psx: no answer within {} s",
                deadline.as_secs()
            )))
        }
    };
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let found = parse_psx(&text);
    if !out.status.success() || found.is_empty() {
        let why = err
            .lines()
            .chain(text.lines())
            .next()
            .unwrap_or("no processes listed");
        return Err(AdminError::Kamailio(format!(
            "kamcmd -s {ctl} core.psx: {why}"
        )));
    }
    Ok(found)
}

/// Where a Kamailio process stands with sipguard, read from `/proc/PID` (same user or root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    /// The module is not mapped: this Kamailio does not load sipguard (or the pid is gone).
    NotLoaded,
    /// The module is loaded (the Lua script `require`d it) but has not started: no request yet.
    Idle,
    /// Its loader thread runs (`sipguard-db`): it has had a request.
    Started,
}

/// Reads `/proc/PID/maps` for the module and `/proc/PID/task/*/comm` for its threads.
pub fn module_state(pid: u32) -> ModuleState {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok());
    if threads.into_iter().any(|c| c.starts_with("sipguard-")) {
        return ModuleState::Started;
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if maps
        .lines()
        .any(|l| l.ends_with("/sipguard.so") || l.ends_with("/libsipguard.so"))
    {
        ModuleState::Idle
    } else {
        ModuleState::NotLoaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PSX: &str = "{\n\tIDX: 0\n\tPID: 15187\n\tDSC: main process - attendant\n}\n{\n\tIDX: 1\n\tPID: 15193\n\tDSC: udp receiver child=0 sock=127.0.0.1:5060\n}\n{\n\tIDX: 2\n\tPID: 15195\n\tDSC: slow timer\n}\n{\n\tIDX: 3\n\tPID: 15199\n\tDSC: tcp receiver (generic) child=0\n}\n{\n\tIDX: 4\n\tPID: 15200\n\tDSC: tcp main process\n}\n{\n\tIDX: 5\n\tPID: x\n\tDSC: udp receiver child=1 sock=127.0.0.1:5060\n}\n";

    #[test]
    fn psx_blocks_are_read_and_only_receivers_are_sip_workers() {
        let all = parse_psx(PSX);
        assert_eq!(
            all.len(),
            5,
            "the block with a non-numeric PID is skipped: {all:?}"
        );
        assert_eq!(all[1].pid, 15193);
        assert_eq!(
            all[1].description,
            "udp receiver child=0 sock=127.0.0.1:5060"
        );
        let workers: Vec<u32> = all
            .iter()
            .filter(|p| p.is_sip_worker())
            .map(|p| p.pid)
            .collect();
        assert_eq!(workers, [15193, 15199]);
    }

    #[tokio::test]
    async fn an_unreachable_socket_is_an_error_naming_it() {
        let ctl = "unix:/nonexistent/sipguard-test/kamailio_ctl";
        match processes(ctl, Duration::from_secs(5)).await {
            Err(AdminError::Kamailio(m)) => {
                assert!(m.contains("core.psx") || m.contains("kamcmd: "), "{m}")
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_process_without_the_module_is_not_loaded_and_a_sipguard_thread_means_started() {
        // Other tests in this binary start sipguard threads, so a plain child process is the
        // process without the module; this process, with a named thread parked, is Started.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let state = module_state(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(state, ModuleState::NotLoaded);
        assert_eq!(module_state(u32::MAX), ModuleState::NotLoaded);

        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::Builder::new()
            .name("sipguard-test".into())
            .spawn(move || {
                let _ = rx.recv();
            })
            .expect("thread starts");
        assert_eq!(module_state(std::process::id()), ModuleState::Started);
        drop(tx);
        parked.join().expect("thread ends");
    }
}
