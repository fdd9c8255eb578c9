use clap::Parser;

fn main() -> std::process::ExitCode {
    otpctl::main_with(&otpctl::args::Cli::parse())
}
