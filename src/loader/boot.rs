//! Start-up: the snapshot on disk, published before the first database attempt.

use super::{release_freed_memory, Retired};
use crate::config::Config;
use crate::data::Data;
use crate::engine::Lists;
use crate::logq::Level;
use crate::nodefile;
use crate::snapshot;

/// `"… is writable by other users"` when `dir` exists and others than its owner and group may
/// write in it: they could plant the data a worker enforces at its next start.
fn writable_by_others(dir: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).ok()?.permissions().mode();
    (mode & 0o002 != 0).then(|| {
        format!(
            "{} is writable by every user (mode {:o})",
            dir.display(),
            mode & 0o7777
        )
    })
}

/// Publishes the last snapshot, so requests are decided from it until live data comes. Returns
/// the lines to log should the database turn out to be unavailable (they say what is in force).
pub(super) fn load_snapshot(
    cfg: &Config,
    data: &Data,
    retired: &mut Retired,
) -> Vec<(Level, String)> {
    let mut lines = Vec::new();
    for (field, dir) in [
        ("snapshot_dir", &cfg.snapshot_dir),
        ("stats_dir", &cfg.stats_dir),
    ] {
        if let Some(w) = dir.as_deref().and_then(writable_by_others) {
            // Said at once (not only if the database is down): it is a standing risk.
            data.say(
                Level::Warn,
                format!("{field} {w}: make it private to Kamailio's user (chmod 750)"),
            );
        }
    }
    let Some(dir) = &cfg.snapshot_dir else {
        return lines;
    };
    if data.lists().is_none() {
        match snapshot::read_lists(dir) {
            Ok(rows) => {
                let (lists, _) = Lists::build(&rows, &cfg.scanner_user_agents);
                lines.push((
                    Level::Warn,
                    format!(
                        "database unavailable at start: enforcing the lists saved in {} ({})",
                        dir.display(),
                        lists.summary()
                    ),
                ));
                retired.lists(data.publish_lists(lists));
            }
            Err(e) => lines.push((
                Level::Err,
                format!(
                    "no usable list snapshot ({e}); policy on_no_data={:?} applies",
                    cfg.on_no_data
                ),
            )),
        }
    }
    if cfg.country && data.countries().is_none() {
        // The node's newest country file (what every worker maps), else a snapshot written
        // by a version before node files.
        let mut refused = Vec::new();
        if let Some((ranges, header)) = nodefile::newest(dir, &mut refused) {
            let (v4, v6) = ranges.sizes();
            retired.countries(data.publish_countries(ranges));
            lines.push((
                Level::Warn,
                format!(
                    "database unavailable at start: using the country tables of generation {} mapped from {} ({v4} IPv4 + {v6} IPv6 segments)",
                    header.generation.map_or("-".to_string(), |g| g.to_string()),
                    dir.join(nodefile::file_name(header)).display()
                ),
            ));
            for r in refused {
                lines.push((Level::Warn, format!("country file refused: {r}")));
            }
            return lines;
        }
        for r in refused {
            lines.push((Level::Warn, format!("country file refused: {r}")));
        }
        match snapshot::read_countries(dir) {
            Ok(b) => {
                let rows = b.rows();
                retired.countries(data.publish_countries(b.build()));
                release_freed_memory();
                lines.push((
                    Level::Warn,
                    format!(
                        "database unavailable at start: using the {rows} country ranges saved in {}",
                        dir.display()
                    ),
                ));
            }
            Err(e) => lines.push((
                Level::Err,
                format!("no usable country snapshot ({e}); get_countrycode answers \"\" until the database is back"),
            )),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_others_can_write_to_is_named() {
        let d = std::env::temp_dir().join(format!("sg-boot-perm-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let said = writable_by_others(&d).unwrap();
        assert!(
            said.ends_with("is writable by every user (mode 777)"),
            "{said}"
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(writable_by_others(&d), None);
        assert_eq!(writable_by_others(&d.join("missing")), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
