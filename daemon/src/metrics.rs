//! Prometheus metrics: what otpd counts while it runs (always, with atomics) and the opt-in
//! listener that shows them (`[metrics] listen`, `GET /metrics`; few connections, short
//! timeouts, the store's gauges sampled at most every `sample_seconds`). Labels name gateways,
//! outcomes, reasons, states and doors only: never a user, a code or a secret.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;

use crate::ops::Ops;
use crate::radius::{RadiusStatsHandle, TableSizes};

/// What a scrape samples: the store through `ops` (at most once per `sampler.every`), the
/// RADIUS tables through `radius`.
#[derive(Clone)]
struct Sources {
    ops: Arc<Ops>,
    radius: RadiusStatsHandle,
    sampler: Arc<Sampler>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub client: String,
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: &'static str,
    /// The configured client name; `-` for a source that matches none.
    pub client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DoorLabels {
    pub door: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 4 s: a RADIUS answer with argon2 sits in the middle.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Every series otpd exports, and the registry that prints them.
pub struct Metrics {
    registry: Registry,
    pub radius_requests: Family<RequestLabels, Counter>,
    pub radius_dropped: Family<DropLabels, Counter>,
    pub radius_tls_refused: Family<ReasonLabels, Counter>,
    pub request_seconds: Histograms<DoorLabels>,
    pub commit_batch: Histogram,
    pub commit_seconds: Histogram,
    pub store_errors: Counter,
    pub log_dropped: Counter,
    pub outbox_messages: Gauge,
    pub outbox_oldest_age: Gauge,
    pub samples: Counter,
    pub users: Family<StateLabels, Gauge>,
    pub users_locked: Gauge,
    pub reply_cache: Gauge,
    pub challenge_states: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("otpd");
        let r = &mut registry;
        // Each series is named where it is made; the text shows them in this order.
        let m = Metrics {
            radius_requests: series(
                r,
                "radius_requests",
                "Access-Requests answered, by client, outcome and reason",
                Family::default(),
            ),
            radius_dropped: series(
                r,
                "radius_dropped",
                "RADIUS datagrams dropped unanswered, by reason and client",
                Family::default(),
            ),
            radius_tls_refused: series(
                r,
                "radius_tls_refused",
                "RADIUS-over-TLS connections closed before any RADIUS was read, by reason",
                Family::default(),
            ),
            request_seconds: series(
                r,
                "request_duration_seconds",
                "Time to answer a request, by door (radius, http, admin)",
                Family::new_with_constructor(latency_histogram),
            ),
            commit_batch: series(
                r,
                "store_commit_batch_size",
                "Writes made durable by one group commit",
                Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            ),
            commit_seconds: series(
                r,
                "store_commit_duration_seconds",
                "Time one group commit's flush took",
                Histogram::new(exponential_buckets(0.000_1, 2.0, 14)),
            ),
            store_errors: series(
                r,
                "store_errors",
                "Group commits the disk refused",
                Counter::default(),
            ),
            log_dropped: series(
                r,
                "log_dropped",
                "Audit lines dropped because the syslog queue was full",
                Counter::default(),
            ),
            outbox_messages: series(
                r,
                "mail_outbox_messages",
                "Issuance e-mails waiting in the outbox",
                Gauge::default(),
            ),
            outbox_oldest_age: series(
                r,
                "mail_outbox_oldest_age_seconds",
                "Age of the oldest e-mail in the outbox (0 when empty)",
                Gauge::default(),
            ),
            samples: series(
                r,
                "metrics_samples",
                "Readings of every user behind the users and outbox gauges (at most one per metrics.sample_seconds)",
                Counter::default(),
            ),
            users: series(r, "users", "Users by token state", Family::default()),
            users_locked: series(r, "users_locked", "Users locked out", Gauge::default()),
            reply_cache: series(
                r,
                "radius_reply_cache_entries",
                "Replies kept for retransmissions",
                Gauge::default(),
            ),
            challenge_states: series(
                r,
                "radius_challenge_states",
                "Access-Challenge States waiting for their OTP",
                Gauge::default(),
            ),
            registry: Registry::default(),
        };
        Metrics { registry, ..m }
    }

    /// One answered request at `door`.
    pub fn observe(&self, door: &'static str, took: Duration) {
        self.request_seconds
            .get_or_create(&DoorLabels { door })
            .observe(took.as_secs_f64());
    }

    /// One group commit: `batch` waiters answered by a flush of `took`.
    pub fn commit(&self, batch: usize, took: Duration, failed: bool) {
        self.commit_batch.observe(batch as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        if failed {
            self.store_errors.inc();
        }
    }

    /// The RADIUS tables' sizes as they are now.
    pub(crate) fn tables(&self, sizes: TableSizes) {
        self.reply_cache.set(gauge(sizes.reply_cache));
        self.challenge_states.set(gauge(sizes.challenge_states));
    }

    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `metric`, registered in `r` as `name`.
fn series<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, metric: M) -> M {
    r.register(name, help, metric.clone());
    metric
}

fn gauge<N: TryInto<i64>>(n: N) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Times every HTTP request (the `http` door).
pub async fn time_http(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let start = tokio::time::Instant::now();
    let response = next.run(req).await;
    get().observe("http", start.elapsed());
    response
}

/// The metrics listener's connections open at once; more are closed at accept. A
/// Prometheus server or two needs one or two.
const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request headers, also while a kept-alive connection
/// idles: a scraper sends its request at once.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may stay open in all (a client that reads its answer slowly).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections refused at the cap are logged at most this often, as a count.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// When the store's gauges were last sampled; held while a sample runs, so that scrapes
/// arriving meanwhile wait for it instead of reading the store again.
struct Sampler {
    every: Duration,
    last: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Serves `GET /metrics` on `listener` until `shutdown`; the gauges that read every user
/// are sampled at most once per `sample_every`.
pub async fn serve(
    listener: TcpListener,
    ops: Arc<Ops>,
    radius: RadiusStatsHandle,
    sample_every: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(Sources {
            ops: ops.clone(),
            radius,
            sampler: Arc::new(Sampler {
                every: sample_every,
                last: tokio::sync::Mutex::new(None),
            }),
        });
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let refusals = crate::limit::LineLimiter::new(REFUSAL_LOG_INTERVAL);
    // Dropped at shutdown: a scrape in flight is cut off, nothing is lost by that.
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    ops.log.warn(&format!("metrics: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            if let Some(more) = refusals.note((), crate::clock::instant()) {
                ops.log.warn(&format!(
                    "metrics: {MAX_CONNECTIONS} connections open; one from {peer} refused (and {more} more since the last line)"
                ));
            }
            continue;
        };
        let app = app.clone();
        conns.spawn(async move {
            let _permit = permit;
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

/// Samples what is counted from the store (users by state, locks, the outbox) when the
/// last sample is older than `[metrics] sample_seconds`, and the RADIUS tables' sizes
/// always, then prints every series. Sampling reads every user: it runs on a blocking
/// thread of its own, never on a hashing worker, so scrapes cannot take workers from logins.
async fn scrape(
    State(Sources {
        ops,
        radius,
        sampler,
    }): State<Sources>,
) -> Response {
    let m = get();
    m.tables(radius.table_sizes(crate::clock::instant()));
    let mut last = sampler.last.lock().await;
    let now = crate::clock::instant();
    if last.is_none_or(|t| now.saturating_duration_since(t) >= sampler.every) {
        sample(&ops).await;
        *last = Some(now);
    }
    drop(last);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.text(),
    )
        .into_response()
}

/// One reading of the store's gauges, on tokio's blocking pool.
async fn sample(ops: &Arc<Ops>) {
    let m = get();
    m.samples.inc();
    let svc = Arc::clone(ops.service());
    let now = ops.clock().now();
    let sampled = tokio::task::spawn_blocking(move || {
        Ok::<_, otpd_core::OpError>((svc.status(now)?, svc.outbox_summary(now)?))
    })
    .await
    .map_err(|e| otpd_core::OpError::Store(format!("the sample stopped: {e}")))
    .and_then(|r| r);
    match sampled {
        Ok((status, (queued, oldest))) => {
            for (state, n) in &status.by_state {
                m.users
                    .get_or_create(&StateLabels {
                        state: state.clone(),
                    })
                    .set(gauge(*n));
            }
            m.users_locked.set(gauge(status.locked));
            m.outbox_messages.set(gauge(queued));
            m.outbox_oldest_age.set(oldest);
        }
        Err(e) => ops
            .log
            .warn(&format!("metrics: cannot read the store: {e}")),
    }
}
