//! otpctl: the administrators' command line. Parses, asks otpd over the admin socket, prints.

mod client;
mod files;
mod secret;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use otpd_core::admin::{AdminData, AdminRequest, Secret};
use otpd_core::user::UserView;

const DEFAULT_SOCKET: &str = "/run/otpd/admin.sock";

/// otpctl: administer otpd (users, token issuance, start of use, cancellation, renewal).
#[derive(Parser, Debug)]
#[command(name = "otpctl", version, about)]
struct Cli {
    /// Admin socket (default: admin.socket from --config, else /run/otpd/admin.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// otpd's configuration file, to find the admin socket.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct PasswordArg {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand, Debug)]
enum UserCmd {
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
enum TokenCmd {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// What went wrong, and the exit status that says so.
#[derive(Debug)]
pub enum Failure {
    /// otpd refused: 1.
    Refused(String),
    /// Bad invocation or input: 2.
    Usage(String),
    /// otpd could not be reached: 3.
    Unreachable(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(m) | Failure::Usage(m) | Failure::Unreachable(m) => f.write_str(m),
        }
    }
}

fn socket_path(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    if let Some(cfg) = &cli.config {
        return client::socket_from_config(cfg).map_err(Failure::Usage);
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let request = build_request(&cli.command)?;
    let socket = socket_path(cli)?;
    let data = client::call(&socket, &request)?;
    if let (Command::Backup { path }, AdminData::Backup { rows }) = (&cli.command, &data) {
        let users = files::write_backup(path, rows)?;
        if cli.json {
            println!(
                "{}",
                serde_json::json!({"path": path, "records": rows.len(), "users": users})
            );
        } else {
            println!(
                "backup of {users} users ({} records) written to {}",
                rows.len(),
                path.display()
            );
        }
        return Ok(());
    }
    print(&data, cli.json);
    Ok(())
}

fn build_request(cmd: &Command) -> Result<AdminRequest, Failure> {
    Ok(match cmd {
        Command::Status => AdminRequest::Status,
        Command::Backup { .. } => AdminRequest::Backup,
        Command::User(u) => match u {
            UserCmd::Add { login_id, pw } => AdminRequest::UserAdd {
                login_id: login_id.clone(),
                password: secret::read("Password", pw.password_stdin, "--password-stdin", true)?,
            },
            UserCmd::Passwd { login_id, pw } => AdminRequest::UserPasswd {
                login_id: login_id.clone(),
                password: secret::read(
                    "New password",
                    pw.password_stdin,
                    "--password-stdin",
                    true,
                )?,
            },
            UserCmd::Show { login_id } => AdminRequest::UserShow {
                login_id: login_id.clone(),
            },
            UserCmd::List => AdminRequest::UserList,
            UserCmd::Delete { login_id } => AdminRequest::UserDelete {
                login_id: login_id.clone(),
            },
            UserCmd::Import { file } => AdminRequest::UserImport {
                users: files::read_import(file)?,
            },
        },
        Command::Token(t) => match t {
            TokenCmd::Issue {
                login_id,
                email,
                activation_password_stdin,
            } => AdminRequest::TokenIssue {
                login_id: login_id.clone(),
                email: email.clone(),
                activation_password: secret::read(
                    "Activation password",
                    *activation_password_stdin,
                    "--activation-password-stdin",
                    true,
                )?,
            },
            TokenCmd::Activate { login_id, otp } => AdminRequest::TokenActivate {
                login_id: login_id.clone(),
                otp: Secret::new(otp.clone()),
            },
            TokenCmd::Cancel { login_id } => AdminRequest::TokenCancel {
                login_id: login_id.clone(),
            },
            TokenCmd::Renew { login_id } => AdminRequest::TokenRenew {
                login_id: login_id.clone(),
            },
            TokenCmd::Unlock { login_id } => AdminRequest::TokenUnlock {
                login_id: login_id.clone(),
            },
        },
    })
}

fn print(data: &AdminData, json: bool) {
    if json {
        let value = match data {
            AdminData::User(u) => serde_json::to_value(u),
            AdminData::Users { users } => serde_json::to_value(users),
            AdminData::Status(s) => serde_json::to_value(s),
            other => serde_json::to_value(other),
        };
        println!("{}", value.map(|v| v.to_string()).unwrap_or_default());
        return;
    }
    match data {
        AdminData::Status(s) => {
            println!("otpd {}", s.version);
            println!("uptime      {} s", s.uptime_seconds);
            println!("users       {}", s.users);
            for (state, n) in &s.by_state {
                println!("  {state:<13} {n}");
            }
            println!("locked      {}", s.locked);
            println!("mail queued {}", s.mail_queued);
            println!("store       {} bytes", s.store_bytes);
        }
        AdminData::User(u) => print_user(u),
        AdminData::Users { users } => {
            for u in users {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.login_id,
                    u.state.name(),
                    if u.locked { "locked" } else { "-" },
                    u.email.as_deref().unwrap_or("-"),
                    u.expires_at.as_deref().unwrap_or("-"),
                );
            }
        }
        AdminData::Issued {
            user,
            link_expires_at,
        } => {
            print_user(user);
            println!("setup link e-mailed; it is valid until {link_expires_at}");
        }
        AdminData::Deleted { login_id } => println!("deleted {login_id}"),
        AdminData::Imported { count } => println!("imported {count} users"),
        AdminData::Backup { rows } => println!("{} records", rows.len()),
    }
}

fn print_user(u: &UserView) {
    println!("login_id           {}", u.login_id);
    println!("state              {}", u.state.name());
    println!(
        "locked             {}{}",
        u.locked,
        if u.failures > 0 {
            format!(" ({} failures)", u.failures)
        } else {
            String::new()
        }
    );
    println!("email              {}", u.email.as_deref().unwrap_or("-"));
    println!(
        "expires_at         {}",
        u.expires_at.as_deref().unwrap_or("-")
    );
    println!(
        "renewal_available  {}{}",
        u.renewal_available,
        match (&u.renewal_available_from, u.renewal_available) {
            (Some(from), false) => format!(" (from {from})"),
            _ => String::new(),
        }
    );
}
