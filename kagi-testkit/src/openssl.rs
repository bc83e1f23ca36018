//! The openssl CLI, as the CA tests call it.

use std::path::Path;
use std::process::Command;

/// Runs openssl with `args` in `dir`; returns (success, stdout+stderr).
pub fn try_openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`try_openssl`] that must succeed; returns its output.
#[allow(dead_code)]
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let (ok, text) = try_openssl(dir, args);
    assert!(ok, "openssl {} failed:\n{text}", args.join(" "));
    text
}
