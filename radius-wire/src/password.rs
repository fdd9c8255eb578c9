//! User-Password hiding (RFC 2865 §5.2): the password, padded with NULs to 16-octet blocks,
//! each block XORed with MD5(secret + previous hidden block), the first chained to the
//! Request Authenticator.

use md5::{Digest, Md5};
use zeroize::Zeroizing;

use crate::{Authenticator, Error, AUTHENTICATOR_LEN, MAX_PASSWORD_LEN};

/// Hides `buf` in place, block by block, without checking its length: the caller has padded
/// it (a last partial block is XORed with the start of its pad). For the checked,
/// padding form see [`hide_password`].
pub fn hide_blocks(buf: &mut [u8], secret: &[u8], authenticator: &Authenticator) {
    let mut previous: [u8; AUTHENTICATOR_LEN] = *authenticator;
    for block in buf.chunks_mut(AUTHENTICATOR_LEN) {
        let pad = pad(secret, &previous);
        for (byte, key) in block.iter_mut().zip(pad.iter()) {
            *byte ^= key;
        }
        previous[..block.len()].copy_from_slice(block);
    }
}

/// Reverses [`hide_blocks`] in place.
pub fn unhide_blocks(buf: &mut [u8], secret: &[u8], authenticator: &Authenticator) {
    let mut previous: [u8; AUTHENTICATOR_LEN] = *authenticator;
    for block in buf.chunks_mut(AUTHENTICATOR_LEN) {
        let pad = pad(secret, &previous);
        previous[..block.len()].copy_from_slice(block);
        for (byte, key) in block.iter_mut().zip(pad.iter()) {
            *byte ^= key;
        }
    }
}

/// MD5(secret + previous): the key stream of one block, wiped after use since it and the
/// hidden block give the password.
fn pad(secret: &[u8], previous: &[u8; AUTHENTICATOR_LEN]) -> Zeroizing<[u8; AUTHENTICATOR_LEN]> {
    let mut md5 = Md5::new();
    md5.update(secret);
    md5.update(previous);
    Zeroizing::new(md5.finalize().into())
}

/// The User-Password value for `password`: padded to a multiple of 16 octets (at least
/// one block) and hidden. Refuses a password longer than 128 octets.
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    authenticator: &Authenticator,
) -> Result<Vec<u8>, Error> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::PasswordTooLong);
    }
    let padded_len = password.len().div_ceil(AUTHENTICATOR_LEN).max(1) * AUTHENTICATOR_LEN;
    // Hidden in place: once done, the buffer holds no clear octet.
    let mut out = vec![0u8; padded_len];
    out[..password.len()].copy_from_slice(password);
    hide_blocks(&mut out, secret, authenticator);
    Ok(out)
}

/// The password in a User-Password value: it must be 16..=128 octets in 16-octet blocks;
/// the clear text ends at the first NUL (the padding). Wiped when dropped.
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &Authenticator,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if hidden.len() < AUTHENTICATOR_LEN
        || hidden.len() > MAX_PASSWORD_LEN
        || hidden.len() % AUTHENTICATOR_LEN != 0
    {
        return Err(Error::HiddenPasswordLength);
    }
    let mut plain = Zeroizing::new(hidden.to_vec());
    unhide_blocks(&mut plain, secret, authenticator);
    if let Some(end) = plain.iter().position(|&b| b == 0) {
        plain.truncate(end);
    }
    Ok(plain)
}
