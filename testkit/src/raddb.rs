//! A copy of an installed FreeRADIUS configuration (Debian's `/etc/freeradius/3.0`) that
//! runs from a temp folder as the invoking user.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Copies `system` (with `cp -a`, links kept) to `dir/raddb` and points its `radiusd.conf`
/// there: `raddbdir`, `logdir` and `run_dir` into the copy (`log/` and `run/` are made),
/// `user` and `group` commented out since the temp folder is not freerad's. Every other
/// line goes through `edit`, which returns it changed or `None` to keep it.
pub fn copy_raddb(
    system: &Path,
    dir: &Path,
    edit: impl Fn(&str) -> Option<String>,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let raddb = dir.join("raddb");
    let status = Command::new("cp")
        .arg("-a")
        .arg(system)
        .arg(&raddb)
        .status()
        .map_err(|e| std::io::Error::other(format!("cp (Debian package freeradius): {e}")))?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "cannot copy {}",
            system.display()
        )));
    }
    let conf_path = raddb.join("radiusd.conf");
    let conf = std::fs::read_to_string(&conf_path)?;
    let mut out = String::with_capacity(conf.len());
    for line in conf.lines() {
        let t = line.trim_start();
        let edited = if t.starts_with("raddbdir =") {
            format!("raddbdir = {}", raddb.display())
        } else if t.starts_with("logdir =") {
            format!("logdir = {}", raddb.join("log").display())
        } else if t.starts_with("run_dir =") {
            format!("run_dir = {}", raddb.join("run").display())
        } else if t.starts_with("user =") || t.starts_with("group =") {
            format!("#{line}")
        } else {
            edit(line).unwrap_or_else(|| line.to_string())
        };
        out.push_str(&edited);
        out.push('\n');
    }
    std::fs::write(&conf_path, out)?;
    for sub in ["log", "run"] {
        std::fs::create_dir_all(raddb.join(sub))?;
    }
    Ok(raddb)
}
