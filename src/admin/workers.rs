//! Kamailio's SIP worker processes, as Kamailio itself lists them (`kamcmd -s SOCKET core.psx`
//! over its `ctl` control socket), so that `sipguard-admin warm` can name every worker of the
//! node, including those that have not received a request yet and so have written no stats file.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
/// Errors: [`AdminError::Input`] naming kamcmd's complaint (no such socket, permission) or the
/// timeout.
pub fn processes(ctl: &str, deadline: Duration) -> Result<Vec<KamailioProcess>, AdminError> {
    let mut child = Command::new("kamcmd")
        .args(["-s", ctl, "core.psx"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| AdminError::Input(format!("kamcmd: {e}")))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AdminError::Input(format!(
                    "kamcmd -s {ctl} core.psx: no answer within {} s",
                    deadline.as_secs()
                )));
            }
            Err(e) => return Err(AdminError::Input(format!("kamcmd: {e}"))),
        }
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let found = parse_psx(&out);
    if !status.success() || found.is_empty() {
        let why = err
            .lines()
            .chain(out.lines())
            .next()
            .unwrap_or("no processes listed");
        return Err(AdminError::Input(format!(
            "kamcmd -s {ctl} core.psx: {why}"
        )));
    }
    Ok(found)
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

    #[test]
    fn an_unreachable_socket_is_an_error_naming_it() {
        let ctl = "unix:/nonexistent/sipguard-test/kamailio_ctl";
        match processes(ctl, Duration::from_secs(5)) {
            Err(AdminError::Input(m)) => assert!(m.contains("kamcmd"), "{m}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
