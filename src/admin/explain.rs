//! `explain`: the decision kamailio/kamailio.cfg would take for a source, and why, naming the
//! rows that matched. It loads the same tables through the same code as a worker does.

use std::net::IpAddr;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::{sql, AdminError};
use crate::addr;
use crate::db;
use crate::engine::{self, IpLists, Lists};

/// One check, in the cfg's order, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The check (`white_list`, `black_list`, …).
    pub check: &'static str,
    /// What matched, or `no match`.
    pub found: String,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The checks, in order.
    pub steps: Vec<Step>,
    /// `drop: …`, `trusted: …` or `pass`.
    pub decision: String,
}

/// Loads the lists and ranges and explains `source` (plus optional user and User-Agent).
pub async fn explain(
    conn: &mut Conn,
    scanner_patterns: &[String],
    source: &str,
    user: Option<&str>,
    ua: Option<&str>,
) -> Result<Explanation, AdminError> {
    let ip =
        addr::parse_source(source).map_err(|e| AdminError::Input(format!("{source:?}: {e}")))?;
    let limit = Duration::from_secs(60);
    let tables = db::load_lists(conn, limit).await?;
    let (lists, _) = Lists::build(&tables.rows, scanner_patterns);
    let ip_lists = IpLists::build(&tables.rows);
    let ranges = db::load_countries(conn, limit).await?.0.build();
    let detail = |rows: &[engine::ListRow], id: i64| {
        rows.iter()
            .find(|r| r.id == id)
            .map(|r| r.detail.clone())
            .unwrap_or_default()
    };
    let mut steps = Vec::new();
    let mut decision: Option<String> = None;
    let mut step = |check: &'static str, found: String, verdict: Option<String>| {
        steps.push(Step { check, found });
        if decision.is_none() {
            decision = verdict;
        }
    };

    match ip_lists.white_hit(ip) {
        Some(h) => step(
            "white_list",
            format!("row {} {} ({:?})", h.id, h.net, h.detail),
            Some(format!(
                "trusted: {ip} is in white_list row {}; no other check applies",
                h.id
            )),
        ),
        None => step("white_list", "no match".into(), None),
    }
    match ip_lists.black_hit(ip) {
        Some(h) => step(
            "black_list",
            format!("row {} {} ({:?})", h.id, h.net, h.detail),
            Some(format!(
                "drop: {ip} is in black_list row {} ({})",
                h.id, h.net
            )),
        ),
        None => step("black_list", "no match".into(), None),
    }
    // A ban in force refuses a source the lists let through (the module answers wb_type "ban").
    match super::bans::covering(conn, ip).await {
        Ok(bans) => match bans.first() {
            Some(b) => step(
                "ban",
                format!(
                    "{} banned until {} ({} s left), reason {:?}, by {}, since {}",
                    b.source, b.until, b.remaining_secs, b.reason, b.node, b.since
                ),
                Some(format!(
                    "drop: {ip} is banned until {} ({:?})",
                    b.until, b.reason
                )),
            ),
            None => step("ban", "not banned".into(), None),
        },
        // A schema from before bans: nothing to show.
        Err(AdminError::Input(_)) => {}
        Err(e) => return Err(e),
    }
    if let Some(ua) = ua {
        match lists.user_agent_hit(ua) {
            Some(p) if p.id == 0 => step(
                "user_agent",
                format!("pattern {:?} from the config", p.pattern),
                Some(format!(
                    "drop: User-Agent contains scanner pattern {:?}",
                    p.pattern
                )),
            ),
            Some(p) => step(
                "user_agent",
                format!("black_list_ua row {} {:?}", p.id, p.pattern),
                Some(format!(
                    "drop: User-Agent contains {:?} (black_list_ua row {})",
                    p.pattern, p.id
                )),
            ),
            None => step("user_agent", "no scanner pattern".into(), None),
        }
    }
    let cc = engine::country_of(Some(&ranges), ip).to_string();
    let range = if cc.is_empty() {
        None
    } else {
        range_row(conn, ip).await?
    };
    let country_found = match (&cc[..], addr::is_public(ip), range) {
        (_, false, _) => "none: private, loopback or reserved address".to_string(),
        ("", true, _) => "unknown: no range contains it".to_string(),
        (cc, _, Some((s, e, table))) => format!("{cc} (narrowest range {s} - {e} in {table})"),
        (cc, _, None) => cc.to_string(),
    };
    match lists.country_id(&cc) {
        Some(id) => step(
            "country",
            country_found,
            Some(format!(
                "drop: country {cc} is in black_list_country row {id} ({:?})",
                detail(&tables.rows.countries, id)
            )),
        ),
        None => step(
            "country",
            format!("{country_found}; not in black_list_country"),
            None,
        ),
    }
    if let Some(user) = user {
        match lists.user_id(user) {
            Some(id) => step(
                "user",
                format!("black_list_user row {id}"),
                Some(format!(
                    "drop: user {user:?} is in black_list_user row {id} ({:?})",
                    detail(&tables.rows.users, id)
                )),
            ),
            None => step("user", "not listed".into(), None),
        }
    }
    Ok(Explanation {
        steps,
        decision: decision.unwrap_or_else(|| "pass: no check matched".into()),
    })
}

/// The narrowest stored range containing `ip` (a scan is fine for a one-off command).
async fn range_row(
    conn: &mut Conn,
    ip: IpAddr,
) -> Result<Option<(String, String, &'static str)>, AdminError> {
    // NULL text columns (ranges loaded by hand with only ipfrom/ipto) read as "".
    let row: Option<(Option<String>, Option<String>)> = match ip {
        IpAddr::V4(v4) => conn
            .exec_first(
                "SELECT ipstart, ipend FROM ipcountry WHERE ipfrom <= ? AND ipto >= ? ORDER BY ipto - ipfrom LIMIT 1",
                (u32::from(v4), u32::from(v4)),
            )
            .await
            .map_err(sql("ipcountry range"))?,
        IpAddr::V6(v6) => conn
            .exec_first(
                "SELECT ipstart, ipend FROM ipcountry6 WHERE ipfrom <= ? AND ipto >= ? ORDER BY ipto, ipfrom DESC LIMIT 1",
                (v6.octets().to_vec(), v6.octets().to_vec()),
            )
            .await
            .map_err(sql("ipcountry6 range"))?,
    };
    let table = if ip.is_ipv4() {
        "ipcountry"
    } else {
        "ipcountry6"
    };
    Ok(row.map(|(s, e)| (s.unwrap_or_default(), e.unwrap_or_default(), table)))
}
