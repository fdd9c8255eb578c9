//! The admin protocol lives in `otpd-proto` (otpctl links it alone); the core answers it
//! and turns its refusals into [`AdminFailure`]s.

pub use otpd_proto::{
    describe_json_error, AdminData, AdminFailure, AdminReply, AdminRequest, BackupCursor,
    BackupRow, ImportRow, Secret, StatusView, MAX_PAGE,
};

impl From<crate::OpError> for AdminFailure {
    fn from(e: crate::OpError) -> Self {
        AdminFailure {
            error: e.code().into(),
            message: e.to_string(),
        }
    }
}
