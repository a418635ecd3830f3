//! sipguard-admin: import country data, edit the lists, make every worker reload, explain a
//! decision, read the workers' counters. `sipguard-admin --help` lists the commands.
//!
//! Exit codes: 0 done; 1 database or I/O error; 2 bad input (including a bad CSV line);
//! 3 not found; 4 another import is running; 5 `warm` timed out before every worker reloaded.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{CommandFactory, FromArgMatches};
use sipguard::admin::cli::{BanAction, Cli, Command, FamilyArg, Format, ListAction};
use sipguard::admin::{self, explain, import, lists, AdminError};
use sipguard::config::Config;
use sipguard::countrydata;
use sipguard::stats;

fn main() -> ExitCode {
    // Like any CLI: output piped into `head` ends the program quietly (SIGPIPE), instead of
    // a panic from println! on a broken pipe.
    // SAFETY: restores the default disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    cli.db_url_on_command_line =
        matches.value_source("db_url") == Some(clap::parser::ValueSource::CommandLine);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sipguard-admin: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("sipguard-admin: {}", chain(&e));
            let code = e
                .downcast_ref::<AdminError>()
                .map(|a| a.exit_code())
                .unwrap_or(1);
            ExitCode::from(code as u8)
        }
    }
}

/// The error and its causes on one line, skipping causes already spelled out by the one
/// before (the MySQL driver nests the same I/O error several times).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
    }
    out
}

/// The config if readable; commands that only need the database work without it.
fn load_config(path: &std::path::Path) -> Option<Config> {
    Config::load(path).ok()
}

async fn connect(cli: &Cli) -> anyhow::Result<mysql_async::Conn> {
    let url = match (&cli.db_url, load_config(&cli.config)) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.db_url,
        (None, None) => {
            return Err(anyhow!(
            "no database: pass --db-url (or SIPGUARD_ADMIN_DB_URL), or a readable --config ({})",
            cli.config.display()
        ))
        }
    };
    let conn = sipguard::db::connect(&url, Duration::from_secs(10))
        .await
        .map_err(AdminError::from)
        .context("connecting to the database")?;
    Ok(conn)
}

fn scanner_patterns(cli: &Cli) -> Vec<String> {
    load_config(&cli.config)
        .map(|c| c.scanner_user_agents)
        .unwrap_or_else(|| {
            sipguard::uamatch::DEFAULT_PATTERNS
                .iter()
                .map(|p| p.to_string())
                .collect()
        })
}

/// `--stats-dir`, else `stats_dir` from `cfg` (the config as loaded; `None` when unreadable).
fn stats_dir(
    cli: &Cli,
    cfg: Option<&Config>,
    explicit: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    explicit
        .or_else(|| cfg.and_then(|c| c.stats_dir.clone()))
        .ok_or_else(|| {
            anyhow!(
                "no stats directory: pass --stats-dir or set stats_dir in {}",
                cli.config.display()
            )
        })
}

/// Progress for `import-countries`: a bar on a terminal, a line per ~100k rows otherwise.
struct ImportProgress {
    bar: Option<indicatif::ProgressBar>,
    last_line: std::cell::Cell<u64>,
}

impl import::Progress for ImportProgress {
    fn update(&self, rows: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(rows);
            }
            None if rows >= self.last_line.get() + 100_000 => {
                self.last_line.set(rows);
                eprintln!("sipguard-admin: {rows} of {total} rows stored");
            }
            None => {}
        }
    }
}

/// Prints what an import reads and what it changes (the same for a dry run and a real one).
fn print_summary(s: &import::Summary) {
    for (file, format) in &s.files {
        println!("read {file} as {format}");
    }
    println!(
        "IPv4: {} ranges ({} nested in wider ones{})",
        s.v4,
        s.nested.0,
        if s.mapped > 0 {
            format!(", {} from IPv4-mapped IPv6 rows", s.mapped)
        } else {
            String::new()
        }
    );
    println!(
        "IPv6: {} ranges ({} nested in wider ones)",
        s.v6, s.nested.1
    );
    if s.duplicates > 0 {
        println!(
            "{} rows given twice with the same country, stored once",
            s.duplicates
        );
    }
    for note in &s.notes {
        println!("note: {note}");
    }
    if !s.conflicts.is_empty() {
        println!(
            "{} ranges given different countries, their rows left out (--skip-conflicts):",
            s.conflicts.len()
        );
        for c in s.conflicts.iter().take(10) {
            println!("  {c}");
        }
        if s.conflicts.len() > 10 {
            println!("  … and {} more", s.conflicts.len() - 10);
        }
    }
    if s.skipped.is_empty() {
        println!("no placeholder rows");
    } else {
        let each: Vec<String> = s.skipped.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!("skipped (placeholder: no country): {}", each.join(", "));
    }
    let family =
        |name: &str, d: &admin::country_diff::FamilyDiff, unit: &str, scale: fn(u128) -> u128| {
            if d.changed == 0 {
                println!("{name}: no address changes country");
                return;
            }
            println!(
                "{name}: {} {unit} change country; most affected (gained / lost {unit}):",
                scale(d.changed)
            );
            for (cc, g, l) in d.top(10) {
                println!("  {cc}  +{} / -{}", scale(g), scale(l));
            }
        };
    if s.v4 > 0 {
        family("IPv4 against ipcountry", &s.v4_changes, "addresses", |n| n);
    } else {
        println!("IPv4: no rows in the input; ipcountry is kept");
    }
    if s.v6 > 0 {
        family(
            "IPv6 against ipcountry6",
            &s.v6_changes,
            "/64s",
            admin::country_diff::per_64,
        );
    } else {
        println!("IPv6: no rows in the input; ipcountry6 is kept");
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::ImportCountries {
            files,
            format,
            family,
            dry_run,
            skip_conflicts,
        } => {
            let mut conn = connect(&cli).await?;
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({eta})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            });
            let progress = ImportProgress {
                bar,
                last_line: 0.into(),
            };
            let opts = countrydata::Options {
                format: *format,
                family: family.map(|f| match f {
                    FamilyArg::Ipv4 => countrydata::Family::V4,
                    FamilyArg::Ipv6 => countrydata::Family::V6,
                }),
                skip_conflicts: *skip_conflicts,
            };
            let started = Instant::now();
            let report = import::import(&mut conn, files, &opts, *dry_run, &progress)
                .await
                .context("import-countries")?;
            if let Some(bar) = &progress.bar {
                bar.finish_and_clear();
            }
            print_summary(&report.summary);
            if *dry_run {
                println!("dry run: nothing was changed");
            } else {
                println!(
                    "imported {} IPv4 and {} IPv6 ranges in {:.1} s; replaced {}",
                    report.summary.v4,
                    report.summary.v6,
                    started.elapsed().as_secs_f64(),
                    report.replaced.join(", ")
                );
            }
        }
        Command::Black(c)
        | Command::White(c)
        | Command::Country(c)
        | Command::User(c)
        | Command::Ua(c) => {
            let kind = match &cli.command {
                Command::Black(_) => lists::ListKind::Black,
                Command::White(_) => lists::ListKind::White,
                Command::Country(_) => lists::ListKind::Country,
                Command::User(_) => lists::ListKind::User,
                _ => lists::ListKind::Ua,
            };
            let mut conn = connect(&cli).await?;
            match &c.action {
                ListAction::Add {
                    value,
                    detail,
                    force,
                } => {
                    let out = lists::add(&mut conn, kind, value, detail, *force).await?;
                    for note in &out.notes {
                        println!("note: {note}");
                    }
                    let v = &out.value;
                    match out.added {
                        lists::Added::New(id) => {
                            println!("added {v} to {} (id {id})", kind.table())
                        }
                        lists::Added::Existing(id) => {
                            println!("{v} is already in {} (id {id})", kind.table())
                        }
                    }
                }
                ListAction::Remove { value } => {
                    let (v, ids) = lists::remove(&mut conn, kind, value).await?;
                    println!("removed {v} from {} (ids {ids:?})", kind.table());
                }
                ListAction::List { format } => {
                    let rows = lists::list(&mut conn, kind).await?;
                    match format {
                        Format::Json => {
                            let j: Vec<_> = rows
                                .iter()
                                .map(|r| serde_json::json!({"id": r.id, "value": r.value, "detail": r.detail}))
                                .collect();
                            println!("{}", serde_json::to_string_pretty(&j)?);
                        }
                        Format::Table => {
                            println!("{:>6}  {:<44} detail", "id", kind.table());
                            for r in rows {
                                println!("{:>6}  {:<44} {}", r.id, r.value, r.detail);
                            }
                        }
                    }
                }
            }
        }
        Command::Ban(c) => {
            let mut conn = connect(&cli).await?;
            match &c.action {
                BanAction::Add {
                    source,
                    length,
                    reason,
                    force,
                } => {
                    let net = admin::bans::parse_source(source, *force)?;
                    let secs = admin::bans::parse_duration(length)?;
                    admin::bans::add(&mut conn, net, secs, reason, "sipguard-admin").await?;
                    println!(
                        "banned {} for {secs} s on every node (workers enforce it within refresh_secs)",
                        sipguard::listcheck::show(net)
                    );
                }
                BanAction::Remove { source } => {
                    let net = admin::bans::parse_source(source, true)?;
                    let rows = admin::bans::remove(&mut conn, net).await?;
                    println!(
                        "lifted the ban on {} ({rows} {}); workers stop enforcing it within refresh_secs",
                        sipguard::listcheck::show(net),
                        if rows == 1 { "row" } else { "rows" }
                    );
                }
                BanAction::Purge => {
                    let n = admin::bans::purge(&mut conn).await?;
                    println!("deleted {n} rows of ended bans");
                }
                BanAction::List { json } => {
                    let bans = admin::bans::list(&mut conn).await?;
                    if *json {
                        println!("{}", serde_json::to_string_pretty(&bans)?);
                    } else {
                        println!(
                            "{:<43} {:<19} {:>9}  {:<16} reason",
                            "source", "until", "left (s)", "node"
                        );
                        for b in bans {
                            println!(
                                "{:<43} {:<19} {:>9}  {:<16} {}",
                                b.source, b.until, b.remaining_secs, b.node, b.reason
                            );
                        }
                    }
                }
            }
        }
        Command::Reload => {
            let mut conn = connect(&cli).await?;
            match admin::bump_generations(&mut conn, &["lists", "countries"]).await? {
                Some(g) => println!(
                    "reload requested (lists generation {}, countries generation {}); workers pick it up within refresh_secs",
                    g.lists, g.countries
                ),
                None => println!("no sipguard_generation table (old schema): workers re-read the lists every refresh_secs anyway"),
            }
        }
        Command::Warm { timeout, ctl } => return warm(&cli, *timeout, ctl).await,
        Command::Explain { address, user, ua } => {
            let mut conn = connect(&cli).await?;
            let e = explain::explain(
                &mut conn,
                &scanner_patterns(&cli),
                address,
                user.as_deref(),
                ua.as_deref(),
            )
            .await?;
            println!("source {address}");
            for s in &e.steps {
                println!("  {:<12} {}", s.check, s.found);
            }
            println!("decision: {}", e.decision);
        }
        Command::Stats {
            json,
            stats_dir: dir,
        } => {
            let dir = stats_dir(&cli, load_config(&cli.config).as_ref(), dir.clone())?;
            let workers =
                stats::read_live(&dir).with_context(|| format!("reading {}", dir.display()))?;
            let total = stats::total(&workers);
            if *json {
                let stalled = stalled_pids(&workers);
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"workers": workers, "total": total, "stalled": stalled})
                    )?
                );
            } else {
                print_stats(&workers, &total);
            }
        }
        Command::Metrics {
            listen,
            textfile,
            every,
            stats_dir: dir,
            no_db,
        } => {
            return metrics(
                &cli,
                *listen,
                textfile.as_deref(),
                *every,
                dir.clone(),
                *no_db,
            )
            .await
        }
    }
    Ok(0)
}

/// `sipguard-admin metrics`: prints, serves or writes the node's metrics.
async fn metrics(
    cli: &Cli,
    listen: Option<std::net::SocketAddr>,
    textfile: Option<&std::path::Path>,
    every: Option<u64>,
    dir: Option<PathBuf>,
    no_db: bool,
) -> anyhow::Result<u8> {
    use sipguard::metrics::{collect::Collector, encode, serve};
    let cfg = match Config::load(&cli.config) {
        Ok(c) => Some(c),
        Err(e) => {
            // Without it there is no snapshot_dir, and no db_url unless --db-url gives one:
            // said, so a missing group membership does not pass for --no-db.
            eprintln!(
                "sipguard-admin: {e}; metrics without {}",
                if no_db || cli.db_url.is_some() {
                    "the snapshot times"
                } else {
                    "the snapshot times and the database"
                }
            );
            None
        }
    };
    let dir = stats_dir(cli, cfg.as_ref(), dir)?;
    // An explicit --db-url, else the module's own (read-only) user: a long-running exporter
    // needs no more, and never picks up SIPGUARD_ADMIN_DB_URL's write access unless nothing
    // else is there.
    let url = if no_db {
        None
    } else if cli.db_url_on_command_line {
        cli.db_url.clone()
    } else {
        cfg.as_ref()
            .map(|c| c.db_url.clone())
            .or(cli.db_url.clone())
    };
    if let Some(d) = textfile.filter(|d| !d.is_dir()) {
        return Err(AdminError::Input(format!(
            "--textfile {}: no such directory (node_exporter's --collector.textfile.directory)",
            d.display()
        ))
        .into());
    }
    let snapshot_dir = cfg.as_ref().and_then(|c| c.snapshot_dir.clone());
    // A scrape answers within about 3 s whatever the database does (Prometheus's default
    // scrape timeout is 10 s); each call has 1 s, plenty for counts.
    let mut collector = Collector::new(
        Some(dir),
        snapshot_dir,
        url,
        Duration::from_secs(1),
        Duration::from_secs(3),
    );
    if let Some(addr) = listen {
        // Its own thread: the server runs its own runtime, outside this one.
        let server = std::thread::spawn(move || {
            serve::serve(addr, collector, |a| {
                eprintln!("sipguard-admin: serving http://{a}/metrics")
            })
        });
        server
            .join()
            .map_err(|_| anyhow!("the metrics server stopped on an internal error"))??;
        return Ok(0);
    }
    let mut said_db_error = false;
    loop {
        let view = collector
            .collect()
            .await
            .context("reading the stats directory")?;
        match &view.db {
            Some(Err(e)) if !said_db_error => {
                eprintln!("sipguard-admin: database not read ({e}): sipguard_db_up 0");
                said_db_error = true;
            }
            Some(Ok(_)) => said_db_error = false,
            _ => {}
        }
        let text = encode::encode(&view, encode::Format::Prometheus);
        match textfile {
            Some(d) => serve::write_textfile(d, &text)
                .with_context(|| format!("writing {}", d.join(serve::TEXTFILE_NAME).display()))?,
            None => print!("{text}"),
        }
        match every {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs.max(1))).await,
            None => return Ok(0),
        }
    }
}

fn print_stats(workers: &[stats::WorkerStats], total: &std::collections::BTreeMap<String, u64>) {
    print!("{:<26}", "counter");
    for w in workers {
        print!("{:>15}", format!("pid {}", w.pid));
    }
    println!("{:>14}", "total");
    for (name, sum) in total {
        print!("{name:<26}");
        for w in workers {
            print!("{:>15}", w.counters.get(name).copied().unwrap_or(0));
        }
        println!("{sum:>14}");
    }
    print!("{:<26}", "lists generation");
    for w in workers {
        print!(
            "{:>15}",
            w.lists_generation
                .map(|g| g.to_string())
                .unwrap_or("-".into())
        );
    }
    println!();
    print!("{:<26}", "loader");
    let now = stats::now_ms();
    for w in workers {
        let state = if w.stalled(now) {
            format!("stalled {}s", now.saturating_sub(w.written_ms) / 1000)
        } else if w.db_down {
            "db down".into()
        } else {
            "ok".into()
        };
        print!("{state:>15}");
    }
    println!();
    println!("{} live worker(s)", workers.len());
}

/// Workers whose loader has not written its stats file (it does every round) for longer than
/// its own stall bound: their data is frozen.
fn stalled_pids(workers: &[stats::WorkerStats]) -> Vec<u32> {
    let now = stats::now_ms();
    workers
        .iter()
        .filter(|w| w.stalled(now))
        .map(|w| w.pid)
        .collect()
}

/// The SIP workers of the Kamailio behind `ctl` that load sipguard, or `None` (said on stderr)
/// when that cannot be known: no answer, no sipguard in it, or another node than the one
/// writing `live` stats.
async fn node_sip_workers(ctl: &str, live: &[stats::WorkerStats]) -> Option<Vec<u32>> {
    use admin::workers::{module_state, processes, ModuleState};
    let why = match processes(ctl, Duration::from_secs(3)).await {
        Ok(ps) => {
            let pids: Vec<u32> = ps
                .iter()
                .filter(|p| p.is_sip_worker() && module_state(p.pid) != ModuleState::NotLoaded)
                .map(|p| p.pid)
                .collect();
            if pids.is_empty() {
                format!("no SIP worker of the Kamailio at {ctl} loads sipguard")
            } else if !live.is_empty() && !live.iter().any(|w| pids.contains(&w.pid)) {
                format!(
                    "the Kamailio at {ctl} is not the one whose workers write the stats directory"
                )
            } else {
                return Some(pids);
            }
        }
        Err(e) => e.to_string(),
    };
    eprintln!("sipguard-admin: workers without a request yet are not listed ({why}); pass --ctl with this node's control socket");
    None
}

async fn warm(cli: &Cli, timeout: u64, ctl: &str) -> anyhow::Result<u8> {
    let dir = stats_dir(cli, load_config(&cli.config).as_ref(), None)?;
    let live = stats::read_live(&dir).with_context(|| format!("reading {}", dir.display()))?;
    // Every SIP worker of the node, as Kamailio lists them: the module starts in a worker at
    // its first request, so those without a stats file have had none yet.
    let sip_workers = node_sip_workers(ctl, &live).await;
    let mut conn = connect(cli).await?;
    let Some(want) = admin::bump_generations(&mut conn, &["lists", "countries"]).await? else {
        return Err(anyhow!(
            "no sipguard_generation table: apply kamailio/sql/schema.sql"
        ));
    };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let workers =
            stats::read_live(&dir).with_context(|| format!("reading {}", dir.display()))?;
        let mut behind: Vec<u32> = workers
            .iter()
            .filter(|w| {
                w.lists_generation < Some(want.lists)
                    || w.countries_generation < Some(want.countries)
            })
            .map(|w| w.pid)
            .collect();
        let mut idle = Vec::new();
        for pid in sip_workers.iter().flatten().copied() {
            if workers.iter().any(|w| w.pid == pid) {
                continue;
            }
            match admin::workers::module_state(pid) {
                admin::workers::ModuleState::Idle => idle.push(pid),
                // Has had a request but not yet written its first stats: still loading.
                admin::workers::ModuleState::Started => behind.push(pid),
                admin::workers::ModuleState::NotLoaded => {} // gone since
            }
        }
        if behind.is_empty() && (!workers.is_empty() || !idle.is_empty()) {
            if workers.is_empty() {
                println!("no worker has loaded data yet");
            } else {
                println!(
                    "{} worker(s) loaded lists generation {} and countries generation {}",
                    workers.len(),
                    want.lists,
                    want.countries
                );
            }
            if !idle.is_empty() {
                let snapshot_dir = load_config(&cli.config).and_then(|c| c.snapshot_dir);
                let how = match snapshot_dir {
                    None => "reading the country tables into a copy of its own (snapshot_dir is null)".to_string(),
                    Some(d) => match sipguard::nodefile::for_generation(&d, want.countries) {
                        Some(f) => format!("mapping {} (built)", f.display()),
                        None => format!(
                            "the first of them reading the country tables into the node's file for countries generation {} (not built yet)",
                            want.countries
                        ),
                    },
                };
                println!(
                    "{} worker(s) have had no request yet, {idle:?}: each loads the current data at its first request, {how}",
                    idle.len()
                );
            }
            return Ok(0);
        }
        if Instant::now() >= deadline {
            let stalled = stalled_pids(&workers);
            let stalled = if stalled.is_empty() {
                String::new()
            } else {
                format!("; loader stalled (no refresh round within its stall bound) in {stalled:?}")
            };
            eprintln!(
                "sipguard-admin: after {timeout} s, {} of {} worker(s) have not reloaded: {behind:?} (workers start loading at their first request){stalled}",
                behind.len(),
                workers.len()
            );
            return Ok(5);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
