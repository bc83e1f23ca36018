//! `kagi backup -o FILE`: a consistent copy of the embedded SQLite database, made while
//! `kagi serve` runs on it (`VACUUM INTO`, see `kagi_hsm_core::store::backup` for why not the
//! page-by-page backup API). The copy is written beside FILE under a temporary name, mode 0600
//! from its creation, checked, synced, and only then given its name: FILE either does not
//! exist or is a whole, checked backup. PostgreSQL is backed up with `pg_dump`; the command
//! says so instead of guessing.

use anyhow::{bail, Context, Result};
use kagi_hsm_core::store::backup::sqlite_snapshot;
use kagi_hsm_core::StoreConfig;
use serde_json::json;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::output::{json_mode, print_json, say};
use crate::cli::{BackupArgs, ServeArgs};
use crate::config::{mask_database_url, ServeConfig};

/// The SQLite file `kagi serve` would open with these settings, or why there is none.
fn sqlite_path(args: &BackupArgs) -> Result<PathBuf> {
    let serve = ServeArgs {
        data: args.data.clone(),
        database_url: args.database_url.clone(),
        config: args.config.clone(),
        ..ServeArgs::default()
    };
    let cfg = ServeConfig::resolve(&serve)?;
    let store = match &cfg.database_url {
        Some(url) => StoreConfig::from_url(url)?,
        None => StoreConfig::sqlite_in(&cfg.data_dir),
    };
    match store {
        StoreConfig::Sqlite(path) => Ok(path),
        StoreConfig::Postgres(url) => bail!(
            "this instance keeps its data in PostgreSQL ({}), and 'kagi backup' copies only the embedded SQLite database: back PostgreSQL up with its own tool, e.g. \
             pg_dump --format=custom --file kagi.dump '<database URL>' (a consistent snapshot while kagi runs; restore with pg_restore into an empty database). See the README, Backups",
            mask_database_url(&url)
        ),
    }
}

/// A name beside `out` for the copy in progress, unlikely to be taken.
fn partial_name(out: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = out
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(
        ".{name}.partial-{}-{nanos:08x}",
        std::process::id()
    ))
}

/// Remove the partial copies of `out` that interrupted backups left (their process is gone):
/// a backup killed mid-copy leaves a full-size file of sealed keys beside the target.
fn remove_stale_partials(out: &Path) -> Vec<PathBuf> {
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = match out.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

pub(super) fn backup(args: &BackupArgs) -> Result<()> {
    let db = sqlite_path(args)?;
    let out = &args.out;
    if out.symlink_metadata().is_ok() {
        bail!(
            "{} already exists: 'kagi backup' never overwrites a file; give a new name",
            out.display()
        );
    }
    if out.file_name().is_none() {
        bail!("{} is not a file name", out.display());
    }
    for stale in remove_stale_partials(out) {
        // On standard error: --output json keeps standard output for the answer.
        eprintln!(
            "removed {}, a partial copy left by an interrupted backup",
            stale.display()
        );
    }
    let partial = partial_name(out);
    // Owner-only from the first byte: the copy holds every sealed key and the audit log.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| {
            format!(
                "cannot create {} (beside {})",
                partial.display(),
                out.display()
            )
        })?;
    let made = sqlite_snapshot(&db, &partial)
        .map_err(anyhow::Error::from)
        .and_then(|info| {
            // VACUUM INTO does not sync its output: make it durable before naming it.
            OpenOptions::new()
                .write(true)
                .open(&partial)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", partial.display()))?;
            // A link fails if the name was taken meanwhile, where a rename would replace it.
            std::fs::hard_link(&partial, out)
                .with_context(|| format!("cannot name the backup {}", out.display()))?;
            Ok(info)
        });
    let removed = std::fs::remove_file(&partial);
    let info = made?;
    removed.with_context(|| format!("cannot remove {}", partial.display()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    if json_mode() {
        return print_json(&json!({
            "backup": out.display().to_string(),
            "database": db.display().to_string(),
            "audit_records": info.audit_records,
            "log_entries": info.log_entries,
            "integrity_check": "ok",
        }));
    }
    say!(
        "backed up {} to {} (mode 0600): {} audit records, {} log entries; the copy passes SQLite's integrity check",
        db.display(),
        out.display(),
        info.audit_records,
        info.log_entries
    );
    say!(
        "it holds the sealed keys: restoring it needs the unseal shares. A restore rolls usage counts back; see the README, Backups"
    );
    Ok(())
}
