//! Writing a packet: the header, the attributes in order, then the Length and the
//! authenticators.

use crate::{
    attr, push_attr, set_length, sign_message_authenticator, sign_response, Authenticator, Error,
    AUTHENTICATOR_LEN, HEADER_LEN, MAX_ATTR_VALUE,
};

/// A packet being written. Its header holds the Request Authenticator until the end: a
/// request's own, or for a reply the one of the request it answers, over which the reply's
/// Message-Authenticator is computed before the Response Authenticator replaces it.
#[derive(Debug, Clone)]
pub struct Writer {
    bytes: Vec<u8>,
    authenticator: Authenticator,
    message_authenticator: Option<usize>,
}

impl Writer {
    /// Starts a packet with `code`, `identifier` and the Request Authenticator.
    pub fn new(code: u8, identifier: u8, authenticator: &Authenticator) -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&[code, identifier, 0, 0]);
        bytes.extend_from_slice(authenticator);
        Self {
            bytes,
            authenticator: *authenticator,
            message_authenticator: None,
        }
    }

    /// Adds a Message-Authenticator here, zeroed until the packet is finished. Put it first:
    /// a client then cannot be fooled by attributes forged in front of it (BlastRADIUS).
    /// A second call adds nothing.
    pub fn push_message_authenticator(&mut self) {
        if self.message_authenticator.is_none() {
            self.bytes
                .extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
            self.message_authenticator = Some(self.bytes.len());
            self.bytes.extend_from_slice(&[0u8; AUTHENTICATOR_LEN]);
        }
    }

    /// Adds one attribute; refuses a value longer than 253 octets.
    pub fn push(&mut self, typ: u8, value: &[u8]) -> Result<(), Error> {
        push_attr(&mut self.bytes, typ, value)
    }

    /// Adds an attribute of `len` octets (at most 253) that `fill` writes into a zeroed
    /// value; returns the value. The room is reserved first, so the buffer is not moved
    /// (and a copy of what `fill` wrote left behind) while the value is written.
    pub(crate) fn push_with(
        &mut self,
        typ: u8,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<&mut [u8], Error> {
        if len > MAX_ATTR_VALUE {
            return Err(Error::ValueTooLong);
        }
        self.bytes.reserve(len + 2);
        self.bytes.extend_from_slice(&[typ, (len + 2) as u8]);
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        let value = &mut self.bytes[start..];
        fill(value);
        Ok(value)
    }

    /// The Request Authenticator the packet was started with.
    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Octets written so far, the header included.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Finishes a request: the Length, then the Message-Authenticator if one was added.
    /// Refuses a packet over 4096 octets.
    pub fn finish_request(mut self, secret: &[u8]) -> Result<Vec<u8>, Error> {
        set_length(&mut self.bytes)?;
        if let Some(offset) = self.message_authenticator {
            sign_message_authenticator(&mut self.bytes, offset, secret);
        }
        Ok(self.bytes)
    }

    /// Finishes a reply: the Length, the Message-Authenticator if one was added (with the
    /// request's authenticator in the header), then the Response Authenticator.
    /// Refuses a packet over 4096 octets.
    pub fn finish_reply(self, secret: &[u8]) -> Result<Vec<u8>, Error> {
        let authenticator = self.authenticator;
        let mut bytes = self.finish_request(secret)?;
        debug_assert!(bytes.len() >= HEADER_LEN);
        sign_response(&mut bytes, &authenticator, secret);
        Ok(bytes)
    }
}
