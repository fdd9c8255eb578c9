//! The binary layout of a user's record in the sled store (layout 2 of the record; layout 1
//! is the same record as JSON). Every login reads the record of its user, and sled keeps
//! up to 16 records in one leaf, read and decoded whole when it is not cached: a record
//! of about 250 bytes instead of 600 makes that read smaller, and lets the same cache hold
//! more than twice the users.
//!
//! Fields in declaration order, with no names: integers big-endian, a string as a 2-byte
//! length and its bytes, an option as a flag byte (0 none, 1 some) and the value, the token
//! as its state's number and that state's fields. A sealed secret's hex is stored as its
//! bytes (flag 0), or as the text itself (flag 1) when it is not lowercase hex.
//! Backups stay JSON: this layout is the store's own.

use crate::lifecycle::{Link, Token};
use crate::lockout::LockState;
use crate::seal::{hex, unhex, Sealed};
use crate::user::UserRecord;

/// Appends `u` to `out`. Fails only for a string longer than 65535 bytes.
pub(crate) fn encode(u: &UserRecord, out: &mut Vec<u8>) -> Result<(), String> {
    let mut w = Writer(out);
    w.str(&u.login_id)?;
    w.str(&u.password_hash)?;
    match &u.email {
        None => w.byte(0),
        Some(e) => {
            w.byte(1);
            w.str(e)?;
        }
    }
    w.i64(u.created_at);
    match &u.token {
        Token::Unregistered => w.byte(0),
        Token::Issued {
            secret,
            activation_hash,
            link,
            issued_at,
        } => {
            w.byte(1);
            w.sealed(secret)?;
            w.str(activation_hash)?;
            w.str(&link.hash)?;
            w.i64(link.expires_at);
            w.u32(link.attempts);
            w.i64(*issued_at);
        }
        Token::Provisioned {
            secret,
            provisioned_at,
            expires_at,
            last_step,
        } => {
            w.byte(2);
            w.sealed(secret)?;
            w.i64(*provisioned_at);
            w.i64(*expires_at);
            match last_step {
                None => w.byte(0),
                Some(s) => {
                    w.byte(1);
                    w.u64(*s);
                }
            }
        }
        Token::Active {
            secret,
            activated_at,
            expires_at,
            last_step,
        } => {
            w.byte(3);
            w.sealed(secret)?;
            w.i64(*activated_at);
            w.i64(*expires_at);
            w.u64(*last_step);
        }
    }
    w.lock(&u.lock);
    w.lock(&u.renew_lock);
    w.u64(u.session_generation);
    Ok(())
}

/// The record in `raw`, which must hold exactly one.
pub(crate) fn decode(raw: &[u8]) -> Result<UserRecord, String> {
    let mut r = Reader(raw);
    let login_id = r.str()?;
    let password_hash = r.str()?;
    let email = match r.byte()? {
        0 => None,
        1 => Some(r.str()?),
        f => return Err(format!("e-mail flag {f}")),
    };
    let created_at = r.i64()?;
    let token = match r.byte()? {
        0 => Token::Unregistered,
        1 => Token::Issued {
            secret: r.sealed()?,
            activation_hash: r.str()?,
            link: Link {
                hash: r.str()?,
                expires_at: r.i64()?,
                attempts: r.u32()?,
            },
            issued_at: r.i64()?,
        },
        2 => Token::Provisioned {
            secret: r.sealed()?,
            provisioned_at: r.i64()?,
            expires_at: r.i64()?,
            last_step: match r.byte()? {
                0 => None,
                1 => Some(r.u64()?),
                f => return Err(format!("last-step flag {f}")),
            },
        },
        3 => Token::Active {
            secret: r.sealed()?,
            activated_at: r.i64()?,
            expires_at: r.i64()?,
            last_step: r.u64()?,
        },
        s => return Err(format!("token state {s}")),
    };
    let user = UserRecord {
        login_id,
        password_hash,
        email,
        created_at,
        token,
        lock: r.lock()?,
        renew_lock: r.lock()?,
        session_generation: r.u64()?,
    };
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the record", r.0.len()));
    }
    Ok(user)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) -> Result<(), String> {
        let len = u16::try_from(b.len()).map_err(|_| format!("a field of {} bytes", b.len()))?;
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(b);
        Ok(())
    }
    fn str(&mut self, s: &str) -> Result<(), String> {
        self.bytes(s.as_bytes())
    }
    /// One hex text: its bytes when hex of them gives the text back, else the text.
    fn hex_text(&mut self, text: &str) -> Result<(), String> {
        match unhex(text).filter(|raw| hex(raw) == text) {
            Some(raw) => {
                self.byte(0);
                self.bytes(&raw)
            }
            None => {
                self.byte(1);
                self.str(text)
            }
        }
    }
    fn sealed(&mut self, s: &Sealed) -> Result<(), String> {
        self.hex_text(&s.nonce)?;
        self.hex_text(&s.ct)
    }
    fn lock(&mut self, l: &LockState) {
        self.u32(l.failures);
        match l.locked_until {
            None => self.byte(0),
            Some(t) => {
                self.byte(1);
                self.i64(t);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| "the record ends early".to_string())?;
        self.0 = rest;
        Ok(*head)
    }
    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn bytes(&mut self) -> Result<&[u8], String> {
        let len = usize::from(u16::from_be_bytes(self.take()?));
        if self.0.len() < len {
            return Err("the record ends early".into());
        }
        let (field, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(field)
    }
    fn str(&mut self) -> Result<String, String> {
        let raw = self.bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| "a text field that is not UTF-8".into())
    }
    fn hex_text(&mut self) -> Result<String, String> {
        match self.byte()? {
            0 => Ok(hex(self.bytes()?)),
            1 => self.str(),
            f => Err(format!("hex flag {f}")),
        }
    }
    fn sealed(&mut self) -> Result<Sealed, String> {
        Ok(Sealed {
            nonce: self.hex_text()?,
            ct: self.hex_text()?,
        })
    }
    fn lock(&mut self) -> Result<LockState, String> {
        Ok(LockState {
            failures: self.u32()?,
            locked_until: match self.byte()? {
                0 => None,
                1 => Some(self.i64()?),
                f => return Err(format!("lock flag {f}")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Sealed {
        crate::seal::Sealer::from_key(&[3u8; 32]).seal("taro", b"12345678901234567890")
    }

    fn records() -> Vec<UserRecord> {
        let base = UserRecord {
            login_id: "taro".into(),
            password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            email: None,
            created_at: -5,
            token: Token::Unregistered,
            lock: LockState::default(),
            renew_lock: LockState {
                failures: 3,
                locked_until: Some(0),
            },
            session_generation: u64::MAX,
        };
        let tokens = [
            Token::Unregistered,
            Token::Issued {
                secret: sealed(),
                activation_hash: "$argon2id$v=19$m=64,t=1,p=1$YQ$Yg".into(),
                link: Link {
                    hash: "ab".repeat(32),
                    expires_at: 1_800_000_000,
                    attempts: 4,
                },
                issued_at: 1_700_000_000,
            },
            Token::Provisioned {
                secret: sealed(),
                provisioned_at: 1,
                expires_at: i64::MAX,
                last_step: None,
            },
            Token::Provisioned {
                secret: sealed(),
                provisioned_at: 1,
                expires_at: 2,
                last_step: Some(28_000_000),
            },
            Token::Active {
                // Not lowercase hex: kept as text.
                secret: Sealed {
                    nonce: "ABCDEF".into(),
                    ct: "xyz".into(),
                },
                activated_at: i64::MIN,
                expires_at: 7,
                last_step: 0,
            },
        ];
        tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| UserRecord {
                email: (i % 2 == 1).then(|| "山田@docomo.example.jp".to_string()),
                lock: LockState {
                    failures: u32::try_from(i).expect("small"),
                    locked_until: (i == 3).then_some(1_700_000_600),
                },
                token,
                ..base.clone()
            })
            .collect()
    }

    #[test]
    fn every_state_comes_back_as_it_went_in_and_smaller_than_json() {
        for u in records() {
            let mut raw = Vec::new();
            encode(&u, &mut raw).expect("encode");
            assert_eq!(decode(&raw).expect("decode"), u);
            let json = serde_json::to_vec(&u).expect("json");
            assert!(
                raw.len() * 2 < json.len(),
                "{} vs {} bytes",
                raw.len(),
                json.len()
            );
        }
    }

    #[test]
    fn a_cut_or_padded_record_is_refused() {
        for u in records() {
            let mut raw = Vec::new();
            encode(&u, &mut raw).expect("encode");
            for cut in 0..raw.len() {
                assert!(decode(&raw[..cut]).is_err(), "cut at {cut}");
            }
            raw.push(0);
            assert!(decode(&raw).is_err(), "a byte too many");
        }
    }

    #[test]
    fn a_field_too_long_for_the_layout_is_an_error_not_a_cut() {
        let mut u = records().remove(0);
        u.email = Some("a".repeat(70_000));
        assert!(encode(&u, &mut Vec::new()).is_err());
    }
}
