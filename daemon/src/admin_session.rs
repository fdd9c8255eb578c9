//! What one admin connection remembers between its requests: the rows of an import being
//! staged. An import arrives as `import_begin`, any number of `import_batch` lines (each
//! checked at once), then `import_commit`; a connection that closes before the commit, or
//! a batch with a bad row, imports nothing.

use otpd_core::admin::{AdminData, AdminFailure, AdminReply, AdminRequest};
use otpd_core::import::ImportStage;
use otpd_core::{OpError, Refusal};

use crate::ops::Ops;

/// One admin connection's state.
#[derive(Default)]
pub struct Session {
    /// `Some` between `import_begin` and the commit or the first refused batch.
    stage: Option<ImportStage>,
}

impl Session {
    /// Answers one request of this connection.
    pub async fn handle(&mut self, req: AdminRequest, ops: &Ops, actor: &str) -> AdminReply {
        let start = crate::clock::instant();
        let reply = self.answer(req, ops, actor).await;
        crate::metrics::get().observe("admin", start.elapsed());
        reply
    }

    async fn answer(&mut self, req: AdminRequest, ops: &Ops, actor: &str) -> AdminReply {
        match req {
            AdminRequest::ImportBegin => {
                self.stage = Some(ImportStage::default());
                Ok(AdminData::ImportStaged { staged: 0 })
            }
            AdminRequest::ImportBatch { users } => {
                let stage = self.stage.take().ok_or_else(not_begun)?;
                let checked = ops
                    .run(move |svc, _| {
                        let mut stage = stage;
                        let r = svc.import_stage(&mut stage, users);
                        (stage, r)
                    })
                    .await;
                match checked {
                    Ok((stage, Ok(staged))) => {
                        self.stage = Some(stage);
                        Ok(AdminData::ImportStaged { staged })
                    }
                    // The stage is dropped: a later commit is refused, nothing is written.
                    Ok((_, Err(e))) | Err(e) => Err(audited(ops, actor, e)),
                }
            }
            AdminRequest::ImportCommit => {
                let stage = self.stage.take().ok_or_else(not_begun)?;
                let result = ops
                    .write(move |svc, now| svc.import_write(stage, now))
                    .await;
                match result {
                    Ok(count) => {
                        let n = count.to_string();
                        ops.log.audit(&[
                            ("admin", "user import"),
                            ("actor", actor),
                            ("user", "-"),
                            ("users", &n),
                            ("outcome", "ok"),
                        ]);
                        Ok(AdminData::Imported { count })
                    }
                    Err(e) => Err(audited(ops, actor, e)),
                }
            }
            other => ops.admin(other, actor).await,
        }
    }
}

fn not_begun() -> AdminFailure {
    AdminFailure {
        error: Refusal::BadRequest.as_str().into(),
        message: "no import in progress on this connection (send import_begin first; a refused batch ends the import)".into(),
    }
}

fn audited(ops: &Ops, actor: &str, e: OpError) -> AdminFailure {
    ops.log.audit(&[
        ("admin", "user import"),
        ("actor", actor),
        ("user", "-"),
        ("outcome", e.code()),
    ]);
    e.into()
}
