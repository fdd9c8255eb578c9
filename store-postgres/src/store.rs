//! [`PgStore`]: the `Store` trait on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use otpd_core::store::StoreError;

use crate::connect::Target;
use crate::pool::Pool;
use crate::schema::{self, Migration};
use crate::Settings;

/// The PostgreSQL engine: a pool of connections to the database several nodes share.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects, creates or migrates otpd's tables, and refuses a schema newer than this
    /// otpd knows.
    pub fn open(settings: &Settings) -> Result<Arc<PgStore>, StoreError> {
        let target = Target::new(settings)?;
        // A caller waits for a busy pool about as long as a statement may run.
        let wait = settings.statement_timeout + Duration::from_secs(1);
        let pool = Pool::new(target, settings.pool_size, wait);
        {
            let mut conn = pool.get()?;
            match schema::migrate(&mut conn) {
                Ok(_) => {}
                Err(Migration::Refused(e)) => return Err(e),
                Err(Migration::Db(e)) => {
                    return Err(pool.target.error("cannot create or migrate the schema", &e))
                }
            }
        }
        Ok(Arc::new(PgStore { pool }))
    }
}
