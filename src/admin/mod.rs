//! The operator's side, used by `sipguard-admin`: import country data, edit the lists, make
//! every worker reload, explain a decision. Same parsers and engine as the module, so what the
//! tool accepts is exactly what the workers will match.

pub mod bans;
pub mod cli;
pub mod country_diff;
pub mod explain;
pub mod import;
pub mod lists;
pub mod workers;

use thiserror::Error;

use crate::db::DbError;

/// Why an admin command failed; each variant maps to a documented exit code.
#[derive(Debug, Error)]
pub enum AdminError {
    /// Bad input: a value that does not parse, a CSV line that is wrong.
    #[error("{0}")]
    Input(String),
    /// The thing to remove is not there.
    #[error("{0}")]
    NotFound(String),
    /// Another import holds the lock.
    #[error("another import is running (lock `{0}` is held); try again when it has finished")]
    Busy(String),
    /// The database refused or did not answer.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Kamailio could not be asked (kamcmd missing, control socket unreachable, no answer).
    #[error("{0}")]
    Kamailio(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl AdminError {
    /// Exit code for scripts: 2 bad input, 3 not found, 4 busy, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            AdminError::Input(_) => 2,
            AdminError::NotFound(_) => 3,
            AdminError::Busy(_) => 4,
            AdminError::Db(_) | AdminError::Io { .. } | AdminError::Kamailio(_) => 1,
        }
    }
}

/// Wraps a driver error with what was being done.
pub(crate) fn sql(what: &'static str) -> impl Fn(mysql_async::Error) -> AdminError {
    move |source| AdminError::Db(DbError::Mysql { what, source })
}

/// Bumps `sipguard_generation` rows so every worker reloads them on its next round, putting
/// back a row that was deleted. Returns the new values; a database without the table answers
/// `None`.
pub async fn bump_generations(
    conn: &mut mysql_async::Conn,
    names: &[&str],
) -> Result<Option<crate::db::Generations>, AdminError> {
    use mysql_async::prelude::*;
    for name in names {
        let r = conn
            .exec_drop(
                // A row put back, or a NULL counter, starts at a value no worker has seen
                // (the current time in ms), as the schema's triggers do.
                "INSERT INTO sipguard_generation (name, gen) \
                 VALUES (?, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)) \
                 ON DUPLICATE KEY UPDATE gen = IF(gen IS NULL OR gen < 1, \
                 FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), gen + 1)",
                (name,),
            )
            .await
            .map_err(sql("bump generation"));
        if let Err(AdminError::Db(e)) = &r {
            if e.is_missing_table() {
                return Ok(None);
            }
        }
        r?;
    }
    Ok(crate::db::generations(conn, std::time::Duration::from_secs(10)).await?)
}
