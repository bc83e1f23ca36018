//! The `rules` field: a Cedar policy set, parsed, checked for `@id`s and validated against the
//! schema. Positions are byte offsets into the rules text; the caller says how those map to the
//! lines of the whole document.

use std::collections::HashMap;
use std::fmt::Display;

use cedar_policy::{Policy, PolicyId, PolicySet, ValidationMode, Validator};
use miette::Diagnostic;

use crate::error::PolicyError;
use crate::schema::schema;

/// The rule name a decision carries when no rule matched.
pub const DEFAULT_DENY: &str = "default-deny";

/// Maps a byte offset in the rules text to (line, column) in the whole document.
pub(crate) type Locate<'a> = &'a dyn Fn(usize) -> (usize, Option<usize>);

/// A validated rule set; each policy's Cedar id is its `@id`, so Cedar's own diagnostics name
/// the rule an audit record needs.
pub(crate) struct Rules {
    /// In the order they appear in the document.
    pub policies: Vec<Policy>,
}

pub(crate) fn compile(text: &str, locate: Locate<'_>) -> Result<Rules, PolicyError> {
    let parsed: PolicySet = text
        .parse()
        .map_err(|e: cedar_policy::ParseErrors| diagnostic_error(&e, locate, "Cedar syntax: "))?;
    if parsed.templates().next().is_some() {
        let at = parsed
            .templates()
            .filter_map(|t| text.find(&t.to_string()))
            .min()
            .unwrap_or(0);
        return Err(error_at(
            locate,
            at,
            "rule templates (?principal / ?resource slots) are not supported: name the \
             principal and resource in each rule",
        ));
    }

    let mut policies: Vec<&Policy> = parsed.policies().collect();
    // Cedar names the policies of a parsed set policy0, policy1, ... in source order.
    policies.sort_by_key(|p| {
        AsRef::<str>::as_ref(p.id())
            .strip_prefix("policy")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });

    let mut renamed = Vec::with_capacity(policies.len());
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(policies.len());
    let mut cursor = 0;
    for policy in policies {
        // Cedar keeps each policy's source text but not its position; the texts appear in
        // order, so searching forward from the previous one finds where each rule starts.
        let source = policy.to_string();
        let at = match text.get(cursor..).and_then(|rest| rest.find(&source)) {
            Some(i) => {
                cursor += i + source.len();
                cursor - source.len()
            }
            None => cursor,
        };
        let id =
            match policy.annotation("id") {
                None => {
                    return Err(error_at(
                        locate,
                        at,
                        "rule has no @id annotation: put @id(\"some-name\") before its permit or \
                     forbid, because audit records name the rule that decided",
                    ))
                }
                Some(id) if id.trim().is_empty() => {
                    return Err(error_at(
                        locate,
                        at,
                        "rule has an empty @id: give it a name, e.g. @id(\"ci-release-cms\")",
                    ))
                }
                Some(DEFAULT_DENY) => return Err(error_at(
                    locate,
                    at,
                    "@id(\"default-deny\") is reserved for denials no rule decided: pick another \
                     name",
                )),
                Some(id) => id,
            };
        if let Some(&first) = seen.get(id) {
            let (first_line, _) = locate(first);
            return Err(error_at(
                locate,
                at,
                format!(
                    "duplicate @id(\"{id}\"): the rule at line {first_line} already uses it; \
                     give each rule its own id"
                ),
            ));
        }
        seen.insert(id.to_owned(), at);
        renamed.push(policy.new_id(PolicyId::new(id)));
    }

    let set = PolicySet::from_policies(renamed.iter().cloned())
        .map_err(|e| error_at(locate, 0, format!("rules could not be assembled: {e}")))?;
    validate(&set, locate)?;
    Ok(Rules { policies: renamed })
}

fn validate(set: &PolicySet, locate: Locate<'_>) -> Result<(), PolicyError> {
    let schema = schema().map_err(|e| error_at(locate, 0, e))?;
    let result = Validator::new(schema.clone()).validate(set, ValidationMode::Strict);
    // Cedar's warnings are kept as errors here: they are a rule that can never match (a typo in
    // a scope, or `sign` on a profile), or text that reads differently from what it means
    // (bidirectional or mixed-script characters). Either way the rule does not do what its
    // author thinks, and a security policy should not take effect like that.
    let mut problems: Vec<(usize, String, &dyn Diagnostic)> = result
        .validation_errors()
        .map(|e| {
            let d: &dyn Diagnostic = e;
            (first_offset(d).unwrap_or(0), e.policy_id().to_string(), d)
        })
        .chain(result.validation_warnings().map(|w| {
            let d: &dyn Diagnostic = w;
            (first_offset(d).unwrap_or(0), w.policy_id().to_string(), d)
        }))
        .collect();
    problems.sort_by_key(|(offset, _, _)| *offset);
    match problems.first() {
        None => Ok(()),
        Some((_, id, first)) => {
            let more = match problems.len() - 1 {
                0 => String::new(),
                1 => " (and 1 more problem)".to_owned(),
                n => format!(" (and {n} more problems)"),
            };
            // Cedar usually names the policy itself; say which rule only when it does not.
            let named = first.to_string().contains(&format!("policy `{id}`"));
            let prefix = if named {
                String::new()
            } else {
                format!("rule @id(\"{id}\"): ")
            };
            let mut e = diagnostic_error(*first, locate, &prefix);
            e.reason.push_str(&more);
            Err(e)
        }
    }
}

fn first_offset<D: Diagnostic + ?Sized>(d: &D) -> Option<usize> {
    d.labels()?.map(|l| l.offset()).min()
}

/// Cedar's message, its hint when it has one, and the position of its first label.
fn diagnostic_error<E: Diagnostic + Display + ?Sized>(
    e: &E,
    locate: Locate<'_>,
    prefix: &str,
) -> PolicyError {
    let mut reason = format!("{prefix}{e}");
    if let Some(help) = e.help() {
        reason.push_str(&format!("; {help}"));
    }
    let (line, column) = match first_offset(e) {
        Some(offset) => locate(offset),
        None => (locate(0).0, None),
    };
    PolicyError {
        line,
        column,
        reason,
    }
}

fn error_at(locate: Locate<'_>, offset: usize, reason: impl Into<String>) -> PolicyError {
    let (line, column) = locate(offset);
    PolicyError {
        line,
        column,
        reason: reason.into(),
    }
}
