//! Files and folders that hold secrets: created owner-only from the start, so there is no window
//! in which another local user could read them.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0700. An existing folder is left as it is: the
/// user may have pointed `--data` at a folder whose mode they chose (see [`is_private_dir`]).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// True when no one but the owner can enter or list `dir`.
pub fn is_private_dir(dir: &Path) -> std::io::Result<bool> {
    Ok(std::fs::metadata(dir)?.permissions().mode() & 0o077 == 0)
}

/// Writes `contents` to a new file with mode 0600. Refuses to overwrite, because every file
/// written this way holds a secret that must not be silently replaced.
pub fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_owner_only_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        assert_eq!(
            std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(is_private_dir(&sub).unwrap());
        let f = sub.join("secret");
        write_new_private_file(&f, b"x").unwrap();
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(write_new_private_file(&f, b"y").is_err());
    }
}
