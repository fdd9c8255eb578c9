//! The PAM entry points: `auth` runs the flow; the other services have nothing to do.
//! No panic leaves this module: a panic becomes `PAM_SERVICE_ERR`.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pam::constants::{PamFlag, PamResultCode};
use pam::module::{PamHandle, PamHooks};

use crate::flow;
use crate::libpam::LibPam;

pub struct PamOtpd;

impl PamHooks for PamOtpd {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        contain(|| flow::authenticate(&mut LibPam::new(pamh, flags), &args))
    }

    /// No credentials to establish; succeeding keeps `auth` stacks with setcred working.
    fn sm_setcred(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }

    /// Lock and expiry are decided by otpd at authentication time.
    fn acct_mgmt(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }

    /// Passwords and tokens are changed through otpctl or the setup pages, not PAM.
    fn sm_chauthtok(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }

    fn sm_open_session(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }

    fn sm_close_session(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }
}

/// Runs `f`, turning a panic into `PAM_SERVICE_ERR` so it never unwinds into libpam.
pub(crate) fn contain(f: impl FnOnce() -> PamResultCode) -> PamResultCode {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(code) => code,
        Err(payload) => {
            // Dropping a panic payload can itself panic; leak it instead.
            std::mem::forget(payload);
            PamResultCode::PAM_SERVICE_ERR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_service_err() {
        #[allow(clippy::panic)]
        let code = contain(|| panic!("boom"));
        assert_eq!(code, PamResultCode::PAM_SERVICE_ERR);
        assert_eq!(
            contain(|| PamResultCode::PAM_AUTH_ERR),
            PamResultCode::PAM_AUTH_ERR
        );
    }
}
