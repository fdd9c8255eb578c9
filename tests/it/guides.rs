//! The integration guides run as written (the operator's issue): the README's PAM service
//! through pamtester, the shipped radsecproxy example, the FreeRADIUS proxy example on
//! Debian's own FreeRADIUS configuration; and the README's PAM options are the module's.

use std::collections::BTreeSet;
use std::path::Path;

use otpd_testkit::daemon::{Otpd, RADIUS_SECRET};
use otpd_testkit::oath::oathtool;
use otpd_testkit::pam::{PamStack, PASSWORD_PROMPT, SUCCESS};
use otpd_testkit::token::activate;

/// otpd's challenge text (daemon/src/access.rs).
const ASK_OTP: &str = "ワンタイムパスワードを入力してください / Enter your one-time password: ";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The README's section `## {title}`, up to the next `## `.
fn readme_section(title: &str) -> String {
    let readme = repo_file("README.md");
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README.md has no section {title}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// The option names `Options::parse` matches on: `("name", Some(v))` / `("name", None)`.
fn module_options() -> BTreeSet<String> {
    let source = repo_file("pam-module/src/options.rs");
    let mut names = BTreeSet::new();
    for arm in source.split("(\"").skip(1) {
        let Some((name, rest)) = arm.split_once('"') else {
            continue;
        };
        let rest = rest.trim_start_matches([',', ' ']);
        if (rest.starts_with("Some(") || rest.starts_with("None)"))
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            names.insert(name.to_string());
        }
    }
    names
}

#[test]
fn the_readme_lists_every_pam_option_and_no_other() {
    let options = module_options();
    // What the module takes today: the parse above found them all.
    for known in [
        "server",
        "secret_file",
        "retries",
        "use_first_pass",
        "debug",
    ] {
        assert!(options.contains(known), "{known} in {options:?}");
    }
    let section = readme_section("PAM");
    // The option table's first column: `name=VALUE` or `name`.
    let listed: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split(['`', '=']).next())
        .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed, options,
        "README.md's PAM table and pam-module/src/options.rs differ"
    );
    // The shipped example's comment names them all too.
    let example = repo_file("packaging/pam.d/otpd-example");
    for name in &options {
        assert!(example.contains(name.as_str()), "{name} in otpd-example");
    }
    // The installed path the README gives is the one the package installs.
    let cargo = repo_file("pam-module/Cargo.toml");
    let installed = cargo
        .lines()
        .find(|l| l.contains("target/release/libpam_otpd.so"))
        .and_then(|l| l.split('"').nth(3))
        .expect("the module's asset line");
    assert!(section.contains(&format!("`/{installed}`")), "{installed}");
    assert!(section.contains("target/release/libpam_otpd.so"));
    assert!(section.contains(PASSWORD_PROMPT) && section.contains(ASK_OTP));
}

#[test]
fn the_readme_pam_service_logs_in_with_the_bilingual_prompts() {
    let d = Otpd::start("");
    let secret = activate(&d, "taro", "login-pw");
    let section = readme_section("PAM");
    let start = section.find("<!-- pam-example -->").expect("start marker");
    let end = section.find("<!-- /pam-example -->").expect("end marker");
    let pam = PamStack::with_secret(RADIUS_SECRET);
    // The lines as written, with this test's module copy, otpd and secret file.
    let lines: Vec<String> = section[start..end]
        .lines()
        .filter(|l| !l.starts_with("```") && !l.starts_with("<!--"))
        .map(|l| {
            l.replace(" pam_otpd.so ", &format!(" {} ", pam.module().display()))
                .replace("127.0.0.1:1812", &d.radius().to_string())
                .replace(
                    "/etc/otpd/pam.secret",
                    &pam.secret_file().display().to_string(),
                )
        })
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(&d.radius().to_string()), "{lines:?}");
    pam.service("otpd-login", &lines);
    let code = oathtool(&secret, None);
    let run = pam.authenticate(
        "otpd-login",
        "taro",
        &[],
        &[(PASSWORD_PROMPT, "login-pw"), (ASK_OTP, &code)],
    );
    run.assert_result(SUCCESS, true);
    assert!(run.said("ログインパスワード / Password: "), "{}", run.text);
    assert!(run.said(ASK_OTP), "{}", run.text);
}
