//! hsm-core: kagi's HSM boundary.
//!
//! Everything that touches private key material lives behind [`Hsm`]: key generation, signing,
//! wrap and unwrap, the sealed key store, usage counters and the audit log. No function in this
//! crate returns a private key in plaintext.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod algorithm;
pub mod attributes;
pub mod audit;
pub mod auth;
mod b64;
mod commit;
mod crypto;
pub mod error;
mod hsm;
mod integrity;
pub use hsm::{approvals, policy_store};
pub mod records;
mod seal;
pub mod shares;
pub mod store;
pub mod tlog;
pub mod totp;
mod transparency;
pub mod witnessing;
mod wrap;

pub use algorithm::{Algorithm, DigestAlg, RsaPadding};
pub use approvals::{ApprovalAction, ApprovalInfo, ChangeGrant, QuorumRule};
pub use attributes::{KeyInfo, KeySpec, KeyState, KeyVersion, Lifecycle, Operation};
pub use audit::{AuditEvent, AuditReport, Checkpoint};
pub use auth::{ClientInfo, CredentialInfo, IdentityKind, KeyAuth, Role, Session};
pub use commit::{CommitObserver, StagedRow};
pub use error::{ErrorKind, HsmError, Result};
pub use hsm::{
    AuditFeed, ConsoleSession, Gated, Hsm, HsmConfig, IdentitySpec, InitOutput, KeyUsage, LogSizes,
    QuotaCharge, QuotaUsage, RecoverAction, Recovered, RollbackRecovery, SessionLimits, SignKey,
    SignOp, SignPurpose, SignRequest, Signed, StagedRows, Staging, UnsealProgress,
    FAILED_LOGIN_WINDOW, KEY_AUTH_ATTEMPTS, KEY_AUTH_LOCK, KEY_AUTH_LOCK_MAX, PASSWORD_ATTEMPTS,
    PASSWORD_LOCK,
};
pub use policy_store::StoredPolicy;
pub use store::StoreConfig;
pub use transparency::{InclusionPromise, TlogCheckpoint, TlogEntry};
pub use witnessing::{Witness, WitnessSet, WitnessState, WitnessStatus};

pub use crypto::verify_digest;
pub use wrap::{wrap_for_import, WRAP_MECHANISM};
