//! The operations' tests, one file per operation family, on a fixture with a real store.

use super::*;
use crate::admin::ImportRow;
use crate::config::Config;
use crate::lifecycle::TokenState;
use crate::seal::{hex, Sealer};
use crate::store::SledStore;

const NOW: UnixTime = 1_800_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    svc: Service,
}

fn config(extra: &str) -> Config {
    let text = format!(
        "service_id = \"TEST-BANK\"\n[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n{extra}"
    );
    Config::parse(&text, std::path::Path::new("/tmp"))
        .expect("valid test config")
        .config
}

fn fixture(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("store");
    let svc =
        Service::new(&config(extra), store, Sealer::from_key(&[9u8; 32]), NOW).expect("service");
    Fixture { _dir: dir, svc }
}

fn secret_of(e: &SetupDone) -> Vec<u8> {
    base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &e.secret).expect("base32")
}

/// Adds `who` (unless there already) and issues a token with the activation password
/// `act-pass`: the issuance mail queued for `who`, opened.
fn issued(svc: &Service, who: &str) -> MailJob {
    svc.add_user(who, "pw-of-", NOW).ok();
    let (_, _) = svc
        .issue(who, "taro@example.jp", "act-pass", NOW)
        .expect("issue");
    let jobs = svc.pending_mail().expect("outbox");
    jobs.into_iter()
        .rev()
        .find_map(|(_, j)| j.ok().filter(|j| j.login_id == who))
        .expect("mail queued")
}

/// Issues, sets up through the link, and returns the raw secret.
fn setup(svc: &Service, who: &str) -> Vec<u8> {
    let job = issued(svc, who);
    let e = svc
        .setup(&job.code, "TEST-BANK", who, "act-pass", NOW)
        .expect("enroll");
    secret_of(&e)
}

/// [`setup`], then the start of use with the current code: an active token's raw secret.
fn active(svc: &Service, who: &str) -> Vec<u8> {
    let secret = setup(svc, who);
    svc.activate(who, &code(svc, &secret, NOW), NOW)
        .expect("activate");
    secret
}

/// The newest queued issuance mail, opened.
fn last_mail(svc: &Service) -> MailJob {
    svc.pending_mail()
        .expect("outbox")
        .pop()
        .expect("a queued mail")
        .1
        .expect("opens")
}

fn code(svc: &Service, secret: &[u8], at: UnixTime) -> String {
    let p = svc.otp_params();
    p.code_for_step(secret, p.step_at(at))
}

mod accounts;
mod guide;
mod login;
mod renew;
mod setup;
