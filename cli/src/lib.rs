//! otpctl: the administrators' command line. Parses, asks otpd over the admin socket, prints.

pub mod args;
mod client;
mod files;
mod import;
mod out;
mod pages;
mod secret;

use args::{Cli, Command, TokenCmd, UserCmd};

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use otpd_proto::{AdminData, AdminRequest, Secret, UserView};

const DEFAULT_SOCKET: &str = "/run/otpd/admin.sock";

/// Runs one invocation; the exit status says how it ended.
pub fn main_with(cli: &Cli) -> ExitCode {
    match run(cli) {
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed standard error has nobody to tell either.
            let _ = writeln!(std::io::stderr(), "otpctl: {e}");
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
    /// The reader of standard output went away (`| head -1`): 0, and nothing more said.
    Closed,
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Closed => 0,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(m) | Failure::Usage(m) | Failure::Unreachable(m) => f.write_str(m),
            Failure::Closed => f.write_str("standard output closed"),
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
    // These three stream over one connection instead of one request and one reply.
    match &cli.command {
        Command::Backup { path } => return pages::backup(&socket_path(cli)?, path, cli.json),
        Command::User(UserCmd::List) => return pages::list(&socket_path(cli)?, cli.json),
        Command::User(UserCmd::Import { file }) => {
            return import::run(&socket_path(cli)?, file, cli.json)
        }
        _ => {}
    }
    let request = build_request(&cli.command)?;
    let socket = socket_path(cli)?;
    let data = client::call(&socket, &request)?;
    let mut out = out::stdout();
    print(&mut out, &data, cli.json)
        .and_then(|()| out.flush())
        .map_err(out::failed)
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
            UserCmd::Import { .. } => {
                return Err(Failure::Usage(
                    "user import streams; see import::run".into(),
                ))
            }
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

fn print(out: &mut impl Write, data: &AdminData, json: bool) -> std::io::Result<()> {
    if json {
        let value = match data {
            AdminData::User(u) => serde_json::to_value(u),
            AdminData::Users { users } => serde_json::to_value(users),
            AdminData::Status(s) => serde_json::to_value(s),
            other => serde_json::to_value(other),
        };
        return writeln!(out, "{}", value.map(|v| v.to_string()).unwrap_or_default());
    }
    match data {
        AdminData::Status(s) => {
            writeln!(out, "otpd {}", s.version)?;
            writeln!(out, "uptime      {} s", s.uptime_seconds)?;
            writeln!(out, "users       {}", s.users)?;
            for (state, n) in &s.by_state {
                writeln!(out, "  {state:<13} {n}")?;
            }
            writeln!(out, "locked      {}", s.locked)?;
            writeln!(out, "mail queued {}", s.mail_queued)?;
            if s.store_engine.is_empty() {
                writeln!(out, "store       {} bytes", s.store_bytes)?;
            } else {
                writeln!(
                    out,
                    "store       {} {} ({} bytes)",
                    s.store_engine, s.store_location, s.store_bytes
                )?;
            }
        }
        AdminData::User(u) => print_user(out, u)?,
        AdminData::Users { users } | AdminData::UserPage { users, .. } => {
            for u in users {
                writeln!(out, "{}", user_line(u))?;
            }
        }
        AdminData::Issued {
            user,
            link_expires_at,
        } => {
            print_user(out, user)?;
            writeln!(
                out,
                "setup link e-mailed; it is valid until {link_expires_at}"
            )?;
        }
        AdminData::Deleted { login_id } => writeln!(out, "deleted {login_id}")?,
        AdminData::Imported { count } => writeln!(out, "imported {count} users")?,
        AdminData::Backup { rows } | AdminData::BackupPage { rows, .. } => {
            writeln!(out, "{} records", rows.len())?
        }
        AdminData::ImportStaged { staged } => writeln!(out, "{staged} users checked")?,
    }
    Ok(())
}

/// One user of `user list`: login ID, state, lock, e-mail, expiry, tab-separated.
fn user_line(u: &UserView) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        u.login_id,
        u.state.name(),
        if u.locked { "locked" } else { "-" },
        u.email.as_deref().unwrap_or("-"),
        u.expires_at.as_deref().unwrap_or("-"),
    )
}

fn print_user(out: &mut impl Write, u: &UserView) -> std::io::Result<()> {
    writeln!(out, "login_id           {}", u.login_id)?;
    writeln!(out, "state              {}", u.state.name())?;
    let lock = |locked: bool, failures: u32| {
        if failures > 0 {
            format!("{locked} ({failures} failures)")
        } else {
            locked.to_string()
        }
    };
    writeln!(out, "locked             {}", lock(u.locked, u.failures))?;
    writeln!(
        out,
        "renewal locked     {}",
        lock(u.renewal_locked, u.renewal_failures)
    )?;
    writeln!(
        out,
        "email              {}",
        u.email.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "expires_at         {}",
        u.expires_at.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "renewal_available  {}{}",
        u.renewal_available,
        match (&u.renewal_available_from, u.renewal_available) {
            (Some(from), false) => format!(" (from {from})"),
            _ => String::new(),
        }
    )?;
    Ok(())
}
