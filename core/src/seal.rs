//! OTP secrets are sealed at rest with XChaCha20-Poly1305 under the key in `key_file`, bound
//! to the login ID, so a copied `data_dir` alone reveals no secret and a sealed secret cannot
//! be moved to another user.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("key file {path}: {msg}")]
    KeyFile { path: String, msg: String },
    #[error("a sealed secret could not be opened (wrong key_file, or the store was altered)")]
    Open,
}

/// A secret as stored: nonce and ciphertext, both in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub nonce: String,
    pub ct: String,
}

pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// Where the keys for other purposes come from (see [`Sealer::derive_key`]).
    base: Zeroizing<[u8; 32]>,
}

impl Sealer {
    pub fn from_key(key: &[u8; 32]) -> Self {
        Sealer {
            cipher: XChaCha20Poly1305::new(key.into()),
            base: Zeroizing::new(*key),
        }
    }

    /// A key for `purpose` (HMAC-SHA-256 of the purpose under the key file's key): the same
    /// on every node that shares `key_file`, and telling nothing about the sealing key.
    pub fn derive_key(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.base.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"otpd key derivation v1: ");
        mac.update(purpose.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// The key check value a store records: a MAC of a fixed constant under this key (a
    /// key of its own purpose, so it tells nothing about the others). Two nodes whose
    /// values differ do not share `key_file`.
    pub fn check_value(&self) -> [u8; 32] {
        *self.derive_key("key check value v1")
    }

    /// Loads the key file, creating it (mode 0600, 32 random bytes as hex) when absent.
    /// Refuses a key file that group or others can read.
    pub fn load_or_create(path: &Path) -> Result<Sealer, SealError> {
        let err = |msg: String| SealError::KeyFile {
            path: path.display().to_string(),
            msg,
        };
        if !path.exists() {
            let mut key = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(key.as_mut());
            let text = Zeroizing::new(hex(key.as_ref()) + "\n");
            let mut f = create_private(path).map_err(|e| err(format!("cannot create: {e}")))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| err(format!("cannot write: {e}")))?;
        }
        check_private(path).map_err(err)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?,
        );
        let bytes = unhex(text.trim())
            .filter(|b| b.len() == 32)
            .ok_or_else(|| err("must hold 64 hex digits (a 256-bit key)".into()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes);
        Ok(Sealer::from_key(&key))
    }

    pub fn seal(&self, login_id: &str, secret: &[u8]) -> Sealed {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: aad(login_id).as_bytes(),
                },
            )
            // Encryption only fails for messages beyond 256 GiB.
            .unwrap_or_default();
        Sealed {
            nonce: hex(&nonce),
            ct: hex(&ct),
        }
    }

    pub fn open(&self, login_id: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let nonce = unhex(&sealed.nonce)
            .filter(|n| n.len() == 24)
            .ok_or(SealError::Open)?;
        let ct = unhex(&sealed.ct).ok_or(SealError::Open)?;
        self.cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad(login_id).as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }
}

fn aad(login_id: &str) -> String {
    format!("otpd-secret-v1:{login_id}")
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(unix)]
/// Refuses a credential file that group or others may read, naming the fix.
pub fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {:o} lets group or others read it; run: chmod 600 {}",
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

/// Lowercase hex of `bytes` (every login opens a sealed secret read from its hex).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for pair in bytes.chunks_exact(2) {
        out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex_takes_pairs_of_hex_digits_only() {
        assert_eq!(unhex("00aFf9"), Some(vec![0x00, 0xaf, 0xf9]));
        assert_eq!(unhex(""), Some(vec![]));
        for bad in ["abc", "0g", "+1", " 1", "é1"] {
            assert_eq!(unhex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_is_two_lowercase_digits_a_byte_and_unhex_takes_it_back() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        assert_eq!(hex(&[]), "");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all)), Some(all));
    }

    #[test]
    fn seal_open_and_binding() {
        let s = Sealer::from_key(&[7u8; 32]);
        let sealed = s.seal("alice", b"secret-bytes");
        assert!(!sealed.ct.contains(&hex(b"secret-bytes")));
        assert_eq!(
            s.open("alice", &sealed).expect("opens").as_slice(),
            b"secret-bytes"
        );
        assert!(s.open("bob", &sealed).is_err(), "bound to the login ID");
        assert!(
            Sealer::from_key(&[8u8; 32]).open("alice", &sealed).is_err(),
            "wrong key"
        );
    }

    #[test]
    fn the_check_value_is_the_key_s_own() {
        let a = Sealer::from_key(&[7u8; 32]);
        assert_eq!(a.check_value(), Sealer::from_key(&[7u8; 32]).check_value());
        assert_ne!(a.check_value(), Sealer::from_key(&[8u8; 32]).check_value());
        assert_ne!(a.check_value(), [7u8; 32]);
    }

    #[test]
    fn key_file_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/master.key");
        let a = Sealer::load_or_create(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = a.seal("u", b"x");
        let b = Sealer::load_or_create(&path).expect("reloaded");
        assert_eq!(b.open("u", &sealed).expect("same key").as_slice(), b"x");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Sealer::load_or_create(&path).err().expect("refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
