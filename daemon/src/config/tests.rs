//! The configuration file's checks, and the shipped examples.

use std::net::IpAddr;

use super::*;
use crate::log::Level;

fn parse(text: &str) -> Result<Loaded, Vec<String>> {
    Config::parse(text, Path::new("/etc/otpd"))
}

#[test]
fn minimal_config_takes_the_defaults() {
    let l = parse("service_id = \"BANK\"\n").expect("valid");
    let c = &l.config;
    assert_eq!(c.core.otp.period, 60);
    assert_eq!(c.core.otp.digits, 6);
    assert_eq!(c.core.token.validity_days, 1461);
    assert_eq!(c.radius.reject_delay_ms, 1000);
    assert!(c.radius.require_message_authenticator);
    assert_eq!(c.admin.socket, PathBuf::from("/run/otpd/admin.sock"));
    assert_eq!(c.log.level, Level::Info);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn metrics_are_off_unless_a_listen_address_is_given() {
    assert!(parse("service_id = \"B\"\n")
        .expect("valid")
        .config
        .metrics
        .is_none());
    let on = parse("service_id = \"B\"\n[metrics]\nlisten = \"127.0.0.1:9812\"\n").expect("valid");
    assert_eq!(
        on.config.metrics.map(|m| m.listen).as_deref(),
        Some("127.0.0.1:9812")
    );
    let e = parse("service_id = \"B\"\n[metrics]\nlisten = \"localhost\"\nport = 1\n")
        .expect_err("refused");
    assert!(e.iter().any(|p| p.contains("`metrics.listen`")), "{e:?}");
    assert!(e.iter().any(|p| p.contains("`metrics.port`")), "{e:?}");
}

#[test]
fn admin_listen_is_an_address_of_its_own() {
    let ok = parse("service_id = \"B\"\n[http]\nadmin_listen = \"127.0.0.1:8081\"\n");
    let ok = ok.expect("valid");
    assert_eq!(
        ok.config.http.admin_listen.as_deref(),
        Some("127.0.0.1:8081")
    );
    for bad in ["nowhere", "127.0.0.1:8080"] {
        let text = format!("service_id = \"B\"\n[http]\nadmin_listen = \"{bad}\"\n");
        let e = parse(&text).expect_err("refused");
        assert!(e.iter().any(|p| p.contains("`http.admin_listen`")), "{e:?}");
    }
}

#[test]
fn every_unknown_key_is_listed() {
    let e = parse("service_id = \"B\"\ncolour = 1\n[otp]\nperiodd = 60\n[radius]\nlisten=[\"127.0.0.1:1\"]\nfoo = true\n")
        .expect_err("refused");
    assert!(e.iter().any(|p| p.contains("`colour`")), "{e:?}");
    assert!(e.iter().any(|p| p.contains("`otp.periodd`")), "{e:?}");
    assert!(e.iter().any(|p| p.contains("`radius.foo`")), "{e:?}");
}

#[test]
fn every_problem_is_listed() {
    let e = parse(
        "[token]\nvalidity_days = 1000\n[otp]\ndigits = 4\n[http]\npublic_url = \"ftp://x\"\n[[radius.clients]]\nname = \"gw\"\naddress = \"not-an-ip\"\n",
    )
    .expect_err("refused");
    for needle in [
        "service_id",
        "validity_days",
        "otp.digits",
        "public_url",
        "not-an-ip",
        "secret",
    ] {
        assert!(
            e.iter().any(|p| p.contains(needle)),
            "missing {needle}: {e:?}"
        );
    }
}

#[test]
fn relative_paths_follow_the_file() {
    let l = parse("service_id=\"B\"\ndata_dir=\"data\"\nkey_file=\"/abs/key\"\n[admin]\nsocket=\"run/a.sock\"\n").expect("valid");
    assert_eq!(l.config.core.data_dir, PathBuf::from("/etc/otpd/data"));
    assert_eq!(l.config.core.key_file, PathBuf::from("/abs/key"));
    assert_eq!(l.config.admin.socket, PathBuf::from("/etc/otpd/run/a.sock"));
}

#[test]
fn clients_and_warnings() {
    let l = parse(
        "service_id=\"B\"\n[password]\nargon2_memory_kib = 64\nargon2_iterations = 1\n[[radius.clients]]\nname=\"gw\"\naddress=\"10.0.0.0/8\"\nsecret=\"short\"\n",
    )
    .expect("valid");
    assert!(
        l.warnings.iter().any(|w| w.contains("shorter than 16")),
        "{:?}",
        l.warnings
    );
    assert!(
        l.warnings.iter().any(|w| w.contains("OWASP")),
        "{:?}",
        l.warnings
    );
    let c = &l.config.radius.clients[0];
    assert!(c
        .network()
        .expect("cidr")
        .contains(&"10.1.2.3".parse::<IpAddr>().expect("ip")));
    let both = parse("service_id=\"B\"\n[[radius.clients]]\nname=\"gw\"\naddress=\"1.2.3.4\"\nsecret=\"x\"\nsecret_file=\"f\"\n");
    assert!(both
        .expect_err("refused")
        .iter()
        .any(|p| p.contains("not both")));
}

#[test]
fn duplicate_clients_are_named_once_each() {
    let e = parse(
        "service_id=\"B\"\n[[radius.clients]]\nname=\"a\"\naddress=\"10.0.0.0/8\"\nsecret=\"a-long-shared-secret-0123\"\n[[radius.clients]]\nname=\"a\"\naddress=\"10.2.3.4/8\"\nsecret=\"a-long-shared-secret-0123\"\n",
    )
    .expect_err("refused");
    assert_eq!(
        e,
        [
            "radius client name \"a\" appears twice",
            "radius clients \"a\" and \"a\" have the same address 10.0.0.0/8: a request could not tell which shared secret is meant",
        ],
        "{e:?}"
    );
}

#[test]
fn the_log_level_is_one_of_four() {
    for (text, level) in [
        ("error", Level::Error),
        ("warn", Level::Warn),
        ("info", Level::Info),
        ("debug", Level::Debug),
    ] {
        let l = parse(&format!("service_id=\"B\"\n[log]\nlevel = \"{text}\"\n")).expect("valid");
        assert_eq!(l.config.log.level, level);
    }
    let e = parse("service_id=\"B\"\n[log]\nlevel = \"verbose\"\n").expect_err("refused");
    assert!(
        e.iter()
            .any(|p| p.contains("`log.level` \"verbose\": one of error, warn, info, debug")),
        "{e:?}"
    );
}

#[test]
fn the_log_format_and_syslog_server_are_checked() {
    use crate::log::{Format, SyslogTarget};
    let l = parse(
        "service_id=\"B\"\n[log]\nformat = \"journal\"\nsyslog_server = \"tcp://siem.example:601\"\n",
    )
    .expect("valid");
    let s = l.config.log.settings();
    assert_eq!(s.format, Format::Journal);
    assert_eq!(s.syslog, Some(SyslogTarget::Tcp("siem.example:601".into())));
    assert_eq!(
        parse("service_id=\"B\"\n")
            .expect("valid")
            .config
            .log
            .settings()
            .syslog,
        Some(SyslogTarget::Local("/dev/log".into()))
    );
    let e = parse("service_id=\"B\"\n[log]\nformat = \"xml\"\n").expect_err("refused");
    assert!(e.iter().any(|p| p.contains("xml")), "{e:?}");
    for (server, why) in [
        ("siem.example:514", "udp://HOST:PORT or tcp://HOST:PORT"),
        ("udp://siem.example", "the address needs a port"),
        ("tls://siem.example:6514", "udp:// or tcp://"),
    ] {
        let e = parse(&format!(
            "service_id=\"B\"\n[log]\nsyslog_server = \"{server}\"\n"
        ))
        .expect_err(server);
        assert!(
            e.iter()
                .any(|p| p.contains("`log.syslog_server`") && p.contains(why)),
            "{server}: {e:?}"
        );
    }
}

/// The client rules run once, at load: the short-secret warning is said once, and the
/// RADIUS client table built from the loaded clients at start adds nothing to the log.
#[tokio::test]
async fn a_short_secret_is_warned_about_once_at_start() {
    use std::sync::{Arc, Mutex};

    use crate::radius::{
        AccessHandler, AccessRequest, Decision, RadiusEvent, RadiusLog, RadiusServer,
    };

    struct Refuse;
    impl AccessHandler for Refuse {
        async fn decide(&self, _req: AccessRequest) -> Decision {
            Decision::Reject {
                reply_message: None,
                reason: "test",
            }
        }
    }

    let l = parse(
        "service_id=\"B\"\n[radius]\nlisten = [\"127.0.0.1:0\"]\n[[radius.clients]]\nname=\"short\"\naddress=\"10.1.0.0/16\"\nsecret=\"tiny\"\n",
    )
    .expect("valid");
    let short = |w: &&String| w.contains("shorter than 16 bytes");
    assert_eq!(
        l.warnings.iter().filter(short).count(),
        1,
        "{:?}",
        l.warnings
    );
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    let log: Arc<dyn RadiusLog> = Arc::new(move |e: &RadiusEvent| {
        seen.lock().expect("lines").push(e.to_string());
    });
    let cfg = crate::app::radius_config(&l.config).expect("radius settings");
    let server = RadiusServer::bind(cfg, Arc::new(Refuse), log)
        .await
        .expect("the client table accepts a short secret");
    drop(server);
    let lines = lines.lock().expect("lines");
    assert!(
        !lines.iter().any(|l| l.contains("shorter than")),
        "{lines:?}"
    );
}

#[test]
fn shipped_example_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let mut seen = 0;
    for entry in std::fs::read_dir(&root)
        .expect("packaging/ exists")
        .flatten()
    {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "toml") {
            // Production examples point at files that exist only on a real host; parse
            // them for shape (unknown keys, types) without looking at the files.
            let text = std::fs::read_to_string(&p).expect("readable");
            let parsed = from_toml::<File>(&text);
            assert!(parsed.is_ok(), "{}: {:?}", p.display(), parsed.err());
            let unknown = parsed.map(|(_, u)| u).unwrap_or_default();
            assert!(
                unknown.is_empty(),
                "{}: unknown keys {unknown:?}",
                p.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example config found under packaging/");
}

#[test]
fn the_store_is_sled_unless_postgres_is_named() {
    let l = parse("service_id = \"B\"\n").expect("valid");
    assert_eq!(l.config.store.engine, StoreEngine::Sled);
    assert!(l.config.postgres.is_none());

    let l =
        parse("service_id = \"B\"\n[store.postgres]\nurl = \"postgresql://otpd@127.0.0.1/otpd\"\n")
            .expect("valid");
    assert!(l.config.postgres.is_none(), "sled stays the engine");
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("[store.postgres] is not used")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn the_postgres_section_takes_its_defaults_and_its_password_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pg.password");
    std::fs::write(&pw, "s3cret-from-file\nignored\n").expect("write");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = "service_id = \"B\"\n[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"postgresql://otpd@db1,db2/otpd?target_session_attrs=read-write\"\npassword_file = \"pg.password\"\nsslmode = \"require\"\n";
    let l = Config::parse(text, dir.path()).expect("valid");
    let pg = l.config.postgres.expect("postgres settings");
    assert_eq!(
        pg.password.as_deref().map(String::as_str),
        Some("s3cret-from-file")
    );
    assert_eq!(pg.sslmode, otpd_store_postgres::SslMode::Require);
    assert_eq!(pg.pool_size, 8);
    assert_eq!(pg.statement_timeout, std::time::Duration::from_millis(2000));
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("across the network") && w.contains("verify-full")),
        "{:?}",
        l.warnings
    );
    assert!(
        !format!("{pg:?}").contains("s3cret"),
        "the settings' Debug hides the password"
    );

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = Config::parse(text, dir.path()).expect_err("a readable password file is refused");
    assert!(
        e.iter()
            .any(|p| p.contains("`store.postgres.password_file`") && p.contains("chmod 600")),
        "{e:?}"
    );
}

#[test]
fn every_postgres_mistake_is_listed() {
    let e = parse("service_id = \"B\"\n[store]\nengine = \"postgres\"\n").expect_err("refused");
    assert!(
        e.iter()
            .any(|p| p.contains("needs a [store.postgres] section")),
        "{e:?}"
    );
    let e = parse(
        "service_id = \"B\"\n[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"postgresql://db/otpd?sslmode=require\"\nsslmode = \"verify-full\"\npool_size = 0\nstatement_timeout_ms = 0\nhost = \"x\"\n",
    )
    .expect_err("refused");
    for needle in [
        "give sslmode as `store.postgres.sslmode`",
        "needs `store.postgres.ca_file`",
        "`store.postgres.pool_size`",
        "`store.postgres.statement_timeout_ms`",
        "unknown key `store.postgres.host`",
    ] {
        assert!(
            e.iter().any(|p| p.contains(needle)),
            "missing {needle}: {e:?}"
        );
    }
    let e = parse("service_id = \"B\"\n[store]\nengine = \"mysql\"\n").expect_err("refused");
    assert!(e.iter().any(|p| p.contains("mysql")), "{e:?}");
    let e = parse(
        "service_id = \"B\"\n[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"postgresql://db/otpd\"\nsslmode = \"verify-everything\"\n",
    )
    .expect_err("refused");
    assert!(e.iter().any(|p| p.contains("verify-everything")), "{e:?}");
}

#[test]
fn a_password_in_the_url_is_warned_about() {
    let l = parse(
        "service_id = \"B\"\n[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"postgresql://otpd:pw@127.0.0.1/otpd\"\nsslmode = \"disable\"\n",
    )
    .expect("valid");
    assert!(
        l.warnings.iter().any(|w| w.contains("holds a password")),
        "{:?}",
        l.warnings
    );
    assert!(
        !l.warnings.iter().any(|w| w.contains("across the network")),
        "loopback needs no TLS warning: {:?}",
        l.warnings
    );
}
