//! `add` / `remove` / `list` for every list table, with the module's own validation.

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::{sql, AdminError};
use crate::countrydata::{code, CountryCell};
use crate::engine::{normalize_country, ListRow};
use crate::listcheck::{self, Concern};
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
    /// Every list table, in the order `sipguard-admin metrics` shows them.
    pub const ALL: [ListKind; 5] = [
        ListKind::White,
        ListKind::Black,
        ListKind::Country,
        ListKind::User,
        ListKind::Ua,
    ];

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
    /// (`192.0.2.7/24` → `192.0.2.0/24`, `/32` and `/128` as bare addresses, IPv4-mapped
    /// IPv6 as IPv4); a country code is exactly two letters, upper case.
    pub fn normalize(self, raw: &str) -> Result<String, AdminError> {
        let bad = |why: &str| AdminError::Input(format!("{raw:?} {why}"));
        match self {
            ListKind::Black | ListKind::White => {
                let net = parse_net(raw)
                    .ok_or_else(|| bad("is not an IPv4/IPv6 address or CIDR network"))?;
                Ok(listcheck::show(net))
            }
            ListKind::Country => match code::cell(raw) {
                Ok(CountryCell::Code(cc)) => Ok(cc.to_string()),
                Ok(CountryCell::NoCountry(p)) => Err(bad(&format!(
                    "is a placeholder ({p}) meaning \"no country\", not a country code"
                ))),
                Err(_) => Err(bad("is not a country code (2 letters, ISO 3166-1 alpha-2)")),
            },
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

    /// What an existing row means, for finding and removing it: [`Self::normalize`], but
    /// rows typed by hand with a code the tool would refuse (`USA`) still match themselves.
    fn key(self, raw: &str) -> Option<String> {
        match (self, self.normalize(raw)) {
            (_, Ok(v)) => Some(v),
            (ListKind::Country, Err(_)) => normalize_country(raw),
            _ => None,
        }
    }
}

/// Every row of a list, in id order. A NULL value or detail (tables made by hand or by
/// another tool) reads as `""`, as the module's loader reads it.
pub async fn list(conn: &mut Conn, kind: ListKind) -> Result<Vec<ListRow>, AdminError> {
    let rows: Vec<(i64, Option<String>, Option<String>)> = conn
        .query(format!(
            "SELECT id, {}, detail FROM {} ORDER BY id",
            kind.column(),
            kind.table()
        ))
        .await
        .map_err(sql("list"))?;
    Ok(rows
        .into_iter()
        .map(|(id, value, detail)| ListRow {
            id,
            value: value.unwrap_or_default(),
            detail: detail.unwrap_or_default(),
        })
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
        .find(|r| kind.key(&r.value).is_some_and(|v| v == normalized)))
}

/// Whether `add` created a row or found one already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// New row id.
    New(i64),
    /// Existing row id.
    Existing(i64),
}

/// What `add` did, and what the operator must hear about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOutcome {
    /// The value as stored.
    pub value: String,
    /// The row.
    pub added: Added,
    /// Lines for the operator: a network written with host bits set, an IPv4-mapped entry
    /// stored as IPv4, a wide entry stored under `--force`, allow-list rows that stay exempt
    /// from a new block-list entry.
    pub notes: Vec<String>,
}

/// The guard rails of [`crate::listcheck`] for an address entry: notes to print, or the
/// refusal of a too-wide entry without `force`.
fn guard(kind: ListKind, raw: &str, force: bool) -> Result<Vec<String>, AdminError> {
    let Some(net) = parse_net(raw) else {
        return Ok(Vec::new());
    };
    let concerns = listcheck::concerns(raw, net);
    let said: Vec<String> = concerns.iter().map(|c| c.describe(raw)).collect();
    if concerns.iter().any(|c| matches!(c, Concern::Wide { .. })) && !force {
        return Err(AdminError::Input(format!(
            "{}; {}. Entries wider than /{} (IPv4) or /{} (IPv6) need --force",
            said.join("; "),
            wide_effect(kind),
            listcheck::WIDEST_V4,
            listcheck::WIDEST_V6
        )));
    }
    let host_bits = listcheck::has_host_bits(raw, net).then(|| {
        format!(
            "{:?} has host bits set: it means the network {}, {}",
            raw.trim(),
            listcheck::show(net),
            listcheck::addresses(net)
        )
    });
    let rest = concerns.iter().zip(said).map(|(c, s)| match c {
        Concern::Mapped { as_v4 } => format!("{s}; stored as {}", listcheck::show(*as_v4)),
        Concern::Wide { .. } => format!("{s}; {}; stored because of --force", wide_effect(kind)),
    });
    Ok(host_bits.into_iter().chain(rest).collect())
}

/// What a too-wide entry would do, in the list it is added to.
fn wide_effect(kind: ListKind) -> &'static str {
    match kind {
        ListKind::White => "in white_list it would switch every check off for all of them",
        _ => "in black_list it would drop every request from all of them",
    }
}

/// `white_list` rows inside or around `net`: they stay exempt from a new `black_list` entry.
async fn exempt(conn: &mut Conn, net: ipnet::IpNet) -> Result<Vec<String>, AdminError> {
    let rows = list(conn, ListKind::White).await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let w = parse_net(&r.value)?;
            (net.contains(&w) || w.contains(&net)).then(|| {
                let detail = if r.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({:?})", r.detail)
                };
                format!(
                    "white_list row {} {}{detail} stays exempt: the allow-list wins",
                    r.id,
                    listcheck::show(w)
                )
            })
        })
        .collect())
}

/// Adds a value (idempotent). The table's trigger bumps the generation, so workers reload.
///
/// Address entries pass the guard rails first: wider than a /8 (IPv4) or /16 (IPv6) is
/// refused ([`AdminError::Input`]) unless `force`; the outcome's notes say what was stored.
pub async fn add(
    conn: &mut Conn,
    kind: ListKind,
    raw: &str,
    detail: &str,
    force: bool,
) -> Result<AddOutcome, AdminError> {
    let value = kind.normalize(raw)?;
    let mut notes = match kind {
        ListKind::Black | ListKind::White => guard(kind, raw, force)?,
        _ if force => {
            return Err(AdminError::Input(format!(
                "--force applies to address entries (black, white), not to {}",
                kind.table()
            )))
        }
        _ => Vec::new(),
    };
    if kind == ListKind::Black {
        if let Some(net) = parse_net(raw) {
            notes.extend(exempt(conn, net).await?);
        }
    }
    if let Some(row) = find(conn, kind, &value).await? {
        return Ok(AddOutcome {
            value,
            added: Added::Existing(row.id),
            notes,
        });
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
    Ok(AddOutcome {
        value,
        added: Added::New(id),
        notes,
    })
}

/// Removes every row meaning `raw`; `NotFound` when there is none.
pub async fn remove(
    conn: &mut Conn,
    kind: ListKind,
    raw: &str,
) -> Result<(String, Vec<i64>), AdminError> {
    let value = kind.key(raw).ok_or_else(|| {
        AdminError::Input(format!("{raw:?} is not a value {} can hold", kind.table()))
    })?;
    let ids: Vec<i64> = list(conn, kind)
        .await?
        .into_iter()
        .filter(|r| kind.key(&r.value).is_some_and(|v| v == value))
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
        assert_eq!(ListKind::Country.normalize("XK").unwrap(), "XK");
        assert_eq!(
            ListKind::Black.normalize("::ffff:0:0/96").unwrap(),
            "0.0.0.0/0"
        );
        assert_eq!(ListKind::Ua.normalize(" sipcli ").unwrap(), "sipcli");
        for (kind, bad) in [
            (ListKind::Black, "192.0.2.0/33"),
            (ListKind::Black, "example.com"),
            (ListKind::Country, "Spain"),
            (ListKind::Country, "E1"),
            (ListKind::Country, "USA"),
            (ListKind::Country, "ZZ"),
            (ListKind::User, ""),
            (ListKind::Ua, "   "),
        ] {
            let e = kind.normalize(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        // A hand-typed row the tool would refuse still matches itself, so it can be removed.
        assert_eq!(ListKind::Country.key("usa").as_deref(), Some("USA"));
    }

    #[test]
    fn wide_entries_need_force_and_mapped_ones_are_announced() {
        for (kind, raw) in [
            (ListKind::White, "0.0.0.0/0"),
            (ListKind::White, "::/0"),
            (ListKind::White, "0.0.0.0/1"),
            (ListKind::Black, "::ffff:0:0/96"),
        ] {
            let e = guard(kind, raw, false).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("need --force"), "{raw}: {e}");
        }
        let e = guard(ListKind::White, "0.0.0.0/0", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("4,294,967,296 addresses") && e.contains("switch every check off"),
            "{e}"
        );
        let notes = guard(ListKind::Black, "::ffff:0:0/96", true).unwrap();
        assert!(notes[0].ends_with("stored as 0.0.0.0/0"), "{notes:?}");
        assert!(notes[1].contains("stored because of --force"), "{notes:?}");
        let notes = guard(ListKind::Black, "::ffff:192.0.2.0/120", false).unwrap();
        assert_eq!(notes.len(), 1);
        let notes = guard(ListKind::White, "198.51.100.77/24", false).unwrap();
        assert_eq!(
            notes,
            vec!["\"198.51.100.77/24\" has host bits set: it means the network 198.51.100.0/24, 256 addresses"]
        );
        assert!(guard(ListKind::Black, "10.0.0.0/8", false)
            .unwrap()
            .is_empty());
    }
}
