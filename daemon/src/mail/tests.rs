use super::*;
use otpd_core::seal::Sealer;
use otpd_core::store::SledStore;
use otpd_core::Service;

use crate::log::{Level, Logger};

struct Fixture {
    dir: tempfile::TempDir,
    ops: Arc<Ops>,
    config: Config,
}

fn fixture(mail: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "service_id = \"EXAMPLE-BANK\"\n[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n[http]\npublic_url = \"https://otp.example.jp/\"\n[mail]\n{mail}\n"
    );
    let config = Config::parse(&text, dir.path()).expect("config").config;
    let store = SledStore::open(&dir.path().join("data")).expect("store");
    let svc =
        Service::new(&config, store, Sealer::from_key(&[7u8; 32]), clock::now()).expect("service");
    let ops = Arc::new(Ops::new(
        Arc::new(svc),
        Arc::new(Logger::stderr(Level::Error)),
    ));
    Fixture { dir, ops, config }
}

fn issue(f: &Fixture, who: &str) -> MailJob {
    let svc = f.ops.service();
    let now = clock::now();
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

#[tokio::test]
async fn a_refused_delivery_stays_queued_with_its_backoff() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let f = fixture(&format!("smtp_host = \"127.0.0.1\"\nsmtp_port = {port}"));
    issue(&f, "jiro");
    let mailer = Mailer::new(&f.config).expect("mailer");
    let before = clock::now();
    let next = mailer
        .pass(&f.ops, false, &mut HashSet::new())
        .await
        .expect("a retry is scheduled");
    assert!(next >= before + BACKOFF_FIRST && next <= clock::now() + BACKOFF_FIRST);
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
