//! What the fuzz targets share: a scratch installation (config, sealing key, sled store)
//! built once per fuzzing process, in `$OTPD_FUZZ_TMPDIR`, else on /dev/shm (cheap
//! flushes), else in the system temp folder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use otpd::config::Config;
use otpd_core::seal::Sealer;
use otpd_core::store::SledStore;
use otpd_core::Service;

pub const SERVICE_ID: &str = "FUZZ-BANK";

/// Above this many users the scratch store is emptied, so long runs stay small.
pub const MAX_USERS: usize = 256;

pub struct Scratch {
    /// Kept for the life of the process (libFuzzer exits without running destructors;
    /// `scripts/fuzz` removes the parent folder afterwards).
    pub dir: PathBuf,
    pub config: Config,
    pub service: Arc<Service>,
}

pub fn temp_parent() -> PathBuf {
    if let Some(dir) = std::env::var_os("OTPD_FUZZ_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A fresh folder under [`temp_parent`] that outlives the process.
pub fn scratch_dir() -> PathBuf {
    tempfile::Builder::new()
        .prefix("otpd-fuzz-")
        .tempdir_in(temp_parent())
        .expect("a scratch folder")
        .keep()
}

/// The smallest valid configuration, with the cheapest argon2 settings.
pub fn config_text() -> String {
    format!(
        r#"service_id = "{SERVICE_ID}"
data_dir = "data"
key_file = "master.key"

[password]
argon2_memory_kib = 8
argon2_iterations = 1

[mail]
transport = "file"
dir = "mail"
"#
    )
}

/// The process's scratch installation, built on first use.
pub fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = scratch_dir();
        let config = Config::parse(&config_text(), &dir)
            .expect("the fuzz configuration is valid")
            .config;
        let store = SledStore::open(&config.core.data_dir).expect("scratch store");
        let service =
            Service::new(&config.core, store, Sealer::from_key(&[7u8; 32]), now()).expect("service");
        Scratch {
            dir,
            config,
            service: Arc::new(service),
        }
    })
}

/// Empties the scratch store once it holds more than [`MAX_USERS`] users.
pub fn keep_small(svc: &Service) {
    if svc.store().user_count() <= MAX_USERS {
        return;
    }
    if let Ok(users) = svc.store().users() {
        for u in users {
            let _ = svc.delete_user(&u.login_id);
        }
    }
}

pub fn now() -> otpd_core::UnixTime {
    otpd::clock::now()
}
