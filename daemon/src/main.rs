use std::process::ExitCode;

use clap::Parser;
use otpd::cli::Args;

/// mimalloc instead of glibc's malloc: per-thread free lists without arena locks. Measured
/// at 100k users, 64 logins in flight (BENCHMARKS.md, 2026-12-02): a quarter less CPU per
/// login; built without transparent huge pages (daemon/Cargo.toml) its peak RSS is about
/// glibc's (93-124 against 100-108 MiB), where with them it was 165 MiB.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let checked = if args.check_config {
        otpd::app::check_all(&args.config)
    } else {
        otpd::app::check_config(&args.config)
    };
    let loaded = match checked {
        Ok(l) => l,
        Err(problems) => {
            eprintln!(
                "otpd: {} has {} problem(s):",
                args.config.display(),
                problems.len()
            );
            for p in problems {
                eprintln!("  - {p}");
            }
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        for w in &loaded.warnings {
            eprintln!("otpd: warning: {w}");
        }
        match otpd::app::check_store(&loaded.config) {
            Ok(found) => {
                println!("{}: configuration OK", args.config.display());
                if let Some(found) = found {
                    println!("store: {found}");
                }
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("otpd: {} has 1 problem(s):", args.config.display());
                eprintln!("  - the store: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(backup) = &args.restore {
        return match otpd::app::restore(&loaded.config, backup, args.force) {
            Ok((n, into)) => {
                println!("restored {n} records from {} into {into}", backup.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("otpd: restore failed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    tune_allocator();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otpd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(otpd::app::run(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tunes the allocator before any thread starts.
fn tune_allocator() {
    // mimalloc.h's `mi_option_arena_eager_commit` (the fifth option, in v2 and v3): with
    // eager commits, memory freed under a write burst stays resident; off, it is returned.
    // Set here it reaches only the arenas reserved after main starts: alone it left the
    // peak at 137-143 MiB (the environment variable, read before main: 98 MiB); the
    // build without transparent huge pages is what brought the peak down.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    // SAFETY: mi_option_set only sets an allocator tunable; it is called before any thread
    // starts, and later arena reservations read it.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
    }
}
