//! `PamHandler` over a real libpam handle, plus the few libpam calls pam-bindings does not
//! wrap: setting PAM_AUTHTOK and `pam_syslog`.

use std::ffi::{c_char, c_int, c_void, CString};

use pam::constants::{
    PamFlag, PamResultCode, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_SILENT, PAM_TEXT_INFO,
};
use pam::conv::Conv;
use pam::items::{AuthTok, Service};
use pam::module::PamHandle;
use zeroize::{Zeroize, Zeroizing};

use crate::handler::{PamHandler, Priority, Secret};

/// `PAM_AUTHTOK` from `<security/_pam_types.h>`.
const PAM_AUTHTOK: c_int = 6;

#[link(name = "pam")]
extern "C" {
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

pub struct LibPam<'a> {
    pamh: &'a mut PamHandle,
    /// PAM_SILENT: the application asked for no informational messages.
    silent: bool,
}

impl<'a> LibPam<'a> {
    pub fn new(pamh: &'a mut PamHandle, flags: PamFlag) -> Self {
        Self {
            pamh,
            silent: flags & PAM_SILENT != 0,
        }
    }

    fn converse(&mut self, style: c_int, msg: &str) -> Result<Option<Secret>, PamResultCode> {
        let conv = self
            .pamh
            .get_item::<Conv>()?
            .ok_or(PamResultCode::PAM_CONV_ERR)?;
        let answer = conv.send(style, msg)?;
        // SecretBytes wipes itself on drop; the copy is wiped by Zeroizing.
        Ok(answer.map(|bytes| Zeroizing::new(bytes.as_bytes().to_vec())))
    }
}

impl PamHandler for LibPam<'_> {
    fn get_user(&mut self) -> Result<String, PamResultCode> {
        self.pamh.get_user(None)
    }

    fn service(&mut self) -> Option<String> {
        let service = self.pamh.get_item::<Service>().ok()??;
        service.to_str().ok().map(str::to_string)
    }

    fn get_authtok(&mut self) -> Result<Option<Secret>, PamResultCode> {
        let token = self.pamh.get_item::<AuthTok>()?;
        Ok(token
            .filter(|t| !t.as_bytes().is_empty())
            .map(|t| Zeroizing::new(t.as_bytes().to_vec())))
    }

    fn set_authtok(&mut self, token: &[u8]) -> Result<(), PamResultCode> {
        if token.contains(&0) {
            return Err(PamResultCode::PAM_BUF_ERR);
        }
        let mut c_token = Vec::with_capacity(token.len() + 1);
        c_token.extend_from_slice(token);
        c_token.push(0);
        // SAFETY: pamh is the live handle PAM gave this call; c_token is NUL-terminated and
        // outlives the call; libpam copies the string before returning.
        let rc = unsafe { pam_set_item(self.pamh, PAM_AUTHTOK, c_token.as_ptr().cast()) };
        c_token.zeroize();
        match PamResultCode::try_from(rc) {
            Ok(PamResultCode::PAM_SUCCESS) => Ok(()),
            Ok(code) => Err(code),
            Err(_) => Err(PamResultCode::PAM_SYSTEM_ERR),
        }
    }

    fn prompt_echo_off(&mut self, msg: &str) -> Result<Option<Secret>, PamResultCode> {
        self.converse(PAM_PROMPT_ECHO_OFF, msg)
    }

    fn info(&mut self, msg: &str) {
        if !self.silent {
            let _ = self.converse(PAM_TEXT_INFO, msg);
        }
    }

    fn error(&mut self, msg: &str) {
        if !self.silent {
            let _ = self.converse(PAM_ERROR_MSG, msg);
        }
    }

    fn syslog(&mut self, priority: Priority, msg: &str) {
        let Ok(c_msg) = CString::new(msg.replace('\0', "?")) else {
            return;
        };
        // SAFETY: pamh is live; the format is a literal "%s" with exactly one C string
        // argument, so nothing from the message is interpreted as a format.
        unsafe {
            pam_syslog(self.pamh, priority.as_raw(), c"%s".as_ptr(), c_msg.as_ptr());
        }
    }
}
