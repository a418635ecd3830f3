//! Bans a worker asks for (`sipguard.ban(ip, seconds, reason)`), on the request side: the
//! arguments checked, the ban enforced at once by the worker that made it, and handed to its
//! background thread (which writes `sipguard_ban`, see `loader::ban_writer`) through a bounded
//! queue that never blocks. Pure data and std channels: no Lua, no MySQL.
//!
//! Caps, per worker: [`QUEUE`] bans waiting for the background thread and [`OWN_MAX`] own bans
//! held for enforcement; past either, a ban is dropped and counted (`bans_dropped`), never
//! waited for. A source already banned here until at least the new end (less [`slack`]) is not
//! asked again (`bans_coalesced`): a flood calls the ban once per packet.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;

use ipnet::IpNet;
use thiserror::Error;

use crate::addr::printable;
use crate::listcheck::{self, Concern};
use crate::netset::parse_net;

/// Bans waiting for the background thread, per worker (the channel's capacity).
pub const QUEUE: usize = 10_000;
/// Own bans a worker holds for enforcement until they end; with expired ones pruned first.
pub const OWN_MAX: usize = 10_000;
/// The longest ban: a year (366 days), in seconds.
pub const MAX_SECONDS: u64 = 366 * 86_400;
/// Sources the background thread keeps waiting for the database, per worker.
pub const WRITER_QUEUE: usize = 10_000;
/// The most `sipguard_ban` rows one worker writes per second (the rest wait in its queue).
pub const ROWS_PER_SECOND: usize = 500;
/// Bytes of `reason` kept (the column is `varchar(255)`); cut at a character boundary.
pub const REASON_MAX: usize = 255;

/// A ban as the worker asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRequest {
    /// The address (a /32 or /128) or network banned, canonical (IPv4-mapped as IPv4).
    pub source: IpNet,
    /// When it ends, Unix ms on this node's clock.
    pub until_ms: u64,
    /// Why, as the caller said it (cut to [`REASON_MAX`] bytes).
    pub reason: String,
}

/// Why a ban was not taken; logged (rate-limited), the caller gets a status word.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BanRefused {
    /// Not an address or a network (leading zeros, junk, a port).
    #[error("ban: {0:?} is not an address or network")]
    Source(String),
    /// Not a whole number of seconds in 1..=[`MAX_SECONDS`].
    #[error("ban: {0:?} is not a number of seconds from 1 to {MAX_SECONDS}")]
    Seconds(String),
    /// Wider than the list guard rails allow (a /8 IPv4, a /16 IPv6): a typo away from
    /// banning everyone. `sipguard-admin ban add --force` can.
    #[error("ban: {0}; wider than a /8 (IPv4) or /16 (IPv6) needs sipguard-admin ban add --force")]
    Wide(String),
}

/// What became of a ban, as `sipguard.ban` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanOutcome {
    /// Enforced by this worker now, queued for `sipguard_ban` (every node within the bound).
    Banned,
    /// The source is already banned here until at least the new end, less [`slack`].
    Already,
    /// The source is allow-listed (`white_list`): never banned; logged once per source.
    White,
    /// Bad arguments or too wide (logged, rate-limited).
    Invalid,
    /// A queue or the own-ban table was full: not enforced, counted.
    Dropped,
}

impl BanOutcome {
    /// The word `sipguard.ban` returns: `banned`, `already`, `white`, `invalid`, `dropped`.
    pub fn as_str(self) -> &'static str {
        match self {
            BanOutcome::Banned => "banned",
            BanOutcome::Already => "already",
            BanOutcome::White => "white",
            BanOutcome::Invalid => "invalid",
            BanOutcome::Dropped => "dropped",
        }
    }
}

/// Checks `sipguard.ban`'s arguments: `source` an address (`$si`, `[IPv6]`, IPv4-mapped) or a
/// CIDR network (host bits dropped), `seconds` whole seconds (`"300"`, or `"300.0"` as Lua 5.4
/// prints a float; never rounded), `reason` free text. `now_ms` is the node's clock.
pub fn parse(
    source: &str,
    seconds: &str,
    reason: &str,
    now_ms: u64,
) -> Result<BanRequest, BanRefused> {
    let net = parse_source(source, false)?;
    let secs = parse_seconds(seconds)
        .filter(|s| (1..=MAX_SECONDS).contains(s))
        .ok_or_else(|| BanRefused::Seconds(printable(seconds.trim())))?;
    Ok(BanRequest {
        source: net,
        until_ms: now_ms.saturating_add(secs * 1000),
        reason: self::reason(reason),
    })
}

/// A ban's source: an address (`$si`, `[IPv6]`, IPv4-mapped as IPv4) or a CIDR network (host
/// bits dropped), as `black_list` takes them; wider than a /8 or /16 only with `force`.
pub fn parse_source(raw: &str, force: bool) -> Result<IpNet, BanRefused> {
    let net = parse_net(raw).ok_or_else(|| BanRefused::Source(printable(raw.trim())))?;
    if !force {
        if let Some(c) = listcheck::concerns(raw, net)
            .into_iter()
            .find(|c| matches!(c, Concern::Wide { .. }))
        {
            return Err(BanRefused::Wide(c.describe(raw)));
        }
    }
    Ok(net)
}

/// Digits, optionally followed by `.` and zeros only.
fn parse_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || whole.len() > 12 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b == b'0') {
        return None;
    }
    whole.parse().ok()
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How much earlier than a new ban's end an existing ban may end and still stand for it: a
/// tenth of the ban, at least 10 s. A flood re-banned every packet then writes once.
pub fn slack(until_ms: u64, now_ms: u64) -> u64 {
    (until_ms.saturating_sub(now_ms) / 10).max(10_000)
}

/// True when a ban ending at `held_ms` stands for a new one ending at `until_ms` (see [`slack`]).
pub fn covers(held_ms: u64, until_ms: u64, now_ms: u64) -> bool {
    held_ms.saturating_add(slack(until_ms, now_ms)) >= until_ms
}

/// `reason` as stored: trimmed, at most [`REASON_MAX`] bytes, cut at a character boundary.
pub fn reason(raw: &str) -> String {
    cut(raw.trim(), REASON_MAX).to_string()
}

/// The bounded hand-over from the request path to the background thread, which it wakes.
pub struct BanOutbox {
    tx: SyncSender<BanRequest>,
    rx: Mutex<Receiver<BanRequest>>,
    wake: tokio::sync::Notify,
}

impl Default for BanOutbox {
    fn default() -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        BanOutbox {
            tx,
            rx: Mutex::new(rx),
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl BanOutbox {
    /// Queues `ban` and wakes the writer, without waiting; `false` when the queue is full.
    pub fn offer(&self, ban: BanRequest) -> bool {
        match self.tx.try_send(ban) {
            Ok(()) => {
                // A permit is stored when the writer is busy: it then passes again at once.
                self.wake.notify_one();
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Resolves when a ban has been queued since the last wake (the writer's side).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Takes what is queued (the background thread's side).
    pub fn drain(&self) -> Vec<BanRequest> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        rx.try_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_never_guessed() {
        let b = parse(" [2001:db8::7] ", "300", " pike ", 1_000).unwrap();
        assert_eq!(b.source, "2001:db8::7/128".parse::<IpNet>().unwrap());
        assert_eq!(b.until_ms, 301_000);
        assert_eq!(b.reason, "pike");
        let b = parse("::ffff:192.0.2.7", "60.0", "", 0).unwrap();
        assert_eq!(b.source, "192.0.2.7/32".parse::<IpNet>().unwrap());
        assert_eq!(b.until_ms, 60_000);
        assert_eq!(
            parse("198.51.100.77/24", "1", "", 0).unwrap().source,
            "198.51.100.0/24".parse::<IpNet>().unwrap()
        );
        for (src, secs) in [
            ("010.1.1.1", "300"),
            ("192.0.2.1:5060", "300"),
            ("", "300"),
            ("192.0.2.1", "0"),
            ("192.0.2.1", "-5"),
            ("192.0.2.1", "2.5"),
            ("192.0.2.1", "1e3"),
            ("192.0.2.1", ""),
            ("192.0.2.1", "31622401"),
            ("10.0.0.0/7", "300"),
            ("2001::/15", "300"),
        ] {
            assert!(parse(src, secs, "", 0).is_err(), "{src} {secs}");
        }
        assert!(matches!(
            parse("0.0.0.0/0", "1", "", 0),
            Err(BanRefused::Wide(m)) if m.contains("all of IPv4")
        ));
        let long = "é".repeat(200);
        assert_eq!(parse("192.0.2.1", "1", &long, 0).unwrap().reason.len(), 254);
    }

    #[test]
    fn slack_is_a_tenth_at_least_ten_seconds() {
        assert_eq!(slack(300_000, 0), 30_000);
        assert_eq!(slack(20_000, 0), 10_000);
        assert_eq!(slack(0, 5), 10_000);
    }

    #[test]
    fn the_outbox_is_bounded_and_never_blocks() {
        let o = BanOutbox::default();
        let b = parse("192.0.2.1", "1", "", 0).unwrap();
        for _ in 0..QUEUE {
            assert!(o.offer(b.clone()));
        }
        assert!(!o.offer(b.clone()), "the queue is full: refused at once");
        assert_eq!(o.drain().len(), QUEUE);
        assert!(o.offer(b));
        assert_eq!(o.drain().len(), 1);
    }
}
