//! The part of otpd's configuration the core's decisions need: the service ID, where the
//! data and the sealing key live, and the policies (`[otp]`, `[password]`, `[token]`). The
//! daemon's file holds more (sockets, mail, log): `otpd::config` parses the whole file and
//! builds this part from it. Checking is pure: nothing here reads a file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::lifecycle::{TokenPolicy, MIN_VALIDITY_DAYS};
use crate::lockout::LockPolicy;
use crate::otp::{Algorithm, OtpParams};
use crate::password::{HashCaps, HashParams};

/// What the core is configured with: the service ID, the data and key locations, and the
/// OTP, password and token policies, each rule about them checked by [`Config::check`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub service_id: String,
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub otp: OtpSection,
    pub password: PasswordSection,
    pub token: TokenSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_id: String::new(),
            data_dir: "/var/lib/otpd".into(),
            key_file: "/etc/otpd/master.key".into(),
            otp: OtpSection::default(),
            password: PasswordSection::default(),
            token: TokenSection::default(),
        }
    }
}

/// `[otp]`: the one-time password's shape and the lockout after failed logins.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OtpSection {
    pub period: u64,
    pub digits: usize,
    pub algorithm: Algorithm,
    pub window: u64,
    pub max_failures: u32,
    pub lockout_seconds: u64,
    pub required: bool,
}

impl Default for OtpSection {
    fn default() -> Self {
        OtpSection {
            period: 60,
            digits: 6,
            algorithm: Algorithm::SHA1,
            window: 1,
            max_failures: 5,
            lockout_seconds: 1800,
            required: false,
        }
    }
}

/// `[password]`: the argon2id cost of login and activation password hashes, and the most a
/// stored hash may cost (`max_…`, see [`HashCaps`]: lower than the built-in ceiling only).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PasswordSection {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub max_bcrypt_cost: u32,
    pub max_sha_crypt_rounds: u64,
    pub max_argon2_memory_kib: u32,
    pub max_argon2_iterations: u32,
    pub max_argon2_parallelism: u32,
}

impl Default for PasswordSection {
    fn default() -> Self {
        let d = HashParams::default();
        let c = HashCaps::CEILING;
        PasswordSection {
            argon2_memory_kib: d.memory_kib,
            argon2_iterations: d.iterations,
            argon2_parallelism: d.parallelism,
            max_bcrypt_cost: c.bcrypt_cost,
            max_sha_crypt_rounds: c.sha_crypt_rounds,
            max_argon2_memory_kib: c.argon2_memory_kib,
            max_argon2_iterations: c.argon2_iterations,
            max_argon2_parallelism: c.argon2_parallelism,
        }
    }
}

/// `[token]`: how long a token lives, when renewal opens, and the setup link's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TokenSection {
    pub validity_days: u32,
    pub renewal_window_days: u32,
    pub link_valid_hours: u32,
    pub setup_max_attempts: u32,
    /// How long a pending setup (issued or provisioned) is safe from a menu session that
    /// proved no OTP: such a session can neither issue again nor cancel within it.
    pub menu_reissue_cooldown_hours: u32,
}

impl Default for TokenSection {
    fn default() -> Self {
        let d = TokenPolicy::default();
        TokenSection {
            validity_days: d.validity_days,
            renewal_window_days: d.renewal_window_days,
            link_valid_hours: d.link_valid_hours,
            setup_max_attempts: d.setup_max_attempts,
            menu_reissue_cooldown_hours: d.menu_reissue_cooldown_hours,
        }
    }
}

/// A configuration that passed every check, and the warnings worth showing at start.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Deserializes TOML text into `T`, naming every key `T` does not take (`unknown key
/// \`metrics.port\``). Errors: the unknown keys met before the text failed to parse, then why.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<String>), Vec<String>> {
    let mut unknown = Vec::new();
    let de = toml::Deserializer::new(text);
    let parsed: Result<T, _> = serde_ignored::deserialize(de, |path| {
        // An optional table shows as `?` in the path: say `metrics.port`, not `metrics.?.port`.
        let path = path.to_string().replace(".?", "");
        unknown.push(format!("unknown key `{path}`"))
    });
    match parsed {
        Ok(t) => Ok((t, unknown)),
        Err(e) => {
            unknown.push(e.to_string().trim_end().to_string());
            Err(unknown)
        }
    }
}

/// Makes a relative path relative to `base` (the configuration file's folder).
pub fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

impl Config {
    /// Parses TOML text holding only the core's keys, whose relative paths are relative to
    /// `base` (the daemon parses its whole file with `otpd::config`). Errors: every problem.
    pub fn parse(text: &str, base: &Path) -> Result<Loaded, Vec<String>> {
        let (mut config, mut problems) = from_toml::<Config>(text)?;
        config.resolve_paths(base);
        let mut warnings = Vec::new();
        config.check(&mut problems, &mut warnings);
        if problems.is_empty() {
            Ok(Loaded { config, warnings })
        } else {
            Err(problems)
        }
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        resolve(base, &mut self.data_dir);
        resolve(base, &mut self.key_file);
    }

    /// Pushes every problem and every warning about the core's keys; reads nothing.
    pub fn check(&self, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
        if self.service_id.trim().is_empty() {
            problems.push(
                "`service_id` is required (the service ID customers type at initial setup)".into(),
            );
        } else if self.service_id.contains(':') || self.service_id.len() > 64 {
            problems.push("`service_id` must be at most 64 characters and contain no ':' (it is the otpauth issuer)".into());
        }
        let o = &self.otp;
        if !(15..=300).contains(&o.period) {
            problems.push(format!(
                "`otp.period` = {}: must be between 15 and 300 seconds",
                o.period
            ));
        }
        if !(6..=8).contains(&o.digits) {
            problems.push(format!("`otp.digits` = {}: must be 6, 7 or 8", o.digits));
        }
        if o.window > 10 {
            problems.push(format!(
                "`otp.window` = {}: at most 10 steps either side",
                o.window
            ));
        }
        if o.max_failures == 0 || o.max_failures > 100 {
            problems.push(format!(
                "`otp.max_failures` = {}: must be 1..=100 (NIST SP 800-63B allows at most 100)",
                o.max_failures
            ));
        }
        let h = self.hash_params();
        if let Err(e) = argon2::Params::new(h.memory_kib, h.iterations, h.parallelism, None) {
            problems.push(format!("`password`: argon2 parameters refused: {e}"));
        } else if h.below_owasp_minimum() {
            warnings.push(format!(
                "argon2id at m={} KiB, t={} is below OWASP's minimum (m=19456, t=2); use it only for tests",
                h.memory_kib, h.iterations
            ));
        }
        self.check_hash_caps(problems);
        let t = &self.token;
        if t.validity_days < MIN_VALIDITY_DAYS {
            problems.push(format!("`token.validity_days` = {}: tokens must be valid at least {MIN_VALIDITY_DAYS} days (4 years)", t.validity_days));
        }
        if t.renewal_window_days >= t.validity_days {
            problems.push(
                "`token.renewal_window_days` must be shorter than `token.validity_days`".into(),
            );
        }
        if t.link_valid_hours == 0 {
            problems.push("`token.link_valid_hours` must be at least 1".into());
        }
        if t.setup_max_attempts == 0 {
            problems.push("`token.setup_max_attempts` must be at least 1".into());
        }
    }

    /// The `[password] max_…` caps: each between the smallest hash of its kind and the
    /// built-in ceiling, and otpd's own argon2id setting within them.
    fn check_hash_caps(&self, problems: &mut Vec<String>) {
        let (p, ceiling) = (&self.password, HashCaps::CEILING);
        let mut within = |key: &str, value: u64, least: u64, most: u64| {
            if !(least..=most).contains(&value) {
                problems.push(format!(
                    "`password.{key}` = {value}: must be {least}..={most} (the built-in ceiling; a cap can only be lowered)"
                ));
            }
        };
        within(
            "max_bcrypt_cost",
            p.max_bcrypt_cost.into(),
            4,
            ceiling.bcrypt_cost.into(),
        );
        within(
            "max_sha_crypt_rounds",
            p.max_sha_crypt_rounds,
            1000,
            ceiling.sha_crypt_rounds,
        );
        within(
            "max_argon2_memory_kib",
            p.max_argon2_memory_kib.into(),
            8,
            ceiling.argon2_memory_kib.into(),
        );
        within(
            "max_argon2_iterations",
            p.max_argon2_iterations.into(),
            1,
            ceiling.argon2_iterations.into(),
        );
        within(
            "max_argon2_parallelism",
            p.max_argon2_parallelism.into(),
            1,
            ceiling.argon2_parallelism.into(),
        );
        if let Some(why) = self.hash_caps().over(self.hash_params().cost()) {
            problems.push(format!(
                "`password.argon2_*`: otpd's own hashes would be refused at login: {why}"
            ));
        }
    }

    /// The most a stored password hash may cost (`[password] max_…`).
    pub fn hash_caps(&self) -> HashCaps {
        let p = &self.password;
        HashCaps {
            bcrypt_cost: p.max_bcrypt_cost,
            sha_crypt_rounds: p.max_sha_crypt_rounds,
            argon2_memory_kib: p.max_argon2_memory_kib,
            argon2_iterations: p.max_argon2_iterations,
            argon2_parallelism: p.max_argon2_parallelism,
        }
    }

    pub fn otp_params(&self) -> OtpParams {
        OtpParams {
            period: self.otp.period,
            digits: self.otp.digits,
            algorithm: self.otp.algorithm,
            window: self.otp.window,
        }
    }

    pub fn lock_policy(&self) -> LockPolicy {
        LockPolicy {
            max_failures: self.otp.max_failures,
            lockout_seconds: self.otp.lockout_seconds,
        }
    }

    pub fn hash_params(&self) -> HashParams {
        HashParams {
            memory_kib: self.password.argon2_memory_kib,
            iterations: self.password.argon2_iterations,
            parallelism: self.password.argon2_parallelism,
        }
    }

    pub fn token_policy(&self) -> TokenPolicy {
        TokenPolicy {
            validity_days: self.token.validity_days,
            renewal_window_days: self.token.renewal_window_days,
            link_valid_hours: self.token.link_valid_hours,
            setup_max_attempts: self.token.setup_max_attempts,
            menu_reissue_cooldown_hours: self.token.menu_reissue_cooldown_hours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, Vec<String>> {
        Config::parse(text, Path::new("/etc/otpd"))
    }

    #[test]
    fn validity_floor_is_1461_days() {
        assert!(parse("service_id=\"B\"\n[token]\nvalidity_days = 1460\n").is_err());
        assert!(parse("service_id=\"B\"\n[token]\nvalidity_days = 1461\n").is_ok());
    }

    #[test]
    fn hash_caps_can_be_lowered_never_raised() {
        let with = |kv: &str| parse(&format!("service_id=\"B\"\n[password]\n{kv}\n"));
        assert_eq!(
            with("max_bcrypt_cost = 12")
                .expect("valid")
                .config
                .hash_caps()
                .bcrypt_cost,
            12
        );
        assert_eq!(
            parse("service_id=\"B\"\n")
                .expect("valid")
                .config
                .hash_caps(),
            HashCaps::CEILING
        );
        for bad in [
            "max_bcrypt_cost = 15",
            "max_bcrypt_cost = 3",
            "max_sha_crypt_rounds = 999999999",
            "max_argon2_memory_kib = 262145",
            "max_argon2_iterations = 11",
            "max_argon2_parallelism = 5",
        ] {
            let e = with(bad).expect_err(bad);
            let key = bad.split(' ').next().unwrap_or_default();
            assert!(
                e.iter().any(|p| p.contains(key) && p.contains("ceiling")),
                "{bad}: {e:?}"
            );
        }
        let e = with("max_argon2_memory_kib = 8192").expect_err("own hashes over");
        assert!(e.iter().any(|p| p.contains("own hashes")), "{e:?}");
    }

    /// NIST SP 800-63B §5.2.2: at most 100 consecutive failed attempts on one account.
    #[test]
    fn max_failures_is_1_to_100() {
        let with = |n: u32| parse(&format!("service_id=\"B\"\n[otp]\nmax_failures = {n}\n"));
        for bad in [0, 101, 1000, u32::MAX] {
            let e = with(bad).expect_err("refused");
            assert!(
                e.iter()
                    .any(|p| p.contains("otp.max_failures") && p.contains("NIST")),
                "{bad}: {e:?}"
            );
        }
        for good in [1, 5, 100] {
            assert_eq!(with(good).expect("valid").config.otp.max_failures, good);
        }
    }
}
