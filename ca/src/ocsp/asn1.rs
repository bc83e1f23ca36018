//! The ASN.1 of RFC 6960 lives in kagi-x509, which the verifier shares; re-exported here so
//! the responder's paths stay `kagi_ca::ocsp::*`.

pub use kagi_x509::ocsp::*;
