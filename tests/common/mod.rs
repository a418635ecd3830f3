//! Helpers for tests that need the real MariaDB started by `scripts/test`.
//!
//! `SIPGUARD_TEST_DB_URL` is an admin URL (may create databases). Without it the DB tests
//! skip with a message, unless `SIPGUARD_REQUIRE_DB=1` (set by scripts/test), where a missing
//! database is a failure, so CI cannot pass by skipping.
#![allow(dead_code)]

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};

/// The admin URL, or `None` when the DB tests must be skipped.
pub fn admin_url() -> Option<String> {
    match std::env::var("SIPGUARD_TEST_DB_URL") {
        Ok(u) => Some(u),
        Err(_) if std::env::var("SIPGUARD_REQUIRE_DB").as_deref() == Ok("1") => {
            panic!("SIPGUARD_REQUIRE_DB=1 but SIPGUARD_TEST_DB_URL is not set")
        }
        Err(_) => {
            eprintln!("skipping: SIPGUARD_TEST_DB_URL not set (run scripts/test)");
            None
        }
    }
}

/// A runtime for test bodies; the module's own loader has its own.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Drops and creates database `name`; returns its URL (same user and server as `admin`).
pub async fn fresh_db(admin: &str, name: &str) -> String {
    let mut c = Conn::new(Opts::from_url(admin).unwrap()).await.unwrap();
    c.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .unwrap();
    c.query_drop(format!("CREATE DATABASE `{name}`"))
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    let opts = Opts::from_url(admin).unwrap();
    format!(
        "mysql://{}:{}@{}:{}/{}",
        opts.user().unwrap_or("root"),
        opts.pass().unwrap_or(""),
        opts.ip_or_hostname(),
        opts.tcp_port(),
        name
    )
}

/// A connection to `url`.
pub async fn connect(url: &str) -> Conn {
    Conn::new(OptsBuilder::from_opts(Opts::from_url(url).unwrap()))
        .await
        .unwrap()
}

/// Runs `kamailio/sql/schema.sql` (multi-statement) on `conn`.
pub async fn apply_schema(conn: &mut Conn) {
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kamailio/sql/schema.sql"
    ))
    .unwrap();
    conn.query_drop(sql).await.unwrap();
}

/// Loads the shipped slice of the real country CSV the way the post does (INET_ATON), IPv6
/// rows into `ipcountry6` with INET6_ATON. Parameterized, in batches.
pub async fn load_country_slice(conn: &mut Conn) -> usize {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/country-slice.csv"
    ))
    .unwrap();
    let rows: Vec<(String, String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let mut f = l.split(',');
            (
                f.next().unwrap().into(),
                f.next().unwrap().into(),
                f.next().unwrap().into(),
            )
        })
        .collect();
    for chunk in rows.chunks(500) {
        for (v6, table, aton) in [
            (false, "ipcountry", "INET_ATON"),
            (true, "ipcountry6", "INET6_ATON"),
        ] {
            let part: Vec<&(String, String, String)> =
                chunk.iter().filter(|r| r.0.contains(':') == v6).collect();
            if part.is_empty() {
                continue;
            }
            let values = vec![format!("(?, ?, ?, {aton}(?), {aton}(?))"); part.len()].join(", ");
            let sql = format!(
                "INSERT INTO {table} (ipstart, ipend, countrycode, ipfrom, ipto) VALUES {values}"
            );
            let params: Vec<mysql_async::Value> = part
                .iter()
                .flat_map(|(s, e, c)| [s, e, c, s, e].map(|v| v.as_str().into()))
                .collect();
            conn.exec_drop(sql, params).await.unwrap();
        }
    }
    rows.len()
}

/// Creates `user` with SELECT on database `db` only (the module's read-only role) and turns on
/// MariaDB's per-user statistics; returns the URL the module should use.
pub async fn read_only_user(admin: &str, db: &str, user: &str) -> String {
    let mut c = connect(admin).await;
    c.query_drop(format!("DROP USER IF EXISTS '{user}'@'127.0.0.1'"))
        .await
        .unwrap();
    c.query_drop(format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'"
    ))
    .await
    .unwrap();
    c.query_drop(format!("GRANT SELECT ON `{db}`.* TO '{user}'@'127.0.0.1'"))
        .await
        .unwrap();
    c.query_drop("SET GLOBAL userstat = 1").await.unwrap();
    let opts = Opts::from_url(admin).unwrap();
    format!(
        "mysql://{user}:pw@{}:{}/{db}",
        opts.ip_or_hostname(),
        opts.tcp_port()
    )
}

/// Connections `user` has opened since statistics were turned on (MariaDB `USER_STATISTICS`):
/// unlike the global `Connections` counter, other tests running in parallel do not move it.
pub async fn connections_of(admin: &str, user: &str) -> u64 {
    let mut c = connect(admin).await;
    let n: Option<u64> = c
        .exec_first(
            "SELECT TOTAL_CONNECTIONS FROM information_schema.USER_STATISTICS WHERE USER = ?",
            (user,),
        )
        .await
        .unwrap();
    n.unwrap_or(0)
}
