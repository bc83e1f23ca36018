//! The security team's console, served by the `kagi` service at `/ui`.
//!
//! For now one self-contained page (no build step, no external assets): sign in with a token,
//! see every key with its usage against its limit, and verify the audit log. The policy, CA and
//! approval views arrive with their issues.
#![forbid(unsafe_code)]

/// The console page. It talks only to the same origin's `/api/v1`.
pub const INDEX_HTML: &str = include_str!("index.html");

/// Content-Security-Policy for the page: nothing but its own inline code and same-origin calls.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[cfg(test)]
mod tests {
    #[test]
    fn page_uses_only_same_origin_api() {
        assert!(super::INDEX_HTML.contains("fetch(\"/api/v1\" + path"));
        assert!(!super::INDEX_HTML.contains("http://"));
        assert!(!super::INDEX_HTML.contains("https://"));
    }
}
