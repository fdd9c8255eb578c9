//! Two real otpd nodes on one PostgreSQL database (a private cluster per test): a code is
//! accepted once across both, a challenge issued by one is answered once on the other,
//! failures on both add up to one lock, a link mailed by one is completed on the other, each
//! issuance is mailed once with both mailers running, a backup moves between sled and
//! PostgreSQL with its replay marks, and `--check-config` says what it finds at a live
//! database and why a dead one fails. Under a login burst on both nodes: one node killed
//! (kill -9) and started again, and the database stopped and started again, with every
//! accepted code accepted exactly once over the whole run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use otpd_testkit::daemon::{bin, wait_until, Builder, Otpd, DEADLINE, RADIUS_SECRET};
use otpd_testkit::oath::{now, oathtool};
use otpd_testkit::postgres::Postgres;
use otpd_testkit::radius::{
    verify_reply, Client, Ma, Request, ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT,
    ACCESS_REQUEST, STATE,
};
use otpd_testkit::smtp::{setup_link, SmtpSink};
use otpd_testkit::token::{activate, issue};

/// No refusal delay: the races below send many refused requests. The lock threshold is
/// high enough that the refused copies of the races never lock anyone.
const FAST: &str = "[radius]\nreject_delay_ms = 0\n[otp]\nmax_failures = 100\n";

/// Node A on `pg`'s database `otpd`, with the test's extra config.
fn node_a(pg: &Postgres, extra: &str) -> Otpd {
    pg.configure(Otpd::builder(), "otpd").config(extra).start()
}

/// Node B on the same database with A's sealing key (every node of a database opens the
/// same sealed secrets), its mail going into A's mail folder (so the helpers that read A's
/// mail find every issuance mail, whichever node's mailer sent it).
fn node_b(pg: &Postgres, a: &Otpd, extra: &str) -> Otpd {
    let mail = a.dir.path().join("mail");
    with_key_of(a, pg.configure(Otpd::builder(), "otpd").config(extra))
        .config(&format!(
            "[mail]\ntransport = \"file\"\ndir = \"{}\"\n",
            mail.display()
        ))
        .start()
}

/// `builder` with the sealing key of `a` (a node of the same database, or the node a
/// backup came from).
fn with_key_of(a: &Otpd, builder: Builder) -> Builder {
    builder.config(&format!(
        "key_file = \"{}\"\n",
        a.dir.path().join("master.key").display()
    ))
}

fn both(pg: &Postgres, extra: &str) -> (Otpd, Otpd) {
    let a = node_a(pg, extra);
    let b = node_b(pg, &a, extra);
    (a, b)
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn otpd_with(config: &std::path::Path, args: &[&str]) -> Output {
    std::process::Command::new(bin("otpd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run otpd")
}

#[test]
fn a_code_accepted_on_one_node_is_refused_on_the_other() {
    let pg = Postgres::start();
    let (a, b) = both(&pg, FAST);
    let secret = activate(&a, "taro", "pw");
    assert_eq!(b.show("taro")["state"], "active", "B reads A's write");
    let code = oathtool(&secret, None);
    let (ca, cb) = (
        Client::new(a.radius(), RADIUS_SECRET),
        Client::new(b.radius(), RADIUS_SECRET),
    );
    assert_eq!(
        ca.login(1, "taro", &format!("pw{code}")).code,
        ACCESS_ACCEPT
    );
    assert_eq!(
        cb.login(1, "taro", &format!("pw{code}")).code,
        ACCESS_REJECT,
        "node B accepted a code node A had accepted"
    );
    let next = oathtool(&secret, Some(now() + 60));
    assert_eq!(
        cb.login(2, "taro", &format!("pw{next}")).code,
        ACCESS_ACCEPT,
        "node B takes the next code"
    );
    assert_eq!(
        ca.login(2, "taro", &format!("pw{next}")).code,
        ACCESS_REJECT
    );
    let status = b.ctl_ok(&["status"], "");
    assert!(
        status.contains(&format!("postgres 127.0.0.1:{} otpd", pg.port())),
        "{status}"
    );
}

#[test]
fn the_same_fresh_code_at_both_nodes_is_accepted_once() {
    // Two nodes and a database under a burst: not beside the tests that bound time.
    let _heavy = otpd_testkit::serial::heavy();
    let pg = Postgres::start();
    // otp.window = 10: each user has eleven fresh steps, the current one and the ten after.
    let (a, b) = both(&pg, &format!("{FAST}window = 10\n"));
    let users = 20;
    let secrets: Vec<String> = (0..users)
        .map(|u| activate(&a, &format!("race{u}"), "pw"))
        .collect();
    let servers = [a.radius(), b.radius()];
    let rounds = 10;
    let copies = 6;
    let mut accepts_per_code = Vec::new();
    let mut accepted_by = [0usize; 2];
    for round in 0..rounds {
        for (u, secret) in secrets.iter().enumerate() {
            let at = now() + 60 * round;
            let password = format!("pw{}", oathtool(secret, Some(at)));
            let login = format!("race{u}");
            let start = Arc::new(Barrier::new(copies));
            let senders: Vec<_> = (0..copies)
                .map(|c| {
                    let (start, password, login) = (start.clone(), password.clone(), login.clone());
                    let server: SocketAddr = servers[c % 2];
                    std::thread::spawn(move || {
                        let client = Client::new(server, RADIUS_SECRET);
                        start.wait();
                        client.login(c as u8, &login, &password).code
                    })
                })
                .collect();
            let codes: Vec<u8> = senders
                .into_iter()
                .map(|s| s.join().expect("sender"))
                .collect();
            let accepted = codes.iter().filter(|c| **c == ACCESS_ACCEPT).count();
            for (c, code) in codes.iter().enumerate() {
                accepted_by[c % 2] += usize::from(*code == ACCESS_ACCEPT);
            }
            assert!(
                codes
                    .iter()
                    .all(|c| *c == ACCESS_ACCEPT || *c == ACCESS_REJECT),
                "{codes:?}"
            );
            accepts_per_code.push(accepted);
        }
    }
    println!(
        "{rounds} rounds x {users} users, {copies} copies of each code over 2 nodes: accepts per code {accepts_per_code:?}, by node A/B {accepted_by:?}"
    );
    assert!(
        accepts_per_code.iter().all(|n| *n == 1),
        "every fresh code accepted exactly once: {accepts_per_code:?}"
    );
    for node in [&a, &b] {
        assert!(
            !node.stderr().contains("reason=store_error"),
            "a refusal came from the store, not the replay mark: {}",
            node.stderr()
        );
    }
}

/// The audit lines of `node` for `user` (RADIUS decisions only).
fn radius_lines(node: &Otpd, user: &str) -> Vec<String> {
    let who = format!("user=\"{user}\"");
    node.stderr()
        .lines()
        .filter(|l| l.contains("audit radius") && l.contains(&who))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_challenge_issued_by_one_node_is_answered_on_the_other_once() {
    let pg = Postgres::start();
    // Two steps ahead are accepted: each fresh code below is of its own step.
    let (a, b) = both(&pg, &format!("{FAST}window = 2\n"));
    let taro = activate(&a, "taro", "pw");
    let hanako = activate(&a, "hanako", "pw2");
    let (ca, cb) = (
        Client::new(a.radius(), RADIUS_SECRET),
        Client::new(b.radius(), RADIUS_SECRET),
    );
    // The password alone on A: a challenge whose State any node of the database checks.
    let challenge = ca.login(1, "taro", "pw");
    assert_eq!(challenge.code, ACCESS_CHALLENGE, "{}", a.stderr());
    let state = challenge.get(STATE).expect("a State").to_vec();
    let code = oathtool(&taro, None);
    let r = cb.answer(1, "taro", &code, &state);
    assert_eq!(
        r.code,
        ACCESS_ACCEPT,
        "B takes A's challenge: {}",
        b.stderr()
    );

    // Used up on every node, whatever OTP comes with it: the next step is fresh, so only
    // the State can be why these are refused.
    let next = oathtool(&taro, Some(now() + 60));
    for (node, c, id) in [(&a, &ca, 2), (&b, &cb, 2)] {
        let again = c.answer(id, "taro", &next, &state);
        assert_eq!(again.code, ACCESS_REJECT, "a State answered twice");
        let lines = radius_lines(node, "taro");
        assert!(
            lines.last().is_some_and(|l| l.contains("reason=bad_state")),
            "{lines:#?}"
        );
    }
    assert_eq!(
        cb.login(3, "taro", &format!("pw{next}")).code,
        ACCESS_ACCEPT,
        "the refused answers spent nothing"
    );

    // A's State for taro is no State for hanako, on either node, even with her right code.
    let challenge = ca.login(4, "taro", "pw");
    assert_eq!(challenge.code, ACCESS_CHALLENGE);
    let state = challenge.get(STATE).expect("a State").to_vec();
    let hers = oathtool(&hanako, None);
    for (node, c) in [(&b, &cb), (&a, &ca)] {
        assert_eq!(c.answer(5, "hanako", &hers, &state).code, ACCESS_REJECT);
        let lines = radius_lines(node, "hanako");
        assert!(
            lines.last().is_some_and(|l| l.contains("reason=bad_state")),
            "{lines:#?}"
        );
    }
    assert_eq!(
        cb.login(6, "hanako", &format!("pw2{hers}")).code,
        ACCESS_ACCEPT,
        "her code was not spent by the refused answers"
    );
    // Refused for hanako, the State was not used: it still answers for taro, on B.
    let fresh = oathtool(&taro, Some(now() + 120));
    assert_eq!(cb.answer(7, "taro", &fresh, &state).code, ACCESS_ACCEPT);
}

/// `otpctl --json status`'s `mail_queued`: the outbox both nodes share.
fn mail_queued(node: &Otpd) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&node.ctl_ok(&["--json", "status"], "")).expect("status json");
    status["mail_queued"].as_u64().expect("mail_queued")
}

#[test]
fn one_mail_per_issuance_with_both_nodes_sending() {
    let pg = Postgres::start();
    // Both nodes' mailers deliver to one real SMTP relay, each taking the outbox's messages
    // by lease while the other does the same.
    let mut a = pg
        .configure(Otpd::builder(), "otpd")
        .config(FAST)
        .smtp()
        .unstarted();
    let relay = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(a.smtp_port(), relay.path());
    a.launch();
    let b = with_key_of(&a, pg.configure(Otpd::builder(), "otpd").config(FAST))
        .config(&format!(
            "[mail]\ntransport = \"smtp\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\n",
            a.smtp_port()
        ))
        .start();
    let issuances = 20;
    // Both nodes issue at once, alternating users: each node's mailer is woken by its own
    // issuances and finds the other's in the shared outbox.
    std::thread::scope(|s| {
        for (n, node) in [&a, &b].into_iter().enumerate() {
            s.spawn(move || {
                for i in (n..issuances).step_by(2) {
                    let login = format!("m{i}");
                    node.ctl_ok(&["user", "add", &login, "--password-stdin"], "pw\n");
                    node.ctl_ok(
                        &[
                            "token",
                            "issue",
                            &login,
                            "--email",
                            &format!("{login}@docomo.example.jp"),
                            "--activation-password-stdin",
                        ],
                        "act-pass-1234\n",
                    );
                }
            });
        }
    });
    // Done when the relay holds one mail per issuance and the outbox is empty: nothing is
    // left for either node to send (again).
    let mails = wait_until("every issuance mail and an empty outbox", DEADLINE, || {
        let got = sink.received();
        (got.len() >= issuances && mail_queued(&a) == 0 && mail_queued(&b) == 0).then_some(got)
    });
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    to.sort();
    let mut want: Vec<String> = (0..issuances)
        .map(|i| format!("m{i}@docomo.example.jp"))
        .collect();
    want.sort();
    assert_eq!(to, want, "exactly one mail per issuance, none twice");
    let links: std::collections::BTreeSet<String> =
        mails.iter().map(|m| setup_link(&m.body).1).collect();
    assert_eq!(links.len(), issuances, "each mail its own link");
    // The senders' own account: each mail sent once, by one node or the other.
    let sent: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|n| {
            n.stderr()
                .lines()
                .filter(|l| l.contains("audit mail=sent"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(sent.len(), issuances, "{sent:#?}");
    let by_a = a.stderr().matches("audit mail=sent").count();
    println!(
        "{issuances} issuances over 2 nodes: {} mails, sent by A/B {by_a}/{}",
        mails.len(),
        issuances - by_a
    );
}

#[test]
fn failures_on_both_nodes_add_up_to_one_lock() {
    let pg = Postgres::start();
    let (a, b) = both(
        &pg,
        "[radius]\nreject_delay_ms = 0\n[otp]\nmax_failures = 5\n",
    );
    let secret = activate(&a, "hanako", "pw");
    let wrong: Vec<_> = (0..5)
        .map(|i| {
            let server = if i % 2 == 0 { a.radius() } else { b.radius() };
            std::thread::spawn(move || {
                Client::new(server, RADIUS_SECRET)
                    .login(i, "hanako", "pw000000")
                    .code
            })
        })
        .collect();
    for w in wrong {
        assert_eq!(w.join().expect("sender"), ACCESS_REJECT);
    }
    for node in [&a, &b] {
        let u = node.show("hanako");
        assert_eq!(u["failures"], 5, "{u}");
        assert_eq!(u["locked"], true, "{u}");
    }
    let good = format!("pw{}", oathtool(&secret, None));
    assert_eq!(
        Client::new(b.radius(), RADIUS_SECRET)
            .login(9, "hanako", &good)
            .code,
        ACCESS_REJECT,
        "locked on B by failures counted on A and B"
    );
    a.ctl_ok(&["token", "unlock", "hanako"], "");
    assert_eq!(b.show("hanako")["locked"], false);
    assert_eq!(
        Client::new(b.radius(), RADIUS_SECRET)
            .login(10, "hanako", &good)
            .code,
        ACCESS_ACCEPT
    );
}

#[test]
fn a_setup_link_mailed_by_one_node_is_completed_on_the_other() {
    let pg = Postgres::start();
    let (a, b) = both(&pg, FAST);
    let code = issue(&a, "jiro", "pw");
    let r = otpd_testkit::http::post_json(
        b.http(),
        &format!("/api/v1/enroll/{code}"),
        &serde_json::json!({"service_id": "TEST-BANK", "user_id": "jiro", "activation_password": "act-pass-1234"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["secret"].as_str().expect("secret").to_string();
    assert_eq!(a.show("jiro")["state"], "provisioned");
    let again = otpd_testkit::http::post_json(
        a.http(),
        &format!("/api/v1/enroll/{code}"),
        &serde_json::json!({"service_id": "TEST-BANK", "user_id": "jiro", "activation_password": "act-pass-1234"}),
    );
    assert_ne!(again.status, 200, "a used link is used up on every node");
    let otp = oathtool(&secret, None);
    b.ctl_ok(&["token", "activate", "jiro", "--otp", &otp], "");
    assert_eq!(a.show("jiro")["state"], "active");
}

#[test]
fn a_backup_moves_between_sled_and_postgres_with_its_replay_marks() {
    let mut sled = Otpd::start(FAST);
    let secrets: Vec<String> = (0..3)
        .map(|i| activate(&sled, &format!("u{i}"), "pw"))
        .collect();
    let spent: Vec<String> = secrets
        .iter()
        .map(|s| format!("pw{}", oathtool(s, None)))
        .collect();
    let c = Client::new(sled.radius(), RADIUS_SECRET);
    for (i, pw) in spent.iter().enumerate() {
        assert_eq!(c.login(i as u8, &format!("u{i}"), pw).code, ACCESS_ACCEPT);
    }
    let backup = sled.dir.path().join("sled.backup");
    sled.ctl_ok(&["backup", backup.to_str().expect("utf8")], "");
    sled.stop_clean();

    let pg = Postgres::start();
    let mut p = with_key_of(&sled, pg.configure(Otpd::builder(), "otpd").config(FAST)).unstarted();
    let out = otpd_with(&p.config, &["--restore", backup.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("the postgres store"), "{said}");
    let again = otpd_with(&p.config, &["--restore", backup.to_str().expect("utf8")]);
    assert!(
        !again.status.success(),
        "a database with users needs --force"
    );
    assert!(
        stderr_of(&again).contains("--force"),
        "{}",
        stderr_of(&again)
    );
    p.launch();
    let c = Client::new(p.radius(), RADIUS_SECRET);
    for (i, pw) in spent.iter().enumerate() {
        assert_eq!(
            c.login(i as u8, &format!("u{i}"), pw).code,
            ACCESS_REJECT,
            "u{i}: a code spent on sled was accepted on PostgreSQL"
        );
    }
    let next = format!("pw{}", oathtool(&secrets[0], Some(now() + 60)));
    assert_eq!(
        c.login(7, "u0", &next).code,
        ACCESS_ACCEPT,
        "{}",
        p.stderr()
    );

    // And back: PostgreSQL's backup restored into a fresh sled store.
    let back = p.dir.path().join("pg.backup");
    p.ctl_ok(&["backup", back.to_str().expect("utf8")], "");
    let mut s2 = with_key_of(&sled, Otpd::builder().config(FAST)).unstarted();
    let out = otpd_with(&s2.config, &["--restore", back.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    s2.launch();
    let c = Client::new(s2.radius(), RADIUS_SECRET);
    assert_eq!(
        c.login(8, "u0", &next).code,
        ACCESS_REJECT,
        "spent on PostgreSQL"
    );
    assert_eq!(
        c.login(9, "u1", &spent[1]).code,
        ACCESS_REJECT,
        "spent on sled"
    );
    assert_eq!(s2.show("u2")["state"], "active");
}

#[test]
fn check_config_says_what_it_finds_at_a_live_and_a_dead_database() {
    let mut pg = Postgres::start();
    let mut a = pg.configure(Otpd::builder(), "otpd").unstarted();
    let out = otpd_with(&a.config, &["--check-config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        said.contains("store: PostgreSQL") && said.contains("no otpd schema yet"),
        "{said}"
    );
    a.launch();
    a.ctl_ok(&["user", "add", "taro", "--password-stdin"], "pw\n");
    let out = otpd_with(&a.config, &["--check-config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("schema version 2, 1 users"),
        "{said}{}",
        stderr_of(&out)
    );
    a.stop_clean();

    pg.stop();
    let out = otpd_with(&a.config, &["--check-config"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{} otpd", pg.port())) && err.contains("cannot connect"),
        "{err}"
    );
    assert!(!err.contains(pg.password()), "{err}");
    let (status, err) = a.run_to_exit();
    assert!(!status.success(), "otpd starts without its database");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains(pg.password()), "{err}");
}

/// How long a burst's sender waits for a node's reply. A node that is not running is
/// known at once (its port refuses the datagram), so this is only reached by a hung node.
const REPLY_WAIT: Duration = Duration::from_secs(5);

/// One copy of a login that a burst sent, and what came of it.
#[derive(Debug, Clone)]
struct Answer {
    user: usize,
    /// The TOTP step of the code.
    step: i64,
    /// 0 = node A, 1 = node B.
    node: usize,
    /// The code had not been accepted when it was sent (false: a deliberate replay).
    fresh: bool,
    sent: Instant,
    /// The reply's code, or None when the node gave none.
    code: Option<u8>,
    got: Instant,
}

impl Answer {
    fn accepted(&self) -> bool {
        self.code == Some(ACCESS_ACCEPT)
    }
}

/// A login burst on both nodes: a thread per user sends each of its codes, in step order,
/// to both nodes at once (so the nodes race for every code), and each accepted code once
/// more to both (a replay, to be refused). The test says how many of each
/// user's codes may be spent so far, and so moves the burst along its phases.
struct Burst {
    allowed: Arc<AtomicUsize>,
    /// Per user, how many of its codes are done (accepted, or given up).
    done: Arc<Vec<AtomicUsize>>,
    /// A fresh code refused by both nodes is given up rather than sent again (its outcome
    /// may be unknown to the sender: a spend that committed as its node or database died).
    give_up_refused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Sends `password` for `user` to every node at once; each node's reply code (None when it
/// gave none) and when it came.
fn to_all(nodes: &[SocketAddr], user: &str, password: &str) -> Vec<(Option<u8>, Instant)> {
    let sent: Vec<(Client, Request)> = nodes
        .iter()
        .map(|n| {
            let c = Client::connected(*n, RADIUS_SECRET);
            let req = Request::access(1, user, password, &c.secret);
            c.send_raw(&req.encode(ACCESS_REQUEST, &c.secret, Ma::Good));
            (c, req)
        })
        .collect();
    sent.iter()
        .map(|(c, req)| {
            let code = c
                .recv_raw(REPLY_WAIT)
                .map(|raw| verify_reply(&raw, req, &c.secret).code);
            (code, Instant::now())
        })
        .collect()
}

/// The user name of burst user `u`.
fn burst_user(u: usize) -> String {
    format!("b{u}")
}

impl Burst {
    /// Starts the burst: `codes` consecutive steps from now for every secret (all of them
    /// within `otp.window`), `allowed` of them to be spent at first, each thread waiting
    /// `pace` between its attempts.
    fn start(
        nodes: [SocketAddr; 2],
        secrets: &[String],
        codes: usize,
        allowed: usize,
        pace: Duration,
    ) -> Burst {
        let base = now();
        let burst = Burst {
            allowed: Arc::new(AtomicUsize::new(allowed)),
            done: Arc::new((0..secrets.len()).map(|_| AtomicUsize::new(0)).collect()),
            give_up_refused: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            answers: Arc::new(Mutex::new(Vec::new())),
            threads: Vec::new(),
        };
        let threads =
            secrets
                .iter()
                .enumerate()
                .map(|(u, secret)| {
                    let steps: Vec<(i64, String)> = (0..codes)
                        .map(|k| {
                            let at = base + 60 * k as i64;
                            (
                                at.div_euclid(60),
                                format!("pw{}", oathtool(secret, Some(at))),
                            )
                        })
                        .collect();
                    let (allowed, done, give_up, stop, answers) = (
                        burst.allowed.clone(),
                        burst.done.clone(),
                        burst.give_up_refused.clone(),
                        burst.stop.clone(),
                        burst.answers.clone(),
                    );
                    std::thread::spawn(move || {
                        let login = burst_user(u);
                        let mut next = 0;
                        let mut replay: Option<usize> = None;
                        while !stop.load(Ordering::SeqCst) {
                            // Each accepted code is sent once more (a replay, refused and counted as a
                            // failure: once, so that nobody is locked).
                            let fresh = replay.is_none()
                                && next < allowed.load(Ordering::SeqCst).min(steps.len());
                            let Some(k) = replay.take().or(fresh.then_some(next)) else {
                                std::thread::sleep(pace);
                                continue;
                            };
                            let (step, password) = &steps[k];
                            let sent = Instant::now();
                            let replies = to_all(&nodes, &login, password);
                            let accepted = replies.iter().any(|(c, _)| *c == Some(ACCESS_ACCEPT));
                            answers.lock().expect("answers").extend(
                                replies
                                    .iter()
                                    .enumerate()
                                    .map(|(node, (code, got))| Answer {
                                        user: u,
                                        step: *step,
                                        node,
                                        fresh,
                                        sent,
                                        code: *code,
                                        got: *got,
                                    }),
                            );
                            if fresh && (accepted || give_up.load(Ordering::SeqCst)) {
                                if accepted {
                                    replay = Some(k);
                                }
                                next += 1;
                                done[u].store(next, Ordering::SeqCst);
                            }
                            // Pacing a load generator, not waiting for readiness.
                            std::thread::sleep(pace);
                        }
                    })
                })
                .collect();
        Burst { threads, ..burst }
    }

    /// Lets the burst spend up to `n` codes of each user.
    fn allow(&self, n: usize) {
        self.allowed.store(n, Ordering::SeqCst);
    }

    fn give_up_refused(&self) {
        self.give_up_refused.store(true, Ordering::SeqCst);
    }

    /// Codes done so far, over all users.
    fn done_total(&self) -> usize {
        self.done.iter().map(|d| d.load(Ordering::SeqCst)).sum()
    }

    /// Waits until every user has `n` codes done.
    fn wait_done(&self, n: usize, limit: Duration) {
        wait_until(
            &format!("every burst user to have {n} codes done"),
            limit,
            || {
                self.done
                    .iter()
                    .all(|d| d.load(Ordering::SeqCst) >= n)
                    .then_some(())
            },
        );
    }

    /// Answers so far.
    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().expect("answers").clone()
    }

    /// Stops the senders; every answer.
    fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("burst sender");
        }
        Arc::try_unwrap(self.answers)
            .map(|m| m.into_inner().expect("answers"))
            .unwrap_or_else(|a| a.lock().expect("answers").clone())
    }
}

/// Accepts per code over every answer: (user, step) → how many copies were accepted, by
/// either node, fresh or replayed. Each must be exactly 1.
fn accepts_per_code(answers: &[Answer]) -> BTreeMap<(usize, i64), usize> {
    let mut per = BTreeMap::new();
    for a in answers.iter().filter(|a| a.accepted()) {
        *per.entry((a.user, a.step)).or_insert(0) += 1;
    }
    per
}

/// Every accepted code, sent again to both nodes: each must be refused by both.
fn assert_accepted_codes_refused(
    nodes: [SocketAddr; 2],
    secrets: &[String],
    accepted: &BTreeMap<(usize, i64), usize>,
) {
    std::thread::scope(|s| {
        for (u, secret) in secrets.iter().enumerate() {
            let steps: Vec<i64> = accepted
                .keys()
                .filter(|(w, _)| *w == u)
                .map(|(_, s)| *s)
                .collect();
            s.spawn(move || {
                for step in steps {
                    let password = format!("pw{}", oathtool(secret, Some(step * 60)));
                    let replies = to_all(&nodes, &burst_user(u), &password);
                    assert!(
                        replies.iter().all(|(c, _)| *c == Some(ACCESS_REJECT)),
                        "{}: the code of step {step}, accepted before, was answered {replies:?}",
                        burst_user(u)
                    );
                }
            });
        }
    });
}

/// The config of the burst tests: no refusal delay, no lock from the refused copies,
/// and `window` steps either side of now, so each user has that many fresh codes ahead.
fn burst_config(window: u64) -> String {
    format!("[radius]\nreject_delay_ms = 0\n[otp]\nmax_failures = 100\nwindow = {window}\n")
}

/// `users` users set up and started on `node`; their secrets.
fn burst_users(node: &Otpd, users: usize) -> Vec<String> {
    (0..users)
        .map(|u| activate(node, &burst_user(u), "pw"))
        .collect()
}

#[test]
fn kill_9_of_one_node_mid_burst_loses_nothing_and_accepts_nothing_twice() {
    // Two nodes and a database under a burst: not beside the tests that bound time.
    let _heavy = otpd_testkit::serial::heavy();
    let pg = Postgres::start();
    let (mut a, b) = both(&pg, &burst_config(10));
    let users = 20;
    let secrets = burst_users(&a, users);
    let nodes = [a.radius(), b.radius()];
    // Eleven fresh codes each (the current step and ten ahead): three before the kill,
    // four while A is down, four once it is back.
    let burst = Burst::start(nodes, &secrets, 11, 3, Duration::from_millis(40));
    burst.give_up_refused();
    burst.wait_done(3, DEADLINE);
    burst.allow(7);
    // Killed while the next codes are on their way: once a few have been answered.
    wait_until("the burst to go on", DEADLINE, || {
        (burst.done_total() >= 3 * users + users / 2).then_some(())
    });
    a.kill();
    let killed = Instant::now();
    burst.wait_done(7, DEADLINE);
    let relaunching = Instant::now();
    a.launch();
    let relaunched = Instant::now();
    burst.allow(11);
    burst.wait_done(11, DEADLINE);
    let answers = burst.stop();

    let per_code = accepts_per_code(&answers);
    let accepted: usize = per_code.values().sum();
    let by_node = |n: usize, from: Instant, to: Instant| {
        answers
            .iter()
            .filter(|x| x.node == n && x.accepted() && x.sent >= from && x.got <= to)
            .count()
    };
    let unanswered_a = answers
        .iter()
        .filter(|x| x.node == 0 && x.code.is_none())
        .count();
    // Sent to A before the kill and never answered: on their way when it died.
    let in_flight = answers
        .iter()
        .filter(|x| x.node == 0 && x.code.is_none() && x.sent < killed)
        .count();
    println!(
        "kill -9 of A mid-burst: {users} users, {} logins sent, {accepted} codes accepted, accepts per code max {}, A unanswered {unanswered_a} ({in_flight} in flight at the kill), accepted by B while A was down {}, by A after its restart {}",
        answers.len(),
        per_code.values().max().unwrap_or(&0),
        by_node(1, killed, relaunching),
        by_node(0, relaunched, Instant::now()),
    );
    assert!(
        per_code.values().all(|n| *n == 1),
        "a code accepted more than once: {:?}",
        per_code.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(
        answers.iter().filter(|x| !x.fresh).all(|x| !x.accepted()),
        "a replayed code was accepted"
    );
    assert!(
        answers
            .iter()
            .all(|x| x.node == 1 || x.code.is_none() || x.got <= killed || x.sent >= relaunching),
        "A answered while it was dead"
    );
    assert!(by_node(1, killed, relaunching) > 0, "B carried on alone");
    assert!(
        by_node(0, relaunched, Instant::now()) > 0,
        "A serves again after its restart"
    );
    assert!(unanswered_a > 0, "some logins went to A while it was dead");
    // Nearly every code was accepted by one node: only those A took with it as it died,
    // or that were refused while it did, may be missing.
    assert!(
        accepted >= users * 11 - users,
        "{accepted} of {} codes accepted",
        users * 11
    );

    assert_accepted_codes_refused(nodes, &secrets, &per_code);
    for node in [&a, &b] {
        let list = node.ctl_ok(&["user", "list"], "");
        for u in 0..users {
            let v = node.show(&burst_user(u));
            assert_eq!(v["state"], "active", "{v}");
            assert_eq!(v["locked"], false, "{v}");
        }
        assert_eq!(list.lines().count(), users, "{list}");
        assert!(
            !node.stderr().contains("reason=store_error"),
            "{}",
            node.stderr()
        );
    }
}

/// GET /healthz's status on `node`.
fn health(node: &Otpd) -> u16 {
    otpd_testkit::http::get(node.http(), "/healthz").status
}

#[test]
fn the_database_stopped_mid_burst_then_started_refuses_then_recovers_and_accepts_nothing_twice() {
    // Two nodes and a database under a burst: not beside the tests that bound time.
    let _heavy = otpd_testkit::serial::heavy();
    let mut pg = Postgres::start();
    let (a, b) = both(&pg, &burst_config(5));
    let users = 8;
    let secrets = burst_users(&a, users);
    // A user of its own to time the refusal and the recovery with one fresh code.
    let probe = activate(&a, "probe", "pw");
    let probe_code = format!("pw{}", oathtool(&probe, None));
    let nodes = [a.radius(), b.radius()];
    // Six fresh codes each (the current step and five ahead): two, then the database stops
    // while the next two are on their way; the rest once it is back.
    let burst = Burst::start(nodes, &secrets, 6, 2, Duration::from_millis(25));
    burst.wait_done(2, DEADLINE);
    for node in [&a, &b] {
        assert_eq!(health(node), 200);
    }
    burst.allow(4);
    wait_until("the burst to go on", DEADLINE, || {
        (burst.done_total() >= 2 * users + users / 2).then_some(())
    });

    pg.stop();
    let stopped = Instant::now();
    // The first refusal: the probe's fresh code, to both nodes at once.
    let refused = to_all(&nodes, "probe", &probe_code);
    let refuse_ms = refused
        .iter()
        .map(|(_, at)| at.duration_since(stopped).as_millis())
        .max()
        .unwrap_or(0);
    assert!(
        refused.iter().all(|(c, _)| *c == Some(ACCESS_REJECT)),
        "with the database gone: {refused:?}"
    );
    assert!(
        refuse_ms < 3000,
        "refused {refuse_ms} ms after the database stopped: past a gateway's timeout"
    );
    for node in [&a, &b] {
        let lines = radius_lines(node, "probe");
        assert!(
            lines
                .last()
                .is_some_and(|l| l.contains("reason=store_error")),
            "{lines:#?}"
        );
    }
    // Readiness says so, and one line says why.
    for node in [&a, &b] {
        wait_until("/healthz to answer 503", DEADLINE, || {
            (health(node) == 503).then_some(())
        });
        assert!(
            node.stderr().contains("error: store unavailable: "),
            "{}",
            node.stderr()
        );
    }
    // The internet hears a generic 503: no host, port, database name or OS error.
    let r = otpd_testkit::http::post_json(
        a.http(),
        "/api/v1/renew",
        &serde_json::json!({"service_id": "TEST-BANK", "user_id": "probe", "otp": "123456"}),
    );
    let text = r.text();
    assert_eq!(r.status, 503, "{text}");
    assert_eq!(r.json()["error"], "store_unavailable", "{text}");
    for detail in [
        "127.0.0.1",
        "5432",
        "onnect",
        "refused",
        "postgres",
        "os error",
    ] {
        assert!(
            !text.contains(detail),
            "{detail:?} reached the internet: {text}"
        );
    }
    // The burst goes on against the dead database for a while.
    wait_until("refusals while the database is down", DEADLINE, || {
        let sent_since = burst.answers().iter().filter(|x| x.sent >= stopped).count();
        (sent_since >= 4 * users).then_some(())
    });

    let starting = Instant::now();
    pg.start_again();
    let started = Instant::now();
    // Recovery: the probe's code, to A until it is accepted.
    let probe_a = Client::connected(a.radius(), RADIUS_SECRET);
    wait_until(
        "a fresh code accepted once the database is back",
        DEADLINE,
        || {
            let r = probe_a.login(1, "probe", &probe_code);
            (r.code == ACCESS_ACCEPT).then_some(())
        },
    );
    let recover_ms = started.elapsed().as_millis();
    assert_eq!(
        Client::new(b.radius(), RADIUS_SECRET)
            .login(2, "probe", &probe_code)
            .code,
        ACCESS_REJECT,
        "B refuses what A accepted"
    );
    burst.give_up_refused();
    burst.allow(6);
    burst.wait_done(6, DEADLINE);
    let answers = burst.stop();
    for node in [&a, &b] {
        wait_until("/healthz to answer 200 again", DEADLINE, || {
            (health(node) == 200).then_some(())
        });
    }

    let down: Vec<&Answer> = answers
        .iter()
        .filter(|x| x.sent >= stopped && x.got <= starting)
        .collect();
    let per_code = accepts_per_code(&answers);
    let after = |u: usize| {
        answers
            .iter()
            .filter(|x| x.user == u && x.accepted() && x.sent >= started)
            .count()
    };
    println!(
        "database stop mid-burst: {users} users, {} logins sent, {} while down (all refused: {}), {} codes accepted, accepts per code max {}",
        answers.len(),
        down.len(),
        down.iter().all(|x| x.code == Some(ACCESS_REJECT)),
        per_code.values().sum::<usize>(),
        per_code.values().max().unwrap_or(&0),
    );
    eprintln!("figure: refuse_after_db_stop_ms={refuse_ms} recover_after_db_start_ms={recover_ms}");
    assert!(down.len() >= 4 * users, "{}", down.len());
    assert!(
        down.iter().all(|x| x.code == Some(ACCESS_REJECT)),
        "while the database was down, every login was refused: {:?}",
        down.iter()
            .filter(|x| x.code != Some(ACCESS_REJECT))
            .collect::<Vec<_>>()
    );
    assert!(
        per_code.values().all(|n| *n == 1),
        "a code accepted more than once: {:?}",
        per_code.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(
        answers.iter().filter(|x| !x.fresh).all(|x| !x.accepted()),
        "a replayed code was accepted"
    );
    for u in 0..users {
        assert!(
            after(u) > 0,
            "{}: nothing accepted after the restart",
            burst_user(u)
        );
    }
    assert_accepted_codes_refused(nodes, &secrets, &per_code);
    for node in [&a, &b] {
        let log = node.stderr();
        assert_eq!(
            log.matches("error: store unavailable: ").count(),
            1,
            "{log}"
        );
        assert_eq!(
            log.matches("store available again after").count(),
            1,
            "{log}"
        );
        assert!(
            !log.contains(pg.password()),
            "the log holds the database password"
        );
        for u in 0..users {
            assert_eq!(node.show(&burst_user(u))["state"], "active");
        }
    }
}

/// A server that hangs: `statement_timeout` is the server's, so a frozen one never
/// answers; each statement is waited for 1 s and a margin on otpd's side.
const HANG_CONFIG: &str = "[store.postgres]\nstatement_timeout_ms = 1000\n";

#[test]
fn a_frozen_database_mid_burst_is_answered_in_time_then_recovers_and_accepts_nothing_twice() {
    let mut pg = Postgres::start();
    let a = node_a(&pg, &format!("{}{HANG_CONFIG}", burst_config(5)));
    let users = 8;
    let secrets = burst_users(&a, users);
    let probe = activate(&a, "probe", "pw");
    let probe_code = format!("pw{}", oathtool(&probe, None));
    // One node: each attempt goes to it twice at once (one copy wins, the other is refused).
    let nodes = [a.radius(), a.radius()];
    let burst = Burst::start(nodes, &secrets, 6, 2, Duration::from_millis(25));
    burst.wait_done(2, DEADLINE);
    assert_eq!(health(&a), 200);
    burst.allow(4);
    wait_until("the burst to go on", DEADLINE, || {
        (burst.done_total() >= 2 * users + users / 2).then_some(())
    });

    pg.freeze();
    let frozen = Instant::now();
    wait_until("/healthz to answer 503", DEADLINE, || {
        (health(&a) == 503).then_some(())
    });
    assert!(
        a.stderr().contains("error: store unavailable: "),
        "{}",
        a.stderr()
    );
    // The burst goes on against the frozen database for a while.
    wait_until("refusals while the database is frozen", DEADLINE, || {
        let sent_since = burst.answers().iter().filter(|x| x.sent >= frozen).count();
        (sent_since >= 4 * users).then_some(())
    });
    let refused = to_all(&nodes, "probe", &probe_code);
    assert!(
        refused.iter().all(|(c, _)| *c == Some(ACCESS_REJECT)),
        "with the database frozen: {refused:?}"
    );
    let lines = radius_lines(&a, "probe");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("reason=store_error")),
        "{lines:#?}"
    );

    pg.thaw();
    let thawed = Instant::now();
    let probe_a = Client::connected(a.radius(), RADIUS_SECRET);
    wait_until(
        "a fresh code accepted once the database thawed",
        DEADLINE,
        || {
            let r = probe_a.login(1, "probe", &probe_code);
            (r.code == ACCESS_ACCEPT).then_some(())
        },
    );
    let recover_ms = thawed.elapsed().as_millis();
    assert_eq!(
        Client::new(a.radius(), RADIUS_SECRET)
            .login(2, "probe", &probe_code)
            .code,
        ACCESS_REJECT,
        "the accepted code is refused again"
    );
    burst.give_up_refused();
    burst.allow(6);
    burst.wait_done(6, DEADLINE);
    let answers = burst.stop();
    wait_until("/healthz to answer 200 again", DEADLINE, || {
        (health(&a) == 200).then_some(())
    });

    // Every login answered while the server was frozen (those in flight when it froze
    // included), and how long each waited for its answer.
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|x| x.got >= frozen && x.sent <= thawed)
        .collect();
    let worst_ms = during
        .iter()
        .map(|x| x.got.duration_since(x.sent).as_millis())
        .max()
        .unwrap_or(0);
    let per_code = accepts_per_code(&answers);
    println!(
        "database frozen mid-burst: {users} users, {} logins sent, {} answered while frozen (all refused: {}), {} codes accepted, accepts per code max {}",
        answers.len(),
        during.len(),
        during
            .iter()
            .filter(|x| x.sent >= frozen)
            .all(|x| x.code == Some(ACCESS_REJECT)),
        per_code.values().sum::<usize>(),
        per_code.values().max().unwrap_or(&0),
    );
    eprintln!("figure: worst_answer_while_frozen_ms={worst_ms} recover_after_thaw_ms={recover_ms}");
    assert!(during.len() >= 4 * users, "{}", during.len());
    assert!(
        during.iter().all(|x| x.code.is_some()),
        "a login went unanswered while the database was frozen"
    );
    assert!(
        during
            .iter()
            .filter(|x| x.sent >= frozen)
            .all(|x| x.code == Some(ACCESS_REJECT)),
        "while the database was frozen, every login was refused: {:?}",
        during
            .iter()
            .filter(|x| x.sent >= frozen && x.code != Some(ACCESS_REJECT))
            .collect::<Vec<_>>()
    );
    assert!(
        worst_ms < 3000,
        "a login answered {worst_ms} ms after it was sent: past a gateway's timeout"
    );
    assert!(
        per_code.values().all(|n| *n == 1),
        "a code accepted more than once: {:?}",
        per_code.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(
        answers.iter().filter(|x| !x.fresh).all(|x| !x.accepted()),
        "a replayed code was accepted"
    );
    assert_accepted_codes_refused(nodes, &secrets, &per_code);
    let log = a.stderr();
    assert_eq!(
        log.matches("error: store unavailable: ").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("store available again after").count(),
        1,
        "{log}"
    );
    assert!(
        !log.contains(pg.password()),
        "the log holds the database password"
    );
    for u in 0..users {
        assert_eq!(a.show(&burst_user(u))["state"], "active");
    }
}

/// Row 12 of issue 27: a database that is not on loopback or a Unix socket gets
/// `verify-full` unless the configuration says otherwise, so a configuration without a CA
/// for it is refused; a weaker mode written out is warned about.
#[test]
fn a_database_across_the_network_is_verify_full_unless_written_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").expect("ca");
    let check = |postgres: &str| -> (Option<i32>, String) {
        let path = dir.path().join("otpd.toml");
        std::fs::write(
            &path,
            format!(
                "service_id = \"B\"\ndata_dir = \"{d}/data\"\nkey_file = \"{d}/master.key\"\n[admin]\nsocket = \"{d}/admin.sock\"\n[log]\nsyslog = false\n[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"postgresql://otpd@192.0.2.10/otpd?connect_timeout=1\"\n{postgres}",
                d = dir.path().display()
            ),
        )
        .expect("config");
        let out = otpd_with(&path, &["--check-config"]);
        (out.status.code(), stderr_of(&out))
    };
    let (code, err) = check("");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("is verify-full by default") && err.contains("store.postgres.ca_file"),
        "no CA, no connection: {err}"
    );
    assert!(
        !err.contains("\"prefer\""),
        "prefer is no longer the default: {err}"
    );
    for mode in ["prefer", "require", "verify-ca"] {
        let (_, err) = check(&format!(
            "sslmode = \"{mode}\"\nca_file = \"{}\"\n",
            ca.display()
        ));
        assert!(
            err.contains(&format!(
                "warning: `store.postgres.sslmode = \"{mode}\"` with a database across the network"
            )),
            "{mode} is warned about: {err}"
        );
    }
}
