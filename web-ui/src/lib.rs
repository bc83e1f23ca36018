//! The security team's console, served by the `kagi` service at `/ui`.
//!
//! This crate holds what the console is, apart from the HSM: the pages (server-rendered with
//! maud, so markup is checked at compile time and every value is HTML-escaped), the one
//! stylesheet, what a session is (the service keeps them, in hsm-core) and the CSRF tokens. The service (`signer/src/server/console.rs`)
//! signs people in through hsm-core, calls the same HSM paths as the API and hands the pages
//! plain view structs, so nothing here can reach a key.
//!
//! No script runs in the console: pages are forms and links, which keeps the Content-Security-
//! Policy at `script-src 'none'` and every page usable with the keyboard alone.
#![forbid(unsafe_code)]

mod sessions;
pub mod views;

pub use sessions::{constant_time_eq, random_token, SessionStore, Started, ABSOLUTE, IDLE};

/// Content-Security-Policy of every console page: nothing but the console's own stylesheet
/// and images; forms post only to the console; no framing, no scripts, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The console's stylesheet, served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("assets/console.css");
pub const STYLESHEET_PATH: &str = "/ui/assets/console.css";

/// The session cookie. `__Host-` makes browsers refuse it unless it is Secure, has Path=/ and
/// no Domain, so no sibling host can plant or read one.
pub const SESSION_COOKIE: &str = "__Host-kagi-console";
/// The login form's double-submit cookie: a login has no session yet to tie a token to.
pub const LOGIN_COOKIE: &str = "__Host-kagi-login";

/// `Set-Cookie` for a console cookie: HttpOnly, Secure, SameSite=Strict, whole-site path.
/// `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict")
}

/// The value of cookie `name` in a `Cookie` request header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_allows_no_script_and_no_framing() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(!CONTENT_SECURITY_POLICY.contains("script-src"));
        assert!(CONTENT_SECURITY_POLICY.contains("default-src 'none'"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn cookies_are_host_only_http_only_strict() {
        let c = set_cookie(SESSION_COOKIE, "abc", 60);
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Domain"));
        assert_eq!(
            cookie_value("a=1; __Host-kagi-console=xyz; b=2", SESSION_COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1", SESSION_COOKIE), None);
    }

    #[test]
    fn stylesheet_reaches_nothing_outside() {
        assert!(!STYLESHEET.contains("http:") && !STYLESHEET.contains("https:"));
        assert!(!STYLESHEET.contains("@import"));
    }
}
