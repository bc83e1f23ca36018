use std::sync::OnceLock;

use cedar_policy::Schema;

/// The Cedar schema every rule set is validated against, in Cedar's human schema syntax.
pub const SCHEMA: &str = include_str!("kagi.cedarschema");

/// The parsed schema, built once per process because rule validation and every compile use it.
pub(crate) fn schema() -> Result<&'static Schema, String> {
    static PARSED: OnceLock<Result<Schema, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| {
            Schema::from_cedarschema_str(SCHEMA)
                .map(|(schema, _warnings)| schema)
                .map_err(|e| format!("built-in policy schema does not parse: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_schema_parses() {
        assert!(super::schema().is_ok(), "{:?}", super::schema().err());
    }
}
