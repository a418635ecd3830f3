//! `add` / `remove` / `list` for every list table, with the module's own validation.

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::{sql, AdminError};
use crate::engine::{normalize_country, ListRow};
use crate::netset::parse_net;

/// The lists an operator edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `black_list`: addresses and CIDR networks.
    Black,
    /// `white_list`: addresses and networks exempt from every check.
    White,
    /// `black_list_country`: ISO codes.
    Country,
    /// `black_list_user`: SIP user names.
    User,
    /// `black_list_ua`: User-Agent substrings.
    Ua,
}

impl ListKind {
    /// Table name.
    pub fn table(self) -> &'static str {
        match self {
            ListKind::Black => "black_list",
            ListKind::White => "white_list",
            ListKind::Country => "black_list_country",
            ListKind::User => "black_list_user",
            ListKind::Ua => "black_list_ua",
        }
    }

    fn column(self) -> &'static str {
        match self {
            ListKind::Black | ListKind::White => "ip",
            ListKind::Country => "country",
            ListKind::User => "username",
            ListKind::Ua => "pattern",
        }
    }

    /// The value as stored, or why it cannot be listed. Networks are stored in canonical form
    /// (`192.0.2.7/24` → `192.0.2.0/24`, `/32` and `/128` as bare addresses).
    pub fn normalize(self, raw: &str) -> Result<String, AdminError> {
        let bad = |why: &str| AdminError::Input(format!("{raw:?} {why}"));
        match self {
            ListKind::Black | ListKind::White => {
                let net = parse_net(raw)
                    .ok_or_else(|| bad("is not an IPv4/IPv6 address or CIDR network"))?;
                Ok(if net.prefix_len() == net.max_prefix_len() {
                    net.addr().to_string()
                } else {
                    net.to_string()
                })
            }
            ListKind::Country => normalize_country(raw)
                .ok_or_else(|| bad("is not a country code (2 letters, ISO 3166)")),
            ListKind::User | ListKind::Ua => {
                let v = raw.trim();
                if v.is_empty() || v.len() > 128 {
                    Err(bad("must be 1 to 128 characters"))
                } else {
                    Ok(v.to_string())
                }
            }
        }
    }
}

/// Every row of a list, in id order.
pub async fn list(conn: &mut Conn, kind: ListKind) -> Result<Vec<ListRow>, AdminError> {
    let rows: Vec<(i64, String, String)> = conn
        .query(format!(
            "SELECT id, {}, detail FROM {} ORDER BY id",
            kind.column(),
            kind.table()
        ))
        .await
        .map_err(sql("list"))?;
    Ok(rows
        .into_iter()
        .map(|(id, value, detail)| ListRow { id, value, detail })
        .collect())
}

/// The row whose value means the same as `normalized` (rows typed by hand may differ in form).
async fn find(
    conn: &mut Conn,
    kind: ListKind,
    normalized: &str,
) -> Result<Option<ListRow>, AdminError> {
    Ok(list(conn, kind)
        .await?
        .into_iter()
        .find(|r| kind.normalize(&r.value).is_ok_and(|v| v == normalized)))
}

/// Whether `add` created a row or found one already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// New row id.
    New(i64),
    /// Existing row id.
    Existing(i64),
}

/// Adds a value (idempotent). The table's trigger bumps the generation, so workers reload.
pub async fn add(
    conn: &mut Conn,
    kind: ListKind,
    raw: &str,
    detail: &str,
) -> Result<(String, Added), AdminError> {
    let value = kind.normalize(raw)?;
    if let Some(row) = find(conn, kind, &value).await? {
        return Ok((value, Added::Existing(row.id)));
    }
    conn.exec_drop(
        format!(
            "INSERT INTO {} ({}, detail) VALUES (?, ?)",
            kind.table(),
            kind.column()
        ),
        (&value, detail),
    )
    .await
    .map_err(sql("insert"))?;
    let id = conn.last_insert_id().unwrap_or(0) as i64;
    Ok((value, Added::New(id)))
}

/// Removes every row meaning `raw`; `NotFound` when there is none.
pub async fn remove(
    conn: &mut Conn,
    kind: ListKind,
    raw: &str,
) -> Result<(String, Vec<i64>), AdminError> {
    let value = kind.normalize(raw)?;
    let ids: Vec<i64> = list(conn, kind)
        .await?
        .into_iter()
        .filter(|r| kind.normalize(&r.value).is_ok_and(|v| v == value))
        .map(|r| r.id)
        .collect();
    if ids.is_empty() {
        return Err(AdminError::NotFound(format!(
            "{value} is not in {}",
            kind.table()
        )));
    }
    for id in &ids {
        conn.exec_drop(format!("DELETE FROM {} WHERE id = ?", kind.table()), (id,))
            .await
            .map_err(sql("delete"))?;
    }
    Ok((value, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_validated_and_canonical() {
        assert_eq!(
            ListKind::Black.normalize(" 192.0.2.7/24").unwrap(),
            "192.0.2.0/24"
        );
        assert_eq!(
            ListKind::Black.normalize("192.0.2.7/32").unwrap(),
            "192.0.2.7"
        );
        assert_eq!(
            ListKind::White.normalize("[2001:DB8::1]").unwrap(),
            "2001:db8::1"
        );
        assert_eq!(ListKind::Country.normalize("es").unwrap(), "ES");
        assert_eq!(ListKind::Ua.normalize(" sipcli ").unwrap(), "sipcli");
        for (kind, bad) in [
            (ListKind::Black, "192.0.2.0/33"),
            (ListKind::Black, "example.com"),
            (ListKind::Country, "Spain"),
            (ListKind::Country, "E1"),
            (ListKind::User, ""),
            (ListKind::Ua, "   "),
        ] {
            let e = kind.normalize(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }
}
