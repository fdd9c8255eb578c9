//! トークン発行 (issuance): a fresh sealed secret, the activation password's hash and the
//! setup link, and the e-mail that carries the link queued in the outbox.

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::lifecycle::Token;
use crate::seal::hex;
use crate::user::{check_email, UserView};
use crate::{OpError, Service, UnixTime};

use super::MailJob;

impl Service {
    /// トークン発行: stores the activation password's hash, a fresh sealed secret and the
    /// link's hash, and queues the e-mail. Returns the user and the link's expiry.
    pub fn issue(
        &self,
        login_id: &str,
        email: &str,
        activation_password: &str,
        now: UnixTime,
    ) -> Result<(UserView, UnixTime), OpError> {
        check_email(email)?;
        if activation_password.chars().count() < 4 {
            return Err(OpError::BadInput(
                "the activation password needs at least 4 characters".into(),
            ));
        }
        let activation_hash = self.hash_password(activation_password)?;
        let mut secret = Zeroizing::new(vec![0u8; self.otp.algorithm.secret_len()]);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let sealed = self.sealer.seal(login_id, &secret);
        let code = new_link_code();
        let link_hash = link_hash(&code);
        let mut old_link = None;
        let (view, link_expires_at) = self.update(login_id, |u| {
            let token = u.token.issue(
                sealed.clone(),
                activation_hash.clone(),
                link_hash.clone(),
                now,
                &self.token,
            )?;
            if let Token::Issued { link, .. } = &u.token {
                old_link = Some(link.hash.clone());
            }
            let expires = match &token {
                Token::Issued { link, .. } => link.expires_at,
                _ => now,
            };
            u.token = token;
            u.email = Some(email.to_string());
            u.lock.unlock();
            Ok((self.view(u, now), expires))
        })?;
        if let Some(old) = old_link {
            self.store.set_link_owner(&old, None)?;
        }
        self.store.set_link_owner(&link_hash, Some(login_id))?;
        let job = MailJob {
            to: email.into(),
            login_id: login_id.into(),
            code: code.to_string(),
            link_expires_at,
            attempts: 0,
            next_try_at: now,
            queued_at: now,
        };
        self.queue_mail(&job)?;
        Ok((view, link_expires_at))
    }
}

/// A setup link code: 160 random bits, hex.
fn new_link_code() -> Zeroizing<String> {
    let mut b = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut b);
    Zeroizing::new(hex(&b))
}

/// Only this hash of a link code is stored.
pub fn link_hash(code: &str) -> String {
    hex(&Sha256::digest(code.as_bytes()))
}
