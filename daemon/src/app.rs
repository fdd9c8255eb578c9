//! Builds the daemon from a checked configuration and runs it until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use otpd_core::seal::Sealer;
use otpd_core::store::{SledStore, Store};
use otpd_core::Service;
use tokio::sync::watch;

use crate::access::Access;
use crate::admin_socket::AdminSocket;
use crate::clock;
use crate::config::{Config, Loaded};
use crate::http::HttpServer;
use crate::log::Logger;
use crate::mail::Mailer;
use crate::ops::Ops;
use crate::radius::{RadiusConfig, RadiusEvent, RadiusLog, RadiusServer, Severity};

/// The configuration as `otpd` reads it at start: Ok, or every problem found.
pub fn check_config(path: &Path) -> Result<Loaded, Vec<String>> {
    Config::load(path)
}

/// `otpd --check-config`: the configuration, and every refusal otpd would make at start
/// about the files and folders it names, without binding or opening anything.
pub fn check_all(path: &Path) -> Result<Loaded, Vec<String>> {
    let loaded = Config::load(path)?;
    let problems = preflight(&loaded.config);
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

/// `otpd --check-config` on the store: with PostgreSQL, connects and says what is there
/// (server version, schema version, users) or why it cannot; with sled, nothing to say.
pub fn check_store(config: &Config) -> Result<Option<String>, String> {
    match &config.postgres {
        Some(pg) => otpd_store_postgres::probe(pg)
            .map(|found| Some(found.to_string()))
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// Opens the store the configuration names: sled in `data_dir`, or PostgreSQL (tables
/// created or migrated first); what is worth saying about the opening goes to `notes`.
/// A move of the sled store's layout says how far it got through `progress`.
pub fn open_store(
    config: &Config,
    notes: &mut Vec<String>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(pg) = &config.postgres {
        let store: Arc<dyn Store> = otpd_store_postgres::PgStore::open(pg)?;
        return Ok(store);
    }
    let mut report = |moved: usize| {
        progress(&format!(
            "store: moving users to the binary record layout: {moved} so far"
        ))
    };
    let store =
        SledStore::open_reporting(&config.core.data_dir, &mut report).context("data_dir")?;
    if store.migrated() > 0 {
        notes.push(format!(
            "store: moved {} users to the binary record layout, marks apart (nothing lost)",
            store.migrated()
        ));
    }
    store.observe_commits(Box::new(|batch, took, failed| {
        crate::metrics::get().commit(batch, took, failed)
    }));
    Ok(store)
}

/// Loads `key_file` for the opened store and checks it against the key check value the
/// store records ([`otpd_core::store::open_key`]): a node with another key, or without
/// one, does not start. A key is created only for a new, empty sled store.
pub fn open_key(
    config: &Config,
    store: &dyn Store,
    notes: &mut Vec<String>,
) -> anyhow::Result<Sealer> {
    use otpd_core::store::KeyOpened;
    let key_file = config.core.key_file.display();
    let (sealer, opened) = otpd_core::store::open_key(&config.core.key_file, store)?;
    match opened {
        KeyOpened::Matched => {}
        KeyOpened::Recorded => notes.push(format!(
            "key_file {key_file}: its key check value is now recorded in the store; a node with another key will be refused"
        )),
        KeyOpened::Created => notes.push(format!(
            "key_file {key_file}: created a new key for this new store; back it up, apart from the store's backups"
        )),
    }
    Ok(sealer)
}

/// The start-time refusals about what is on disk: a sealing key others can read, an
/// admin socket folder anyone may write to, a data folder others may enter. Run at start
/// (before anything is opened) and by `--check-config`, so the check says what the start
/// would say.
pub fn preflight(config: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut problems = Vec::new();
    if config.core.key_file.exists() {
        if let Err(e) = otpd_core::seal::check_private(&config.core.key_file) {
            problems.push(format!("key_file {}: {e}", config.core.key_file.display()));
        }
    }
    if let Some(dir) = config.admin.socket.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if dir.exists() {
            if let Err(e) = crate::admin_socket::check_folder(dir) {
                problems.push(e.to_string());
            }
        }
    }
    if let Some(ca) = &config.mail.ca_file {
        if let Err(e) = crate::mail::relay_ca(ca) {
            problems.push(e);
        }
    }
    if let Ok(meta) = std::fs::metadata(&config.core.data_dir) {
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            problems.push(format!(
                "data_dir {} is open to everyone (mode {:o}): it holds password hashes and e-mail addresses; run: chmod 700 {}",
                config.core.data_dir.display(),
                mode & 0o777,
                config.core.data_dir.display()
            ));
        }
    }
    problems
}

/// How long requests in flight may take to be answered once a stop began: a refusal's
/// delay (`radius.reject_delay_ms`, 1 s by default) fits; a hash still running after it is
/// not waited for (it runs on a detached hashing thread, see `schedule::Threads`).
const STOP_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);

/// Resolves when the watched flag turns true.
pub async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let Loaded { config, warnings } = loaded;
    let log = Arc::new(Logger::new(&config.log));
    crate::log::install(log.clone());
    for w in &warnings {
        log.warn(w);
    }
    let refused = preflight(&config);
    anyhow::ensure!(refused.is_empty(), "{}", refused.join("; "));
    let started = clock::instant();
    let mut notes = Vec::new();
    let store = open_store(&config, &mut notes, &|line| log.info(line))?;
    let sealer = open_key(&config, &*store, &mut notes)?;
    for n in &notes {
        log.info(n);
    }
    let svc = Arc::new(Service::new(&config.core, store, sealer, clock::now())?);
    let ops = Arc::new(
        Ops::new(svc.clone(), log.clone())
            .with_refusal_delay(std::time::Duration::from_millis(
                config.radius.reject_delay_ms,
            ))
            .with_login_queue(crate::schedule::Bounds::per_source(
                config.radius.login_queue_per_source as usize,
            )),
    );
    let mut radius_settings = radius_config(&config)?;
    // Every node that shares key_file signs and checks challenge States alike, on the
    // wall clock the core is told.
    radius_settings.state_key = Arc::new(crate::radius::StateKey::new(
        svc.derive_key("radius challenge state"),
    ));
    radius_settings.wall = ops.clock().clone();
    let radius = RadiusServer::bind(
        radius_settings,
        Arc::new(Access::new(
            ops.clone(),
            config.radius.client_failure_rate,
            config.radius.client_failure_burst,
        )),
        radius_log(log.clone()),
    )
    .await?;
    let http = HttpServer::bind(&config, ops.clone()).await?;
    let mailer = Mailer::new(&config)?;
    let metrics = match &config.metrics {
        Some(m) => Some((
            tokio::net::TcpListener::bind(&m.listen)
                .await
                .with_context(|| format!("cannot bind metrics.listen {}", m.listen))?,
            std::time::Duration::from_secs(m.sample_seconds),
        )),
        None => None,
    };
    let shutdown = shutdown_signal();
    // Bound last: once the admin socket accepts, every front door is open (tests, scripts
    // and service managers wait on it).
    let admin = AdminSocket::bind(&config.admin.socket)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(admin.serve(ops.clone(), wait_for(stop_rx.clone())));
    let radius_log_handle = log.clone();
    let radius_addrs = radius.local_addrs();
    let tls_addrs = radius.tls_addrs();
    let radius_stats = radius.stats();
    let radius_stop = wait_for(stop_rx.clone());
    tasks.spawn(async move {
        if let Err(e) = radius.run(radius_stop).await {
            radius_log_handle.error(&format!("RADIUS server stopped: {e}"));
        }
    });
    tasks.spawn(http.serve(wait_for(stop_rx.clone())));
    tasks.spawn(mailer.run(ops.clone(), wait_for(stop_rx.clone())));
    let watching = ops.clone();
    let watch_stop = wait_for(stop_rx.clone());
    tasks.spawn(async move {
        watching
            .watch_store(std::time::Duration::from_secs(1), watch_stop)
            .await
    });
    if let Some((listener, sample_every)) = metrics {
        tasks.spawn(crate::metrics::serve(
            listener,
            ops.clone(),
            radius_stats,
            sample_every,
            wait_for(stop_rx.clone()),
        ));
    }

    // Counting may ask a database: on the blocking pool, like every store call.
    let users = ops.run(|svc, _| svc.store().user_count()).await?;
    let (engine, location) = svc.store().describe();
    log.info(&format!(
        "otpd {} ready: {} users in {engine} ({location}), RADIUS on {}{}, admin socket {}, started in {} ms",
        env!("CARGO_PKG_VERSION"),
        users,
        radius_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        if tls_addrs.is_empty() {
            String::new()
        } else {
            format!(
                ", RADIUS over TLS on {}",
                tls_addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
        config.admin.socket.display(),
        started.elapsed().as_millis()
    ));

    crate::notify::notify("READY=1");
    warm_store(svc.store().clone(), log.clone());

    let store_failed = tokio::select! {
        () = shutdown => None,
        e = ops.store_failure() => Some(e),
    };
    crate::notify::notify("STOPPING=1");
    if let Some(e) = &store_failed {
        log.error(&format!(
            "the store could not write ({e}) and refuses every write from now on; stopping so that the service manager restarts otpd with the store opened again"
        ));
    }
    log.info("stopping: finishing requests in flight");
    let _ = stop_tx.send(true);
    let finished = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        // A request still waiting (a long hash, most likely) is not answered; what it
        // wrote, if anything, was never acknowledged.
        log.warn("stopping: requests still in flight were cut off");
        tasks.abort_all();
    }
    ops.durable().await.ok();
    log.info("stopped");
    match store_failed {
        None => Ok(()),
        Some(e) => Err(anyhow::anyhow!(
            "stopped because the store could not write: {e}"
        )),
    }
}

/// The RADIUS layer's settings from `[radius]`.
pub fn radius_config(config: &Config) -> anyhow::Result<RadiusConfig> {
    let r = &config.radius;
    let listen = r
        .listen
        .iter()
        .map(|a| a.parse().with_context(|| format!("radius.listen {a:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut rc = RadiusConfig::new(listen, config.radius_clients.clone());
    rc.require_message_authenticator = r.require_message_authenticator;
    rc.reject_delay = std::time::Duration::from_millis(r.reject_delay_ms);
    if let Some(t) = &r.tls {
        use crate::radius::tls;
        rc.tls = Some(tls::TlsSettings {
            listen: t
                .listen
                .iter()
                .map(|a| {
                    a.parse()
                        .with_context(|| format!("radius.tls.listen {a:?}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            server: std::sync::Arc::new(tls::server_config(
                &t.cert_file,
                &t.key_file,
                &t.client_ca_file,
            )?),
            clients: t
                .clients
                .iter()
                .map(|c| {
                    Ok(tls::TlsClient {
                        name: c.name.clone(),
                        certificate: c.certificate.clone(),
                        network: crate::config::parse_network(&c.address).ok_or_else(|| {
                            anyhow::anyhow!("radius TLS client {:?}: bad address", c.name)
                        })?,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            idle_timeout: std::time::Duration::from_secs(t.idle_timeout_seconds),
            max_connections: t.max_connections,
            max_connections_per_source: t.max_connections_per_source,
            reserved_connections_per_client: t.reserved_connections_per_client,
            max_in_flight_per_connection: t.max_in_flight_per_connection,
        });
    }
    Ok(rc)
}

/// Reads users into the store's cache on a thread of its own at the lowest CPU priority,
/// so that logins always come first: after a restart, the first logins of the day then
/// find their users in memory (see [`otpd_core::store::Store::warm`]).
fn warm_store(store: Arc<dyn otpd_core::store::Store>, log: Arc<Logger>) {
    let warm_log = log.clone();
    let spawned = std::thread::Builder::new()
        .name("otpd-warm".into())
        .spawn(move || {
            // SAFETY: setpriority on this thread's own id (Linux: per thread) changes
            // nothing but its scheduling weight.
            unsafe {
                let tid = libc::gettid();
                libc::setpriority(libc::PRIO_PROCESS, u32::try_from(tid).unwrap_or(0), 19);
            }
            let started = std::time::Instant::now();
            match store.warm() {
                Ok(None) => {}
                Ok(Some(w)) => log.info(&format!(
                    "store: cache warmed with {} users ({} KiB) in {} ms{}",
                    w.users,
                    w.bytes / 1024,
                    started.elapsed().as_millis(),
                    if w.complete {
                        ""
                    } else {
                        ", as many as the cache holds; the others are read at their first login"
                    }
                )),
                Err(e) => log.warn(&format!("store: cache warm-up stopped: {e}")),
            }
        });
    if let Err(e) = spawned {
        warm_log.warn(&format!("store: no cache warm-up: {e}"));
    }
}

/// RADIUS events into the daemon's log: decisions are audit lines (syslog authpriv),
/// drops and warnings are warnings, in-progress duplicates only show at debug level.
fn radius_log(log: Arc<Logger>) -> Arc<dyn RadiusLog> {
    Arc::new(move |e: &RadiusEvent| match (e, e.severity()) {
        (
            RadiusEvent::Decision {
                user,
                client,
                src,
                nas_identifier,
                input,
                outcome,
                reason,
            },
            _,
        ) => {
            crate::metrics::get()
                .radius_requests
                .get_or_create(&crate::metrics::RequestLabels {
                    client: client.clone(),
                    outcome: outcome.as_str(),
                    reason: reason.unwrap_or("none"),
                })
                .inc();
            let user = String::from_utf8_lossy(user);
            let src = src.to_string();
            log.audit_args(
                format_args!("{e}"),
                &[
                    ("event", "radius"),
                    ("outcome", outcome.as_str()),
                    ("user", &user),
                    ("client", client),
                    ("src", &src),
                    ("input", input.as_str()),
                    ("nas", nas_identifier.as_deref().unwrap_or("")),
                    ("reason", reason.unwrap_or("")),
                ],
            )
        }
        (_, Severity::Debug) => log.debug(&e.to_string()),
        (_, Severity::Info) => log.info(&e.to_string()),
        _ => log.warn(&e.to_string()),
    })
}

/// `otpd --restore`: loads an `otpctl backup` file into the store of a stopped daemon (or,
/// with PostgreSQL, a database no node uses yet); the records restored, and where.
pub fn restore(config: &Config, backup: &Path, force: bool) -> anyhow::Result<(usize, String)> {
    use std::io::BufRead;
    let file =
        std::fs::File::open(backup).with_context(|| format!("cannot open {}", backup.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header: serde_json::Value =
        serde_json::from_str(&lines.next().context("empty backup file")??)
            .context("the first line is not an otpd backup header")?;
    anyhow::ensure!(
        header["format"] == "otpd-backup" && header["version"] == 1,
        "{} is not an otpd backup (version 1)",
        backup.display()
    );
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let row: otpd_core::admin::BackupRow = serde_json::from_str(&line?)
            .with_context(|| format!("line {}: unreadable record", i + 2))?;
        let (Some(k), Some(v)) = (
            otpd_core::seal::unhex(&row.key),
            otpd_core::seal::unhex(&row.value),
        ) else {
            anyhow::bail!("line {}: bad hex", i + 2);
        };
        rows.push((row.tree, k, v));
    }
    anyhow::ensure!(
        header["records"].as_u64() == Some(rows.len() as u64),
        "the backup is truncated: the header promises {} records, the file holds {}",
        header["records"],
        rows.len()
    );
    let store =
        open_store(config, &mut Vec::new(), &|line| eprintln!("otpd: {line}")).map_err(|e| {
            match config.postgres {
                Some(_) => e,
                None => anyhow::anyhow!("{e:#} (is otpd still running? stop it before restoring)"),
            }
        })?;
    // The restored secrets were sealed under the backup's key: never a new one.
    anyhow::ensure!(
        config.core.key_file.exists(),
        "key_file {} missing: put the master.key the backup's secrets were sealed under there first (mode 0600)",
        config.core.key_file.display()
    );
    open_key(config, &*store, &mut Vec::new())?;
    let (engine, location) = store.describe();
    let users = store.user_count();
    anyhow::ensure!(
        force || users == 0,
        "the {engine} store {location} already holds {users} users; restore into an empty one, or add --force"
    );
    store.restore(&rows)?;
    store.wait_durable()?;
    Ok((rows.len(), format!("the {engine} store {location}")))
}

/// Resolves at SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: called before the doors open, a signal that comes once they
/// are open stops otpd cleanly instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers only Ctrl-C remains.
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
}
