//! Scanner User-Agent patterns: case-insensitive substrings, all searched in one pass.
//!
//! Scanners announce themselves ("friendly-scanner", "sipvicious"…) and the post drops them by
//! exact comparison; real traffic carries versions and suffixes ("sipcli/v1.8",
//! "VaxSIPUserAgent/3.1"), so patterns match anywhere in the header, ignoring ASCII case. An
//! Aho-Corasick automaton keeps a 1 KB junk header at one linear scan however many patterns.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Scanner names matched when the config does not say otherwise: the post's five and those
/// seen in honeypot logs since (SIPVicious and its forks, sipcli, VaxSIPUserAgent, SIPArmyKnife,
/// smap, SiVuS, pplsip, and generic port scanners that speak SIP).
pub const DEFAULT_PATTERNS: &[&str] = &[
    "friendly-scanner",
    "sundayddr",
    "sip-scan",
    "iwar",
    "sipsak",
    "sipvicious",
    "sipcli",
    "sipscan",
    "vaxsipuseragent",
    "vaxipuseragent",
    "siparmyknife",
    "smap",
    "sivus",
    "pplsip",
    "nmap",
    "masscan",
];

/// One pattern and where it came from (row id in `black_list_ua`, or 0 for the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaPattern {
    /// Row id, 0 for patterns from the config file.
    pub id: i64,
    /// The substring, as written.
    pub pattern: String,
}

/// A compiled set of patterns.
#[derive(Debug, Clone, Default)]
pub struct UaMatcher {
    ac: Option<AhoCorasick>,
    patterns: Vec<UaPattern>,
}

impl UaMatcher {
    /// Compiles the patterns; empty ones are refused by the caller (they would match anything).
    pub fn new(patterns: Vec<UaPattern>) -> Self {
        if patterns.is_empty() {
            return UaMatcher::default();
        }
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(patterns.iter().map(|p| p.pattern.as_bytes()))
            .ok();
        UaMatcher { ac, patterns }
    }

    /// The first pattern found in `ua`, if any.
    pub fn find(&self, ua: &str) -> Option<&UaPattern> {
        // No User-Agent (or `sipguard_check` called without one): nothing to search, and the
        // automaton's memory stays untouched.
        if ua.is_empty() {
            return None;
        }
        let m = self.ac.as_ref()?.find(ua.as_bytes())?;
        self.patterns.get(m.pattern().as_usize())
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// True when no pattern is set.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> UaMatcher {
        UaMatcher::new(
            DEFAULT_PATTERNS
                .iter()
                .map(|p| UaPattern {
                    id: 0,
                    pattern: p.to_string(),
                })
                .collect(),
        )
    }

    #[test]
    fn finds_scanners_in_any_case_and_with_versions() {
        let m = defaults();
        for ua in [
            "friendly-scanner",
            "Friendly-Scanner",
            "sipcli/v1.8",
            "VaxSIPUserAgent/3.1",
            "iWar",
            "SIPVicious 0.3.4",
            "x sundayddr y",
        ] {
            assert!(m.find(ua).is_some(), "{ua}");
        }
        for ua in [
            "",
            "Zoiper rv2.10",
            "Linphone/5.2",
            "Asterisk PBX 20.1",
            "sipguard-test",
            "Grandstream GXP2170",
        ] {
            assert!(m.find(ua).is_none(), "{ua}");
        }
        assert_eq!(m.find("IWAR").unwrap().pattern, "iwar");
    }

    #[test]
    fn junk_is_one_linear_scan_and_no_match() {
        let m = defaults();
        let junk: String = (0..1024u32)
            .map(|i| char::from(b'!' + (i % 90) as u8))
            .collect();
        assert!(m.find(&junk).is_none());
        assert!(UaMatcher::new(Vec::new())
            .find("friendly-scanner")
            .is_none());
    }
}
