//! What a country cell means, the same for every format: exactly two ASCII letters (stored
//! upper case, user-assigned codes such as `XK` kept), or a placeholder for "no country".

use std::fmt;

/// An ISO 3166-1 alpha-2 code (or a user-assigned one such as `XK`), upper case ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode(pub [u8; 2]);

impl CountryCode {
    /// The code as text, e.g. `"ES"`.
    pub fn as_str(&self) -> &str {
        // Only ever built from two ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A country cell, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountryCell {
    /// A country: the row is stored.
    Code(CountryCode),
    /// A placeholder meaning "no country" (named as written, `(empty)` for an empty cell):
    /// the row is not stored, and the import counts it.
    NoCountry(&'static str),
}

/// Placeholders the vendors use for "no country": db-ip's `ZZ` (unassigned/reserved),
/// IP2Location's `-`, `--` seen in hand-made files, and MaxMind's legacy `A1` (anonymous
/// proxy), `A2` (satellite provider), `O1` (other).
const PLACEHOLDERS: [&str; 6] = ["ZZ", "-", "--", "A1", "A2", "O1"];

/// Reads a country cell (already trimmed of spaces and quotes by the CSV reader).
///
/// Errors, with the reason for the operator: a code of any length other than two, or with
/// anything but letters (`USA`, `E`, `E1`, `Spain`).
pub fn cell(raw: &str) -> Result<CountryCell, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(CountryCell::NoCountry("(empty)"));
    }
    if let Some(p) = PLACEHOLDERS.iter().find(|p| p.eq_ignore_ascii_case(s)) {
        return Ok(CountryCell::NoCountry(p));
    }
    match s.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Ok(CountryCell::Code(
            CountryCode([a.to_ascii_uppercase(), b.to_ascii_uppercase()]),
        )),
        _ => Err(format!(
            "country code {s:?} is not two letters (ISO 3166-1 alpha-2) nor a placeholder (ZZ, -, A1, A2, O1)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_letters_upper_case_and_user_assigned_kept() {
        assert_eq!(cell("es"), Ok(CountryCell::Code(CountryCode(*b"ES"))));
        assert_eq!(cell(" XK "), Ok(CountryCell::Code(CountryCode(*b"XK"))));
        assert_eq!(cell("UK"), Ok(CountryCell::Code(CountryCode(*b"UK"))));
    }

    #[test]
    fn placeholders_mean_no_country() {
        for (raw, p) in [
            ("ZZ", "ZZ"),
            ("zz", "ZZ"),
            ("-", "-"),
            ("--", "--"),
            ("", "(empty)"),
            ("a1", "A1"),
            ("A2", "A2"),
            ("O1", "O1"),
        ] {
            assert_eq!(cell(raw), Ok(CountryCell::NoCountry(p)), "{raw:?}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for raw in ["USA", "E", "E1", "Spain", "É S", "1", "---"] {
            let e = cell(raw).unwrap_err();
            assert!(e.contains("not two letters"), "{raw}: {e}");
        }
    }
}
