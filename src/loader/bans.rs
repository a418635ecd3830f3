//! The ban side of a round: picks up bans added since the last read (by id, when
//! `sipguard_generation.bans` moved) and re-reads the bans in force when one was lifted
//! (`ban_lifts` moved). Publishes them for the request path, which expires them on its clock.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use ipnet::IpNet;

use super::Retired;
use crate::bans::Bans;
use crate::config::Config;
use crate::data::Data;
use crate::db::{self, bans::BanRow, Generations};
use crate::logq::Level;
use crate::netset::parse_net;
use crate::stats::now_ms;

/// Rows read per round at most; a longer backlog is read over the next rounds.
pub(super) const ROWS_PER_ROUND: usize = 20_000;

/// Ids re-read below the highest one seen: two bans inserted at once can commit out of id
/// order, and a read between the two commits would otherwise skip the lower id for good.
const OVERLAP: u64 = 32;

/// What the ban side remembers between rounds.
#[derive(Default)]
pub(super) struct BanRound {
    /// The highest `sipguard_ban.id` read.
    last_id: u64,
    /// `sipguard_generation.bans` / `ban_lifts` the published bans were read at.
    added_generation: Option<u64>,
    lifts_generation: Option<u64>,
    /// Ids of rows whose source does not parse, said once each.
    logged_bad: HashSet<u64>,
    /// The table is missing (a schema from before bans): said once.
    reported_missing: bool,
    /// The last read failed: said once per streak.
    failing: bool,
}

impl BanRound {
    /// Notes a failed read: said once until a read works again.
    pub(super) fn failed(&mut self, data: &Data, e: &db::DbError) {
        if !self.failing {
            self.failing = true;
            data.say(
                Level::Warn,
                format!(
                    "cannot read sipguard_ban ({e}); the bans in force stay, retrying every round"
                ),
            );
        }
    }
}

/// Reads what changed and publishes it; the previous set goes to `retired`.
pub(super) async fn load(
    cfg: &Config,
    data: &Data,
    state: &mut BanRound,
    retired: &mut Retired,
    conn: &mut mysql_async::Conn,
    gens: Option<Generations>,
) -> Result<(), db::DbError> {
    let Some((added, lifts)) = gens.and_then(|g| g.bans.zip(g.ban_lifts)) else {
        return Ok(()); // no generation rows for bans: schema.sql not applied since bans came
    };
    let now = now_ms();
    state.failing = false;
    if state.lifts_generation != Some(lifts) {
        // The whole set: as large as a country table can be, so under the load deadline.
        let Some(rows) = db::bans::in_force(conn, now, cfg.load_timeout()).await? else {
            return missing(data, state);
        };
        data.counters.db_queries.fetch_add(1, Ordering::Relaxed);
        state.last_id = rows.iter().map(|r| r.id).max().unwrap_or(state.last_id);
        let bans = Bans::from_all(parse(data, state, &rows));
        say_loaded(data, &bans, "all in force");
        // A lift seen (not this worker's first read, nor one after a round that panicked).
        let lifted = state.lifts_generation.is_some();
        retired.bans(if lifted {
            data.publish_bans_after_lift(bans)
        } else {
            data.publish_bans(bans)
        });
        state.lifts_generation = Some(lifts);
        state.added_generation = Some(added);
        return Ok(());
    }
    if state.added_generation == Some(added) {
        return Ok(());
    }
    let after = state.last_id.saturating_sub(OVERLAP);
    let Some(rows) =
        db::bans::added_since(conn, after, ROWS_PER_ROUND, cfg.query_timeout()).await?
    else {
        return missing(data, state);
    };
    data.counters.db_queries.fetch_add(1, Ordering::Relaxed);
    let complete = rows.len() < ROWS_PER_ROUND;
    state.last_id = rows.iter().map(|r| r.id).fold(state.last_id, u64::max);
    // Rows read again in the overlap add nothing new: a source keeps its latest end.
    let live: Vec<BanRow> = rows.into_iter().filter(|r| r.until_ms > now).collect();
    if !live.is_empty() {
        let added = parse(data, state, &live);
        let bans = match data.bans() {
            Some(current) => current.with(added, now),
            None => Bans::default().with(added, now),
        };
        retired.bans(data.publish_bans(bans));
    }
    // A backlog longer than one read: the generation is taken only once it is all read.
    if complete {
        state.added_generation = Some(added);
    }
    Ok(())
}

fn missing(data: &Data, state: &mut BanRound) -> Result<(), db::DbError> {
    if !state.reported_missing {
        state.reported_missing = true;
        data.say(
            Level::Warn,
            "table sipguard_ban not found or not readable by db_url's user: no bans are enforced \
             (apply kamailio/sql/schema.sql, GRANT SELECT on it)"
                .into(),
        );
    }
    Ok(())
}

fn say_loaded(data: &Data, bans: &Bans, how: &str) {
    data.say(
        Level::Info,
        format!("bans loaded ({how}): {} in force", bans.len()),
    );
}

/// The rows' sources as networks; a source that does not parse is skipped and said once.
fn parse(data: &Data, state: &mut BanRound, rows: &[BanRow]) -> Vec<(IpNet, u64)> {
    rows.iter()
        .filter_map(|r| match parse_net(&r.source) {
            Some(net) => Some((net, r.until_ms)),
            None => {
                if state.logged_bad.insert(r.id) {
                    data.say(
                        Level::Warn,
                        format!(
                            "sipguard_ban id={}: {:?} is not an address or network, row skipped",
                            r.id, r.source
                        ),
                    );
                }
                None
            }
        })
        .collect()
}
