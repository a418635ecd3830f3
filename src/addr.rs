//! Source addresses as Kamailio hands them over (`$si`, a header, an AVP).
//!
//! `$si` is usually clean, but the same functions are fed from headers and AVPs in real
//! configs, so everything here is strict: one address, no ports, no zone ids, no leading
//! zeros (`010.1.1.1` is *not* 8.1.1.1, whatever `inet_aton` would say).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Why a string is not a usable source address. Carried to the log (rate-limited), never to SIP.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddrError {
    /// Nothing left after trimming.
    #[error("empty address")]
    Empty,
    /// Longer than any textual IPv6 address; refusing early keeps junk out of the parser and the log.
    #[error("address too long ({0} bytes)")]
    TooLong(usize),
    /// Not an IPv4 or IPv6 address in canonical-enough form.
    #[error("not an IP address: {0:?}")]
    Invalid(String),
}

/// Longest accepted input: `[` + 45 chars of IPv4-mapped IPv6 + `]` + a little whitespace.
const MAX_LEN: usize = 64;

/// Parses a source address as `$si`, `[IPv6]`, or IPv4-mapped IPv6, trimming stray spaces.
///
/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is returned as the IPv4 address, because that is
/// the address lists and country ranges know it by.
pub fn parse_source(raw: &str) -> Result<IpAddr, AddrError> {
    if raw.len() > MAX_LEN {
        return Err(AddrError::TooLong(raw.len()));
    }
    let s = raw.trim();
    if s.is_empty() {
        return Err(AddrError::Empty);
    }
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    // std's parsers reject leading zeros, zone ids, ports and trailing junk, which is what we want.
    let ip: IpAddr = inner
        .parse()
        .map_err(|_| AddrError::Invalid(printable(inner)))?;
    Ok(canonical(ip))
}

/// Folds IPv4-mapped IPv6 into IPv4 so one source has one key in lists and caches.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// True for addresses that can have a country: not private, loopback, link-local, CGNAT,
/// multicast or unspecified. Those answer `""` without a lookup, as the country data has no
/// rows for them and an operator expects "unknown", not a guess.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    let cgnat = o[0] == 100 && (o[1] & 0xc0) == 64;
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || o[0] == 0
        || cgnat)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg0 = ip.segments()[0];
    let unique_local = (seg0 & 0xfe00) == 0xfc00;
    let link_local = (seg0 & 0xffc0) == 0xfe80;
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || unique_local || link_local)
}

/// A short, single-line, ASCII rendering of untrusted input for log lines.
pub fn printable(s: &str) -> String {
    const KEEP: usize = 48;
    let mut out: String = s
        .chars()
        .take(KEEP)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > KEEP {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        parse_source(s).unwrap().to_string()
    }

    #[test]
    fn accepts_the_forms_kamailio_produces() {
        assert_eq!(ok("192.0.2.7"), "192.0.2.7");
        assert_eq!(ok("  192.0.2.7 "), "192.0.2.7");
        assert_eq!(ok("2001:db8::1"), "2001:db8::1");
        assert_eq!(ok("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(ok(" [2001:DB8::1] "), "2001:db8::1");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        assert_eq!(ok("::ffff:1.2.3.4"), "1.2.3.4");
        assert_eq!(ok("[::ffff:1.2.3.4]"), "1.2.3.4");
        assert_eq!(ok("::ffff:0102:0304"), "1.2.3.4");
    }

    #[test]
    fn rejects_junk() {
        assert_eq!(parse_source(""), Err(AddrError::Empty));
        assert_eq!(parse_source("   "), Err(AddrError::Empty));
        assert!(matches!(
            parse_source(&"x".repeat(1023)),
            Err(AddrError::TooLong(1023))
        ));
        for bad in [
            "010.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.4:5060",
            "fe80::1%eth0",
            "[2001:db8::1",
            "' OR 1=1 --",
            "1.2.3.4'",
            "1.2.3.4\0",
            "\u{7f}1.2.3.4",
            "99999999999999999999",
        ] {
            assert!(parse_source(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn public_excludes_local_ranges() {
        for local in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "127.0.0.5",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
        ] {
            assert!(!is_public(parse_source(local).unwrap()), "{local}");
        }
        for public in ["8.8.8.8", "2.20.179.10", "2001:4860::1", "100.128.0.1"] {
            assert!(is_public(parse_source(public).unwrap()), "{public}");
        }
    }

    #[test]
    fn printable_is_short_and_single_line() {
        let p = printable(&format!("a\nb\u{0}{}", "z".repeat(100)));
        assert!(!p.contains('\n') && !p.contains('\0'));
        assert!(p.chars().count() <= 49);
    }
}
