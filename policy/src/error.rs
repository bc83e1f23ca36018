use thiserror::Error;

/// Why a policy document was rejected, pointing at the line of the whole document text so the
/// security team can find it in the file they submitted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}{}: {reason}", column.map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct PolicyError {
    /// 1-based line in the whole document.
    pub line: usize,
    /// 1-based column (in characters) when the error has a precise position.
    pub column: Option<usize>,
    pub reason: String,
}

impl PolicyError {
    pub(crate) fn at(line: usize, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            line,
            column: None,
            reason: reason.into(),
        }
    }

    /// The stable error code the service reports for every rejected document.
    pub fn code(&self) -> &'static str {
        "policy_invalid"
    }
}

/// Where a byte offset falls in `text`, as 1-based (line, column).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    line_col(text, offset).0
}

// Offsets from parsers are byte offsets; a span that ends inside a multi-byte character must not
// make us slice through it.
fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_column() {
        let e = PolicyError::at(3, "bad");
        assert_eq!(e.to_string(), "line 3: bad");
        let e = PolicyError {
            line: 4,
            column: Some(7),
            reason: "worse".into(),
        };
        assert_eq!(e.to_string(), "line 4, column 7: worse");
        assert_eq!(e.code(), "policy_invalid");
    }

    #[test]
    fn line_col_counts_from_one() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 5), (2, 3));
        assert_eq!(line_col(t, 8), (3, 1));
        assert_eq!(line_col(t, 100), (3, 2));
    }
}
