//! ca: the X.509 certificate authority whose keys live in hsm-core.
//!
//! The CA hierarchy, profiles, issuance, CRL and OCSP arrive with the CA issue (`issues show 4`).
//! What is here now is the piece every certificate needs first: its serial number.
#![forbid(unsafe_code)]

pub mod serial;
