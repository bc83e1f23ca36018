//! C2SP signed notes (https://c2sp.org/signed-note) carrying C2SP checkpoints
//! (https://c2sp.org/tlog-checkpoint), with Ed25519 keys.
//!
//! A note is its text, a blank line, then signature lines `— <key name> <base64>\n` where the
//! base64 holds the 4-byte key hash and the 64-byte signature of the text (final newline
//! included). The key hash is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key);
//! a verifier key is `<name>+<hex key hash>+<base64(0x01 || public key)>`.
//!
//! Witness cosignatures (https://c2sp.org/tlog-cosignature) are signature lines too: type
//! 0x04, blob `key hash || u64 big-endian timestamp || Ed25519 signature` over
//! `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint text.
//!
//! Signing takes a [`NoteSigner`]: the log's key stays with its holder (hsm-core derives it
//! from the master key), and this crate only lays out the bytes.

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::merkle::Hash;
use crate::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// Signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// Signature type byte of an Ed25519 witness cosignature (cosignature/v1).
const COSIGNATURE_TYPE: u8 = 0x04;
/// Every signature line starts with an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// The checkpoint body: origin, decimal size, base64 root, each on its own line.
pub fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// An Ed25519 key that signs notes on the caller's behalf.
pub trait NoteSigner {
    /// The raw 32-byte Ed25519 public key.
    fn public_key(&self) -> Result<[u8; 32]>;
    /// The 64-byte Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64]>;
}

impl NoteSigner for Ed25519KeyPair {
    fn public_key(&self) -> Result<[u8; 32]> {
        KeyPair::public_key(self)
            .as_ref()
            .try_into()
            .map_err(|_| Error::Signing("the Ed25519 public key is not 32 bytes".into()))
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64]> {
        let sig = self
            .try_sign(message)
            .map_err(|_| Error::Signing("the Ed25519 key refused to sign".into()))?;
        sig.as_ref()
            .try_into()
            .map_err(|_| Error::Signing("the Ed25519 signature is not 64 bytes".into()))
    }
}

/// Sign `body` (non-empty text ending in a newline) as a signed note by `key_name`.
pub fn sign_note(body: &str, key_name: &str, key: &dyn NoteSigner) -> Result<String> {
    check_key_name(key_name)?;
    check_text(body)?;
    let hash = key_hash(key_name, &key.public_key()?);
    let sig = key.sign(body.as_bytes())?;
    let mut blob = Vec::with_capacity(4 + 64);
    blob.extend_from_slice(&hash);
    blob.extend_from_slice(&sig);
    Ok(format!(
        "{body}\n{SIG_PREFIX}{key_name} {}\n",
        B64.encode(blob)
    ))
}

/// The verifier-key string of an Ed25519 public key: `<name>+<hex key hash>+<base64>`.
pub fn verifier_key(key_name: &str, public_key: &[u8; 32]) -> String {
    let mut typed = Vec::with_capacity(33);
    typed.push(ED25519_TYPE);
    typed.extend_from_slice(public_key);
    format!(
        "{key_name}+{}+{}",
        hex::encode(key_hash(key_name, public_key)),
        B64.encode(typed)
    )
}

/// Parse a verifier-key string into (key name, Ed25519 public key), checking its key hash.
pub fn parse_verifier_key(vkey: &str) -> Result<(String, [u8; 32])> {
    let bad = |why: &str| {
        Error::Malformed(format!(
            "'{vkey}' is not an Ed25519 verifier key ({why}): expected <name>+<8 hex digits>+<base64 of 0x01 and the 32-byte key>"
        ))
    };
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(hash_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("it does not have three '+'-separated parts"));
    };
    check_key_name(name).map_err(|_| bad("the name is empty or has a space"))?;
    let hash = hex::decode(hash_hex)
        .ok()
        .filter(|h| h.len() == 4 && hash_hex.len() == 8)
        .ok_or_else(|| bad("the key hash is not 8 hex digits"))?;
    let typed = B64
        .decode(b64)
        .map_err(|_| bad("the key is not valid base64"))?;
    let (Some(&ED25519_TYPE), Ok(public_key)) = (
        typed.first(),
        <[u8; 32]>::try_from(typed.get(1..).unwrap_or(&[])),
    ) else {
        return Err(bad("the key is not type 0x01 followed by 32 bytes"));
    };
    if key_hash(name, &public_key)[..] != hash[..] {
        return Err(bad("the key hash does not match the name and key"));
    }
    Ok((name.to_string(), public_key))
}

/// Verify that `note` carries a valid signature by the Ed25519 key `key_name`/`public_key`
/// and return its text. Signatures by other keys are ignored, as the spec says; a malformed
/// signature line, or a matching key whose signature fails, rejects the note.
pub fn open_note(note: &str, key_name: &str, public_key: &[u8]) -> Result<String> {
    if public_key.len() != 32 {
        return Err(Error::Malformed(format!(
            "an Ed25519 public key is 32 bytes, this one is {}: pass the raw key (the last 32 bytes of the verifier key's base64)",
            public_key.len()
        )));
    }
    check_key_name(key_name)?;
    let (text, lines) = split_note(note)?;
    let want = key_hash(key_name, public_key);
    let mut others: Vec<&str> = Vec::new();
    let mut other_hash: Option<String> = None;
    for (name, blob) in lines {
        if name != key_name {
            others.push(name);
            continue;
        }
        if blob[..4] != want {
            other_hash = Some(hex::encode(&blob[..4]));
            continue;
        }
        if blob.len() != 4 + 64 {
            return Err(Error::Malformed(format!(
                "the signature by '{key_name}' is {} bytes, not the 64 of an Ed25519 signature",
                blob.len() - 4
            )));
        }
        return UnparsedPublicKey::new(&ED25519, public_key)
            .verify(text.as_bytes(), &blob[4..])
            .map(|()| text.to_string())
            .map_err(|_| {
                Error::BadSignature(format!(
                    "the signature by '{key_name}' does not verify: the note's text was changed after it was signed"
                ))
            });
    }
    if let Some(h) = other_hash {
        return Err(Error::BadSignature(format!(
            "the note is signed by a key named '{key_name}' with key hash {h}, but the given public key's hash is {}: it was signed by another key; check which verifier key you were given",
            hex::encode(want)
        )));
    }
    Err(Error::BadSignature(format!(
        "the note carries no signature by '{key_name}' (it is signed by: {}): check the key name",
        if others.is_empty() {
            "nobody".to_string()
        } else {
            others.join(", ")
        }
    )))
}

/// One signature line: the key name and the decoded blob (key hash, then signature).
type SignatureLine<'a> = (&'a str, Vec<u8>);

/// A note's text (last newline kept) and its signature lines as (key name, decoded blob of at
/// least 5 bytes). Any malformed line rejects the note.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>)> {
    let split = note.rfind("\n\n").ok_or_else(|| {
        Error::Malformed(
            "not a signed note: there is no blank line between the text and the signature lines"
                .into(),
        )
    })?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    let Some(sigs) = sigs.strip_suffix('\n').filter(|s| !s.is_empty()) else {
        return Err(Error::Malformed(
            "the note has no signature lines, or its last line does not end with a newline".into(),
        ));
    };
    let mut out = Vec::new();
    for line in sigs.split('\n') {
        let malformed = || {
            Error::Malformed(format!(
                "malformed signature line '{line}': each must be '— <key name> <base64 of key hash and signature>'"
            ))
        };
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(malformed)?;
        let (name, b64) = rest.split_once(' ').ok_or_else(malformed)?;
        let blob = B64.decode(b64).map_err(|_| malformed())?;
        if name.is_empty() || blob.len() < 5 {
            return Err(malformed());
        }
        out.push((name, blob));
    }
    Ok((text, out))
}

/// Verify a checkpoint note's signature by the named key and parse its body.
pub fn open_checkpoint(
    note: &str,
    key_name: &str,
    public_key: &[u8],
) -> Result<(String, u64, Hash)> {
    let text = open_note(note, key_name, public_key)?;
    parse_checkpoint_body(&text)
}

/// The text of a note (up to its blank line, last newline kept), without checking any
/// signature.
pub fn unverified_text(note: &str) -> Result<&str> {
    note.rfind("\n\n")
        .map(|split| &note[..split + 1])
        .ok_or_else(|| {
            Error::Malformed(
                "not a signed note: there is no blank line between the text and the signature lines"
                    .into(),
            )
        })
}

/// Parse a checkpoint body: origin, size (decimal, no leading zeros), base64 root, then
/// optional non-empty extension lines, which are ignored.
pub fn parse_checkpoint_body(text: &str) -> Result<(String, u64, Hash)> {
    let bad = |why: String| {
        Error::Malformed(format!(
            "not a checkpoint ({why}): the text must be '<origin>\\n<size>\\n<base64 root hash>\\n'"
        ))
    };
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| bad("it does not end with a newline".into()))?;
    let mut lines = body.split('\n');
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| bad("the origin line is empty".into()))?;
    let size_line = lines
        .next()
        .ok_or_else(|| bad("the size line is missing".into()))?;
    let size: u64 = size_line
        .parse()
        .ok()
        .filter(|s: &u64| s.to_string() == size_line)
        .ok_or_else(|| {
            bad(format!(
                "the size '{size_line}' is not a plain decimal number"
            ))
        })?;
    let root_line = lines
        .next()
        .ok_or_else(|| bad("the root hash line is missing".into()))?;
    let root = B64
        .decode(root_line)
        .ok()
        .and_then(|r| Hash::try_from(r).ok())
        .ok_or_else(|| bad(format!("the root '{root_line}' is not base64 of 32 bytes")))?;
    if lines.any(str::is_empty) {
        return Err(bad("it has an empty line".into()));
    }
    Ok((origin.to_string(), size, root))
}

/// First 4 bytes of SHA-256(name || 0x0A || 0x01 || public key).
fn key_hash(key_name: &str, public_key: &[u8]) -> [u8; 4] {
    typed_key_hash(key_name, ED25519_TYPE, public_key)
}

/// First 4 bytes of SHA-256(name || 0x0A || type || public key).
fn typed_key_hash(key_name: &str, key_type: u8, public_key: &[u8]) -> [u8; 4] {
    let mut c = Context::new(&SHA256);
    c.update(key_name.as_bytes());
    c.update(&[b'\n', key_type]);
    c.update(public_key);
    let d = c.finish();
    let mut out = [0u8; 4];
    out.copy_from_slice(&d.as_ref()[..4]);
    out
}

fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(Error::Malformed(format!(
            "'{name}' cannot name a note key: a key name is non-empty and has no spaces and no '+' (use the log's origin, e.g. 'example.com/log')"
        )));
    }
    Ok(())
}

fn check_text(body: &str) -> Result<()> {
    if body.is_empty() || !body.ends_with('\n') {
        return Err(Error::Malformed(
            "a note's text must be non-empty and end with a newline".into(),
        ));
    }
    if body.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::Malformed(
            "a note's text may not hold control characters other than newlines".into(),
        ));
    }
    Ok(())
}

/// The verifier key of a witness's cosignature key: `<name>+<hex key hash>+<base64(0x04 ||
/// public key)>`.
pub fn cosignature_verifier_key(witness_name: &str, public_key: &[u8; 32]) -> String {
    let mut typed = Vec::with_capacity(33);
    typed.push(COSIGNATURE_TYPE);
    typed.extend_from_slice(public_key);
    format!(
        "{witness_name}+{}+{}",
        hex::encode(typed_key_hash(witness_name, COSIGNATURE_TYPE, public_key)),
        B64.encode(typed)
    )
}

/// What a cosignature/v1 signs: the statement line, the time line, then the checkpoint text.
fn cosigned_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// A witness's cosignature line (`— <name> <base64>\n`) over checkpoint `text` (the note's
/// text, final newline included) at `timestamp` (unix seconds): append it to the note.
pub fn cosign(
    text: &str,
    witness_name: &str,
    timestamp: u64,
    key: &dyn NoteSigner,
) -> Result<String> {
    check_key_name(witness_name)?;
    check_text(text)?;
    parse_checkpoint_body(text)?;
    let public_key = key.public_key()?;
    let sig = key.sign(cosigned_message(text, timestamp).as_bytes())?;
    let mut blob = Vec::with_capacity(4 + 8 + 64);
    blob.extend_from_slice(&typed_key_hash(witness_name, COSIGNATURE_TYPE, &public_key));
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&sig);
    Ok(format!("{SIG_PREFIX}{witness_name} {}\n", B64.encode(blob)))
}

/// Verify that checkpoint `note` carries a valid cosignature by the witness
/// `witness_name`/`public_key` and return the time (unix seconds) the witness states. Other
/// signature lines (the log's, other witnesses') are ignored; a malformed line rejects the
/// note, as in [`open_note`].
pub fn open_cosignature(note: &str, witness_name: &str, public_key: &[u8]) -> Result<u64> {
    if public_key.len() != 32 {
        return Err(Error::Malformed(format!(
            "a witness's Ed25519 public key is 32 bytes, this one is {}",
            public_key.len()
        )));
    }
    check_key_name(witness_name)?;
    let (text, lines) = split_note(note)?;
    let want = typed_key_hash(witness_name, COSIGNATURE_TYPE, public_key);
    for (name, blob) in lines {
        if name != witness_name || blob[..4] != want {
            continue;
        }
        let (Some(ts), Some(sig), 76) = (blob.get(4..12), blob.get(12..), blob.len()) else {
            return Err(Error::Malformed(format!(
                "the cosignature by '{witness_name}' is {} bytes, not the 4 + 8 + 64 of cosignature/v1",
                blob.len()
            )));
        };
        let mut t = [0u8; 8];
        t.copy_from_slice(ts);
        let timestamp = u64::from_be_bytes(t);
        return UnparsedPublicKey::new(&ED25519, public_key)
            .verify(cosigned_message(text, timestamp).as_bytes(), sig)
            .map(|()| timestamp)
            .map_err(|_| {
                Error::BadSignature(format!(
                    "the cosignature by '{witness_name}' does not verify: the checkpoint or its time was changed after the witness signed"
                ))
            });
    }
    Err(Error::BadSignature(format!(
        "the checkpoint carries no cosignature by witness '{witness_name}' with this key: ask the witness for its cosignature, or check its verifier key"
    )))
}

/// Whether `note` carries a signature line by witness `witness_name`/`public_key`, without
/// verifying it: the cheap test for "already holds this witness's line" where the caller
/// verified the line it is about to add, and verifies a found one with [`open_cosignature`].
pub fn has_cosignature_line(note: &str, witness_name: &str, public_key: &[u8; 32]) -> bool {
    let want = typed_key_hash(witness_name, COSIGNATURE_TYPE, public_key);
    split_note(note).is_ok_and(|(_, lines)| {
        lines
            .iter()
            .any(|(name, blob)| *name == witness_name && blob[..4] == want)
    })
}

/// Parse a witness's cosignature verifier key (type 0x04) into (name, public key).
pub fn parse_cosignature_verifier_key(vkey: &str) -> Result<(String, [u8; 32])> {
    let bad = |why: &str| {
        Error::Malformed(format!(
            "'{vkey}' is not a cosignature/v1 verifier key ({why}): expected <name>+<8 hex digits>+<base64 of 0x04 and the 32-byte key>"
        ))
    };
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(hash_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("it does not have three '+'-separated parts"));
    };
    check_key_name(name).map_err(|_| bad("the name is empty or has a space"))?;
    let typed = B64
        .decode(b64)
        .map_err(|_| bad("the key is not valid base64"))?;
    let (Some(&COSIGNATURE_TYPE), Ok(public_key)) = (
        typed.first(),
        <[u8; 32]>::try_from(typed.get(1..).unwrap_or(&[])),
    ) else {
        return Err(bad("the key is not type 0x04 followed by 32 bytes"));
    };
    if hex::encode(typed_key_hash(name, COSIGNATURE_TYPE, &public_key)) != hash_hex {
        return Err(bad("the key hash does not match the name and key"));
    }
    Ok((name.to_string(), public_key))
}

/// A witness's valid cosignature found by [`check_cosignature_quorum`]: who, and the time
/// (unix seconds) the witness states it saw the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    pub name: String,
    pub timestamp: u64,
}

/// Check that checkpoint `note` carries valid cosignature/v1 lines from at least `quorum`
/// distinct witnesses among `witnesses` (their cosignature verifier keys, as
/// [`cosignature_verifier_key`] prints them), and return the witnesses that cosigned, in the
/// order given.
///
/// As signed-note says: lines whose (name, key hash) match no given witness are ignored (the
/// log's own signature, witnesses the caller does not know); a line that matches a given
/// witness must verify, or the whole note is refused, since a bad cosignature by a known
/// witness means the checkpoint or the cosignature was changed. The note's log signature is
/// not checked here: open the checkpoint with the log's key first.
///
/// A cosignature/v1 signature does not cover the witness's name, so two given keys with the
/// same public key would let one witness count twice: they are refused, as are duplicates, a
/// quorum of 0, and a quorum larger than the witnesses given.
pub fn check_cosignature_quorum(
    note: &str,
    witnesses: &[String],
    quorum: usize,
) -> Result<Vec<Cosigned>> {
    let mut keys: Vec<(String, [u8; 32], [u8; 4])> = Vec::with_capacity(witnesses.len());
    for vkey in witnesses {
        let (name, public_key) = parse_cosignature_verifier_key(vkey)?;
        if let Some((other, _, _)) = keys.iter().find(|(_, k, _)| *k == public_key) {
            return Err(Error::Malformed(format!(
                "the witness keys '{other}' and '{name}' have the same public key: a cosignature does not cover the witness's name, so one key counts as one witness; give each witness once"
            )));
        }
        let hash = typed_key_hash(&name, COSIGNATURE_TYPE, &public_key);
        keys.push((name, public_key, hash));
    }
    if quorum == 0 || quorum > keys.len() {
        return Err(Error::Malformed(format!(
            "a witness quorum of {quorum} cannot be met with {} witness key(s): it must be between 1 and the number of witnesses given",
            keys.len()
        )));
    }
    let (text, lines) = split_note(note)?;
    let mut times: Vec<Option<u64>> = vec![None; keys.len()];
    for (line_name, blob) in lines {
        let Some(i) = keys
            .iter()
            .position(|(name, _, hash)| name == line_name && blob[..4] == hash[..])
        else {
            continue;
        };
        let (name, public_key, _) = &keys[i];
        let (Some(ts), Some(sig), 76) = (blob.get(4..12), blob.get(12..), blob.len()) else {
            return Err(Error::Malformed(format!(
                "the cosignature by witness '{name}' is {} bytes, not the 4 + 8 + 64 of cosignature/v1: the checkpoint was altered",
                blob.len()
            )));
        };
        let mut t = [0u8; 8];
        t.copy_from_slice(ts);
        let timestamp = u64::from_be_bytes(t);
        if UnparsedPublicKey::new(&ED25519, public_key)
            .verify(cosigned_message(text, timestamp).as_bytes(), sig)
            .is_err()
        {
            return Err(Error::BadSignature(format!(
                "the cosignature by witness '{name}' does not verify: it was made for another checkpoint, or the checkpoint or the cosignature's time was changed after the witness signed; refusing the checkpoint"
            )));
        }
        times[i].get_or_insert(timestamp);
    }
    let signed: Vec<Cosigned> = keys
        .iter()
        .zip(&times)
        .filter_map(|((name, _, _), t)| {
            t.map(|timestamp| Cosigned {
                name: name.clone(),
                timestamp,
            })
        })
        .collect();
    if signed.len() < quorum {
        let missing: Vec<&str> = keys
            .iter()
            .zip(&times)
            .filter(|(_, t)| t.is_none())
            .map(|((name, _, _), _)| name.as_str())
            .collect();
        let names = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let signed_names: Vec<&str> = signed.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::BadSignature(format!(
            "the checkpoint is cosigned by {} of the {} given witnesses, but {quorum} are needed (cosigned: {}; missing: {}): it was not witnessed by enough of the witnesses you trust, so it may come from a rolled-back or forked log; fetch a newer proof (kagi releases results only once its witnesses cosigned) or check the witness keys",
            signed.len(),
            keys.len(),
            names(&signed_names),
            names(&missing),
        )));
    }
    Ok(signed)
}
