//! otpd-bench-seed: fills a *stopped* otpd's store with active bench users straight through
//! the core library, copies such a store into a PostgreSQL database (as `otpd --restore`
//! of a backup would), and measures what one argon2id verification costs on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use otpd_bench::users;
use otpd_core::lifecycle::{Token, DAY, MIN_VALIDITY_DAYS};
use otpd_core::lockout::LockState;
use otpd_core::password::{self, HashParams};
use otpd_core::store::{SledStore, Store};
use otpd_core::user::UserRecord;
use otpd_store_postgres::{PgStore, Settings, SslMode};

#[derive(Parser, Debug)]
#[command(name = "otpd-bench-seed", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes users FIRST .. FIRST+COUNT as active tokens (replacing existing ones).
    Seed {
        /// otpd's data_dir (otpd must not be running on it).
        #[arg(long)]
        data_dir: PathBuf,
        /// otpd's key_file (created if absent).
        #[arg(long)]
        key_file: PathBuf,
        #[arg(long, default_value_t = 0)]
        first: u64,
        #[arg(long)]
        count: u64,
        #[command(flatten)]
        hash: HashArgs,
        #[arg(long)]
        json: bool,
    },
    /// Copies a (stopped) sled store into an empty PostgreSQL database: every record as a
    /// backup holds it, through the engines' own export and restore.
    ToPostgres {
        /// The sled store's data_dir (otpd must not be running on it).
        #[arg(long)]
        data_dir: PathBuf,
        /// The database's URL, as `[store.postgres] url`.
        #[arg(long)]
        url: String,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Times argon2id verification: one thread, then THREADS threads at once.
    HashBench {
        #[command(flatten)]
        hash: HashArgs,
        /// Verifications per thread.
        #[arg(long, default_value_t = 20)]
        samples: u32,
        /// Threads for the parallel round (default: the number of cores).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Clone, Copy)]
struct HashArgs {
    #[arg(long, default_value_t = 19456)]
    argon2_memory_kib: u32,
    #[arg(long, default_value_t = 2)]
    argon2_iterations: u32,
    #[arg(long, default_value_t = 1)]
    argon2_parallelism: u32,
}

impl HashArgs {
    fn params(self) -> HashParams {
        HashParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Seed {
            data_dir,
            key_file,
            first,
            count,
            hash,
            json,
        } => seed(&data_dir, &key_file, first, count, hash.params(), json),
        Command::ToPostgres {
            data_dir,
            url,
            password_file,
            json,
        } => to_postgres(&data_dir, url, password_file.as_deref(), json),
        Command::HashBench {
            hash,
            samples,
            threads,
            json,
        } => hash_bench(hash.params(), samples, threads, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpd-bench-seed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn seed(
    data_dir: &std::path::Path,
    key_file: &std::path::Path,
    first: u64,
    count: u64,
    params: HashParams,
    json: bool,
) -> anyhow::Result<()> {
    let began = Instant::now();
    let store = SledStore::open(data_dir).context("data_dir (is otpd still running on it?)")?;
    let (sealer, _) = otpd_core::store::open_key(key_file, &*store)?;
    // One hash for every user: hashing 100k passwords would time the seeder, not otpd.
    let password_hash = params
        .hash(users::PASSWORD)
        .map_err(|e| anyhow::anyhow!(e))?;
    let now = now();
    let record_of = |index: u64| {
        let login_id = users::login_id(index);
        UserRecord {
            login_id: login_id.clone(),
            password_hash: password_hash.clone(),
            email: None,
            created_at: now,
            token: Token::Active {
                secret: sealer.seal(&login_id, &users::secret(index)),
                activated_at: now,
                expires_at: now + i64::from(MIN_VALIDITY_DAYS) * DAY,
                last_step: 0,
            },
            lock: LockState::default(),
            renew_lock: LockState::default(),
            session_generation: 0,
        }
    };
    let write = |index: u64| -> anyhow::Result<()> {
        let record = record_of(index);
        // A fresh store holds no such user: try that first, read only when it does.
        let mut current = None;
        while !store.swap_user(&record.login_id, current.as_ref(), Some(&record))? {
            current = store.get_user(&record.login_id)?;
        }
        Ok(())
    };
    // Every core writes its share: a million users in well under a minute.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
        .min(count.max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let write = &write;
                s.spawn(move || -> anyhow::Result<()> {
                    let mut index = first + t;
                    while index < first + count {
                        write(index)?;
                        index += threads;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a seeding thread panicked")))
        })
    })?;
    store.wait_durable()?;
    let seconds = began.elapsed().as_secs_f64();
    let users_total = store.user_count();
    drop(store);
    if json {
        println!(
            "{}",
            serde_json::json!({"seeded": count, "users": users_total, "seconds": seconds})
        );
    } else {
        println!(
            "seeded {count} users ({users_total} in the store) in {seconds:.1} s into {}",
            data_dir.display()
        );
    }
    Ok(())
}

fn to_postgres(
    data_dir: &std::path::Path,
    url: String,
    password_file: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    let began = Instant::now();
    let password = match password_file {
        Some(p) => Some(zeroize::Zeroizing::new(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        )),
        None => None,
    };
    let rows = {
        let sled = SledStore::open(data_dir).context("data_dir (is otpd still running on it?)")?;
        sled.export()?
    };
    let pg = PgStore::open(&Settings {
        url,
        password,
        sslmode: SslMode::Disable,
        ca_file: None,
        pool_size: 1,
        statement_timeout: Duration::from_secs(600),
    })
    .context("the database")?;
    let already = pg.user_count();
    anyhow::ensure!(
        already == 0,
        "the database already holds {already} users; copy into an empty one"
    );
    pg.restore(&rows)?;
    let users_total = pg.user_count();
    let seconds = began.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({"records": rows.len(), "users": users_total, "seconds": seconds})
        );
    } else {
        println!(
            "copied {} records ({users_total} users) into PostgreSQL in {seconds:.1} s",
            rows.len()
        );
    }
    Ok(())
}

fn hash_bench(
    params: HashParams,
    samples: u32,
    threads: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let samples = samples.max(1);
    let phc = params
        .hash(users::PASSWORD)
        .map_err(|e| anyhow::anyhow!(e))?;
    // What otpd does per login: verify against the stored PHC string.
    let verify_many = |n: u32| -> anyhow::Result<Duration> {
        let t = Instant::now();
        for _ in 0..n {
            anyhow::ensure!(password::verify(&phc, users::PASSWORD), "verify failed");
        }
        Ok(t.elapsed())
    };
    verify_many(1)?; // warm-up
    let single = verify_many(samples)?;
    let single_ms = single.as_secs_f64() * 1000.0 / f64::from(samples);
    let began = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| verify_many(samples)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))
            })
            .collect()
    });
    let wall = began.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    let parallel_rate = f64::from(samples) * threads as f64 / wall;
    let bound = threads as f64 * 1000.0 / single_ms;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "memory_kib": params.memory_kib,
                "iterations": params.iterations,
                "parallelism": params.parallelism,
                "samples": samples,
                "threads": threads,
                "single_ms": single_ms,
                "bound_rps": bound,
                "parallel_rps": parallel_rate,
            })
        );
    } else {
        println!(
            "argon2id m={} t={} p={}: one verification {single_ms:.2} ms; bound {threads} ÷ that = {bound:.1}/s; {threads} threads measured {parallel_rate:.1}/s",
            params.memory_kib, params.iterations, params.parallelism
        );
    }
    Ok(())
}
