//! The policy document: TOML around a Cedar rule set, checked field by field so a rejected
//! document says which line is wrong and how to fix it.

use std::collections::HashMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{line_col, line_of, PolicyError};
use crate::request::Action;
use crate::rules::{self, Rules};

const DEFAULT_TTL_HOURS: i64 = 24;
const MAX_TTL_HOURS: i64 = 720;
const MAX_QUOTA_NAME: usize = 64;

/// A validated policy document. Build it with [`PolicyDocument::parse`]; the engine re-checks
/// the rules when it compiles one, so a document assembled by hand cannot bypass validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    pub description: Option<String>,
    pub quorum: Option<Quorum>,
    pub quotas: Vec<Quota>,
    /// The Cedar policy set, exactly as written.
    pub rules: String,
}

/// M-of-N approval for sensitive changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quorum {
    /// Person identity names, unique.
    pub approvers: Vec<String>,
    /// How many distinct approvers must agree, 1..=approvers.len().
    pub required: usize,
    /// How long a request may wait for approvals.
    pub request_ttl_secs: i64,
}

/// A limit on how often one identity may perform one action on one resource (or on any, `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub name: String,
    pub identity: String,
    pub action: Action,
    /// Key label (sign) or certificate profile (issue); `*` matches any.
    pub resource: String,
    pub total: Option<i64>,
    pub per_hour: Option<i64>,
    pub per_day: Option<i64>,
}

impl Quota {
    /// Whether this quota counts uses of `resource` (a key label or profile name).
    pub fn covers(&self, resource: &str) -> bool {
        self.resource == "*" || self.resource == resource
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    description: Option<String>,
    quorum: Option<Spanned<RawQuorum>>,
    #[serde(default)]
    quota: Vec<Spanned<RawQuota>>,
    rules: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuorum {
    approvers: Spanned<Vec<Spanned<String>>>,
    required: Spanned<i64>,
    request_ttl_hours: Option<Spanned<i64>>,
    /// Only to explain the mistake; see `misplaced_rules`.
    rules: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    name: Spanned<String>,
    identity: Spanned<String>,
    action: Spanned<String>,
    resource: Spanned<String>,
    total: Option<Spanned<i64>>,
    per_hour: Option<Spanned<i64>>,
    per_day: Option<Spanned<i64>>,
    /// Only to explain the mistake; see `misplaced_rules`.
    rules: Option<Spanned<toml::Value>>,
}

impl PolicyDocument {
    /// Parses and validates a document: TOML syntax, every field, the Cedar syntax of `rules`,
    /// an `@id` on every rule, and the rules against the kagi schema.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        parse_with_rules(text).map(|(doc, _)| doc)
    }
}

/// Parses a document and keeps the compiled rules, so building an engine from text checks the
/// Cedar rules only once.
pub(crate) fn parse_with_rules(text: &str) -> Result<(PolicyDocument, Rules), PolicyError> {
    let raw: RawDocument = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let at = |span: Range<usize>| line_of(text, span.start);

    if let Some(q) = &raw.quorum {
        misplaced_rules(text, &q.get_ref().rules, "[quorum]")?;
    }
    for q in &raw.quota {
        misplaced_rules(text, &q.get_ref().rules, "[[quota]]")?;
    }

    let quorum = raw
        .quorum
        .map(|q| {
            let table_line = header_line(text, "[quorum]").unwrap_or_else(|| at(q.span()));
            quorum(q.into_inner(), table_line, &at)
        })
        .transpose()?;

    let mut quotas = Vec::with_capacity(raw.quota.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    for q in raw.quota {
        let line = at(q.get_ref().name.span());
        let quota = quota(q.into_inner(), &at)?;
        if let Some(first) = names.insert(quota.name.clone(), line) {
            return Err(PolicyError::at(
                line,
                format!(
                    "duplicate quota name {:?}: the quota at line {first} already uses it; give \
                     each quota its own name",
                    quota.name
                ),
            ));
        }
        quotas.push(quota);
    }

    let Some(rules_field) = raw.rules else {
        return Err(PolicyError::at(
            text.lines().count().max(1),
            "missing `rules`: add rules = '''...''' holding the Cedar rules (an empty string \
             denies everything)",
        ));
    };
    let content_start = string_content_start(text, rules_field.span());
    let rules_text = rules_field.into_inner();
    let locate = |offset: usize| locate_in_rules(text, content_start, &rules_text, offset);
    let compiled = rules::compile(&rules_text, &locate)?;

    let doc = PolicyDocument {
        description: raw.description,
        quorum,
        quotas,
        rules: rules_text,
    };
    Ok((doc, compiled))
}

fn quorum(
    q: RawQuorum,
    table_line: usize,
    at: &dyn Fn(Range<usize>) -> usize,
) -> Result<Quorum, PolicyError> {
    let approvers_line = at(q.approvers.span());
    let mut approvers: Vec<String> = Vec::new();
    for a in q.approvers.into_inner() {
        let line = at(a.span());
        let name = a.into_inner();
        if name.trim().is_empty() {
            return Err(PolicyError::at(
                line,
                "quorum approver names must not be empty: list person identity names",
            ));
        }
        if approvers.contains(&name) {
            return Err(PolicyError::at(
                line,
                format!("quorum approver {name:?} is listed twice: list each officer once"),
            ));
        }
        approvers.push(name);
    }
    if approvers.is_empty() {
        return Err(PolicyError::at(
            approvers_line.max(table_line),
            "quorum.approvers is empty: name at least one person who may approve changes",
        ));
    }
    let required_line = at(q.required.span());
    let required = *q.required.get_ref();
    if required < 1 || required as u64 > approvers.len() as u64 {
        return Err(PolicyError::at(
            required_line,
            format!(
                "quorum.required is {required} but there are {} approvers: it must be between 1 \
                 and the number of approvers",
                approvers.len()
            ),
        ));
    }
    let ttl_hours = match q.request_ttl_hours {
        None => DEFAULT_TTL_HOURS,
        Some(t) => {
            let hours = *t.get_ref();
            if !(1..=MAX_TTL_HOURS).contains(&hours) {
                return Err(PolicyError::at(
                    at(t.span()),
                    format!(
                        "quorum.request_ttl_hours is {hours}: use 1 to {MAX_TTL_HOURS} hours \
                         (default {DEFAULT_TTL_HOURS})"
                    ),
                ));
            }
            hours
        }
    };
    Ok(Quorum {
        approvers,
        required: required as usize,
        request_ttl_secs: ttl_hours * 3_600,
    })
}

fn quota(q: RawQuota, at: &dyn Fn(Range<usize>) -> usize) -> Result<Quota, PolicyError> {
    let name_line = at(q.name.span());
    let name = q.name.into_inner();
    let name_ok = !name.is_empty()
        && name.len() <= MAX_QUOTA_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !name_ok {
        return Err(PolicyError::at(
            name_line,
            format!(
                "quota name {name:?} is not valid: use 1 to {MAX_QUOTA_NAME} characters from \
                 A-Z a-z 0-9 . _ -"
            ),
        ));
    }
    let identity_line = at(q.identity.span());
    let identity = q.identity.into_inner();
    if identity.trim().is_empty() {
        return Err(PolicyError::at(
            identity_line,
            format!("quota {name:?} has an empty identity: name the pipeline, line or person"),
        ));
    }
    let action_line = at(q.action.span());
    let action: Action = q.action.get_ref().parse().map_err(|reason: String| {
        PolicyError::at(action_line, format!("quota {name:?}: {reason}"))
    })?;
    let resource_line = at(q.resource.span());
    let resource = q.resource.into_inner();
    if resource.trim().is_empty() {
        return Err(PolicyError::at(
            resource_line,
            format!(
                "quota {name:?} has an empty resource: name a key label (sign) or certificate \
                 profile (issue), or \"*\" for any"
            ),
        ));
    }
    let limit = |field: &str, value: Option<Spanned<i64>>| match value {
        None => Ok(None),
        Some(v) if *v.get_ref() > 0 => Ok(Some(*v.get_ref())),
        Some(v) => Err(PolicyError::at(
            at(v.span()),
            format!(
                "quota {name:?}: {field} is {}; limits must be greater than 0 (leave the field \
                 out for no limit of that kind)",
                v.get_ref()
            ),
        )),
    };
    let total = limit("total", q.total)?;
    let per_hour = limit("per_hour", q.per_hour)?;
    let per_day = limit("per_day", q.per_day)?;
    if total.is_none() && per_hour.is_none() && per_day.is_none() {
        return Err(PolicyError::at(
            name_line,
            format!("quota {name:?} sets no limit: add at least one of total, per_hour, per_day"),
        ));
    }
    Ok(Quota {
        name,
        identity,
        action,
        resource,
        total,
        per_hour,
        per_day,
    })
}

/// In TOML every key after a table header belongs to that table, so `rules` written at the end
/// of the document, after `[quorum]` or `[[quota]]`, is not the top-level `rules`. It is an easy
/// mistake and the generic "unknown field" would not explain it.
fn misplaced_rules(
    text: &str,
    rules: &Option<Spanned<toml::Value>>,
    table: &str,
) -> Result<(), PolicyError> {
    match rules {
        None => Ok(()),
        Some(r) => Err(PolicyError::at(
            line_of(text, r.span().start),
            format!(
                "`rules` here belongs to the {table} table above it (in TOML every key after a \
                 table header is part of that table): move `rules = '''...'''` to the top of \
                 the document, before the first [table], next to `description`"
            ),
        )),
    }
}

fn toml_error(text: &str, e: &toml::de::Error) -> PolicyError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            (l, Some(c))
        }
        None => (1, None),
    };
    // toml's Display repeats the position and quotes the source; the message alone reads better
    // next to our own "line N".
    let message = e.message().trim_end().to_owned();
    let reason = if message.contains("unknown field") {
        format!("{message}; remove it or fix its spelling")
    } else if message.starts_with("missing field") {
        format!("{message}: this table needs it")
    } else {
        format!("TOML: {message}")
    };
    PolicyError {
        line,
        column,
        reason,
    }
}

/// The line of a table header such as `[quorum]`, so an error about the table as a whole points
/// at where the table begins rather than at its first key.
fn header_line(text: &str, header: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(header))
        .map(|i| i + 1)
}

/// Where the characters of a TOML string value begin, given the span of the value with its
/// quotes: multi-line strings drop a newline right after the opening delimiter.
fn string_content_start(text: &str, span: Range<usize>) -> usize {
    let value = text.get(span.clone()).unwrap_or("");
    let delimiter = if value.starts_with("'''") || value.starts_with("\"\"\"") {
        3
    } else if value.starts_with('\'') || value.starts_with('"') {
        1
    } else {
        0
    };
    let mut start = span.start + delimiter;
    if delimiter == 3 {
        let rest = text.get(start..).unwrap_or("");
        if rest.starts_with("\r\n") {
            start += 2;
        } else if rest.starts_with('\n') {
            start += 1;
        }
    }
    start
}

/// Maps a byte offset in the rules text to (line, column) in the document. Counting newlines
/// keeps this exact for literal strings ('''), the recommended form, and right for basic strings
/// unless they use escapes that add or remove line breaks.
fn locate_in_rules(
    text: &str,
    content_start: usize,
    rules: &str,
    offset: usize,
) -> (usize, Option<usize>) {
    let mut offset = offset.min(rules.len());
    while offset > 0 && !rules.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &rules[..offset];
    let (start_line, start_column) = line_col(text, content_start);
    let newlines = before.matches('\n').count();
    let column = match before.rfind('\n') {
        Some(i) => before[i + 1..].chars().count() + 1,
        None => start_column + before.chars().count(),
    };
    (start_line + newlines, Some(column))
}
