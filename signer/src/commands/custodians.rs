//! Unseal shares that only their custodian can read: `kagi init --share-recipients` encrypts
//! each share to one custodian's age (X25519) public key, and `kagi unseal` / `kagi admin
//! recover --identity` decrypt a share file here, on the custodian's machine, so the service
//! and the terminal only ever see the one share being submitted.

use age::x25519::{Identity, Recipient};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

/// The first bytes of an age file, binary or ASCII-armored.
const AGE_BINARY: &[u8] = b"age-encryption.org/";
const AGE_ARMORED: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// The lines of a key file that carry something: comments (age-keygen writes some) and blank
/// lines are skipped.
fn key_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// One custodian's public key: a file holding exactly one `age1…` line.
pub(super) fn read_recipient(path: &Path) -> Result<Recipient> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the recipient file {}", path.display()))?;
    let lines: Vec<&str> = key_lines(&text).collect();
    let [line] = lines.as_slice() else {
        bail!(
            "{} must hold exactly one age public key (a line 'age1…'), one custodian per file; it holds {} key lines",
            path.display(),
            lines.len()
        );
    };
    if line.starts_with("ssh-") {
        bail!(
            "{} is an SSH public key; kagi encrypts shares to age X25519 keys: the custodian makes one with 'age-keygen -o NAME.key' and hands over the 'age1…' public key it prints",
            path.display()
        );
    }
    Recipient::from_str(line).map_err(|e| {
        anyhow::anyhow!(
            "{} does not hold an age public key (a line 'age1…'): {e}",
            path.display()
        )
    })
}

/// A share as an ASCII-armored age file (text, so it survives being mailed or pasted).
pub(super) fn encrypt_share(recipient: &Recipient, share: &str) -> Result<String> {
    age::encrypt_and_armor(recipient, share.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot encrypt a share: {e}"))
}

/// The X25519 identities (`AGE-SECRET-KEY-1…`) of the given identity files.
pub(super) fn read_identities(paths: &[PathBuf]) -> Result<Vec<Identity>> {
    let mut identities = Vec::new();
    for path in paths {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the identity file {}", path.display()))?,
        );
        let before = identities.len();
        for line in key_lines(&text) {
            let identity = Identity::from_str(line).map_err(|_| {
                anyhow::anyhow!(
                    "{} holds a line that is not an age identity ('AGE-SECRET-KEY-1…', as age-keygen writes)",
                    path.display()
                )
            })?;
            identities.push(identity);
        }
        if identities.len() == before {
            bail!(
                "{} holds no age identity ('AGE-SECRET-KEY-1…')",
                path.display()
            );
        }
    }
    Ok(identities)
}

fn is_age(bytes: &[u8]) -> bool {
    let start = bytes.trim_ascii_start();
    start.starts_with(AGE_BINARY) || start.starts_with(AGE_ARMORED)
}

/// The share line in `path`: decrypted with `identities` when the file is age-encrypted, as it
/// is otherwise. `identity_files` only name the identities in messages.
pub(super) fn read_share(
    path: &Path,
    identities: &[Identity],
    identity_files: &[PathBuf],
) -> Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read share file {}", path.display()))?,
    );
    if !is_age(&bytes) {
        let text = std::str::from_utf8(&bytes).with_context(|| {
            format!("{} is neither a share line nor an age file", path.display())
        })?;
        return Ok(Zeroizing::new(text.trim().to_string()));
    }
    if identities.is_empty() {
        bail!(
            "{} is encrypted to a custodian (age): pass --identity with the custodian's identity file (AGE-SECRET-KEY-1…)",
            path.display()
        );
    }
    let names: Vec<String> = identity_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(&bytes[..]))
        .map_err(|e| anyhow::anyhow!("{} is not a readable age file: {e}", path.display()))?;
    let mut reader = match decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)) {
        Ok(r) => r,
        Err(age::DecryptError::NoMatchingKeys) => bail!(
            "{} is not encrypted to the identity in {}: use the custodian's own identity file",
            path.display(),
            names.join(", ")
        ),
        Err(e) => bail!("cannot decrypt {}: {e}", path.display()),
    };
    let mut plain = Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut reader, &mut plain)
        .with_context(|| format!("cannot decrypt {}", path.display()))?;
    let text = std::str::from_utf8(&plain)
        .with_context(|| format!("{} does not decrypt to a share line", path.display()))?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn a_share_opens_with_its_custodians_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Identity::generate();
        let bob = Identity::generate();
        std::fs::write(
            dir.path().join("alice.pub"),
            format!("# alice\n{}\n", alice.to_public()),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("alice.key"),
            format!("# created: now\n{}\n", alice.to_string().expose_secret()),
        )
        .unwrap();
        std::fs::write(dir.path().join("bob.key"), bob.to_string().expose_secret()).unwrap();
        let recipient = read_recipient(&dir.path().join("alice.pub")).unwrap();
        let share = dir.path().join("share-1.age");
        std::fs::write(
            &share,
            encrypt_share(&recipient, "kagi-share-v1:x\n").unwrap(),
        )
        .unwrap();

        let files = vec![dir.path().join("alice.key")];
        let ids = read_identities(&files).unwrap();
        assert_eq!(
            read_share(&share, &ids, &files).unwrap().as_str(),
            "kagi-share-v1:x"
        );

        let files = vec![dir.path().join("bob.key")];
        let ids = read_identities(&files).unwrap();
        let err = read_share(&share, &ids, &files).unwrap_err().to_string();
        assert!(err.contains("is not encrypted to the identity in"), "{err}");
        let err = read_share(&share, &[], &[]).unwrap_err().to_string();
        assert!(err.contains("--identity"), "{err}");

        std::fs::write(
            dir.path().join("two.pub"),
            format!("{0}\n{0}\n", alice.to_public()),
        )
        .unwrap();
        assert!(read_recipient(&dir.path().join("two.pub")).is_err());
    }
}
