//! The module's arguments from the PAM service file, and the shared-secret file they name.

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

pub const DEFAULT_TIMEOUT_SECS: u64 = 3;
pub const DEFAULT_RETRIES: u32 = 2;
const MAX_TIMEOUT_SECS: u64 = 60;
const MAX_RETRIES: u32 = 10;
const MAX_SECRET_FILE_LEN: u64 = 64 * 1024;

/// Where the password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassMode {
    /// Always ask.
    Prompt,
    /// Only PAM_AUTHTOK from an earlier module; none there is a failure.
    UseFirst,
    /// PAM_AUTHTOK if an earlier module set it, else ask.
    TryFirst,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `HOST:PORT`, tried in this order.
    pub servers: Vec<String>,
    pub secret_file: PathBuf,
    pub timeout: Duration,
    pub retries: u32,
    pub pass_mode: PassMode,
    pub nas_identifier: Option<String>,
    pub debug: bool,
}

/// A refused argument list. `Display` is the syslog line; it names the option but never
/// echoes the value of an option it does not know (a mistyped `secret=` must not be logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    NotUtf8,
    Unknown(String),
    Malformed { option: String, why: &'static str },
    Repeated(&'static str),
    Missing(&'static str),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("an option is not valid UTF-8"),
            Self::Unknown(name) => write!(f, "unknown option \"{name}\""),
            Self::Malformed { option, why } => write!(f, "bad option \"{option}\": {why}"),
            Self::Repeated(name) => write!(f, "option \"{name}\" given more than once"),
            Self::Missing(name) => write!(f, "required option \"{name}\" is missing"),
        }
    }
}

impl Options {
    pub fn parse(args: &[&CStr]) -> Result<Self, OptionError> {
        let mut servers = Vec::new();
        let mut secret_file = None;
        let mut timeout = None;
        let mut retries = None;
        let mut use_first_pass = false;
        let mut try_first_pass = false;
        let mut nas_identifier = None;
        let mut debug = false;

        for arg in args {
            let arg = arg.to_str().map_err(|_| OptionError::NotUtf8)?;
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg, None),
            };
            let malformed = |why| OptionError::Malformed {
                option: arg.to_string(),
                why,
            };
            match (name, value) {
                ("server", Some(v)) => servers.push(parse_server(v).map_err(malformed)?),
                ("secret_file", Some(v)) => {
                    if v.is_empty() || !v.starts_with('/') {
                        return Err(malformed("expected an absolute path"));
                    }
                    set_once(&mut secret_file, "secret_file", PathBuf::from(v))?;
                }
                ("timeout", Some(v)) => {
                    let secs = parse_in_range(v, 1, MAX_TIMEOUT_SECS)
                        .ok_or_else(|| malformed("expected whole seconds from 1 to 60"))?;
                    set_once(&mut timeout, "timeout", Duration::from_secs(secs))?;
                }
                ("retries", Some(v)) => {
                    let n = parse_in_range(v, 0, u64::from(MAX_RETRIES))
                        .ok_or_else(|| malformed("expected a count from 0 to 10"))?;
                    // Bounded by MAX_RETRIES just above.
                    set_once(&mut retries, "retries", n as u32)?;
                }
                ("nas_identifier", Some(v)) => {
                    if v.is_empty() || v.len() > 253 {
                        return Err(malformed("expected 1 to 253 bytes"));
                    }
                    set_once(&mut nas_identifier, "nas_identifier", v.to_string())?;
                }
                ("use_first_pass", None) => use_first_pass = true,
                ("try_first_pass", None) => try_first_pass = true,
                ("debug", None) => debug = true,
                ("use_first_pass" | "try_first_pass" | "debug", Some(_)) => {
                    return Err(malformed("takes no value"));
                }
                ("server" | "secret_file" | "timeout" | "retries" | "nas_identifier", None) => {
                    return Err(malformed("needs a value (name=value)"));
                }
                (other, _) => return Err(OptionError::Unknown(other.to_string())),
            }
        }

        if servers.is_empty() {
            return Err(OptionError::Missing("server"));
        }
        let secret_file = secret_file.ok_or(OptionError::Missing("secret_file"))?;
        // use_first_pass is the stricter of the two, so it wins when both are given.
        let pass_mode = if use_first_pass {
            PassMode::UseFirst
        } else if try_first_pass {
            PassMode::TryFirst
        } else {
            PassMode::Prompt
        };
        Ok(Self {
            servers,
            secret_file,
            timeout: timeout.unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
            retries: retries.unwrap_or(DEFAULT_RETRIES),
            pass_mode,
            nas_identifier,
            debug,
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), OptionError> {
    if slot.is_some() {
        return Err(OptionError::Repeated(name));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_in_range(v: &str, min: u64, max: u64) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

/// `HOST:PORT` or `[IPv6]:PORT`; the host is resolved when a request is sent.
fn parse_server(v: &str) -> Result<String, &'static str> {
    let (host, port) = v
        .rsplit_once(':')
        .ok_or("expected HOST:PORT, e.g. server=127.0.0.1:1812")?;
    let bare_host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare_host.is_empty() || bare_host.contains(['[', ']', '/', ' ']) {
        return Err("expected HOST:PORT, e.g. server=127.0.0.1:1812");
    }
    if bare_host.contains(':') && bare_host == host {
        return Err("write an IPv6 address in brackets: [::1]:1812");
    }
    match parse_in_range(port, 1, u64::from(u16::MAX)) {
        Some(_) => Ok(v.to_string()),
        None => Err("port must be a number from 1 to 65535"),
    }
}

/// Why the shared secret could not be had.
#[derive(Debug)]
pub enum SecretError {
    Open(std::io::Error),
    NotAFile,
    Exposed(u32),
    TooLarge,
    Empty,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(e) => write!(f, "cannot read it: {e}"),
            Self::NotAFile => f.write_str("it is not a regular file"),
            Self::Exposed(mode) => write!(
                f,
                "its mode is {mode:04o}; group and others must have no access (chmod 600)"
            ),
            Self::TooLarge => f.write_str("it is larger than 64 KiB"),
            Self::Empty => f.write_str("its first line is empty"),
        }
    }
}

/// Reads the first line of the secret file, refusing a file that group or others may access.
/// The mode is checked on the opened file, so a swap between check and read cannot fool it.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let mut file = File::open(path).map_err(SecretError::Open)?;
    let meta = file.metadata().map_err(SecretError::Open)?;
    if !meta.is_file() {
        return Err(SecretError::NotAFile);
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Exposed(mode));
    }
    if meta.len() > MAX_SECRET_FILE_LEN {
        return Err(SecretError::TooLarge);
    }
    let mut contents = Zeroizing::new(Vec::new());
    file.read_to_end(&mut contents).map_err(SecretError::Open)?;
    let line_end = contents
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(contents.len());
    let mut line = &contents[..line_end];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    if line.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(Zeroizing::new(line.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::io::Write;

    fn parse(args: &[&str]) -> Result<Options, OptionError> {
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(*a).expect("no NUL"))
            .collect();
        let borrowed: Vec<&CStr> = owned.iter().map(CString::as_c_str).collect();
        Options::parse(&borrowed)
    }

    const BASE: [&str; 2] = ["server=127.0.0.1:1812", "secret_file=/etc/otpd/pam.secret"];

    #[test]
    fn minimal_arguments_take_the_defaults() {
        let opts = parse(&BASE).expect("valid");
        assert_eq!(opts.servers, ["127.0.0.1:1812"]);
        assert_eq!(opts.secret_file, PathBuf::from("/etc/otpd/pam.secret"));
        assert_eq!(opts.timeout, Duration::from_secs(3));
        assert_eq!(opts.retries, 2);
        assert_eq!(opts.pass_mode, PassMode::Prompt);
        assert_eq!(opts.nas_identifier, None);
        assert!(!opts.debug);
    }

    #[test]
    fn every_option_is_understood() {
        let opts = parse(&[
            "server=127.0.0.1:1812",
            "server=otp2.example.invalid:11812",
            "server=[::1]:1812",
            "secret_file=/etc/otpd/pam.secret",
            "timeout=7",
            "retries=0",
            "try_first_pass",
            "nas_identifier=ib-gateway",
            "debug",
        ])
        .expect("valid");
        assert_eq!(
            opts.servers,
            ["127.0.0.1:1812", "otp2.example.invalid:11812", "[::1]:1812"]
        );
        assert_eq!(opts.timeout, Duration::from_secs(7));
        assert_eq!(opts.retries, 0);
        assert_eq!(opts.pass_mode, PassMode::TryFirst);
        assert_eq!(opts.nas_identifier.as_deref(), Some("ib-gateway"));
        assert!(opts.debug);

        let mut both = BASE.to_vec();
        both.extend(["try_first_pass", "use_first_pass"]);
        assert_eq!(parse(&both).expect("valid").pass_mode, PassMode::UseFirst);
    }

    #[test]
    fn unknown_option_is_named_without_its_value() {
        let mut args = BASE.to_vec();
        args.push("secret=hunter2");
        let err = parse(&args).expect_err("unknown");
        assert_eq!(err, OptionError::Unknown("secret".into()));
        let line = err.to_string();
        assert!(line.contains("\"secret\""), "{line}");
        assert!(!line.contains("hunter2"), "{line}");

        let mut args = BASE.to_vec();
        args.push("use_frist_pass");
        assert_eq!(
            parse(&args).expect_err("unknown").to_string(),
            "unknown option \"use_frist_pass\""
        );
    }

    #[test]
    fn malformed_values_are_refused_and_named() {
        let bad = [
            "timeout=0",
            "timeout=61",
            "timeout=abc",
            "timeout=-1",
            "timeout=",
            "timeout=+3",
            "retries=11",
            "retries=x",
            "server=127.0.0.1",
            "server=127.0.0.1:0",
            "server=127.0.0.1:65536",
            "server=:1812",
            "server=::1:1812",
            "server=",
            "secret_file=relative/path",
            "secret_file=",
            "nas_identifier=",
            "debug=1",
            "use_first_pass=yes",
            "timeout",
            "server",
        ];
        for arg in bad {
            let mut args = BASE.to_vec();
            args.push(arg);
            let err = parse(&args).expect_err(arg);
            assert!(
                matches!(err, OptionError::Malformed { ref option, .. } if option == arg),
                "{arg}: {err:?}"
            );
            assert!(err.to_string().contains(arg), "{err}");
        }
        let long_nas = format!("nas_identifier={}", "n".repeat(254));
        let mut args = BASE.to_vec();
        args.push(&long_nas);
        assert!(matches!(parse(&args), Err(OptionError::Malformed { .. })));
    }

    #[test]
    fn repeated_and_missing_options_are_refused() {
        let mut args = BASE.to_vec();
        args.extend(["timeout=1", "timeout=2"]);
        assert_eq!(parse(&args), Err(OptionError::Repeated("timeout")));
        let mut args = BASE.to_vec();
        args.push("secret_file=/other");
        assert_eq!(parse(&args), Err(OptionError::Repeated("secret_file")));
        assert_eq!(parse(&[BASE[1]]), Err(OptionError::Missing("server")));
        assert_eq!(parse(&[BASE[0]]), Err(OptionError::Missing("secret_file")));
        assert_eq!(parse(&[]), Err(OptionError::Missing("server")));
    }

    #[test]
    fn non_utf8_option_is_refused() {
        let raw = CString::new(vec![b's', 0xff]).expect("no NUL");
        let args = [raw.as_c_str()];
        assert_eq!(Options::parse(&args), Err(OptionError::NotUtf8));
    }

    fn secret_file(contents: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(contents).expect("write");
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
        file
    }

    #[test]
    fn secret_is_the_first_line_of_a_private_file() {
        let file = secret_file(b"s3cret value\r\nsecond line\n", 0o600);
        assert_eq!(
            read_secret(file.path()).expect("ok")[..],
            b"s3cret value"[..]
        );
        let file = secret_file(b"no newline", 0o400);
        assert_eq!(read_secret(file.path()).expect("ok")[..], b"no newline"[..]);
    }

    #[test]
    fn secret_file_open_to_group_or_others_is_refused() {
        for mode in [0o640, 0o604, 0o660, 0o602, 0o610, 0o644] {
            let file = secret_file(b"s3cret\n", mode);
            let err = read_secret(file.path()).expect_err("exposed");
            assert!(
                matches!(err, SecretError::Exposed(m) if m == mode),
                "{mode:o}"
            );
            assert!(err.to_string().contains(&format!("{mode:04o}")), "{err}");
        }
    }

    #[test]
    fn unusable_secret_files_are_refused() {
        let file = secret_file(b"\nsecret on line two\n", 0o600);
        assert!(matches!(read_secret(file.path()), Err(SecretError::Empty)));
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(matches!(
            read_secret(&dir.path().join("absent")),
            Err(SecretError::Open(_))
        ));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        assert!(matches!(
            read_secret(dir.path()),
            Err(SecretError::NotAFile)
        ));
    }
}
