//! Two real otpd nodes on one PostgreSQL database (a private cluster per test): a code is
//! accepted once across both, failures on both add up to one lock, a link mailed by one is
//! completed on the other, a backup moves between sled and PostgreSQL with its replay marks,
//! and `--check-config` says what it finds at a live database and why a dead one fails.

use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, Barrier};

use otpd_testkit::daemon::{bin, wait_until, Builder, Otpd, DEADLINE, RADIUS_SECRET};
use otpd_testkit::oath::{now, oathtool};
use otpd_testkit::postgres::Postgres;
use otpd_testkit::radius::{Client, ACCESS_ACCEPT, ACCESS_CHALLENGE, ACCESS_REJECT, STATE};
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
    let pg = Postgres::start();
    let (a, b) = both(&pg, FAST);
    let users = 10;
    let secrets: Vec<String> = (0..users)
        .map(|u| activate(&a, &format!("race{u}"), "pw"))
        .collect();
    let servers = [a.radius(), b.radius()];
    // Each user has two fresh steps: the current one, then the next (otp.window = 1).
    let rounds = 2;
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
        said.contains("schema version 1, 1 users"),
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
