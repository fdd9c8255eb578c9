//! The configuration parser (`Config::parse`): whatever the text, it returns a config or
//! a list of problems, never panics, and a config it accepts keeps the limits the
//! product promises (NIST SP 800-63B lockout bound, four-year validity, …).
//!
//! Inputs naming files outside the scratch folder (absolute paths, `..`) are skipped: the
//! parser reads `secret_file`, `key_file` and `template`, and the fuzzer must not make it
//! read /dev/zero.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use otpd::config::Config;

/// A folder with the files a config may name: a secret, an API key, a mail template.
fn base() -> &'static std::path::Path {
    static BASE: OnceLock<std::path::PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = otpd_fuzz::scratch_dir();
        for (name, text) in [
            ("secret", "a-long-shared-secret-0123456789\n"),
            ("api.key", "an-api-key-of-enough-length\n"),
            ("short.key", "short\n"),
            ("template.txt", "Subject: x\n\n{link}\n"),
        ] {
            std::fs::write(dir.join(name), text).expect("write a base file");
        }
        dir
    })
}

/// Every string value in the document stays inside the base folder.
fn confined(v: &toml::Value) -> bool {
    match v {
        toml::Value::String(s) => !s.starts_with('/') && !s.contains("..") && !s.contains('\0'),
        toml::Value::Array(a) => a.iter().all(confined),
        toml::Value::Table(t) => t.values().all(confined),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<toml::Table>() {
        Ok(t) if t.values().all(confined) => {}
        // Unparsable TOML never gets to read a file: fuzz the error path as it is.
        Err(_) => {}
        Ok(_) => return,
    }
    match Config::parse(text, base()) {
        Ok(loaded) => {
            let (c, radius) = (loaded.config.core, loaded.config.radius);
            assert!((1..=100).contains(&c.otp.max_failures), "max_failures");
            assert!(c.token.validity_days >= 1461, "validity_days");
            assert!(c.token.renewal_window_days < c.token.validity_days);
            assert!((6..=8).contains(&c.otp.digits), "digits");
            assert!((15..=300).contains(&c.otp.period), "period");
            assert!(c.otp.window <= 10, "window");
            assert!(!c.service_id.trim().is_empty() && !c.service_id.contains(':'));
            assert!(!radius.listen.is_empty());
            assert!(c.data_dir.is_absolute(), "relative paths are resolved");
        }
        Err(problems) => assert!(!problems.is_empty(), "an error names its problem"),
    }
});
