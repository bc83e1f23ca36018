//! Policy decisions with 1,000 identities and 10,000 rules, against raw Cedar in the same run:
//!
//! - raw: cedar-policy's `Authorizer::is_authorized` over the whole 10,000-rule set, with the
//!   request built once outside the loop (the primitive alone);
//! - kagi: `Engine::decide`, which builds the Cedar request from kagi's types on every call and
//!   evaluates only the global rules plus the caller's own.
//!
//! Run: `cargo bench -p kagi-benches --bench policy` (KAGI_BENCH_SECS=N per row, default 2).

use std::str::FromStr;
use std::time::{Duration, Instant};

use kagi_benches::rate;
use kagi_policy::cedar_policy as cedar;
use kagi_policy::{Action, Context, Engine, Principal, PrincipalKind, Resource};

const PIPELINES: usize = 1_000;
const RULES_PER_PIPELINE: usize = 10;
const FORMATS: [&str; 3] = ["raw", "cms", "sigstore"];

/// Each pipeline may sign with ten keys of its own, in one format each, some only from the
/// build network or in working hours; a few global forbids apply to everyone.
fn document() -> String {
    let mut rules = String::with_capacity(PIPELINES * RULES_PER_PIPELINE * 200);
    for p in 0..PIPELINES {
        for r in 0..RULES_PER_PIPELINE {
            let format = FORMATS[(p + r) % FORMATS.len()];
            let extra = match r % 3 {
                0 => "",
                1 => " && context.source_ip.isInRange(ip(\"10.0.0.0/8\"))",
                _ => " && context.hour >= 6 && context.hour < 22",
            };
            rules.push_str(&format!(
                "@id(\"p{p}-r{r}\")\npermit (\n  principal == kagi::Pipeline::\"pipeline-{p}\",\n  \
                 action == kagi::Action::\"sign\",\n  resource == kagi::Key::\"key-{p}-{r}\"\n) \
                 when {{ context.format == \"{format}\"{extra} }};\n\n"
            ));
        }
    }
    rules.push_str(
        "@id(\"global-revoked\")\nforbid (principal, action, resource == kagi::Key::\"key-500-0\")\n\
         when { context.now > 1700000000 };\n\n\
         @id(\"global-no-raw-at-night\")\nforbid (principal, action == kagi::Action::\"sign\", resource)\n\
         when { context.format == \"raw\" && context.hour < 5 };\n\n\
         @id(\"global-outside\")\nforbid (principal, action, resource)\n\
         when { context.source_ip.isInRange(ip(\"203.0.113.0/24\")) };\n",
    );
    format!("description = \"benchmark\"\nrules = '''\n{rules}'''\n")
}

struct Case {
    name: &'static str,
    key: &'static str,
    format: &'static str,
    expect_allowed: bool,
    expect_rule: &'static str,
}

const CASES: [Case; 3] = [
    Case {
        name: "allowed",
        key: "key-500-3",
        format: "sigstore",
        expect_allowed: true,
        expect_rule: "p500-r3",
    },
    Case {
        name: "default-denied (no rule for the key)",
        key: "key-501-3",
        format: "sigstore",
        expect_allowed: false,
        expect_rule: "default-deny",
    },
    Case {
        name: "forbid-denied (permitted, then forbidden)",
        key: "key-500-0",
        format: "sigstore",
        expect_allowed: false,
        expect_rule: "global-revoked",
    },
];

const NOON: i64 = 1_767_225_600 + 12 * 3_600;

fn main() -> Result<(), String> {
    let secs: u64 = kagi_benches::env("KAGI_BENCH_SECS", 2);
    let dur = Duration::from_secs(secs);
    let text = document();
    let rule_count = text.matches("@id(").count();
    println!(
        "kagi policy benchmark: {PIPELINES} pipelines, {rule_count} rules, 1 thread, {secs} s per row\n"
    );

    let t = Instant::now();
    let engine = Engine::from_text(&text).map_err(|e| e.to_string())?;
    let compile = t.elapsed();
    let t = Instant::now();
    let raw_set =
        cedar::PolicySet::from_str(&engine.document().rules).map_err(|e| e.to_string())?;
    let raw_parse = t.elapsed();
    println!(
        "compile (TOML + Cedar parse + schema validation + index): {:>8.1} ms, {} identities indexed",
        compile.as_secs_f64() * 1e3,
        engine.indexed_principals()
    );
    println!(
        "raw cedar PolicySet parse, for comparison:                 {:>8.1} ms\n",
        raw_parse.as_secs_f64() * 1e3
    );

    let authorizer = cedar::Authorizer::new();
    let entities = cedar::Entities::empty();
    let principal = Principal {
        kind: PrincipalKind::Pipeline,
        name: "pipeline-500",
    };
    let ip: std::net::IpAddr = [10, 1, 2, 3].into();

    println!(
        "{:<44} {:>14} {:>14} {:>9}",
        "request", "raw cedar", "kagi engine", "speed-up"
    );
    for case in &CASES {
        let context = Context {
            format: Some(case.format),
            source_ip: Some(ip),
            now: NOON,
            certificate: None,
        };
        let resource = Resource::Key(case.key);
        let d = engine.decide(&principal, Action::Sign, &resource, &context);
        if d.allowed != case.expect_allowed || d.rule != case.expect_rule {
            return Err(format!("{}: unexpected decision {d:?}", case.name));
        }

        let request = raw_request(case, &ip)?;
        let raw_decision = authorizer.is_authorized(&request, &raw_set, &entities);
        if (raw_decision.decision() == cedar::Decision::Allow) != case.expect_allowed {
            return Err(format!("{}: raw cedar disagrees", case.name));
        }

        let raw = rate(1, dur, |_| {
            std::hint::black_box(authorizer.is_authorized(&request, &raw_set, &entities));
        });
        let kagi = rate(1, dur, |_| {
            std::hint::black_box(engine.decide(&principal, Action::Sign, &resource, &context));
        });
        println!(
            "{:<44} {:>11.0} ns {:>11.0} ns {:>8.1}x",
            case.name,
            1e9 / raw,
            1e9 / kagi,
            kagi / raw
        );
    }
    println!("\n(ns per decision; speed-up = raw cedar time / kagi engine time, same request)");

    // Where a kagi decision's time goes, to show what further indexing could and could not save.
    println!("\nwhere the time goes (raw cedar, ns per call):");
    let case = &CASES[0];
    let request = raw_request(case, &ip)?;
    let row = |name: &str, ops: f64| println!("  {name:<52} {:>8.0} ns", 1e9 / ops);
    row(
        "build a request (entity ids + context)",
        rate(1, dur, |_| {
            std::hint::black_box(raw_request(case, &ip).ok());
        }),
    );
    row(
        "  of which: context attribute source_ip = ip(...)",
        rate(1, dur, |_| {
            std::hint::black_box(
                cedar::Context::from_pairs([(
                    "source_ip".to_owned(),
                    cedar::RestrictedExpression::new_ip("10.1.2.3"),
                )])
                .ok(),
            );
        }),
    );
    let own_rules = rules_of(&engine.document().rules, "p500-")?;
    let empty = cedar::PolicySet::new();
    row(
        "is_authorized, empty policy set",
        rate(1, dur, |_| {
            std::hint::black_box(authorizer.is_authorized(&request, &empty, &entities));
        }),
    );
    row(
        "is_authorized, the caller's 10 rules",
        rate(1, dur, |_| {
            std::hint::black_box(authorizer.is_authorized(&request, &own_rules, &entities));
        }),
    );
    Ok(())
}

/// The rules whose @id starts with `prefix`, as their own policy set.
fn rules_of(rules: &str, prefix: &str) -> Result<cedar::PolicySet, String> {
    let all = cedar::PolicySet::from_str(rules).map_err(|e| e.to_string())?;
    cedar::PolicySet::from_policies(
        all.policies()
            .filter(|p| p.annotation("id").is_some_and(|id| id.starts_with(prefix)))
            .cloned(),
    )
    .map_err(|e| e.to_string())
}

fn raw_request(case: &Case, ip: &std::net::IpAddr) -> Result<cedar::Request, String> {
    let uid = |s: String| cedar::EntityUid::from_str(&s).map_err(|e| e.to_string());
    let context = cedar::Context::from_pairs([
        (
            "format".to_owned(),
            cedar::RestrictedExpression::new_string(case.format.to_owned()),
        ),
        (
            "source_ip".to_owned(),
            cedar::RestrictedExpression::new_ip(ip.to_string()),
        ),
        (
            "now".to_owned(),
            cedar::RestrictedExpression::new_long(NOON),
        ),
        (
            "hour".to_owned(),
            cedar::RestrictedExpression::new_long(NOON.rem_euclid(86_400) / 3_600),
        ),
    ])
    .map_err(|e| e.to_string())?;
    cedar::Request::new(
        uid("kagi::Pipeline::\"pipeline-500\"".to_owned())?,
        uid("kagi::Action::\"sign\"".to_owned())?,
        uid(format!("kagi::Key::\"{}\"", case.key))?,
        context,
        None,
    )
    .map_err(|e| e.to_string())
}
