//! Bringing an HSM instance up for `kagi serve` and `kagi init`: which store to open, making a
//! development instance on first run, and a development instance's self-unseal from share files.

use kagi_hsm_core::{Hsm, HsmConfig, HsmError, StoreConfig};
use std::path::{Path, PathBuf};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret_files::{create_private_dir, write_new_private_file};

pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const SHARES_DIR: &str = "unseal-shares";

#[derive(Debug, Error)]
pub enum InstanceError {
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error("cannot create {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir} holds no share files (share-1, share-2, ...): put the development shares back, or remove the folder and unseal with 'kagi unseal'")]
    NoShares { dir: PathBuf },
    #[error("the shares in {dir} were all accepted but the HSM is still sealed ({have} of {need}): add the missing share files or unseal with 'kagi unseal'")]
    NotEnoughShares {
        dir: PathBuf,
        have: usize,
        need: usize,
    },
    #[error("{path} already exists, but the database is not initialized: it belongs to another instance. Move it away (or use another --data folder) before starting a new development instance")]
    StaleSecret { path: PathBuf },
}

/// Where the instance's data lives.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    pub fn admin_token(&self) -> PathBuf {
        self.root.join(ADMIN_TOKEN_FILE)
    }

    pub fn shares_dir(&self) -> PathBuf {
        self.root.join(SHARES_DIR)
    }

    pub fn store_config(&self, database_url: Option<&str>) -> Result<StoreConfig, HsmError> {
        match database_url {
            Some(url) => StoreConfig::from_url(url),
            None => Ok(StoreConfig::sqlite_in(&self.root)),
        }
    }
}

/// What happened while bringing the instance up; the caller decides how to tell the user.
#[derive(Debug)]
pub enum Startup {
    /// First run: a development instance was made, its secrets written to the data folder.
    CreatedDevelopment,
    /// A development instance unsealed itself from share files on disk.
    SelfUnsealed { shares_used: usize },
    /// Initialized, no share files: sealed until enough `kagi unseal` calls arrive.
    Sealed,
}

/// Opens the store: PostgreSQL when a URL is given, else SQLite in the data folder (created
/// owner-only if missing).
pub fn open(
    data: &DataDir,
    database_url: Option<&str>,
    failed_login_window: std::time::Duration,
    password_lock: std::time::Duration,
    witnesses: Option<kagi_hsm_core::WitnessSet>,
) -> Result<Hsm, InstanceError> {
    if database_url.is_none() {
        ensure_root(data)?;
    }
    let store = data.store_config(database_url)?;
    let mut config = HsmConfig::new(store);
    config.failed_login_window = failed_login_window;
    config.password_lock = password_lock;
    config.witnesses = witnesses;
    Ok(Hsm::open(config)?)
}

pub fn ensure_root(data: &DataDir) -> Result<(), InstanceError> {
    create_private_dir(&data.root).map_err(|source| InstanceError::Write {
        path: data.root.clone(),
        source,
    })
}

/// Initializes a development instance if the store is empty, else self-unseals from share files
/// when they exist.
pub fn bring_up(hsm: &Hsm, data: &DataDir) -> Result<Startup, InstanceError> {
    if !hsm.is_initialized()? {
        match create_development(hsm, data) {
            Ok(()) => return Ok(Startup::CreatedDevelopment),
            // Another replica sharing the same PostgreSQL initialized it first.
            Err(InstanceError::Hsm(HsmError::AlreadyInitialized)) => {}
            Err(e) => return Err(e),
        }
    }
    let dir = data.shares_dir();
    if dir.is_dir() {
        let shares_used = unseal_from_dir(hsm, &dir)?;
        return Ok(Startup::SelfUnsealed { shares_used });
    }
    Ok(Startup::Sealed)
}

fn create_development(hsm: &Hsm, data: &DataDir) -> Result<(), InstanceError> {
    let token_path = data.admin_token();
    let shares_dir = data.shares_dir();
    // Refuse before init, not after: once init has run, losing the new share would brick the
    // instance, and overwriting an old one would brick the other.
    for path in [&token_path, &shares_dir] {
        if path.exists() {
            return Err(InstanceError::StaleSecret { path: path.clone() });
        }
    }
    create_private_dir(&shares_dir).map_err(|source| InstanceError::Write {
        path: shares_dir.clone(),
        source,
    })?;

    let out = hsm.init(1, 1)?;
    for (i, share) in out.shares.iter().enumerate() {
        let path = shares_dir.join(format!("share-{}", i + 1));
        let line = Zeroizing::new(format!("{}\n", share.as_str()));
        write_new_private_file(&path, line.as_bytes())
            .map_err(|source| InstanceError::Write { path, source })?;
    }
    let token = Zeroizing::new(format!("{}\n", out.admin_token.as_str()));
    write_new_private_file(&token_path, token.as_bytes()).map_err(|source| {
        InstanceError::Write {
            path: token_path.clone(),
            source,
        }
    })?;
    Ok(())
}

/// Submits every `share-*` file in `dir`, in name order, until the HSM is unsealed.
fn unseal_from_dir(hsm: &Hsm, dir: &Path) -> Result<usize, InstanceError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| InstanceError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("share-"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(InstanceError::NoShares {
            dir: dir.to_path_buf(),
        });
    }
    if !hsm.is_sealed() {
        return Ok(0);
    }
    let mut last = None;
    for (used, path) in files.iter().enumerate() {
        let share = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            InstanceError::Read {
                path: path.clone(),
                source,
            }
        })?);
        let progress = hsm.unseal(share.trim())?;
        if progress.unsealed {
            return Ok(used + 1);
        }
        last = Some((progress.have, progress.need));
    }
    let (have, need) = last.unwrap_or((0, 0));
    Err(InstanceError::NotEnoughShares {
        dir: dir.to_path_buf(),
        have,
        need,
    })
}
