//! sipguard: IP/CIDR and country blacklists for Kamailio's app_lua, as a native Lua module.
//!
//! | module     | job                                                         |
//! |------------|-------------------------------------------------------------|
//! | `addr`     | parse source addresses as Kamailio hands them over          |
//! | `netset`   | address/CIDR sets with longest-prefix match                 |
//! | `listcheck` | guard rails for list entries (mapped form, too wide)       |
//! | `ranges`   | IP → country from nested ranges, narrowest wins             |
//! | `countrydata` | country files (db-ip, IP2Location, MaxMind CSV, MMDB) read strictly |
//! | `uamatch`  | scanner User-Agent substrings, case-insensitive          |
//! | `engine`   | decisions, on plain values                                   |
//! | `cache`    | per-source LRU with TTL                                      |
//! | `config`   | the JSON config file                                         |
//! | `db`       | MySQL reads, each under a deadline                           |
//! | `atomicfile` | files replaced whole, synced, never through a link       |
//! | `nodefile` | one copy of the country tables per node: a file every worker maps |
//! | `snapshot` | last loaded data on disk, for starts without the database |
//! | `stats`    | per-worker counters, published as files                 |
//! | `logq`     | log lines for `KSR.log`, printed by the next request          |
//! | `alert`    | the loader's log lines, written at once (syslog or stderr)    |
//! | `data`     | what a worker's request path and loader threads share        |
//! | `guard`    | the request path: every check, from the data in force        |
//! | `loader`   | the background threads: lists, country loads, snapshots, stats |
//! | `process`  | which guard this process runs (keyed by fork)                 |
//! | `admin`    | import, list editing, reload, explain (sipguard-admin)    |
//! | `lua`      | the Lua API (`require "sipguard"`)                           |

pub mod addr;
pub mod admin;
pub mod alert;
pub mod atomicfile;
pub mod ban_request;
pub mod bans;
pub mod cache;
pub mod config;
pub mod countrydata;
pub mod data;
pub mod db;
pub mod engine;
pub mod frozen;
pub mod guard;
pub mod listcheck;
mod loader;
pub mod logq;
pub mod metrics;
pub mod netset;
pub mod nodefile;
pub mod process;
pub mod ranges;
pub mod snapshot;
pub mod stats;
pub mod uamatch;

mod lua;
