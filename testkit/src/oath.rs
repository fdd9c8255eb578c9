//! One-time passwords as the customer's token app computes them, by Debian's `oathtool`:
//! an implementation apart from otpd's, so each checks the other.

use std::process::Command;

use crate::paths::tool;

/// The code (TOTP, 60 s steps, 6 digits) for a base32 secret at unix time `at`, or now.
/// A daemon whose clock runs `offset` seconds ahead sees `oathtool(s, Some(now() + offset))`.
pub fn oathtool(secret_b32: &str, at: Option<i64>) -> String {
    let mut cmd = Command::new(tool("oathtool"));
    cmd.args(["--totp", "-s", "60", "-d", "6", "-b", secret_b32]);
    if let Some(t) = at {
        cmd.arg("-N").arg(format!("@{t}"));
    }
    let out = cmd.output().expect("run oathtool");
    assert!(
        out.status.success(),
        "oathtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The code of the time step after the current one: valid now (window 1) and not yet
/// spent, for a second proof within the same minute.
pub fn oathtool_next(secret_b32: &str) -> String {
    oathtool(secret_b32, Some(now() + 60))
}

/// Unix time now, in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix time of an RFC 3339 timestamp as otpd's replies carry them.
pub fn rfc3339(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .unix_timestamp()
}
