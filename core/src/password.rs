//! Login and activation passwords: argon2id hashes in PHC form, parameters from `[password]`.

use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

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
    /// Whether one hash is short work (about a millisecond or less: at most 4 MiB of
    /// memory passes), cheap enough to run on the thread that received the request.
    pub fn quick(&self) -> bool {
        u64::from(self.memory_kib) * u64::from(self.iterations) <= QUICK_ARGON2
    }

    /// What one hash with these parameters costs.
    pub fn cost(&self) -> HashCost {
        HashCost::Argon2 {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        }
    }

    /// True when below OWASP's argon2id minimum; allowed, but worth a warning.
    pub fn below_owasp_minimum(&self) -> bool {
        self.memory_kib < 19456 || self.iterations < 2
    }

    /// Hashes `password` with a fresh random salt, in PHC form.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| format!("argon2 parameters refused: {e}"))?;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut raw_salt = [0u8; 64];
        let raw_salt = salt
            .decode_b64(&mut raw_salt)
            .map_err(|e| format!("hashing failed: {e}"))?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        argon2id(&params, password.as_bytes(), raw_salt, &mut out)?;
        let output =
            argon2::password_hash::Output::new(&out).map_err(|e| format!("hashing failed: {e}"))?;
        let phc = PasswordHash {
            algorithm: argon2::Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: argon2::password_hash::ParamsString::try_from(&params)
                .map_err(|e| format!("hashing failed: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }
}

/// argon2's working memory (`memory_kib` KiB a hash), kept between hashes instead of
/// allocated and freed each time. A fresh multi-MiB block per verification, freed on
/// whichever thread ran it, is what made the allocator keep hundreds of MiB: glibc raises
/// its mmap threshold to the size of the first such block freed, and from then on serves
/// them from per-thread arenas that it rarely gives back. With the pool, memory is one
/// block set per hash running at once (the daemon runs at most one per core), allocated
/// once and reused.
struct BlockPool {
    free: Mutex<Vec<Vec<Block>>>,
}

static POOL: BlockPool = BlockPool {
    free: Mutex::new(Vec::new()),
};

/// Block sets kept for reuse beyond this many are released (zeroed first).
/// Read once: `available_parallelism` reads the cgroup's CPU quota from /proc and /sys,
/// about twenty system calls, and this was asked after every verification.
fn pool_keep() -> usize {
    static KEEP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *KEEP.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2)
    })
}

impl BlockPool {
    fn take(&self, count: usize) -> Vec<Block> {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match reused {
            Some(blocks) if blocks.len() >= count => blocks,
            Some(mut small) => {
                small.zeroize();
                drop(small);
                vec![Block::default(); count]
            }
            None => vec![Block::default(); count],
        }
    }

    fn give(&self, mut blocks: Vec<Block>) {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if free.len() < pool_keep() {
            free.push(blocks);
        } else {
            drop(free);
            blocks.zeroize();
        }
    }

    /// Block sets currently held for reuse (tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// argon2id (v0x13) of `password` and `salt` into `out`, in pooled memory.
fn argon2id(params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), String> {
    argon2_with(
        argon2::Algorithm::Argon2id,
        Version::V0x13,
        params,
        password,
        salt,
        out,
    )
}

fn argon2_with(
    algorithm: argon2::Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    let mut blocks = POOL.take(params.block_count());
    let r = Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(password, salt, out, &mut blocks[..])
        .map_err(|e| format!("hashing failed: {e}"));
    POOL.give(blocks);
    r
}

/// Checks an argon2 PHC hash, recomputing it with the parameters it records (refused
/// without hashing when those are over `caps`).
fn verify_argon2(parsed: &PasswordHash<'_>, password: &str, caps: &HashCaps) -> bool {
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(parsed) else {
        return false;
    };
    let cost = HashCost::Argon2 {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
    };
    if caps.over(cost).is_some() {
        return false;
    }
    let mut raw_salt = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let mut out = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
    if argon2_with(
        algorithm,
        version,
        &params,
        password.as_bytes(),
        raw_salt,
        &mut out,
    )
    .is_err()
    {
        return false;
    }
    out.as_slice().ct_eq(expected.as_bytes()).into()
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

/// Checks `password` against a stored hash, with the parameters recorded in the hash. A hash
/// over the built-in ceiling ([`HashCaps::CEILING`]) is refused without being run.
pub fn verify(hash: &str, password: &str) -> bool {
    verify_within(&HashCaps::CEILING, hash, password)
}

/// [`verify`] under `caps`: a hash that costs more than they allow is refused, never run.
pub fn verify_within(caps: &HashCaps, hash: &str, password: &str) -> bool {
    // The PHC string is parsed once: the parse is what tells an argon2id hash.
    if hash.starts_with("$argon2id$") {
        return PasswordHash::new(hash).is_ok_and(|parsed| verify_argon2(&parsed, password, caps));
    }
    let Some(cost) = HashCost::of(hash) else {
        return false;
    };
    if caps.over(cost).is_some() {
        return false;
    }
    match cost {
        HashCost::Argon2 { .. } => false,
        HashCost::Sha512Crypt { .. } => sha_crypt::sha512_check(password, hash).is_ok(),
        HashCost::Bcrypt { .. } => bcrypt::verify(password, hash).unwrap_or(false),
    }
}

/// What verifying one stored hash costs, as the hash records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCost {
    Argon2 {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    /// `rounds=` (5000 when absent, 1000 at least, as glibc reads it).
    Sha512Crypt { rounds: u64 },
    /// The two digits after `$2b$`: 2^cost rounds.
    Bcrypt { cost: u32 },
}

impl HashCost {
    /// The cost `hash` records; `None` for a hash otpd cannot verify (see [`HashKind`]).
    pub fn of(hash: &str) -> Option<HashCost> {
        match HashKind::of(hash)? {
            HashKind::Argon2id => {
                let parsed = PasswordHash::new(hash).ok()?;
                let params = Params::try_from(&parsed).ok()?;
                Some(HashCost::Argon2 {
                    memory_kib: params.m_cost(),
                    iterations: params.t_cost(),
                    parallelism: params.p_cost(),
                })
            }
            HashKind::Sha512Crypt => {
                let field = hash.split('$').nth(2)?;
                let rounds = match field.strip_prefix("rounds=") {
                    Some(n) => n.parse::<u64>().ok()?.max(1000),
                    None => 5000,
                };
                Some(HashCost::Sha512Crypt { rounds })
            }
            HashKind::Bcrypt => {
                let cost = hash.get(4..6)?.parse().ok()?;
                (hash.as_bytes().get(6) == Some(&b'$')).then_some(HashCost::Bcrypt { cost })
            }
        }
    }

    /// Whether one verification is short work (about a millisecond on one core, measured:
    /// argon2id m*t <= 4096 KiB-passes, bcrypt cost 4 0.97 ms, sha512-crypt 1000 rounds
    /// 0.48 ms and 5000 rounds 2.3 ms): cheap enough for the thread that received the login.
    pub fn quick(&self) -> bool {
        match *self {
            HashCost::Argon2 {
                memory_kib,
                iterations,
                ..
            } => u64::from(memory_kib) * u64::from(iterations) <= QUICK_ARGON2,
            HashCost::Sha512Crypt { rounds } => rounds <= 2000,
            HashCost::Bcrypt { cost } => cost <= 4,
        }
    }
}

/// Memory passes of one argon2 hash that count as short work (see [`HashParams::quick`]).
const QUICK_ARGON2: u64 = 4096;

/// The most a stored password hash may cost to verify (`[password] max_…`): an imported
/// hash over them is refused at import, and a stored one is refused at login, never run.
/// A login may verify up to two hashes; each cap alone is about a second of one core or
/// less (one hash at the ceiling, measured here with the release build: bcrypt cost 14
/// 0.98 s, sha512-crypt 1 000 000 rounds 0.36 s, argon2id m=262144 KiB t=10 p=4 2.2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCaps {
    pub bcrypt_cost: u32,
    pub sha_crypt_rounds: u64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
}

impl HashCaps {
    /// The built-in ceiling: the configuration may lower each cap, never raise it.
    pub const CEILING: HashCaps = HashCaps {
        bcrypt_cost: 14,
        sha_crypt_rounds: 1_000_000,
        argon2_memory_kib: 262_144,
        argon2_iterations: 10,
        argon2_parallelism: 4,
    };

    /// `None` when `cost` is within the caps; otherwise what is over, in words.
    pub fn over(&self, cost: HashCost) -> Option<String> {
        match cost {
            HashCost::Bcrypt { cost } if cost > self.bcrypt_cost => Some(format!(
                "bcrypt cost {cost} is over the cap of {} (`password.max_bcrypt_cost`)",
                self.bcrypt_cost
            )),
            HashCost::Sha512Crypt { rounds } if rounds > self.sha_crypt_rounds => Some(format!(
                "sha512-crypt rounds={rounds} is over the cap of {} (`password.max_sha_crypt_rounds`)",
                self.sha_crypt_rounds
            )),
            HashCost::Argon2 {
                memory_kib,
                iterations,
                parallelism,
            } if memory_kib > self.argon2_memory_kib
                || iterations > self.argon2_iterations
                || parallelism > self.argon2_parallelism =>
            {
                Some(format!(
                    "argon2 m={memory_kib},t={iterations},p={parallelism} is over the caps of m={},t={},p={} (`password.max_argon2_memory_kib`, `max_argon2_iterations`, `max_argon2_parallelism`)",
                    self.argon2_memory_kib, self.argon2_iterations, self.argon2_parallelism
                ))
            }
            _ => None,
        }
    }

    /// Whether a stored `hash` may be verified, and whether that is short work. `Err`: why
    /// it may not (over the caps, or no hash otpd can verify).
    pub fn admit(&self, hash: &str) -> Result<HashCost, String> {
        let cost = HashCost::of(hash).ok_or_else(|| {
            "the password hash is not argon2id (PHC), sha512-crypt ($6$) or bcrypt ($2b$)"
                .to_string()
        })?;
        match self.over(cost) {
            Some(why) => Err(why),
            None => Ok(cost),
        }
    }
}

impl Default for HashCaps {
    fn default() -> HashCaps {
        HashCaps::CEILING
    }
}

impl HashParams {
    /// True when `hash` should be replaced at the next successful login: a legacy kind, or
    /// argon2id with other parameters than the configured ones.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        // `$argon2id$v=19$m=…,t=…,p=…$salt$hash`: the parameters are compared as text, without
        // parsing the whole string again (a login has just verified it).
        let Some(rest) = hash.strip_prefix("$argon2id$") else {
            return true;
        };
        let params = rest.split('$').nth(1).unwrap_or("");
        params
            != format!(
                "m={},t={},p={}",
                self.memory_kib, self.iterations, self.parallelism
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_means_a_few_mebibytes_of_memory_passes_at_most() {
        let p = |memory_kib, iterations| HashParams {
            memory_kib,
            iterations,
            parallelism: 1,
        };
        assert!(p(64, 1).quick(), "the benchmark's pipeline setting");
        assert!(p(1024, 4).quick());
        assert!(!p(1024, 5).quick());
        assert!(!HashParams::default().quick(), "the production default");
    }

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

    /// The reference encoding (argon2's own hasher) and ours agree, both ways.
    #[test]
    fn pooled_hashing_matches_the_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let reference = Argon2::new(
            argon2::Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).expect("params"),
        )
        .hash_password(b"pw", &SaltString::generate(&mut rand::rngs::OsRng))
        .expect("hash")
        .to_string();
        assert!(verify(&reference, "pw"));
        assert!(!verify(&reference, "pW"));
        let ours = CHEAP.hash("pw").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        // Two lanes, and a hash of another length, through the same pool.
        let p2 = HashParams {
            memory_kib: 128,
            iterations: 1,
            parallelism: 2,
        };
        let h2 = p2.hash("two lanes").expect("hash");
        assert!(verify(&h2, "two lanes"));
        assert!(POOL.held() >= 1 && POOL.held() <= pool_keep());
    }

    #[test]
    fn stored_hashes_over_the_caps_are_refused_without_being_run() {
        let bc31 = format!("$2b$31${}", "a".repeat(53));
        assert_eq!(HashCost::of(&bc31), Some(HashCost::Bcrypt { cost: 31 }));
        let sha = "$6$rounds=999999999$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        assert_eq!(
            HashCost::of(sha),
            Some(HashCost::Sha512Crypt {
                rounds: 999_999_999
            })
        );
        let started = std::time::Instant::now();
        assert!(!verify(&bc31, "secret"));
        assert!(!verify(sha, "secret"));
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        let caps = HashCaps::CEILING;
        let why = caps.admit(&bc31).expect_err("over");
        assert!(
            why.contains("bcrypt cost 31") && why.contains("max_bcrypt_cost"),
            "{why}"
        );
        assert!(caps
            .admit(sha)
            .expect_err("over")
            .contains("rounds=999999999"));
        // A cap lowered below a stored hash refuses it; the ceiling still verifies it.
        let bc5 = bcrypt::hash_with_salt("secret", 5, [7u8; 16])
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoB);
        let lowered = HashCaps {
            bcrypt_cost: 4,
            ..HashCaps::CEILING
        };
        assert!(lowered.admit(&bc5).is_err());
        assert!(!verify_within(&lowered, &bc5, "secret"));
        assert!(verify(&bc5, "secret"));
        let big = HashParams {
            memory_kib: 64,
            iterations: 11,
            parallelism: 1,
        }
        .hash("pw")
        .expect("hash");
        assert!(caps.admit(&big).expect_err("t=11").contains("t=11"));
        assert!(!verify(&big, "pw"));
        assert_eq!(
            caps.admit("plain").map_err(|e| e.contains("not argon2id")),
            Err(true)
        );
    }

    #[test]
    fn quick_hashes_are_the_ones_of_about_a_millisecond() {
        let bc = |c: u32| HashCost::Bcrypt { cost: c };
        assert!(bc(4).quick() && !bc(5).quick());
        let default_rounds = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        let cost = HashCost::of(default_rounds).expect("sha512-crypt");
        assert_eq!(cost, HashCost::Sha512Crypt { rounds: 5000 });
        assert!(!cost.quick());
        assert!(HashCost::Sha512Crypt { rounds: 1000 }.quick());
        assert!(CHEAP.cost().quick());
        assert!(!HashParams::default().cost().quick());
    }

    #[test]
    fn owasp_floor() {
        assert!(!HashParams::default().below_owasp_minimum());
        assert!(CHEAP.below_owasp_minimum());
    }
}
