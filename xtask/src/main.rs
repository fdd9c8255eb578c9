//! `cargo run -p xtask -- assets DIR`: writes man pages (otpd.8, otpctl.1 and one page per
//! otpctl subcommand) and shell
//! completions (bash, zsh, fish) for both programs into DIR, generated from their clap
//! definitions so they never drift from `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir] if cmd == "assets" => match assets(Path::new(dir)) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo run -p xtask -- assets DIR");
            ExitCode::from(2)
        }
    }
}

fn assets(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    std::fs::create_dir_all(dir.join("man8"))?;
    std::fs::create_dir_all(dir.join("man1"))?;
    std::fs::create_dir_all(dir.join("completions"))?;
    // otpd is a system daemon (section 8); otpctl and its subcommands are commands (section 1).
    let mut buf = Vec::new();
    clap_mangen::Man::new(otpd::cli::Args::command().name("otpd"))
        .section("8")
        .render(&mut buf)?;
    let path = dir.join("man8").join("otpd.8");
    std::fs::write(&path, buf)?;
    written.push(path);
    clap_mangen::generate_to(
        otpctl::args::Cli::command().name("otpctl"),
        dir.join("man1"),
    )?;
    for entry in std::fs::read_dir(dir.join("man1"))? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "1") {
            written.push(p);
        }
    }
    for (name, mut cmd) in [
        ("otpd", otpd::cli::Args::command()),
        ("otpctl", otpctl::args::Cli::command()),
    ] {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = clap_complete::generate_to(shell, &mut cmd, name, dir.join("completions"))?;
            written.push(path);
        }
    }
    Ok(written)
}
