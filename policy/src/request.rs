//! The parts of a request a decision is made on, in kagi's own terms; the engine turns them
//! into Cedar entities.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What sort of caller an identity is; each is its own Cedar entity type, so a rule for the
/// pipeline `x` never matches a person who happens to be called `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    Person,
    Pipeline,
    Line,
}

impl PrincipalKind {
    pub const ALL: [PrincipalKind; 3] = [
        PrincipalKind::Person,
        PrincipalKind::Pipeline,
        PrincipalKind::Line,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Person => "person",
            PrincipalKind::Pipeline => "pipeline",
            PrincipalKind::Line => "line",
        }
    }

    /// The Cedar entity type of this kind of principal.
    pub fn cedar_type(self) -> &'static str {
        match self {
            PrincipalKind::Person => "kagi::Person",
            PrincipalKind::Pipeline => "kagi::Pipeline",
            PrincipalKind::Line => "kagi::Line",
        }
    }

    pub(crate) fn from_cedar_type(name: &str) -> Option<PrincipalKind> {
        PrincipalKind::ALL
            .into_iter()
            .find(|k| k.cedar_type() == name)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PrincipalKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "person" => Ok(PrincipalKind::Person),
            "pipeline" => Ok(PrincipalKind::Pipeline),
            "line" => Ok(PrincipalKind::Line),
            other => Err(format!(
                "unknown identity kind {other:?}: use \"person\", \"pipeline\" or \"line\""
            )),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Principal<'a> {
    pub kind: PrincipalKind,
    pub name: &'a str,
}

/// What they ask to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Sign with a key.
    Sign,
    /// Issue a certificate under a profile.
    Issue,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Sign => "sign",
            Action::Issue => "issue",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sign" => Ok(Action::Sign),
            "issue" => Ok(Action::Issue),
            other => Err(format!(
                "unknown action {other:?}: use \"sign\" or \"issue\""
            )),
        }
    }
}

/// What they ask to do it to: a key (by label) for signing, a certificate profile for issuance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource<'a> {
    Key(&'a str),
    Profile(&'a str),
}

impl<'a> Resource<'a> {
    pub fn name(&self) -> &'a str {
        match self {
            Resource::Key(n) | Resource::Profile(n) => n,
        }
    }

    /// The action this kind of resource is used with.
    pub fn action(&self) -> Action {
        match self {
            Resource::Key(_) => Action::Sign,
            Resource::Profile(_) => Action::Issue,
        }
    }

    pub(crate) fn cedar_type(&self) -> &'static str {
        match self {
            Resource::Key(_) => "kagi::Key",
            Resource::Profile(_) => "kagi::Profile",
        }
    }
}

/// The subject attributes issuance rules see, by their short names. Each is always present in
/// `context.subject`: an attribute the CSR does not carry is `""`, so a rule needs no `has`.
pub const SUBJECT_ATTRIBUTES: [&str; 7] = ["CN", "O", "OU", "C", "L", "ST", "serialNumber"];

/// What a certificate request asks for, as issuance rules see it (`context.subject`,
/// `context.sans`). The values are the CSR's own, not yet judged by the profile, which the CA
/// checks after the policy allowed the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateRequest {
    /// Subject attributes by short name ([`SUBJECT_ATTRIBUTES`]); one value each.
    pub subject: Vec<(String, String)>,
    /// subjectAltName DNS names, as literal text (a wildcard stays `*.example.com`).
    pub dns: Vec<String>,
    /// subjectAltName IP addresses, as text (`10.0.0.1`, `::1`).
    pub ip: Vec<String>,
    pub uri: Vec<String>,
    pub email: Vec<String>,
}

impl CertificateRequest {
    /// The value of subject attribute `name`, or `""`.
    pub fn subject_value(&self, name: &str) -> &str {
        self.subject
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The circumstances of a request that rules may test.
///
/// `format` is the signature format (`None` becomes `""`, which is what issuance passes).
/// `source_ip` is the caller's address. When it is unknown the engine uses `0.0.0.0`, which lies
/// in no range a rule would name: a permit that requires a range then does not match, and a
/// forbid written as `unless { context.source_ip.isInRange(...) }` fires. The hour rules see is
/// derived from `now`, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context<'a> {
    pub format: Option<&'a str>,
    pub source_ip: Option<IpAddr>,
    /// Unix seconds.
    pub now: i64,
    /// For issuance: what the CSR asks for. `None` on an issuance is an empty subject and no
    /// SANs (a rule that tests them does not match).
    pub certificate: Option<&'a CertificateRequest>,
}

impl Context<'_> {
    /// Hour of the day in UTC, 0..=23.
    pub fn hour(&self) -> i64 {
        self.now.rem_euclid(86_400) / 3_600
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in PrincipalKind::ALL {
            assert_eq!(k.as_str().parse::<PrincipalKind>(), Ok(k));
            assert_eq!(PrincipalKind::from_cedar_type(k.cedar_type()), Some(k));
        }
        for a in [Action::Sign, Action::Issue] {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("Sign".parse::<Action>().is_err());
        assert!("robot".parse::<PrincipalKind>().is_err());
    }

    #[test]
    fn serde_is_lowercase() {
        assert_eq!(
            toml::Value::try_from(PrincipalKind::Pipeline).ok(),
            Some(toml::Value::String("pipeline".into()))
        );
        let a: Action = toml::Value::String("issue".into()).try_into().unwrap();
        assert_eq!(a, Action::Issue);
    }

    #[test]
    fn hour_is_utc_and_never_negative() {
        let c = |now| Context {
            format: None,
            source_ip: None,
            now,
            certificate: None,
        };
        assert_eq!(c(0).hour(), 0);
        assert_eq!(c(3_600 * 13 + 59).hour(), 13);
        assert_eq!(c(86_400 * 365 + 3_600 * 23).hour(), 23);
        assert_eq!(c(-1).hour(), 23);
    }
}
