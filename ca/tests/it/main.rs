//! The CA's integration tests in one test binary (each binary links the whole dependency tree).
//! `crash` reruns this binary as its worker, naming the worker test by its module path.

mod cms_tsa;
mod crash;
mod csr_checks;
mod fulcio;
mod hierarchy;
mod profiles;
