//! Rows that belong to the services built on the HSM, kept in its store so they commit in the
//! same transactions as key uses. The core modules (keys, sessions, the commit path, the audit
//! log) never import this area; it uses their generic hooks ([`crate::StagedRow`],
//! [`crate::SignOp`]) like any other crate could.

pub mod ca;
pub mod profiles;
