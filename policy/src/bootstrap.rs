//! The policy in force while no policy is active. It is part of the program, not a stored
//! version, so nothing written to the database can widen it: a store that lost (or never had)
//! its active version falls back to this, which denies pipelines and lines.

use crate::engine::Engine;
use crate::error::PolicyError;

/// The version number the bootstrap policy is shown under; stored versions start at 1.
pub const BOOTSTRAP_VERSION: i64 = 0;

/// The one rule of the bootstrap policy.
pub const BOOTSTRAP_RULE: &str = "bootstrap-persons-by-role";

/// The bootstrap policy's document, as `kagi policy show` prints it.
pub const BOOTSTRAP_TEXT: &str = r#"# kagi's built-in bootstrap policy (version 0), in force while no policy is active.
# Pipelines and lines may neither sign nor issue: no rule permits them, so default-deny
# decides. Persons may, within their roles (hsm-core checks those on every operation).
# It is part of the program, not a stored version, so no change to the database widens it.
# To let a pipeline or line work, submit and activate a policy with a rule that allows it.
description = "bootstrap: deny pipelines and lines; persons by role"

rules = '''
@id("bootstrap-persons-by-role")
permit (principal is kagi::Person, action, resource);
'''
"#;

impl Engine {
    /// The bootstrap policy, compiled.
    pub fn bootstrap() -> Result<Engine, PolicyError> {
        Engine::from_text(BOOTSTRAP_TEXT)
    }
}
