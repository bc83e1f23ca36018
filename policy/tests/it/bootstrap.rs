//! The built-in bootstrap policy: what a fresh instance enforces before any policy is active.

use kagi_policy::{
    Action, Context, Engine, Principal, PrincipalKind, Resource, BOOTSTRAP_RULE, BOOTSTRAP_TEXT,
    BOOTSTRAP_VERSION, DEFAULT_DENY,
};

fn ctx(format: Option<&str>) -> Context<'_> {
    Context {
        format,
        source_ip: None,
        now: 1_700_000_000,
        certificate: None,
    }
}

#[test]
fn the_bootstrap_policy_denies_pipelines_and_lines_every_sign_and_issue() {
    let engine = Engine::bootstrap().unwrap();
    // Names a real policy might use, and names that look like the bootstrap's own rule.
    for name in ["ci", "line-7", "admin", BOOTSTRAP_RULE, "*", ""] {
        for kind in [PrincipalKind::Pipeline, PrincipalKind::Line] {
            let who = Principal { kind, name };
            for format in ["raw", "cms", "sigstore", ""] {
                for key in ["release", "(wrapped)", "ca.root", "*"] {
                    let d =
                        engine.decide(&who, Action::Sign, &Resource::Key(key), &ctx(Some(format)));
                    assert!(!d.allowed, "{kind:?} {name} signs {key} ({format})");
                    assert_eq!(d.rule, DEFAULT_DENY);
                }
            }
            for profile in ["device", "code-signing", "tls-server"] {
                let d = engine.decide(&who, Action::Issue, &Resource::Profile(profile), &ctx(None));
                assert!(!d.allowed, "{kind:?} {name} issues {profile}");
                assert_eq!(d.rule, DEFAULT_DENY);
            }
        }
    }
    assert!(engine
        .quotas_for(
            &Principal {
                kind: PrincipalKind::Line,
                name: "line-7"
            },
            Action::Issue,
            &Resource::Profile("device")
        )
        .is_empty());
    assert!(engine.quorum().is_none());
}

#[test]
fn the_bootstrap_policy_leaves_persons_to_their_roles() {
    let engine = Engine::bootstrap().unwrap();
    let alice = Principal {
        kind: PrincipalKind::Person,
        name: "alice",
    };
    let d = engine.decide(
        &alice,
        Action::Sign,
        &Resource::Key("release"),
        &ctx(Some("cms")),
    );
    assert!(d.allowed);
    assert_eq!(d.rule, BOOTSTRAP_RULE);
    let d = engine.decide(
        &alice,
        Action::Issue,
        &Resource::Profile("device"),
        &ctx(None),
    );
    assert!(d.allowed);
    assert_eq!(d.rule, BOOTSTRAP_RULE);
}

#[test]
fn the_bootstrap_policy_is_a_valid_document_shown_as_version_zero() {
    // What `kagi policy show` prints must be a document an officer could submit as it is.
    let doc = kagi_policy::PolicyDocument::parse(BOOTSTRAP_TEXT).unwrap();
    assert!(doc
        .description
        .unwrap()
        .contains("deny pipelines and lines"));
    assert_eq!(BOOTSTRAP_VERSION, 0);
}
