//! The bench users. Login ID, OTP secret and password are derived from the user's index
//! alone, so the seeder, the FreeRADIUS users file and the load generator agree without
//! sharing a file.

use sha2::{Digest, Sha256};

/// One password for every bench user (hashed once, the hash reused).
pub const PASSWORD: &str = "Bench-Passw0rd";

/// Length of a bench secret: the SHA1 output size, as otpd generates them.
pub const SECRET_LEN: usize = 20;

pub fn login_id(index: u64) -> String {
    format!("bench{index:07}")
}

/// The user's OTP secret: the first 20 bytes of SHA-256 over a label and the index.
pub fn secret(index: u64) -> [u8; SECRET_LEN] {
    let digest = Sha256::digest(format!("otpd-bench-secret-v1:{index}").as_bytes());
    let mut out = [0u8; SECRET_LEN];
    out.copy_from_slice(&digest[..SECRET_LEN]);
    out
}

/// The secret as FreeRADIUS's `TOTP-Secret` wants it: base32, no padding.
pub fn secret_base32(index: u64) -> String {
    base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &secret(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_and_distinct() {
        assert_eq!(login_id(42), "bench0000042");
        assert_eq!(secret(7), secret(7));
        assert_ne!(secret(7), secret(8));
        assert_eq!(secret_base32(7).len(), 32);
    }
}
