//! Login and activation passwords: argon2id hashes in PHC form, parameters from `[password]`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's minimum for argon2id (m=19 MiB, t=2, p=1).
    fn default() -> Self {
        HashParams {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// True when below OWASP's argon2id minimum; allowed, but worth a warning.
    pub fn below_owasp_minimum(&self) -> bool {
        self.memory_kib < 19456 || self.iterations < 2
    }

    fn argon2(&self) -> Result<Argon2<'static>, String> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| format!("argon2 parameters refused: {e}"))?;
        Ok(Argon2::new(
            argon2::Algorithm::Argon2id,
            Version::V0x13,
            params,
        ))
    }

    /// Hashes `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        self.argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| format!("hashing failed: {e}"))
    }
}

/// The kinds of stored hash otpd can verify. Only argon2id is ever written; the others
/// arrive with imported users and are replaced at their next successful login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Argon2id,
    /// sha512-crypt, `$6$`.
    Sha512Crypt,
    /// bcrypt, `$2a$` / `$2b$` / `$2y$`.
    Bcrypt,
}

impl HashKind {
    pub fn of(hash: &str) -> Option<HashKind> {
        if hash.starts_with("$argon2id$") {
            PasswordHash::new(hash).ok().map(|_| HashKind::Argon2id)
        } else if hash.starts_with("$6$") && hash.split('$').count() >= 4 {
            Some(HashKind::Sha512Crypt)
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60 {
            Some(HashKind::Bcrypt)
        } else {
            None
        }
    }
}

/// Checks `password` against a stored hash, with the parameters recorded in the hash.
pub fn verify(hash: &str, password: &str) -> bool {
    match HashKind::of(hash) {
        Some(HashKind::Argon2id) => match PasswordHash::new(hash) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        },
        Some(HashKind::Sha512Crypt) => sha_crypt::sha512_check(password, hash).is_ok(),
        Some(HashKind::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
        None => false,
    }
}

impl HashParams {
    /// True when `hash` should be replaced at the next successful login: a legacy kind, or
    /// argon2id with other parameters than the configured ones.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        match HashKind::of(hash) {
            Some(HashKind::Argon2id) => {
                let want = format!(
                    "m={},t={},p={}",
                    self.memory_kib, self.iterations, self.parallelism
                );
                !hash.contains(&want)
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn hash_then_verify() {
        let h = CHEAP.hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsf"));
        assert!(!verify("not a hash", "correct horse"));
    }

    #[test]
    fn legacy_hashes_verify() {
        // Made with glibc crypt("secret", "$6$saltsalt")
        let sha = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        assert_eq!(HashKind::of(sha), Some(HashKind::Sha512Crypt));
        assert!(verify(sha, "secret"));
        assert!(!verify(sha, "Secret"));
        let bc = bcrypt::hash_with_salt("secret", 4, [7u8; 16])
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoB);
        assert_eq!(HashKind::of(&bc), Some(HashKind::Bcrypt));
        assert!(verify(&bc, "secret"));
        assert!(!verify(&bc, "secreT"));
        assert_eq!(HashKind::of("plain"), None);
        assert_eq!(HashKind::of("$1$md5$x"), None, "md5-crypt is refused");
        assert!(CHEAP.needs_rehash(sha));
        let fresh = CHEAP.hash("x").expect("hash");
        assert!(!CHEAP.needs_rehash(&fresh));
        assert!(HashParams::default().needs_rehash(&fresh));
    }

    #[test]
    fn owasp_floor() {
        assert!(!HashParams::default().below_owasp_minimum());
        assert!(CHEAP.below_owasp_minimum());
    }
}
