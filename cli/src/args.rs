//! otpctl's command line, as clap sees it (also used to generate the man page and the
//! shell completions).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// otpctl: administer otpd (users, token issuance, start of use, cancellation, renewal).
#[derive(Parser, Debug)]
#[command(name = "otpctl", version, about)]
pub struct Cli {
    /// Admin socket (default: admin.socket from --config, else /run/otpd/admin.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// otpd's configuration file, to find the admin socket.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Daemon version, uptime and counts.
    Status,
    /// Users and their login passwords.
    #[command(subcommand)]
    User(UserCmd),
    /// The one-time password token of a user.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Write a copy of every record, taken through the running daemon, to PATH (mode 0600).
    /// Restore it into a stopped otpd with `otpd --restore PATH`; keep key_file as well.
    Backup { path: PathBuf },
}

#[derive(Args, Debug)]
pub struct PasswordArg {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user (state unregistered).
    Add {
        login_id: String,
        #[command(flatten)]
        pw: PasswordArg,
    },
    /// Set a user's login password.
    Passwd {
        login_id: String,
        #[command(flatten)]
        pw: PasswordArg,
    },
    /// State, lock, expiry, renewal and e-mail of a user.
    Show { login_id: String },
    /// One user a line.
    List,
    /// Remove a user and its token.
    Delete { login_id: String },
    /// Import users from a CSV file: login_id,password_hash,email (hash: argon2id PHC,
    /// sha512-crypt $6$ or bcrypt). All or nothing; a bad line is reported by number.
    Import { file: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// トークン発行: store the request and e-mail the setup link to the mobile address.
    Issue {
        login_id: String,
        /// The customer's mobile e-mail address.
        #[arg(long)]
        email: String,
        /// Read the activation password from the first line of standard input.
        #[arg(long)]
        activation_password_stdin: bool,
    },
    /// 利用開始: accept only a valid, unused one-time password.
    Activate {
        login_id: String,
        #[arg(long)]
        otp: String,
    },
    /// 利用解除: back to unregistered, the secret destroyed.
    Cancel { login_id: String },
    /// 有効期限更新 (from 30 days before expiry, and any time after it).
    Renew { login_id: String },
    /// Clear the lock and the failure count.
    Unlock { login_id: String },
}
