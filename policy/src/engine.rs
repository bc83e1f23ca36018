//! Decisions: a compiled rule set, indexed by principal so a request is checked only against
//! the rules that can apply to its caller.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    Authorizer, Entities, EntityId, EntityTypeName, EntityUid, Policy, PolicySet,
    PrincipalConstraint, Request, RestrictedExpression,
};
use serde::Serialize;

pub use crate::request::{
    Action, CertificateRequest, Context, Principal, PrincipalKind, Resource, SUBJECT_ATTRIBUTES,
};

use crate::document::{self, PolicyDocument, Quorum, Quota};
use crate::error::PolicyError;
use crate::rules::{self, DEFAULT_DENY};

/// The outcome of a decision, with what the audit record needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The `@id` of the rule that decided, or `"default-deny"` when none matched.
    pub rule: String,
    /// Rules that failed to evaluate (they count as not matching).
    pub errors: Vec<String>,
}

impl Decision {
    fn default_deny(errors: Vec<String>) -> Decision {
        Decision {
            allowed: false,
            rule: DEFAULT_DENY.to_owned(),
            errors,
        }
    }
}

/// A compiled policy, ready to answer requests. Immutable: a new policy version is a new
/// engine, swapped in whole.
pub struct Engine {
    doc: PolicyDocument,
    /// Rules whose principal is not one named identity; they apply to every request.
    global: PolicySet,
    /// Per principal kind, per name: that principal's own rules together with the global ones.
    by_principal: [HashMap<String, PolicySet>; 3],
    authorizer: Authorizer,
    entities: Entities,
}

/// The Cedar names every request uses, parsed once.
struct Names {
    principal: [EntityTypeName; 3],
    key: EntityTypeName,
    profile: EntityTypeName,
    sign: EntityUid,
    issue: EntityUid,
}

impl Names {
    /// Parsed once per process: they are constants, and parsing them per request would cost
    /// more than some decisions.
    fn get() -> Result<&'static Names, String> {
        static NAMES: OnceLock<Result<Names, String>> = OnceLock::new();
        NAMES.get_or_init(Names::new).as_ref().map_err(Clone::clone)
    }

    fn new() -> Result<Names, String> {
        let ty = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        let uid = |s: &str| EntityUid::from_str(s).map_err(|e| e.to_string());
        Ok(Names {
            principal: [
                ty(PrincipalKind::Person.cedar_type())?,
                ty(PrincipalKind::Pipeline.cedar_type())?,
                ty(PrincipalKind::Line.cedar_type())?,
            ],
            key: ty(Resource::Key("").cedar_type())?,
            profile: ty(Resource::Profile("").cedar_type())?,
            sign: uid(r#"kagi::Action::"sign""#)?,
            issue: uid(r#"kagi::Action::"issue""#)?,
        })
    }
}

impl Engine {
    /// Compiles a document. Its rules are validated again here; errors in a document built by
    /// hand report lines counted from the first line of `rules`.
    pub fn compile(doc: &PolicyDocument) -> Result<Engine, PolicyError> {
        let locate = |offset: usize| {
            let (line, column) = crate::error::line_col(&doc.rules, offset);
            (line, Some(column))
        };
        let compiled = rules::compile(&doc.rules, &locate)?;
        Engine::build(doc.clone(), compiled.policies)
    }

    /// Parses, validates and compiles a document's text.
    pub fn from_text(text: &str) -> Result<Engine, PolicyError> {
        let (doc, compiled) = document::parse_with_rules(text)?;
        Engine::build(doc, compiled.policies)
    }

    /// No rules: every request is denied by default; no quotas, no quorum.
    pub fn empty() -> Engine {
        Engine {
            doc: PolicyDocument {
                description: None,
                quorum: None,
                quotas: Vec::new(),
                rules: String::new(),
            },
            global: PolicySet::new(),
            by_principal: Default::default(),
            authorizer: Authorizer::new(),
            entities: Entities::empty(),
        }
    }

    fn build(doc: PolicyDocument, policies: Vec<Policy>) -> Result<Engine, PolicyError> {
        Names::get().map_err(|e| PolicyError::at(1, e))?;
        let assemble = |e: cedar_policy::PolicySetError| {
            PolicyError::at(1, format!("rules could not be assembled: {e}"))
        };

        let mut global = Vec::new();
        let mut own: [HashMap<String, Vec<Policy>>; 3] = Default::default();
        for policy in policies {
            match indexed_principal(&policy) {
                Some((kind, name)) => own[kind.index()].entry(name).or_default().push(policy),
                None => global.push(policy),
            }
        }

        let mut by_principal: [HashMap<String, PolicySet>; 3] = Default::default();
        for (kind, slices) in own.into_iter().enumerate() {
            by_principal[kind].reserve(slices.len());
            for (name, slice) in slices {
                let set = PolicySet::from_policies(global.iter().cloned().chain(slice))
                    .map_err(assemble)?;
                by_principal[kind].insert(name, set);
            }
        }
        let global = PolicySet::from_policies(global).map_err(assemble)?;

        Ok(Engine {
            doc,
            global,
            by_principal,
            authorizer: Authorizer::new(),
            entities: Entities::empty(),
        })
    }

    /// Decides whether `principal` may perform `action` on `resource`.
    pub fn decide(
        &self,
        principal: &Principal<'_>,
        action: Action,
        resource: &Resource<'_>,
        context: &Context<'_>,
    ) -> Decision {
        let set = self.by_principal[principal.kind.index()]
            .get(principal.name)
            .unwrap_or(&self.global);
        self.evaluate(set, principal, action, resource, context)
    }

    fn evaluate(
        &self,
        set: &PolicySet,
        principal: &Principal<'_>,
        action: Action,
        resource: &Resource<'_>,
        context: &Context<'_>,
    ) -> Decision {
        if resource.action() != action {
            // The schema makes such rules impossible to write, but a rule with an open action
            // or resource scope would still match; a mismatched request is a caller bug.
            return Decision::default_deny(vec![format!(
                "action {action} does not apply to {} {:?}",
                match resource {
                    Resource::Key(_) => "key",
                    Resource::Profile(_) => "profile",
                },
                resource.name()
            )]);
        }
        let request = match self.request(principal, action, resource, context) {
            Ok(r) => r,
            Err(e) => return Decision::default_deny(vec![e]),
        };
        let response = self.authorizer.is_authorized(&request, set, &self.entities);
        let diagnostics = response.diagnostics();
        // Several rules may match at once; the smallest id decides so the record is stable.
        let rule = diagnostics
            .reason()
            .map(|id| id.as_ref())
            .min()
            .unwrap_or(DEFAULT_DENY)
            .to_owned();
        let mut errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        errors.sort_unstable();
        Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            rule,
            errors,
        }
    }

    fn request(
        &self,
        principal: &Principal<'_>,
        action: Action,
        resource: &Resource<'_>,
        context: &Context<'_>,
    ) -> Result<Request, String> {
        let n = Names::get()?;
        let principal = EntityUid::from_type_name_and_id(
            n.principal[principal.kind.index()].clone(),
            EntityId::new(principal.name),
        );
        let action = match action {
            Action::Sign => n.sign.clone(),
            Action::Issue => n.issue.clone(),
        };
        let resource_type = match resource {
            Resource::Key(_) => n.key.clone(),
            Resource::Profile(_) => n.profile.clone(),
        };
        let resource =
            EntityUid::from_type_name_and_id(resource_type, EntityId::new(resource.name()));
        let ip = context
            .source_ip
            .map_or_else(|| "0.0.0.0".to_owned(), |ip| ip.to_string());
        let mut pairs = vec![
            (
                "format".to_owned(),
                RestrictedExpression::new_string(context.format.unwrap_or("").to_owned()),
            ),
            ("source_ip".to_owned(), RestrictedExpression::new_ip(ip)),
            (
                "now".to_owned(),
                RestrictedExpression::new_long(context.now),
            ),
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(context.hour()),
            ),
        ];
        if action == n.issue {
            let empty = CertificateRequest::default();
            pairs.extend(certificate_context(context.certificate.unwrap_or(&empty))?);
        }
        let context = cedar_policy::Context::from_pairs(pairs)
            .map_err(|e| format!("request context: {e}"))?;
        // No schema check here: the request is built from typed parts that match the schema
        // by construction, and checking would cost more than the decision.
        Request::new(principal, action, resource, context, None)
            .map_err(|e| format!("request: {e}"))
    }

    /// Quotas that count this request: same identity name, same action, and the same resource
    /// or `*`.
    pub fn quotas_for(
        &self,
        principal: &Principal<'_>,
        action: Action,
        resource: &Resource<'_>,
    ) -> Vec<&Quota> {
        self.doc
            .quotas
            .iter()
            .filter(|q| {
                q.identity == principal.name && q.action == action && q.covers(resource.name())
            })
            .collect()
    }

    pub fn quorum(&self) -> Option<&Quorum> {
        self.doc.quorum.as_ref()
    }

    pub fn document(&self) -> &PolicyDocument {
        &self.doc
    }

    /// How many identities have rules of their own (for diagnostics and the benchmark).
    pub fn indexed_principals(&self) -> usize {
        self.by_principal.iter().map(HashMap::len).sum()
    }
}

/// `context.subject` (every attribute of [`SUBJECT_ATTRIBUTES`], `""` when absent) and
/// `context.sans` (a set per kind) of an issuance.
fn certificate_context(
    c: &CertificateRequest,
) -> Result<[(String, RestrictedExpression); 2], String> {
    let subject = RestrictedExpression::new_record(SUBJECT_ATTRIBUTES.iter().map(|a| {
        (
            (*a).to_owned(),
            RestrictedExpression::new_string(c.subject_value(a).to_owned()),
        )
    }))
    .map_err(|e| format!("request context subject: {e}"))?;
    let set = |v: &[String]| {
        RestrictedExpression::new_set(
            v.iter()
                .map(|s| RestrictedExpression::new_string(s.clone())),
        )
    };
    let sans = RestrictedExpression::new_record([
        ("dns".to_owned(), set(&c.dns)),
        ("ip".to_owned(), set(&c.ip)),
        ("uri".to_owned(), set(&c.uri)),
        ("email".to_owned(), set(&c.email)),
    ])
    .map_err(|e| format!("request context sans: {e}"))?;
    Ok([("subject".to_owned(), subject), ("sans".to_owned(), sans)])
}

/// The principal a rule is about, when it names exactly one. `principal in X` is left global:
/// identities may gain groups later, and then `in` would match more than X.
fn indexed_principal(policy: &Policy) -> Option<(PrincipalKind, String)> {
    match policy.principal_constraint() {
        PrincipalConstraint::Eq(uid) => {
            let kind = PrincipalKind::from_cedar_type(&uid.type_name().to_string())?;
            Some((kind, uid.id().unescaped().to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64: enough randomness for test cases without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
    const KINDS: [&str; 3] = ["Person", "Pipeline", "Line"];
    const KEYS: [&str; 3] = ["k1", "k2", "k3"];
    const PROFILES: [&str; 2] = ["device", "tls"];
    const FORMATS: [&str; 4] = ["", "raw", "cms", "sigstore"];

    fn random_rules(rng: &mut Rng, count: usize) -> String {
        let mut out = String::new();
        for i in 0..count {
            let effect = if rng.below(5) == 0 {
                "forbid"
            } else {
                "permit"
            };
            let principal = match rng.below(6) {
                0 => "principal".to_owned(),
                1 => format!("principal is kagi::{}", rng.pick(&KINDS)),
                2 => format!(
                    "principal in kagi::{}::\"{}\"",
                    rng.pick(&KINDS),
                    rng.pick(&NAMES)
                ),
                _ => format!(
                    "principal == kagi::{}::\"{}\"",
                    rng.pick(&KINDS),
                    rng.pick(&NAMES)
                ),
            };
            let (action, resource) = match rng.below(5) {
                0 => ("action".to_owned(), "resource".to_owned()),
                1 => (
                    "action == kagi::Action::\"sign\"".to_owned(),
                    format!("resource == kagi::Key::\"{}\"", rng.pick(&KEYS)),
                ),
                2 => (
                    "action == kagi::Action::\"issue\"".to_owned(),
                    format!("resource == kagi::Profile::\"{}\"", rng.pick(&PROFILES)),
                ),
                3 => (
                    "action == kagi::Action::\"sign\"".to_owned(),
                    "resource".to_owned(),
                ),
                _ => ("action".to_owned(), "resource is kagi::Profile".to_owned()),
            };
            let condition = match rng.below(6) {
                0 => format!(" when {{ context.format == \"{}\" }}", rng.pick(&FORMATS)),
                1 => " when { context.source_ip.isInRange(ip(\"10.0.0.0/8\")) }".to_owned(),
                2 => format!(" when {{ context.hour < {} }}", rng.below(24)),
                // Overflows for large `now`: an evaluation error, which must not match.
                3 => " when { context.now * 10000000000 > 0 }".to_owned(),
                _ => String::new(),
            };
            out.push_str(&format!(
                "@id(\"r{i:03}\")\n{effect} ({principal}, {action}, {resource}){condition};\n\n"
            ));
        }
        out
    }

    #[test]
    fn issuance_rules_see_the_subject_and_sans() {
        let text = r#"rules = '''
@id("line-7-serials")
permit (
  principal == kagi::Line::"line-7",
  action == kagi::Action::"issue",
  resource == kagi::Profile::"device"
) when { context.subject.serialNumber like "L7-*" };

@id("lab-names")
permit (principal == kagi::Line::"lab", action == kagi::Action::"issue", resource)
when { context.sans.dns.contains("a.lab.example.com") && context.sans.ip.isEmpty() && context.subject.CN == "" };
'''
"#;
        let engine = Engine::from_text(text).unwrap();
        let ask = |name: &str, c: Option<&CertificateRequest>| {
            let context = Context {
                format: None,
                source_ip: None,
                now: 0,
                certificate: c,
            };
            engine.decide(
                &Principal {
                    kind: PrincipalKind::Line,
                    name,
                },
                Action::Issue,
                &Resource::Profile("device"),
                &context,
            )
        };
        let serial = |sn: &str| CertificateRequest {
            subject: vec![
                ("serialNumber".into(), sn.into()),
                ("CN".into(), "x".into()),
            ],
            ..CertificateRequest::default()
        };
        let d = ask("line-7", Some(&serial("L7-0001")));
        assert!(d.allowed && d.rule == "line-7-serials", "{d:?}");
        assert!(!ask("line-7", Some(&serial("L8-0001"))).allowed);
        // No subject at all: "" matches nothing, and nothing errs.
        let d = ask("line-7", None);
        assert!(!d.allowed && d.errors.is_empty(), "{d:?}");

        let names = |dns: &[&str], ip: &[&str]| CertificateRequest {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ip: ip.iter().map(|s| s.to_string()).collect(),
            ..CertificateRequest::default()
        };
        assert!(ask("lab", Some(&names(&["a.lab.example.com"], &[]))).allowed);
        assert!(!ask("lab", Some(&names(&["*.lab.example.com"], &[]))).allowed);
        assert!(!ask("lab", Some(&names(&["a.lab.example.com"], &["10.0.0.1"]))).allowed);

        // Signing has no subject: a rule that reads one for a signature does not validate.
        let bad = r#"rules = '''
@id("x")
permit (principal, action == kagi::Action::"sign", resource)
when { context.subject.CN == "a" };
'''
"#;
        assert!(Engine::from_text(bad).is_err());
    }

    #[test]
    fn indexing_decides_like_the_full_rule_set() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut compared = 0;
        let mut allowed = 0;
        let mut with_errors = 0;
        for _ in 0..20 {
            let rules = random_rules(&mut rng, 40);
            let text = format!("rules = '''\n{rules}'''\n");
            let (doc, compiled) = document::parse_with_rules(&text).unwrap();
            let full = PolicySet::from_policies(compiled.policies.clone()).unwrap();
            let engine = Engine::build(doc, compiled.policies).unwrap();
            assert!(engine.indexed_principals() > 0);
            for _ in 0..200 {
                let kind = PrincipalKind::ALL[rng.below(3)];
                let name = rng.pick(&NAMES);
                let principal = Principal { kind, name };
                let (action, resource) = if rng.below(2) == 0 {
                    (Action::Sign, Resource::Key(rng.pick(&KEYS)))
                } else {
                    (Action::Issue, Resource::Profile(rng.pick(&PROFILES)))
                };
                let ip: std::net::IpAddr = match rng.below(3) {
                    0 => [10, 1, 2, 3].into(),
                    1 => [192, 0, 2, 1].into(),
                    _ => [0, 0, 0, 0].into(),
                };
                let context = Context {
                    format: Some(rng.pick(&FORMATS)),
                    source_ip: if rng.below(4) == 0 { None } else { Some(ip) },
                    now: if rng.below(4) == 0 {
                        i64::MAX / 2
                    } else {
                        rng.below(86_400 * 3) as i64
                    },
                    certificate: None,
                };
                let indexed = engine.decide(&principal, action, &resource, &context);
                let unindexed = engine.evaluate(&full, &principal, action, &resource, &context);
                assert_eq!(
                    indexed, unindexed,
                    "{principal:?} {action} {resource:?} {context:?}\n{rules}"
                );
                compared += 1;
                allowed += usize::from(indexed.allowed);
                with_errors += usize::from(!indexed.errors.is_empty());
            }
        }
        // The generator must exercise both outcomes and evaluation errors to mean anything.
        assert!(allowed > compared / 10, "allowed {allowed} of {compared}");
        assert!(
            allowed < compared * 9 / 10,
            "allowed {allowed} of {compared}"
        );
        assert!(with_errors > 0);
    }
}
