//! Writes `sipguard-admin`'s man pages and shell completions from the same clap definition the
//! binary parses (`sipguard::admin::cli`), for the Debian package (`scripts/package`):
//!
//! ```text
//! cargo run --release --example gen_docs -- OUT_DIR
//! ```
//!
//! `OUT_DIR/man/sipguard-admin.1` plus one page per command (`sipguard-admin-ban.1`, …), and
//! `OUT_DIR/completions/{sipguard-admin.bash,_sipguard-admin,sipguard-admin.fish}`.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use sipguard::admin::cli::Cli;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .ok_or_else(|| std::io::Error::other("usage: gen_docs OUT_DIR"))?,
    );
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(Cli::command(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "sipguard-admin", &completions)?;
    }
    // clap_complete 4.6 names the bash cases of a hyphenated binary's subcommands two ways
    // (`sipguard__admin__subcmd__metrics` where it sets them, `sipguard__subcmd__admin__…` where
    // it matches them), so nothing after the first word completes; one spelling fixes it.
    let bash = completions.join("sipguard-admin.bash");
    let text = std::fs::read_to_string(&bash)?;
    std::fs::write(
        &bash,
        text.replace("sipguard__subcmd__admin", "sipguard__admin"),
    )?;
    Ok(())
}
