//! Certificate profiles: data that says what a CSR may ask for and what its certificate gets.
//! The built-in ones are in `profiles/builtin.toml`; officers add their own (kept in the audit
//! log, see `service.rs`). Rules are compiled once per spec.
//!
//! Allow-lists are anchored regexes matched against the literal text of a name: a wildcard DNS
//! name `*.example.com` is the string `*.example.com`, never expanded, so a pattern must admit
//! the `*` itself for a wildcard to pass.

use const_oid::ObjectIdentifier;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

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

/// One anchored regex, or a list of them (a value passes when any matches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Patterns {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Patterns::One(p) => std::slice::from_ref(p),
            Patterns::Many(v) => v,
        }
    }
}

/// Which IP addresses a subjectAltName may carry: `true` any, `false` none, or a list of
/// CIDR ranges ("10.0.0.0/8", "2001:db8::/32"; a bare address is a /32 or /128).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IpRule {
    Any(bool),
    Ranges(Vec<String>),
}

impl Default for IpRule {
    fn default() -> Self {
        IpRule::Any(false)
    }
}

fn is_default_ip(r: &IpRule) -> bool {
    *r == IpRule::Any(false)
}

/// A CIDR range, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Option<IpRange> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr.trim().parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
        };
        Some(IpRange { net, prefix })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let (a, b, bits) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(*i)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(*i), self.prefix),
            _ => return false,
        };
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(bits))
        };
        a & mask == b & mask
    }
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
    /// DNS names allowed in the subjectAltName (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub san_dns: Option<Patterns>,
    #[serde(default, skip_serializing_if = "is_default_ip")]
    pub san_ip: IpRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub san_uri: Option<Patterns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub san_email: Option<Patterns>,
    #[serde(default)]
    pub ocsp_nocheck: bool,
    /// One live certificate per subject serialNumber under each CA (IEEE 802.1AR device
    /// identities): a new key for a serial number in use is refused with `serial_in_use`.
    #[serde(default)]
    pub one_certificate_per_serial_number: bool,
}

impl ProfileSpec {
    /// The spec as TOML fields, which [`Profile::parse_spec`] reads back.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| CaError::Internal(format!("profile spec as TOML: {e}")))
    }
}

/// A profile, compiled.
#[derive(Debug, Clone)]
pub struct Profile {
    pub spec: ProfileSpec,
    pub subject: Vec<(ObjectIdentifier, String, Regex, bool)>,
    pub ekus: Vec<ObjectIdentifier>,
    pub key_usage_bits: u16,
    pub san_dns: Vec<Regex>,
    pub san_ip: Option<Vec<IpRange>>,
    pub san_uri: Vec<Regex>,
    pub san_email: Vec<Regex>,
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

/// `\A` and `\z` rather than `^` and `$`: a pattern's own `(?m)` cannot turn them into line
/// anchors, so "a.example.com\nevil" never passes a pattern written for one line.
fn anchored(pattern: &str, what: &str) -> Result<Regex> {
    Regex::new(&format!("\\A(?:{pattern})\\z"))
        .map_err(|e| CaError::BadRequest(format!("{what}: invalid regex '{pattern}': {e}")))
}

fn anchored_all(p: &Option<Patterns>, what: &str) -> Result<Vec<Regex>> {
    p.as_ref()
        .map(|p| p.as_slice().iter().map(|r| anchored(r, what)).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// Largest profile spec accepted (JSON), so an audit record stays a record.
pub const MAX_SPEC_BYTES: usize = 32 * 1024;

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
        let san_ip = match &spec.san_ip {
            IpRule::Any(true) => None,
            IpRule::Any(false) => Some(Vec::new()),
            IpRule::Ranges(r) => Some(
                r.iter()
                    .map(|c| {
                        IpRange::parse(c).ok_or_else(|| {
                            CaError::BadRequest(format!(
                                "{what}: san_ip entry '{c}' is not an address or CIDR range (write 10.0.0.0/8 or 2001:db8::/32)"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let validity_ok = match (spec.default_validity_days, spec.max_validity_days) {
            (Days::Forever(_), Days::Forever(_)) => true,
            (Days::Forever(_), Days::Days(_)) => false,
            (Days::Days(d), Days::Forever(_)) => d >= 1,
            (Days::Days(d), Days::Days(m)) => d >= 1 && d <= m,
        };
        if !validity_ok {
            return Err(CaError::BadRequest(format!(
                "{what}: default_validity_days must be at least 1 and at most max_validity_days (\"forever\" only when the maximum is \"forever\")"
            )));
        }
        let name_ok = !spec.name.is_empty()
            && spec.name.len() <= 64
            && spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !spec.name.starts_with('.');
        if !name_ok {
            return Err(CaError::BadRequest(format!(
                "{what}: a profile name is 1 to 64 letters, digits, '-', '_' and '.' (it is a URL path segment)"
            )));
        }
        Ok(Profile {
            san_dns: anchored_all(&spec.san_dns, &what)?,
            san_ip,
            san_uri: anchored_all(&spec.san_uri, &what)?,
            san_email: anchored_all(&spec.san_email, &what)?,
            subject,
            ekus,
            key_usage_bits,
            spec,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Parse and compile a spec an officer wrote, TOML (one `[[profile]]` table or the fields
    /// at top level) or JSON.
    pub fn parse_spec(text: &str) -> Result<ProfileSpec> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(CaError::BadRequest(format!(
                "the profile spec is {} bytes; at most {MAX_SPEC_BYTES}",
                text.len()
            )));
        }
        let t = text.trim_start();
        if t.starts_with('{') {
            return serde_json::from_str(t)
                .map_err(|e| CaError::BadRequest(format!("the profile spec (JSON): {e}")));
        }
        let bad = |e: toml::de::Error| CaError::BadRequest(format!("the profile spec (TOML): {e}"));
        if !text.contains("[[profile]]") {
            return toml::from_str(text).map_err(bad);
        }
        let file: ProfileFile = toml::from_str(text).map_err(bad)?;
        match <[ProfileSpec; 1]>::try_from(file.profile) {
            Ok([one]) => Ok(one),
            Err(v) => Err(CaError::BadRequest(format!(
                "the file holds {} [[profile]] tables; add one profile per file",
                v.len()
            ))),
        }
    }

    /// Why a subjectAltName is refused, or `None` when the profile allows it. The message names
    /// the SAN and what the profile allows.
    pub fn san_refusal(&self, san: &crate::csr::San) -> Option<String> {
        use crate::csr::San;
        let list = |ps: &Option<Patterns>| match ps {
            None => "none".to_string(),
            Some(p) => p
                .as_slice()
                .iter()
                .map(|r| format!("'{r}'"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let quoted = |v: &str| {
            v.chars()
                .take(100)
                .collect::<String>()
                .escape_default()
                .to_string()
        };
        let (kind, kinds, value, allowed) = match san {
            San::Dns(d) => {
                if self.san_dns.iter().any(|re| re.is_match(d)) {
                    return None;
                }
                ("DNS name", "DNS names", quoted(d), list(&self.spec.san_dns))
            }
            San::Ip(ip) => {
                let ok = match &self.san_ip {
                    None => true,
                    Some(ranges) => ranges.iter().any(|r| r.contains(ip)),
                };
                if ok {
                    return None;
                }
                let allowed = match &self.spec.san_ip {
                    IpRule::Any(_) => "none".to_string(),
                    IpRule::Ranges(r) if r.is_empty() => "none".to_string(),
                    IpRule::Ranges(r) => r.join(", "),
                };
                ("IP address", "IP addresses", ip.to_string(), allowed)
            }
            San::Uri(u) => {
                if self.san_uri.iter().any(|re| re.is_match(u)) {
                    return None;
                }
                ("URI", "URIs", quoted(u), list(&self.spec.san_uri))
            }
            San::Email(e) => {
                if self.san_email.iter().any(|re| re.is_match(e)) {
                    return None;
                }
                (
                    "email address",
                    "email addresses",
                    quoted(e),
                    list(&self.spec.san_email),
                )
            }
        };
        Some(format!(
            "{kind} '{value}' is not allowed by profile '{}' (allowed subjectAltName {kinds}: {allowed})",
            self.name()
        ))
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

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
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
                "device-client",
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
