//! policy: who may do what.
//!
//! Identities, rules over keys, profiles and formats, quotas and M-of-N approvals arrive with
//! the policy issue (see `issues show 3`). Until then the service authorizes by hsm-core role
//! alone. This crate already fixes the one rule everything after it keeps: a request no rule
//! allows is denied, and the decision names what decided it.
#![forbid(unsafe_code)]

/// The outcome of a policy decision, with the rule that made it (for the audit record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow { rule: String },
    Deny { rule: String },
}

impl Decision {
    /// What applies when no rule matches.
    pub fn default_deny() -> Decision {
        Decision::Deny {
            rule: "default-deny".into(),
        }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rule_means_deny() {
        let d = Decision::default_deny();
        assert!(!d.is_allowed());
        assert_eq!(
            d,
            Decision::Deny {
                rule: "default-deny".into()
            }
        );
    }
}
