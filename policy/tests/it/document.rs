//! Parsing and rejecting policy documents, with the line each rejection points at.

use kagi_policy::{Action, PolicyDocument, PolicyError};

/// The documented example. `rules` comes before the tables: in TOML a key after `[quorum]` or
/// `[[quota]]` belongs to that table.
const EXAMPLE: &str = r#"description = "release signing and factory lines"   # optional

rules = '''
@id("ci-release-cms")
permit (
  principal == kagi::Pipeline::"ci-release",
  action == kagi::Action::"sign",
  resource == kagi::Key::"release"
) when { context.format == "cms" };
'''

[quorum]                      # optional: M-of-N approval for sensitive changes
approvers = ["alice", "bob", "carol"]   # identity names (persons), unique, 1..=N
required = 2                  # 1 <= required <= approvers.len()
request_ttl_hours = 24        # optional, default 24, 1..=720

[[quota]]                     # zero or more
name = "line-7-devices"       # unique, [A-Za-z0-9._-]{1,64}
identity = "line-7"           # identity name the quota applies to
action = "issue"              # "sign" or "issue"
resource = "device"           # key label (sign) or certificate profile (issue); "*" = any
total = 5                     # optional; at least one of total / per_hour / per_day; all > 0
per_hour = 100                # optional
per_day = 1000                # optional
"#;

fn reject(text: &str) -> PolicyError {
    match PolicyDocument::parse(text) {
        Ok(doc) => panic!("accepted a bad document: {doc:?}"),
        Err(e) => e,
    }
}

/// A minimal valid document with `rules` starting on line 2 of the document.
fn with_rules(rules: &str) -> String {
    format!("rules = '''\n{rules}'''\n")
}

const RULE: &str = "@id(\"r1\")\npermit (principal, action == kagi::Action::\"sign\", resource);\n";

#[test]
fn parses_the_example() {
    let doc = PolicyDocument::parse(EXAMPLE).unwrap();
    assert_eq!(
        doc.description.as_deref(),
        Some("release signing and factory lines")
    );
    let q = doc.quorum.as_ref().unwrap();
    assert_eq!(q.approvers, ["alice", "bob", "carol"]);
    assert_eq!(q.required, 2);
    assert_eq!(q.request_ttl_secs, 24 * 3600);
    assert_eq!(doc.quotas.len(), 1);
    let quota = &doc.quotas[0];
    assert_eq!(quota.name, "line-7-devices");
    assert_eq!(quota.identity, "line-7");
    assert_eq!(quota.action, Action::Issue);
    assert_eq!(quota.resource, "device");
    assert_eq!(
        (quota.total, quota.per_hour, quota.per_day),
        (Some(5), Some(100), Some(1000))
    );
    assert!(doc.rules.starts_with("@id(\"ci-release-cms\")\npermit ("));
}

#[test]
fn quorum_ttl_defaults_to_a_day_and_everything_optional_may_be_absent() {
    let doc =
        PolicyDocument::parse("rules = ''\n[quorum]\napprovers = [\"alice\"]\nrequired = 1\n")
            .unwrap();
    assert_eq!(doc.quorum.unwrap().request_ttl_secs, 86_400);
    assert!(doc.description.is_none());
    assert!(doc.quotas.is_empty());
    assert_eq!(doc.rules, "");
}

#[test]
fn toml_syntax_error_names_its_line() {
    let e = reject("description = \"x\"\n\n[quorum\napprovers = []\n");
    assert_eq!(e.line, 3, "{e}");
    assert!(e.reason.starts_with("TOML:"), "{e}");
    assert_eq!(e.code(), "policy_invalid");
}

#[test]
fn unknown_fields_are_rejected() {
    let e = reject("description = \"x\"\nrulez = ''\nrules = ''\n");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.reason.contains("rulez"), "{e}");

    let e = reject("rules = ''\n[[quota]]\nname = \"q\"\nidentity = \"l\"\naction = \"sign\"\nresource = \"*\"\ntotal = 1\nper_week = 3\n");
    assert_eq!(e.line, 8, "{e}");
    assert!(e.reason.contains("per_week"), "{e}");
}

#[test]
fn missing_rules_is_rejected() {
    let e = reject("description = \"x\"\n");
    assert!(e.reason.contains("missing `rules`"), "{e}");
}

#[test]
fn required_above_approvers() {
    let e = reject(&EXAMPLE.replace("required = 2 ", "required = 4 "));
    assert_eq!(e.line, 14, "{e}");
    assert!(
        e.reason
            .contains("quorum.required is 4 but there are 3 approvers"),
        "{e}"
    );
}

#[test]
fn quorum_errors() {
    let e = reject(&EXAMPLE.replace("required = 2 ", "required = 0 "));
    assert_eq!(e.line, 14, "{e}");
    let e = reject(&EXAMPLE.replace("\"bob\", \"carol\"", "\"bob\", \"alice\""));
    assert_eq!(e.line, 13, "{e}");
    assert!(e.reason.contains("listed twice"), "{e}");
    let e = reject(&EXAMPLE.replace("[\"alice\", \"bob\", \"carol\"]", "[]"));
    assert_eq!(e.line, 13, "{e}");
    let e = reject(&EXAMPLE.replace("request_ttl_hours = 24 ", "request_ttl_hours = 721"));
    assert_eq!(e.line, 15, "{e}");
}

#[test]
fn duplicate_quota_name() {
    let quota = "[[quota]]\nname = \"q1\"\nidentity = \"a\"\naction = \"sign\"\nresource = \"k\"\ntotal = 1\n";
    let text = format!("rules = ''\n{quota}\n{quota}");
    let e = reject(&text);
    assert_eq!(e.line, 10, "{e}");
    assert!(e.reason.contains("duplicate quota name \"q1\""), "{e}");
    assert!(e.reason.contains("line 3"), "{e}");
}

#[test]
fn quota_without_limits() {
    let text = "rules = ''\n\n[[quota]]\nname = \"q1\"\nidentity = \"a\"\naction = \"sign\"\nresource = \"k\"\n";
    let e = reject(text);
    assert_eq!(e.line, 4, "{e}");
    assert!(e.reason.contains("sets no limit"), "{e}");
}

#[test]
fn quota_field_errors() {
    let e = reject(&EXAMPLE.replace("action = \"issue\"", "action = \"mint\" "));
    assert_eq!(e.line, 20, "{e}");
    assert!(e.reason.contains("unknown action \"mint\""), "{e}");
    let e = reject(&EXAMPLE.replace("per_hour = 100", "per_hour = 0  "));
    assert_eq!(e.line, 23, "{e}");
    let e = reject(&EXAMPLE.replace("name = \"line-7-devices\"", "name = \"line 7 devices\""));
    assert_eq!(e.line, 18, "{e}");
    let e = reject(&EXAMPLE.replace("resource = \"device\"", "resource = \"\"      "));
    assert_eq!(e.line, 21, "{e}");
}

#[test]
fn cedar_syntax_error_points_into_the_document() {
    // Line 5 of the example is `permit (`; break the line after it.
    let text = EXAMPLE.replace(
        "principal == kagi::Pipeline::\"ci-release\",",
        "principal === kagi::Pipeline::\"ci-release\",",
    );
    let e = reject(&text);
    assert_eq!(e.line, 6, "{e}");
    assert!(e.column.is_some(), "{e}");
}

#[test]
fn schema_error_wrong_resource_type_for_action() {
    let text = EXAMPLE.replace("kagi::Key::\"release\"", "kagi::Profile::\"x\"");
    let e = reject(&text);
    assert!((4..=9).contains(&e.line), "{e}");
    assert!(e.reason.contains("ci-release-cms"), "{e}");
}

#[test]
fn schema_error_unknown_context_attribute() {
    let text = EXAMPLE.replace("context.format == \"cms\"", "context.colour == \"red\"");
    let e = reject(&text);
    assert_eq!(e.line, 9, "{e}");
    assert!(e.reason.contains("colour"), "{e}");
}

#[test]
fn rule_without_id() {
    let rules = format!("{RULE}\npermit (principal, action, resource);\n");
    let e = reject(&with_rules(&rules));
    assert_eq!(e.line, 5, "{e}");
    assert!(e.reason.contains("no @id"), "{e}");
}

#[test]
fn duplicate_rule_id() {
    let rules = format!("{RULE}\n{RULE}");
    let e = reject(&with_rules(&rules));
    assert_eq!(e.line, 5, "{e}");
    assert!(e.reason.contains("duplicate @id(\"r1\")"), "{e}");
    assert!(e.reason.contains("line 2"), "{e}");
}

#[test]
fn reserved_rule_id() {
    let e = reject(&with_rules(&RULE.replace("r1", "default-deny")));
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn missing_table_field_names_the_table() {
    let e = reject("rules=''\n[quorum]\nrequired = 1\n");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.reason.contains("missing field `approvers`"), "{e}");
}

#[test]
fn type_error_in_a_rule_condition() {
    let e = reject(&EXAMPLE.replace("context.format == \"cms\"", "context.format == 3"));
    assert_eq!(e.line, 9, "{e}");
    assert!(e.reason.contains("ci-release-cms"), "{e}");
}

#[test]
fn error_display_names_the_line() {
    let e = reject(&EXAMPLE.replace("required = 2 ", "required = 9 "));
    assert!(e.to_string().starts_with("line 14: "), "{e}");
}

#[test]
fn rules_after_a_table_is_explained() {
    // The natural order, rules last, puts `rules` inside the last table.
    let rules_block =
        &EXAMPLE[EXAMPLE.find("rules = ").unwrap()..EXAMPLE.find("[quorum]").unwrap()];
    let text = format!("{}\n{}", EXAMPLE.replace(rules_block, ""), rules_block);
    let e = reject(&text);
    let line = text
        .lines()
        .position(|l| l.starts_with("rules = "))
        .unwrap()
        + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(e.reason.contains("belongs to the [[quota]] table"), "{e}");
    assert!(e.reason.contains("move `rules"), "{e}");
}

#[test]
fn module_doc_example_parses() {
    let lib = include_str!("../../src/lib.rs");
    let start = lib.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
    let end = start + lib[start..].find("//! ```\n").unwrap();
    let text: String = lib[start..end]
        .lines()
        .map(|l| {
            l.strip_prefix("//! ")
                .or(l.strip_prefix("//!"))
                .unwrap_or(l)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let doc = PolicyDocument::parse(&text).unwrap();
    assert_eq!(doc.quotas[0].total, Some(5));
}
