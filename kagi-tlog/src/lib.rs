//! kagi-tlog: transparency-log formats and proofs, with no store and no key.
//!
//! - [`merkle`]: RFC 9162 leaf and node hashing and the compact frontier appends use;
//! - [`proof`]: inclusion and consistency proofs computed from complete-subtree hashes (any
//!   [`NodeSource`]: memory here, the database in hsm-core) and their verification;
//! - [`note`]: C2SP signed notes, checkpoints and witness cosignatures (signing takes a
//!   caller's [`NoteSigner`], so the crate never holds a key);
//! - [`canonical`]: the one canonical JSON encoding every logged body uses, RFC 8785 (JCS);
//! - [`entry`]: the typed entries: kagi's own signature entry, the audit-checkpoint anchor a
//!   witnessed kagi logs with every batch, Sigstore's hashedrekord 0.0.1 body, and the
//!   inclusion-promise (signed entry timestamp) body;
//! - [`witness`]: the C2SP tlog-witness protocol: the add-checkpoint body, the witness's
//!   answers, and the witness's check of a checkpoint against the one it saved.
//!
//! Why a crate of its own: the log's *storage* (tables, the commit path, the log key) belongs to
//! hsm-core, but everything a relying party needs to check a proof is pure computation. Keeping
//! it here lets verifiers (`kagi-verify`, `kagi verify`) link it without diesel, libpq, SQLite,
//! Argon2 or Shamir, and makes the bytes the service writes and the bytes a verifier rebuilds
//! come from the same code.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod canonical;
pub mod entry;
pub mod merkle;
pub mod note;
pub mod proof;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
#[cfg(test)]
mod tests;
pub mod witness;

pub use canonical::canonical_json;
pub use entry::{AuditCheckpointEntry, HashedRekord, PromiseBody, SignatureEntry};
pub use merkle::{empty_root, entry_hash, Frontier, Hash};
pub use note::{
    check_cosignature_quorum, checkpoint_body, cosign, has_cosignature_line, open_checkpoint,
    open_cosignature, open_note, parse_checkpoint_body, parse_verifier_key, sign_note,
    unverified_text, verifier_key, Cosigned, NoteSigner,
};
pub use proof::{
    consistency_proof, inclusion_proof, root_at, verify_consistency, verify_inclusion, MemoryNodes,
    NodeSource,
};

/// kagi's log: its checkpoints' origin line and its key's name in signed notes.
pub const ORIGIN: &str = "kagi-tlog";

/// What can go wrong reading, checking or signing log material. Every message says what was
/// wrong and, where the caller can act, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A note, checkpoint, key, proof request or entry that does not have the expected form.
    #[error("{0}")]
    Malformed(String),
    /// A signature that is absent, by another key, or does not verify.
    #[error("{0}")]
    BadSignature(String),
    /// A proof asks for a subtree the tree does not have (yet).
    #[error("there is no complete subtree at level {level} index {idx} in a log of {size} entries: ask for a tree size of at most {size}")]
    NoSuchNode { level: u32, idx: u64, size: u64 },
    /// The caller's signer failed.
    #[error("signing the note failed: {0}")]
    Signing(String),
}
