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

/// How long a missing id holds the read back (ms). Writers on several nodes insert at once and
/// can commit out of id order: a read between two commits sees the higher id and not yet the
/// lower one, so the rows above a missing id are read again until it appears. One that never
/// does (an insert rolled back, an id skipped by the server) is given up after this.
const GAP_PATIENCE_MS: u64 = 10_000;

/// Ids read again after a whole read (start-up, a lift), for the same reason.
const RECHECK_AFTER_FULL_READ: u64 = 1_000;

/// What the ban side remembers between rounds.
#[derive(Default)]
pub(super) struct BanRound {
    /// Every `sipguard_ban.id` up to this one has been read (or given up, see
    /// [`GAP_PATIENCE_MS`]).
    last_id: u64,
    /// Since when (Unix ms) an id above `last_id` has been missing.
    gap_since: Option<u64>,
    /// `sipguard_generation.bans` / `ban_lifts` the published bans were read at.
    added_generation: Option<u64>,
    lifts_generation: Option<u64>,
    /// `sipguard_generation.bans` up to which every ban is applied here, for the stats file:
    /// set by a whole read, and by an incremental one that read all without a missing id
    /// (`added_generation` is cleared after a whole read only to make the next round re-read
    /// recent ids, which changes nothing the worker enforces).
    applied_generation: Option<u64>,
    /// Ids of rows whose source does not parse, said once each.
    logged_bad: HashSet<u64>,
    /// The table is missing (a schema from before bans): said once.
    reported_missing: bool,
    /// The last read failed: said once per streak.
    failing: bool,
}

impl BanRound {
    /// `sipguard_generation.bans` up to which this worker enforces every ban, for the stats
    /// file.
    pub(super) fn generation(&self) -> Option<u64> {
        self.applied_generation
    }

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
        // The next round reads the last ids again: an insert not yet committed during this read
        // (a lower id than the highest seen) would otherwise be skipped until the next lift.
        let highest = rows.iter().map(|r| r.id).max().unwrap_or(state.last_id);
        state.last_id = highest.saturating_sub(RECHECK_AFTER_FULL_READ);
        state.gap_since = None;
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
        state.added_generation = None;
        state.applied_generation = Some(added);
        return Ok(());
    }
    if state.added_generation == Some(added) {
        return Ok(());
    }
    let after = state.last_id;
    let Some(rows) =
        db::bans::added_since(conn, after, ROWS_PER_ROUND, cfg.query_timeout()).await?
    else {
        return missing(data, state);
    };
    data.counters.db_queries.fetch_add(1, Ordering::Relaxed);
    let complete = rows.len() < ROWS_PER_ROUND;
    state.last_id = next_after(state, after, &rows, now);
    // Rows read again above a missing id add nothing new: a source keeps its latest end.
    let live: Vec<BanRow> = rows.into_iter().filter(|r| r.until_ms > now).collect();
    if !live.is_empty() {
        let added = parse(data, state, &live);
        let bans = match data.bans() {
            Some(current) => current.with(added, now),
            None => Bans::default().with(added, now),
        };
        retired.bans(data.publish_bans(bans));
    }
    // A backlog longer than one read, or a missing id: the generation is taken only once all
    // is read, so the next round reads on even if nothing new is added.
    if complete && state.gap_since.is_none() {
        state.added_generation = Some(added);
        state.applied_generation = Some(added);
    }
    Ok(())
}

/// Where the next read starts: after the last id of the run that follows `after` without a
/// missing id (ids come in order); past a missing id only once it has been missing for
/// [`GAP_PATIENCE_MS`].
fn next_after(state: &mut BanRound, after: u64, rows: &[BanRow], now: u64) -> u64 {
    let mut contiguous = after;
    for r in rows {
        if r.id != contiguous + 1 {
            break;
        }
        contiguous = r.id;
    }
    let last = rows.last().map_or(after, |r| r.id);
    if contiguous == last {
        state.gap_since = None;
        return last;
    }
    let since = *state.gap_since.get_or_insert(now);
    if now.saturating_sub(since) < GAP_PATIENCE_MS {
        contiguous
    } else {
        state.gap_since = None;
        last
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ids: &[u64]) -> Vec<BanRow> {
        ids.iter()
            .map(|&id| BanRow {
                id,
                source: "192.0.2.1".into(),
                until_ms: u64::MAX,
            })
            .collect()
    }

    #[test]
    fn a_missing_id_holds_the_read_back_until_it_appears_or_the_patience_ends() {
        let mut s = BanRound::default();
        assert_eq!(next_after(&mut s, 0, &rows(&[1, 2, 3]), 0), 3);
        // 4 is not committed yet when 5 and 6 are read: read from 3 again.
        assert_eq!(next_after(&mut s, 3, &rows(&[5, 6]), 1_000), 3);
        assert_eq!(s.gap_since, Some(1_000));
        // It appears: everything is read.
        assert_eq!(next_after(&mut s, 3, &rows(&[4, 5, 6]), 2_000), 6);
        assert_eq!(s.gap_since, None);
        // 7 never comes (rolled back): given up after the patience.
        assert_eq!(next_after(&mut s, 6, &rows(&[8]), 3_000), 6);
        assert_eq!(
            next_after(&mut s, 6, &rows(&[8]), 3_000 + GAP_PATIENCE_MS),
            8
        );
        assert_eq!(s.gap_since, None);
        // Nothing new: stays.
        assert_eq!(next_after(&mut s, 8, &[], 20_000), 8);
    }
}
