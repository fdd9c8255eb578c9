use super::*;
use otpd_core::seal::Sealer;
use otpd_core::store::SledStore;
use otpd_core::Service;

use crate::clock::Clock;
use crate::log::{Level, Logger};

/// The fixtures' wall time at start (2027-01-15 08:00 UTC).
const T0: UnixTime = 1_800_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    ops: Arc<Ops>,
    config: Config,
}

fn fixture(mail: &str) -> Fixture {
    fixture_logging(mail, |_| Logger::stderr(Level::Error))
}

/// A fixture whose log is `log(dir)`.
fn fixture_logging(mail: &str, log: impl FnOnce(&std::path::Path) -> Logger) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "service_id = \"EXAMPLE-BANK\"\n[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n[http]\npublic_url = \"https://otp.example.jp/\"\n[mail]\n{mail}\n"
    );
    let config = Config::parse(&text, dir.path()).expect("config").config;
    let store = SledStore::open(&dir.path().join("data")).expect("store");
    let clock = Clock::starting_at(T0);
    let svc = Service::new(
        &config.core,
        store,
        Sealer::from_key(&[7u8; 32]),
        clock.now(),
    )
    .expect("service");
    let ops = Arc::new(Ops::new(Arc::new(svc), Arc::new(log(dir.path()))).with_clock(clock));
    Fixture { dir, ops, config }
}

fn issue(f: &Fixture, who: &str) -> MailJob {
    let svc = f.ops.service();
    let now = f.ops.clock().now();
    svc.add_user(who, "login-pw", now).expect("add");
    svc.issue(who, &format!("{who}@docomo.ne.jp"), "act-pass", now)
        .expect("issue");
    svc.store().wait_durable().expect("durable");
    svc.pending_mail()
        .expect("outbox")
        .into_iter()
        .find_map(|(_, j)| j.ok().filter(|j| j.login_id == who))
        .expect("queued")
}

#[test]
fn backoff_doubles_from_ten_seconds_up_to_ten_minutes() {
    let seq: Vec<i64> = (1..=8).map(backoff).collect();
    assert_eq!(seq, [10, 20, 40, 80, 160, 320, 600, 600]);
    assert_eq!(backoff(u32::MAX), 600);
}

#[test]
fn composed_message_goes_to_the_mobile_address_with_the_link() {
    let f =
        fixture("transport = \"file\"\ndir = \"spool\"\nfrom = \"OTP Center <otp@example.jp>\"");
    let job = issue(&f, "taro");
    let mailer = Mailer::new(&f.config).expect("mailer");
    let msg = mailer.compose(&job).expect("compose");
    let headers = msg.headers().to_string();
    assert!(headers.contains("To: taro@docomo.ne.jp"), "{headers}");
    assert!(
        headers.contains("From: \"OTP Center\" <otp@example.jp>"),
        "{headers}"
    );
    let raw = String::from_utf8_lossy(&msg.formatted()).into_owned();
    assert!(
        raw.contains("Content-Type: text/plain; charset=utf-8"),
        "{raw}"
    );
    assert!(
        raw.contains("Content-Transfer-Encoding: quoted-printable"),
        "{raw}"
    );
    assert!(
        raw.contains(&format!("/enroll/{}", job.code)),
        "the link is readable in the raw message"
    );
    // Non-ASCII subjects are encoded words; the link is in the (encoded) body.
    assert!(headers.contains("Subject: =?utf-8?"), "{headers}");
    assert!(
        !headers.contains(&job.code),
        "the code stays out of the headers"
    );
    assert!(f.dir.path().join("spool").is_dir(), "mail.dir created");
}

#[tokio::test]
async fn file_transport_writes_one_eml_and_empties_the_outbox() {
    let f = fixture("transport = \"file\"\ndir = \"spool\"");
    let job = issue(&f, "hanako");
    let mailer = Mailer::new(&f.config).expect("mailer");
    let mut unreadable = HashSet::new();
    let next = mailer.pass(&f.ops, false, &mut unreadable).await;
    assert_eq!(next, None, "nothing left to retry");
    assert!(f.ops.service().pending_mail().expect("outbox").is_empty());
    let files: Vec<_> = std::fs::read_dir(f.dir.path().join("spool"))
        .expect("spool")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
    let raw = std::fs::read_to_string(&files[0]).expect("eml");
    assert!(raw.contains("To: hanako@docomo.ne.jp"), "{raw}");
    let _ = job;
}

/// A relay that refuses every connection: a port nothing listens on (bound, noted, closed).
fn refusing_relay() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("smtp_host = \"127.0.0.1\"\nsmtp_port = {port}")
}

#[tokio::test]
async fn a_refused_delivery_stays_queued_with_its_backoff() {
    let f = fixture(&refusing_relay());
    issue(&f, "jiro");
    let mailer = Mailer::new(&f.config).expect("mailer");
    let before = f.ops.clock().now();
    let next = mailer
        .pass(&f.ops, false, &mut HashSet::new())
        .await
        .expect("a retry is scheduled");
    assert!(next >= before + BACKOFF_FIRST && next <= f.ops.clock().now() + BACKOFF_FIRST);
    let queued = f.ops.service().pending_mail().expect("outbox");
    assert_eq!(queued.len(), 1);
    let job = queued[0].1.as_ref().expect("opens");
    assert_eq!(job.attempts, 1);
    assert_eq!(job.next_try_at, next);
    // Not due yet: a second pass leaves it alone.
    let again = mailer.pass(&f.ops, false, &mut HashSet::new()).await;
    assert_eq!(again, Some(next));
    let job = &f.ops.service().pending_mail().expect("outbox")[0].1;
    assert_eq!(job.as_ref().expect("opens").attempts, 1);
    // After a restart the schedule is ignored once: the relay may be back.
    mailer.pass(&f.ops, true, &mut HashSet::new()).await;
    let job = &f.ops.service().pending_mail().expect("outbox")[0].1;
    assert_eq!(job.as_ref().expect("opens").attempts, 2);
}

#[test]
fn the_wait_is_until_the_next_retry_at_least_a_second() {
    assert_eq!(until_next(Some(T0 + 10), T0), Duration::from_secs(10));
    assert_eq!(until_next(Some(T0), T0), Duration::from_secs(1));
    assert_eq!(until_next(Some(T0 - 30), T0), Duration::from_secs(1));
    assert_eq!(until_next(None, T0), Duration::from_secs(60), "looks again");
    assert_eq!(until_next(Some(T0 + 600), T0), Duration::from_secs(60));
}

/// Attempts made so far on the only queued message.
fn attempts(f: &Fixture) -> u32 {
    let queued = f.ops.service().pending_mail().expect("outbox");
    assert_eq!(queued.len(), 1, "one message queued");
    queued[0].1.as_ref().expect("opens").attempts
}

/// The lines the mailer logs, read off a journal socket the test binds: what the mailer
/// logs after recording a failed attempt tells that it is going to sleep.
struct LogLines {
    socket: std::os::unix::net::UnixDatagram,
    seen: Vec<String>,
}

impl LogLines {
    fn bind(dir: &std::path::Path) -> LogLines {
        let socket = std::os::unix::net::UnixDatagram::bind(dir.join("log.sock")).expect("bind");
        socket.set_nonblocking(true).expect("nonblocking");
        LogLines {
            socket,
            seen: Vec::new(),
        }
    }

    fn logger(dir: &std::path::Path) -> Logger {
        // Every line (the mailer's warnings too) as journal datagrams to the test's socket.
        Logger::new(&crate::config::LogSection {
            level: crate::log::Level::Warn,
            format: crate::log::Format::Journal,
            journal_socket: dir.join("log.sock"),
            syslog: false,
            ..Default::default()
        })
    }

    /// Whether a line containing `text` has been logged so far.
    fn contains(&mut self, text: &str) -> bool {
        let mut buf = [0u8; 2048];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.seen.iter().any(|l| l.contains(text))
    }
}

/// Lets the mailer's task (and the blocking pool) run until `cond` holds, without moving
/// tokio's paused clock; fails after a real-time deadline.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_running_mailer_waits_its_backoff_then_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = LogLines::bind(dir.path());
    let f = fixture_logging(&refusing_relay(), |_| LogLines::logger(dir.path()));
    issue(&f, "saburo");
    let mailer = Mailer::new(&f.config).expect("mailer");
    let real = std::time::Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(mailer.run(Arc::clone(&f.ops), async move {
        let _ = stopped.await;
    }));
    // At start everything queued is tried at once. The line comes once the failure is
    // recorded, and the mailer goes to sleep in the same step.
    until("the first attempt", || log.contains("(attempt 1)")).await;
    assert_eq!(attempts(&f), 1);
    let first = f.ops.service().pending_mail().expect("outbox")[0]
        .1
        .as_ref()
        .expect("opens")
        .next_try_at;
    assert_eq!(first, T0 + BACKOFF_FIRST);

    // One second short of the backoff: still waiting.
    tokio::time::advance(Duration::from_secs(9)).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(attempts(&f), 1, "no retry before the backoff is over");
    assert!(!log.contains("(attempt 2)"));

    // The backoff is over: the second attempt, and the next backoff doubles.
    tokio::time::advance(Duration::from_secs(1)).await;
    until("the retry", || log.contains("(attempt 2)")).await;
    assert_eq!(attempts(&f), 2);
    let second = f.ops.service().pending_mail().expect("outbox")[0]
        .1
        .as_ref()
        .expect("opens")
        .next_try_at;
    assert_eq!(second, T0 + BACKOFF_FIRST + backoff(2));
    assert!(
        log.seen.iter().all(|l| !l.contains("/enroll/")),
        "no link in the log"
    );

    let _ = stop.send(());
    run.await.expect("the mailer stops");
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "the clock was virtual"
    );
}

#[tokio::test]
async fn a_message_another_node_holds_is_left_to_it_until_its_lease_runs_out() {
    let f = fixture("transport = \"file\"\ndir = \"spool\"");
    issue(&f, "hanako");
    let text = format!(
        "service_id = \"EXAMPLE-BANK\"\n[http]\npublic_url = \"https://otp.example.jp/\"\n[mail]\n{}\n",
        refusing_relay()
    );
    let refusing = Config::parse(&text, f.dir.path()).expect("config").config;
    let a = Mailer::new(&refusing).expect("a").with_node("node-a");
    let b = Mailer::new(&f.config).expect("b").with_node("node-b");
    let spooled = || {
        std::fs::read_dir(f.dir.path().join("spool"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // Node A takes the message and fails to deliver it: it keeps it, to retry.
    assert!(a.pass(&f.ops, false, &mut HashSet::new()).await.is_some());
    // Node B, even ignoring the schedule, is not handed what A holds.
    assert_eq!(b.pass(&f.ops, true, &mut HashSet::new()).await, None);
    assert_eq!(spooled(), 0);
    f.ops
        .clock()
        .set(T0 + i64::try_from(LEASE_SECONDS).expect("seconds") - 1);
    b.pass(&f.ops, true, &mut HashSet::new()).await;
    assert_eq!(spooled(), 0, "still A's a second before its lease ends");
    // A went away; once its lease has run out, B sends it, once.
    f.ops
        .clock()
        .set(T0 + i64::try_from(LEASE_SECONDS).expect("seconds") + 1);
    b.pass(&f.ops, true, &mut HashSet::new()).await;
    assert_eq!(spooled(), 1);
    assert!(f.ops.service().pending_mail().expect("outbox").is_empty());
    b.pass(&f.ops, true, &mut HashSet::new()).await;
    assert_eq!(spooled(), 1);
}
