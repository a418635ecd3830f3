//! `sipguard-admin ban add|remove|list`: the operator's side of `sipguard_ban`. A ban added here
//! is enforced by every worker of every node at its next round, like one made by the module; a
//! removal deletes the source's rows, and every worker re-reads the bans in force (`ban_lifts`).

use std::net::IpAddr;

use ipnet::IpNet;
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde::Serialize;

use super::{sql, AdminError};
use crate::ban_request::MAX_SECONDS;
use crate::db;
use crate::engine::IpLists;
use crate::listcheck;
use crate::netset::parse_net;

/// A source's ban in force, as `ban list` and `explain` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BanInForce {
    /// Address or network, as stored.
    pub source: String,
    /// When the latest of its rows ends: Unix ms, and as the database's local time.
    pub until_ms: u64,
    /// `until_ms` as `YYYY-MM-DD HH:MM:SS` in the database's time zone.
    pub until: String,
    /// Seconds left (the database's clock).
    pub remaining_secs: u64,
    /// The reason of the latest row.
    pub reason: String,
    /// The node (or `sipguard-admin`) that wrote the latest row.
    pub node: String,
    /// When the first row in force was written (database time).
    pub since: String,
    /// Rows in force for this source (each worker that banned it writes its own).
    pub rows: u64,
}

/// A ban's length: whole seconds, or with a unit (`90`, `90s`, `15m`, `12h`, `7d`); 1 s to a
/// year. Anything else is refused, never rounded.
pub fn parse_duration(s: &str) -> Result<u64, AdminError> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0 && !digits.is_empty() && digits.len() <= 12)
        .map(|n| n * scale)
        .filter(|n| (1..=MAX_SECONDS).contains(n))
        .ok_or_else(|| {
            AdminError::Input(format!(
                "{s:?} is not a ban length: whole seconds or with a unit (90, 90s, 15m, 12h, 7d), 1 s to 366 days"
            ))
        })
}

/// Parses a source as the module does; `force` lets through one wider than a /8 or /16.
pub fn parse_source(raw: &str, force: bool) -> Result<IpNet, AdminError> {
    crate::ban_request::parse_source(raw, force).map_err(|e| AdminError::Input(e.to_string()))
}

/// Bans `net` for `secs` seconds from now (the database's clock), as `node`. An allow-listed
/// address (in `white_list`, or in a network there) is refused: the allow-list always wins.
pub async fn add(
    conn: &mut Conn,
    net: IpNet,
    secs: u64,
    reason: &str,
    node: &str,
) -> Result<(), AdminError> {
    if net.prefix_len() == net.max_prefix_len() {
        let tables = db::load_lists(conn, std::time::Duration::from_secs(60)).await?;
        if let Some(h) = IpLists::build(&tables.rows).white_hit(net.addr()) {
            return Err(AdminError::Input(format!(
                "{} is allow-listed (white_list row {}, {}): it is never banned; remove it from white_list first",
                net.addr(),
                h.id,
                h.net
            )));
        }
    }
    let rows = [db::bans::NewBan {
        source: listcheck::show(net),
        remaining_ms: secs * 1000,
        reason: crate::ban_request::reason(reason),
    }];
    db::bans::insert(conn, &rows, node, std::time::Duration::from_secs(30))
        .await
        .map_err(missing_table)
}

/// Lifts every ban of exactly `net`; returns the rows deleted. `NotFound` when none was in
/// force, naming the wider bans that still cover an address.
pub async fn remove(conn: &mut Conn, net: IpNet) -> Result<u64, AdminError> {
    let source = listcheck::show(net);
    let in_force: Vec<BanInForce> = list(conn).await?;
    conn.exec_drop("DELETE FROM sipguard_ban WHERE source = ?", (&source,))
        .await
        .map_err(sql("sipguard_ban"))?;
    let deleted = conn.affected_rows();
    if in_force.iter().any(|b| b.source == source) {
        return Ok(deleted);
    }
    let covering: Vec<String> = in_force
        .iter()
        .filter(|b| parse_net(&b.source).is_some_and(|n| n.contains(&net.addr()) && n != net))
        .map(|b| b.source.clone())
        .collect();
    Err(AdminError::NotFound(if covering.is_empty() {
        format!("{source} is not banned")
    } else {
        format!(
            "{source} has no ban of its own; it is covered by {} (remove that)",
            covering.join(", ")
        )
    }))
}

/// Deletes the rows of bans that have ended (they are enforced nowhere: workers compare the end
/// with their clock); returns how many. Lifts nothing: the delete trigger ignores ended rows.
pub async fn purge(conn: &mut Conn) -> Result<u64, AdminError> {
    conn.query_drop(
        "DELETE FROM sipguard_ban WHERE until_ms <= FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)",
    )
    .await
    .map_err(table_error)?;
    Ok(conn.affected_rows())
}

/// Every source banned now, one entry per source (its latest end), latest end first.
pub async fn list(conn: &mut Conn) -> Result<Vec<BanInForce>, AdminError> {
    type Row = (String, u64, String, u64, String, String, String);
    let rows: Vec<Row> = conn
        .query(
            "SELECT source, until_ms, \
             DATE_FORMAT(FROM_UNIXTIME(until_ms DIV 1000), '%Y-%m-%d %H:%i:%s'), \
             CAST(until_ms - FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) AS UNSIGNED) DIV 1000, \
             reason, node, DATE_FORMAT(created, '%Y-%m-%d %H:%i:%s') \
             FROM sipguard_ban WHERE until_ms > FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) \
             ORDER BY source, until_ms DESC, id DESC",
        )
        .await
        .map_err(table_error)?;
    let mut out: Vec<BanInForce> = Vec::new();
    for (source, until_ms, until, remaining_secs, reason, node, created) in rows {
        match out.last_mut() {
            Some(b) if b.source == source => {
                b.rows += 1;
                b.since = b.since.clone().min(created);
            }
            _ => out.push(BanInForce {
                source,
                until_ms,
                until,
                remaining_secs,
                reason,
                node,
                since: created,
                rows: 1,
            }),
        }
    }
    out.sort_by(|a, b| b.until_ms.cmp(&a.until_ms).then(a.source.cmp(&b.source)));
    Ok(out)
}

/// The bans in force that cover `ip` (its own and its networks'), latest end first.
pub async fn covering(conn: &mut Conn, ip: IpAddr) -> Result<Vec<BanInForce>, AdminError> {
    Ok(list(conn)
        .await?
        .into_iter()
        .filter(|b| parse_net(&b.source).is_some_and(|n| n.contains(&ip)))
        .collect())
}

fn table_error(source: mysql_async::Error) -> AdminError {
    missing_table(db::DbError::Mysql {
        what: "sipguard_ban",
        source,
    })
}

fn missing_table(e: db::DbError) -> AdminError {
    if e.is_missing_table() {
        AdminError::Input("table sipguard_ban does not exist: apply kamailio/sql/schema.sql".into())
    } else {
        AdminError::Db(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_lengths_take_units_and_refuse_the_rest() {
        for (s, n) in [
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("12h", 43_200),
            ("7d", 604_800),
        ] {
            assert_eq!(parse_duration(s).unwrap(), n, "{s}");
        }
        for s in ["", "0", "1.5h", "-1", "10 m", "1w", "367d", "h"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn wide_sources_need_force() {
        assert!(parse_source("10.0.0.0/7", false).is_err());
        assert!(parse_source("10.0.0.0/7", true).is_ok());
        assert!(parse_source("010.0.0.1", true).is_err());
        assert_eq!(
            parse_source("::ffff:192.0.2.7", false).unwrap(),
            "192.0.2.7/32".parse::<IpNet>().unwrap()
        );
    }
}
