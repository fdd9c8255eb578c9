//! Builds the daemon from a checked configuration and runs it until SIGTERM or SIGINT.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use otpd_core::config::{Config, Loaded};
use otpd_core::seal::Sealer;
use otpd_core::store::SledStore;
use otpd_core::Service;
use tokio::sync::watch;

use crate::admin_socket::AdminSocket;
use crate::clock;
use crate::http::HttpServer;
use crate::log::Logger;
use crate::mail::Mailer;
use crate::ops::Ops;

/// `otpd --check-config`: Ok, or every problem found.
pub fn check_config(path: &Path) -> Result<Loaded, Vec<String>> {
    Config::load(path)
}

/// Resolves when the watched flag turns true.
pub async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let Loaded { config, warnings } = loaded;
    let log = Arc::new(Logger::new(&config.log));
    for w in &warnings {
        log.warn(w);
    }
    let sealer = Sealer::load_or_create(&config.key_file).context("key_file")?;
    let started = std::time::Instant::now();
    let store = SledStore::open(&config.data_dir).context("data_dir")?;
    let svc = Arc::new(Service::new(&config, store.clone(), sealer, clock::now())?);
    let ops = Arc::new(Ops::new(svc.clone(), log.clone()));
    let admin = AdminSocket::bind(&config.admin.socket)?;
    let http = HttpServer::bind(&config, ops.clone()).await?;
    let mailer = Mailer::new(&config)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(admin.serve(ops.clone(), wait_for(stop_rx.clone())));
    tasks.spawn(http.serve(wait_for(stop_rx.clone())));
    tasks.spawn(mailer.run(ops.clone(), wait_for(stop_rx.clone())));

    log.info(&format!(
        "otpd {} ready: {} users, admin socket {}, started in {} ms",
        env!("CARGO_PKG_VERSION"),
        svc.store().user_count(),
        config.admin.socket.display(),
        started.elapsed().as_millis()
    ));

    shutdown_signal().await;
    log.info("stopping: finishing requests in flight");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    ops.durable().await.ok();
    log.info("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers only Ctrl-C remains.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
