//! The algorithms kagi supports, named the way users type them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Key algorithm. The string forms (`ec-p256`, ...) are the stable names in the CLI, the HTTP API
/// and the sealed-blob associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "ec-p256")]
    EcP256,
    #[serde(rename = "ec-p384")]
    EcP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl Algorithm {
    pub const ALL: [Algorithm; 6] = [
        Algorithm::EcP256,
        Algorithm::EcP384,
        Algorithm::Rsa2048,
        Algorithm::Rsa3072,
        Algorithm::Rsa4096,
        Algorithm::Ed25519,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EcP256 => "ec-p256",
            Algorithm::EcP384 => "ec-p384",
            Algorithm::Rsa2048 => "rsa-2048",
            Algorithm::Rsa3072 => "rsa-3072",
            Algorithm::Rsa4096 => "rsa-4096",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096
        )
    }

    /// The digest used when the caller names none: SHA-256 for every key, so one rule holds
    /// (and `openssl dgst -sha256 -verify` checks any raw signature). Ask for SHA-384 or
    /// SHA-512 to match a P-384 or RSA-4096 key's strength.
    pub fn default_digest(self) -> DigestAlg {
        DigestAlg::Sha256
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| Error::UnknownAlgorithm(s.chars().take(64).collect()))
    }
}

/// Digest algorithm of a precomputed digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DigestAlg {
    #[serde(rename = "sha256")]
    Sha256,
    #[serde(rename = "sha384")]
    Sha384,
    #[serde(rename = "sha512")]
    Sha512,
}

impl DigestAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha256",
            DigestAlg::Sha384 => "sha384",
            DigestAlg::Sha512 => "sha512",
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha384 => 48,
            DigestAlg::Sha512 => 64,
        }
    }

    /// The engine's digest, for code that hashes or imports digests with aws-lc-rs itself.
    pub fn aws(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            DigestAlg::Sha256 => &aws_lc_rs::digest::SHA256,
            DigestAlg::Sha384 => &aws_lc_rs::digest::SHA384,
            DigestAlg::Sha512 => &aws_lc_rs::digest::SHA512,
        }
    }

    /// Hash `data` in one go (small inputs; the CLI streams large files itself).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(self.aws(), data)
            .as_ref()
            .to_vec()
    }
}

impl FromStr for DigestAlg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" | "sha-256" | "SHA256" | "SHA-256" => Ok(DigestAlg::Sha256),
            "sha384" | "sha-384" | "SHA384" | "SHA-384" => Ok(DigestAlg::Sha384),
            "sha512" | "sha-512" | "SHA512" | "SHA-512" => Ok(DigestAlg::Sha512),
            other => Err(Error::BadInput(format!(
                "unknown digest algorithm '{}': use sha256, sha384 or sha512",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// RSA padding. Ignored for EC and Ed25519 keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RsaPadding {
    #[default]
    #[serde(rename = "pkcs1")]
    Pkcs1v15,
    /// PSS with MGF1 over the same digest and a salt as long as the digest.
    #[serde(rename = "pss")]
    Pss,
}

impl FromStr for RsaPadding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pkcs1" | "pkcs1v15" => Ok(RsaPadding::Pkcs1v15),
            "pss" => Ok(RsaPadding::Pss),
            other => Err(Error::BadInput(format!(
                "unknown RSA padding '{}': use pkcs1 or pss",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}
