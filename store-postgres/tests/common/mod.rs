//! What the PostgreSQL store's tests share: the settings of a store on a test cluster, and
//! an active user.
#![allow(dead_code)] // each test binary uses part of it

use std::time::Duration;

use otpd_core::lifecycle::Token;
use otpd_core::lockout::LockState;
use otpd_core::seal::Sealed;
use otpd_core::user::UserRecord;
use otpd_store_postgres::{Settings, SslMode};
use otpd_testkit::postgres::Postgres;
use zeroize::Zeroizing;

pub const NOW: i64 = 1_800_000_000;

/// A store on `pg`'s database `otpd`, four connections, statements waited for 5 s.
pub fn settings(pg: &Postgres) -> Settings {
    Settings {
        url: pg.url(),
        password: Some(Zeroizing::new(pg.password().to_string())),
        sslmode: SslMode::Disable,
        ca_file: None,
        pool_size: 4,
        statement_timeout: Duration::from_secs(5),
    }
}

/// A user with an active token whose last accepted step is `last_step`.
pub fn active(id: &str, last_step: u64) -> UserRecord {
    UserRecord {
        login_id: id.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        email: Some(format!("{id}@example.jp")),
        created_at: NOW - 100,
        token: Token::Active {
            secret: Sealed {
                nonce: "00".repeat(24),
                ct: "ab".repeat(36),
            },
            activated_at: NOW - 50,
            expires_at: NOW + 86_400 * 1461,
            last_step,
        },
        lock: LockState::default(),
        renew_lock: LockState::default(),
        session_generation: 0,
    }
}
