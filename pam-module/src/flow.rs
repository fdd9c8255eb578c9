//! The authentication conversation: arguments and secret first, then the password, then
//! Access-Request / Access-Challenge rounds until the server accepts or rejects.

use std::ffi::CStr;

use pam::constants::PamResultCode;
use zeroize::Zeroizing;

use crate::client::{ExchangeError, Transport, UdpClient};
use crate::handler::{PamHandler, Priority, Secret};
use crate::options::{read_secret, Options, PassMode};
use crate::packet::{EncodeError, ReplyKind, Request};

/// Japanese first, English after, as otpd's own OTP prompt (`daemon/src/access.rs`); it
/// ends in `Password: ` so scripts that wait for that text still find it.
pub const PASSWORD_PROMPT: &str = "ログインパスワード / Password: ";
/// Used when a challenge carries no Reply-Message (otpd always sends one).
pub const DEFAULT_OTP_PROMPT: &str = "ワンタイムパスワード / One-time password: ";
/// otpd challenges once (for the OTP); a server that keeps challenging is cut off here.
pub const MAX_CHALLENGE_ROUNDS: usize = 3;

/// `pam_sm_authenticate` minus the FFI: bad arguments or secret file are
/// `PAM_SERVICE_ERR` before the user is asked anything.
pub fn authenticate<H: PamHandler + ?Sized>(h: &mut H, args: &[&CStr]) -> PamResultCode {
    let opts = match Options::parse(args) {
        Ok(opts) => opts,
        Err(e) => {
            h.syslog(Priority::Err, &format!("refusing to authenticate: {e}"));
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    let secret = match read_secret(&opts.secret_file) {
        Ok(secret) => secret,
        Err(e) => {
            h.syslog(
                Priority::Err,
                &format!(
                    "refusing to authenticate: secret_file {}: {e}",
                    opts.secret_file.display()
                ),
            );
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    let mut client = UdpClient::new(opts.servers.clone(), secret, opts.timeout, opts.retries);
    converse(h, &opts, &mut client)
}

/// Everything after configuration, over any transport.
pub fn converse<H: PamHandler + ?Sized, T: Transport>(
    h: &mut H,
    opts: &Options,
    radius: &mut T,
) -> PamResultCode {
    let debug = opts.debug;
    let user = match h.get_user() {
        Ok(user) if !user.is_empty() => user,
        Ok(_) => {
            h.syslog(Priority::Warning, "empty user name");
            return PamResultCode::PAM_USER_UNKNOWN;
        }
        Err(code) => return code,
    };
    // Quoted and escaped, so a user name cannot forge syslog lines.
    let who = format!("user {user:?}");
    let nas_identifier = opts.nas_identifier.clone().or_else(|| h.service());
    let (password, prompted) = match obtain_password(h, opts, &who) {
        Ok(found) => found,
        Err(code) => return code,
    };
    if debug {
        h.syslog(
            Priority::Debug,
            &format!(
                "{who}: password {}",
                if prompted {
                    "prompted for"
                } else {
                    "taken from PAM_AUTHTOK"
                }
            ),
        );
    }

    // What goes in User-Password: the password first, then each challenge's answer.
    let mut current: Secret = Zeroizing::new(password.to_vec());
    let mut state: Option<Vec<u8>> = None;
    let mut rounds = 0;
    loop {
        let req = Request {
            user: &user,
            password: &current,
            state: state.as_deref(),
            nas_identifier: nas_identifier.as_deref(),
        };
        let result = radius.exchange(&req, &mut |priority: Priority, msg: &str| {
            if debug || priority < Priority::Debug {
                h.syslog(priority, msg);
            }
        });
        let reply = match result {
            Ok(reply) => reply,
            Err(ExchangeError::Unavailable) => {
                h.syslog(
                    Priority::Err,
                    &format!(
                        "{who}: no RADIUS server answered ({} configured)",
                        opts.servers.len()
                    ),
                );
                return PamResultCode::PAM_AUTHINFO_UNAVAIL;
            }
            Err(ExchangeError::NoRandomness) => {
                h.syslog(Priority::Err, "the system random source failed");
                return PamResultCode::PAM_SERVICE_ERR;
            }
            Err(ExchangeError::Encode(e)) => {
                h.syslog(Priority::Warning, &format!("{who}: {e}"));
                return match e {
                    EncodeError::PasswordTooLong | EncodeError::State => {
                        PamResultCode::PAM_AUTH_ERR
                    }
                    EncodeError::UserName => PamResultCode::PAM_USER_UNKNOWN,
                    EncodeError::NasIdentifier => PamResultCode::PAM_SERVICE_ERR,
                };
            }
        };

        match reply.kind {
            ReplyKind::Accept => {
                for msg in &reply.messages {
                    h.info(msg);
                }
                if prompted {
                    if let Err(code) = h.set_authtok(&password) {
                        h.syslog(
                            Priority::Warning,
                            &format!("could not set PAM_AUTHTOK: {code:?}"),
                        );
                    }
                }
                if debug {
                    h.syslog(Priority::Debug, &format!("{who}: accepted"));
                }
                return PamResultCode::PAM_SUCCESS;
            }
            ReplyKind::Reject => {
                if !reply.messages.is_empty() {
                    h.error(&reply.messages.join("\n"));
                }
                h.syslog(Priority::Info, &format!("{who}: rejected by the server"));
                return PamResultCode::PAM_AUTH_ERR;
            }
            ReplyKind::Challenge => {
                rounds += 1;
                if rounds > MAX_CHALLENGE_ROUNDS {
                    h.syslog(
                        Priority::Warning,
                        &format!("{who}: more than {MAX_CHALLENGE_ROUNDS} challenges, giving up"),
                    );
                    return PamResultCode::PAM_AUTH_ERR;
                }
                let prompt = if reply.messages.is_empty() {
                    DEFAULT_OTP_PROMPT.to_string()
                } else {
                    reply.messages.join("\n")
                };
                if debug {
                    h.syslog(
                        Priority::Debug,
                        &format!("{who}: challenge {rounds}, asking the user"),
                    );
                }
                current = match h.prompt_echo_off(&prompt) {
                    Ok(Some(answer)) => answer,
                    Ok(None) => return PamResultCode::PAM_CONV_ERR,
                    Err(code) => return code,
                };
                state = reply.state.filter(|s| !s.is_empty());
            }
        }
    }
}

fn obtain_password<H: PamHandler + ?Sized>(
    h: &mut H,
    opts: &Options,
    who: &str,
) -> Result<(Secret, bool), PamResultCode> {
    let earlier = match opts.pass_mode {
        PassMode::Prompt => None,
        PassMode::UseFirst | PassMode::TryFirst => h.get_authtok()?,
    };
    if let Some(password) = earlier {
        return Ok((password, false));
    }
    if opts.pass_mode == PassMode::UseFirst {
        h.syslog(
            Priority::Info,
            &format!("{who}: use_first_pass, but no earlier module set a password"),
        );
        return Err(PamResultCode::PAM_AUTH_ERR);
    }
    match h.prompt_echo_off(PASSWORD_PROMPT)? {
        Some(password) => Ok((password, true)),
        None => Err(PamResultCode::PAM_CONV_ERR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{self, Reply};
    use otpd_testkit::fake_radius::{DeadServer, FakeRadius, OTPD_OTP, OTPD_PASSWORD, OTPD_PROMPT};
    use std::collections::VecDeque;
    use std::ffi::CString;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// A PAM application whose user's answers are written in advance.
    #[derive(Default)]
    struct Script {
        user: Option<String>,
        user_error: Option<PamResultCode>,
        service: Option<String>,
        authtok: Option<Vec<u8>>,
        answers: VecDeque<Result<Option<Vec<u8>>, PamResultCode>>,
        prompts: Vec<String>,
        infos: Vec<String>,
        errors: Vec<String>,
        logs: Vec<(Priority, String)>,
        set_authtok: Vec<Vec<u8>>,
    }

    impl Script {
        fn user(name: &str) -> Self {
            Self {
                user: Some(name.into()),
                service: Some("login".into()),
                ..Self::default()
            }
        }
        fn answering(mut self, answers: &[&str]) -> Self {
            self.answers = answers
                .iter()
                .map(|a| Ok(Some(a.as_bytes().to_vec())))
                .collect();
            self
        }
        fn with_authtok(mut self, tok: &str) -> Self {
            self.authtok = Some(tok.as_bytes().to_vec());
            self
        }
        fn logged(&self, needle: &str) -> bool {
            self.logs.iter().any(|(_, l)| l.contains(needle))
        }
    }

    impl PamHandler for Script {
        fn get_user(&mut self) -> Result<String, PamResultCode> {
            if let Some(code) = self.user_error.take() {
                return Err(code);
            }
            self.user.clone().ok_or(PamResultCode::PAM_USER_UNKNOWN)
        }
        fn service(&mut self) -> Option<String> {
            self.service.clone()
        }
        fn get_authtok(&mut self) -> Result<Option<Secret>, PamResultCode> {
            Ok(self.authtok.clone().map(Zeroizing::new))
        }
        fn set_authtok(&mut self, token: &[u8]) -> Result<(), PamResultCode> {
            self.set_authtok.push(token.to_vec());
            self.authtok = Some(token.to_vec());
            Ok(())
        }
        fn prompt_echo_off(&mut self, msg: &str) -> Result<Option<Secret>, PamResultCode> {
            self.prompts.push(msg.to_string());
            match self.answers.pop_front() {
                Some(Ok(answer)) => Ok(answer.map(Zeroizing::new)),
                Some(Err(code)) => Err(code),
                None => Err(PamResultCode::PAM_CONV_ERR),
            }
        }
        fn info(&mut self, msg: &str) {
            self.infos.push(msg.to_string());
        }
        fn error(&mut self, msg: &str) {
            self.errors.push(msg.to_string());
        }
        fn syslog(&mut self, priority: Priority, msg: &str) {
            self.logs.push((priority, msg.to_string()));
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Sent {
        user: String,
        password: Vec<u8>,
        state: Option<Vec<u8>>,
        nas_identifier: Option<String>,
    }

    /// A RADIUS server whose replies are written in advance; it encodes each request
    /// with the real codec so requests RADIUS cannot carry fail as they would on the wire.
    struct Radius {
        replies: VecDeque<Result<Reply, ExchangeError>>,
        sent: Vec<Sent>,
    }

    impl Radius {
        fn replying(replies: Vec<Result<Reply, ExchangeError>>) -> Self {
            Self {
                replies: replies.into(),
                sent: Vec::new(),
            }
        }
    }

    impl Transport for Radius {
        fn exchange(
            &mut self,
            req: &Request<'_>,
            log: &mut dyn FnMut(Priority, &str),
        ) -> Result<Reply, ExchangeError> {
            packet::encode_request(req, 1, &[0; 16], b"s").map_err(ExchangeError::Encode)?;
            self.sent.push(Sent {
                user: req.user.to_string(),
                password: req.password.to_vec(),
                state: req.state.map(<[u8]>::to_vec),
                nas_identifier: req.nas_identifier.map(str::to_string),
            });
            log(Priority::Debug, "scripted exchange");
            self.replies
                .pop_front()
                .unwrap_or(Err(ExchangeError::Unavailable))
        }
    }

    fn reply(
        kind: ReplyKind,
        messages: &[&str],
        state: Option<&[u8]>,
    ) -> Result<Reply, ExchangeError> {
        Ok(Reply {
            kind,
            messages: messages.iter().map(|m| m.to_string()).collect(),
            state: state.map(<[u8]>::to_vec),
        })
    }

    fn opts(extra: &[&str]) -> Options {
        let mut args = vec!["server=127.0.0.1:1812", "secret_file=/nonexistent"];
        args.extend_from_slice(extra);
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(*a).expect("no NUL"))
            .collect();
        let borrowed: Vec<&CStr> = owned.iter().map(CString::as_c_str).collect();
        Options::parse(&borrowed).expect("valid options")
    }

    #[test]
    fn accept_with_a_prompted_password_sets_authtok() {
        let mut h = Script::user("alice").answering(&["pw123456"]);
        let mut radius = Radius::replying(vec![reply(
            ReplyKind::Accept,
            &["Token expires in 10 days"],
            None,
        )]);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_SUCCESS
        );
        assert_eq!(h.prompts, [PASSWORD_PROMPT]);
        assert_eq!(h.infos, ["Token expires in 10 days"]);
        assert_eq!(h.set_authtok, [b"pw123456".to_vec()]);
        assert_eq!(
            radius.sent,
            [Sent {
                user: "alice".into(),
                password: b"pw123456".to_vec(),
                state: None,
                nas_identifier: Some("login".into()),
            }]
        );
    }

    #[test]
    fn reject_shows_the_reply_message_and_fails() {
        let mut h = Script::user("alice").answering(&["wrong"]);
        let mut radius = Radius::replying(vec![reply(
            ReplyKind::Reject,
            &["Login failed", "Try again"],
            None,
        )]);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_AUTH_ERR
        );
        assert_eq!(h.errors, ["Login failed\nTry again"]);
        assert!(h.set_authtok.is_empty());
        assert!(h.logged("user \"alice\": rejected"));
    }

    #[test]
    fn challenge_prompts_with_the_server_text_and_returns_the_state() {
        let mut h = Script::user("alice").answering(&["correct horse", "123456"]);
        let mut radius = Radius::replying(vec![
            reply(
                ReplyKind::Challenge,
                &["Enter your one-time password: "],
                Some(b"st-9"),
            ),
            reply(ReplyKind::Accept, &[], None),
        ]);
        let opts = opts(&["nas_identifier=gw-1"]);
        assert_eq!(
            converse(&mut h, &opts, &mut radius),
            PamResultCode::PAM_SUCCESS
        );
        assert_eq!(
            h.prompts,
            [PASSWORD_PROMPT, "Enter your one-time password: "]
        );
        assert_eq!(radius.sent.len(), 2);
        assert_eq!(radius.sent[1].password, b"123456");
        assert_eq!(radius.sent[1].state.as_deref(), Some(&b"st-9"[..]));
        assert_eq!(radius.sent[1].nas_identifier.as_deref(), Some("gw-1"));
        // Later modules get the password, not the one-time code.
        assert_eq!(h.set_authtok, [b"correct horse".to_vec()]);
    }

    #[test]
    fn challenge_without_text_uses_the_default_prompt() {
        let mut h = Script::user("alice").answering(&["pw", "654321"]);
        let mut radius = Radius::replying(vec![
            reply(ReplyKind::Challenge, &[], Some(b"s")),
            reply(ReplyKind::Reject, &[], None),
        ]);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_AUTH_ERR
        );
        assert_eq!(h.prompts[1], DEFAULT_OTP_PROMPT);
        assert!(h.errors.is_empty());
    }

    #[test]
    fn endless_challenges_are_cut_off() {
        let mut h = Script::user("alice").answering(&["pw", "1", "2", "3", "4"]);
        let challenges = (0..10)
            .map(|_| reply(ReplyKind::Challenge, &["again: "], Some(b"s")))
            .collect();
        let mut radius = Radius::replying(challenges);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_AUTH_ERR
        );
        assert_eq!(radius.sent.len(), MAX_CHALLENGE_ROUNDS + 1);
        assert_eq!(h.prompts.len(), MAX_CHALLENGE_ROUNDS + 1);
        assert!(h.logged("more than 3 challenges"));
    }

    #[test]
    fn use_first_pass_takes_authtok_and_still_asks_for_the_otp() {
        let mut h = Script::user("alice")
            .with_authtok("from pam_unix")
            .answering(&["123456"]);
        let mut radius = Radius::replying(vec![
            reply(ReplyKind::Challenge, &["OTP: "], Some(b"s")),
            reply(ReplyKind::Accept, &[], None),
        ]);
        assert_eq!(
            converse(&mut h, &opts(&["use_first_pass"]), &mut radius),
            PamResultCode::PAM_SUCCESS
        );
        assert_eq!(h.prompts, ["OTP: "]);
        assert_eq!(radius.sent[0].password, b"from pam_unix");
        // Not prompted, so PAM_AUTHTOK is left as the earlier module set it.
        assert!(h.set_authtok.is_empty());
    }

    #[test]
    fn use_first_pass_without_authtok_fails_without_asking() {
        let mut h = Script::user("alice").answering(&["never asked"]);
        let mut radius = Radius::replying(vec![reply(ReplyKind::Accept, &[], None)]);
        assert_eq!(
            converse(&mut h, &opts(&["use_first_pass"]), &mut radius),
            PamResultCode::PAM_AUTH_ERR
        );
        assert!(h.prompts.is_empty());
        assert!(radius.sent.is_empty());
        assert!(h.logged("use_first_pass"));
    }

    #[test]
    fn try_first_pass_uses_authtok_or_else_asks() {
        let mut h = Script::user("alice").with_authtok("earlier");
        let mut radius = Radius::replying(vec![reply(ReplyKind::Accept, &[], None)]);
        assert_eq!(
            converse(&mut h, &opts(&["try_first_pass"]), &mut radius),
            PamResultCode::PAM_SUCCESS
        );
        assert!(h.prompts.is_empty());
        assert_eq!(radius.sent[0].password, b"earlier");

        let mut h = Script::user("alice").answering(&["typed"]);
        let mut radius = Radius::replying(vec![reply(ReplyKind::Accept, &[], None)]);
        assert_eq!(
            converse(&mut h, &opts(&["try_first_pass"]), &mut radius),
            PamResultCode::PAM_SUCCESS
        );
        assert_eq!(h.prompts, [PASSWORD_PROMPT]);
        assert_eq!(radius.sent[0].password, b"typed");
        assert_eq!(h.set_authtok, [b"typed".to_vec()]);
    }

    #[test]
    fn default_mode_ignores_an_earlier_authtok() {
        let mut h = Script::user("alice")
            .with_authtok("earlier")
            .answering(&["typed"]);
        let mut radius = Radius::replying(vec![reply(ReplyKind::Reject, &[], None)]);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_AUTH_ERR
        );
        assert_eq!(radius.sent[0].password, b"typed");
    }

    #[test]
    fn no_server_is_authinfo_unavail() {
        let mut h = Script::user("alice").answering(&["pw"]);
        let mut radius = Radius::replying(vec![Err(ExchangeError::Unavailable)]);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_AUTHINFO_UNAVAIL
        );
        assert!(h
            .logs
            .iter()
            .any(|(p, l)| *p == Priority::Err && l.contains("no RADIUS server answered")));
    }

    #[test]
    fn conversation_failures_end_the_attempt() {
        let mut h = Script::user("alice");
        h.answers.push_back(Err(PamResultCode::PAM_CONV_ERR));
        let mut radius = Radius::replying(vec![]);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_CONV_ERR
        );
        assert!(radius.sent.is_empty());

        let mut h = Script::user("alice");
        h.answers.push_back(Ok(None));
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_CONV_ERR
        );

        // The user walks away at the OTP prompt.
        let mut h = Script::user("alice").answering(&["pw"]);
        h.answers.push_back(Ok(None));
        let mut radius =
            Radius::replying(vec![reply(ReplyKind::Challenge, &["OTP: "], Some(b"s"))]);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_CONV_ERR
        );
        assert_eq!(radius.sent.len(), 1);
    }

    #[test]
    fn user_problems_are_reported_before_anything_is_sent() {
        let mut radius = Radius::replying(vec![]);
        let mut h = Script::user("alice");
        h.user_error = Some(PamResultCode::PAM_CONV_ERR);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_CONV_ERR
        );
        let mut h = Script::user("");
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_USER_UNKNOWN
        );
        assert!(radius.sent.is_empty());
    }

    #[test]
    fn overlong_password_is_refused_locally() {
        let long = "p".repeat(129);
        let mut h = Script::user("alice").answering(&[&long]);
        let mut radius = Radius::replying(vec![reply(ReplyKind::Accept, &[], None)]);
        assert_eq!(
            converse(&mut h, &opts(&[]), &mut radius),
            PamResultCode::PAM_AUTH_ERR
        );
        assert!(radius.sent.is_empty());
    }

    // ---- authenticate(): arguments and secret file, then the real client over UDP ----

    const SECRET: &str = "flow test shared secret";

    fn secret_file(dir: &tempfile::TempDir, mode: u32) -> PathBuf {
        let path = dir.path().join("pam.secret");
        let mut f = std::fs::File::create(&path).expect("create");
        writeln!(f, "{SECRET}").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn run(h: &mut Script, args: &[String]) -> PamResultCode {
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()).expect("no NUL"))
            .collect();
        let borrowed: Vec<&CStr> = owned.iter().map(CString::as_c_str).collect();
        authenticate(h, &borrowed)
    }

    #[test]
    fn bad_arguments_are_a_service_error_before_any_prompt() {
        let dir = tempfile::tempdir().expect("dir");
        let secret = secret_file(&dir, 0o600);
        let cases = [
            ("bogus_option", "unknown option \"bogus_option\""),
            ("timeout=zero", "bad option \"timeout=zero\""),
            ("retries=99", "bad option \"retries=99\""),
        ];
        for (bad, expected) in cases {
            let mut h = Script::user("alice").answering(&["pw"]);
            let args = [
                "server=127.0.0.1:1812".to_string(),
                format!("secret_file={}", secret.display()),
                bad.to_string(),
            ];
            assert_eq!(run(&mut h, &args), PamResultCode::PAM_SERVICE_ERR, "{bad}");
            assert!(h.prompts.is_empty());
            assert!(
                h.logs
                    .iter()
                    .any(|(p, l)| *p == Priority::Err && l.contains(expected)),
                "{bad}: {:?}",
                h.logs
            );
        }
    }

    #[test]
    fn loose_secret_file_is_a_service_error_before_any_prompt() {
        let dir = tempfile::tempdir().expect("dir");
        let secret = secret_file(&dir, 0o644);
        let mut h = Script::user("alice").answering(&["pw"]);
        let args = [
            "server=127.0.0.1:1812".to_string(),
            format!("secret_file={}", secret.display()),
        ];
        assert_eq!(run(&mut h, &args), PamResultCode::PAM_SERVICE_ERR);
        assert!(h.prompts.is_empty());
        assert!(h.logged("0644"), "{:?}", h.logs);
        assert!(h.logged(&secret.display().to_string()));
        assert!(!h.logged(SECRET));
    }

    #[test]
    fn password_then_otp_over_udp_with_debug_logs_that_hold_no_secrets() {
        let server = FakeRadius::otpd_like(SECRET.as_bytes());
        let dir = tempfile::tempdir().expect("dir");
        let secret = secret_file(&dir, 0o600);
        let mut h = Script::user("alice").answering(&[OTPD_PASSWORD, OTPD_OTP]);
        let args = [
            format!("server={}", server.addr()),
            format!("secret_file={}", secret.display()),
            "debug".to_string(),
        ];
        assert_eq!(run(&mut h, &args), PamResultCode::PAM_SUCCESS);
        assert_eq!(h.prompts, [PASSWORD_PROMPT, OTPD_PROMPT]);
        assert_eq!(h.infos, ["Welcome"]);
        assert!(server.problems().is_empty(), "{:?}", server.problems());
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].nas_identifier.as_deref(), Some("login"));
        assert!(h.logs.iter().any(|(p, _)| *p == Priority::Debug));
        for (_, line) in &h.logs {
            for secret in [OTPD_PASSWORD, OTPD_OTP, SECRET] {
                assert!(!line.contains(secret), "{line}");
            }
        }
    }

    #[test]
    fn without_debug_only_problems_are_logged() {
        let server = FakeRadius::otpd_like(SECRET.as_bytes());
        let dir = tempfile::tempdir().expect("dir");
        let secret = secret_file(&dir, 0o600);
        let mut h = Script::user("alice").answering(&["correct horse123456"]);
        let args = [
            format!("server={}", server.addr()),
            format!("secret_file={}", secret.display()),
        ];
        assert_eq!(run(&mut h, &args), PamResultCode::PAM_SUCCESS);
        assert!(h.logs.is_empty(), "{:?}", h.logs);
    }

    #[test]
    fn dead_servers_over_udp_are_authinfo_unavail_within_the_bound() {
        let (a, b) = (DeadServer::bind(), DeadServer::bind());
        let dir = tempfile::tempdir().expect("dir");
        let secret = secret_file(&dir, 0o600);
        let mut h = Script::user("alice").answering(&["pw"]);
        let args = [
            format!("server={}", a.addr()),
            format!("server={}", b.addr()),
            format!("secret_file={}", secret.display()),
            "timeout=1".to_string(),
            "retries=0".to_string(),
        ];
        let started = Instant::now();
        assert_eq!(run(&mut h, &args), PamResultCode::PAM_AUTHINFO_UNAVAIL);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
        eprintln!("no server through authenticate(): {elapsed:?} for a bound of 2s");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(a.drain().len(), 1);
        assert_eq!(b.drain().len(), 1);
    }
}
