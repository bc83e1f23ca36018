//! `libkagi_pkcs11.so`: a PKCS#11 3.0 module whose keys live in a kagi service. Every
//! signature is a call to the service over TLS, so its policy, quotas, usage limits and audit
//! apply to PKCS#11 callers exactly as to HTTP ones; the module holds no secret but the
//! partition credential.
//!
//! Modules by PKCS#11 function family: [`module`] (C_Initialize, C_Finalize and the state
//! between them), [`token`] (slots, tokens, mechanisms), [`session`] (sessions and logins),
//! [`find`] and [`object`] (objects and their attributes), [`sign`] (signing mechanisms),
//! [`keygen`] (C_GenerateKeyPair). [`ffi`] is the C ABI and the only module with `unsafe`.
#![deny(unsafe_code)]

pub mod client;
pub mod config;
pub mod der;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod find;
pub mod keygen;
pub mod module;
pub mod object;
pub mod session;
pub mod sign;
pub mod token;

pub use error::CKR_KEY_NOT_ACTIVE;
pub use object::{CKA_USAGE_COUNT, CKA_USAGE_LIMIT, FRESH};
