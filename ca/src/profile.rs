//! Certificate profiles: data that says what a CSR may ask for and what its certificate gets.
//! The built-in ones are in `profiles/builtin.toml`; their rules are compiled once.

use const_oid::ObjectIdentifier;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::{CaError, Result};

const BUILTIN: &str = include_str!("../profiles/builtin.toml");

/// 9999-12-31T23:59:59Z: the GeneralizedTime RFC 5280 §4.1.2.5 reserves for "no well-defined
/// expiration date", which IEEE 802.1AR IDevIDs use.
pub const NO_EXPIRY_UNIX: i64 = 253_402_300_799;

/// A validity period in days, or "forever" (notAfter 99991231235959Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Days {
    Days(i64),
    Forever(Forever),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forever {
    Forever,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectRule {
    pub attr: String,
    pub pattern: String,
    #[serde(default)]
    pub required: bool,
}

/// A profile as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    pub name: String,
    pub description: String,
    pub key_types: Vec<String>,
    pub key_usage: Vec<String>,
    #[serde(default)]
    pub ekus: Vec<String>,
    #[serde(default)]
    pub eku_critical: bool,
    pub default_validity_days: Days,
    pub max_validity_days: Days,
    #[serde(default)]
    pub subject: Vec<SubjectRule>,
    #[serde(default)]
    pub san_required: bool,
    #[serde(default)]
    pub san_dns: Option<String>,
    #[serde(default)]
    pub san_ip: bool,
    #[serde(default)]
    pub san_uri: Option<String>,
    #[serde(default)]
    pub san_email: Option<String>,
    #[serde(default)]
    pub ocsp_nocheck: bool,
    /// One live certificate per subject serialNumber under each CA (IEEE 802.1AR device
    /// identities): a new key for a serial number in use is refused with `serial_in_use`.
    #[serde(default)]
    pub one_certificate_per_serial_number: bool,
}

/// A profile, compiled.
#[derive(Debug, Clone)]
pub struct Profile {
    pub spec: ProfileSpec,
    pub subject: Vec<(ObjectIdentifier, String, Regex, bool)>,
    pub ekus: Vec<ObjectIdentifier>,
    pub key_usage_bits: u16,
    pub san_dns: Option<Regex>,
    pub san_uri: Option<Regex>,
    pub san_email: Option<Regex>,
}

/// Subject attributes a profile may name, by their short names.
pub fn attribute_oid(short: &str) -> Option<ObjectIdentifier> {
    Some(match short {
        "CN" => const_oid::db::rfc4519::CN,
        "O" => const_oid::db::rfc4519::O,
        "OU" => const_oid::db::rfc4519::OU,
        "C" => const_oid::db::rfc4519::C,
        "L" => const_oid::db::rfc4519::L,
        "ST" => const_oid::db::rfc4519::ST,
        "serialNumber" => const_oid::db::rfc4519::SERIAL_NUMBER,
        _ => return None,
    })
}

pub fn attribute_name(oid: &ObjectIdentifier) -> String {
    for short in ["CN", "O", "OU", "C", "L", "ST", "serialNumber"] {
        if attribute_oid(short).as_ref() == Some(oid) {
            return short.to_string();
        }
    }
    oid.to_string()
}

pub fn eku_oid(name: &str) -> Option<ObjectIdentifier> {
    use const_oid::db::rfc5280 as r;
    Some(match name {
        "serverAuth" => r::ID_KP_SERVER_AUTH,
        "clientAuth" => r::ID_KP_CLIENT_AUTH,
        "codeSigning" => r::ID_KP_CODE_SIGNING,
        "emailProtection" => r::ID_KP_EMAIL_PROTECTION,
        "timeStamping" => r::ID_KP_TIME_STAMPING,
        "OCSPSigning" => r::ID_KP_OCSP_SIGNING,
        _ => return None,
    })
}

/// KeyUsage bit positions (RFC 5280 §4.2.1.3), as a mask with bit n = 1 << n.
pub fn key_usage_bit(name: &str) -> Option<u16> {
    let n = match name {
        "digitalSignature" => 0,
        "nonRepudiation" | "contentCommitment" => 1,
        "keyEncipherment" => 2,
        "dataEncipherment" => 3,
        "keyAgreement" => 4,
        "keyCertSign" => 5,
        "cRLSign" => 6,
        _ => return None,
    };
    Some(1 << n)
}

fn anchored(pattern: &str, what: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| CaError::BadRequest(format!("{what}: invalid regex '{pattern}': {e}")))
}

impl Profile {
    pub fn compile(spec: ProfileSpec) -> Result<Profile> {
        let what = format!("profile '{}'", spec.name);
        let mut subject = Vec::new();
        for r in &spec.subject {
            let oid = attribute_oid(&r.attr).ok_or_else(|| {
                CaError::BadRequest(format!(
                    "{what}: unknown subject attribute '{}' (use CN, O, OU, C, L, ST, serialNumber)",
                    r.attr
                ))
            })?;
            subject.push((
                oid,
                r.attr.clone(),
                anchored(&r.pattern, &what)?,
                r.required,
            ));
        }
        let ekus = spec
            .ekus
            .iter()
            .map(|e| {
                eku_oid(e).ok_or_else(|| {
                    CaError::BadRequest(format!("{what}: unknown extended key usage '{e}'"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut key_usage_bits = 0u16;
        for k in &spec.key_usage {
            key_usage_bits |= key_usage_bit(k)
                .ok_or_else(|| CaError::BadRequest(format!("{what}: unknown key usage '{k}'")))?;
        }
        if key_usage_bits & (key_usage_bit("keyCertSign").unwrap_or(0)) != 0 {
            return Err(CaError::BadRequest(format!(
                "{what}: end-entity profiles cannot grant keyCertSign; CAs are made with 'kagi ca create-intermediate'"
            )));
        }
        for k in &spec.key_types {
            if k.parse::<kagi_hsm_core::Algorithm>().is_err() {
                return Err(CaError::BadRequest(format!(
                    "{what}: unknown key type '{k}'"
                )));
            }
        }
        let opt = |p: &Option<String>| p.as_deref().map(|p| anchored(p, &what)).transpose();
        Ok(Profile {
            san_dns: opt(&spec.san_dns)?,
            san_uri: opt(&spec.san_uri)?,
            san_email: opt(&spec.san_email)?,
            subject,
            ekus,
            key_usage_bits,
            spec,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    profile: Vec<ProfileSpec>,
}

/// The profiles an instance offers, by name.
#[derive(Debug, Clone)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

impl Profiles {
    pub fn builtin() -> Result<Profiles> {
        Self::from_toml(BUILTIN)
    }

    pub fn from_toml(text: &str) -> Result<Profiles> {
        let file: ProfileFile =
            toml::from_str(text).map_err(|e| CaError::BadRequest(format!("profiles: {e}")))?;
        let mut by_name = BTreeMap::new();
        for spec in file.profile {
            let p = Profile::compile(spec)?;
            by_name.insert(p.name().to_string(), p);
        }
        Ok(Profiles { by_name })
    }

    pub fn get(&self, name: &str) -> Result<&Profile> {
        self.by_name
            .get(name)
            .ok_or_else(|| CaError::UnknownProfile(name.chars().take(64).collect::<String>()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_compile() {
        let p = Profiles::builtin().unwrap();
        let names: Vec<_> = p.iter().map(|p| p.name().to_string()).collect();
        assert_eq!(
            names,
            [
                "code-signing",
                "device",
                "ocsp-signing",
                "timestamping",
                "tls-server"
            ]
        );
        let dev = p.get("device").unwrap();
        assert_eq!(
            dev.spec.default_validity_days,
            Days::Forever(Forever::Forever)
        );
        assert!(dev
            .subject
            .iter()
            .any(|(_, n, _, req)| n == "serialNumber" && *req));
        assert!(matches!(p.get("nope"), Err(CaError::UnknownProfile(_))));
    }

    #[test]
    fn patterns_are_anchored() {
        let p = Profiles::builtin().unwrap();
        let dev = p.get("device").unwrap();
        let (_, _, re, _) = dev.subject.iter().find(|s| s.1 == "C").unwrap();
        assert!(re.is_match("DE"));
        assert!(!re.is_match("DEU"));
        assert!(!re.is_match("xDE"));
    }
}
