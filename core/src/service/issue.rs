//! トークン発行 (issuance): a fresh sealed secret, the activation password's hash and the
//! setup link, and the e-mail that carries the link queued in the outbox.

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::lifecycle::Token;
use crate::seal::hex;
use crate::user::{check_email, UserView};
use crate::{OpError, Service, UnixTime};

use super::outbox::{mask_email, Notice};
use super::MailJob;
use crate::customer::new_epoch;

impl Service {
    /// トークン発行 by the bank (an administrator or the admin API): see
    /// [`Service::issue_epoch`].
    pub fn issue(
        &self,
        login_id: &str,
        email: &str,
        activation_password: &str,
        now: UnixTime,
    ) -> Result<(UserView, UnixTime), OpError> {
        self.issue_epoch(login_id, email, activation_password, BY_BANK, now)
            .map(|(v, expires, _)| (v, expires))
    }

    /// トークン発行: stores the activation password's hash, a fresh sealed secret and the
    /// link's hash, and queues the e-mail; when this replaces a pending setup or changes the
    /// address, the previously registered address gets a notice too. A lock stays as it is
    /// (an issuance is no way around it), and the menu's sessions end. Returns the user, the
    /// link's expiry and the session epoch the issuance set (the menu's own session goes on
    /// in it; every other one ended). `by` names who asked in the notice (`bank` or
    /// `otp-menu`).
    pub(super) fn issue_epoch(
        &self,
        login_id: &str,
        email: &str,
        activation_password: &str,
        by: &str,
        now: UnixTime,
    ) -> Result<(UserView, UnixTime, u64), OpError> {
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
        let mut notice = None;
        let (view, link_expires_at, epoch) = self.update(login_id, |u| {
            let token = u.token.issue(
                sealed.clone(),
                activation_hash.clone(),
                link_hash.clone(),
                now,
                &self.token,
            )?;
            old_link = None;
            if let Token::Issued { link, .. } = &u.token {
                old_link = Some(link.hash.clone());
            }
            let pending = matches!(u.token, Token::Issued { .. } | Token::Provisioned { .. });
            notice = match u.email.as_deref() {
                Some(old) if !same_address(old, email) => Some((
                    old.to_string(),
                    Notice::AddressChanged {
                        to: mask_email(email),
                        by: by.into(),
                    },
                )),
                Some(old) if pending => Some((old.to_string(), Notice::Reissued { by: by.into() })),
                _ => None,
            };
            let expires = match &token {
                Token::Issued { link, .. } => link.expires_at,
                _ => now,
            };
            u.token = token;
            u.email = Some(email.to_string());
            u.session_generation = new_epoch(u.session_generation);
            Ok((self.view(u, now), expires, u.session_generation))
        })?;
        if let Some(old) = old_link {
            self.store.set_link_owner(&old, None)?;
        }
        self.store.set_link_owner(&link_hash, Some(login_id))?;
        if let Some((to, notice)) = notice {
            self.queue_notice(&to, login_id, notice, now)?;
        }
        let job = MailJob {
            to: email.into(),
            login_id: login_id.into(),
            code: code.to_string(),
            link_expires_at,
            attempts: 0,
            next_try_at: now,
            queued_at: now,
            notice: None,
        };
        self.queue_mail(&job)?;
        Ok((view, link_expires_at, epoch))
    }
}

/// Who a notice names for a change made through the admin socket or API.
pub const BY_BANK: &str = "bank";

/// Whether two addresses are the same mailbox as far as otpd can tell: the domain is not
/// case-sensitive (RFC 5321 leaves the local part to the domain; banks' mobile carriers
/// treat it as case-insensitive too).
pub fn same_address(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
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
