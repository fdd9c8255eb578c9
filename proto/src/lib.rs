//! The admin protocol shared by otpd's socket, its HTTP admin API and otpctl: one JSON
//! request per line, one JSON reply per line. This crate owns the shapes of those lines
//! (requests, replies, views, pages) and nothing of how otpd answers them, so otpctl
//! links it alone.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

mod view;

pub use view::{TokenState, UserView};

/// A secret in a request: never printed by `Debug`, wiped when dropped.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(Zeroizing::new(s))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// One admin operation as otpctl, the admin socket and the HTTP admin API send it: the
/// operation's name (`op`) and its fields, nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    Status,
    UserAdd {
        login_id: String,
        password: Secret,
    },
    UserPasswd {
        login_id: String,
        password: Secret,
    },
    UserShow {
        login_id: String,
    },
    UserList,
    UserDelete {
        login_id: String,
    },
    TokenIssue {
        login_id: String,
        email: String,
        activation_password: Secret,
    },
    TokenActivate {
        login_id: String,
        otp: Secret,
    },
    TokenCancel {
        login_id: String,
    },
    TokenRenew {
        login_id: String,
    },
    TokenUnlock {
        login_id: String,
    },
    /// Users migrated from another system, all or nothing.
    UserImport {
        users: Vec<ImportRow>,
    },
    /// Every record, for `otpctl backup`.
    Backup,
    /// Starts staging an import on this admin connection, replacing rows staged before.
    ImportBegin,
    /// Rows of an import file, checked at once and kept on the connection until
    /// `import_commit`; closing the connection discards them and imports nothing.
    ImportBatch {
        users: Vec<ImportRow>,
    },
    /// Writes every staged row, or none.
    ImportCommit,
    /// One page of the user list: up to `limit` users after `after`, in login-ID order.
    UserPage {
        after: Option<String>,
        limit: usize,
    },
    /// One page of a backup: up to `limit` records after `after`.
    BackupPage {
        after: Option<BackupCursor>,
        limit: usize,
    },
}

/// Most users or records one page holds, whatever the request asks: a page is one line.
pub const MAX_PAGE: usize = 1000;

/// Where a backup page ended: the tree and hex key of its last record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCursor {
    pub tree: String,
    pub key: String,
}

/// One user of an import file; `line` is where it stood, for error messages.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImportRow {
    pub line: usize,
    pub login_id: String,
    /// argon2id PHC, sha512-crypt (`$6$`) or bcrypt (`$2b$`); never printed.
    pub password_hash: String,
    pub email: Option<String>,
}

impl std::fmt::Debug for ImportRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImportRow(line {}, {})", self.line, self.login_id)
    }
}

/// One record of a backup, hex-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRow {
    pub tree: String,
    pub key: String,
    pub value: String,
}

impl AdminRequest {
    /// Reads one request line. Every field must be one the operation takes (serde's
    /// `deny_unknown_fields` does not cover operations without fields, so the request is
    /// compared with what it reads back as); refusals are in the product's words.
    pub fn parse(line: &[u8]) -> Result<AdminRequest, String> {
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|_| "the request is not one JSON object on one line".to_string())?;
        let serde_json::Value::Object(given) = &value else {
            return Err("the request must be a JSON object with an \"op\" field".into());
        };
        let op = given.get("op").and_then(|v| v.as_str()).unwrap_or("");
        let req: AdminRequest = serde_json::from_value(value.clone())
            .map_err(|e| describe_json_error(&e.to_string(), &format!("operation {op:?}")))?;
        let known = serde_json::to_value(&req).unwrap_or_default();
        if let Some(extra) = given.keys().find(|k| known.get(k.as_str()).is_none()) {
            return Err(format!(
                "unknown field {extra:?} for operation {op:?}; see `otpctl --help`"
            ));
        }
        Ok(req)
    }

    /// The operation's name in audit lines and the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            AdminRequest::Status => "status",
            AdminRequest::UserAdd { .. } => "user add",
            AdminRequest::UserPasswd { .. } => "user passwd",
            AdminRequest::UserShow { .. } => "user show",
            AdminRequest::UserList => "user list",
            AdminRequest::UserDelete { .. } => "user delete",
            AdminRequest::TokenIssue { .. } => "token issue",
            AdminRequest::TokenActivate { .. } => "token activate",
            AdminRequest::TokenCancel { .. } => "token cancel",
            AdminRequest::TokenRenew { .. } => "token renew",
            AdminRequest::TokenUnlock { .. } => "token unlock",
            AdminRequest::UserImport { .. } => "user import",
            AdminRequest::Backup | AdminRequest::BackupPage { .. } => "backup",
            AdminRequest::ImportBegin => "user import begin",
            AdminRequest::ImportBatch { .. } => "user import batch",
            AdminRequest::ImportCommit => "user import",
            AdminRequest::UserPage { .. } => "user list",
        }
    }

    /// The user the request is about, for audit lines.
    pub fn subject(&self) -> Option<&str> {
        match self {
            AdminRequest::Status
            | AdminRequest::UserList
            | AdminRequest::UserImport { .. }
            | AdminRequest::Backup
            | AdminRequest::ImportBegin
            | AdminRequest::ImportBatch { .. }
            | AdminRequest::ImportCommit
            | AdminRequest::UserPage { .. }
            | AdminRequest::BackupPage { .. } => None,
            AdminRequest::UserAdd { login_id, .. }
            | AdminRequest::UserPasswd { login_id, .. }
            | AdminRequest::UserShow { login_id }
            | AdminRequest::UserDelete { login_id }
            | AdminRequest::TokenIssue { login_id, .. }
            | AdminRequest::TokenActivate { login_id, .. }
            | AdminRequest::TokenCancel { login_id }
            | AdminRequest::TokenRenew { login_id }
            | AdminRequest::TokenUnlock { login_id } => Some(login_id),
        }
    }

    /// Reads change nothing and need no flush before the reply.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            AdminRequest::Status
                | AdminRequest::UserShow { .. }
                | AdminRequest::UserList
                | AdminRequest::Backup
                | AdminRequest::UserPage { .. }
                | AdminRequest::BackupPage { .. }
                | AdminRequest::ImportBegin
                | AdminRequest::ImportBatch { .. }
        )
    }
}

/// What `otpctl status` prints: the daemon's version, uptime and counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub uptime_seconds: u64,
    pub users: usize,
    pub by_state: std::collections::BTreeMap<String, usize>,
    pub locked: usize,
    pub mail_queued: usize,
    pub store_bytes: u64,
    /// The store engine ("sled", "postgres") and where it keeps the data (a folder, or
    /// "host:port database"); empty from an otpd that did not say.
    #[serde(default)]
    pub store_engine: String,
    #[serde(default)]
    pub store_location: String,
}

/// A successful reply: what the operation produced, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdminData {
    Status(StatusView),
    User(UserView),
    Users {
        users: Vec<UserView>,
    },
    Issued {
        user: UserView,
        link_expires_at: String,
    },
    Deleted {
        login_id: String,
    },
    Imported {
        count: usize,
    },
    Backup {
        rows: Vec<BackupRow>,
    },
    /// Rows checked and kept so far by an import.
    ImportStaged {
        staged: usize,
    },
    /// A page of users; `next` is the `after` of the following page, none at the end.
    UserPage {
        users: Vec<UserView>,
        next: Option<String>,
    },
    /// A page of backup records; `next` is the `after` of the following page, none at the end.
    BackupPage {
        rows: Vec<BackupRow>,
        next: Option<BackupCursor>,
    },
}

/// A refused operation: the stable error code and the sentence for the administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminFailure {
    pub error: String,
    pub message: String,
}

/// One reply line: the data, or why the operation was refused.
pub type AdminReply = Result<AdminData, AdminFailure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_debug_output() {
        let r = AdminRequest::UserAdd {
            login_id: "a".into(),
            password: Secret::new("hunter2".into()),
        };
        assert!(!format!("{r:?}").contains("hunter2"));
        let line = serde_json::to_string(&r).expect("json");
        assert_eq!(
            line,
            r#"{"op":"user_add","login_id":"a","password":"hunter2"}"#
        );
        let back: AdminRequest = serde_json::from_str(&line).expect("parse");
        assert_eq!(back.name(), "user add");
        assert!(
            serde_json::from_str::<AdminRequest>(r#"{"op":"user_show","login_id":"a","x":1}"#)
                .is_err()
        );
    }
}

/// A JSON body or request line that could not be read, said in the product's words (a
/// field's name, never the parser's internals). `what` names the request.
pub fn describe_json_error(parser_message: &str, what: &str) -> String {
    let quoted = |marker: &str| {
        let rest = &parser_message[parser_message.find(marker)? + marker.len()..];
        rest.split('`').next().map(str::to_string)
    };
    if let Some(f) = quoted("unknown field `") {
        format!("unknown field {f:?} in {what}")
    } else if let Some(f) = quoted("missing field `") {
        format!("{what} needs the field {f:?}")
    } else if let Some(v) = quoted("unknown variant `") {
        format!("unknown operation {v:?}")
    } else if parser_message.contains("missing field") || parser_message.contains("tag") {
        format!("{what} is missing its \"op\" field")
    } else if parser_message.contains("invalid type") || parser_message.contains("invalid value") {
        format!("a field of {what} has the wrong type: every value is a string")
    } else {
        format!("{what} is not a JSON object as the documentation describes")
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_for_every_operation() {
        assert!(matches!(
            AdminRequest::parse(br#"{"op":"status"}"#),
            Ok(AdminRequest::Status)
        ));
        let e = AdminRequest::parse(br#"{"op":"status","x":1}"#).expect_err("refused");
        assert_eq!(
            e,
            "unknown field \"x\" for operation \"status\"; see `otpctl --help`"
        );
        let e = AdminRequest::parse(br#"{"op":"user_show","login_id":"a","colour":"red"}"#)
            .expect_err("refused");
        assert!(e.contains("\"colour\""), "{e}");
        let e = AdminRequest::parse(br#"{"op":"user_show"}"#).expect_err("refused");
        assert_eq!(e, "operation \"user_show\" needs the field \"login_id\"");
        let e = AdminRequest::parse(br#"{"op":"fly"}"#).expect_err("refused");
        assert_eq!(e, "unknown operation \"fly\"");
        let e = AdminRequest::parse(b"not json").expect_err("refused");
        assert!(!e.contains("line 1 column"), "no parser internals: {e}");
        let e = AdminRequest::parse(br#"{"op":"user_show","login_id":5}"#).expect_err("refused");
        assert!(e.contains("wrong type") && !e.contains("integer"), "{e}");
    }
}
