//! Decisions, quotas and quorum as the service sees them.

use std::net::IpAddr;

use kagi_policy::{Action, Context, Engine, Principal, PrincipalKind, Resource};

const DOC: &str = r#"
rules = '''
@id("ci-release-cms")
permit (
  principal == kagi::Pipeline::"ci-release",
  action == kagi::Action::"sign",
  resource == kagi::Key::"release"
) when { context.format == "cms" };

@id("ci-any-format-nightly")
permit (
  principal == kagi::Pipeline::"ci-release",
  action == kagi::Action::"sign",
  resource == kagi::Key::"nightly"
);

@id("no-nightly-from-outside")
forbid (principal, action, resource == kagi::Key::"nightly")
unless { context.source_ip.isInRange(ip("10.0.0.0/8")) };

@id("line-7-devices")
permit (
  principal == kagi::Line::"line-7",
  action == kagi::Action::"issue",
  resource == kagi::Profile::"device"
) when { context.hour >= 6 && context.hour < 22 };

@id("alice-console")
permit (
  principal == kagi::Person::"alice",
  action,
  resource
) when { context.source_ip.isInRange(ip("192.168.0.0/16")) };

@id("a-also-permits-alice")
permit (principal == kagi::Person::"alice", action == kagi::Action::"sign", resource);

@id("z-frozen-key")
forbid (principal, action == kagi::Action::"sign", resource == kagi::Key::"frozen");

@id("b-frozen-too")
forbid (principal, action == kagi::Action::"sign", resource == kagi::Key::"frozen");
'''

[quorum]
approvers = ["alice", "bob", "carol"]
required = 2

[[quota]]
name = "line-7-total"
identity = "line-7"
action = "issue"
resource = "device"
total = 5

[[quota]]
name = "line-7-any-rate"
identity = "line-7"
action = "issue"
resource = "*"
per_hour = 100

[[quota]]
name = "line-7-sign"
identity = "line-7"
action = "sign"
resource = "*"
per_day = 10

[[quota]]
name = "ci-release"
identity = "ci-release"
action = "sign"
resource = "release"
total = 1000
"#;

const MIDNIGHT: i64 = 1_767_225_600; // 2026-01-01 00:00 UTC
const NOON: i64 = MIDNIGHT + 12 * 3_600;

fn pipeline(name: &str) -> Principal<'_> {
    Principal {
        kind: PrincipalKind::Pipeline,
        name,
    }
}

fn ctx<'a>(format: Option<&'a str>, ip: Option<&str>, now: i64) -> Context<'a> {
    Context {
        format,
        source_ip: ip.map(|s| s.parse::<IpAddr>().unwrap()),
        now,
        certificate: None,
    }
}

fn engine() -> Engine {
    Engine::from_text(DOC).unwrap()
}

#[test]
fn allowed_by_the_matching_permit() {
    let e = engine();
    let d = e.decide(
        &pipeline("ci-release"),
        Action::Sign,
        &Resource::Key("release"),
        &ctx(Some("cms"), None, NOON),
    );
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.rule, "ci-release-cms");
    assert!(d.errors.is_empty());
}

#[test]
fn format_condition_and_default_deny() {
    let e = engine();
    let raw = e.decide(
        &pipeline("ci-release"),
        Action::Sign,
        &Resource::Key("release"),
        &ctx(Some("raw"), None, NOON),
    );
    assert!(!raw.allowed);
    assert_eq!(raw.rule, "default-deny");
    let no_format = e.decide(
        &pipeline("ci-release"),
        Action::Sign,
        &Resource::Key("release"),
        &ctx(None, None, NOON),
    );
    assert_eq!(
        (no_format.allowed, no_format.rule.as_str()),
        (false, "default-deny")
    );
    let other_key = e.decide(
        &pipeline("ci-release"),
        Action::Sign,
        &Resource::Key("prod"),
        &ctx(Some("cms"), None, NOON),
    );
    assert_eq!(
        (other_key.allowed, other_key.rule.as_str()),
        (false, "default-deny")
    );
    let stranger = e.decide(
        &pipeline("someone-else"),
        Action::Sign,
        &Resource::Key("release"),
        &ctx(Some("cms"), None, NOON),
    );
    assert_eq!(
        (stranger.allowed, stranger.rule.as_str()),
        (false, "default-deny")
    );
    // Same name, other kind: a person called ci-release is not the pipeline.
    let person = e.decide(
        &Principal {
            kind: PrincipalKind::Person,
            name: "ci-release",
        },
        Action::Sign,
        &Resource::Key("release"),
        &ctx(Some("cms"), None, NOON),
    );
    assert!(!person.allowed);
}

#[test]
fn forbid_wins_over_permit_and_names_itself() {
    let e = engine();
    let inside = e.decide(
        &pipeline("ci-release"),
        Action::Sign,
        &Resource::Key("nightly"),
        &ctx(Some("raw"), Some("10.1.2.3"), NOON),
    );
    assert!(inside.allowed, "{inside:?}");
    assert_eq!(inside.rule, "ci-any-format-nightly");
    let outside = e.decide(
        &pipeline("ci-release"),
        Action::Sign,
        &Resource::Key("nightly"),
        &ctx(Some("raw"), Some("203.0.113.9"), NOON),
    );
    assert!(!outside.allowed);
    assert_eq!(outside.rule, "no-nightly-from-outside");
    // An unknown address is 0.0.0.0: outside every range.
    let unknown = e.decide(
        &pipeline("ci-release"),
        Action::Sign,
        &Resource::Key("nightly"),
        &ctx(Some("raw"), None, NOON),
    );
    assert_eq!(unknown.rule, "no-nightly-from-outside");
    // alice is permitted to sign anything, but two forbids match "frozen": the smaller id names
    // the decision.
    let frozen = e.decide(
        &Principal {
            kind: PrincipalKind::Person,
            name: "alice",
        },
        Action::Sign,
        &Resource::Key("frozen"),
        &ctx(None, Some("192.168.1.1"), NOON),
    );
    assert_eq!(
        (frozen.allowed, frozen.rule.as_str()),
        (false, "b-frozen-too")
    );
}

#[test]
fn source_ip_range() {
    let e = engine();
    let alice = Principal {
        kind: PrincipalKind::Person,
        name: "alice",
    };
    let lan = e.decide(
        &alice,
        Action::Issue,
        &Resource::Profile("tls-server"),
        &ctx(None, Some("192.168.4.20"), NOON),
    );
    assert_eq!((lan.allowed, lan.rule.as_str()), (true, "alice-console"));
    let wan = e.decide(
        &alice,
        Action::Issue,
        &Resource::Profile("tls-server"),
        &ctx(None, Some("8.8.8.8"), NOON),
    );
    assert_eq!((wan.allowed, wan.rule.as_str()), (false, "default-deny"));
    let v6 = e.decide(
        &alice,
        Action::Issue,
        &Resource::Profile("tls-server"),
        &ctx(None, Some("2001:db8::1"), NOON),
    );
    assert!(!v6.allowed);
    // Two permits match a signing request from the LAN: the first by id decides.
    let both = e.decide(
        &alice,
        Action::Sign,
        &Resource::Key("release"),
        &ctx(Some("raw"), Some("192.168.4.20"), NOON),
    );
    assert_eq!(
        (both.allowed, both.rule.as_str()),
        (true, "a-also-permits-alice")
    );
}

#[test]
fn time_window_by_hour() {
    let e = engine();
    let line = Principal {
        kind: PrincipalKind::Line,
        name: "line-7",
    };
    let at = |hour: i64| {
        e.decide(
            &line,
            Action::Issue,
            &Resource::Profile("device"),
            &ctx(None, None, MIDNIGHT + hour * 3_600 + 59),
        )
        .allowed
    };
    assert!(!at(5));
    assert!(at(6));
    assert!(at(12));
    assert!(at(21));
    assert!(!at(22));
    assert!(!at(23));
}

#[test]
fn mismatched_action_and_resource_is_denied() {
    let e =
        Engine::from_text("rules = '''\n@id(\"all\") permit (principal, action, resource);\n'''")
            .unwrap();
    let ok = e.decide(
        &pipeline("x"),
        Action::Sign,
        &Resource::Key("k"),
        &ctx(None, None, NOON),
    );
    assert!(ok.allowed);
    let bad = e.decide(
        &pipeline("x"),
        Action::Sign,
        &Resource::Profile("p"),
        &ctx(None, None, NOON),
    );
    assert!(!bad.allowed);
    assert_eq!(bad.rule, "default-deny");
    assert_eq!(bad.errors.len(), 1);
}

#[test]
fn empty_engine_denies_everything() {
    let e = Engine::empty();
    let d = e.decide(
        &pipeline("ci-release"),
        Action::Sign,
        &Resource::Key("release"),
        &ctx(Some("cms"), None, NOON),
    );
    assert_eq!((d.allowed, d.rule.as_str()), (false, "default-deny"));
    assert!(e.quorum().is_none());
    assert!(e
        .quotas_for(
            &pipeline("ci-release"),
            Action::Sign,
            &Resource::Key("release")
        )
        .is_empty());
}

#[test]
fn quotas_match_identity_action_and_resource_or_star() {
    let e = engine();
    let line = Principal {
        kind: PrincipalKind::Line,
        name: "line-7",
    };
    let names = |p: &Principal<'_>, a, r: Resource<'_>| {
        e.quotas_for(p, a, &r)
            .into_iter()
            .map(|q| q.name.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&line, Action::Issue, Resource::Profile("device")),
        ["line-7-total", "line-7-any-rate"]
    );
    assert_eq!(
        names(&line, Action::Issue, Resource::Profile("idevid")),
        ["line-7-any-rate"]
    );
    assert_eq!(
        names(&line, Action::Sign, Resource::Key("device")),
        ["line-7-sign"]
    );
    assert_eq!(
        names(
            &pipeline("ci-release"),
            Action::Sign,
            Resource::Key("release")
        ),
        ["ci-release"]
    );
    assert!(names(
        &pipeline("ci-release"),
        Action::Sign,
        Resource::Key("nightly")
    )
    .is_empty());
    assert!(names(
        &pipeline("line-8"),
        Action::Issue,
        Resource::Profile("device")
    )
    .is_empty());
}

#[test]
fn quorum_and_document_are_exposed() {
    let e = engine();
    let q = e.quorum().unwrap();
    assert_eq!(q.required, 2);
    assert_eq!(q.approvers.len(), 3);
    assert_eq!(e.document().quotas.len(), 4);
    assert!(e.indexed_principals() >= 3);
}

#[test]
fn compile_checks_a_hand_built_document_again() {
    let mut doc = engine().document().clone();
    assert!(Engine::compile(&doc).is_ok());
    doc.rules =
        "@id(\"x\")\npermit (principal, action, resource)\nwhen { context.colour == 1 };".into();
    let e = Engine::compile(&doc).err().unwrap();
    assert_eq!(e.line, 3, "{e}");
}

#[test]
fn engine_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
}
