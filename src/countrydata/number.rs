//! Addresses written as decimal numbers (db-ip `-num` files, IP2Location) or as text, read
//! strictly: a spreadsheet that rounded `16777216` to `1.6777216E7`, or a tool that padded it
//! to `016777216`, must not become some other address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Family;

/// A decimal number of `family`: digits only, no sign, no leading zero (except `0` itself),
/// no exponent, no decimal point, within the family's range.
pub fn decimal(s: &str, family: Family) -> Result<IpAddr, String> {
    if s.is_empty() {
        return Err("empty address".into());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(if s.bytes().any(|b| b == b'e' || b == b'E') {
            format!("{s:?} has an exponent (a number rounded by a spreadsheet?)")
        } else if s.contains('.') || s.contains(',') {
            format!("{s:?} has a decimal point (a number rounded by a spreadsheet?)")
        } else {
            format!("{s:?} is neither an IP address nor a decimal number")
        });
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{s:?} has a leading zero, which is ambiguous"));
    }
    match family {
        Family::V4 => s
            .parse::<u32>()
            .map(|n| IpAddr::V4(Ipv4Addr::from(n)))
            .map_err(|_| format!("{s} is too large for an IPv4 address (family IPv4 from the file name, format or --family)")),
        Family::V6 => s
            .parse::<u128>()
            .map(|n| IpAddr::V6(Ipv6Addr::from(n)))
            .map_err(|_| format!("{s} is too large for an IPv6 address")),
    }
}

/// An address in text form: a dotted quad (no leading zeros: `010.0.0.1` is octal to some
/// tools and decimal to others) or IPv6 colon notation.
pub fn text(s: &str) -> Result<IpAddr, String> {
    if s.contains(':') {
        return s
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| format!("{s:?} is not an IPv6 address"));
    }
    s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
        if s.split('.').any(|o| o.len() > 1 && o.starts_with('0')) {
            format!("{s:?} has a leading zero in an octet, which is ambiguous (octal or decimal?)")
        } else {
            format!("{s:?} is not an IPv4 address")
        }
    })
}

/// Is `s` written as an address (dots or colons) rather than as a number?
pub fn looks_textual(s: &str) -> bool {
    s.contains(':') || s.bytes().filter(|&b| b == b'.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_take_their_family_from_the_caller_not_their_size() {
        assert_eq!(
            decimal("16777216", Family::V4).unwrap().to_string(),
            "1.0.0.0"
        );
        assert_eq!(
            decimal("16777216", Family::V6).unwrap().to_string(),
            "::100:0"
        );
        assert_eq!(decimal("0", Family::V4).unwrap().to_string(), "0.0.0.0");
        assert!(decimal("4294967296", Family::V4)
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn rounded_and_padded_numbers_are_refused() {
        for (s, why) in [
            ("1.6777216E7", "exponent"),
            ("1.6777216e+07", "exponent"),
            ("16777216.0", "decimal point"),
            ("016777216", "leading zero"),
            ("-1", "neither"),
            ("0x100", "neither"),
            ("", "empty"),
        ] {
            let e = decimal(s, Family::V4).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn text_addresses_are_strict() {
        assert_eq!(text("1.2.3.4").unwrap().to_string(), "1.2.3.4");
        assert!(text("2001:db8::1").unwrap().is_ipv6());
        assert!(text("010.0.0.1").unwrap_err().contains("leading zero"));
        assert!(text("1.2.3.256").unwrap_err().contains("not an IPv4"));
        assert!(text("2001:db8::g").unwrap_err().contains("not an IPv6"));
        assert!(looks_textual("1.2.3.4") && looks_textual("::1") && !looks_textual("1.6777216E7"));
    }
}
