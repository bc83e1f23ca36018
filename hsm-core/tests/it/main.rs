//! hsm-core's integration tests, one module per concern, in one test binary: each binary links
//! the whole dependency tree, so one instead of five saves four links per build. The crash
//! tests rerun this binary as their worker, naming the worker test by its module path.

mod audit_feed;
mod auth;
mod basics;
mod console_state;
mod device_serials;
mod governance;
mod key_auth;
mod key_states;
mod logged_crash;
mod observe;
mod passwords;
mod rotation;
mod tamper;
mod usage_limits;
mod witnessing;
