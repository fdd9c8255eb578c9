//! otpd's command line, as clap sees it (also used to generate the man page).

use std::path::PathBuf;

use clap::Parser;

/// otpd: the OTP authentication centre (RADIUS, HTTP setup, admin socket, mail).
#[derive(Parser, Debug)]
#[command(name = "otpd", version, about)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short = 'c', default_value = "/etc/otpd/otpd.toml")]
    pub config: PathBuf,
    /// Validate the configuration, print every problem, and exit (0 good, 2 bad).
    #[arg(long)]
    pub check_config: bool,
    /// Restore a backup written by `otpctl backup` into the (stopped) daemon's store, then exit.
    #[arg(long, value_name = "BACKUP")]
    pub restore: Option<PathBuf>,
    /// With --restore: write into a store that already holds users.
    #[arg(long, requires = "restore")]
    pub force: bool,
}
