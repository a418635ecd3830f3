//! `sipguard-admin`'s command line, as clap reads it. In the library so that the man page and
//! the shell completions (`examples/gen_docs.rs`, run by `scripts/package`) are generated from
//! the same definition the binary parses.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config;
use crate::countrydata;

/// The whole command line: global options and one command.
#[derive(Parser)]
#[command(
    name = "sipguard-admin",
    version,
    about = "Manage sipguard's lists and country data for Kamailio"
)]
pub struct Cli {
    /// The module's config file (for stats_dir, scanner patterns, and db_url when --db-url is absent).
    #[arg(long, env = config::ENV_VAR, default_value = config::DEFAULT_PATH, global = true)]
    pub config: PathBuf,
    /// Database with write access (the module's own user is read-only):
    /// mysql://user:pass@host:port/db.
    #[arg(
        long,
        env = "SIPGUARD_ADMIN_DB_URL",
        global = true,
        hide_env_values = true
    )]
    pub db_url: Option<String>,
    /// Whether `--db-url` was given on the command line rather than through
    /// `SIPGUARD_ADMIN_DB_URL` (set after parsing): `metrics` takes an explicit one over the
    /// config's read-only user, never the environment's write access.
    #[arg(skip)]
    pub db_url_on_command_line: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Load country data into ipcountry/ipcountry6, replacing them atomically: db-ip style CSV,
    /// IP2Location LITE DB1 CSV (IPv4 and IPv6 editions), MaxMind GeoLite2 Country CSV
    /// (blocks and locations together) or a MaxMind DB (.mmdb); .gz accepted. The format is
    /// detected per file. A bad line changes nothing.
    ImportCountries {
        /// Country files. A family absent from all of them keeps its table.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Read every file as this format instead of detecting it.
        #[arg(long, value_parser = parse_format)]
        format: Option<countrydata::Format>,
        /// Address family of numeric addresses, for files whose name does not say it
        /// (db-ip `-num` files, IP2Location's IPv6 edition under another name).
        #[arg(long, value_enum)]
        family: Option<FamilyArg>,
        /// Read and check everything, print what would change against the live tables, and
        /// change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Every row of a range that rows give different countries is left out (its
        /// addresses answer what a wider range says, or no country) and listed, instead of
        /// refusing the whole input.
        #[arg(long)]
        skip_conflicts: bool,
    },
    /// black_list: addresses and CIDR networks to drop.
    Black(ListCmd),
    /// white_list: addresses and networks exempt from every check.
    White(ListCmd),
    /// black_list_country: ISO country codes to drop.
    Country(ListCmd),
    /// black_list_user: SIP user names to drop.
    User(ListCmd),
    /// black_list_ua: User-Agent substrings to drop (added to the config's scanner patterns).
    Ua(ListCmd),
    /// sipguard_ban: sources every worker of every node refuses until a time (wb_type "ban");
    /// the module's sipguard.ban writes there too.
    Ban(BanCmd),
    /// Make every worker of every node reload lists and country data on its next round.
    Reload,
    /// Reload, then wait until every live worker (seen in stats_dir) has loaded the new data,
    /// and name the SIP workers that have had no request yet (from Kamailio's control socket).
    Warm {
        /// Give up after this many seconds (exit code 5).
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Kamailio's control socket (ctl module), asked with `kamcmd core.psx` for its SIP
        /// workers.
        #[arg(long, default_value = "unix:/run/kamailio/kamailio_ctl")]
        ctl: String,
    },
    /// Show the decision kamailio/kamailio.cfg would take for a source, and the rows behind it.
    Explain {
        /// Source address as $si would give it.
        address: String,
        /// SIP user name ($fU) to check against black_list_user.
        #[arg(long)]
        user: Option<String>,
        /// User-Agent to check against the scanner patterns.
        #[arg(long)]
        ua: Option<String>,
    },
    /// The workers' counters, per worker and summed, from stats_dir.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Directory the workers write to (default: stats_dir from the config).
        #[arg(long)]
        stats_dir: Option<PathBuf>,
    },
    /// Prometheus metrics of this node: printed, served at /metrics (--listen), or written for
    /// node_exporter's textfile collector (--textfile).
    ///
    /// The workers' counters (summed) and state from stats_dir, the snapshot files' times, and
    /// one read of the database (--db-url given here, else the config's db_url: the module's
    /// SELECT-only user is enough), in the Prometheus text format (OpenMetrics over HTTP when
    /// the scraper asks for it).
    Metrics {
        /// Serve GET /metrics on this IP address and port until stopped, e.g. 127.0.0.1:9477.
        #[arg(long, value_name = "ADDR:PORT", conflicts_with = "textfile")]
        listen: Option<std::net::SocketAddr>,
        /// Write DIR/sipguard.prom (replaced whole, mode 0644) instead of printing; DIR must
        /// exist (node_exporter's --collector.textfile.directory).
        #[arg(long, value_name = "DIR")]
        textfile: Option<PathBuf>,
        /// With --textfile: write again every this many seconds until stopped (default: once,
        /// for cron).
        #[arg(long, value_name = "SECONDS", requires = "textfile")]
        every: Option<u64>,
        /// Directory the workers write to (default: stats_dir from the config).
        #[arg(long)]
        stats_dir: Option<PathBuf>,
        /// Leave out what is read from the database (sipguard_db_up and the gauges after it).
        #[arg(long)]
        no_db: bool,
    },
}

fn parse_format(s: &str) -> Result<countrydata::Format, String> {
    s.parse()
}

/// Address family of numeric addresses in a country file.
#[derive(Clone, Copy, ValueEnum)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

/// What to do with one list table.
#[derive(clap::Args)]
pub struct ListCmd {
    #[command(subcommand)]
    pub action: ListAction,
}

/// The actions on a list table.
#[derive(Subcommand)]
pub enum ListAction {
    /// Add a value (validated; adding an existing value is not an error).
    Add {
        value: String,
        /// Free text, the post's `detail` column.
        #[arg(long, default_value = "")]
        detail: String,
        /// Store an address entry wider than a /8 (IPv4) or /16 (IPv6), which would drop (black)
        /// or exempt from every check (white) that many sources.
        #[arg(long)]
        force: bool,
    },
    /// Remove a value (exit code 3 when it is not listed).
    Remove { value: String },
    /// Show the rows.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// What to do with the bans.
#[derive(clap::Args)]
pub struct BanCmd {
    #[command(subcommand)]
    pub action: BanAction,
}

/// The actions on bans.
#[derive(Subcommand)]
pub enum BanAction {
    /// Ban an address or CIDR network on every node, from now (the database's clock).
    Add {
        source: String,
        /// How long: whole seconds or with a unit (90, 90s, 15m, 12h, 7d); at most 366 days.
        #[arg(long = "for", value_name = "LENGTH")]
        length: String,
        /// Free text, shown by `ban list` and `explain`.
        #[arg(long, default_value = "")]
        reason: String,
        /// Ban a network wider than a /8 (IPv4) or /16 (IPv6).
        #[arg(long)]
        force: bool,
    },
    /// Lift every ban of exactly this source on every node (exit code 3 when it has none).
    Remove { source: String },
    /// Delete the rows of bans that have ended (the table keeps them until then; run it from
    /// cron). Lifts nothing.
    Purge,
    /// Show the bans in force, one line per source (its latest end).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Output of `list`.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}
